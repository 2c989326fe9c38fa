"""The client side of the worker: one warm process, many requests.

A worker start costs a third of a second with LiteRT and seconds and hundreds of MB with
TensorFlow, so one worker process serves every request of a session (a CLI call, a Blender
session, an animation). The client starts it
lazily, restarts it when it has died, and turns every failure into one clear error that
carries the tail of the worker's stderr.
"""
from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import protocol, tiling
from .linewidth import line_width, refine_at_width, width_settings
from .nib import check_thick_thin, draw_nib, hard_edged, style_thick_thin
from .runtime import REQUIREMENTS, resolve_python

WORKER_SCRIPT = Path(__file__).resolve().parent.parent / "worker" / "bootstrap.py"


def _blank_rows(head: dict[str, Any]) -> np.ndarray:
    """A result band the worker announced as blank (shape only), as a broadcast zero view."""
    shape = head.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise protocol.ProtocolError(f"blank rows of shape {shape!r} are invalid")
    return np.broadcast_to(np.float16(0), tuple(shape))


class WorkerError(RuntimeError):
    """The worker could not serve a request."""


class WorkerStartError(WorkerError):
    """The worker could not be started: a setup problem the user can fix."""


class RequestError(WorkerError):
    """The worker refused a request (a bad style or input): the user's to fix."""


class Cancelled(Exception):
    """The request was cancelled by the caller."""


