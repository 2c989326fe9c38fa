"""Training batches: random augmented crops of (input, target) pairs, with a degraded input.

Seed ranges: synthetic training drawings use seeds < TRAIN_SEED_LIMIT (10**6);
the held-out evaluation set (evalset.py) uses seeds >= 10**9, so they never overlap.
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from typing import Any, Callable

import cv2
import numpy as np

from training.degrade import degrade
from training.metrics import INK
from training.synth import synth_pair

TRAIN_SEED_LIMIT = 10**6
SCALE_RANGE = (0.8, 1.25)


class PairSampler:
    """Deterministic (given seed) sampler of [n, crop, crop, 1] float32 training batches.

    pairs=None draws a pool of `pool_size` synthetic drawings once at construction
    and crops from it, which keeps batch() fast.
    """

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]] | None = None, crop: int = 128,
                 seed: int = 0, pool_size: int = 200, synth_size: int = 256, min_ink: float = 0.01,
                 tries: int = 4, degrade_kwargs: dict | None = None, tied: bool = False,
                 nib: tuple[float, float] | None = None) -> None:
        self.crop = int(crop)
        self.rng = np.random.default_rng(seed)
        self.min_ink = min_ink
        self.tries = tries
        self.degrade_kwargs = dict(degrade_kwargs or {})
        if pairs is None:
            seeds = self.rng.choice(TRAIN_SEED_LIMIT, size=pool_size, replace=False)
            extra = {"nib": tuple(nib)} if nib else {}
            pairs = [synth_pair(int(s), synth_size, tied=tied, **extra) for s in seeds]
        if not pairs:
            raise ValueError("PairSampler got an empty list of pairs; pass at least one (input, target) pair or None.")
        need = int(np.ceil(self.crop * SCALE_RANGE[1])) + 1
        self.pairs = [self._checked(i, x, y, need) for i, (x, y) in enumerate(pairs)]
        areas = np.array([x.size for x, _ in self.pairs], np.float64)
        self.weights = areas / areas.sum()

    @staticmethod
    def _checked(i: int, x: np.ndarray, y: np.ndarray, need: int):
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        if x.ndim != 2 or x.shape != y.shape:
            raise ValueError(f"Pair {i} has input {x.shape} and target {y.shape}; both must be the same HxW.")
        ph, pw = max(0, need - x.shape[0]), max(0, need - x.shape[1])
        if ph or pw:  # small drawings get blank paper around them
            pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
            x, y = np.pad(x, pad), np.pad(y, pad)
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def _crop(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        x, y = self.pairs[int(rng.choice(len(self.pairs), p=self.weights))]
        scale = float(np.exp(rng.uniform(*np.log(SCALE_RANGE))))
        side = max(8, int(round(self.crop * scale)))
        h, w = x.shape
        best = None
        for _ in range(self.tries):
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            ty = y[top:top + side, left:left + side]
            ink = float(np.mean(ty > INK))
            if best is None or ink > best[0]:
                best = (ink, top, left)
            if ink >= self.min_ink:
                break
        _, top, left = best
        cx, cy = x[top:top + side, left:left + side], y[top:top + side, left:left + side]
        if side != self.crop:
            interp = cv2.INTER_AREA if side > self.crop else cv2.INTER_LINEAR
            cx = cv2.resize(cx, (self.crop, self.crop), interpolation=interp)
            cy = cv2.resize(cy, (self.crop, self.crop), interpolation=interp)
        k = int(rng.integers(4))
        cx, cy = np.rot90(cx, k), np.rot90(cy, k)
        if rng.random() < 0.5:
            cx, cy = cx[:, ::-1], cy[:, ::-1]
        return np.ascontiguousarray(cx), np.ascontiguousarray(cy)

    def sample(self, cut_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One (degraded input, clean target) crop, each crop x crop float32; `cut_out` receives
        the ink the gaps removed."""
        cx, cy = self._crop()
        return degrade(cx, self.rng, cut_out=cut_out, **self.degrade_kwargs), cy

    def batch(self, n: int, with_cuts: bool = False) -> tuple[np.ndarray, ...]:
        """(x, y) float32 arrays shaped [n, crop, crop, 1]; x is degraded, y is clean.

        `with_cuts` adds a third array: the ink the gaps cut from each input."""
        xs = np.empty((n, self.crop, self.crop, 1), np.float32)
        ys = np.empty_like(xs)
        cuts = np.zeros_like(xs) if with_cuts else None
        for i in range(n):
            xs[i, :, :, 0], ys[i, :, :, 0] = self.sample(None if cuts is None else cuts[i, :, :, 0])
        return (xs, ys, cuts) if with_cuts else (xs, ys)


def _put_while_needed(out: Any, item: Any, wait: float) -> bool:
    """Put `item` on `out`, giving up (False) once the training process has gone: a full queue
    would otherwise hold an orphan process, and its pool, for good."""
    parent = multiprocessing.parent_process()
    while True:
        try:
            out.put(item, timeout=wait)
            return True
        except queue.Full:
            if parent is not None and not parent.is_alive():
                return False


def _make_batches(make: Callable[[], PairSampler], seed: int, worker: int, n: int, out: Any,
                  wait: float = 5.0) -> None:
    """A data process: builds the same sampler as the training process (the same pool), then
    draws its crops and degradations from seed sequence [seed, worker]; puts batches of n on
    `out` while the trainer lives."""
    try:
        cv2.setNumThreads(1)  # a process per core already: cv2's own threads would oversubscribe
        sampler = make()
        sampler.rng = np.random.default_rng([seed, worker])
        while _put_while_needed(out, sampler.batch(n, with_cuts=True), wait):
            pass
    except BaseException:  # noqa: BLE001 - handed to the trainer, which raises it
        _put_while_needed(out, RuntimeError("a training data process failed:\n" + traceback.format_exc()), wait)


class WorkerSampler:
    """PairSampler's batches made by several processes, for machines with more cores than the
    training step needs (a GPU's host). Each process builds the sampler (the same pool as the
    one-process run's), then draws from seed sequence [seed, k]; batches are taken in turn, so a
    run is repeatable for a given seed and worker count, though its crops are not the
    one-process stream's. Processes are spawned, not forked: the training process may already
    run JAX's or TensorFlow's threads.
    """

    def __init__(self, make: Callable[[], PairSampler], seed: int, workers: int, n: int, depth: int = 4,
                 wait: float = 5.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.n, self.wait = int(n), wait
        self.queues = [ctx.Queue(maxsize=depth) for _ in range(workers)]
        self.procs = [ctx.Process(target=_make_batches, args=(make, seed, k, self.n, q, wait), daemon=True)
                      for k, q in enumerate(self.queues)]
        for p in self.procs:
            p.start()
        self.turn = 0

    def batch(self, n: int, with_cuts: bool = False) -> tuple[np.ndarray, ...]:
        if n != self.n:
            raise ValueError(f"this sampler's processes make batches of {self.n}, not {n}.")
        k = self.turn
        while True:
            try:
                item = self.queues[k].get(timeout=self.wait)
                break
            except queue.Empty:
                if not self.procs[k].is_alive():  # killed (out of memory, a crash): nothing will come
                    raise RuntimeError(f"training data process {k} ended (exit code {self.procs[k].exitcode}) "
                                       "without a batch; train with fewer --data-workers or none.") from None
        self.turn = (k + 1) % len(self.queues)
        if isinstance(item, BaseException):
            raise item
        return item if with_cuts else item[:2]

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join(timeout=10)
        for q in self.queues:
            q.close()
