"""The worker process: warm reuse, crashes, hangs, cancel, shutdown."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from linerelifer_addon.core.client import Cancelled, WorkerClient, WorkerError, WorkerStartError
from linerelifer_addon.core.backends import BACKEND_ENV
from linerelifer_addon.worker.engine import PRECISION_ENV, Engine
from linerelifer_addon.worker.litert import LiteRTEngine

from conftest import line_image

BIG = line_image(1400, 1400, seed=4)


def _kill_on_first_progress(client: WorkerClient, sig: int):
    fired = threading.Event()

    def progress(done: int, total: int) -> None:
        if not fired.is_set():
            fired.set()
            os.kill(client.pid, sig)
    return progress, fired


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_warm_worker_serves_many_requests(random_style, backend: str) -> None:
    with WorkerClient(backend=backend) as client:
        img = line_image(300, 200, seed=5)
        first = client.refine(img, random_style, tile=256)
        pid = client.pid
        second = client.refine(img, random_style, tile=256)
        assert client.pid == pid and client.starts == 1
        engine = Engine(random_style) if backend == "tensorflow" else LiteRTEngine(random_style)
        expected = engine.refine(img, tile=256, skip_blank=False)
        assert np.abs(first - expected).max() < 2e-3  # float16 transfer
        assert client.last_stats["precision"] == engine.precision
        assert client.last_stats["backend"] == backend
        assert np.array_equal(first, second)
        assert client.info()["tensorflow"] and client.info()["litert"]


def test_worker_runs_only_near_the_ink(default_style) -> None:
    """The client sends where the ink is; the worker fetches and runs only the tiles near it
    (4 of 49 here), and the result is the whole frame's."""
    img = np.zeros((1000, 1000), np.float32)
    img[400:520, 300:460] = line_image(120, 160, seed=7)
    totals: dict[bool, int] = {}
    with WorkerClient() as client:
        out = {skip: client.refine(img, default_style, tile=256, skip_blank=skip, at_width=False,
                                   progress=lambda d, t, skip=skip: totals.update({skip: t}))
               for skip in (True, False)}
        assert not client.refine(np.zeros((300, 200), np.float32), default_style, at_width=False).any()
    assert (totals[True], totals[False]) == (4, 49)
    assert np.abs(out[True] - out[False]).max() <= 1e-3
    assert out[True][400:520, 300:460].max() > 0.9


def test_ink_box_in_a_request_is_checked() -> None:
    from linerelifer_addon.worker.server import _ink_box

    assert _ink_box({}, [10, 20]) is False  # not sent: the whole frame is run
    assert _ink_box({"ink_box": []}, [10, 20]) is None  # no ink at all
    assert _ink_box({"ink_box": [1, 3, 0, 20]}, [10, 20]) == (1, 3, 0, 20)
    for bad in ([0, 11, 0, 5], [3, 3, 0, 5], [0, 1, 0], ["0", 1, 0, 1], [0, 1.5, 0, 2], "all"):
        with pytest.raises(ValueError, match="ink box"):
            _ink_box({"ink_box": bad}, [10, 20])


def test_worker_precision_follows_the_setting(random_style, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRECISION_ENV, "float32")
    monkeypatch.setenv(BACKEND_ENV, "tensorflow")  # the precision setting is TensorFlow's
    img = line_image(200, 200, seed=6)
    with WorkerClient() as client:
        out = client.refine(img, random_style, tile=256)
        assert client.last_stats["precision"] == "float32"
    expected = Engine(random_style, precision="float32").refine(img, tile=256, skip_blank=False)
    assert np.abs(out - expected).max() < 2e-3
    monkeypatch.setenv(PRECISION_ENV, "half")
    with WorkerClient() as client, pytest.raises(WorkerError, match=PRECISION_ENV):
        client.refine(img, random_style, tile=256)


def test_killed_worker_gives_clear_error_then_recovers(random_style) -> None:
    client = WorkerClient()
    try:
        client.info()
        old = client.pid
        progress, fired = _kill_on_first_progress(client, signal.SIGKILL)
        with pytest.raises(WorkerError, match="exited unexpectedly"):
            client.refine(BIG, random_style, tile=176, progress=progress)
        assert fired.is_set()
        out = client.refine(line_image(100, 100), random_style, tile=256)
        assert out.shape == (100, 100) and client.pid != old and client.starts == 2
    finally:
        client.close()


