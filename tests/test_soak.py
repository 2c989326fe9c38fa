"""Soak: 1000 refinements on one warm worker, its memory sampled; no growth after warm-up.

An animation is thousands of frames on the same worker: anything kept per request (a
frame, a traced graph, a message) would grow it until the machine runs out of memory.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import line_image
from linerelifer_addon.core.client import WorkerClient

REQUESTS = 1000
EVERY = 50
WARM_UP = 100
MAX_GROWTH = 0.05


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_thousand_refinements_on_one_worker(default_style, backend: str) -> None:
    frames = [line_image(96, 96, seed=s) for s in range(10)]
    samples: list[tuple[int, int, int]] = []  # (requests done, worker RSS kB, client RSS kB)
    with WorkerClient(threads=1, backend=backend) as client:
        expected = [client.refine(f, default_style) for f in frames]
        pid = client.pid
        t0 = time.monotonic()
        for i in range(1, REQUESTS + 1):
            k = i % len(frames)
            out = client.refine(frames[k], default_style)
            if i % EVERY == 0:
                samples.append((i, rss_kb(pid), rss_kb(os.getpid())))
                np.testing.assert_array_equal(out, expected[k])  # same answers all along
        seconds = time.monotonic() - t0
        assert client.pid == pid and client.starts == 1, "the worker was restarted"
        assert client.last_stats["backend"] == backend
    print(f"\n{REQUESTS} refinements of 96×96 in {seconds:.1f} s ({1000 * seconds / REQUESTS:.1f} ms each)")
    print("requests  worker RSS MB  client RSS MB")
    for i, worker, own in samples:
        print(f"{i:8d}  {worker / 1024:12.1f}  {own / 1024:13.1f}")
    base = next(worker for i, worker, _ in samples if i == WARM_UP)
    after = [worker for i, worker, _ in samples if i >= WARM_UP]
    growth = max(after) / base - 1
    print(f"worker growth after {WARM_UP} requests: {100 * growth:+.2f} % (limit {100 * MAX_GROWTH:.0f} %)")
    assert growth <= MAX_GROWTH, f"the worker grew {100 * growth:.1f} % over {REQUESTS - WARM_UP} requests"
    client_base = next(own for i, _, own in samples if i == WARM_UP)
    client_growth = max(own for i, _, own in samples if i >= WARM_UP) / client_base - 1
    assert client_growth <= MAX_GROWTH, f"the client grew {100 * client_growth:.1f} %"
