"""Worker faults: garbage on its stdout, hangs, concurrent requests, clients that die.

Each fault must end in one clear error (no hang), with no process left behind and no temp
file, and the next request must work. Fake workers are real executables (scripts given to
WorkerClient as its interpreter), so the real client code reads their real output. Tests
of a SIGKILLed or SIGSTOPped worker, cancel, the idle timeout and missing interpreters are
in test_worker.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, line_image
from linerelifer_addon.core.client import WorkerClient, WorkerError, WorkerStartError

SMALL = line_image(120, 160, seed=11)


def grid(h: int, w: int) -> np.ndarray:
    """Lines everywhere: no tile is blank, so refining takes a while (seconds)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy % 23) < 2) | ((xx % 29) < 2)).astype(np.float32)


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped by init does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return found


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def first_line_is_a_sentence(message: str) -> str:
    first = message.splitlines()[0]
    assert first.endswith(".") and not first.endswith(":."), first
    assert "Traceback" not in first
    return first


@pytest.fixture(scope="module")
def real_client(default_style):
    """A real worker, to show the next request works after each fault."""
    with WorkerClient() as c:
        c.refine(SMALL, default_style, tile=256)
        yield c


def fake_worker(tmp_path: Path, body: str) -> tuple[str, Path]:
    """An executable "interpreter" that runs `body` (Python) instead of the worker.

    `hello()`, `read()`, `send()` and `spawn_child()` are available to the body; the child's
    pid is written to the returned file, to check that the whole process group is ended.
    """
    pidfile = tmp_path / "child.pid"
    script = tmp_path / "fake python"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(f"""\
        import json, os, subprocess, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from linerelifer_addon.core import protocol
        out = sys.stdout.buffer
        def hello():
            protocol.write_message(out, {{"op": "hello", "versions": {{}}, "pid": os.getpid()}})
        def read():
            return protocol.read_message(sys.stdin.buffer)
        def send(header, payload=b""):
            protocol.write_message(out, header, payload)
        def raw(header):
            h = json.dumps(header).encode()
            out.write(protocol.MAGIC + len(h).to_bytes(4, "little") + h); out.flush()
        def spawn_child():
            child = subprocess.Popen(["sleep", "120"])
            open({str(pidfile)!r}, "w").write(str(child.pid))
        """) + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script), pidfile


def assert_no_orphans(client: WorkerClient, pidfile: Path, fake_pid: int | None) -> None:
    assert not client.alive
    if fake_pid is not None:
        assert wait_gone(fake_pid), "the fake worker survived"
    if pidfile.exists():
        assert wait_gone(int(pidfile.read_text())), "the worker's child outlived it (process group not ended)"


# -- garbage and lies on the worker's stdout ---------------------------------------------

