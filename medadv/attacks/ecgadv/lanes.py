"""ECGadv's lane engine: the binary search over c with Adam inside (Carlini & Wagner, S&P 2017), batched.

Both types run the one loop of `ECGadvAttack` (per binary-search step: Adam from delta = 0 for up to
`max_iterations`, an early-stop check every `max_iterations // 10`, per-sample best iterate) and
differ in a few hooks. The loop is batched as a pool of lanes, one traced iteration for all of
them at a time; a record whose step stopped early leaves its lane at that check, and the lane takes
the next piece of work. Per record the result is the study's one-record-at-a-time run.
"""

from __future__ import annotations

import abc
import math
from collections import deque
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from medadv.attacks.base import Attack, AttackConfig, AttackError
from medadv.attacks.carlini import ABORT_TOLERANCE, UPPER_START, adam_step, binary_search_update
from medadv.models import logits_model

RETIRED = ("ran", "step_rank", "step_aux", "best_rank", "best_x")  # what a lane hands back when its step ends


def selection_masks(
    rank: tf.Tensor, success: tf.Tensor, keep: tf.Tensor, step_rank: tf.Tensor, best_rank: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Which samples improve their step's best (a success of lower rank) and their overall best (a
    success of lower rank that the variant also `keep`s: any for Type I, power in range for Type II)."""
    return success & (rank < step_rank), success & keep & (rank < best_rank)


@dataclass(frozen=True, kw_only=True)
class ECGadvConfig(AttackConfig):
    """What both types share: the binary search over c and Adam. Targeted only (`target` -1: every other class).

    `fs_hz` is the sampling rate of the records (300 Hz for CinC 2017); `jit_compile` XLA-compiles
    the iteration, once per number of busy lanes (for GPUs: on CPU it ran slower than plain graphs).
    """

    target: int | None = -1
    learning_rate: float
    max_iterations: int
    binary_search_steps: int = 5
    initial_const: float
    abort_early: bool = True
    fs_hz: float = 300.0
    jit_compile: bool = False

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.target is None:
            raise AttackError("ECGadv attacks are targeted: set target to a class index or -1 (every other class)")
        positive = {"learning_rate": self.learning_rate, "initial_const": self.initial_const, "fs_hz": self.fs_hz}
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise AttackError(f"{name} must be a finite number > 0, got {value}")
        if self.max_iterations < 1 or self.binary_search_steps < 1:
            raise AttackError(
                f"max_iterations and binary_search_steps must be >= 1, got {self.max_iterations}"
                f" and {self.binary_search_steps}"
            )

    @property
    def check_every(self) -> int:
        """Iterations between early-stop checks: a tenth of the budget, as the study."""
        return max(self.max_iterations // 10, 1)


class Iterate(NamedTuple):
    """One iteration's per-sample view, what the loop needs from a variant."""

    loss: tf.Tensor  # (n,) c * classification term + distance: what Adam minimises and early stopping watches
    success: tf.Tensor  # (n,) bool: classified as the target
    rank: tf.Tensor  # (n,) lower is better among successes (Type I: D; Type II: cross-entropy)
    aux: tf.Tensor  # (n,) what the selection rules read besides rank (Type II: the power)
    x_adv: tf.Tensor  # (n, L, 1) returned for the sample if this iterate is kept


