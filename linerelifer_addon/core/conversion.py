"""Pixels <-> line coverage.

The network only ever sees line coverage (float32, 0 = paper, 1 = ink). This module
turns the two kinds of images users bring into coverage and back again, so that the
result is written in the convention it came in:

* a Freestyle pass: RGBA with transparency, line colour in RGB, coverage in alpha;
* a line drawing: lines on a plain background (dark on light or light on dark), gray,
  gray+alpha, RGB or opaque RGBA, 8/16-bit or float.

Alpha is straight (not premultiplied) unless a pass says it is premultiplied (EXR files are, by
the format's convention). Float pixels keep their own values, above 1 too, wherever the
refinement left them unchanged. Only numpy: this runs inside Blender.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PASS = "pass"
DRAWING = "drawing"

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
# Fewer transparent pixels than this and an RGBA image is an opaque drawing.
_TRANSPARENT_FRACTION = 0.01
# Below this contrast between paper and ink the image holds no lines.
_MIN_CONTRAST = 0.05
# Strength above 1 pushes each pixel further along the change the style made (exaggerated).
MAX_STRENGTH = 2.0


@dataclass
class LineImage:
    """An input image reduced to coverage, with what is needed to restore its convention."""

    coverage: np.ndarray
    mode: str
    dtype: np.dtype
    channels: int  # 0 for a 2-D array
    pixels: np.ndarray | None = None  # the input as given (not copied): its colours and alpha
    line_color: np.ndarray | None = None  # float32 (3,): typical ink colour
    paper_color: np.ndarray | None = None  # drawing mode: background colour
    premultiplied: bool = False  # pass mode: colours are stored multiplied by alpha
    ink_colors: np.ndarray | None = None  # drawing mode, lines of several colours: H×W×3 ink colour


# Conversions run over blocks of about this many pixels, so a 16k×16k frame needs its
# coverage and output arrays but no full-size float RGB temporaries (several GB each).
_BLOCK_PIXELS = 1 << 20


def _row_blocks(h: int, w: int):
    rows = max(1, _BLOCK_PIXELS // max(w, 1))
    for y0 in range(0, h, rows):
        yield y0, min(h, y0 + rows)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Scene-linear (EXR, Blender's float buffers) to sRGB-encoded, clipped to 0..1."""
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded (8/16-bit files) to scene-linear, clipped to 0..1."""
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4)).astype(np.float32)


def to_float(pixels: np.ndarray) -> np.ndarray:
    """Any supported dtype to float32 in [0, 1]; NaN and inf become 0 or 1."""
    a = np.asarray(pixels)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        return np.clip(a.astype(np.float32) / float(info.max), 0.0, 1.0)
    if np.issubdtype(a.dtype, np.floating):
        f = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(f, 0.0, 1.0)
    raise ValueError(f"pixel type {a.dtype} is not supported; use 8/16-bit integers or floats")


def from_float(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float32 [0, 1] back to the input's dtype, rounding integers."""
    dtype = np.dtype(dtype)
    v = np.clip(values, 0.0, 1.0)
    if dtype == np.uint8:
        return np.rint(v * 255.0).astype(np.uint8)
    if dtype == np.uint16:
        return np.rint(v * 65535.0).astype(np.uint16)
    if dtype == bool:
        return v >= 0.5
    if np.issubdtype(dtype, np.integer):
        return np.rint(v * float(np.iinfo(dtype).max)).astype(dtype)
    return v.astype(dtype)


def _check_shape(pixels: np.ndarray) -> int:
    """The channel count (0 for a 2-D array); ValueError for what is not an image."""
    if pixels.ndim < 2 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"image shape {pixels.shape} is empty")
    if pixels.ndim == 2:
        channels = 0
    elif pixels.ndim == 3 and pixels.shape[2] in (1, 2, 3, 4):
        channels = pixels.shape[2]
    else:
        raise ValueError(f"image shape {pixels.shape} is not an image; expected H×W or H×W×1..4")
    to_float(pixels.reshape(-1)[:1])  # an unsupported pixel type fails here, before any work
    return channels