def test_stderr_reader_ends_quietly_when_the_stream_is_closed_under_it() -> None:
    """Killing a worker closes its stderr while the reader thread may be inside readline (a CI
    run on bpy 4.5 printed that thread's ValueError); the reader keeps what it read and ends."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stderr.write('last words\\n')"],
                            stderr=subprocess.PIPE)
    proc.wait(timeout=60)
    client = WorkerClient()
    client._read_stderr(proc)
    assert client.stderr_tail() == "last words"
    proc.stderr.close()
    client._read_stderr(proc)  # the stream closed: no exception
    assert client.stderr_tail() == "last words"


def test_garbage_instead_of_greeting(tmp_path, real_client, default_style) -> None:
    python, pidfile = fake_worker(tmp_path, """\
        spawn_child()
        out.write(b"\\xff\\xfe Segmentation fault (core dumped)\\n" * 3); out.flush()
        time.sleep(120)
        """)
    client = WorkerClient(python=python, start_timeout=30)
    t0 = time.monotonic()
    with pytest.raises(WorkerStartError) as err:
        client.refine(SMALL, default_style)
    assert time.monotonic() - t0 < 10
    first = first_line_is_a_sentence(str(err.value))
    assert "malformed reply" in first and "unexpected bytes" in first
    assert_no_orphans(client, pidfile, None)
    assert real_client.refine(SMALL, default_style, tile=256).shape == SMALL.shape


def test_silent_at_start_times_out(tmp_path, real_client, default_style) -> None:
    python, pidfile = fake_worker(tmp_path, """\
        spawn_child()
        print("importing a very slow library...", file=sys.stderr, flush=True)
        time.sleep(120)
        """)
    client = WorkerClient(python=python, start_timeout=2)
    t0 = time.monotonic()
    with pytest.raises(WorkerStartError) as err:
        client.info()
    assert time.monotonic() - t0 < 10
    first = first_line_is_a_sentence(str(err.value))
    assert "did not answer within 2 s" in first
    assert "importing a very slow library" in str(err.value)  # its last words follow the first line
    assert_no_orphans(client, pidfile, None)


MID_REQUEST = {
    # name: (what the fake worker does after reading the request, the error's first line)
    "garbage": ('send({"op": "progress", "id": req["id"], "done": 1, "total": 9})\n'
                'out.write(b"\\x00\\x01 not a message at all"); out.flush()',
                "sent a malformed reply"),
    "huge_header": ('out.write(protocol.MAGIC + (2**31).to_bytes(4, "little")); out.flush()',
                    "header of 2147483648 bytes is too large"),
    "header_not_json": ('out.write(protocol.MAGIC + (9).to_bytes(4, "little") + b"{not json"); out.flush()',
                        "header is not JSON"),
    "header_not_object": ('out.write(protocol.MAGIC + (2).to_bytes(4, "little") + b"[]"); out.flush()',
                          "header is not an object"),
    "negative_payload": ('raw({"op": "progress", "id": req["id"], "done": 0, "total": 1, "nbytes": -5})',
                         "payload size -5 is invalid"),
    "result_wrong_dtype": ('send({"op": "rows", "id": req["id"], "y0": 0, "shape": [1, 1], "dtype": "object"},'
                           ' b"\\x00" * 8)', "dtype 'object' is not allowed"),
    "result_rows_outside": ('send({"op": "rows", "id": req["id"], "y0": 119, "shape": [5, 160], "dtype": "float16"},'
                            ' b"\\x00" * 1600)', "result rows of shape (5, 160) at row 119"),
    "result_too_few_rows": ('send({"op": "result", "id": req["id"], "shape": [120, 160], "dtype": "float16"})',
                            "sent 0 result rows"),
    "asks_for_rows_outside": ('send({"op": "need", "id": req["id"], "y0": 0, "y1": 10**9})',
                              "asked for rows 0..1000000000 of an image of 120 rows"),
    "progress_without_numbers": ('send({"op": "progress", "id": req["id"], "done": "most"})',
                                 "sent a malformed progress message"),
    "unknown_message": ('send({"op": "format_disk", "id": req["id"]})', "sent an unknown message 'format_disk'"),
    "dies": ('print("worker: fatal: out of memory", file=sys.stderr, flush=True)\nos._exit(3)',
             "exited unexpectedly (exit code 3)"),
    "payload_never_comes": ('raw({"op": "progress", "id": req["id"], "nbytes": 1000})\n'
                            'out.write(b"x" * 10); out.flush()', "did not answer within 3 s"),
}


@pytest.mark.parametrize("case", sorted(MID_REQUEST))
def test_bad_reply_mid_request(tmp_path, real_client, default_style, case: str) -> None:
    action, expected = MID_REQUEST[case]
    python, pidfile = fake_worker(tmp_path, f"""\
        spawn_child()
        hello()
        req, _ = read()
        """ + textwrap.indent(action, "        ").lstrip() + """
        time.sleep(120)
        """)
    client = WorkerClient(python=python, reply_timeout=3)
    client.info()
    fake_pid = client.pid
    t0 = time.monotonic()
    with pytest.raises(WorkerError) as err:
        client.refine(SMALL, default_style)
    assert time.monotonic() - t0 < 15, "the client hung"
    first = first_line_is_a_sentence(str(err.value))
    assert expected in first, first
    if case == "dies":  # the worker's last words follow the first line
        assert "fatal: out of memory" in str(err.value).split("\n", 1)[1]
    assert_no_orphans(client, pidfile, fake_pid)
    assert real_client.refine(SMALL, default_style, tile=256).shape == SMALL.shape


DIES_MID_EXCHANGE = {
    # rows of 77 KB do not fit the pipe: the client's write fails rather than being buffered
    "while_rows_are_sent": 'send({"op": "need", "id": req["id"], "y0": 0, "y1": 120})\nos._exit(4)',
    # killed while writing a reply: the client reads a torn message
    "inside_a_reply": 'raw({"op": "progress", "id": req["id"], "nbytes": 1000})\nout.write(b"x" * 10); out.flush()\nos._exit(4)',
}


@pytest.mark.parametrize("case", sorted(DIES_MID_EXCHANGE))
def test_worker_dies_mid_exchange(tmp_path, real_client, default_style, case: str) -> None:
    """A worker killed while the client writes to it or reads from it (the races a SIGKILL
    mid-run hits): a broken pipe or a torn message is reported as what it is, the worker's
    exit, in the words a plain end of stream gives. No child here: one holding the worker's
    pipes would keep them open."""
    python, _ = fake_worker(tmp_path, "hello()\nreq, _ = read()\n" + DIES_MID_EXCHANGE[case] + "\n")
    client = WorkerClient(python=python, reply_timeout=10)
    client.info()
    with pytest.raises(WorkerError) as err:
        client.refine(SMALL, default_style)
    first = first_line_is_a_sentence(str(err.value))
    assert "exited unexpectedly (exit code 4)" in first, first
    assert not client.alive
    assert real_client.refine(SMALL, default_style, tile=256).shape == SMALL.shape


def test_caller_interrupted_mid_request(real_client, default_style) -> None:
    """Ctrl+C (or a failing progress callback) in the middle of a request: the worker,
    left mid-request, is replaced, and the next request on the same client is served."""
    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    old = real_client.pid
    with pytest.raises(KeyboardInterrupt):
        real_client.refine(grid(1500, 1500), default_style, tile=256, progress=interrupt)
    assert wait_gone(old, 10), "the interrupted worker was left running"
    t0 = time.monotonic()
    assert real_client.refine(SMALL, default_style, tile=256).shape == SMALL.shape
    assert time.monotonic() - t0 < 60 and real_client.pid != old


# -- concurrency -------------------------------------------------------------------------

def run_twice_at_once(work, timeout: float) -> None:
    """Run work(0) and work(1) on two threads; fail the test with whatever either raised."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pair = [threading.Thread(target=guarded, args=(i,)) for i in (0, 1)]
    for t in pair:
        t.start()
    for t in pair:
        t.join(timeout)
    assert not errors, errors