class WorkerClient:
    """Owns one worker process; requests are serialised by a lock."""

    def __init__(
        self,
        python: str | os.PathLike | None = None,
        threads: int | None = None,
        idle_timeout: float = 600.0,
        reply_timeout: float = 120.0,
        start_timeout: float = 180.0,
        backend: str | None = None,
        site_dirs: Sequence[str] = (),
    ) -> None:
        self.python = resolve_python(python)
        self.threads = threads
        self.backend = backend  # None: the worker reads $LINERELIFER_BACKEND (auto by default)
        self.site_dirs = [str(d) for d in site_dirs if d]
        self.idle_timeout = idle_timeout
        self.reply_timeout = reply_timeout
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen | None = None
        self._messages: queue.Queue = queue.Queue()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=30)
        self._lock = threading.Lock()
        self._next_id = 1
        self._hello: dict[str, Any] = {}
        self.starts = 0
        self.last_stats: dict[str, Any] = {}  # worker-side seconds, peak RSS, precision, backend of the last result

    # -- process lifetime -------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.alive else None

    def _start(self) -> None:
        if not os.path.isfile(self.python):
            raise WorkerStartError(
                f"worker Python {self.python} does not exist; set it in the preferences, --python or LINERELIFER_PYTHON")
        # -B: no __pycache__ written into the (extension's) package folder.
        args = [self.python, "-u", "-B", str(WORKER_SCRIPT), "--idle-timeout", str(self.idle_timeout)]
        if self.threads:
            args += ["--threads", str(int(self.threads))]
        if self.backend:
            args += ["--backend", self.backend]
        for site in self.site_dirs:
            args += ["--site", site]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
               "PYTHONNOUSERSITE": "1"}
        try:
            # Its own process group, so that killing it also ends anything it started (a wrapper
            # script's child, for one) and a Ctrl+C meant for the client does not reach it.
            self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, env=env, close_fds=True,
                                          start_new_session=os.name == "posix")
        except OSError as exc:
            raise WorkerStartError(f"worker Python {self.python} could not be started ({exc})") from None
        self.starts += 1
        self._messages = queue.Queue()
        self._stderr_tail.clear()
        threading.Thread(target=self._read_stdout, args=(self._proc, self._messages), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self._proc,), daemon=True).start()
        header, _ = self._receive(self.start_timeout, starting=True)
        if header.get("op") != "hello":
            self._fail(f"sent {header.get('op')!r} instead of its greeting", starting=True)
        self._hello = header

    def _read_stdout(self, proc: subprocess.Popen, messages: queue.Queue) -> None:
        try:
            while True:
                msg = protocol.read_message(proc.stdout)
                messages.put(msg)
                if msg is None:
                    return
        except (protocol.ProtocolError, OSError, ValueError) as exc:
            messages.put(exc)

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        try:
            for raw in iter(proc.stderr.readline, b""):
                self._stderr_tail.append(raw.decode("utf-8", "replace").rstrip())
        except (OSError, ValueError):  # _kill closed the stream under this thread
            return

    def stderr_tail(self, lines: int = 8) -> str:
        return "\n".join(list(self._stderr_tail)[-lines:])

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if os.name == "posix":
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker and whatever it started
            except OSError:
                pass
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def _fail(self, reason: str, starting: bool = False) -> None:
        """Kill the worker and raise one error naming the cause and its last words.

        The first line of the message is a complete sentence (Blender's report and the CLI
        show only that line); the worker's last output follows on the next lines.
        """
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout=2)  # let stderr drain if it is exiting anyway
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        time.sleep(0.05)
        tail = self.stderr_tail()
        cls = WorkerStartError if starting else WorkerError
        if starting and "No module named" in tail:
            missing = tail.rsplit("No module named", 1)[1].strip().splitlines()[0]
            raise cls(f"worker Python {self.python} lacks the module {missing}; install {' '.join(REQUIREMENTS)} "
                      "in it, or choose a Python that has them (Blender: the Worker Python preference; "
                      "CLI: --python; either: LINERELIFER_PYTHON)")
        raise cls(f"LineRelifer worker {reason}." + (f"\nIts last output:\n{tail}" if tail else ""))

    def _next_message(self, timeout: float, starting: bool = False) -> Any:
        """The next message from the reader thread; queue.Empty after `timeout`.

        Waits in short steps and checks the process itself meanwhile: a worker that died
        while something it started still holds its stdout open gives no end of stream.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._messages.get(timeout=max(min(deadline - time.monotonic(), 0.5), 0.001))
            except queue.Empty:
                proc = self._proc
                if proc is not None and proc.poll() is not None:
                    try:  # its last message may still be on the way
                        return self._messages.get(timeout=0.2)
                    except queue.Empty:
                        self._fail(f"exited unexpectedly (exit code {proc.returncode})", starting)
                if time.monotonic() >= deadline:
                    raise

    def _receive(self, timeout: float, starting: bool = False) -> tuple[dict[str, Any], bytes]:
        try:
            msg = self._next_message(timeout, starting)
        except queue.Empty:
            self._fail(f"did not answer within {timeout:.0f} s", starting)
        if msg is None:
            self._fail(f"exited unexpectedly (exit code {self._exit_code(10.0)})", starting)
        if isinstance(msg, Exception):
            code = self._exit_code(0.5)
            if code is not None:  # killed mid-message: its death, not the torn message, is the cause
                self._fail(f"exited unexpectedly (exit code {code})", starting)
            self._fail(f"sent a malformed reply ({msg})", starting)
        return msg

    def close(self) -> None:
        """Ask the worker to stop, then make sure it has.

        Never waits for a running request: when one holds the lock (Blender quitting in the
        middle of a refinement), the worker is killed and that request fails with WorkerError.
        """
        if not self._lock.acquire(timeout=0.5):
            self._kill()
            return
        try:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                try:
                    protocol.write_message(proc.stdin, {"op": "shutdown"})
                    proc.stdin.close()
                    proc.wait(timeout=10)
                except (OSError, ValueError, subprocess.TimeoutExpired):
                    pass
            self._kill()
        finally:
            self._lock.release()

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._kill()
        except Exception:
            pass

    # -- requests ---------------------------------------------------------------------
    def _ensure(self) -> None:
        if not self.alive:
            self._kill()
            self._start()

    def info(self) -> dict[str, Any]:
        """Versions reported by the (started) worker."""
        with self._lock:
            self._ensure()
            return dict(self._hello.get("versions", {}))

    def loaded_modules(self) -> list[str]:
        """Which of TensorFlow, Keras and LiteRT the worker has imported so far."""
        with self._lock:
            self._ensure()
            rid = self._next_id
            self._next_id += 1
            self._send({"op": "ping", "id": rid})
            while True:
                head, _ = self._receive(self.reply_timeout)
                if head.get("op") == "pong" and head.get("id") == rid:
                    return list(head.get("loaded", []))

    def refine(
        self,
        coverage: np.ndarray,
        style: str | os.PathLike,
        tile: int = 0,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        skip_blank: bool = True,
        at_width: bool = True,
        thick_thin: float | None = 0.0,
    ) -> np.ndarray:
        """Refined coverage (float32, same shape) for an H×W coverage image; tile 0 lets the
        worker choose the tile size for the frame.

        The pixels travel in bands of rows, as the worker asks for them (float32: numpy's
        float16 casts cost LiteRT a third of a 1080p frame), and the result comes back band by
        band: neither process copies the whole frame at once.
        With `at_width`, a frame of thick lines is first scaled down so its lines reach the
        style's native width, and the result scaled back (core/linewidth.py). `thick_thin` > 0
        then draws a broad nib's thick and thin over the result (core/nib.py); None draws the
        style's own (`thick_thin` in its metadata: 1 for the default style, else 0).
        """
        coverage = np.asarray(coverage)
        if coverage.ndim != 2:
            raise ValueError(f"coverage must be a 2-D array, not {coverage.shape}")
        h, w = coverage.shape
        if h == 0 or w == 0:
            raise ValueError(f"coverage of shape {coverage.shape} is empty")
        if thick_thin is None:
            thick_thin = style_thick_thin(style)
        check_thick_thin(thick_thin)
        if at_width or thick_thin > 0:
            width = line_width(coverage)  # read once: the resampling and the nib both use it
            if at_width:
                native, gain = width_settings(style)
                refined = refine_at_width(coverage, native, lambda c: self.refine(
                    c, style, tile, progress, cancel, skip_blank, at_width=False), edge_gain=gain, width=width)
            else:
                refined = self.refine(coverage, style, tile, progress, cancel, skip_blank, at_width=False)
            if thick_thin == 0:
                return refined
            if cancel is not None and cancel.is_set():
                raise Cancelled("refinement cancelled")
            return draw_nib(refined, width, thick_thin, hard_edges=hard_edged(coverage), source=coverage)
        out = np.zeros((h, w), np.float32)
        with self._lock:
            self._ensure()
            rid = self._next_id
            self._next_id += 1
            header = {"op": "refine", "id": rid, "style": str(style), "tile": int(tile),
                      "skip_blank": bool(skip_blank), "stream": True, "shape": [h, w], "dtype": "float32"}
            if skip_blank:  # the worker then fetches and runs only the part near the ink
                box = tiling.ink_box(coverage)
                header["ink_box"] = list(box) if box is not None else []
                if box is not None:
                    header["ink_cells"] = protocol.pack_cells(*tiling.ink_cells(coverage, box))
            try:
                return self._serve_request(rid, header, coverage, out, progress, cancel)
            except (WorkerError, Cancelled):
                raise  # the worker finished with the request, or _fail() has stopped it
            except BaseException:
                # Ctrl+C, or the caller's progress callback failed: the worker is mid-request
                # and would wait for rows nobody sends; a new one serves the next request.
                self._kill()
                raise

    def _serve_request(self, rid: int, header: dict[str, Any], coverage: np.ndarray, out: np.ndarray,
                       progress: Callable[[int, int], None] | None,
                       cancel: threading.Event | None) -> np.ndarray:
        h, w = coverage.shape
        received = 0
        self._send(header)
        cancel_sent = False
        deadline = time.monotonic() + self.reply_timeout
        while True:
            if cancel is not None and cancel.is_set() and not cancel_sent:
                self._send({"op": "cancel", "id": rid})
                cancel_sent = True
                deadline = time.monotonic() + self.reply_timeout
            remaining = deadline - time.monotonic()
            watching = cancel is not None and not cancel_sent
            try:
                msg = self._next_message(max(min(remaining, 0.1) if watching else remaining, 0.01))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    self._fail(f"did not answer within {self.reply_timeout:.0f} s")
                continue
            if msg is None or isinstance(msg, Exception):
                self._messages.put(msg)
                self._receive(0.1)
            deadline = time.monotonic() + self.reply_timeout
            head, payload = msg
            if head.get("id") not in (None, rid):
                continue  # a late reply to an earlier, cancelled request
            op = head.get("op")
            if op == "progress":
                try:
                    done, total = int(head["done"]), int(head["total"])
                except (KeyError, TypeError, ValueError):
                    self._fail(f"sent a malformed progress message {head!r}")
                if progress is not None:
                    progress(done, total)
            elif op == "need":
                y0, y1 = head.get("y0"), head.get("y1")
                if not (isinstance(y0, int) and isinstance(y1, int) and 0 <= y0 < y1 <= h):
                    self._fail(f"asked for rows {y0!r}..{y1!r} of an image of {h} rows")
                rows = np.ascontiguousarray(coverage[y0:y1], dtype=np.float32)
                if not np.isfinite(rows).all():  # NaN would spread through the network
                    rows = np.nan_to_num(rows, nan=0.0, posinf=1.0, neginf=0.0)
                head = {"op": "rows", "id": rid, "y0": y0, **protocol.array_header(rows)}
                if rows.any():
                    self._send(head, memoryview(rows).cast("B"))
                else:  # blank paper: its shape says it all
                    self._send({**head, "blank": True})
            elif op == "rows":
                try:
                    if head.get("blank") and not payload:
                        band = _blank_rows(head)
                    else:
                        band = protocol.array_from(head, payload)
                except protocol.ProtocolError as exc:
                    self._fail(f"sent a malformed result ({exc})")
                y0 = head.get("y0")
                if not (isinstance(y0, int) and band.ndim == 2 and band.shape[1] == w
                        and 0 <= y0 and y0 + band.shape[0] <= h):
                    self._fail(f"sent result rows of shape {band.shape} at row {y0!r} for an image of shape {(h, w)}")
                if not head.get("blank"):  # `out` is zeros already; untouched pages cost no memory
                    out[y0:y0 + band.shape[0]] = band
                received += band.shape[0]
            elif op == "result":
                self.last_stats = {k: head.get(k) for k in ("seconds", "rss_peak_mb", "precision", "backend")}
                if head.get("shape") != [h, w] or received != h:
                    self._fail(f"sent {received} result rows of shape {head.get('shape')} for an image of "
                               f"shape {(h, w)}")
                return out
            elif op == "cancelled":
                raise Cancelled("refinement cancelled")
            elif op == "error":
                cls = RequestError if head.get("kind") == "request" else WorkerError
                raise cls(str(head.get("message", "unknown worker error")))
            else:
                self._fail(f"sent an unknown message {op!r}")

    def _send(self, header: dict[str, Any], payload: bytes | memoryview = b"") -> None:
        proc = self._proc
        if proc is None:  # close() killed it from another thread
            self._fail("was stopped while serving the request")
        try:
            protocol.write_message(proc.stdin, header, payload)
        except (OSError, ValueError):
            code = self._exit_code(2.0)  # a broken pipe almost always means the worker died: say so, as a read would
            if code is None:
                self._fail("stopped reading the request")
            self._fail(f"exited unexpectedly (exit code {code})")

    def _exit_code(self, wait: float) -> int | None:
        """The worker's exit code if it has exited or does within `wait` s; None while it runs."""
        proc = self._proc
        if proc is None:
            return None
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None
