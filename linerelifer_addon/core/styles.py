"""Where style files live and what their metadata says.

A style is `NAME.json` (metadata the extension and CLI read without TensorFlow) beside the
network: `NAME.tflite` (run by LiteRT, the bundled runtime) and/or `NAME.keras` (run by
TensorFlow, loaded in Keras safe mode). A style's path names its `.keras` file when it has
one, else its `.tflite` file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
import math
from typing import Any, Callable, Sequence

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "styles"
DEFAULT_STYLE = "default"
REQUIRED_META = ("name", "margin", "align")
MODEL_SUFFIXES = (".keras", ".tflite")


class StyleError(ValueError):
    """A style name or file the user gave cannot be used."""


@dataclass
class StyleInfo:
    name: str
    path: Path
    description: str = ""
    bundled: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def user_styles_dir() -> Path:
    """The folder trained styles go to: $LINERELIFER_STYLES_DIR or the XDG data folder."""
    env = os.environ.get("LINERELIFER_STYLES_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "linerelifer" / "styles"


def meta_path(style_path: Path) -> Path:
    return Path(style_path).with_suffix(".json")


def read_meta(style_path: str | os.PathLike) -> dict[str, Any]:
    """Metadata beside a style file; a StyleError names the file when it is missing or broken."""
    style_path = Path(style_path)
    mp = meta_path(style_path)
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StyleError(f"style metadata {mp} is missing; copy it from where the style was trained "
                         f"(training writes {mp.name} beside the model)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StyleError(f"style metadata {mp} is unreadable ({exc}); re-export the style") from None
    if not isinstance(meta, dict) or any(k not in meta for k in REQUIRED_META):
        raise StyleError(f"style metadata {mp} lacks {', '.join(REQUIRED_META)}; re-export the style")
    return meta


def meta_number(meta: dict[str, Any], key: str, default: float, valid: Callable[[float], bool]) -> float:
    """`meta[key]` as a number, or `default` when it is absent, not a finite number or not `valid`."""
    value = meta.get(key)
    try:
        v = float(default if value is None or isinstance(value, bool) else value)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) and valid(v) else default


def ink_tone(style_path: str | os.PathLike) -> float | None:
    """The grey (0..1, as displayed) of the drawings a style was trained on (`ink_tone` in its
    metadata), or None when it records none or its metadata cannot be read."""
    try:
        tone = read_meta(style_path).get("ink_tone")
    except StyleError:
        return None
    return float(tone) if isinstance(tone, (int, float)) and 0.0 <= tone <= 1.0 else None


def _scan(folder: Path, bundled: bool, broken: list[tuple[str, str]] | None = None) -> list[StyleInfo]:
    """The styles in a folder; (name, why) of each model file left out goes to `broken`."""
    found: list[StyleInfo] = []
    if not folder.is_dir():
        return found
    models = {p.stem: p for suffix in reversed(MODEL_SUFFIXES) for p in sorted(folder.glob("*" + suffix))}
    for _, p in sorted(models.items()):
        try:
            meta = read_meta(p)
        except StyleError as exc:
            if broken is not None:
                broken.append((p.stem, str(exc)))
            continue
        found.append(StyleInfo(name=p.stem, path=p, description=str(meta.get("description", "")),
                               bundled=bundled, meta=meta))
    return found


def list_styles(extra_dirs: Sequence[str | os.PathLike] = (),
                broken: list[tuple[str, str]] | None = None) -> list[StyleInfo]:
    """Bundled styles first, then user styles; a user style never shadows a bundled name.
    Model files left out (no or broken metadata) go to `broken` as (name, one sentence)."""
    styles = _scan(BUNDLED_DIR, True, broken)
    seen = {s.name for s in styles}
    for d in [user_styles_dir(), *map(Path, extra_dirs)]:
        for s in _scan(Path(d), False, broken):
            if s.name not in seen:
                styles.append(s)
                seen.add(s.name)
    return styles


def resolve_style(name_or_path: str | os.PathLike | None = None,
                  extra_dirs: Sequence[str | os.PathLike] = ()) -> StyleInfo:
    """A style by name (bundled or user) or by path to a .keras file."""
    key = str(name_or_path) if name_or_path else DEFAULT_STYLE
    p = Path(key).expanduser()
    if p.suffix in MODEL_SUFFIXES or os.sep in key or p.exists():
        if p.suffix == ".tflite" and p.with_suffix(".keras").is_file():
            p = p.with_suffix(".keras")  # one name for the style, whichever file was given
        if not p.is_file():
            raise StyleError(f"style file {p} does not exist; run `styles` to list the installed ones")
        meta = read_meta(p)
        return StyleInfo(name=p.stem, path=p, description=str(meta.get("description", "")), meta=meta)
    broken: list[tuple[str, str]] = []
    installed = list_styles(extra_dirs, broken)
    for s in installed:
        if s.name == key:
            return s
    for name, reason in broken:  # a style of that name whose metadata is missing or broken
        if name == key:
            raise StyleError(reason)
    names = ", ".join(s.name for s in installed) or "none"
    raise StyleError(f"style '{key}' is not installed (installed: {names}); pass a .keras or .tflite path or train one")