def test_hung_worker_times_out_then_recovers(random_style) -> None:
    client = WorkerClient(reply_timeout=3)
    try:
        client.info()
        progress, fired = _kill_on_first_progress(client, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(WorkerError, match="did not answer"):
            client.refine(BIG, random_style, tile=176, progress=progress)
        assert time.monotonic() - t0 < 30
        assert client.refine(line_image(80, 80), random_style, tile=256).shape == (80, 80)
    finally:
        client.close()


def test_cancel_stops_a_long_request(random_style) -> None:
    with WorkerClient() as client:
        client.info()
        cancel = threading.Event()
        seen = []

        def progress(done: int, total: int) -> None:
            seen.append((done, total))
            cancel.set()
        t0 = time.monotonic()
        with pytest.raises(Cancelled):
            client.refine(BIG, random_style, tile=176, progress=progress, cancel=cancel)
        assert seen and seen[-1][0] < seen[-1][1], "cancel must stop before the last tile"
        assert time.monotonic() - t0 < 20
        pid = client.pid
        assert client.refine(line_image(64, 64), random_style, tile=256).shape == (64, 64)
        assert client.pid == pid  # the same warm worker serves the next request


def test_shutdown_eof_and_idle_timeout(random_style) -> None:
    client = WorkerClient(idle_timeout=2)
    client.info()
    proc = client._proc
    time.sleep(5)
    assert proc.poll() == 0, "an idle worker exits by itself"
    assert client.refine(line_image(50, 50), random_style, tile=256).shape == (50, 50)
    assert client.starts == 2
    proc = client._proc
    proc.stdin.close()  # end of input, as when the client's process dies
    assert proc.wait(timeout=20) == 0
    client.close()


def test_missing_interpreter_or_tensorflow(tmp_path, random_style) -> None:
    with pytest.raises(WorkerStartError, match="does not exist"):
        WorkerClient(python=str(tmp_path / "nope" / "python")).info()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare = WorkerClient(python=str(tmp_path / "bare" / "bin" / "python"))
    with pytest.raises(WorkerStartError, match="lacks the module"):
        bare.refine(np.zeros((10, 10), np.float32), random_style)
    assert not bare.alive


def test_bad_style_is_a_request_error_and_worker_survives(tmp_path, random_style) -> None:
    from linerelifer_addon.core.client import RequestError

    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    broken.with_suffix(".json").write_text(random_style.with_suffix(".json").read_text())
    with WorkerClient() as client:
        with pytest.raises(RequestError, match="broken.keras"):
            client.refine(np.zeros((10, 10), np.float32), broken)
        assert client.refine(np.zeros((10, 10), np.float32), random_style).shape == (10, 10)
        assert client.starts == 1


def test_worker_ignores_sibling_extensions_and_writes_no_pycache(tmp_path, monkeypatch) -> None:
    """Installed in Blender, the package sits among other extensions: one named like a module
    the worker imports must not shadow it, and the worker (-B) writes no __pycache__ there."""
    import shutil

    from linerelifer_addon.core import client as client_module

    extensions = tmp_path / "extensions" / "user_default"
    pkg = extensions / "linerelifer"
    shutil.copytree(client_module.WORKER_SCRIPT.parents[1], pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("numpy", "ai_edge_litert"):  # sibling "extensions" that would break the worker
        (extensions / name).mkdir()
        (extensions / name / "__init__.py").write_text("raise ImportError('a sibling extension shadowed me')\n")
    monkeypatch.setattr(client_module, "WORKER_SCRIPT", pkg / "worker" / "bootstrap.py")
    with WorkerClient() as client:
        out = client.refine(line_image(120, 160, seed=7), pkg / "styles" / "default.keras")
        assert out.shape == (120, 160) and client.last_stats["backend"] == "litert"
    assert not list(pkg.rglob("__pycache__")), "the worker wrote bytecode into the extension's folder"
