"""The training loop: reconstruction plus adversarial loss, with checkpoints and logs.

The generator learns to map uniform, degraded lines to inked ones. As in the seed project,
a reconstruction loss (weighted ×20) keeps lines where they belong and a conditional patch
discriminator's loss pushes towards the texture and width variation of real drawings.

Models and losses are plain Keras 3; the update step has a TensorFlow version (what the
project ships and CI runs) and a JAX version, so the same command can train on a GPU
machine with KERAS_BACKEND=jax.
"""
from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .prepare import InputError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass
class TrainConfig:
    arch: str = "field"
    widths: tuple[int, int] | None = None  # channels at 1/4 and 1/8 resolution; None: the arch's own (worker/model.py)
    stem: int | None = None  # full-resolution 3×3 features; None: the arch's own
    basis: int | None = None  # field: learned full-resolution filters of the input; None: the arch's own
    steps: int = 4000
    batch: int = 16
    crop: int = 128
    lr: float = 1e-3
    lr_schedule: str = "cosine"  # decays to 0 at the last step; or "constant"
    recon_weight: float = 20.0
    l1_weight: float = 0.0
    bce_weight: float = 1.0  # cross-entropy keeps gradients alive where the sigmoid saturates
    gap_weight: float = 0.0  # extra weight where the target has ink the input lacks (wider strokes); 8 kept lines 1.1-1.3x too wide and untapered
    gap_from: int = 0  # px: gap weight only beside input lines at least this wide (0 = all): the trim weight's mirror
    trim_weight: float = 0.0  # extra weight where the input has ink the target lacks (thinner strokes, tapers)
    trim_from: int = 0  # px: trim weight only on input lines at least this wide (0 = all; thick tapers, not thin lines)
    valley_weight: float = 0.0  # light valleys the output has and the target lacks (ghost edges beside a thinned core)
    slit_weight: float = 0.0  # extra weight on the paper between two close target lines (dense detail kept open)
    cut_weight: float = 80.0  # extra weight on the ink the training gaps cut out (what gap filling must restore)
    ink_weight: float = 0.0  # extra weight on target ink: bolder lines (> 0 widens every line, 2 and 9 tried)
    ink_until: int = 0  # px: ink weight only away from input lines this wide or wider (0 = everywhere)
    mark_weight: float = 20.0  # extra weight on small isolated target marks (dots) and stroke tips
    speck_weight: float = 20.0  # extra weight on small isolated input ink the target lacks (specks)
    gan_weight: float = 0.0  # adversarial loss (the seed's recipe; 0.05 for the first default style)
    shift_weight: float = 100.0  # L1 between G(shift(x)) and shift(G(x)): a stride-8 network must not shimmer
    ema: float = 0.999  # exported generator = moving average of its weights with this momentum (0 = last step)
    gan_start: int = 500  # steps of reconstruction only before the discriminator joins
    seed: int = 1
    threads: int | None = None
    sample_every: int = 250
    checkpoint_every: int = 250
    pool: int = 240
    data_workers: int = 0  # processes making batches (0: a thread of the trainer, the seed's one stream)
    target: str = "tied"  # synthetic targets: "tied" to the input's lines, or "free" width (synth.synth_sample)
    degrade: dict[str, Any] = field(default_factory=lambda: {"gaps": (1, 8)})
    nib: tuple[float, float] | None = None  # tied targets' width factors across directions (None: synth.NIB_RANGE)

    def __post_init__(self) -> None:
        from linerelifer_addon.worker import model as models

        widths, stem, basis = models.ARCH_DEFAULTS.get(self.arch, (None, None, None))
        self.widths = tuple(self.widths) if self.widths is not None else widths
        self.stem = self.stem if self.stem is not None else stem
        self.basis = self.basis if self.basis is not None else basis

    @classmethod
    def seed_baseline(cls, **kw: Any) -> "TrainConfig":
        """The seed project's recipe: its generator, MSE×20 + GAN×1 from the first step."""
        return cls(arch="seed", recon_weight=20.0, l1_weight=0.0, bce_weight=0.0, gap_weight=0.0, ink_weight=0.0,
                   mark_weight=0.0, speck_weight=0.0, ema=0.0, gan_weight=1.0, gan_start=0, lr=2e-4, lr_schedule="constant",
                   shift_weight=0.0, **kw)


