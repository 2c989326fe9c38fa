"""Messages between the client and the worker process.

Each message is a fixed magic, a little-endian u32 header length, a UTF-8 JSON header and
`nbytes` of raw array data. Nothing is pickled, and a peer that writes anything else (a
stray print, a crash dump) is detected at the next magic instead of being misread.

A refinement (`refine` with `stream: true`, the image's shape and dtype) carries no
pixels: the worker asks for the rows its next row of tiles reads (`need`, y0..y1), the
client answers with `rows` (y0 + the array), and each finished band comes back as `rows`
too, then `result`. Rows of blank paper travel as their shape alone (`blank: true`). So
neither side copies a whole frame, and the worker's memory does not grow with the image.
With `skip_blank`, the request also says where the ink is (`ink_box`: [y0, y1, x0, x1], or []
for none), and the worker asks only for the rows near it; `ink_cells` (which squares of
`cell` px hold ink, a bit map) lets it choose tiles by the ones that will run.
(A `refine` carrying the whole array as its payload is still served.)
"""
from __future__ import annotations

import json
import math
import struct
from typing import Any, BinaryIO

import numpy as np

MAGIC = b"LRW1"
MAX_HEADER = 1 << 16
MAX_PAYLOAD = 1 << 34
ARRAY_DTYPES = ("uint8", "float16", "float32")


class ProtocolError(RuntimeError):
    """The peer sent bytes that are not a protocol message."""


def write_message(stream: BinaryIO, header: dict[str, Any], payload: bytes | memoryview = b"") -> None:
    data = memoryview(payload).cast("B") if not isinstance(payload, bytes) else payload
    head = json.dumps({**header, "nbytes": len(data)}, separators=(",", ":")).encode("utf-8")
    stream.write(MAGIC + struct.pack("<I", len(head)) + head)
    if len(data):
        stream.write(data)
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_message(stream: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    """The next message, or None at a clean end of stream."""
    prefix = _read_exact(stream, 8)
    if prefix is None:
        return None
    if prefix[:4] != MAGIC:
        raise ProtocolError(f"unexpected bytes {prefix!r} instead of a message")
    (n,) = struct.unpack("<I", prefix[4:])
    if n > MAX_HEADER:
        raise ProtocolError(f"message header of {n} bytes is too large")
    raw = _read_exact(stream, n)
    if raw is None:
        raise ProtocolError("stream ended inside a message header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"message header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ProtocolError("message header is not an object")
    nbytes = header.get("nbytes", 0)
    if not isinstance(nbytes, int) or not 0 <= nbytes <= MAX_PAYLOAD:
        raise ProtocolError(f"message payload size {nbytes!r} is invalid")
    payload = _read_exact(stream, nbytes) if nbytes else b""
    if payload is None:
        raise ProtocolError("stream ended inside a message payload")
    return header, payload


def array_header(a: np.ndarray) -> dict[str, Any]:
    if a.dtype.name not in ARRAY_DTYPES:
        raise ValueError(f"array dtype {a.dtype} cannot be sent")
    return {"shape": list(a.shape), "dtype": a.dtype.name}


def array_from(header: dict[str, Any], payload: bytes) -> np.ndarray:
    """Rebuild an array, checking that the header and payload agree."""
    dtype, shape = header.get("dtype"), header.get("shape")
    if dtype not in ARRAY_DTYPES:
        raise ProtocolError(f"array dtype {dtype!r} is not allowed")
    if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise ProtocolError(f"array shape {shape!r} is invalid")
    expected = math.prod(shape) * np.dtype(dtype).itemsize  # Python ints: a huge shape cannot wrap around
    if expected != len(payload):
        raise ProtocolError(f"array payload has {len(payload)} bytes, header says {expected}")
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


def pack_cells(cell: int, cells: np.ndarray) -> dict[str, Any]:
    """An ink map (core.tiling.ink_cells) as a header field: its cell size, shape and bits in hex."""
    return {"cell": int(cell), "shape": list(cells.shape), "bits": np.packbits(cells, axis=None).tobytes().hex()}


def unpack_cells(field: Any, h: int, w: int) -> tuple[int, np.ndarray]:
    """The ink map of an h×w frame from its header field; ValueError when it does not fit the frame."""
    try:
        cell, shape, bits = int(field["cell"]), [int(n) for n in field["shape"]], bytes.fromhex(field["bits"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"ink map {str(field)[:80]!r} is not a cell size, shape and hex bits") from None
    if cell < 1 or shape != [-(-h // cell), -(-w // cell)] or len(bits) != -(-shape[0] * shape[1] // 8):
        raise ValueError(f"ink map of {shape} cells of {cell} px does not fit an image of {h}x{w}")
    cells = np.unpackbits(np.frombuffer(bits, np.uint8), count=shape[0] * shape[1]).astype(bool)
    return cell, cells.reshape(shape)
