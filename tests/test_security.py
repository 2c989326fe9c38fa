"""Security: no shell, nothing unpickled, paths never pasted into commands, safe-mode styles.

Static checks read the sources of the package, training/ and tools/ with `ast`; dynamic
checks talk to a real worker process through WorkerClient's own pipe, with messages a
buggy or hostile peer might send, and run paths full of shell syntax through it.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, line_image
from linerelifer_addon.core import protocol
from linerelifer_addon.core.client import WorkerClient

TREES = ("linerelifer_addon", "training", "tools")
SOURCES = sorted(p for tree in TREES for p in (ROOT / tree).rglob("*.py") if "__pycache__" not in p.parts)
PACKAGE = [p for p in SOURCES if p.parts[len(ROOT.parts)] == "linerelifer_addon"]

SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
SHELL_FUNCTIONS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
                   ("asyncio", "create_subprocess_shell"), ("pty", "spawn")}
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "jsonpickle"}


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


def dotted(node: ast.AST) -> str:
    """'keras.saving.load_model' for the function a Call names ('' when not a plain name)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_sources_found() -> None:
    assert len(PACKAGE) > 20 and any(p.name == "server.py" for p in PACKAGE)
    assert any("training" in p.parts for p in SOURCES)


def test_no_shell() -> None:
    bad = []
    for path in SOURCES:
        for call in calls(parse(path)):
            for kw in call.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    bad.append(f"{where(path, call)}: shell={ast.unparse(kw.value)}")
            name = tuple(dotted(call.func).split(".")[-2:])
            if name in SHELL_FUNCTIONS:
                bad.append(f"{where(path, call)}: {'.'.join(name)} runs a shell")
    assert not bad, "\n".join(bad)


def _string_expression(node: ast.AST) -> bool:
    """An expression that builds a string (a command line) rather than an argument list."""
    if isinstance(node, (ast.JoinedStr,)) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return _string_expression(node.left) or _string_expression(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join"):
        return True
    return False


def _assignments(scope: ast.AST, name: str) -> list[ast.AST]:
    values = []
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                values.append(node.value)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and isinstance(node.target, ast.Name) \
                and node.target.id == name and node.value is not None:
            values.append(node.value)
    return values


def test_subprocess_commands_are_lists() -> None:
    """Every command is an argument list: a path in it is one argument, never shell text."""
    bad, seen = [], 0
    for path in SOURCES:
        tree = parse(path)
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for call in calls(tree):
            name = dotted(call.func)
            if not (name.startswith("subprocess.") and name.split(".")[-1] in SUBPROCESS_CALLS):
                continue
            seen += 1
            cmd = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "args"), None)
            if isinstance(cmd, (ast.List, ast.Tuple)):
                elements = list(cmd.elts)
            elif isinstance(cmd, ast.Name):
                scope = next((f for f in functions if f.lineno <= call.lineno <= f.end_lineno
                              and any(a.arg == cmd.id for a in f.args.args)), None)
                owner = next((f for f in functions if f.lineno <= call.lineno <= f.end_lineno), tree)
                values = _assignments(owner, cmd.id)
                if scope is None and not values:
                    bad.append(f"{where(path, call)}: command {cmd.id} is never assigned here")
                    continue
                elements = []
                for v in values:
                    if isinstance(v, (ast.List, ast.Tuple)):
                        elements += v.elts
                    else:
                        bad.append(f"{where(path, call)}: command {cmd.id} = {ast.unparse(v)} is not a list")
            else:
                bad.append(f"{where(path, call)}: command {ast.unparse(cmd) if cmd else '?'} is not a list")
                continue
            for i, el in enumerate(elements):
                # Code handed to an interpreter must be a constant, never text with a path in it.
                if isinstance(el, ast.Constant) and el.value == "-c" and i + 1 < len(elements):
                    code = elements[i + 1]
                    const = isinstance(code, ast.Constant) or (
                        isinstance(code, ast.Name) and all(isinstance(v, ast.Constant) or
                                                           (isinstance(v, ast.BinOp) and not _has_names(v))
                                                           for v in _assignments(tree, code.id)))
                    if not const:
                        bad.append(f"{where(path, call)}: code after -c is built at run time")
                if isinstance(el, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in el.values) \
                        and i == 0:
                    bad.append(f"{where(path, call)}: the program name is formatted text")
    assert seen >= 2, "the subprocess calls were not found"  # the worker's start and the build tool's
    assert not bad, "\n".join(bad)


def _has_names(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) for n in ast.walk(node))


