"""Training end to end: studio drawings in, a loadable, listed, usable style out."""
import dataclasses
import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from conftest import ROOT, marker_drawings  # noqa: E402


def test_train_from_drawings_makes_a_listed_usable_style(tmp_path) -> None:
    drawings = tmp_path / "drawings"
    marker_drawings(drawings)
    styles = tmp_path / "styles"
    env = {**os.environ, "LINERELIFER_STYLES_DIR": str(styles), "TF_CPP_MIN_LOG_LEVEL": "2"}
    r = subprocess.run([sys.executable, "-m", "training", "train", "--drawings", str(drawings), "--name", "marker",
                        "--steps", "6", "--batch", "2", "--crop", "64", "--sample-every", "3",
                        "--run-dir", str(tmp_path / "run"), "--quiet"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    style = styles / "marker.keras"
    meta = json.loads(style.with_suffix(".json").read_text())
    assert meta["training"]["steps"] == 6 and meta["training"]["seed"] is not None
    assert meta["training"]["command"].startswith("python -m training train")
    assert meta["margin"] % meta["align"] == 0 and meta["receptive_radius"] <= meta["margin"]
    assert (tmp_path / "run" / "samples" / "step000006.png").is_file()
    assert (tmp_path / "run" / "checkpoint.npz").is_file()
    # The style is listed and refines a drawing through the CLI (safe-mode load in the worker).
    listed = subprocess.run([sys.executable, "-m", "linerelifer_addon", "styles"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert any(l.split()[:2] == ["marker", "user"] for l in listed.stdout.splitlines()), listed.stdout
    out = tmp_path / "refined.png"
    r = subprocess.run([sys.executable, "-m", "linerelifer_addon", "refine", str(drawings / "scan0.png"), "-o", str(out),
                        "--style", "marker", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert cv2.imread(str(out), 0).shape == (240, 300)
    # Resume continues from the checkpoint instead of starting over; a blank page among the scans
    # is skipped with one line, the hidden files macOS copies beside each file are not read.
    cv2.imwrite(str(drawings / "blank.png"), np.full((120, 160), 255, np.uint8))
    (drawings / "._scan0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    r = subprocess.run([sys.executable, "-m", "training", "train", "--drawings", str(drawings), "--name", "marker",
                        "--steps", "8", "--batch", "2", "--crop", "64", "--run-dir", str(tmp_path / "run"),
                        "--resume", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stdout and "at step 6" in r.stdout
    assert f"skipped {drawings / 'blank.png'}: no ink lines found in it" in r.stderr.splitlines()
    assert "._scan0" not in r.stderr
    first = json.loads(style.with_suffix(".json").read_text())["training"]
    assert first["steps"] == 8 and first["final_losses"]
    # The resumed style names the command and settings its first 6 steps ran under.
    assert first["resumed_from"]["step"] == 6 and "--steps 6" in first["resumed_from"]["command"]
    # Resuming a finished run trains nothing and exports it again with the same record.
    again = tmp_path / "again"
    r = subprocess.run([sys.executable, "-m", "training", "train", "--drawings", str(drawings), "--name", "again",
                        "--steps", "8", "--batch", "2", "--crop", "64", "--run-dir", str(tmp_path / "run"),
                        "--out", str(again), "--resume", "--quiet"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    second = json.loads((again / "again.json").read_text())["training"]
    assert second["final_losses"] == pytest.approx(first["final_losses"], rel=1e-4)  # the CSV keeps 6 digits
    assert second["wall_seconds"] == first["wall_seconds"]


def _train_refused(args: list[str], env: dict) -> str:
    """Run `training train ARGS`, which must refuse with one line on stderr; returns it."""
    r = subprocess.run([sys.executable, "-m", "training", "train", *args, "--quiet"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return lines[0]


def test_train_refuses_what_would_lose_work_or_mix_runs(tmp_path) -> None:
    """A studio's run and style are not overwritten by a second command, and a resumed run keeps
    the network's shape and its drawings; each refusal is one line before any training."""
    drawings = tmp_path / "drawings"
    marker_drawings(drawings)
    styles = tmp_path / "styles"
    env = {**os.environ, "LINERELIFER_STYLES_DIR": str(styles), "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = tmp_path / "run"
    small = ["--steps", "2", "--batch", "2", "--crop", "64", "--run-dir", str(run)]
    r = subprocess.run([sys.executable, "-m", "training", "train", "--drawings", str(drawings), "--name", "house",
                        *small, "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    before = (run / "checkpoint.npz").read_bytes(), (styles / "house.keras").read_bytes()

    line = _train_refused(["--drawings", str(drawings), "--name", "house", *small], env)
    assert f"{run} already holds a run (step 2)" in line and "--resume" in line
    line = _train_refused(["--drawings", str(drawings), "--name", "house", "--steps", "2", "--batch", "2",
                           "--crop", "64", "--run-dir", str(tmp_path / "other")], env)
    assert f"{styles / 'house.keras'} exists" in line and "--overwrite" in line
    line = _train_refused(["--drawings", str(drawings), "--name", "house", "--steps", "2", "--batch", "2",
                           "--crop", "64", "--run-dir", str(tmp_path / "typo"), "--resume"], env)
    assert f"{styles / 'house.keras'} exists" in line  # nothing to resume there: a new run
    line = _train_refused(["--drawings", str(drawings), "--name", "house", *small, "--resume", "--widths", "16,32"], env)
    assert "holds a network with --widths 32,64, not 16,32" in line
    line = _train_refused(["--name", "house", *small, "--resume"], env)  # --drawings forgotten
    assert f"was trained on drawings in {drawings.resolve()}, not synthetic drawings" in line
    line = _train_refused(["--drawings", str(drawings), "--name", "default", "--steps", "2"], env)
    assert "bundled style's name" in line
    line = _train_refused(["--drawings", str(tmp_path / "nowhere"), "--name", "x", "--run-dir", str(tmp_path / "x")], env)
    assert "is not a folder" in line
    line = _train_refused(["--drawings", str(drawings), "--name", "house", *small, "--resume", "--init-from", "default"], env)
    assert f"{run} already holds a run" in line and "--init-from only starts new runs" in line
    line = _train_refused(["--drawings", str(drawings), "--name", "y", "--run-dir", str(tmp_path / "y"),
                           "--init-from", "default", "--widths", "16,32"], env)
    assert "default.keras holds a network of another shape than --arch field --widths 16,32" in line
    line = _train_refused(["--drawings", str(drawings), "--name", "z", "--run-dir", str(tmp_path / "z"),
                           "--data-workers", "-1"], env)
    assert "--data-workers -1" in line and "number of processes" in line
    assert ((run / "checkpoint.npz").read_bytes(), (styles / "house.keras").read_bytes()) == before


def test_batches_made_in_processes_train_a_style(tmp_path) -> None:
    """--data-workers 2: the drawings travel to two spawned processes whose batches the run trains
    on (its sample sheet's inputs are theirs, not the one-thread stream's), and it records the count."""
    import cv2

    drawings = tmp_path / "drawings"
    marker_drawings(drawings)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    inputs = {}
    for workers in (2, 0):
        run = tmp_path / f"run{workers}"
        r = subprocess.run([sys.executable, "-m", "training", "train", "--drawings", str(drawings),
                            "--name", f"spread{workers}", "--steps", "3", "--batch", "2", "--crop", "64",
                            "--data-workers", str(workers), "--sample-every", "1", "--out", str(tmp_path),
                            "--run-dir", str(run), "--quiet"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        state = json.loads((run / "state.json").read_text())
        assert state["step"] == 3 and state["config"]["data_workers"] == workers
        # step 2's batch is process 1's (process 0's first equals the thread's for drawings: no
        # random draw happens before its reseeding)
        sheet = cv2.imread(str(run / "samples" / "step000002.png"), cv2.IMREAD_GRAYSCALE)
        inputs[workers] = sheet[:, :64]  # rows of input | output | target: the inputs' column
    assert json.loads((tmp_path / "spread2.json").read_text())["training"]["config"]["data_workers"] == 2
    assert not np.array_equal(inputs[2], inputs[0])


def test_fine_tuning_starts_from_the_styles_weights(tmp_path) -> None:
    """`--init-from default` starts from the bundled style's network (its shape taken from its
    metadata) instead of random weights, and the new style records what it started from."""
    keras = pytest.importorskip("keras")
    drawings = tmp_path / "drawings"
    marker_drawings(drawings)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    r = subprocess.run([sys.executable, "-m", "training", "train", "--drawings", str(drawings), "--name", "tuned",
                        "--init-from", "default", "--steps", "1", "--batch", "2", "--crop", "64", "--lr", "1e-9",
                        "--out", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--quiet"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((tmp_path / "tuned.json").read_text())
    started = meta["training"]["initialised_from"]
    shipped = json.loads((ROOT / "linerelifer_addon" / "styles" / "default.json").read_text())["training"]
    assert started["style"] == "default" and started["training"] == shipped
    assert started["file"] == "linerelifer_addon/styles/default.keras"  # not this machine's absolute path
    x = np.zeros((1, 96, 96, 1), np.float32)
    x[0, 40:43, 8:88] = 1.0
    x[0, 8:88, 20:22] = 1.0
    ours, theirs = (keras.saving.load_model(p, compile=False, safe_mode=True).predict(x, verbose=0)
                    for p in (tmp_path / "tuned.keras", ROOT / "linerelifer_addon" / "styles" / "default.keras"))
    assert np.abs(ours - theirs).max() < 1e-3  # one step at a learning rate of 1e-9 moves nothing
    assert np.abs(theirs - x).max() > 0.1  # and the default does restyle these lines


def test_evaluate_prints_table_and_json(tmp_path, random_style) -> None:
    out = tmp_path / "eval.json"
    r = subprocess.run([sys.executable, "-m", "training", "evaluate", "--style", str(random_style), "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert set(rows) == {"identity (input)", "random"}
    for metric in ("f1", "gap_closure", "hallucinated", "chamfer", "width_hist", "speck_removal"):
        assert metric in r.stdout and metric in rows["random"]
    # identity keeps every probe gap open and every speck in place: the probes are real
    assert rows["identity (input)"]["gap_closure"] == 0.0
    assert rows["identity (input)"]["speck_removal"] == 0.0


def test_training_defaults_build_the_shipped_architecture() -> None:
    """A studio style trained with the defaults gets the same network and recipe as the bundled
    one's first 4000 steps.

    The bundled style then went on from that checkpoint with `--slit-weight 40`, then with
    `--trim-weight 10 --trim-from 5`, then with a quarter of its inputs aliased (`--aliased
    0.25`; each stage's state under `resumed_from`), and was last fine-tuned from that style
    (`--init-from`, under `initialised_from`) for 1000 steps at a tenth of the learning rate with
    ink weight on thin lines, a third of the inputs aliased and more shift weight. The defaults
    leave those off, as they are untried on drawings."""
    from linerelifer_addon.worker import model as models
    from training.train import TrainConfig

    shipped = json.loads((ROOT / "linerelifer_addon" / "styles" / "default.json").read_text())
    tuned = shipped["training"]
    stages = [tuned["initialised_from"]["training"]]
    while stages[-1].get("resumed_from"):
        stages.append(stages[-1]["resumed_from"])
    first, last, fine = stages[-1]["config"], stages[0]["config"], tuned["config"]
    cfg = TrainConfig()
    assert len(stages) == 4 and cfg.arch == shipped["arch"] == first["arch"] == last["arch"] == fine["arch"]
    assert tuple(cfg.widths) == tuple(first["widths"]) == tuple(last["widths"]) == tuple(fine["widths"])
    assert cfg.stem == first["stem"] == fine["stem"]
    keys = ("basis", "ink_weight", "mark_weight", "speck_weight", "gap_weight", "trim_weight", "cut_weight",
            "gan_weight", "shift_weight", "ema", "lr_schedule", "target", "batch", "crop", "lr", "seed")
    for key in keys:
        assert getattr(cfg, key) == first[key], key
    changed = {k for k in keys if last[k] != first[k]}
    assert changed == {"trim_weight"} and last["slit_weight"] == 40 and last["trim_from"] == 5, changed
    assert (cfg.slit_weight, cfg.trim_weight, cfg.trim_from) == (0.0, 0.0, 0)
    assert last["degrade"].get("aliased") == 0.25 and "aliased" not in first["degrade"] and "aliased" not in cfg.degrade
    tuned_keys = {k for k in keys if fine[k] != last[k]}
    assert tuned_keys == {"ink_weight", "shift_weight", "lr"}, tuned_keys
    assert (fine["ink_weight"], fine["ink_until"], fine["shift_weight"], fine["lr"]) == (4.0, 3, 250.0, 1e-4)
    assert fine["degrade"]["aliased"] == 0.35 and tuned["steps"] == 1000
    assert shipped["parameters"] == models.build_generator(cfg.arch, tuple(cfg.widths), cfg.stem, cfg.basis).count_params()


def test_isolation_weights_dots_and_tips_not_stroke_bodies() -> None:
    """The extra loss weight lands on a lone dot and a stroke's tip, not along the stroke."""
    from training.train import isolation

    y = np.zeros((1, 40, 80, 1), np.float32)
    y[0, 19:21, 5:60, 0] = 1.0  # a 2 px stroke
    y[0, 10:12, 70:72, 0] = 1.0  # a 2x2 dot well away from it
    iso = np.asarray(isolation(y))[0, :, :, 0]
    assert iso[10:12, 70:72].min() == pytest.approx(1.0)
    assert iso[19:21, 20:45].max() == 0.0
    assert 0.0 < iso[19:21, 59].mean() < 1.0  # the tip: partly isolated


def test_mark_and_speck_weights_price_erased_dots_and_kept_specks() -> None:
    """--mark-weight makes erasing a drawn dot cost more, --speck-weight keeping a speck."""
    from training.train import TrainConfig, losses

    x = np.zeros((1, 32, 64, 1), np.float32)
    x[0, 10:12, 10:12, 0] = 1.0  # a dot the target keeps
    x[0, 20:22, 50:52, 0] = 1.0  # a speck the target lacks
    y = np.zeros_like(x)
    y[0, 10:12, 10:12, 0] = 1.0
    erased, kept = np.zeros_like(x), x.copy()
    d = np.zeros((1, 4, 8, 1), np.float32)

    def cost(fake, **kw):
        cfg = TrainConfig(**{"mark_weight": 0.0, "speck_weight": 0.0, **kw})
        return float(losses(cfg, x, y, fake, d, d, 0.0)["loss"])

    assert cost(erased, mark_weight=30.0) > 2 * cost(erased)
    assert cost(kept, speck_weight=30.0) > 2 * cost(kept)
    assert cost(kept, mark_weight=30.0) == pytest.approx(cost(kept))  # the dot is kept: nothing to price
    assert cost(erased, speck_weight=30.0) == pytest.approx(cost(erased))


def test_trim_and_cut_weights_price_surplus_ink_and_open_gaps() -> None:
    """--trim-weight prices ink the target lacks (a stroke drawn too wide), --cut-weight the ink a
    training gap removed and the output left out; neither prices anything else."""
    from training.train import TrainConfig, losses

    x = np.zeros((1, 32, 64, 1), np.float32)
    x[0, 8:14, 4:60, 0] = 1.0  # a 6 px input stroke ...
    y = np.zeros_like(x)
    y[0, 9:13, 4:60, 0] = 1.0  # ... the target draws 4 px wide
    x[0, 8:14, 30:33, 0] = 0.0  # a gap the training cut
    cut = np.zeros_like(x)
    cut[0, 9:13, 30:33, 0] = 1.0
    too_wide, gap_open, right = x.copy(), y.copy(), y.copy()
    too_wide[0, 9:13, 30:33, 0] = 1.0
    gap_open[0, 9:13, 30:33, 0] = 0.0
    d = np.zeros((1, 4, 8, 1), np.float32)

    def cost(fake, **kw):
        cfg = TrainConfig(**{"mark_weight": 0.0, "speck_weight": 0.0, "gap_weight": 0.0, "trim_weight": 0.0,
                             "cut_weight": 0.0, **kw})
        return float(losses(cfg, x, y, fake, d, d, 0.0, cut)["loss"])

    assert cost(too_wide, trim_weight=8.0) > 3 * cost(too_wide)
    assert cost(gap_open, cut_weight=40.0) > 10 * cost(gap_open)
    assert cost(gap_open, trim_weight=8.0) == pytest.approx(cost(gap_open), rel=1e-4)  # nothing surplus
    assert cost(too_wide, cut_weight=40.0) == pytest.approx(cost(too_wide), rel=1e-4)  # the gap is filled
    assert cost(right, trim_weight=8.0, cut_weight=40.0) < 1e-4 * cost(too_wide)  # the target itself: nothing


def test_valley_weight_prices_ghost_edges() -> None:
    """A thinned core with a faint copy of the input's edge a pixel beside it costs little
    per-pixel loss; the valley term prices it, and nothing the target has itself."""
    from training.train import TrainConfig, ghost_valleys, losses

    y = np.zeros((1, 24, 64, 1), np.float32)
    y[0, 8:16, 4:60, 0] = 1.0  # the target: a 4 px core (rows 10-13) ...
    y[0, 8:10, :, 0] = y[0, 14:16, :, 0] = 0.0
    y[0, 10:14, 4:60, 0] = 1.0
    ghost = y.copy()
    ghost[0, 8, 4:60, 0] = ghost[0, 15, 4:60, 0] = 0.4  # ... and a faint edge 1 px beside it
    two = np.zeros_like(y)  # two close lines: the slit between them is the target's own
    two[0, 4:8, 4:60, 0] = two[0, 10:14, 4:60, 0] = 1.0
    assert float(ghost_valleys(ghost, y)) > 0.01
    assert float(ghost_valleys(y, y)) == 0.0 and float(ghost_valleys(two, two)) == 0.0
    d = np.zeros((1, 4, 8, 1), np.float32)
    cost = lambda fake, w: float(losses(TrainConfig(valley_weight=w), y, y, fake, d, d, 0.0)["loss"])
    assert cost(ghost, 500.0) > 3 * cost(ghost, 0.0)
    assert cost(y, 500.0) == pytest.approx(cost(y, 0.0), abs=1e-6)


def test_slit_weight_prices_filled_slits() -> None:
    """Two close target lines inked over into one bar: the slit is a sliver of the frame, so
    the per-pixel loss barely notices; the slit weight makes it cost, and a faithful copy nothing."""
    from training.train import TrainConfig, losses

    two = np.zeros((1, 24, 64, 1), np.float32)
    two[0, 4:8, 4:60, 0] = two[0, 10:14, 4:60, 0] = 1.0
    blot = two.copy()
    blot[0, 8:10, 4:60, 0] = 1.0
    d = np.zeros((1, 4, 8, 1), np.float32)
    cost = lambda fake, w: float(losses(TrainConfig(slit_weight=w), two, two, fake, d, d, 0.0)["loss"])
    assert cost(blot, 50.0) > 10 * cost(blot, 0.0)
    assert cost(two, 50.0) == pytest.approx(cost(two, 0.0), abs=1e-4)  # the clipped log leaves ~1e-6


def test_ema_exports_the_moving_average_and_resume_keeps_it(tmp_path) -> None:
    """--ema: the exported weights average the steps (first step starts the average); checkpoints carry it."""
    from keras import ops

    from training.dataset import PairSampler
    from training.train import TrainConfig, Trainer

    cfg = TrainConfig(steps=1000, batch=2, crop=64, ema=0.75, sample_every=0, gan_start=0, pool=4, lr_schedule="constant")
    trainer = Trainer(cfg, tmp_path / "run", PairSampler(crop=64, seed=3, pool_size=4))
    live = lambda t: [ops.convert_to_numpy(v.value).copy() for v in t.gen.trainable_variables]  # noqa: E731
    trainer.cfg = dataclasses.replace(cfg, steps=1)  # two steps of a long run
    trainer.fit(verbose=0)
    w1 = live(trainer)
    trainer.cfg = dataclasses.replace(cfg, steps=2)
    trainer.fit(verbose=0)
    w2 = live(trainer)
    assert max(np.abs(a - b).max() for a, b in zip(w1, w2)) > 0
    resumed = Trainer(cfg, tmp_path / "run", PairSampler(crop=64, seed=3, pool_size=4))
    assert resumed.restore() == 2
    for t in (trainer, resumed):
        final = [ops.convert_to_numpy(v.value) for v in t.final_generator().trainable_variables]
        for a, b, f in zip(w1, w2, final):
            np.testing.assert_allclose(f, 0.75 * a + 0.25 * b, rtol=1e-5, atol=1e-6)


def test_a_short_run_resumes_into_a_long_one(tmp_path) -> None:
    """A 4-step run has no moving average to speak of (momentum 0); resumed to 40 steps it has one.
    The checkpoint must load either way (it failed on the optimizer's variables' shapes)."""
    from keras import ops

    from training.dataset import PairSampler
    from training.train import TrainConfig, Trainer

    cfg = TrainConfig(steps=4, batch=2, crop=64, ema=0.999, sample_every=0, pool=4)
    first = Trainer(cfg, tmp_path / "run", PairSampler(crop=64, seed=3, pool_size=4))
    first.fit(verbose=0)
    last = [ops.convert_to_numpy(v.value).copy() for v in first.gen.trainable_variables]
    exported = [ops.convert_to_numpy(v.value) for v in first.final_generator().trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(last, exported))  # momentum 0: the last step's weights
    longer = Trainer(dataclasses.replace(cfg, steps=40), tmp_path / "run", PairSampler(crop=64, seed=3, pool_size=4))
    assert longer.restore() == 4
    saved = np.load(tmp_path / "run" / "checkpoint.npz")
    for g, variables in enumerate(longer._groups):  # every weight, moment and average came back
        for i, v in enumerate(variables):
            assert np.array_equal(ops.convert_to_numpy(v.value), saved[f"g{g}_{i}"])
    assert len(longer.g_opt.variables) == len(first.g_opt.variables)
    longer.cfg = dataclasses.replace(longer.cfg, steps=5)
    longer.fit(verbose=0)
    assert longer.step == 5


def test_an_error_making_batches_ends_the_run(tmp_path) -> None:
    """The batches are made on a thread: its error reaches fit (a dead thread left it waiting)."""
    from training.dataset import PairSampler
    from training.train import TrainConfig, Trainer

    class Broken(PairSampler):
        def batch(self, *args, **kwargs):
            raise ValueError("scan3.png could not be cropped")

    cfg = TrainConfig(steps=3, batch=2, crop=64, sample_every=0, pool=4)
    trainer = Trainer(cfg, tmp_path / "run", Broken(crop=64, seed=3, pool_size=4))
    with pytest.raises(ValueError, match="scan3.png could not be cropped"):
        trainer.fit(verbose=0)


def test_short_runs_average_their_own_weights_not_the_random_start() -> None:
    """The moving average spans at most a quarter of the run: a 300-step style from drawings exported
    mostly its random start with 0.999 (grey paper everywhere); 4000 steps keep 0.999."""
    from training.train import TrainConfig, ema_momentum

    assert ema_momentum(TrainConfig(steps=4000)) == 0.999
    assert ema_momentum(TrainConfig(steps=300)) == pytest.approx(1 - 4 / 300)
    assert ema_momentum(TrainConfig(steps=300)) ** 300 < 0.02  # the random start's share after 300 steps (0.999: 0.74)
    assert ema_momentum(TrainConfig(steps=4)) == 0.0 and ema_momentum(TrainConfig(ema=0.0)) == 0.0


def test_shift_consistency_prices_phase_dependence_only() -> None:
    """The shift term is zero for a network that moves with its input and not for one whose
    output depends on where the stride grid falls."""
    from keras import ops

    from training.train import shift_consistency, shift_of_step

    assert {tuple(shift_of_step(s)) for s in range(9)} == {(a, b) for a in (1, 2, 3) for b in (1, 2, 3)}
    rng = np.random.default_rng(0)
    x = rng.random((2, 64, 64, 1)).astype(np.float32)
    shift = shift_of_step(4)
    moved = np.roll(x, tuple(shift), axis=(1, 2))
    blur = lambda a: ops.average_pool(ops.convert_to_tensor(a), 3, strides=1, padding="same")  # noqa: E731
    assert float(shift_consistency(blur(x), blur(moved), shift)) == pytest.approx(0.0, abs=1e-6)
    grid = np.zeros((1, 64, 64, 1), np.float32)
    grid[:, ::4, ::4] = 1.0  # a stride-4 phase pattern that stays put when the input moves
    assert float(shift_consistency(blur(x) * grid, blur(moved) * grid, shift)) > 0.01


def test_receptive_radius_survives_a_saturated_output() -> None:
    """A trained style's sigmoid saturates on random input (its gradients vanish); the radius,
    which sets the tiling margin, is measured on the logits and stays the network's own."""
    from linerelifer_addon.worker import model as models

    gen = models.build_generator("field")
    assert models.receptive_radius(gen) == 48
    bias = gen.get_layer("bias")
    kernel, b = bias.get_weights()
    bias.set_weights([kernel, b - 200.0])  # every output pixel at sigmoid(-200): gradient 0
    x = np.random.default_rng(0).random((1, 64, 64, 1), dtype=np.float32)
    assert float(np.asarray(gen(x)).max()) == 0.0
    assert models.receptive_radius(gen) == 48


def _thick_and_thin_lines() -> np.ndarray:
    """An input batch of one: a 12 px line above a 1 px line."""
    x = np.zeros((1, 48, 96, 1), np.float32)
    x[0, 6:18, 4:90, 0] = 1.0
    x[0, 34:35, 4:90, 0] = 1.0
    return x


def _bare_loss(x: np.ndarray, y: np.ndarray, fake: np.ndarray, **kw) -> float:
    """The training loss of `fake` against `y` for input `x`, with the mark, speck and cut
    terms off unless given."""
    from training.train import TrainConfig, losses

    cfg = TrainConfig(**{"mark_weight": 0.0, "speck_weight": 0.0, "cut_weight": 0.0, **kw})
    d = np.zeros((1, 6, 12, 1), np.float32)
    return float(losses(cfg, x, y, fake, d, d, 0.0)["loss"])


def test_trim_from_prices_thick_lines_surplus_and_leaves_thin_lines_alone() -> None:
    """--trim-from 5: a thick line drawn untapered costs the trim weight, a thin line drawn a
    little too dark does not (its darkness is what a trim weight on every line cost)."""
    from training.train import thick_ink

    x = _thick_and_thin_lines()
    y = x.copy()
    y[0, 6:18, 70:90, 0] = 0.0  # the target tapers the thick line's end (crudely: a thinner end)
    y[0, 10:14, 70:90, 0] = 1.0
    y[0, 34:35, 4:90, 0] = 0.8  # and draws the thin line a little lighter
    thick = np.asarray(thick_ink(x, 5))[0, :, :, 0]
    assert thick[6:18, 10:80].min() == pytest.approx(1.0) and thick[30:40].max() == 0.0
    untapered, thin_dark = y.copy(), y.copy()
    untapered[0, 6:18, 70:90, 0] = 1.0
    thin_dark[0, 34:35, 4:90, 0] = 1.0
    cost = functools.partial(_bare_loss, x, y)
    assert cost(untapered, trim_weight=10.0, trim_from=5) > 5 * cost(untapered)
    assert cost(thin_dark, trim_weight=10.0, trim_from=5) == pytest.approx(cost(thin_dark), rel=1e-4)
    assert cost(thin_dark, trim_weight=10.0) > 2 * cost(thin_dark)  # on every line, it is priced


def test_gap_from_prices_thick_lines_missing_width_and_leaves_thin_lines_alone() -> None:
    """--gap-from 5, the trim weight's mirror: a thick line whose target is wider (the thick
    side of a nib) drawn at the input's width costs the gap weight; a thin line left as thin
    as its input does not, nor does ink far from any thick line."""
    x = _thick_and_thin_lines()
    y = x.copy()
    y[0, 2:22, 4:90, 0] = 1.0  # the target draws the 12 px line 4 px wider on each side
    y[0, 33:36, 4:90, 0] = 1.0  # and the 1 px line 3 px wide
    thick_narrow, thin_narrow = y.copy(), y.copy()
    thick_narrow[0, 2:22, 4:90, 0] = x[0, 2:22, 4:90, 0]
    thin_narrow[0, 33:36, 4:90, 0] = x[0, 33:36, 4:90, 0]
    cost = functools.partial(_bare_loss, x, y)
    assert cost(thick_narrow, gap_weight=10.0, gap_from=5) > 5 * cost(thick_narrow)
    assert cost(thin_narrow, gap_weight=10.0, gap_from=5) == pytest.approx(cost(thin_narrow), rel=1e-4)
    assert cost(thin_narrow, gap_weight=10.0) > 5 * cost(thin_narrow)  # everywhere, it is priced


def test_ink_until_prices_thin_lines_missing_ink_and_leaves_thick_lines_alone() -> None:
    """--ink-until 3: a 1 px line drawn too light costs the ink weight; a 12 px line drawn
    a little thin at its edge does not (ink weight on thick lines inked over the slits
    between close ones, fine-tunes ftC-ftF in training/README.md)."""
    x = _thick_and_thin_lines()
    y = x.copy()
    thin_light, thick_thin = y.copy(), y.copy()
    thin_light[0, 34:35, 4:90, 0] = 0.4
    thick_thin[0, 6:7, 4:90, 0] = 0.4
    cost = functools.partial(_bare_loss, x, y)
    assert cost(thin_light, ink_weight=2.0, ink_until=3) > 2 * cost(thin_light)
    assert cost(thick_thin, ink_weight=2.0, ink_until=3) == pytest.approx(cost(thick_thin), rel=1e-4)
    assert cost(thick_thin, ink_weight=2.0) > 2 * cost(thick_thin)  # on every line, it is priced


def test_a_style_exported_without_its_litert_file_leaves_no_older_one(tmp_path) -> None:
    """A JAX run exports no .tflite; one left by an earlier run of the same name (resumed or
    --overwrite) would be what the worker runs, since it prefers LiteRT, so it goes."""
    import keras

    from linerelifer_addon.core.backends import tflite_path
    from linerelifer_addon.worker import model as models
    from training.export import export_style

    keras.utils.set_random_seed(3)
    gen = models.build_generator("lite")
    path = export_style(gen, "lite", tmp_path, "house", "test", {"command": "tests"})
    assert tflite_path(path).is_file()
    again = export_style(gen, "lite", tmp_path, "house", "test", {"command": "tests"}, tflite=False)
    assert again == path and path.is_file() and not tflite_path(path).exists()
    assert "tflite" not in json.loads(path.with_suffix(".json").read_text())
