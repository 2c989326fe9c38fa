"""The client side of the worker: one warm process, many requests.

TensorFlow costs seconds and hundreds of MB to import, so one worker process serves every
request of a session (a CLI call, a Blender session, an animation). The client starts it
lazily, restarts it when it has died, and turns every failure into one clear error that
carries the tail of the worker's stderr.
"""
from __future__ import annotations

import collections
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import protocol
from .runtime import REQUIREMENTS, resolve_python

WORKER_SCRIPT = Path(__file__).resolve().parent.parent / "worker" / "bootstrap.py"


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
    ) -> None:
        self.python = resolve_python(python)
        self.threads = threads
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
        self.last_stats: dict[str, Any] = {}  # worker-side seconds and peak RSS of the last result

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
        args = [self.python, "-u", str(WORKER_SCRIPT), "--idle-timeout", str(self.idle_timeout)]
        if self.threads:
            args += ["--threads", str(int(self.threads))]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
               "PYTHONNOUSERSITE": "1"}
        try:
            self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, env=env, close_fds=True)
        except OSError as exc:
            raise WorkerStartError(f"worker Python {self.python} could not be started ({exc})") from None
        self.starts += 1
        self._messages = queue.Queue()
        self._stderr_tail.clear()
        threading.Thread(target=self._read_stdout, args=(self._proc, self._messages), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self._proc,), daemon=True).start()
        header, _ = self._receive(self.start_timeout, starting=True)
        if header.get("op") != "hello":
            self._fail(f"worker sent {header.get('op')!r} instead of its greeting")
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
        for raw in iter(proc.stderr.readline, b""):
            self._stderr_tail.append(raw.decode("utf-8", "replace").rstrip())

    def stderr_tail(self, lines: int = 8) -> str:
        return "\n".join(list(self._stderr_tail)[-lines:])

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
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
        """Kill the worker and raise one error naming the cause and its last words."""
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
            raise cls(f"worker Python {self.python} lacks the module {missing}; install the runtime "
                      f"({' '.join(REQUIREMENTS)}) or point LINERELIFER_PYTHON at one that has it")
        raise cls(f"LineRelifer worker {reason}" + (f"; its last output:\n{tail}" if tail else ""))

    def _receive(self, timeout: float, starting: bool = False) -> tuple[dict[str, Any], bytes]:
        try:
            msg = self._messages.get(timeout=timeout)
        except queue.Empty:
            self._fail(f"did not answer within {timeout:.0f} s", starting)
        if msg is None:
            code = self._proc.wait(timeout=10) if self._proc is not None else None
            self._fail(f"exited unexpectedly (exit code {code})", starting)
        if isinstance(msg, Exception):
            self._fail(f"sent a malformed reply ({msg})", starting)
        return msg

    def close(self) -> None:
        """Ask the worker to stop, then make sure it has."""
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                try:
                    protocol.write_message(proc.stdin, {"op": "shutdown"})
                    proc.stdin.close()
                    proc.wait(timeout=10)
                except (OSError, ValueError, subprocess.TimeoutExpired):
                    pass
            self._kill()

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

    def refine(
        self,
        coverage: np.ndarray,
        style: str | os.PathLike,
        tile: int = 512,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        skip_blank: bool = True,
    ) -> np.ndarray:
        """Refined coverage (float32, same shape) for an H×W coverage image."""
        cov = np.ascontiguousarray(coverage, dtype=np.float16)
        if cov.ndim != 2:
            raise ValueError(f"coverage must be a 2-D array, not {coverage.shape}")
        with self._lock:
            self._ensure()
            rid = self._next_id
            self._next_id += 1
            header = {"op": "refine", "id": rid, "style": str(style), "tile": int(tile),
                      "skip_blank": bool(skip_blank), **protocol.array_header(cov)}
            self._send(header, memoryview(cov).cast("B"))
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
                    msg = self._messages.get(timeout=max(min(remaining, 0.1) if watching else remaining, 0.01))
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
                    if progress is not None:
                        progress(int(head["done"]), int(head["total"]))
                elif op == "result":
                    self.last_stats = {k: head.get(k) for k in ("seconds", "rss_peak_mb")}
                    try:
                        out = protocol.array_from(head, payload)
                    except protocol.ProtocolError as exc:
                        self._fail(f"sent a malformed result ({exc})")
                    return out.astype(np.float32)
                elif op == "cancelled":
                    raise Cancelled("refinement cancelled")
                elif op == "error":
                    cls = RequestError if head.get("kind") == "request" else WorkerError
                    raise cls(str(head.get("message", "unknown worker error")))
                else:
                    self._fail(f"sent an unknown message {op!r}")

    def _send(self, header: dict[str, Any], payload: bytes | memoryview = b"") -> None:
        try:
            protocol.write_message(self._proc.stdin, header, payload)
        except (OSError, ValueError):
            self._fail("stopped while receiving the request")
