"""Benchmark: the default style on each backend (and optionally the seed architecture),
through the real worker, engine-only and end to end (file in, file out).

    .venv/bin/python tests/benchmarks/bench_refine.py [--runs 5] [--sizes 1080p,4K] [--seed-arch] [--thick-thin T]
                                                      [--json out/bench_refine.json]

Inputs are synthetic line drawings (training/synth.py) tiled up to each frame size, with
5-10 % ink, written as 8-bit PNGs (dark lines on white), and with `--real DIR` real Freestyle
passes of the bpy-rendered set (`python -m training realset`): its 4K figure renders scaled to
1080p, lines 1.5-12 px, written as RGBA passes (lines in alpha). Each row gets a fresh worker,
so its cold start (spawn to first result) and peak RSS are its own. Per warm frame it reports
the worker's own time (engine), the client's round trip (array in, array out) and the CLI's
per-file path (`cli.refine_file`: read PNG, convert, refine, convert back, write PNG), with
the end-to-end steps apart. A style with a thick-thin of its own (the default style's is 1)
gets a second row per backend, `+ttT`, as the CLI applies it; the first is without it. LiteRT
runs float32; TensorFlow runs in its own choice (bfloat16 where the CPU has it natively;
LINERELIFER_PRECISION overrides). The seed
architecture (`--seed-arch`, random weights, timing only) runs on TensorFlow in float32 as
the seed did. Not part of the test run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from linerelifer_addon.cli import refine_file  # noqa: E402
from linerelifer_addon.core.backends import BACKEND_ENV  # noqa: E402
from linerelifer_addon.core.client import WorkerClient  # noqa: E402
from linerelifer_addon.worker.engine import PRECISION_ENV, PRECISIONS  # noqa: E402

SEED_LABEL = "seed arch"  # the rows of the seed architecture, which the others are compared with
SIZES = {"1080p": (1080, 1920), "4K": (2160, 3840), "8K": (4320, 7680)}


def drawing(h: int, w: int, seed: int = 0, piece: int = 512) -> np.ndarray:
    """A frame of synthetic drawings (uniform Freestyle-like lines), tiled from 512² pieces."""
    from training.synth import synth_pair

    pieces = [synth_pair(seed + i, piece, density=0.6)[0] for i in range(6)]
    frame = np.zeros((h, w), np.float32)
    k = 0
    for y in range(0, h, piece):
        for x in range(0, w, piece):
            p = pieces[k % len(pieces)]
            k += 1
            frame[y:y + piece, x:x + piece] = p[:min(piece, h - y), :min(piece, w - x)]
    return frame


def seed_style(folder: Path) -> Path:
    import keras

    from linerelifer_addon.worker import model as models
    from training.export import export_style

    keras.utils.set_random_seed(0)
    return export_style(models.build_generator("seed"), "seed", folder, "seed-arch", "seed architecture, random weights",
                        {"command": "benchmark (random weights, timing only)"})


class _Env:
    """Environment settings the worker reads when it starts, for one row."""

    def __init__(self, **values: str | None) -> None:
        self.values, self.saved = values, {}

    def __enter__(self) -> None:
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            if v is not None:
                os.environ[k] = v

    def __exit__(self, *exc: object) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def measure(style: Path, png: Path, out: Path, runs: int, threads: int | None, tile: int | None,
            backend: str, precision: str | None = None, thick_thin: float = 0.0) -> dict:
    from linerelifer_addon.core.conversion import to_coverage
    from linerelifer_addon.imagefiles import read_image

    coverage = to_coverage(read_image(png)).coverage
    with _Env(**{PRECISION_ENV: precision, BACKEND_ENV: backend}):
        client = WorkerClient(threads=threads, reply_timeout=600)
        try:
            t0 = time.perf_counter()
            client.refine(coverage, style, tile=tile or 0, thick_thin=thick_thin)
            cold = time.perf_counter() - t0
            engine, round_trip, e2e, steps = [], [], [], []
            for _ in range(runs):
                t = time.perf_counter()
                client.refine(coverage, style, tile=tile or 0, thick_thin=thick_thin)
                round_trip.append(time.perf_counter() - t)
                engine.append(float(client.last_stats["seconds"]))
                parts = refine_file(client, png, out, style, tile=tile or 0, thick_thin=thick_thin)
                e2e.append(parts["total"])
                steps.append(parts)
            peak = float(client.last_stats["rss_peak_mb"] or 0)
            used = f"{client.last_stats.get('backend')}/{client.last_stats.get('precision')}"
        finally:
            client.close()
    med = statistics.median
    return {"engine_s": med(engine), "round_trip_s": med(round_trip), "end_to_end_s": med(e2e),
            "e2e_min_s": min(e2e), "e2e_max_s": max(e2e), "e2e_over_engine": med(e2e) / med(engine),
            "steps_s": {k: med([p[k] for p in steps]) for k in steps[0]},
            "mpix_per_s": coverage.size / 1e6 / med(engine), "cold_start_s": cold, "peak_rss_mb": peak,
            "runs": runs, "backend": used}


def main() -> int:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--sizes", default="1080p,4K", help=f"comma-separated, of {', '.join(SIZES)}")
    ap.add_argument("--backends", default="litert,tensorflow")
    ap.add_argument("--style", default=str(ROOT / "linerelifer_addon" / "styles" / "default.keras"))
    ap.add_argument("--seed-arch", action="store_true", help="also time the seed architecture (minutes)")
    ap.add_argument("--seed-precision", default="float32", choices=(*PRECISIONS, "auto"),
                    help="precision the seed architecture runs in (default: float32, as the seed ran)")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench_refine.json"))
    ap.add_argument("--real", help="also time real Freestyle passes from this realset folder at 1080p")
    ap.add_argument("--thick-thin", type=float, default=None,
                    help="also time the style with this thick-thin (core/nib.py, drawn in the client), 0-1 "
                         "(default: the style's own, as the CLI draws it; 1 for the default style)")
    args = ap.parse_args()

    from linerelifer_addon.core.nib import style_thick_thin

    tt_applied = style_thick_thin(args.style) if args.thick_thin is None else args.thick_thin
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    style_label = Path(args.style).stem  # "default" for the bundled style, else the style's own name
    frames: list[tuple[str, np.ndarray, bool]] = [(size, drawing(*SIZES[size]), False) for size in sizes]
    if args.real:
        from linerelifer_addon.core.linewidth import resize
        from training.realset import load_manifest, load_pass

        for e in load_manifest(Path(args.real)):
            if e["scene"] == "figure" and e["height"] == 2160:
                frames.append((f"1080p real t{e['thickness']:g}",
                               resize(load_pass(Path(args.real), e), SIZES["1080p"]), True))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seed = seed_style(tmp) if args.seed_arch else None
        for k, (size, img, is_pass) in enumerate(frames):
            png = tmp / f"frame_{k}.png"
            if is_pass:  # a Freestyle pass: black lines, coverage in alpha
                rgba = np.zeros(img.shape + (4,), np.uint8)
                rgba[..., 3] = np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
                cv2.imwrite(str(png), rgba)
            else:
                cv2.imwrite(str(png), np.rint((1.0 - img) * 255).astype(np.uint8))
            plan = [(style_label, Path(args.style), b, None, 0.0) for b in args.backends.split(",")]
            if tt_applied:  # the style as applied: its rows without thick-thin show what it adds
                plan += [(f"{style_label}+tt{tt_applied:g}", Path(args.style), b, None, tt_applied)
                         for b in args.backends.split(",")]
            if seed is not None and size in ("1080p", "4K"):
                plan.append((SEED_LABEL, seed, "tensorflow", args.seed_precision, 0.0))
            for label, style, backend, precision, tt in plan:
                print(f"measuring {label} on {backend} at {size} ({img.shape[1]}x{img.shape[0]}, "
                      f"ink {100 * np.mean(img > 0.25):.1f} %)", file=sys.stderr, flush=True)
                runs = args.runs if label != SEED_LABEL or size == "1080p" else max(3, args.runs // 2 + 1)
                r = measure(style, png, tmp / f"out_{k}.png", runs, args.threads, args.tile, backend, precision, tt)
                rows.append({"style": label, "size": size, **r})
    seeds = {r["size"]: r for r in rows if r["style"] == SEED_LABEL}
    for r in rows:
        base = seeds.get(r["size"])
        r["speedup_vs_seed"] = base["engine_s"] / r["engine_s"] if base and r["style"] != SEED_LABEL else None

    head = (f"{'style':<14}{'size':<18}{'backend':>20}{'engine s':>9}{'trip s':>8}{'e2e s':>8}{'e2e/eng':>8}"
            f"{'cold s':>8}{'RSS MB':>8}{'MPix/s':>8}{'vs seed':>8}  e2e steps (read/to_cov/refine/from_cov/write s)")
    print(head)
    print("-" * len(head))
    for r in rows:
        st = r["steps_s"]
        steps = "/".join(f"{st[k]:.3f}" for k in ("read", "to_coverage", "refine", "from_coverage", "write"))
        sp = f"{r['speedup_vs_seed']:.1f}x" if r["speedup_vs_seed"] else "-"
        print(f"{r['style']:<14}{r['size']:<18}{r['backend']:>20}{r['engine_s']:>9.3f}{r['round_trip_s']:>8.3f}"
              f"{r['end_to_end_s']:>8.3f}{r['e2e_over_engine']:>8.2f}{r['cold_start_s']:>8.2f}{r['peak_rss_mb']:>8.0f}"
              f"{r['mpix_per_s']:>8.2f}{sp:>8}  {steps}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu_count": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"\nJSON written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
