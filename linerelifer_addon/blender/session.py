"""One warm worker per Blender session, and the runtime's status.

The bundled style runs on LiteRT, whose wheel the extension bundles: the worker is Blender's
own Python (`sys.executable`) with the folder Blender installed the wheel to, so nothing
needs installing. A Worker Python set in the preferences (one with TensorFlow, for styles
that have only a `.keras` file) or $LINERELIFER_BACKEND=tensorflow selects TensorFlow.
The same :class:`WorkerClient` serves every refinement of the session (still renders, every
frame of an animation); it is replaced when that choice changes, and closed on unregister
and at exit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from dataclasses import dataclass

from ..core.backends import litert_site, requested_backend
from ..core.client import WorkerClient, WorkerStartError
from ..core.runtime import resolve_python
from .common import get_prefs, python_for_worker

_lock = threading.Lock()
_client: WorkerClient | None = None
_client_key: tuple | None = None

# Last result of "Test runtime": {"python": path, "ok": bool, "versions": {...}, "error": str, "time": float}
runtime_status: dict = {}


@dataclass(frozen=True)
class WorkerSetup:
    python: str
    backend: str  # what the worker is told: auto (LiteRT for styles with a .tflite) or tensorflow
    site_dirs: tuple[str, ...] = ()  # where Blender installed the bundled LiteRT wheel

    @property
    def bundled(self) -> bool:
        return bool(self.site_dirs)

    @property
    def label(self) -> str:
        return "LiteRT (bundled), in Blender's Python" if self.bundled else f"Python {self.python}"


def worker_setup(prefs=None) -> WorkerSetup:
    """How the worker will run: Blender's Python with the bundled LiteRT, unless the
    preferences or $LINERELIFER_PYTHON name another interpreter or $LINERELIFER_BACKEND asks
    for TensorFlow."""
    prefs = prefs or get_prefs()
    explicit = python_for_worker(prefs) or os.environ.get("LINERELIFER_PYTHON")
    try:
        wanted = requested_backend()
    except ValueError:
        wanted = "auto"  # the panel can still draw; get_client refuses the bad setting
    site = litert_site()
    if not explicit and wanted != "tensorflow" and site:
        # auto, not litert: a style with only a .keras file then gets TensorFlow where this
        # Python has it, and one clear sentence where it has not.
        return WorkerSetup(sys.executable, wanted, (site,))
    return WorkerSetup(resolve_python(explicit), wanted)


def worker_python(prefs=None) -> str:
    return worker_setup(prefs).python


def get_client(prefs=None) -> WorkerClient:
    """The session's client, (re)created for the current preferences."""
    global _client, _client_key
    prefs = prefs or get_prefs()
    try:
        requested_backend()
    except ValueError as ex:  # a mistyped $LINERELIFER_BACKEND must not pass for "auto"
        raise WorkerStartError(str(ex)) from None
    setup = worker_setup(prefs)
    threads = int(getattr(prefs, "threads", 0) or 0) or None
    key = (setup, threads)
    with _lock:
        if _client is not None and _client_key != key:
            old, _client = _client, None
            try:
                old.close()
            except Exception:
                pass
        if _client is None:
            _client = WorkerClient(python=setup.python, threads=threads, backend=setup.backend,
                                   site_dirs=setup.site_dirs)
            _client_key = key
        return _client


def shutdown() -> None:
    """Stop the worker (unregister, exit)."""
    global _client, _client_key
    with _lock:
        client, _client, _client_key = _client, None, None
    if client is not None:
        try:
            client.close()
        except Exception:
            pass


def worker_alive() -> bool:
    c = _client
    return c is not None and c.alive


def versions_text(versions: dict) -> str:
    """One line: what the worker's Python offers."""
    runs = [f"LiteRT {versions['litert']}"] if versions.get("litert") else []
    if versions.get("tensorflow"):
        runs.append(f"TensorFlow {versions['tensorflow']}")
    return (f"Runtime OK: Python {versions.get('python', '?')}, NumPy {versions.get('numpy', '?')}, "
            + (", ".join(runs) or "no LiteRT or TensorFlow"))


def set_status(python: str, ok: bool, versions: dict | None = None, error: str = "") -> None:
    runtime_status.clear()
    runtime_status.update(python=python, ok=ok, versions=dict(versions or {}), error=error,
                          time=time.time())


atexit.register(shutdown)