def test_two_threads_share_one_client(real_client, default_style) -> None:
    """Two refinements at once on one client: both right, one after the other, one worker."""
    images = [line_image(700, 700, seed=s) for s in (21, 22)]
    expected = [real_client.refine(img, default_style, tile=256) for img in images]
    starts = real_client.starts
    spans: dict[int, list[float]] = {0: [], 1: []}
    results: dict[int, np.ndarray] = {}
    go = threading.Barrier(2)

    def work(i: int) -> None:
        go.wait()
        out = real_client.refine(images[i], default_style, tile=256,
                                 progress=lambda d, t: spans[i].append(time.monotonic()))
        spans[i].append(time.monotonic())
        results[i] = out

    run_twice_at_once(work, 120)
    for i in (0, 1):
        np.testing.assert_array_equal(results[i], expected[i])
    first, second = sorted((0, 1), key=lambda i: spans[i][0])
    assert spans[first][-1] <= spans[second][0], "the two requests overlapped on one worker"
    assert real_client.starts == starts


def test_two_clients_at_once(default_style) -> None:
    img = line_image(600, 600, seed=23)
    results: dict[int, np.ndarray] = {}
    pids: dict[int, int] = {}

    def work(i: int) -> None:
        with WorkerClient(threads=1) as c:
            results[i] = c.refine(img, default_style, tile=256)
            pids[i] = c.pid

    run_twice_at_once(work, 180)
    np.testing.assert_array_equal(results[0], results[1])
    assert pids[0] != pids[1]
    for pid in pids.values():
        assert wait_gone(pid), "a closed client's worker is still running"


# -- the client dies ---------------------------------------------------------------------

CLIENT_SCRIPT = """\
import sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from test_worker_faults import grid
from linerelifer_addon.core.client import WorkerClient
client = WorkerClient()
client.info()
print("WORKER", client.pid, flush=True)
img = grid(3000, 3000)
client.refine(img, {style!r}, tile=256, progress=lambda d, t: print("TILE", d, t, flush=True))
print("DONE", flush=True)
"""


