"""Minimal OpenEXR reader (numpy + standard library only).

Blender cannot hand the Render Result's pixels to Python, but it can save
the whole result -- every pass -- as one single-part ("interleaved")
multilayer EXR.  This module reads such files: single-part scanline images
with NONE, ZIPS or ZIP compression and HALF/FLOAT/UINT channels, which is
what :func:`capture.save_render_passes` writes.  It is not a general EXR
library (no tiles, no multi-part, no deep data, no lossy codecs).
"""

from __future__ import annotations

import mmap
import struct
import zlib
from pathlib import Path

import numpy as np

_MAGIC = 20000630
_DTYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}
_LINES_PER_BLOCK = {0: 1, 2: 1, 3: 16}  # NONE, ZIPS, ZIP
_COMPRESSION_NAMES = {0: "NONE", 1: "RLE", 2: "ZIPS", 3: "ZIP", 4: "PIZ",
                      5: "PXR24", 6: "B44", 7: "B44A", 8: "DWAA", 9: "DWAB"}


class ExrError(ValueError):
    """The file is not an EXR this reader understands."""


def _read_cstr(buf, pos: int) -> tuple[str, int]:
    end = buf.find(b"\0", pos)
    if end < 0:
        raise ExrError("EXR header is cut short")
    return buf[pos:end].decode("latin-1"), end + 1


def _parse_channels(val: bytes) -> list[tuple[str, int]]:
    chans = []
    pos = 0
    while pos < len(val) and val[pos] != 0:
        name, pos = _read_cstr(val, pos)
        ptype, _plin, xs, ys = struct.unpack_from("<iB3xii", val, pos)
        pos += 16
        if xs != 1 or ys != 1:
            raise ExrError("subsampled EXR channels are not supported")
        if ptype not in _DTYPES:
            raise ExrError(f"unknown EXR pixel type {ptype}")
        chans.append((name, ptype))
    return chans


def _unzip(data: bytes, expected: int) -> bytes:
    raw = zlib.decompress(data)
    if len(raw) != expected:
        raise ExrError("corrupt ZIP block in EXR")
    t = np.frombuffer(raw, dtype=np.uint8).astype(np.int32)
    # Undo the predictor, then the byte interleaving.
    t = np.cumsum(t - 128 * (np.arange(t.size) > 0)) & 0xFF
    t = t.astype(np.uint8)
    half = (t.size + 1) // 2
    out = np.empty_like(t)
    out[0::2] = t[:half]
    out[1::2] = t[half:]
    return out.tobytes()


def read_exr(path: str | Path, want=None) -> dict[str, np.ndarray]:
    """Read the channels of a scanline EXR.

    Returns ``{channel_name: float32 array (H, W)}`` with row 0 at the TOP of
    the image (EXR order; Blender's ``Image.pixels`` is bottom-up).  ``want``
    (a callable taking a channel name) limits which channels are kept.
    """
    # Mapped, not read: a 4K render with many passes is a file of a gigabyte or more, of
    # which only the wanted channels become arrays.
    with open(path, "rb") as fh:
        try:
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            raise ExrError(f"{path} is not an OpenEXR file") from None
    try:
        return _read_mapped(buf, path, want)
    finally:
        buf.close()


