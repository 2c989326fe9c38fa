"""`python -m training train|evaluate`: build and judge line styles."""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path


def cmd_train(args: argparse.Namespace) -> int:
    from linerelifer_addon.core.styles import user_styles_dir

    from .dataset import PairSampler, WorkerSampler
    from .export import command_line, export_style
    from .train import TrainConfig, Trainer

    if args.data_workers is not None and args.data_workers < 0:
        from .prepare import InputError

        raise InputError(f"--data-workers {args.data_workers}: give 0 (batches made on a thread) or a number of processes.")
    start = _init_style(args) if args.init_from else None
    if args.arch is None:
        args.arch = "field"
    base = TrainConfig.seed_baseline if args.arch == "seed" else TrainConfig
    overrides = {k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("crop", args.crop),
                                   ("seed", args.seed), ("threads", args.threads), ("data_workers", args.data_workers), ("lr", args.lr),
                                   ("sample_every", args.sample_every), ("gan_weight", args.gan_weight), ("shift_weight", args.shift_weight),
                                   ("gap_weight", args.gap_weight), ("gap_from", args.gap_from), ("trim_weight", args.trim_weight), ("trim_from", args.trim_from),
                                   ("valley_weight", args.valley_weight), ("slit_weight", args.slit_weight),
                                   ("cut_weight", args.cut_weight),
                                   ("ink_weight", args.ink_weight), ("ink_until", args.ink_until),
                                   ("mark_weight", args.mark_weight),
                                   ("speck_weight", args.speck_weight), ("ema", args.ema), ("stem", args.stem), ("basis", args.basis), ("lr_schedule", args.lr_schedule), ("target", args.target),
                                   ("widths", tuple(int(w) for w in args.widths.split(",")) if args.widths else None),
                                   ("nib", args.nib))
                 if v is not None}
    cfg = base(**overrides) if args.arch == "seed" else base(arch=args.arch, **overrides)
    out_dir = Path(args.out) if args.out else user_styles_dir()
    run_dir = Path(args.run_dir or Path("runs") / args.name)
    _check_train_paths(args, out_dir, run_dir)
    t0 = time.perf_counter()
    tone = None
    if args.drawings:
        from .prepare import ink_tone, prepare_folder

        pairs = prepare_folder(args.drawings)
        tone = ink_tone(args.drawings)
        print(f"prepared {len(pairs)} drawings from {args.drawings} in {time.perf_counter() - t0:.1f} s"
              + (f"; ink tone {tone * 255:.0f}/255" if tone is not None else ""))
        data = f"drawings in {Path(args.drawings).name}/"
    else:
        pairs = None
        data = f"synthetic hand-inked drawings (training/synth.py), pool {cfg.pool}"
    tied = pairs is None and cfg.target == "tied"
    if tied:  # the target is drawn from the clean input's centerlines: no sub-pixel jitter between them
        cfg.degrade = {**cfg.degrade, "jitter": 0.0}
    if args.aliased:
        cfg.degrade = {**cfg.degrade, "aliased": args.aliased}
    make = functools.partial(PairSampler, pairs, crop=cfg.crop, seed=cfg.seed, degrade_kwargs=cfg.degrade,
                             **({"pool_size": cfg.pool, "tied": cfg.target == "tied", "nib": cfg.nib}
                                if pairs is None else {}))
    sampler = None if cfg.data_workers else make()  # with processes, each builds its own pool
    trainer = Trainer(cfg, run_dir, sampler)
    trainer.command = command_line()
    trainer.data = (f"drawings in {Path(args.drawings).resolve()}" if args.drawings
                    else f"synthetic drawings, {cfg.target} targets")
    if start is not None:
        trainer.start_from_style(*start)
    if args.resume:
        done = trainer.restore()
        print(f"resuming {run_dir} at step {done}" if done else
              f"no checkpoint in {run_dir} to resume: starting at step 0")
    if cfg.data_workers:  # started once the run is known to go ahead
        trainer.sampler = WorkerSampler(make, cfg.seed, cfg.data_workers, cfg.batch)
    try:
        logs = trainer.fit(verbose=0 if args.quiet else 1)
    finally:
        if cfg.data_workers:
            trainer.sampler.close()
    desc = args.description or (f"Trained from {data}" if args.drawings else "Default hand-inked line style")
    training = {"command": trainer.command, "data": data, "seed": cfg.seed, "steps": cfg.steps,
                "wall_seconds": round(trainer.wall, 1), "config": dict(vars(cfg)),
                "final_losses": {k: round(v, 5) for k, v in logs.items()}}
    if trainer.resumed_from:  # the steps before this command ran under the checkpoint's own settings
        training["resumed_from"] = trainer.resumed_from
    if trainer.initialised_from:
        training["initialised_from"] = trainer.initialised_from
    import numpy as np

    from linerelifer_addon.core.linewidth import line_width

    from .synth import TIED_WIDTHS

    # What the network saw: tied data holds every width up to TIED_WIDTHS, so only wider lines resample.
    native = TIED_WIDTHS[1] if tied else float(np.median([line_width(x) for x, _ in (sampler or make()).pairs]))
    # The LiteRT file is converted through TensorFlow; a JAX run (a GPU's host) adds it later.
    tflite = trainer.backend == "tensorflow"
    path = export_style(trainer.final_generator(), cfg.arch, out_dir, args.name, desc, training,
                        native_width=native, ink_tone=tone, tflite=tflite)
    print(f"style written: {path} ({cfg.steps} steps, {trainer.wall:.0f} s of training)"
          + ("" if tflite else f"; add its LiteRT file with `python -m training export {path}` where "
                               "TensorFlow is installed"))
    return 0