def ema_momentum(cfg: TrainConfig) -> float:
    """The weights' moving-average momentum: `cfg.ema`, but spanning at most a quarter of the run.

    The average starts from the first step's weights, which are nearly the random start: with
    0.999 a 300-step run exported 74 % of them, a style that drew grey paper everywhere.
    """
    return float(min(cfg.ema, max(0.0, 1.0 - 4.0 / max(cfg.steps, 1))))


def _data_kind(data: str) -> str:
    """What a resumed run must keep learning from: synthetic data of one kind, or drawings in
    a folder of that name (the same drawings may be mounted elsewhere on another machine)."""
    head, sep, folder = data.partition("drawings in ")
    return f"drawings in {Path(folder).name}" if sep and not head else data


def _prefetch(sampler: Any, batch: int, depth: int = 4) -> "queue.Queue":
    """Make batches on a thread so the data side overlaps the training step. An error there
    is handed over in the queue (fit raises it): a thread that died would leave fit waiting."""
    q: queue.Queue = queue.Queue(maxsize=depth)

    def run() -> None:
        try:
            while True:
                q.put(sampler.batch(batch, with_cuts=True))
        except BaseException as ex:  # noqa: BLE001 - re-raised on the training thread
            q.put(ex)

    threading.Thread(target=run, daemon=True).start()
    return q


def sample_sheet(x: np.ndarray, y_pred: np.ndarray, y: np.ndarray, path: Path, rows: int = 4) -> None:
    """Rows of input | output | target (ink dark on white), for eyeballing progress."""
    import cv2

    tiles = []
    for i in range(min(rows, len(x))):
        row = [1.0 - a[i, :, :, 0] for a in (x, y_pred, y)]
        sep = np.full((row[0].shape[0], 4), 0.5, np.float32)
        tiles.append(np.concatenate([row[0], sep, row[1], sep, row[2]], axis=1))
        tiles.append(np.full((4, tiles[-1].shape[1]), 0.5, np.float32))
    sheet = np.concatenate(tiles[:-1], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.rint(np.clip(sheet, 0, 1) * 255).astype(np.uint8))


def isolation(y: Any, window: int = 9, full: float = 12.0, none: float = 4.0) -> Any:
    """1 where there is little ink around a pixel (dots, specks, stroke tips), 0 along strokes.

    A 2 px stroke puts about 18 px of ink in a 9×9 window, its tip about 10, a dot or speck 4-8:
    the per-pixel loss barely notices such marks, so without extra weight the network erases
    drawn dots along with specks. Used on the target (dots to keep) and the input (specks to drop).
    """
    from keras import ops

    around = ops.average_pool(y, window, strides=1, padding="same") * float(window * window)
    return ops.clip((full - around) / (full - none), 0.0, 1.0)


GAP_REACH = 6  # px beyond a thick line's edge that gap_from covers: a 12 px line drawn twice as wide


