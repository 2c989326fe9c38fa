"""The worker's request loop.

stdin carries requests and stdout replies (see core.protocol). A reader thread keeps
reading stdin while a request runs, so cancel, shutdown and end-of-input are seen between
tiles; end of input (the client died) stops the worker too. Anything else printed to stdout by libraries is redirected to stderr so it cannot
corrupt the protocol.
"""
from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
from typing import Any, BinaryIO

import numpy as np

from ..core import protocol
from ..core.styles import StyleError


def _take_stdout() -> BinaryIO:
    """A private handle on the real stdout; fd 1 then points at stderr."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory (Linux), for benchmarks and soak tests."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class Server:
    def __init__(self, inbox: BinaryIO, outbox: BinaryIO, idle_timeout: float) -> None:
        self.inbox, self.outbox = inbox, outbox
        self.idle_timeout = idle_timeout
        self.requests: queue.Queue = queue.Queue()
        self.cancelled: set[int] = set()
        self.stopping = threading.Event()
        self.engines: dict[str, Any] = {}
        self.write_lock = threading.Lock()

    def send(self, header: dict[str, Any], payload: bytes | memoryview = b"") -> None:
        with self.write_lock:
            protocol.write_message(self.outbox, header, payload)

    def read_loop(self) -> None:
        try:
            while True:
                msg = protocol.read_message(self.inbox)
                if msg is None:
                    break
                op = msg[0].get("op")
                if op == "cancel":
                    self.cancelled.add(msg[0].get("id"))
                elif op == "shutdown":
                    break
                else:
                    self.requests.put(msg)
        except (protocol.ProtocolError, OSError, ValueError) as exc:
            print(f"linerelifer worker: bad request stream ({exc}); stopping", file=sys.stderr)
        self.stopping.set()
        self.requests.put(None)

    def engine(self, style: str) -> Any:
        from .engine import Engine

        key = os.path.realpath(style)
        if key not in self.engines:
            self.engines.clear()  # one style at a time keeps memory bounded
            self.engines[key] = Engine(style)
        return self.engines[key]

    def handle_refine(self, header: dict[str, Any], payload: bytes) -> None:
        rid = header.get("id")
        try:
            image = protocol.array_from(header, payload)
            if image.ndim != 2:
                raise ValueError(f"coverage must be 2-D, got shape {image.shape}")
            engine = self.engine(str(header.get("style", "")))
        except (StyleError, ValueError, protocol.ProtocolError) as exc:
            self.send({"op": "error", "id": rid, "kind": "request", "message": str(exc)})
            return

        def progress(done: int, total: int) -> None:
            self.send({"op": "progress", "id": rid, "done": done, "total": total})

        def should_stop() -> bool:
            return rid in self.cancelled or self.stopping.is_set()

        t0 = time.perf_counter()
        result = engine.refine(image, tile=header.get("tile"), skip_blank=bool(header.get("skip_blank", True)),
                               progress=progress, should_stop=should_stop, out_dtype=np.float16)
        if result is None:
            self.cancelled.discard(rid)
            self.send({"op": "cancelled", "id": rid})
            return
        out = result
        self.send({"op": "result", "id": rid, "seconds": round(time.perf_counter() - t0, 6),
                   "rss_peak_mb": _peak_rss_mb(), **protocol.array_header(out)}, memoryview(out).cast("B"))

    def serve(self) -> int:
        threading.Thread(target=self.read_loop, daemon=True).start()
        while True:
            try:
                msg = self.requests.get(timeout=self.idle_timeout)
            except queue.Empty:
                print("linerelifer worker: idle timeout, exiting", file=sys.stderr)
                return 0
            if msg is None or self.stopping.is_set():
                return 0
            header, payload = msg
            if header.get("op") == "refine":
                try:
                    self.handle_refine(header, payload)
                except Exception as exc:  # report, stay alive for the next request
                    import traceback

                    traceback.print_exc()
                    self.send({"op": "error", "id": header.get("id"), "kind": "internal",
                               "message": f"refinement failed inside the worker ({type(exc).__name__}: {exc})"})
            elif header.get("op") == "ping":
                self.send({"op": "pong", "id": header.get("id")})
            else:
                self.send({"op": "error", "id": header.get("id"), "kind": "request",
                           "message": f"unknown request {header.get('op')!r}"})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="linerelifer-worker")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--idle-timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    outbox = _take_stdout()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from .engine import configure_threads

    configure_threads(args.threads)
    versions = {"python": sys.version.split()[0], "tensorflow": tf.__version__,
                "keras": keras.__version__, "numpy": np.__version__}
    server = Server(sys.stdin.buffer, outbox, args.idle_timeout)
    server.send({"op": "hello", "versions": versions, "pid": os.getpid()})
    return server.serve()