def _init_style(args: argparse.Namespace) -> tuple[Path, dict]:
    """The style `--init-from` names: its .keras file and what to record of it. Its network's
    shape (architecture, widths, stem, basis) becomes this run's unless given on the command line."""
    from linerelifer_addon.core.styles import resolve_style

    from .prepare import InputError

    info = resolve_style(args.init_from)
    keras_file = info.path.with_suffix(".keras")
    if not keras_file.is_file():
        raise InputError(f"--init-from {args.init_from}: {keras_file} is missing (a LiteRT file alone cannot be "
                         "trained on); copy the style's .keras file beside it.")
    shape = info.meta.get("training", {}).get("config", {})
    if args.arch is None:
        args.arch = info.meta.get("arch") or shape.get("arch") or "field"
    if args.widths is None and shape.get("widths"):
        args.widths = ",".join(str(w) for w in shape["widths"])
    for key in ("stem", "basis"):
        if getattr(args, key) is None and shape.get(key) is not None:
            setattr(args, key, int(shape[key]))
    record = {"style": info.name, "file": _shareable_path(keras_file), "training": info.meta.get("training")}
    return keras_file, record


def _shareable_path(path: Path) -> str:
    """`path` as recorded in a style that travels to other machines: relative to the working
    folder when inside it, else the file name alone (no user's home folder in a shared style)."""
    path = path.resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def _nib(text: str) -> tuple[float, float]:
    """--nib "0.5,1.8": the tied targets' thinnest and thickest width factor."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not two numbers: give the thinnest and thickest factor, e.g. 0.5,1.8")
    if not 0.0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 < thinnest <= thickest, e.g. 0.5,1.8")
    return lo, hi


def _check_train_paths(args: argparse.Namespace, out_dir: Path, run_dir: Path) -> None:
    """Refuse, before any training, what would only fail or overwrite work at its end."""
    from linerelifer_addon.core.styles import list_styles, user_styles_dir

    from .prepare import InputError

    if args.name in ("", ".", "..") or Path(args.name).name != args.name:
        raise InputError(f"--name {args.name} must be a plain file name (no folders); put the folder in --out.")
    style = out_dir / f"{args.name}.keras"
    if out_dir.resolve() == user_styles_dir().resolve() and any(
            s.bundled and s.name == args.name for s in list_styles()):
        raise InputError(f"--name {args.name} is a bundled style's name, which a user style never replaces; "
                         "choose another --name.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise InputError(f"--out {out_dir} cannot be made ({ex.strerror or ex}); choose a folder you can write to.")
    if not os.access(out_dir, os.W_OK):
        raise InputError(f"--out {out_dir} is not writable; choose a folder you can write to.")
    has_run = (run_dir / "checkpoint.npz").is_file()
    resuming = args.resume and has_run
    if resuming and args.init_from:
        raise InputError(f"{run_dir} already holds a run, which --resume continues; --init-from only starts new "
                         "runs, so drop one of them.")
    if has_run and not args.resume:
        state = run_dir / "state.json"
        step = json.loads(state.read_text()).get("step", "?") if state.is_file() else "?"
        raise InputError(f"{run_dir} already holds a run (step {step}); add --resume to continue it, or "
                         "choose another --name or --run-dir.")
    existing = [p for p in (style, style.with_suffix(".tflite"), style.with_suffix(".json")) if p.exists()]
    if existing and not (resuming or args.overwrite):  # a resumed run re-exports its own style
        raise InputError(f"{existing[0]} exists; choose another --name, or add --overwrite to replace it.")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from linerelifer_addon.core.linewidth import line_width, refine_at_width, width_settings
    from linerelifer_addon.core.nib import check_thick_thin, draw_nib, hard_edged, style_thick_thin
    from linerelifer_addon.core.styles import resolve_style
    from linerelifer_addon.worker.engine import Engine, configure_threads

    from .evalset import make_evalset
    from .evaluate import evaluate_items, evaluate_real, format_real_table, format_table
    from .probes import make_probes, score_probes

    try:
        if args.thick_thin is not None:
            check_thick_thin(args.thick_thin)
    except ValueError as exc:
        raise SystemExit(f"error: --{exc}") from None
    configure_threads(args.threads)
    items = make_evalset()
    probes = make_probes()
    refiners = {"identity (input)": lambda x: x}
    for ref in (args.style, args.baseline):
        if not ref:
            continue
        info = resolve_style(ref)
        engine = Engine(info.path)
        refiners[info.name] = lambda x, e=engine: e.refine(x, skip_blank=False)
        nw, gain = width_settings(info.path)
        if args.width:
            refiners[f"{info.name} + width"] = lambda x, e=engine, nw=nw, g=gain: refine_at_width(
                x, nw, lambda a: e.refine(a, skip_blank=False), edge_gain=g)
        # as the CLI and Blender apply the style: with --width, its own thick-thin (the default
        # style's is 1) after the width's resampling; --thick-thin T sets another
        tt = style_thick_thin(info.path) if args.thick_thin is None else args.thick_thin
        if tt and (args.width or args.thick_thin is not None):

            def nibbed(x, e=engine, nw=nw, g=gain, t=tt):
                width = line_width(x)
                refined = refine_at_width(x, nw, lambda a: e.refine(a, skip_blank=False), edge_gain=g, width=width)
                return draw_nib(refined, width, t, hard_edges=hard_edged(x), source=x)

            refiners[f"{info.name} + thick-thin {tt:g}"] = nibbed
    rows = {}
    for label, fn in refiners.items():
        rows[label] = {**evaluate_items(fn, items), **score_probes(fn, probes)}
    print(format_table(rows))
    real = {}
    if args.real:
        from .realset import load_manifest

        cache = Path(args.real)
        entries = load_manifest(cache)
        real = {label: evaluate_real(fn, cache, entries, shift=not args.no_shift) for label, fn in refiners.items()}
        print()
        print(format_real_table(real))
        import cv2

        from .evaluate import free_end_sheet, real_grid

        if args.grid:
            cv2.imwrite(args.grid, real_grid(refiners, cache, entries))
            print(f"picture grid written: {args.grid}")
        if args.ends:
            cv2.imwrite(args.ends, free_end_sheet(refiners, cache, entries))
            print(f"free-end sheet written: {args.ends}")
    fit = {}
    if args.fit:
        from .evaluate import format_fit_table, tied_fit

        fit = tied_fit(refiners)
        print()
        print(format_fit_table(fit))
    if args.json:
        for label, res in fit.items():
            rows.setdefault(label, {})["fit"] = {f"w{b:g}": v for b, v in res.items()}
        for label, res in real.items():
            rows[label]["real"] = {f"{g} t{t:g}": v for (g, t), v in res.items()}
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from linerelifer_addon.core.styles import resolve_style

    from .export import convert_style

    for ref in args.styles:
        info = resolve_style(ref)
        t0 = time.perf_counter()
        out = convert_style(info.path)
        print(f"{out} ({out.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_realset(args: argparse.Namespace) -> int:
    from .realset import build

    build(cache=Path(args.cache), rebuild=args.rebuild)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="prepare data, train, export a style")
    t.add_argument("--drawings", help="folder of line drawings (default: synthetic data)")
    t.add_argument("--name", required=True, help="style name (file NAME.keras)")
    t.add_argument("--out", help="folder for the style (default: the user styles folder)")
    t.add_argument("--description")
    t.add_argument("--arch", choices=("field", "lite", "seed"),
                   help="field (default: shift-stable), lite (the first default style's) or seed (the seed project's)")
    t.add_argument("--init-from", metavar="STYLE",
                   help="start from this style's weights (name or .keras path) instead of random ones: "
                        "fine-tune it, e.g. the default style towards a studio's drawings")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch", type=int)
    t.add_argument("--crop", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--gan-weight", type=float, help="weight of the adversarial loss")
    t.add_argument("--shift-weight", type=float, help="weight of the shift-consistency loss (0 = off)")
    t.add_argument("--gap-weight", type=float, help="extra loss weight on missing ink: wider strokes, gaps (default 0)")
    t.add_argument("--gap-from", type=int,
                   help="px: put the gap weight only beside input lines at least this wide (odd: 4 acts as 5; default 0: everywhere)")
    t.add_argument("--trim-weight", type=float, help="extra loss weight on surplus ink (thinner strokes, tapers)")
    t.add_argument("--trim-from", type=int,
                   help="px: put the trim weight only on input lines at least this wide (odd: 4 acts as 5; default 0: on every line)")
    t.add_argument("--slit-weight", type=float,
                   help="extra loss weight on the paper between close target lines (dense detail kept open; default 0)")
    t.add_argument("--valley-weight", type=float,
                   help="loss weight on light valleys the target lacks (ghost edges beside a thinned line; default 0)")
    t.add_argument("--cut-weight", type=float, help="extra loss weight on the ink the training gaps cut out")
    t.add_argument("--ink-weight", type=float, help="extra loss weight on target ink")
    t.add_argument("--ink-until", type=int,
                   help="px: put the ink weight only on lines thinner than this (odd: 4 acts as 5; default 0: on every line)")
    t.add_argument("--mark-weight", type=float, help="extra loss weight on small isolated target marks (dots) and stroke ends")
    t.add_argument("--speck-weight", type=float, help="extra loss weight on small isolated input ink the target lacks (specks)")
    t.add_argument("--ema", type=float, help="export the moving average of the generator's weights with this momentum, e.g. 0.999 (0 = last step)")
    t.add_argument("--lr-schedule", choices=("cosine", "constant"))
    t.add_argument("--target", choices=("tied", "free"),
                   help="synthetic targets: tied to the input's lines (default) or width drawn apart from it (free)")
    t.add_argument("--nib", type=_nib,
                   help="tied targets' width factors, thinnest,thickest across stroke directions (default 0.65,1.55)")
    t.add_argument("--aliased", type=float,
                   help="share of inputs point-sampled like a 1-sample render (hard, stepped edges; default 0)")
    t.add_argument("--widths", help="channel widths at 1/4 and 1/8 resolution, e.g. 32,64 (default: the arch's own)")
    t.add_argument("--stem", type=int, help="full-resolution 3x3 features before the fold (default: the arch's own)")
    t.add_argument("--basis", type=int, help="field: learned full-resolution 5x5 filters, half of them dilated (default: 12)")
    t.add_argument("--threads", type=int)
    t.add_argument("--data-workers", type=int,
                   help="make batches in this many processes, for a GPU's host with cores to spare "
                        "(default 0: one thread, the seed's one stream of crops)")
    t.add_argument("--sample-every", type=int)
    t.add_argument("--run-dir", help="checkpoints, logs and sample sheets (default runs/NAME)")
    t.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace an existing style of that name")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("evaluate", help="metrics table on the held-out set")
    e.add_argument("--style", required=True, help="style name or .keras path")
    e.add_argument("--baseline", help="second style to compare against")
    e.add_argument("--json", help="also write the results here")
    e.add_argument("--threads", type=int)
    e.add_argument("--real", default=None, help="also score the real renders in this folder (built by `realset`)")
    e.add_argument("--width", action="store_true", help="also score each style with width normalisation")
    e.add_argument("--thick-thin", type=float, default=None,
                   help="also score each style with its width settings and this thick-thin (core/nib.py), 0-1 "
                        "(default: with --width, the style's own, 1 for the default style)")
    e.add_argument("--no-shift", action="store_true", help="skip the shift-stability test on real renders")
    e.add_argument("--fit", action="store_true",
                   help="also score width variation and taper on tied synthetic drawings, next to their targets' own")
    e.add_argument("--grid", help="with --real: write a picture grid (input | outputs, a row per thickness) here")
    e.add_argument("--ends", help="with --real: write crops of free ends (input | outputs, two a thickness) here")
    e.set_defaults(func=cmd_evaluate)
    x = sub.add_parser("export", help="add the LiteRT (.tflite) file to existing .keras styles")
    x.add_argument("styles", nargs="+", help="style names or .keras paths")
    x.set_defaults(func=cmd_export)
    r = sub.add_parser("realset", help="render the real Freestyle evaluation set with bpy (cached)")
    r.add_argument("--cache", default="out/realset", help="folder for the renders (default out/realset)")
    r.add_argument("--rebuild", action="store_true", help="render everything again")
    r.set_defaults(func=cmd_realset)
    args = p.parse_args(argv)
    if args.cmd == "train" and args.aliased is not None and not 0.0 <= args.aliased <= 1.0:
        p.error(f"--aliased {args.aliased} is a share of the inputs: give a number from 0 to 1")
    if args.cmd == "evaluate" and (args.grid or args.ends) and not args.real:
        p.error("--grid and --ends picture the real renders: add --real out/realset (built by `realset`)")
    if args.cmd == "train":
        for flag, value, least in (("--steps", args.steps, 1), ("--batch", args.batch, 1), ("--crop", args.crop, 32)):
            if value is not None and value < least:
                p.error(f"{flag} {value} is too small: give at least {least}")
    from linerelifer_addon.core.styles import StyleError

    from .prepare import InputError

    try:
        return args.func(args)
    except (InputError, StyleError) as ex:  # what the user gave, said in one sentence
        print(f"error: {ex}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