def _read_mapped(buf, path, want) -> dict[str, np.ndarray]:
    if len(buf) < 8 or struct.unpack_from("<i", buf, 0)[0] != _MAGIC:
        raise ExrError(f"{path} is not an OpenEXR file")
    flags = struct.unpack_from("<I", buf, 4)[0]
    if flags & 0x200:
        raise ExrError("tiled EXR files are not supported")
    if flags & 0x1000:
        raise ExrError("multi-part EXR files are not supported")
    if flags & 0x800:
        raise ExrError("deep EXR files are not supported")
    pos = 8
    header: dict[str, bytes] = {}
    while buf[pos] != 0:
        name, pos = _read_cstr(buf, pos)
        _typ, pos = _read_cstr(buf, pos)
        size = struct.unpack_from("<i", buf, pos)[0]
        pos += 4
        header[name] = buf[pos:pos + size]
        pos += size
    pos += 1  # end of header

    try:
        chans = _parse_channels(header["channels"])
        compression = header["compression"][0]
        xmin, ymin, xmax, ymax = struct.unpack("<iiii", header["dataWindow"])
    except KeyError as ex:
        raise ExrError(f"EXR header lacks {ex}") from None
    if compression not in _LINES_PER_BLOCK:
        raise ExrError("EXR compression {} is not supported".format(
            _COMPRESSION_NAMES.get(compression, compression)))
    width, height = xmax - xmin + 1, ymax - ymin + 1
    lpb = _LINES_PER_BLOCK[compression]
    nblocks = (height + lpb - 1) // lpb
    offsets = struct.unpack_from(f"<{nblocks}Q", buf, pos)

    out = {name: np.empty((height, width), np.float32) for name, _ in chans
           if want is None or want(name)}
    for off in offsets:
        y, size = struct.unpack_from("<ii", buf, off)
        data = buf[off + 8:off + 8 + size]
        row0 = y - ymin
        nlines = min(lpb, height - row0)
        expected = sum(_DTYPES[p].itemsize for _, p in chans) * width * nlines
        if compression != 0 and size < expected:
            data = _unzip(data, expected)
        elif size != expected:
            raise ExrError("unexpected EXR block size")
        p = 0
        for line in range(nlines):
            for name, ptype in chans:
                dt = _DTYPES[ptype]
                if name in out:
                    out[name][row0 + line] = np.frombuffer(data, dt, width, p)
                p += width * dt.itemsize
    return out


def channel_names(path: str | Path) -> list[str]:
    """The channel names of an EXR, without reading its pixels."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if len(head) < 8 or struct.unpack_from("<i", head, 0)[0] != _MAGIC:
        raise ExrError(f"{path} is not an OpenEXR file")
    pos = 8
    while head[pos] != 0:
        name, pos = _read_cstr(head, pos)
        _typ, pos = _read_cstr(head, pos)
        size = struct.unpack_from("<i", head, pos)[0]
        pos += 4
        if name == "channels":
            return [n for n, _ in _parse_channels(head[pos:pos + size])]
        pos += size
    raise ExrError("EXR header lacks channels")


def layer_rgba(channels: dict[str, np.ndarray], prefix: str) -> np.ndarray | None:
    """Stack ``prefix.R/G/B/A`` into an (H, W, 4) float32 array (or None).

    ``prefix`` is e.g. ``"ViewLayer.Freestyle"``.  A missing alpha becomes
    1.0; missing colour channels make the result None.
    """
    names = [f"{prefix}.{c}" for c in "RGBA"]
    if not all(n in channels for n in names[:3]):
        return None
    alpha = channels.get(names[3])
    if alpha is None:
        alpha = np.ones_like(channels[names[0]])
    return np.stack([channels[names[0]], channels[names[1]], channels[names[2]], alpha], axis=-1)


def find_layer(channels: dict[str, np.ndarray], pass_name: str,
               view_layer: str | None = None) -> str | None:
    """Return the channel prefix of ``pass_name`` (e.g. ``"Freestyle"``).

    Channels are named ``<view layer>.<pass>.<channel>`` (or, for a
    multi-view file, with a view in between); prefer ``view_layer`` when given.
    """
    candidates = []
    for name in channels:
        parts = name.split(".")
        if len(parts) >= 3 and parts[-2] == pass_name:
            candidates.append(".".join(parts[:-1]))
    if not candidates:
        return None
    candidates = sorted(set(candidates))
    if view_layer is not None:
        # Exactly this layer ("ViewLayer.001", a duplicated layer, also starts with "ViewLayer."),
        # else this layer with one view's name in between.
        if f"{view_layer}.{pass_name}" in candidates:
            return f"{view_layer}.{pass_name}"
        for c in candidates:
            if c.startswith(view_layer + ".") and c.count(".") == view_layer.count(".") + 2:
                return c
    return candidates[0]