def test_nothing_unpickled_or_evaluated() -> None:
    bad = []
    for path in SOURCES:
        tree = parse(path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for n in names:
                    if n.split(".")[0] in UNSAFE_MODULES:
                        bad.append(f"{where(path, node)}: imports {n}")
        for call in calls(tree):
            name = dotted(call.func)
            if name in ("eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec"):
                bad.append(f"{where(path, call)}: {name}()")
            if name.split(".")[-1] in ("load", "loads") and name.split(".")[0] in ("np", "numpy"):
                for kw in call.keywords:
                    if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        bad.append(f"{where(path, call)}: {name}(allow_pickle=...)")
            if name.endswith("yaml.load") or name == "torch.load":
                bad.append(f"{where(path, call)}: {name}() can construct arbitrary objects")
            if name.endswith("frombuffer") or name.endswith("fromfile"):
                dt = next((k.value for k in call.keywords if k.arg == "dtype"), None)
                if isinstance(dt, ast.Name) and dt.id == "object" or \
                        isinstance(dt, ast.Constant) and str(dt.value) in ("object", "O"):
                    bad.append(f"{where(path, call)}: {name}(dtype=object)")
    assert not bad, "\n".join(bad)


def test_protocol_carries_only_numbers_and_json() -> None:
    assert set(protocol.ARRAY_DTYPES) <= {"uint8", "uint16", "float16", "float32"}
    for dt in protocol.ARRAY_DTYPES:
        assert np.dtype(dt).kind in "uf" and not np.dtype(dt).hasobject
    with pytest.raises(ValueError):
        protocol.array_header(np.zeros(2, object))
    with pytest.raises(protocol.ProtocolError, match="not allowed"):
        protocol.array_from({"dtype": "object", "shape": [1]}, b"\0" * 8)


def test_styles_load_only_in_safe_mode() -> None:
    bad, seen = [], 0
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        if "enable_unsafe_deserialization" in text and path.name != "test_security.py":
            bad.append(f"{path.relative_to(ROOT)}: enable_unsafe_deserialization")
        for call in calls(parse(path)):
            name = dotted(call.func)
            if name.split(".")[-1] != "load_model":
                continue
            seen += 1
            safe = next((k.value for k in call.keywords if k.arg == "safe_mode"), None)
            if not (isinstance(safe, ast.Constant) and safe.value is True):
                bad.append(f"{where(path, call)}: {name}() without an explicit safe_mode=True")
            if any(k.arg is None for k in call.keywords):  # **kwargs could switch it off
                bad.append(f"{where(path, call)}: {name}(**...)")
    assert seen >= 1, "no load_model call found"
    assert not bad, "\n".join(bad)


# -- a real worker, sent what a buggy or hostile peer might send --------------------------------

@pytest.fixture(scope="module")
def client():
    with WorkerClient() as c:
        c.info()
        yield c


def exchange(client: WorkerClient, header: dict, payload: bytes = b"") -> dict:
    """Send one raw message on the client's pipe; the worker's first reply to it."""
    with client._lock:
        client._ensure()
        client._send(header, payload)
        head, _ = client._receive(60)
        return head


@pytest.mark.parametrize("header, payload, message", [
    ({"dtype": "object", "shape": [2, 2]}, b"\0" * 32, "array dtype 'object' is not allowed"),
    ({"dtype": "O", "shape": [2, 2]}, b"\0" * 32, "array dtype 'O' is not allowed"),
    ({"dtype": "<U8", "shape": [2, 2]}, b"\0" * 128, "array dtype '<U8' is not allowed"),
    ({"dtype": "float64", "shape": [2, 2]}, b"\0" * 32, "array dtype 'float64' is not allowed"),
    ({"dtype": "float16", "shape": [10, 10]}, b"\0" * 7, "array payload has 7 bytes, header says 200"),
    ({"dtype": "float16", "shape": [10, -10]}, b"", "array shape [10, -10] is invalid"),
    ({"dtype": "float16", "shape": "10x10"}, b"", "array shape '10x10' is invalid"),
    ({"dtype": "float16", "shape": [2, 2, 2]}, b"\0" * 16, "coverage must be 2-D"),
    ({"dtype": "float16", "shape": [2**62, 2**62]}, b"", "header says"),
])
def test_worker_refuses_bad_arrays_and_keeps_serving(client, default_style, header, payload, message) -> None:
    pid = client.pid
    reply = exchange(client, {"op": "refine", "id": 10**6, "style": str(default_style), "tile": 256, **header},
                     payload)
    assert reply["op"] == "error" and reply["kind"] == "request", reply
    assert message in reply["message"], reply
    assert client.refine(line_image(64, 64), default_style, tile=256).shape == (64, 64)
    assert client.pid == pid


@pytest.mark.parametrize("shape, dtype, message", [
    ([2**40, 2], "float16", "is not that of a 2-D image"),
    ([100], "float16", "is not that of a 2-D image"),
    ([100, 100], "object", "array dtype 'object' is not allowed"),
])
def test_worker_refuses_bad_streamed_requests(client, default_style, shape, dtype, message) -> None:
    reply = exchange(client, {"op": "refine", "id": 10**6 + 1, "style": str(default_style), "tile": 256,
                              "stream": True, "shape": shape, "dtype": dtype})
    assert reply["op"] == "error" and reply["kind"] == "request" and message in reply["message"], reply
    assert client.refine(line_image(64, 64), default_style, tile=256).shape == (64, 64)


@pytest.mark.parametrize("rows_header, payload, message", [
    ({"dtype": "object", "shape": [64, 64]}, b"\0" * (64 * 64 * 8), "array dtype 'object' is not allowed"),
    ({"dtype": "float16", "shape": [64, 64]}, b"\0" * 10, "array payload has 10 bytes"),
    ({"dtype": "float32", "shape": [64, 64]}, b"\0" * (64 * 64 * 4), "arrived as float32"),
    ({"dtype": "float16", "shape": [3, 64]}, b"\0" * (3 * 64 * 2), "arrived as float16 (3, 64)"),
    ({"dtype": "float16", "shape": [64, 64], "blank": True}, b"", None),  # blank rows: fine
])
def test_worker_checks_the_rows_it_is_sent(client, default_style, rows_header, payload, message) -> None:
    rid = 10**6 + 2
    with client._lock:
        client._ensure()
        client._send({"op": "refine", "id": rid, "style": str(default_style), "tile": 256, "stream": True,
                      "shape": [64, 64], "dtype": "float16"})
        need, _ = client._receive(60)
        assert need["op"] == "need" and (need["y0"], need["y1"]) == (0, 64), need
        client._send({"op": "rows", "id": rid, "y0": 0, **rows_header}, payload)
        while True:
            reply, _ = client._receive(60)
            if reply["op"] not in ("progress", "rows"):
                break
    if message is None:
        assert reply["op"] == "result", reply
    else:
        assert reply["op"] == "error" and reply["kind"] == "request" and message in reply["message"], reply
    assert client.refine(line_image(64, 64), default_style, tile=256).shape == (64, 64)


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\n\r\n",
    protocol.MAGIC + (2**31).to_bytes(4, "little"),
    protocol.MAGIC + (5).to_bytes(4, "little") + b"[1,2]",
    protocol.MAGIC + (20).to_bytes(4, "little") + b'{"op":"x","nbytes":-1}',
])
def test_garbage_on_the_request_stream_stops_the_worker_cleanly(default_style, garbage) -> None:
    """A stream that cannot be trusted is not resynchronised: the worker stops (exit 0),
    the client reports it once and the next request starts a new worker."""
    with WorkerClient() as c:
        c.info()
        proc = c._proc
        proc.stdin.write(garbage + b"\0" * 64)
        proc.stdin.flush()
        assert proc.wait(30) == 0
        assert c.refine(line_image(64, 64), default_style, tile=256).shape == (64, 64)
        assert c.starts == 2


def test_paths_with_shell_syntax_are_plain_arguments(tmp_path, default_style) -> None:
    """Interpreter and style paths full of shell syntax run as they are: nothing in them
    is ever interpreted by a shell (which would create the marker files)."""
    weird = tmp_path / "a b $(touch MARK1) `touch MARK2`; touch MARK3 & 'q\"" / "x"
    weird.mkdir(parents=True)
    python = weird / "python; touch MARK4"
    python.write_text(f"#!{sys.executable}\nimport os, sys\nos.execv({sys.executable!r}, "
                      f"[{sys.executable!r}] + sys.argv[1:])\n")
    python.chmod(0o755)
    style = weird / "style $(touch MARK5).keras"
    shutil.copy(default_style, style)
    shutil.copy(default_style.with_suffix(".json"), style.with_suffix(".json"))
    with WorkerClient(python=str(python)) as c:
        out = c.refine(line_image(64, 64), style, tile=256)
    assert out.shape == (64, 64)
    for folder in (tmp_path, weird, weird.parent, Path.cwd(), ROOT):
        assert not list(folder.glob("MARK*")), f"a shell ran something in {folder}"
    meta = json.loads(style.with_suffix(".json").read_text())
    assert meta["margin"]  # the files were used as they are
