"""The worker's request loop.

stdin carries requests and stdout replies (see core.protocol). A reader thread keeps
reading stdin while a request runs, so cancel, shutdown and end-of-input are seen between
tiles; end of input (the client died) stops the worker too. Anything else printed to stdout by libraries is redirected to stderr so it cannot
corrupt the protocol.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import queue
import sys
import threading
import time
from typing import Any, BinaryIO

import numpy as np

from ..core import protocol
from ..core.backends import BACKEND_ENV, LITERT_MODULE, choose_backend, requested_backend, tflite_path
from ..core.styles import StyleError


def _rows_from(head: dict[str, Any], data: bytes, expected: tuple[int, int]) -> np.ndarray:
    """A band of rows: an array, or `blank` rows announced by their shape alone."""
    if head.get("blank") and not data:
        shape = head.get("shape")
        if not (isinstance(shape, list) and tuple(shape) == expected):
            raise protocol.ProtocolError(f"blank rows of shape {shape!r} are not the {expected} asked for")
        if head.get("dtype") not in protocol.ARRAY_DTYPES:
            raise protocol.ProtocolError(f"array dtype {head.get('dtype')!r} is not allowed")
        return np.zeros(shape, head["dtype"])
    return protocol.array_from(head, data)


MAX_SIDE = 65536  # Blender's largest render size


def _ink_box(header: dict[str, Any], shape: list[int]) -> tuple[int, int, int, int] | None | bool:
    """The request's `ink_box`: [y0, y1, x0, x1] where the client found ink, [] for none;
    False when it sent none (then the whole frame is run)."""
    box = header.get("ink_box")
    if box is None:
        return False
    if box == []:
        return None
    h, w = shape
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) for v in box)
            and 0 <= box[0] < box[1] <= h and 0 <= box[2] < box[3] <= w):
        raise ValueError(f"ink box {box!r} does not lie in an image of shape {tuple(shape)}")
    return box[0], box[1], box[2], box[3]


def _result_dtype(request_dtype: str) -> np.dtype:
    """float16 rows get float16 results; float32 and uint8 rows get float32."""
    return np.dtype(np.float16 if request_dtype == "float16" else np.float32)


def _say(message: str) -> None:
    """One line on stderr; the client may be gone with its end of the pipe, and a failed
    write must not stop the worker from noticing that and exiting."""
    try:
        print(f"linerelifer worker: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class _Stopped(Exception):
    """Cancelled, shut down or the client went away while the worker waited for rows."""


class _BadRows(Exception):
    """The client sent something other than the rows asked for."""


class ClientGone(Exception):
    """stdout is closed: the client has gone and nobody reads the replies."""


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
    def __init__(self, inbox: BinaryIO, outbox: BinaryIO, idle_timeout: float,
                 backend: str = "auto", threads: int | None = None) -> None:
        self.inbox, self.outbox = inbox, outbox
        self.idle_timeout = idle_timeout
        self.backend = backend
        self.threads = threads
        self.litert_ok = importlib.util.find_spec(LITERT_MODULE) is not None
        self.tf_configured = False
        self.requests: queue.Queue = queue.Queue()
        self.cancelled: set[int] = set()
        self.stopping = threading.Event()
        self.engines: dict[str, Any] = {}
        self.write_lock = threading.Lock()

    def send(self, header: dict[str, Any], payload: bytes | memoryview = b"") -> None:
        with self.write_lock:
            try:
                protocol.write_message(self.outbox, header, payload)
            except (OSError, ValueError) as exc:
                raise ClientGone(str(exc)) from None

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
            _say(f"bad request stream ({exc}); stopping")
        finally:  # whatever ended the stream, the request loop must learn of it
            self.stopping.set()
            self.requests.put(None)

    def engine(self, style: str) -> Any:
        path = os.path.realpath(style)
        backend = choose_backend(path, self.backend, litert_ok=self.litert_ok)
        try:
            key = (backend, path, *_stamp(path), *_stamp(tflite_path(path)))  # re-exported in place: reloaded
        except OSError:
            key = (backend, path)
        if key not in self.engines:
            self.engines.clear()  # one style at a time keeps memory bounded
            self.engines[key] = self._open(style, backend)
        return self.engines[key]

    def _open(self, style: str, backend: str) -> Any:
        if backend == "litert":
            from .litert import LiteRTEngine

            return LiteRTEngine(style, threads=self.threads)
        from .engine import Engine, configure_threads  # imports TensorFlow only when an Engine is made

        if importlib.util.find_spec("tensorflow") is None:
            py = sys.executable
            if requested_backend(self.backend) == "tensorflow":
                raise StyleError(f"TensorFlow was asked for ({BACKEND_ENV}=tensorflow) but the worker's Python {py} "
                                 f"has none; install tensorflow-cpu in it or unset {BACKEND_ENV}")
            if tflite_path(style).is_file():
                raise StyleError(f"the worker's Python {py} has neither LiteRT nor TensorFlow; install "
                                 "ai-edge-litert in it or choose another Worker Python")
            raise StyleError(f"style {style} has no LiteRT file ({tflite_path(style).name}) and the worker's Python "
                             f"{py} has no TensorFlow; convert it with `python -m training export` "
                             "or set a Worker Python that has TensorFlow")
        if not self.tf_configured:  # TensorFlow's pools are set once, before its first op
            configure_threads(self.threads)
            self.tf_configured = True
        return Engine(style)

    def handle_refine(self, header: dict[str, Any], payload: bytes) -> None:
        if header.get("stream"):
            return self.handle_refine_stream(header)
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
                               progress=progress, should_stop=should_stop, out_dtype=_result_dtype(image.dtype.name))
        if result is None:
            self.cancelled.discard(rid)
            self.send({"op": "cancelled", "id": rid})
            return
        out = result
        self.send({"op": "result", "id": rid, "seconds": round(time.perf_counter() - t0, 6),
                   "precision": engine.precision, "backend": engine.backend,
                   "rss_peak_mb": _peak_rss_mb(), **protocol.array_header(out)}, memoryview(out).cast("B"))

    def handle_refine_stream(self, header: dict[str, Any]) -> None:
        """A refinement whose pixels travel in bands of rows: the worker asks for the rows
        the next row of tiles reads and sends back each finished band, so it never holds a
        whole frame (a 16k×16k coverage is 1 GB as float32, its result as much again). Results
        come back in the dtype the rows came in (float32 or float16; float32 for uint8)."""
        rid = header.get("id")
        shape = header.get("shape")
        try:
            if not (isinstance(shape, list) and len(shape) == 2
                    and all(isinstance(s, int) and 0 < s <= MAX_SIDE for s in shape)):
                raise ValueError(f"coverage shape {shape!r} is not that of a 2-D image")
            if header.get("dtype") not in protocol.ARRAY_DTYPES:
                raise ValueError(f"array dtype {header.get('dtype')!r} is not allowed")
            box = _ink_box(header, shape)
            cells = protocol.unpack_cells(header["ink_cells"], *shape) if header.get("ink_cells") else None
            engine = self.engine(str(header.get("style", "")))
        except (StyleError, ValueError) as exc:
            self.send({"op": "error", "id": rid, "kind": "request", "message": str(exc)})
            return
        h, w = shape
        dtype = header["dtype"]
        out_dtype = _result_dtype(dtype)

        def should_stop() -> bool:
            return rid in self.cancelled or self.stopping.is_set()

        def fetch(y0: int, y1: int) -> np.ndarray:
            self.send({"op": "need", "id": rid, "y0": y0, "y1": y1})
            waited = 0.0
            while True:
                try:
                    msg = self.requests.get(timeout=0.1)
                except queue.Empty:
                    waited += 0.1
                    if should_stop() or waited > self.idle_timeout:
                        raise _Stopped() from None
                    continue
                if msg is None:
                    self.requests.put(None)  # keep the end of input for serve()
                    raise _Stopped()
                head, data = msg
                if head.get("op") == "rows" and head.get("id") != rid:
                    continue  # late rows for a request that was cancelled
                if head.get("op") != "rows" or head.get("id") != rid or head.get("y0") != y0:
                    raise _BadRows(f"expected rows {y0}..{y1} of request {rid}, got {head.get('op')!r}")
                try:
                    rows = _rows_from(head, data, (y1 - y0, w))
                except protocol.ProtocolError as exc:
                    raise _BadRows(str(exc)) from None
                if rows.shape != (y1 - y0, w) or rows.dtype.name != dtype:
                    raise _BadRows(f"rows {y0}..{y1} arrived as {rows.dtype.name} {rows.shape}, "
                                   f"not {dtype} {(y1 - y0, w)}")
                return rows

        def emit(y0: int, band: np.ndarray) -> None:
            head = {"op": "rows", "id": rid, "y0": y0, **protocol.array_header(band)}
            if band.any():
                self.send(head, memoryview(band).cast("B"))
            else:  # blank paper (most of a sparse frame) is not worth sending
                self.send({**head, "blank": True})

        def progress(done: int, total: int) -> None:
            self.send({"op": "progress", "id": rid, "done": done, "total": total})

        t0 = time.perf_counter()
        try:
            finished = engine.refine_banded((h, w), fetch, emit, tile=header.get("tile"),
                                            skip_blank=bool(header.get("skip_blank", True)),
                                            progress=progress, should_stop=should_stop, out_dtype=out_dtype,
                                            ink_box=box, ink_cells=cells)
        except _Stopped:
            finished = False
        except _BadRows as exc:
            self.send({"op": "error", "id": rid, "kind": "request", "message": f"bad request data ({exc})"})
            return
        if not finished:
            self.cancelled.discard(rid)
            self.send({"op": "cancelled", "id": rid})
            return
        self.send({"op": "result", "id": rid, "seconds": round(time.perf_counter() - t0, 6),
                   "precision": engine.precision, "backend": engine.backend,
                   "rss_peak_mb": _peak_rss_mb(), "shape": [h, w], "dtype": out_dtype.name, "streamed": True})

    def serve(self) -> int:
        threading.Thread(target=self.read_loop, daemon=True).start()
        while True:
            try:
                msg = self.requests.get(timeout=self.idle_timeout)
            except queue.Empty:
                _say("idle timeout, exiting")
                return 0
            if msg is None or self.stopping.is_set():
                return 0
            header, payload = msg
            del msg
            try:
                self.dispatch(header, payload)
            except ClientGone as exc:  # nobody to answer: stop instead of dying noisily
                _say(f"cannot reply ({exc}); stopping")
                return 0
            del header, payload  # an idle worker holds no frame

    def dispatch(self, header: dict[str, Any], payload: bytes) -> None:
        if header.get("op") == "refine":
            try:
                self.handle_refine(header, payload)
            except ClientGone:
                raise
            except Exception as exc:  # report, stay alive for the next request
                import traceback

                traceback.print_exc()
                first = (str(exc).strip().splitlines() or [""])[0]
                self.send({"op": "error", "id": header.get("id"), "kind": "internal",
                           "message": f"refinement failed inside the worker ({type(exc).__name__}: {first})"})
        elif header.get("op") == "ping":
            # Which heavy modules this process has loaded: tests check that LiteRT runs alone.
            self.send({"op": "pong", "id": header.get("id"),
                       "loaded": sorted(m for m in ("tensorflow", "keras", "ai_edge_litert") if m in sys.modules)})
        elif header.get("op") == "rows":
            pass  # late rows for a request that was cancelled
        else:
            self.send({"op": "error", "id": header.get("id"), "kind": "request",
                       "message": f"unknown request {header.get('op')!r}"})


def _stamp(path: str | os.PathLike) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def _versions() -> dict[str, Any]:
    """What this interpreter offers, read from package metadata: importing TensorFlow here
    would cost seconds and hundreds of MB that a LiteRT worker never needs."""
    from importlib import metadata

    found: dict[str, Any] = {"python": sys.version.split()[0], "numpy": np.__version__}
    for key, module, dists in (("litert", LITERT_MODULE, ("ai-edge-litert",)),
                               ("tensorflow", "tensorflow", ("tensorflow-cpu", "tensorflow")),
                               ("keras", "keras", ("keras",))):
        found[key] = None
        if importlib.util.find_spec(module) is None:
            continue
        for dist in dists:
            try:
                found[key] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                found[key] = "installed"
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="linerelifer-worker")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--idle-timeout", type=float, default=600.0)
    parser.add_argument("--backend", default=None, help="auto, litert or tensorflow (default: $LINERELIFER_BACKEND)")
    args = parser.parse_args(argv)
    outbox = _take_stdout()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        backend = requested_backend(args.backend)
    except ValueError as exc:
        _say(str(exc))
        return 2
    server = Server(sys.stdin.buffer, outbox, args.idle_timeout, backend=backend, threads=args.threads)
    try:
        server.send({"op": "hello", "versions": _versions(), "backend": backend, "pid": os.getpid()})
    except ClientGone:
        return 0
    return server.serve()
