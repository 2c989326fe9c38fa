"""Reading and writing image files for the CLI (OpenCV; never imported inside Blender).

Writes go to a temporary file in the destination folder and are renamed into place, so
an interrupted run never leaves a half-written image.
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
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
import cv2  # noqa: E402

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
    data = np.fromfile(str(path), dtype=np.uint8)  # also works for non-ASCII paths
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        if "MAX_IMAGE_PIXELS" in str(exc):
            raise ImageFileError(f"{path}: image is larger than 16384×16384 pixels") from None
        raise ImageFileError(f"{path}: not a readable image ({str(exc).strip().splitlines()[-1]})") from None
    if img is None:
        raise ImageFileError(f"{path}: not a readable image (unknown format or truncated file)")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageFileError(f"{path}: {img.shape[1]}×{img.shape[0]} is larger than 16384×16384 pixels")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def write_image(path: str | os.PathLike, pixels: np.ndarray) -> None:
    """Write atomically in the format the extension names."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise ImageFileError(f"{path}: unsupported output format; use one of {', '.join(EXTENSIONS)}")
    img = pixels
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    elif img.ndim == 3 and img.shape[2] == 2:  # gray+alpha: encoders want 1, 3 or 4 channels
        g, a = img[:, :, 0], img[:, :, 1]
        img = np.dstack([g, g, g, a])
    if ext in (".jpg", ".jpeg") and img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    params: list[int] = []
    if ext == ".exr":
        img = img.astype(np.float32)
    elif ext in (".tif", ".tiff") and img.dtype.kind == "f":
        # Float stays float; LZW, because OpenCV's default for float RGB is lossy (SGILOG).
        img = img.astype(np.float32)
        params = [cv2.IMWRITE_TIFF_COMPRESSION, 5]
    elif img.dtype not in (np.uint8, np.uint16):
        img = np.rint(np.clip(img, 0, 1) * 65535).astype(np.uint16) if ext in (".png", ".tif", ".tiff") \
            else np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
    if img.dtype == np.uint16 and ext in (".jpg", ".jpeg", ".bmp", ".webp"):
        img = (img // 257).astype(np.uint8)
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise ImageFileError(f"{path}: could not encode the image")
    try:
        atomic_write_bytes(path, buf.tobytes())
    except OSError as exc:
        raise ImageFileError(f"{path}: cannot write in {path.parent} ({exc.strerror or exc})") from None
