"""Score a refine function on the held-out set and print styles side by side."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from training import metrics as m
from training.evalset import EvalItem

METRICS = ("l1", "precision", "recall", "f1", "chamfer", "gap_closure", "speck_removal",
           "hallucinated", "width_hist")
LOWER_IS_BETTER = frozenset({"l1", "chamfer", "hallucinated", "width_hist"})


def identity(x: np.ndarray) -> np.ndarray:
    """Reference 'style' that returns the degraded input unchanged."""
    return x


def _as_image(out, shape) -> np.ndarray:
    out = np.asarray(out, np.float32)
    out = out.reshape(out.shape[-3:-1]) if out.ndim > 2 else out  # accept [1,H,W,1] or [H,W,1]
    if out.shape != shape:
        raise ValueError(f"refine returned shape {out.shape} for an input of shape {shape}; it must keep HxW.")
    return np.clip(out, 0.0, 1.0)


def evaluate_items(refine: Callable[[np.ndarray], np.ndarray], items: Iterable[EvalItem]) -> dict[str, float]:
    """Mean of each metric over items; gap_closure and speck_removal pool all probes."""
    per: dict[str, list[float]] = {k: [] for k in ("l1", "precision", "recall", "f1", "chamfer",
                                                   "hallucinated", "width_hist")}
    gaps_closed = gaps_total = specks_gone = specks_total = 0
    for item in items:
        out = _as_image(refine(item.input.copy()), item.target.shape)  # copy: refine may work in place
        prf = m.line_prf(out, item.target)
        per["l1"].append(float(np.mean(np.abs(out - item.target))))
        for k in ("precision", "recall", "f1"):
            per[k].append(prf[k])
        per["chamfer"].append(m.chamfer(out, item.target))
        per["hallucinated"].append(m.hallucinated_ink(out, item.target))
        per["width_hist"].append(m.width_hist_distance(out, item.target))
        gaps_closed += sum(m.gap_closed(out, a, b) for a, b, _ in item.gaps)
        gaps_total += len(item.gaps)
        specks_gone += sum(m.speck_removed(out, p) for p in item.specks)
        specks_total += len(item.specks)
    result = {k: float(np.mean(v)) if v else float("nan") for k, v in per.items()}
    result["gap_closure"] = gaps_closed / gaps_total if gaps_total else float("nan")
    result["speck_removal"] = specks_gone / specks_total if specks_total else float("nan")
    return {k: result[k] for k in METRICS}


def _best(values: dict[str, float], lower: bool) -> list[str]:
    finite = {k: v for k, v in values.items() if np.isfinite(v)}
    if not finite:
        return []
    target = min(finite.values()) if lower else max(finite.values())
    return [k for k, v in finite.items() if abs(v - target) <= 1e-9]


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """Plain-text table: one column per style, one row per metric, best value starred."""
    styles = list(rows)
    metrics = [k for k in METRICS if any(k in rows[s] for s in styles)]
    metrics += sorted({k for s in styles for k in rows[s]} - set(metrics))
    head = ["metric"] + styles + ["best"]
    body = []
    for k in metrics:
        lower = k in LOWER_IS_BETTER
        vals = {s: float(rows[s].get(k, float("nan"))) for s in styles}
        best = _best(vals, lower) if len(styles) > 1 else []
        cells = [f"{k} ({'lower' if lower else 'higher'})"]
        cells += [f"{vals[s]:.4f}{'*' if s in best else ' '}" for s in styles]
        cells.append("=".join(best) if best else "-")
        body.append(cells)
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(wd) if i == 0 or i == len(r) - 1 else c.rjust(wd)
                              for i, (c, wd) in enumerate(zip(r, widths)))
    lines = [fmt(head), "  ".join("-" * wd for wd in widths)] + [fmt(r) for r in body]
    lines.append("* = best per metric; (lower)/(higher) says which direction is better.")
    return "\n".join(lines)


REAL_METRICS = ("recall", "precision", "darkness_in", "darkness_out", "darkness_kept", "hollow",
                "ghost_edge", "filled_slit", "width_in", "width_ratio", "width_cv", "taper", "end_cut",
                "tip_taper", "shift_change")
_MEDIAN = frozenset({"width_cv", "taper", "end_cut", "tip_taper"})  # per-render medians stay medians across scenes


def real_group(entry: dict) -> str:
    """Which table a render belongs to: anti-aliased 720p, aliased, 4K or thickness modifiers."""
    if entry.get("modifier"):
        return f"modifier {entry['modifier']}"
    if entry["height"] != 720:
        return f"{entry['height']}p"
    return "720p AA" if entry["samples"] > 1 else "720p aliased"


def _inky_window(x: np.ndarray, size: int = 256) -> tuple[int, int]:
    """Top-left corner of the size² window (on a size/2 grid) holding the most ink."""
    h, w = x.shape
    if h <= size or w <= size:
        return 0, 0
    step = size // 2
    best, where = -1.0, (0, 0)
    for y0 in range(0, h - size + 1, step):
        for x0 in range(0, w - size + 1, step):
            s = float(x[y0:y0 + size, x0:x0 + size].sum())
            if s > best:
                best, where = s, (y0, x0)
    return where


def evaluate_real(refine: Callable[[np.ndarray], np.ndarray], cache, entries: list[dict],
                  shift: bool = True) -> dict[tuple[str, float], dict[str, float]]:
    """Real-render metrics per (group, thickness): means over scenes (medians for width_cv, taper)."""
    from training.realmetrics import real_metrics, shift_change
    from training.realset import load_pass

    per: dict[tuple[str, float], list[dict[str, float]]] = {}
    for e in entries:
        x = load_pass(cache, e)
        y = _as_image(refine(x.copy()), x.shape)
        r = real_metrics(x, y)
        if shift and real_group(e) in ("720p AA", "720p aliased"):
            # the whole frame moved and refined (a pan), its inkiest 256² window scored
            r["shift_change"] = shift_change(lambda a: _as_image(refine(a), a.shape), x, base=y,
                                             window=_inky_window(x, 256) + (256, 256))
        per.setdefault((real_group(e), float(e["thickness"])), []).append(r)
    out = {}
    for key, rs in sorted(per.items()):
        agg = {}
        for k in REAL_METRICS:
            v = [r[k] for r in rs if k in r and np.isfinite(r[k])]
            agg[k] = float((np.median if k in _MEDIAN else np.mean)(v)) if v else float("nan")
        out[key] = agg
    return out


def format_real_table(rows: dict[str, dict[tuple[str, float], dict[str, float]]]) -> str:
    """One block per group: a row per (metric, style), a column per thickness."""
    lines = []
    groups = sorted({g for res in rows.values() for g, _ in res})
    for g in groups:
        ts = sorted({t for res in rows.values() for gg, t in res if gg == g})
        head = [f"{g}: thickness"] + [f"{t:g}" for t in ts]
        body = []
        for k in REAL_METRICS:
            for style, res in rows.items():
                vals = [res.get((g, t), {}).get(k, float("nan")) for t in ts]
                if all(not np.isfinite(v) for v in vals):
                    continue
                body.append([f"{k} [{style}]"] + [f"{v:.3f}" if np.isfinite(v) else "-" for v in vals])
        lines += _aligned(head, body) + [""]
    return "\n".join(lines)


def _aligned(head: list[str], body: list[list[str]]) -> list[str]:
    """Text rows: the first column left-aligned, numbers right-aligned, a rule under the head."""
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(wd) if i == 0 else c.rjust(wd) for i, (c, wd) in enumerate(zip(r, widths)))
    return [fmt(head), "  ".join("-" * wd for wd in widths)] + [fmt(r) for r in body]


def _picture_sheet(names: list[str], rows: list[tuple[list[str], list[np.ndarray]]], label_width: int) -> np.ndarray:
    """A picture sheet (uint8, white paper): a header of `names`, then a row per (label lines,
    crops of coverage), each crop drawn as ink on paper in a 3 px white frame."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    lines = []
    for labels, crops in rows:
        line = np.concatenate([np.pad(1.0 - c, 3, constant_values=1.0) for c in crops], axis=1)
        label = np.ones((line.shape[0], label_width), np.float32)
        for j, text in enumerate(labels):
            cv2.putText(label, text, (4, line.shape[0] // 2 + 18 * j), font, 0.45 if j == 0 else 0.4, 0.0, 1,
                        cv2.LINE_AA)
        lines.append(np.concatenate([label, line], axis=1))
    sheet = np.concatenate(lines, axis=0)
    top = np.ones((22, sheet.shape[1]), np.float32)
    step = rows[0][1][0].shape[1] + 6
    for i, name in enumerate(names):
        cv2.putText(top, name, (label_width + i * step + 6, 16), font, 0.45, 0.0, 1, cv2.LINE_AA)
    return np.rint(np.concatenate([top, sheet], axis=0) * 255).astype(np.uint8)


def real_grid(refiners: dict[str, Callable[[np.ndarray], np.ndarray]], cache, entries: list[dict],
              scene: str = "figure", size: int = 192) -> np.ndarray:
    """A picture sheet (uint8, white paper): a row per thickness of `scene` (720p, anti-aliased),
    a column per refiner, each cell the same inkiest crop, refined as a whole frame."""
    from training.realset import load_pass

    picked = sorted((e for e in entries if e["scene"] == scene and real_group(e) == "720p AA"),
                    key=lambda e: e["thickness"])
    rows = []
    for e in picked:
        x = load_pass(cache, e)
        y0, x0 = _inky_window(x, size)
        crops = [_as_image(fn(x.copy()), x.shape)[y0:y0 + size, x0:x0 + size] for fn in refiners.values()]
        rows.append(([f"{e['thickness']:g} px"], crops))
    return _picture_sheet(list(refiners), rows, 56)


def free_end_sheet(refiners: dict[str, Callable[[np.ndarray], np.ndarray]], cache, entries: list[dict],
                   thicknesses: tuple[float, ...] = (1, 2, 3, 5, 8, 12), per: int = 2,
                   cell: int = 128) -> np.ndarray:
    """A picture sheet (uint8, white paper) of free ends, where the taper metric looks: a row per
    end (`per` ends a thickness, each from another scene of the 720p anti-aliased renders), a
    column per refiner; each crop is centred on the input's end, 8 line widths + 32 px across,
    scaled to `cell` px."""
    import cv2

    from training.realmetrics import free_ends
    from training.realset import load_pass

    rows = []
    for t in thicknesses:
        found = 0
        for e in entries:
            if found >= per or real_group(e) != "720p AA" or float(e["thickness"]) != float(t):
                continue
            x = load_pass(cache, e)
            half = int(4 * t + 16)
            h, w = x.shape
            pts = [(y, xx) for y, xx in free_ends(x) if half <= y < h - half and half <= xx < w - half]
            # The loneliest end of a stroke at least half a crop long: a stroke's own tip, not a
            # line running into dense detail or a broken fragment.
            ink = [float(x[p[0] - half:p[0] + half, p[1] - half:p[1] + half].sum()) for p in pts]
            long = [i for i in range(len(pts)) if ink[i] >= half * t]
            if not long:
                continue
            y, xx = pts[min(long, key=lambda i: ink[i])]
            scale = cv2.INTER_NEAREST if 2 * half < cell else cv2.INTER_AREA
            crops = [cv2.resize(_as_image(fn(x.copy()), x.shape)[y - half:y + half, xx - half:xx + half],
                                (cell, cell), interpolation=scale) for fn in refiners.values()]
            rows.append(([f"{t:g} px", e["scene"]], crops))
            found += 1
    if not rows:
        raise ValueError("no free ends in the anti-aliased 720p renders of the real-render set; rebuild it with "
                         "`python -m training realset --rebuild`")
    return _picture_sheet(list(refiners), rows, 96)


FIT_WIDTHS = (1.0, 2.0, 3.0, 5.0, 8.0, 12.0)  # bins of the tied samples' input line width
FIT_METRICS = ("width_cv", "taper")
FIT_TARGETS = "targets"  # the row of the drawings' own targets


def tied_fit(refiners: dict[str, Callable[[np.ndarray], np.ndarray]], n: int = 80,
             size: int = 384) -> dict[str, dict[float, dict[str, float]]]:
    """Width variation and free-end taper (`realmetrics`) of each refiner on tied synthetic
    drawings, next to the targets' own (row FIT_TARGETS): how much of its training data's
    hand-drawn look a style shows (the targets' values are the most it could), by the real
    renders' metrics.

    Drawings use seeds past the evaluation set's (never trained on); each goes to the bin of
    FIT_WIDTHS nearest its line width (log scale). Medians per bin, NaN where no stroke counted;
    every row also counts its bin's drawings.
    """
    from training.evalset import EVAL_SEED_BASE
    from training.realmetrics import real_metrics
    from training.synth import synth_sample

    per: dict[str, dict[float, list[dict[str, float]]]] = {}
    for i in range(n):
        s = synth_sample(EVAL_SEED_BASE + 2 * 10**6 + i, size, tied=True)
        own = real_metrics(s.input, s.target)
        if not own:  # no line in the input
            continue
        b = min(FIT_WIDTHS, key=lambda t: abs(np.log(s.width / t)))
        results = {FIT_TARGETS: own}
        for label, fn in refiners.items():
            results[label] = real_metrics(s.input, _as_image(fn(s.input.copy()), s.input.shape))
        for label, r in results.items():
            per.setdefault(label, {}).setdefault(b, []).append({k: r.get(k, np.nan) for k in FIT_METRICS})
    out: dict[str, dict[float, dict[str, float]]] = {}
    for label, bins in per.items():
        out[label] = {}
        for b, rows in sorted(bins.items()):
            agg = {}
            for k in FIT_METRICS:
                v = [r[k] for r in rows if np.isfinite(r[k])]
                agg[k] = float(np.median(v)) if v else float("nan")
            agg["drawings"] = float(len(rows))
            out[label][b] = agg
    return out


def format_fit_table(rows: dict[str, dict[float, dict[str, float]]]) -> str:
    """A row per (metric, row of tied_fit), a column per width bin, and the drawings per bin."""
    bins = sorted({b for res in rows.values() for b in res})
    head = ["tied drawings: width"] + [f"{b:g}" for b in bins]
    body = [[f"{k} [{label}]"] + [f"{res.get(b, {}).get(k, np.nan):.3f}" for b in bins]
            for k in FIT_METRICS for label, res in rows.items()]
    first = next(iter(rows.values()), {})
    body.append(["drawings"] + [f"{first.get(b, {}).get('drawings', 0):.0f}" for b in bins])
    return "\n".join(_aligned(head, body))
