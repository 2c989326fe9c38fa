"""Benchmark: the default style against the seed architecture, through the real worker.

    .venv/bin/python tests/benchmarks/bench_refine.py [--runs 5] [--json out/bench.json]

Inputs are synthetic line drawings (training/synth.py) tiled up to each frame size, with
5-10 % ink, and with `--real DIR` real Freestyle passes of the bpy-rendered set
(`python -m training realset`): its 4K figure renders scaled to 1080p, lines 1.5-12 px. Each configuration gets a fresh worker, so cold start and peak RSS are its own.
The seed architecture runs with random weights (timing only), exported by the project's
own export code to a temporary style, in float32 as the seed ran it (`--seed-precision`);
the default style runs in the worker's own choice (bfloat16 where the CPU has it natively,
LINERELIFER_PRECISION overrides). Not part of the test run.
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

from linerelifer_addon.core.client import WorkerClient  # noqa: E402
from linerelifer_addon.worker.engine import PRECISION_ENV, PRECISIONS  # noqa: E402

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


def measure(style: Path, image: np.ndarray, runs: int, threads: int | None, tile: int | None,
            precision: str | None = None) -> dict:
    saved = os.environ.get(PRECISION_ENV)
    if precision:
        os.environ[PRECISION_ENV] = precision  # read when the worker starts
    client = WorkerClient(threads=threads, reply_timeout=600)
    try:
        t0 = time.perf_counter()
        client.refine(image, style, tile=tile or 0)
        cold = time.perf_counter() - t0
        rounds, infer = [], []
        for _ in range(runs):
            t = time.perf_counter()
            client.refine(image, style, tile=tile or 0)
            rounds.append(time.perf_counter() - t)
            infer.append(float(client.last_stats["seconds"]))
        peak = float(client.last_stats["rss_peak_mb"] or 0)
        used = str(client.last_stats.get("precision") or "?")
    finally:
        client.close()
        if saved is None:
            os.environ.pop(PRECISION_ENV, None)
        else:
            os.environ[PRECISION_ENV] = saved
    med, med_inf = statistics.median(rounds), statistics.median(infer)
    return {"median_s": med, "min_s": min(rounds), "max_s": max(rounds), "inference_s": med_inf,
            "overhead_pct": 100.0 * (med - med_inf) / med_inf, "mpix_per_s": image.size / 1e6 / med,
            "cold_start_s": cold, "peak_rss_mb": peak, "runs": runs, "precision": used}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--style", default=str(ROOT / "linerelifer_addon" / "styles" / "default.keras"))
    ap.add_argument("--skip-seed", action="store_true", help="only the default style")
    ap.add_argument("--seed-precision", default="float32", choices=(*PRECISIONS, "auto"),
                    help="precision the seed architecture runs in (default: float32, as the seed ran)")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench_refine.json"))
    ap.add_argument("--real", help="also time real Freestyle passes from this realset folder at 1080p")
    ap.add_argument("--skip-large", action="store_true", help="leave out the 4K and 8K frames")
    args = ap.parse_args()

    images = {name: drawing(*hw) for name, hw in SIZES.items() if not (args.skip_large and name != "1080p")}
    real = []
    if args.real:
        from linerelifer_addon.core.linewidth import resize
        from training.realset import load_manifest, load_pass

        for e in load_manifest(Path(args.real)):
            if e["scene"] == "figure" and e["height"] == 2160:
                name = f"1080p real t{e['thickness']:g}"
                images[name] = resize(load_pass(Path(args.real), e), SIZES["1080p"])
                real.append(("default", Path(args.style), name))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        seed = None if args.skip_seed else seed_style(Path(tmp))
        plan = [("default", Path(args.style), "1080p"), ("seed arch", seed, "1080p"),
                ("default", Path(args.style), "4K"), ("seed arch", seed, "4K"), ("default", Path(args.style), "8K")]
        for label, style, size in plan + real:
            if style is None or size not in images:
                continue
            img = images[size]
            print(f"measuring {label} at {size} ({img.shape[1]}x{img.shape[0]}, ink {100 * np.mean(img > 0.25):.1f} %)",
                  file=sys.stderr, flush=True)
            runs = args.runs if label == "default" or size == "1080p" else max(3, args.runs // 2 + 1)
            r = measure(style, img, runs, args.threads, args.tile,
                        args.seed_precision if label == "seed arch" else None)
            rows.append({"style": label, "size": size, **r})
    by = {(r["style"], r["size"]): r for r in rows}
    for r in rows:
        base = by.get(("seed arch", r["size"]))
        r["speedup_vs_seed"] = base["median_s"] / r["median_s"] if base and r["style"] == "default" else None

    head = (f"{'style':<10}{'size':<18}{'precision':>10}{'median s':>9}{'min s':>8}{'MPix/s':>8}{'vs seed':>9}"
            f"{'peak RSS MB':>12}{'cold s':>8}{'overhead':>9}{'runs':>5}")
    print(head)
    print("-" * len(head))
    for r in rows:
        sp = f"{r['speedup_vs_seed']:.1f}x" if r["speedup_vs_seed"] else "-"
        print(f"{r['style']:<10}{r['size']:<18}{r['precision']:>10}{r['median_s']:>9.3f}{r['min_s']:>8.3f}{r['mpix_per_s']:>8.2f}"
              f"{sp:>9}{r['peak_rss_mb']:>12.0f}{r['cold_start_s']:>8.2f}{r['overhead_pct']:>8.1f}%{r['runs']:>5}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu_count": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"\nJSON written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
