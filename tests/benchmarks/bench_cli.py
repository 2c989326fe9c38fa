"""Benchmark: the whole CLI on a 1920×1080 and a 3840×2160 PNG (process start to file written).

    .venv/bin/python tests/benchmarks/bench_cli.py [--runs 3]

Each run is a fresh `python -m linerelifer_addon refine IN -o OUT`, so the time includes
Python's and the worker's start-up (LiteRT's or TensorFlow's: LINERELIFER_BACKEND per row),
reading, refining and writing. Peak memory is the worker's (reported by the CLI) and the CLI
process's own (from the OS, printed by a small wrapper that runs the CLI's module).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_refine import SIZES, drawing  # noqa: E402

# The CLI as `python -m linerelifer_addon`, then its own peak memory on stderr.
WRAPPER = ("import resource, runpy, sys; sys.argv = ['linerelifer_addon'] + sys.argv[1:]\n"
           "try:\n    runpy.run_module('linerelifer_addon', run_name='__main__')\n"
           "finally:\n    print('CLI_MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def main() -> int:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backends", default="litert,tensorflow")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, backend in ((s, b) for s in ("1080p", "4K") for b in args.backends.split(",")):
            src = Path(tmp) / f"lines_{size}.png"
            if not src.is_file():
                cv2.imwrite(str(src), np.rint((1.0 - drawing(*SIZES[size])) * 255).astype(np.uint8))
            env = {**os.environ, "LINERELIFER_BACKEND": backend}
            times, worker_mb, cli_mb = [], [], []
            for i in range(args.runs):
                t0 = time.perf_counter()
                r = subprocess.run([sys.executable, "-c", WRAPPER, "refine", str(src), "-o",
                                    str(Path(tmp) / f"out_{size}.png")], cwd=ROOT, capture_output=True, text=True, env=env)
                times.append(time.perf_counter() - t0)
                if r.returncode != 0:
                    print(r.stderr, file=sys.stderr)
                    return 1
                m = re.search(r"peak memory (\d+) MB", r.stderr)
                worker_mb.append(int(m.group(1)) if m else 0)
                cli_mb.append(int(re.search(r"CLI_MAXRSS (\d+)", r.stderr).group(1)) / 1024)
            rows.append((size, backend, statistics.median(times), min(times), max(worker_mb), max(cli_mb)))
    print(f"{'input':<8}{'backend':>11}{'median s':>10}{'min s':>8}{'worker peak MB':>16}{'CLI process MB':>16}")
    for size, backend, med, lo, wmb, cmb in rows:
        print(f"{size:<8}{backend:>11}{med:>10.2f}{lo:>8.2f}{wmb:>16.0f}{cmb:>16.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