def shift_of_step(step: int) -> np.ndarray:
    """The (dy, dx) of the shift-consistency term at `step`: 1-3 px each, every pair in turn."""
    return np.array([1 + step % 3, 1 + (step // 3) % 3], np.int32)


def shift_consistency(fake: Any, fake_of_shifted: Any, shift: Any, border: int = 16) -> Any:
    """Mean |shift(G(x)) - G(shift(x))| away from the border the (wrapping) shift disturbs."""
    from keras import ops

    moved = ops.roll(ops.roll(fake, shift[0], axis=1), shift[1], axis=2)
    return ops.mean(ops.abs(moved - fake_of_shifted)[:, border:-border, border:-border])


def losses(cfg: TrainConfig, x: Any, y: Any, fake: Any, d_real: Any, d_fake: Any, gan_on: Any,
           cut: Any = None) -> dict[str, Any]:
    """Generator and discriminator losses in keras.ops, shared by every backend.

    `cut` is the ink the training gaps removed from x (None: no gap term)."""
    from keras import ops

    weight = 1.0
    # Missing ink (strokes to widen, gaps to bridge) and target ink may weigh more than paper;
    # both default to 0, and like the terms below they cost nothing then.
    if cfg.gap_weight:
        missing = ops.relu(y - x)
        # With gap_from, only where a thick line's target is wider than its input (thick-thin
        # the other way from a trim), within GAP_REACH px of the thick line.
        weight = weight + cfg.gap_weight * (missing * ops.max_pool(thick_ink(x, cfg.gap_from), 2 * GAP_REACH + 1,
                                                                     strides=1, padding="same")
                                            if cfg.gap_from > 1 else missing)
    if cfg.ink_weight:  # on thin lines only, with ink_until: thick ones inked over the slits between them
        ink = y * (1.0 - ops.max_pool(thick_ink(x, cfg.ink_until), 5, strides=1, padding="same")) \
            if cfg.ink_until > 1 else y
        weight = weight + cfg.ink_weight * ink
    # Surplus ink weighs as much as missing ink, or thick-thin and tapers only ever widen lines.
    if cfg.trim_weight:
        surplus = ops.relu(x - y)
        weight = weight + cfg.trim_weight * (surplus * thick_ink(x, cfg.trim_from) if cfg.trim_from > 1 else surplus)
    # Gap pixels are a sliver of the missing ink; without their own weight they stay open.
    if cfg.cut_weight and cut is not None:
        weight = weight + cfg.cut_weight * cut
    if cfg.mark_weight:
        weight = weight + cfg.mark_weight * y * isolation(y)
    if cfg.speck_weight:  # the counterweight: keeping dots must not mean keeping specks
        weight = weight + cfg.speck_weight * ops.relu(x - y) * isolation(x)
    # The counterweight to gap filling: paper between close lines must stay paper, or dense
    # detail turns into blots (the slits are a sliver of the paper, like gaps of the ink).
    if cfg.slit_weight:
        weight = weight + cfg.slit_weight * valley_depth(y)
    mse = ops.mean(weight * ops.square(fake - y))
    l1 = ops.mean(ops.abs(fake - y))
    p = ops.clip(fake, 1e-6, 1.0 - 1e-6)
    xent = -ops.mean(weight * (y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p)))
    adv = ops.mean(ops.softplus(-d_fake))  # cross-entropy of logits against "real"
    g_loss = cfg.recon_weight * mse + cfg.l1_weight * l1 + cfg.bce_weight * xent + gan_on * cfg.gan_weight * adv
    d_loss = 0.5 * (ops.mean(ops.softplus(-d_real)) + ops.mean(ops.softplus(d_fake)))
    logs = {"loss": g_loss, "mse": mse, "xent": xent, "adv": adv, "d_loss": d_loss}
    if cfg.valley_weight:
        logs["valley"] = ghost_valleys(fake, y)
        logs["loss"] = g_loss + cfg.valley_weight * logs["valley"]
    return logs


def thick_ink(x: Any, width: int) -> Any:
    """The input's ink on lines at least `width` px wide (an opening by a square of that odd
    size): thin lines, whose darkness a trim weight costs, drop out; thick lines' ends stay in."""
    from keras import ops

    k = width | 1  # an odd window keeps erosion and dilation centred
    eroded = -ops.max_pool(-x, k, strides=1, padding="same")
    return ops.max_pool(eroded, k, strides=1, padding="same")


def ghost_valleys(fake: Any, y: Any) -> Any:
    """Mean depth of light valleys in `fake` beyond the target's own (realmetrics.light_valleys,
    differentiable): a faint copy of an edge beside a thinned core costs little per-pixel loss
    but reads as a double outline."""
    from keras import ops

    return ops.mean(ops.relu(valley_depth(fake) - valley_depth(y)))


def valley_depth(a: Any) -> Any:
    """How much lighter each pixel is than the 5×5 closing around it (realmetrics.light_valleys)."""
    from keras import ops

    grown = ops.max_pool(a, 5, strides=1, padding="same")
    return ops.relu(-ops.max_pool(-grown, 5, strides=1, padding="same") - a)


class Trainer:
    """Models, optimisers and checkpoints for one run folder, on TensorFlow or JAX."""

    def __init__(self, cfg: TrainConfig, run_dir: str | os.PathLike, sampler: Any) -> None:
        import keras

        from linerelifer_addon.worker import model as models

        self.backend = keras.backend.backend()
        if self.backend == "tensorflow":
            from linerelifer_addon.worker.engine import configure_threads

            configure_threads(cfg.threads)
        elif self.backend != "jax":
            raise RuntimeError(f"training runs on the tensorflow or jax Keras backend, not {self.backend}")
        keras.utils.set_random_seed(cfg.seed)
        self.cfg, self.sampler = cfg, sampler
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.gen = models.build_generator(cfg.arch, cfg.widths, cfg.stem, cfg.basis)
        self.disc = models.build_discriminator()
        lr: Any = cfg.lr
        if cfg.lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=cfg.steps)
        # The moving average lives in the optimizer's variables, so checkpoints carry it on either backend.
        # The average's variables exist whenever --ema is on, so a run resumed with more steps (and
        # so another momentum) finds the checkpoint it saved; momentum 0 exports the last step.
        momentum = ema_momentum(cfg)
        self.g_opt = keras.optimizers.Adam(lr, beta_1=0.5, use_ema=cfg.ema > 0, ema_momentum=momentum)
        self.d_opt = keras.optimizers.Adam(lr, beta_1=0.5)
        self.g_opt.build(self.gen.trainable_variables)
        self.d_opt.build(self.disc.trainable_variables)
        self.step = 0
        self.wall = 0.0
        self.command = ""  # the command line that runs this trainer, kept in state.json
        self.data = ""  # what it trains on (drawings folder or synthetic), kept in state.json
        self.resumed_from: dict[str, Any] | None = None  # the checkpoint's own state.json, when resumed
        self.initialised_from: dict[str, Any] | None = None  # the style whose weights step 0 started from
        self._groups = [self.gen.variables, self.disc.variables, self.g_opt.variables, self.d_opt.variables]
        if self.backend == "tensorflow":
            import tensorflow as tf

            self._train_step = tf.function(self._tf_step, reduce_retracing=True)
            self.writer = tf.summary.create_file_writer(str(self.run_dir / "logs"))
        else:
            self._train_step = self._jax_step_fn()
            self._state = None
            self.writer = None  # TensorBoard's writer needs TensorFlow; metrics.csv has the same numbers

    # -- one update per backend ---------------------------------------------------------
    def _tf_step(self, x: Any, y: Any, gan_on: Any, shift: Any, cut: Any) -> dict[str, Any]:
        import tensorflow as tf

        adversarial = self.cfg.gan_weight > 0  # without it the discriminator costs a third of a step for nothing
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self.gen(x, training=True)
            d_real = self.disc(tf.concat([x, y], -1), training=True) if adversarial else tf.zeros([1])
            d_fake = self.disc(tf.concat([x, fake], -1), training=True) if adversarial else tf.zeros([1])
            logs = losses(self.cfg, x, y, fake, d_real, d_fake, gan_on, cut)
            if self.cfg.shift_weight:
                moved = tf.roll(x, shift, axis=[1, 2])
                logs["shift"] = shift_consistency(fake, self.gen(moved, training=True), shift)
                logs["loss"] = logs["loss"] + self.cfg.shift_weight * logs["shift"]
        g_grads = g_tape.gradient(logs["loss"], self.gen.trainable_variables)
        self.g_opt.apply_gradients(zip(g_grads, self.gen.trainable_variables))
        if adversarial:
            d_grads = d_tape.gradient(logs["d_loss"], self.disc.trainable_variables)
            self.d_opt.apply_gradients(zip(d_grads, self.disc.trainable_variables))
        return {**logs, "fake": fake}

    def _jax_step_fn(self) -> Any:
        import jax
        import jax.numpy as jnp

        gen, disc, cfg = self.gen, self.disc, self.cfg

        def g_objective(g_tv, g_ntv, d_tv, d_ntv, x, y, gan_on, shift, cut):
            fake, g_ntv = gen.stateless_call(g_tv, g_ntv, x, training=True)
            d_real, _ = disc.stateless_call(d_tv, d_ntv, jnp.concatenate([x, y], -1), training=True)
            d_fake, _ = disc.stateless_call(d_tv, d_ntv, jnp.concatenate([x, fake], -1), training=True)
            logs = losses(cfg, x, y, fake, d_real, d_fake, gan_on, cut)
            if cfg.shift_weight:
                moved = jnp.roll(x, (shift[0], shift[1]), axis=(1, 2))
                fake2, _ = gen.stateless_call(g_tv, g_ntv, moved, training=True)
                logs["shift"] = shift_consistency(fake, fake2, shift)
                logs["loss"] = logs["loss"] + cfg.shift_weight * logs["shift"]
            return logs["loss"], (logs, fake, g_ntv)

        def d_objective(d_tv, d_ntv, x, y, fake):
            fake = jax.lax.stop_gradient(fake)
            d_real, _ = disc.stateless_call(d_tv, d_ntv, jnp.concatenate([x, y], -1), training=True)
            d_fake, d_ntv = disc.stateless_call(d_tv, d_ntv, jnp.concatenate([x, fake], -1), training=True)
            return losses(cfg, x, y, fake, d_real, d_fake, 0.0)["d_loss"], d_ntv

        @jax.jit
        def step(state, x, y, gan_on, shift, cut):
            g_tv, g_ntv, d_tv, d_ntv, g_ov, d_ov = state
            (_, (logs, fake, g_ntv)), g_grads = jax.value_and_grad(g_objective, has_aux=True)(
                g_tv, g_ntv, d_tv, d_ntv, x, y, gan_on, shift, cut)
            (d_loss, d_ntv), d_grads = jax.value_and_grad(d_objective, has_aux=True)(d_tv, d_ntv, x, y, fake)
            g_tv, g_ov = self.g_opt.stateless_apply(g_ov, g_grads, g_tv)
            d_tv, d_ov = self.d_opt.stateless_apply(d_ov, d_grads, d_tv)
            return (g_tv, g_ntv, d_tv, d_ntv, g_ov, d_ov), {**logs, "d_loss": d_loss, "fake": fake}

        def run(x, y, gan_on, shift, cut):
            if self._state is None:
                self._state = tuple([v.value for v in vs] for vs in (
                    gen.trainable_variables, gen.non_trainable_variables, disc.trainable_variables,
                    disc.non_trainable_variables, self.g_opt.variables, self.d_opt.variables))
            self._state, logs = step(self._state, x, y, gan_on, shift, cut)
            return logs

        return run

    def _sync(self) -> None:
        """Write the JAX state back into the Keras variables (before saving or exporting)."""
        if self.backend != "jax" or self._state is None:
            return
        owners = (self.gen.trainable_variables, self.gen.non_trainable_variables, self.disc.trainable_variables,
                  self.disc.non_trainable_variables, self.g_opt.variables, self.d_opt.variables)
        for variables, values in zip(owners, self._state):
            for v, val in zip(variables, values):
                v.assign(val)

    def final_generator(self) -> Any:
        """The generator to export: its weights' moving average when `ema` is on, else the last step's.

        Last-step weights swing from checkpoint to checkpoint by as much as recipes differ; the
        average does not. Call after the last save: the live weights are overwritten.
        """
        self._sync()
        self.g_opt.finalize_variable_values(self.gen.trainable_variables)
        return self.gen

    # -- checkpoints: one .npz of every variable, any backend -----------------------------
    def _ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.npz"

    def restore(self) -> int:
        """Resume from the run folder's checkpoint, if any; returns the step reached. The
        training settings may change (later stages of the default style did), but not the
        network's shape nor what it learns from."""
        path = self._ckpt_path()
        if path.is_file():
            from keras import ops

            state = self.run_dir / "state.json"
            if state.is_file():  # a resumed style names what it went on from
                self.resumed_from = json.loads(state.read_text())
                self._check_resumable(self.resumed_from)
            data = np.load(path)
            for g, variables in enumerate(self._groups):
                for i, v in enumerate(variables):
                    v.assign(ops.convert_to_tensor(data[f"g{g}_{i}"]))
            self.step = int(data["step"])
            self.wall = float(data["wall"])
            self._state = None if self.backend == "jax" else getattr(self, "_state", None)
        return self.step

    def start_from_style(self, path: str | os.PathLike, record: dict[str, Any]) -> None:
        """Start step 0 from a style's weights instead of random ones (fine-tuning).

        The style is loaded in safe mode; its network must have this run's shape. The optimizer's
        moving average takes the weights at the first step, so the export starts from them too.
        """
        from keras import ops

        from linerelifer_addon.worker.engine import load_style_model

        model = load_style_model(path)
        theirs = [tuple(v.shape) for v in model.weights]
        ours = [tuple(v.shape) for v in self.gen.weights]
        if theirs != ours:
            raise InputError(f"{path} holds a network of another shape than --arch {self.cfg.arch} "
                             f"--widths {','.join(map(str, self.cfg.widths or ()))} --stem {self.cfg.stem} "
                             f"--basis {self.cfg.basis}; give the shape it was trained with, or another --init-from.")
        for v, w in zip(self.gen.weights, model.weights):
            v.assign(ops.convert_to_tensor(ops.convert_to_numpy(w.value)))
        self.initialised_from = record

    _SHAPE = (("arch", "--arch"), ("widths", "--widths"), ("stem", "--stem"), ("basis", "--basis"))

    def _check_resumable(self, previous: dict[str, Any]) -> None:
        before = previous.get("config", {})
        now = json.loads(json.dumps(asdict(self.cfg)))  # tuples as lists, as state.json holds them
        def shown(v: Any) -> str:
            return ",".join(map(str, v)) if isinstance(v, list) else str(v)

        for key, flag in self._SHAPE:
            if key in before and before[key] != now[key]:
                was = shown(before[key])
                raise InputError(f"{self.run_dir} holds a network with {flag} {was}, not {shown(now[key])}; "
                                 f"resume it with {flag} {was}, or train under another --name or --run-dir.")
        if previous.get("data") and self.data and _data_kind(previous["data"]) != _data_kind(self.data):
            raise InputError(f"{self.run_dir} was trained on {previous['data']}, not {self.data}; resume it "
                             "with the same --drawings, or train under another --name or --run-dir.")

    def save(self) -> None:
        from keras import ops

        self._sync()
        arrays = {f"g{g}_{i}": ops.convert_to_numpy(v.value) for g, vs in enumerate(self._groups)
                  for i, v in enumerate(vs)}
        tmp = self.run_dir / "checkpoint.tmp.npz"
        np.savez(tmp, step=self.step, wall=self.wall, **arrays)
        os.replace(tmp, self._ckpt_path())
        (self.run_dir / "state.json").write_text(json.dumps(
            {"step": self.step, "wall_seconds": round(self.wall, 1), "backend": self.backend,
             "config": asdict(self.cfg), "command": self.command, "data": self.data,
             "resumed_from": self.resumed_from, "initialised_from": self.initialised_from}, indent=1))

    def _log(self, step: int, logs: dict[str, float]) -> None:
        csv = self.run_dir / "metrics.csv"
        if not csv.exists():
            csv.write_text("step," + ",".join(logs) + "\n")
        with csv.open("a") as f:
            f.write(f"{step}," + ",".join(f"{v:.6g}" for v in logs.values()) + "\n")
        if self.writer is not None:
            import tensorflow as tf

            with self.writer.as_default(step=step):
                for k, v in logs.items():
                    tf.summary.scalar(k, v)

    def _last_logged(self) -> dict[str, float]:
        csv = self.run_dir / "metrics.csv"
        if not csv.is_file():
            return {}
        head, *rows = csv.read_text().splitlines()
        return dict(zip(head.split(",")[1:], map(float, rows[-1].split(",")[1:]))) if rows else {}

    def fit(self, verbose: int = 1) -> dict[str, float]:
        import keras
        from keras import ops

        cfg = self.cfg
        if self.step >= cfg.steps:  # a finished run resumed to export it again
            return self._last_logged()
        batches = _prefetch(self.sampler, cfg.batch)
        bar = keras.utils.Progbar(cfg.steps, verbose=verbose, unit_name="step",
                                  stateful_metrics=["loss", "mse", "xent", "adv", "d_loss", "shift", "valley"])
        bar.update(self.step)
        logs: dict[str, float] = {}
        t0 = time.perf_counter()
        while self.step < cfg.steps:
            item = batches.get()
            if isinstance(item, BaseException):
                raise item
            x, y, cut = item
            gan_on = np.float32(1.0 if self.step >= cfg.gan_start and cfg.gan_weight > 0 else 0.0)
            out = self._train_step(ops.convert_to_tensor(x), ops.convert_to_tensor(y), ops.convert_to_tensor(gan_on),
                                   ops.convert_to_tensor(shift_of_step(self.step)), ops.convert_to_tensor(cut))
            self.step += 1
            s = self.step
            logs = {k: float(ops.convert_to_numpy(v)) for k, v in out.items() if k != "fake"}
            if verbose:
                bar.update(s, values=list(logs.items()))
            if s % 25 == 0 or s == cfg.steps:
                self._log(s, logs)
            if cfg.sample_every and (s % cfg.sample_every == 0 or s == cfg.steps):
                sample_sheet(x, ops.convert_to_numpy(out["fake"]), y, self.run_dir / "samples" / f"step{s:06d}.png")
            if s % cfg.checkpoint_every == 0 or s == cfg.steps:
                self.wall += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save()
        if self.writer is not None:
            self.writer.flush()
        return logs
