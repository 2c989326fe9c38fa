"""Reading and writing image files for the CLI (OpenCV; never imported inside Blender).

Writes go to a temporary file in the destination folder and are renamed into place, so
an interrupted run never leaves a half-written image. Integer files hold sRGB-encoded
values, EXR scene-linear ones (as Blender writes them): an output of the other kind gets its
colour channels re-encoded and scaled, never its alpha, which is coverage in both.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".webp")
MAX_PIXELS = 16384 * 16384

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
# Refuse larger images from their header, before OpenCV allocates their pixels (its own
# limit is 2^30 pixels), and keep OpenCV's warnings about broken files off the console:
# the CLI reports them in one line.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
import cv2  # noqa: E402

from .core.conversion import linear_to_srgb, srgb_to_linear  # noqa: E402
from .core.files import atomic_write_bytes  # noqa: E402


class ImageFileError(ValueError):
    """An input or output file problem, phrased for the user."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Pixels as stored (gray, gray+alpha, RGB or RGBA in RGB order), 8/16-bit or float."""
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise ImageFileError(f"{path}: file is empty")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # also works for non-ASCII paths
    except OSError as exc:
        raise ImageFileError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    # A JPEG is read upright as its EXIF orientation says (a phone photo's usually does), and
    # written upright: IMREAD_UNCHANGED would ignore the tag. JPEG has no alpha to lose.
    flags = cv2.IMREAD_ANYCOLOR if data[:3].tobytes() == b"\xff\xd8\xff" else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error as exc:
        if "MAX_IMAGE_PIXELS" in str(exc):
            raise ImageFileError(f"{path}: image is larger than 16384×16384 pixels") from None
        raise ImageFileError(f"{path}: not a readable image ({str(exc).strip().splitlines()[-1]})") from None
    if img is None:
        if data[:4].tobytes() == b"\x76\x2f\x31\x01":  # OpenEXR's magic number
            raise ImageFileError(f"{path}: an EXR that cannot be read (a Blender MultiLayer file, whose "
                                 "channels are not plain R, G, B, A, or a damaged one); save the pass or render "
                                 "as a single-layer EXR or PNG")
        raise ImageFileError(f"{path}: not a readable image (unknown format or truncated file)")
    if img.dtype.kind == "i" or img.dtype.itemsize > 2 and img.dtype.kind != "f":
        raise ImageFileError(f"{path}: {img.dtype} pixels are not supported; save it with 8 or 16-bit "
                             "unsigned or float pixels")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageFileError(f"{path}: {img.shape[1]}×{img.shape[0]} is larger than 16384×16384 pixels")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def _recode(img: np.ndarray, transfer) -> np.ndarray:
    """The transfer applied to the colour channels (BGR order here, or gray), not to alpha."""
    if img.ndim == 2:
        return transfer(img)
    out = np.array(img, np.float32)
    out[:, :, :3] = transfer(out[:, :, :3])
    return out


def is_premultiplied(path: str | os.PathLike) -> bool:
    """Whether a file's colours are stored multiplied by its alpha: EXR's convention (Blender
    writes its passes so); PNG, TIFF and WebP hold straight alpha."""
    return Path(path).suffix.lower() == ".exr"


def write_image(path: str | os.PathLike, pixels: np.ndarray, premultiplied: bool = False) -> None:
    """Write atomically in the format the extension names. `premultiplied`: the pixels' colours
    are multiplied by their alpha; they are converted when the output's convention differs."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise ImageFileError(f"{path}: unsupported output format; use one of {', '.join(EXTENSIONS)}")
    img = pixels
    rgba = img.ndim == 3 and img.shape[2] == 4
    if rgba and premultiplied and ext != ".exr":  # straight alpha for PNG, TIFF, WebP, JPEG
        img = np.array(img, np.float32)
        a = img[:, :, 3:]
        img[:, :, :3] = np.where(a > 0, img[:, :, :3] / np.maximum(a, 1e-6), 0.0)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    elif img.ndim == 3 and img.shape[2] == 2:  # gray+alpha: encoders want 1, 3 or 4 channels
        g, a = img[:, :, 0], img[:, :, 1]
        img = np.dstack([g, g, g, a])
    params: list[int] = []
    if ext == ".exr":
        if img.dtype.kind in "ui":  # sRGB-encoded integers to linear floats in 0..1
            img = _recode(img.astype(np.float32) / np.iinfo(img.dtype).max, srgb_to_linear)
        img = img.astype(np.float32, copy=False)
        if rgba and not premultiplied:  # EXR holds colours multiplied by alpha (linear values)
            img = img.copy()
            img[:, :, :3] *= img[:, :, 3:]
    elif ext in (".tif", ".tiff") and img.dtype.kind == "f":
        # Float stays float; LZW, because OpenCV's default for float RGB is lossy (SGILOG).
        img = img.astype(np.float32, copy=False)
        params = [cv2.IMWRITE_TIFF_COMPRESSION, 5]
    elif img.dtype not in (np.uint8, np.uint16):  # linear floats to sRGB-encoded integers
        img = _recode(img, linear_to_srgb)
        img = np.rint(np.clip(img, 0, 1) * 65535).astype(np.uint16) if ext in (".png", ".tif", ".tiff") \
            else np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
    if img.dtype == np.uint16 and ext in (".jpg", ".jpeg", ".bmp", ".webp"):
        img = (img // 257).astype(np.uint8)
    if ext in (".jpg", ".jpeg") and img.ndim == 3 and img.shape[2] == 4:
        # No alpha in JPEG: over white paper. A pass keeps its lines in alpha alone, and
        # dropping alpha would leave one flat colour.
        a = img[:, :, 3:].astype(np.float32) / 255.0
        img = np.rint(img[:, :, :3] * a + 255.0 * (1.0 - a)).astype(np.uint8)
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise ImageFileError(f"{path}: could not encode the image")
    try:
        atomic_write_bytes(path, buf.tobytes())
    except OSError as exc:
        raise ImageFileError(f"{path}: cannot write in {path.parent} ({exc.strerror or exc})") from None