class ECGadvAttack(Attack):
    """The binary search over c with Adam inside, batched; variants override the hooks below.

    The batch is a pool of `batch_size` lanes, each running one binary-search step of one record at
    a time. Every `check_every` iterations all lanes meet at an early-stop check; a lane whose step
    has ended (stopped early or used its budget) takes its record's next step or a new record, so
    finished work costs nothing and the pool stays full until the work runs out. Per record, the
    result is exactly the study's one-record-at-a-time run. `iterations_run` counts the
    sample-iterations the last `generate` computed.
    """

    config: ECGadvConfig
    initial_prev_loss: ClassVar[float]  # the study's loss reference before the first early-stop check

    def __init__(
        self,
        model: keras.Model,
        config: ECGadvConfig,
        clip_range: tuple[float, float] = (-np.inf, np.inf),
        batch_size: int = 64,
    ) -> None:
        super().__init__(model, config, clip_range, batch_size)
        self.logits = logits_model(model)
        self.num_classes = int(self.logits.output_shape[-1])
        config.validate(self.num_classes)
        if batch_size < 1:
            raise AttackError(f"batch_size must be >= 1, got {batch_size}")
        self.iterations_run = 0
        self._iteration_functions: dict[int, tf.types.experimental.PolymorphicFunction] = {}

    # -- hooks -------------------------------------------------------------------------------

    def check_inputs(self, x: np.ndarray) -> None:
        """Raise AttackError for records this variant cannot attack (called before any compute)."""

    def per_sample_constants(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per-record arrays besides x, target and c that `evaluate` reads."""
        return {}

    def delta_shape(self, x: np.ndarray) -> tuple[int, ...]:
        """The shape of the optimised variable for records `x`."""
        return x.shape

    @abc.abstractmethod
    def evaluate(self, delta: tf.Tensor, lanes: dict[str, tf.Tensor], clock: tf.Tensor) -> Iterate:
        """Loss, success and selection values of iterate `delta`; `clock` counts the pool's iterations."""

    def keep(self, aux: tf.Tensor) -> tf.Tensor:
        """Whether a successful iterate may become the sample's result."""
        return tf.ones_like(aux, dtype=tf.bool)

    def step_succeeded(self, found: np.ndarray, step_aux: np.ndarray) -> np.ndarray:
        """Whether a binary-search step counts as a success, given it found a success and the best one's aux."""
        return found

    # -- the public entry --------------------------------------------------------------------

    def generate(self, x: np.ndarray, y: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != 1:
            raise AttackError(f"ECGadv attacks single-lead records of shape (n, length, 1), got {x.shape}")
        if target is None or np.shape(target) != (len(x),):
            raise AttackError("ECGadv attacks are targeted: pass one target class per record")
        target = np.asarray(target)
        if len(x) and not (np.all((target >= 0) & (target < self.num_classes)) and np.isfinite(x).all()):
            raise AttackError(f"targets must lie in [0, {self.num_classes}) and records must be finite")
        self.check_inputs(x)
        self.iterations_run = 0
        return self._attack(x, target.astype(np.int32)) if len(x) else x.copy()

    # -- the loop ----------------------------------------------------------------------------

    def _attack(self, x: np.ndarray, target: np.ndarray) -> np.ndarray:
        config, n = self.config, len(x)
        records = {"x": x, "target": target, **self.per_sample_constants(x)}
        search = {"c": np.full(n, config.initial_const), "lower": np.zeros(n), "upper": np.full(n, UPPER_START)}
        step = np.zeros(n, dtype=np.int64)
        best = {"best_rank": np.full(n, np.inf, dtype=np.float32), "best_x": x.copy()}
        queue, rows = deque(range(n)), np.zeros(0, dtype=np.int64)
        lanes: dict[str, tf.Tensor] = {}
        every, clock = config.check_every, 0
        while queue or len(rows):
            new = np.array([queue.popleft() for _ in range(min(len(queue), self.batch_size - len(rows)))], np.int64)
            if len(new):
                fresh = self._fresh_lanes(new, records, self._step_const(search, step, new), best)
                lanes = {name: tf.concat([lanes[name], value], 0) for name, value in fresh.items()} if lanes else fresh
                rows = np.concatenate([rows, new])
            iterate = self._iteration_function(lanes)
            # One iteration holding every lane's early-stop check, then the rest of the stretch to the next one.
            for iterations in (1, every - 1) if every > 1 else (1,):
                for _ in range(iterations):
                    lanes = iterate(lanes, tf.constant(clock))
                    clock += 1
                ended = lanes["stopped"].numpy() | (lanes["k"].numpy() >= config.max_iterations)
                if ended.any():
                    values = {name: tf.boolean_mask(lanes[name], ended).numpy() for name in RETIRED}
                    self._retire(rows[ended], values, search, step, best, queue)
                    rows, kept = rows[~ended], np.flatnonzero(~ended)
                    lanes = {name: tf.gather(value, kept) for name, value in lanes.items()}
                if not len(rows):
                    break
        return best["best_x"]

    def _step_const(self, search: dict[str, np.ndarray], step: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """c for the coming step of `rows`; Carlini & Wagner repeat the last of >= 10 steps at the upper bound."""
        steps = self.config.binary_search_steps
        repeat = (steps >= 10) & (step[rows] == steps - 1)
        return np.where(repeat, search["upper"][rows], search["c"][rows])

    def _fresh_lanes(
        self, rows: np.ndarray, records: dict[str, np.ndarray], c: np.ndarray, best: dict[str, np.ndarray]
    ) -> dict[str, tf.Tensor]:
        """Lanes starting a binary-search step of `rows` from delta = 0 with a fresh Adam."""
        zeros = np.zeros(self.delta_shape(records["x"][rows]), dtype=np.float32)
        counts = np.zeros(len(rows), dtype=np.int32)
        lanes = {name: value[rows] for name, value in records.items()} | {
            "c": c.astype(np.float32),
            "delta": zeros,
            "m": zeros,
            "v": zeros,
            "k": counts,  # the step's iteration
            "ran": counts,  # iterations computed, for `iterations_run`
            "prev": np.full(len(rows), self.initial_prev_loss, dtype=np.float32),
            "stopped": np.zeros(len(rows), dtype=bool),
            "step_rank": np.full(len(rows), np.inf, dtype=np.float32),
            "step_aux": np.zeros(len(rows), dtype=np.float32),
            "best_rank": best["best_rank"][rows],
            "best_x": best["best_x"][rows],
        }
        return {name: tf.constant(value) for name, value in lanes.items()}

    def _retire(
        self,
        rows: np.ndarray,
        ended: dict[str, np.ndarray],
        search: dict[str, np.ndarray],
        step: np.ndarray,
        best: dict[str, np.ndarray],
        queue: deque[int],
    ) -> None:
        """Close the step of `rows` (lane values `ended`): keep the best, move c, queue the next step."""
        self.iterations_run += int(ended["ran"].sum())
        best["best_rank"][rows], best["best_x"][rows] = ended["best_rank"], ended["best_x"]
        success = self.step_succeeded(np.isfinite(ended["step_rank"]), ended["step_aux"])
        c = self._step_const(search, step, rows)
        search["c"][rows], search["lower"][rows], search["upper"][rows] = binary_search_update(
            c, search["lower"][rows], search["upper"][rows], success
        )
        step[rows] += 1
        queue.extend(int(row) for row in rows[step[rows] < self.config.binary_search_steps])

    def _iteration_function(self, lanes: dict[str, tf.Tensor]) -> tf.types.experimental.PolymorphicFunction:
        """One iteration, traced once per record length for any number of lanes.

        The host calls it once per iteration: on CPU a `tf.while_loop` around the model runs about
        1.5x slower than separate calls, and the call overhead is small next to a batch's passes.
        """
        length = int(lanes["x"].shape[1])
        if length not in self._iteration_functions:
            spec = {name: tf.TensorSpec((None, *value.shape[1:]), value.dtype) for name, value in lanes.items()}
            self._iteration_functions[length] = tf.function(
                self._iteration,
                input_signature=[spec, tf.TensorSpec((), tf.int32)],
                jit_compile=self.config.jit_compile,
            )
        return self._iteration_functions[length]

    def _iteration(self, s: dict[str, tf.Tensor], clock: tf.Tensor) -> dict[str, tf.Tensor]:
        """Evaluate every lane's iterate, run the early-stop check where due, keep bests, take an Adam step."""
        config = self.config
        k = s["k"]
        running = ~s["stopped"] & (k < config.max_iterations)
        with tf.GradientTape() as tape:
            tape.watch(s["delta"])
            it = self.evaluate(s["delta"], s, clock)
            total = tf.reduce_sum(it.loss)  # records are independent: each gets its own gradient
        grad = tape.gradient(total, s["delta"])
        # Early stop: a step whose loss has not fallen since its last check ends here, this iterate unused.
        is_check = running & config.abort_early & tf.equal(k % config.check_every, 0)
        stopped = s["stopped"] | (is_check & (it.loss > ABORT_TOLERANCE * s["prev"]))
        live = running & ~stopped
        step_better, best_better = selection_masks(
            it.rank, it.success & live, self.keep(it.aux), s["step_rank"], s["best_rank"]
        )
        delta, m, v = adam_step(s["delta"], s["m"], s["v"], grad, k + 1, config.learning_rate)  # restarted every step
        return s | {
            "delta": delta,
            "m": m,
            "v": v,
            "k": k + tf.cast(live, tf.int32),
            "ran": s["ran"] + tf.cast(running, tf.int32),
            "prev": tf.where(is_check & live, it.loss, s["prev"]),
            "stopped": stopped,
            "step_rank": tf.where(step_better, it.rank, s["step_rank"]),
            "step_aux": tf.where(step_better, it.aux, s["step_aux"]),
            "best_rank": tf.where(best_better, it.rank, s["best_rank"]),
            "best_x": tf.where(best_better[:, None, None], it.x_adv, s["best_x"]),
        }
