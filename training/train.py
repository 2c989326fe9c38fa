"""The training loop: reconstruction plus adversarial loss, with checkpoints and logs.

The generator learns to map uniform, degraded lines to inked ones. As in the seed project,
a reconstruction loss (weighted ×20) keeps lines where they belong and a conditional patch
discriminator's loss pushes towards the texture and width variation of real drawings.

Models are plain Keras 3 layers; the update step uses TensorFlow's GradientTape, the one
backend this project ships.
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass
class TrainConfig:
    arch: str = "lite"
    steps: int = 3000
    batch: int = 16
    crop: int = 128
    lr: float = 1e-3
    recon_weight: float = 20.0
    l1_weight: float = 0.0
    bce_weight: float = 1.0  # cross-entropy keeps gradients alive where the sigmoid saturates
    gan_weight: float = 0.05
    gan_start: int = 500  # steps of reconstruction only before the discriminator joins
    seed: int = 1
    threads: int | None = None
    sample_every: int = 250
    checkpoint_every: int = 250
    pool: int = 240
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def seed_baseline(cls, **kw: Any) -> "TrainConfig":
        """The seed project's recipe: its generator, MSE×20 + GAN×1 from the first step."""
        return cls(arch="seed", recon_weight=20.0, l1_weight=0.0, bce_weight=0.0, gan_weight=1.0, gan_start=0,
                   lr=2e-4, **kw)


def _prefetch(sampler: Any, batch: int, depth: int = 4) -> "queue.Queue":
    """Make batches on a thread so the data side overlaps the training step."""
    q: queue.Queue = queue.Queue(maxsize=depth)

    def run() -> None:
        while True:
            q.put(sampler.batch(batch))

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


class Trainer:
    """Holds models, optimisers and checkpoints for one run folder."""

    def __init__(self, cfg: TrainConfig, run_dir: str | os.PathLike, sampler: Any) -> None:
        import keras
        import tensorflow as tf

        from linerelifer_addon.worker import model as models
        from linerelifer_addon.worker.engine import configure_threads

        configure_threads(cfg.threads)
        keras.utils.set_random_seed(cfg.seed)
        self.cfg, self.sampler = cfg, sampler
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.gen = models.build_generator(cfg.arch)
        self.disc = models.build_discriminator()
        self.g_opt = keras.optimizers.Adam(cfg.lr, beta_1=0.5)
        self.d_opt = keras.optimizers.Adam(cfg.lr, beta_1=0.5)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.ckpt = tf.train.Checkpoint(gen=self.gen, disc=self.disc, g_opt=self.g_opt,
                                        d_opt=self.d_opt, step=self.step)
        self.manager = tf.train.CheckpointManager(self.ckpt, str(self.run_dir / "checkpoints"), max_to_keep=2)
        self.writer = tf.summary.create_file_writer(str(self.run_dir / "logs"))
        self._train_step = tf.function(self._step_fn, reduce_retracing=True)
        self.wall = 0.0

    def _step_fn(self, x: Any, y: Any, gan_on: Any) -> dict[str, Any]:
        import tensorflow as tf

        cfg = self.cfg
        bce = lambda label, logits: tf.reduce_mean(  # noqa: E731
            tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label), logits=logits))
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self.gen(x, training=True)
            d_real = self.disc(tf.concat([x, y], -1), training=True)
            d_fake = self.disc(tf.concat([x, fake], -1), training=True)
            mse = tf.reduce_mean(tf.square(fake - y))
            l1 = tf.reduce_mean(tf.abs(fake - y))
            p = tf.clip_by_value(fake, 1e-6, 1.0 - 1e-6)
            xent = -tf.reduce_mean(y * tf.math.log(p) + (1.0 - y) * tf.math.log(1.0 - p))
            adv = bce(1.0, d_fake)
            g_loss = (cfg.recon_weight * mse + cfg.l1_weight * l1 + cfg.bce_weight * xent
                      + gan_on * cfg.gan_weight * adv)
            d_loss = 0.5 * (bce(1.0, d_real) + bce(0.0, d_fake))
        g_grads = g_tape.gradient(g_loss, self.gen.trainable_variables)
        self.g_opt.apply_gradients(zip(g_grads, self.gen.trainable_variables))
        d_grads = d_tape.gradient(d_loss, self.disc.trainable_variables)
        self.d_opt.apply_gradients(zip(d_grads, self.disc.trainable_variables))
        return {"loss": g_loss, "mse": mse, "xent": xent, "adv": adv, "d_loss": d_loss, "fake": fake}

    def restore(self) -> int:
        """Resume from the latest checkpoint in the run folder, if any."""
        if self.manager.latest_checkpoint:
            self.ckpt.restore(self.manager.latest_checkpoint)
            state = self.run_dir / "state.json"
            if state.is_file():
                self.wall = float(json.loads(state.read_text()).get("wall_seconds", 0.0))
        return int(self.step.numpy())

    def save(self) -> None:
        self.manager.save(checkpoint_number=int(self.step.numpy()))
        (self.run_dir / "state.json").write_text(json.dumps(
            {"step": int(self.step.numpy()), "wall_seconds": round(self.wall, 1), "config": asdict(self.cfg)}, indent=1))

    def fit(self, verbose: int = 1) -> dict[str, float]:
        import keras
        import tensorflow as tf

        cfg = self.cfg
        start = int(self.step.numpy())
        if start >= cfg.steps:
            return {}
        batches = _prefetch(self.sampler, cfg.batch)
        bar = keras.utils.Progbar(cfg.steps, verbose=verbose, stateful_metrics=["loss", "mse", "xent", "adv", "d_loss"],
                                  unit_name="step")
        bar.update(start)
        logs: dict[str, float] = {}
        t0 = time.perf_counter()
        for s in range(start, cfg.steps):
            x, y = batches.get()
            gan_on = tf.constant(1.0 if s >= cfg.gan_start and cfg.gan_weight > 0 else 0.0)
            out = self._train_step(tf.constant(x), tf.constant(y), gan_on)
            self.step.assign_add(1)
            logs = {k: float(v) for k, v in out.items() if k != "fake"}
            if verbose:
                bar.update(s + 1, values=list(logs.items()))
            if (s + 1) % 25 == 0 or s + 1 == cfg.steps:
                with self.writer.as_default(step=s + 1):
                    for k, v in logs.items():
                        tf.summary.scalar(k, v)
            if cfg.sample_every and ((s + 1) % cfg.sample_every == 0 or s + 1 == cfg.steps):
                sample_sheet(x, out["fake"].numpy(), y, self.run_dir / "samples" / f"step{s + 1:06d}.png")
            if (s + 1) % cfg.checkpoint_every == 0 or s + 1 == cfg.steps:
                self.wall += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save()
        self.writer.flush()
        return logs