def test_client_killed_mid_refine_leaves_no_worker(tmp_path, default_style) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), style=str(default_style)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        worker = None
        for line in proc.stdout:
            if line.startswith("WORKER"):
                worker = int(line.split()[1])
            if line.startswith("TILE"):
                break
        assert worker is not None and alive(worker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        t0 = time.monotonic()
        assert wait_gone(worker, 15), "the worker outlived its client"
        print(f"\nworker exited {time.monotonic() - t0:.2f} s after its client was killed")
    finally:
        if proc.poll() is None:
            proc.kill()


def _cli(tmp_path: Path, n_files: int) -> tuple[subprocess.Popen, Path, Path]:
    import cv2

    src = tmp_path / "frames"
    src.mkdir()
    big = np.rint((1 - grid(3000, 3000)) * 255).astype(np.uint8)
    cv2.imwrite(str(src / "a_big.png"), big)
    for i in range(1, n_files):
        cv2.imwrite(str(src / f"b{i}.png"), np.rint((1 - line_image(200, 260, seed=i)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "linerelifer_addon", "refine", str(src), "-o", str(out),
                             "--tile", "256"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, src, out


def _worker_of(proc: subprocess.Popen, timeout: float = 60) -> int:
    """The CLI's worker, once it is running tiles: TensorFlow's thread pools exist then
    (the main thread and the request reader before that)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in children(proc.pid):
            try:
                if b"bootstrap.py" in Path(f"/proc/{pid}/cmdline").read_bytes() and threads(pid) >= 4:
                    return pid
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError("the CLI started no worker")


def test_worker_killed_during_a_cli_run(tmp_path) -> None:
    """The file being refined gets one error line; the others are refined by a new worker."""
    proc, src, out = _cli(tmp_path, 3)
    try:
        worker = _worker_of(proc)
        os.kill(worker, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "a_big.png" in errors[0] and "exited unexpectedly" in errors[0], stderr
    assert "Traceback" not in stderr
    assert "2 refined, 1 failed; worker started 2 time(s)" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["b1.png", "b2.png"]  # no partial a_big.png, no temp


def test_cli_terminated_mid_refine(tmp_path) -> None:
    """SIGTERM (a farm killing the job): the CLI stops its worker and leaves nothing."""
    proc, src, out = _cli(tmp_path, 2)
    try:
        worker = _worker_of(proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert wait_gone(worker, 10), "the worker outlived the CLI"
    assert not out.exists() or list(out.iterdir()) == []


def test_cli_killed_mid_refine(tmp_path) -> None:
    """SIGKILL (the OOM killer): nothing can run in the CLI, yet its worker stops too."""
    proc, src, out = _cli(tmp_path, 2)
    try:
        worker = _worker_of(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_gone(worker, 15), "the worker outlived the CLI"
    assert not out.exists() or list(out.iterdir()) == []


def test_interrupted_write_leaves_nothing(tmp_path) -> None:
    """The atomic write: an error or Ctrl+C in the middle leaves neither a temp file nor
    a half-written output, and an existing output stays as it was."""
    from linerelifer_addon.core.files import atomic_write

    dst = tmp_path / "frame.png"
    dst.write_bytes(b"the previous, complete output")

    def half(tmp: str, exc: BaseException) -> None:
        Path(tmp).write_bytes(b"half of a PNG")
        raise exc

    for exc in (OSError(28, "No space left on device"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            atomic_write(dst, lambda tmp: half(tmp, exc))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.png"]
        assert dst.read_bytes() == b"the previous, complete output"


# -- Blender quits in the middle -----------------------------------------------------------

BLENDER_QUIT = """\
import os, sys, threading, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
import bpy
import linerelifer_addon
linerelifer_addon.register()
from linerelifer_addon.blender import ops, pipeline, session
from linerelifer_addon.core.conversion import to_coverage
from blender_scene import build_scene
from test_worker_faults import grid

# A real still: the capture writes and removes its temp folder.
scene = build_scene(width=64, height=48, samples=1)
bpy.ops.render.render()
small = pipeline.prepare_still(scene)

# A long refinement on a thread, as the modal Refine Lines operator runs it.
job = pipeline.Job(line_image=to_coverage(1.0 - grid(8000, 8000)),  # a minute of tiles
                   style=small.style, tile=256, strength=1.0, color=None, uses_pass=False)
client = session.get_client()
started = threading.Event()
def progress(done, total):
    if not started.is_set():
        print("WORKER", client.pid, flush=True)
        started.set()
thread = ops._Worker(lambda: pipeline.run(job, client, progress=progress, cancel=threading.Event()))
thread.start()
if not started.wait(120):
    print("NO PROGRESS", flush=True)
print("QUITTING", flush=True)
t0 = time.monotonic()
{quit}
"""


@pytest.mark.parametrize("how", ["quit", "crash"])
def test_blender_quits_mid_refine(tmp_path, how: str) -> None:
    """Quitting runs the add-on's atexit shutdown while the refine thread holds the client;
    a crash runs nothing at all and the worker must notice its stdin closing."""
    quit_code = {"quit": "sys.exit(0)", "crash": "os._exit(134)"}[how]
    script = tmp_path / "blender_quit.py"
    script.write_text(BLENDER_QUIT.format(root=str(ROOT), tests=str(ROOT / "tests"), quit=quit_code))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "BLENDER_USER_RESOURCES": str(tmp_path / "blender user")}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        worker = None
        for line in proc.stdout:
            if line.startswith("WORKER"):
                worker = int(line.split()[1])
            if line.startswith(("QUITTING", "NO PROGRESS")):
                break
        assert worker is not None, proc.stderr.read()[-3000:]
        t0 = time.monotonic()
        rest, err = proc.communicate(timeout=60)
        quit_seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"\nBlender ({how}) exited {quit_seconds:.2f} s after quitting mid-refine")
    assert proc.returncode == (0 if how == "quit" else 134), err[-2000:]
    assert quit_seconds < 10, "Blender waited for the refinement (or hung) on quit"
    assert wait_gone(worker, 10), "the worker outlived Blender"
    leftovers = sorted(p.name for p in tmp.iterdir())
    if how == "crash":  # Blender's own session folder is removed by Blender's exit code only
        leftovers = [name for name in leftovers if not name.startswith("blender_")]
    assert leftovers == [], f"temp files left: {leftovers}"