def _split(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(colour as H×W×3 float, alpha or None, channel count) of an image or a block of rows."""
    if pixels.ndim == 2:
        f = to_float(pixels)
        return np.repeat(f[:, :, None], 3, axis=2), None, 0
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"image shape {pixels.shape} is not an image; expected H×W or H×W×1..4")
    f = to_float(pixels)
    c = f.shape[2]
    if c == 1:
        return np.repeat(f, 3, axis=2), None, 1
    if c == 2:
        return np.repeat(f[:, :, :1], 3, axis=2), f[:, :, 1], 2
    if c == 3:
        return f, None, 3
    return f[:, :, :3], f[:, :, 3], 4


def _alpha_block(pixels: np.ndarray) -> np.ndarray:
    return to_float(pixels[:, :, -1])


def _mean_color(total: np.ndarray, count: int, fallback: np.ndarray) -> np.ndarray:
    return (total / count).astype(np.float32) if count else np.asarray(fallback, np.float32)


def to_coverage(pixels: np.ndarray, premultiplied: bool = False) -> LineImage:
    """Detect the convention of `pixels` and reduce it to line coverage. `premultiplied`: a
    pass's colours are stored multiplied by its alpha (EXR files)."""
    pixels = np.asarray(pixels)
    channels = _check_shape(pixels)
    h, w = pixels.shape[:2]
    blocks = list(_row_blocks(h, w))
    hidden = None  # a drawing's transparent surround, which is neither paper nor ink
    if channels in (2, 4):
        see_through = sum(int(np.count_nonzero(_alpha_block(pixels[y0:y1]) < 0.99)) for y0, y1 in blocks)
        if see_through / float(h * w) >= _TRANSPARENT_FRACTION and _is_card(pixels, blocks, see_through):
            hidden = np.concatenate([_alpha_block(pixels[y0:y1]) < 0.5 for y0, y1 in blocks])
        elif see_through / float(h * w) >= _TRANSPARENT_FRACTION:
            coverage = np.empty((h, w), np.float32)
            total, count = np.zeros(3, np.float64), 0
            for y0, y1 in blocks:
                rgb, alpha, _ = _split(pixels[y0:y1])
                coverage[y0:y1] = alpha
                inked = alpha > 0.5
                if premultiplied and channels == 4:
                    rgb = np.clip(_kept(pixels[y0:y1, :, :3]) / np.maximum(alpha, 1e-6)[:, :, None], 0.0, 1.0)
                total += rgb[inked].sum(axis=0, dtype=np.float64)
                count += int(np.count_nonzero(inked))
            return LineImage(coverage=coverage, mode=PASS, dtype=pixels.dtype, channels=channels,
                             pixels=pixels, line_color=_mean_color(total, count, np.zeros(3)),
                             premultiplied=premultiplied and channels == 4)
    gray = _gray_levels(pixels)
    if gray is not None:
        return _gray_drawing(pixels, *gray, blocks)
    lum = np.empty((h, w), np.float32)
    for y0, y1 in blocks:
        lum[y0:y1] = _split(pixels[y0:y1])[0] @ _LUMA
    paper = float(np.median(lum if hidden is None else lum[~hidden]))
    if hidden is not None:
        lum[hidden] = paper
    # Ink lies on the far side of the paper: the darkest pixels on light paper, else the lightest.
    light_paper = paper >= 0.5
    # Ink: the extreme of the pixels that clearly differ from the paper (robust to JPEG noise).
    candidates = np.concatenate(
        [lum[y0:y1][np.abs(lum[y0:y1] - paper) > 2 * _MIN_CONTRAST] for y0, y1 in blocks])
    ink = float(np.percentile(candidates, 2 if light_paper else 98)) if candidates.size else paper
    del candidates
    contrast = paper - ink if light_paper else ink - paper
    coverage = lum  # computed in place, block by block
    ink_total, ink_count = np.zeros(3, np.float64), 0
    paper_total, paper_count = np.zeros(3, np.float64), 0
    for y0, y1 in blocks:
        cov = coverage[y0:y1]
        if contrast < _MIN_CONTRAST:
            cov.fill(0.0)
        else:
            np.clip((cov - paper) / (ink - paper), 0.0, 1.0, out=cov)
        rgb = _split(pixels[y0:y1])[0]
        strong = cov > 0.9
        ink_total += rgb[strong].sum(axis=0, dtype=np.float64)
        ink_count += int(np.count_nonzero(strong))
        on_paper = cov < 0.02
        if hidden is not None:
            on_paper &= ~hidden[y0:y1]
        paper_total += rgb[on_paper].sum(axis=0, dtype=np.float64)
        paper_count += int(np.count_nonzero(on_paper))
    if contrast < _MIN_CONTRAST:
        ink_color = np.full(3, 0.0 if light_paper else 1.0, np.float32)
    else:
        ink_color = _mean_color(ink_total, ink_count, np.full(3, ink))
    paper_color = _mean_color(paper_total, paper_count, np.full(3, paper))
    line = LineImage(coverage=coverage, mode=DRAWING, dtype=pixels.dtype, channels=channels, pixels=pixels,
                     line_color=ink_color, paper_color=paper_color)
    if contrast >= _MIN_CONTRAST and channels in (3, 4) and _ink_spread(line, blocks) > _INK_SPREAD:
        _several_inks(line, light_paper)
    return line


def _is_card(pixels: np.ndarray, blocks: list[tuple[int, int]], see_through: int) -> bool:
    """Whether an image with transparent pixels is a drawing on an opaque card (a rotated or
    cropped scan) rather than a pass: mostly opaque, and its opaque part holds both paper and
    ink. A pass's opaque pixels are line cores, of the lines' colour, and a minority."""
    h, w = pixels.shape[:2]
    if see_through > 0.5 * h * w:
        return False
    lum = np.concatenate([(_split(pixels[y0:y1])[0] @ _LUMA)[_alpha_block(pixels[y0:y1]) >= 0.99]
                          for y0, y1 in blocks])
    lo, hi = np.percentile(lum, [2, 98]) if lum.size else (0.0, 0.0)
    return float(hi - lo) >= 0.3


def _ink_spread(line: LineImage, blocks: list[tuple[int, int]]) -> float:
    """The largest standard deviation, over the colour channels, of the inked pixels' own ink
    colours (each unmixed from the paper by its coverage, so a black line's soft edges do not
    count as a second ink)."""
    total, squares, n = np.zeros(3, np.float64), np.zeros(3, np.float64), 0
    for y0, y1 in blocks:
        cov = line.coverage[y0:y1]
        sel = cov > 0.5
        if not sel.any():
            continue
        rgb = _split(line.pixels[y0:y1])[0][sel]
        own = line.paper_color + (rgb - line.paper_color) / cov[sel][:, None]
        total += own.sum(axis=0, dtype=np.float64)
        squares += np.square(own, dtype=np.float64).sum(axis=0)
        n += int(np.count_nonzero(sel))
    if not n:
        return 0.0
    return float(np.sqrt(np.maximum(squares / n - (total / n) ** 2, 0.0)).max())


# Inked pixels whose colours differ by more than this (standard deviation in a channel) are
# lines in several colours: each keeps its own (one typical colour turned red lines blue).
_INK_SPREAD = 0.12
_INK_REACH = 6  # px: how far an ink's colour reaches to pixels the style inks anew


def _several_inks(line: LineImage, light_paper: bool) -> None:
    """Coverage and a per-pixel ink colour for a drawing in several inks (in place).

    Coverage is the pixel's distance from the paper in its most changed channel, over the
    inks' (luminance alone reads a red line as 0.85 ink, a yellow one as almost paper); each
    inked pixel's ink colour is its own, unmixed from the paper, and pixels around lines take
    the mean of the inks within a few pixels, so a line the style widens or joins keeps its
    colour. Whole-frame arrays: only such drawings pay for them."""
    rgb = _split(line.pixels)[0]
    paper = line.paper_color.astype(np.float32)
    d = (paper - rgb if light_paper else rgb - paper).max(axis=2)
    far = d[d > 2 * _MIN_CONTRAST]
    if not far.size:
        return
    reach = float(np.percentile(far, 98))
    cov = np.clip(d / max(reach, _MIN_CONTRAST), 0.0, 1.0).astype(np.float32)
    inked = cov >= 0.5
    own = np.clip(paper + (rgb - paper) / np.maximum(cov, 0.5)[:, :, None], 0.0, 1.0)
    weight = inked.astype(np.float32)
    num = _box_sum(own * weight[:, :, None], _INK_REACH)
    den = _box_sum(weight[:, :, None], _INK_REACH)
    near = np.where(den > 0.5, num / np.maximum(den, 1e-6), line.line_color)
    line.coverage[...] = cov
    line.ink_colors = np.where(inked[:, :, None], own, near).astype(np.float32)


def _box_sum(a: np.ndarray, r: int) -> np.ndarray:
    """Sum over the (2r+1)² window around each pixel (clipped at the borders), by cumulative sums."""
    out = a.astype(np.float64)
    for axis in (0, 1):
        n = out.shape[axis]
        c = np.cumsum(out, axis=axis)
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
        i = np.arange(n)
        out = np.take(c, np.minimum(i + r + 1, n), axis=axis) - np.take(c, np.maximum(i - r, 0), axis=axis)
    return out.astype(np.float32)


def _gray_levels(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(level index image, each level's value) of a one-channel 8/16-bit image, else None.

    Such an image (the usual line drawing) is converted through its 256 or 65 536 levels: a
    histogram gives the paper and ink statistics and a lookup table the coverage, instead of
    three-channel float copies of every pixel (a third of a 1080p file's end-to-end time).
    """
    if pixels.dtype not in (np.uint8, np.uint16):
        return None
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        index = pixels[:, :, 0]
    elif pixels.ndim == 2:
        index = pixels
    else:
        return None
    return index, to_float(np.arange(np.iinfo(pixels.dtype).max + 1, dtype=pixels.dtype))


def _hist_percentile(hist: np.ndarray, values: np.ndarray, q: float) -> float:
    """np.percentile (linear) of the pixels a histogram over sorted `values` counts."""
    cum = np.cumsum(hist)
    rank = q / 100.0 * (int(cum[-1]) - 1)
    lo = int(np.floor(rank))
    v_lo = float(values[np.searchsorted(cum, lo, side="right")])
    v_hi = float(values[np.searchsorted(cum, min(lo + 1, int(cum[-1]) - 1), side="right")])
    return v_lo + (v_hi - v_lo) * (rank - lo)


def _gray_drawing(pixels: np.ndarray, index: np.ndarray, values: np.ndarray,
                  blocks: list[tuple[int, int]]) -> LineImage:
    """to_coverage for one-channel integer drawings, through their levels (same results)."""
    h, w = index.shape
    hist = np.zeros(len(values), np.int64)
    for y0, y1 in blocks:
        hist += np.bincount(index[y0:y1].ravel(), minlength=len(values))
    paper = _hist_percentile(hist, values, 50)
    light_paper = paper >= 0.5
    far = np.abs(values - paper) > 2 * _MIN_CONTRAST
    ink = _hist_percentile(hist * far, values, 2 if light_paper else 98) if (hist * far).any() else paper
    contrast = paper - ink if light_paper else ink - paper
    if contrast < _MIN_CONTRAST:
        lut = np.zeros(len(values), np.float32)
    else:
        lut = np.clip((values - np.float32(paper)) / np.float32(ink - paper), 0.0, 1.0).astype(np.float32)
    coverage = np.empty((h, w), np.float32)
    for y0, y1 in blocks:
        coverage[y0:y1] = lut[index[y0:y1]]

    def mean_level(mask: np.ndarray, fallback: float) -> np.ndarray:
        n = int(hist[mask].sum())
        level = float((hist[mask] * values[mask].astype(np.float64)).sum() / n) if n else fallback
        return np.full(3, level, np.float32)

    ink_color = np.full(3, 0.0 if light_paper else 1.0, np.float32) if contrast < _MIN_CONTRAST \
        else mean_level(lut > 0.9, ink)
    return LineImage(coverage=coverage, mode=DRAWING, dtype=pixels.dtype,
                     channels=0 if pixels.ndim == 2 else 1, pixels=pixels,
                     line_color=ink_color, paper_color=mean_level(lut < 0.02, paper))


def check_strength(strength: float) -> None:
    """ValueError naming the allowed range when `strength` is outside 0..MAX_STRENGTH."""
    if not 0.0 <= strength <= MAX_STRENGTH:
        raise ValueError(f"strength {strength} is outside 0..{MAX_STRENGTH:g}; use 0 (input lines) to "
                         f"1 (the style) or up to {MAX_STRENGTH:g} (exaggerated)")


def blend(original: np.ndarray, refined: np.ndarray, strength: float) -> np.ndarray:
    """Mix original and refined coverage: 0 keeps the original exactly, 1 gives the refined,
    above 1 extrapolates the style's change (thinner thins, thicker thickens, further)."""
    check_strength(strength)
    if strength == 0.0:
        return np.asarray(original, np.float32).copy()
    if refined.shape != original.shape:
        raise ValueError(f"refined coverage {refined.shape} does not match the input {original.shape}")
    if strength == 1.0:
        return np.clip(refined, 0.0, 1.0, dtype=np.float32)
    return np.clip(original + (refined.astype(np.float32) - original) * np.float32(strength), 0.0, 1.0)


def from_coverage(
    src: LineImage,
    coverage: np.ndarray,
    strength: float = 1.0,
    color: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Write refined coverage back in the input's convention, shape and dtype."""
    check_strength(strength)
    if coverage.shape != src.coverage.shape:
        raise ValueError(f"refined coverage {coverage.shape} does not match the input {src.coverage.shape}")
    h, w = src.coverage.shape
    out_shape = (h, w) if src.channels == 0 else (h, w, src.channels)
    out = np.empty(out_shape, np.dtype(src.dtype))
    gray = src.mode == DRAWING and src.channels in (0, 1)
    int_pass = src.mode == PASS and np.dtype(src.dtype) in (np.uint8, np.uint16)
    for y0, y1 in _row_blocks(h, w):
        orig = src.coverage[y0:y1]
        cov = blend(orig, coverage[y0:y1], strength)
        if int_pass:  # colours are copied or set in the file's own integers; only alpha is computed
            _int_pass_block(src, src.pixels[y0:y1], orig, cov, color, out[y0:y1])
            continue
        if gray:  # one channel in, one channel out: no three-channel copies
            ink = np.asarray(color, np.float32) if color is not None else src.line_color
            out[y0:y1] = _gray_block(src.pixels[y0:y1], orig, cov, float(src.paper_color @ _LUMA),
                                     float(ink @ _LUMA), keep_ink=color is None).reshape(out[y0:y1].shape)
            continue
        rgb_in, alpha_in, _ = _split(src.pixels[y0:y1])
        floats = np.dtype(src.dtype).kind == "f"
        if src.mode == PASS:
            if color is not None:
                rgb = np.broadcast_to(np.asarray(color, np.float32), cov.shape + (3,))
                exact = (np.abs(cov - orig) < 1e-6) & (orig < 1e-6)
            else:
                # Keep the input's own colour where it had lines; new ink takes the typical colour.
                own = _kept(src.pixels[y0:y1, :, :3]) if floats and src.channels == 4 else rgb_in
                if src.premultiplied:
                    own = own / np.maximum(orig, 1e-6)[:, :, None]
                rgb = np.where((orig > 0.01)[:, :, None], own, src.line_color)
                exact = np.abs(cov - orig) < 1e-6
            if src.premultiplied:
                rgb = rgb * cov[:, :, None]
            block = np.concatenate([rgb, cov[:, :, None]], axis=2)
            _put(out[y0:y1], src, block, exact, y0, y1)
            continue
        ink = np.asarray(color, np.float32) if color is not None else src.line_color
        if color is None and src.ink_colors is not None:
            ink = src.ink_colors[y0:y1]
        if color is None and src.channels in (0, 1, 2):
            ink = np.full(3, float(ink @ _LUMA), np.float32)
        # Untouched pixels keep their exact values (with a colour given, only untouched
        # paper: ink takes the colour); elsewhere mix paper and ink colours.
        mixed = src.paper_color * (1.0 - cov[:, :, None]) + ink * cov[:, :, None]
        exact = np.abs(cov - orig) < 1e-6
        if color is not None:
            exact &= orig < 1e-6
        exact = exact[:, :, None]
        block = np.where(exact, rgb_in, mixed)
        if alpha_in is not None:
            block = np.concatenate([block, alpha_in[:, :, None]], axis=2)
        _put(out[y0:y1], src, block, exact[:, :, 0], y0, y1)
    return out


def _put(out: np.ndarray, src: LineImage, block: np.ndarray, exact: np.ndarray, y0: int, y1: int) -> None:
    """A block of float RGBA written in the input's channels and dtype; float inputs keep
    their own values (HDR ones too) where `exact`, since from_float clips to 0..1."""
    out[...] = from_float(_shape_like(block, src.channels), src.dtype)
    if np.dtype(src.dtype).kind == "f" and exact.any():
        out[exact] = _kept(src.pixels[y0:y1][exact])


def _kept(values: np.ndarray) -> np.ndarray:
    """Float values kept as they are, above 1 too; NaN, inf and negatives as to_float gives them."""
    return np.maximum(np.nan_to_num(np.asarray(values, np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0.0)


def _int_pass_block(src: LineImage, pixels: np.ndarray, orig: np.ndarray, cov: np.ndarray,
                    color: tuple[float, float, float] | None, out: np.ndarray) -> None:
    """from_coverage's pass rule for rows of an 8/16-bit pass, written into `out`: the input's
    own colour where it had lines or nothing changed, the typical (or given) colour elsewhere,
    alpha = coverage.
    The same values the float path gives (a colour copied through floats rounds back to
    itself), without float copies of every channel."""
    rgb = np.asarray(color if color is not None else src.line_color, np.float32)
    if src.channels == 2:  # gray + alpha: the colour's luminance
        rgb = np.asarray([rgb @ _LUMA], np.float32)
    fill = from_float(rgb, src.dtype)
    n = out.shape[2] - 1
    if color is None:
        own = (orig > 0.01) | (np.abs(cov - orig) < 1e-6)  # the input's lines, and what did not change
        src_px, out_px = _whole_pixels(pixels), _whole_pixels(out)
        if src_px is not None and out_px is not None:
            # One select per pixel on a wide-integer view: a per-channel select on strided
            # views cost a 1080p pass 60 ms, about an eighth of its whole refinement.
            filled = np.zeros(out.shape[2], out.dtype)
            filled[:n] = fill
            np.copyto(out_px, np.where(own, src_px, filled.view(out_px.dtype)[0]))
        else:
            out[:, :, :n] = np.where(own[:, :, None], pixels[:, :, :n], fill)
    else:  # the given colour, except on paper that stayed paper
        out[:, :, :n] = np.where(((np.abs(cov - orig) < 1e-6) & (orig < 1e-6))[:, :, None], pixels[:, :, :n], fill)
    out[:, :, n] = from_float(cov, src.dtype)


def _whole_pixels(a: np.ndarray) -> np.ndarray | None:
    """An H×W view of an H×W×C integer image with each pixel as one unsigned integer, or None
    where C times the item size is not 2, 4 or 8 bytes or a pixel's channels are not adjacent."""
    size = a.shape[2] * a.dtype.itemsize
    if size not in (2, 4, 8) or a.strides[2] != a.dtype.itemsize:
        return None
    return a.view(np.dtype(f"u{size}"))[:, :, 0]


def _gray_block(pixels: np.ndarray, orig: np.ndarray, cov: np.ndarray, paper: float, ink: float,
                keep_ink: bool) -> np.ndarray:
    """from_coverage's drawing rule for rows of a one-channel drawing, in that one channel:
    untouched pixels keep their values (with a colour given, only untouched paper), the rest
    mix the paper and ink greys."""
    mixed = cov * np.float32(ink - paper)
    mixed += np.float32(paper)
    exact = np.abs(cov - orig) < 1e-6
    if not keep_ink:
        exact &= orig < 1e-6
    kept = pixels.reshape(cov.shape)
    if pixels.dtype.kind == "f":  # floats stay as they are, HDR ones too
        kept = _kept(kept).astype(pixels.dtype)
    # Integers round-trip through floats to themselves.
    return np.where(exact, kept, from_float(mixed, pixels.dtype))


def _shape_like(rgb_or_rgba: np.ndarray, channels: int) -> np.ndarray:
    if channels == 0:
        return rgb_or_rgba[:, :, :3] @ _LUMA
    if channels == 1:
        return (rgb_or_rgba[:, :, :3] @ _LUMA)[:, :, None]
    if channels == 2:
        return np.stack([rgb_or_rgba[:, :, :3] @ _LUMA, rgb_or_rgba[:, :, 3]], axis=2)
    if channels == 3:
        return rgb_or_rgba[:, :, :3]
    return rgb_or_rgba


def over(top_rgba: np.ndarray, bottom_rgba: np.ndarray) -> np.ndarray:
    """Porter-Duff 'over' of straight-alpha float RGBA images (lines over a render)."""
    ta = top_rgba[..., 3:4]
    ba = bottom_rgba[..., 3:4]
    out_a = ta + ba * (1.0 - ta)
    num = top_rgba[..., :3] * ta + bottom_rgba[..., :3] * ba * (1.0 - ta)
    rgb = np.where(out_a > 1e-8, num / np.maximum(out_a, 1e-8), 0.0)
    return np.concatenate([rgb, out_a], axis=-1).astype(np.float32)
