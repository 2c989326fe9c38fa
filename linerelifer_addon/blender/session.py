"""One warm worker per Blender session, and the runtime's status.

TensorFlow takes seconds to start, so the same :class:`WorkerClient` serves
every refinement of the session (still renders, every frame of an
animation).  It is replaced when the worker interpreter in the preferences
changes, and closed on unregister, on loading another file's factory
settings and at exit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from pathlib import Path

from ..core.client import WorkerClient
from ..core.runtime import resolve_python
from .common import get_prefs, python_for_worker, user_dir

_lock = threading.Lock()
_client: WorkerClient | None = None
_client_key: tuple | None = None

# Last result of "Test runtime" / probe: {"python": path, "ok": bool,
# "versions": {...}, "error": str, "time": float}
runtime_status: dict = {}


def runtime_venv_python(create: bool = False) -> Path:
    """Where "Install runtime" puts the worker's interpreter."""
    base = user_dir("runtime", create=create) / "venv"
    if sys.platform == "win32":
        return base / "Scripts" / "python.exe"
    return base / "bin" / "python"


def worker_python(prefs=None) -> str:
    """The interpreter the worker will run with: the preference, else an
    installed runtime, else $LINERELIFER_PYTHON / the current interpreter."""
    prefs = prefs or get_prefs()
    explicit = python_for_worker(prefs)
    if explicit:
        return resolve_python(explicit)
    if not os.environ.get("LINERELIFER_PYTHON"):
        try:
            venv_py = runtime_venv_python(create=False)
            if venv_py.is_file():
                return str(venv_py)
        except OSError:
            pass
    return resolve_python(None)


def get_client(prefs=None) -> WorkerClient:
    """The session's client, (re)created for the current preferences."""
    global _client, _client_key
    prefs = prefs or get_prefs()
    python = worker_python(prefs)
    threads = int(getattr(prefs, "threads", 0) or 0) or None
    key = (python, threads)
    with _lock:
        if _client is not None and _client_key != key:
            old, _client = _client, None
            try:
                old.close()
            except Exception:
                pass
        if _client is None:
            _client = WorkerClient(python=python, threads=threads)
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


def set_status(python: str, ok: bool, versions: dict | None = None, error: str = "") -> None:
    runtime_status.clear()
    runtime_status.update(python=python, ok=ok, versions=dict(versions or {}), error=error,
                          time=time.time())


atexit.register(shutdown)
