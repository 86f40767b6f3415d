"""ECGadv (Chen et al., "ECGadv: Generating adversarial electrocardiogram to misguide arrhythmia
classification system", AAAI 2020): targeted attacks on single-lead ECG classifiers.

Type I (cloud deployment) edits the recording: Carlini & Wagner's targeted optimisation (S&P 2017,
eq. 6 with f6) of `c * f + D` by Adam with a binary search over c (margin, Adam step and search
shared with medadv's C&W attacks, `medadv.attacks.carlini`), where the distance D is the L2
norm, the paper's smoothness metric (eq. 4) or both. Type II (local deployment) learns a short
window of signal that fools the model wherever it lands: Expectation over Transformation (Athalye
et al. 2018) over random circular shifts, with the bands an ECG front end filters out removed.

Both run the one loop of `ECGadvAttack` (per binary-search step: Adam from delta = 0 for up to
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
from medadv.attacks.carlini import (
    ABORT_TOLERANCE,
    UPPER_START,
    adam_step,
    binary_search_update,
    cw_margin,
    targeted_success,
)
from medadv.attacks.ecgadv_filters import (
    DEFAULT_STOP_BANDS_HZ,
    STUDY_FFT_LENGTH,
    circular_shift,
    device_filter,
    fft_filter,
    fft_keep_mask,
    offset_range,
    parse_bands,
)
from medadv.models import logits_model

METRICS = ("l2", "smooth", "smooth_l2")
# Type II band removal: `study` filters each shifted copy with a 16384-point transform, as ECGadv's code;
# `record` filters the window once with a transform of the record's length (circular, so shift-invariant).
FFT_FORMS = ("study", "record")
UNIVERSAL_RECORDS = ("correct", "all")  # source records of the universal evaluation: the study's, or every one
SMOOTH_WEIGHT = 1e4  # D_smooth = 1e4 * Var(Delta): the study's scale for the smoothness metric
SMOOTH_L2_WEIGHT = 0.01  # weight of the L2 term in the study's smooth_l2 metric
RETIRED = ("ran", "step_rank", "step_aux", "best_rank", "best_x")  # what a lane hands back when its step ends


# --- formulas ----------------------------------------------------------------------------------


def zscore(signal: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """Per-record z-score over axis 1 (population variance), the input normalisation of the CinC model.

    With a 0/1 `mask` the statistics come from the masked samples only and the rest is set to 0.
    """
    if mask is None:
        mean, variance = tf.nn.moments(signal, axes=[1], keepdims=True)
        return (signal - mean) / tf.sqrt(variance)
    count = tf.reduce_sum(mask, axis=1, keepdims=True)
    mean = tf.reduce_sum(signal * mask, axis=1, keepdims=True) / count
    variance = tf.reduce_sum(tf.square((signal - mean) * mask), axis=1, keepdims=True) / count
    return (signal - mean) / tf.sqrt(variance) * mask


def smoothness(delta: tf.Tensor) -> tf.Tensor:
    """Var(Delta) with Delta = (0, d1-d0, ..., d_{L-1}-d_{L-2}, -d_{L-1}): ECGadv's smoothness (eq. 4).

    The first difference of delta padded with zeros at both ends, with its first entry zeroed as the
    study's code does, and the population variance over its L + 1 entries; `delta` is (n, L, 1).
    """
    zero = tf.zeros_like(delta[:, :1])
    padded_diff = tf.concat([zero, delta[:, 1:] - delta[:, :-1], -delta[:, -1:]], axis=1)
    return tf.math.reduce_variance(padded_diff, axis=[1, 2])


def type1_distance(metric: str, delta: tf.Tensor, x_model: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """D of Type I per sample: `l2` sum (x'-x)^2, `smooth` 1e4 Var(Delta), `smooth_l2` their 1 : 0.01 sum."""
    l2 = tf.reduce_sum(tf.square(x_model - x), axis=[1, 2])
    if metric == "l2":
        return l2
    smooth = SMOOTH_WEIGHT * smoothness(delta)
    return smooth if metric == "smooth" else smooth + SMOOTH_L2_WEIGHT * l2


def evaluation_distances(x: np.ndarray, x_adv: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample distances of a saved x', the ones the attack optimised (eq. 4 as `smoothness`):
    d_l2 = sum (x'-x)^2, d_smooth = Var(padded first difference of x'-x), d_smooth_l2 = 1e4 d_smooth + 0.01 d_l2."""
    delta = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    d_l2 = np.sum(delta**2, axis=1)
    d_smooth = smoothness(tf.constant(delta[:, :, None])).numpy()
    return {"d_l2": d_l2, "d_smooth": d_smooth, "d_smooth_l2": SMOOTH_WEIGHT * d_smooth + SMOOTH_L2_WEIGHT * d_l2}


def selection_masks(
    rank: tf.Tensor, success: tf.Tensor, keep: tf.Tensor, step_rank: tf.Tensor, best_rank: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Which samples improve their step's best (a success of lower rank) and their overall best (a
    success of lower rank that the variant also `keep`s: any for Type I, power in range for Type II)."""
    return success & (rank < step_rank), success & keep & (rank < best_rank)


def power_in_range(power: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """Type II keeps an iterate only if its power sum(delta^2) / w lies in the open interval (low, high)."""
    return (power > low) & (power < high)


def record_lengths(x: np.ndarray) -> np.ndarray:
    """Real samples per record: the CinC loader zero-pads after z-scoring, so the tail of exact zeros is padding."""
    nonzero = np.asarray(x).reshape(len(x), -1) != 0
    lengths = nonzero.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    lengths[~nonzero.any(axis=1)] = 0
    return lengths


# --- configuration -----------------------------------------------------------------------------


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


@dataclass(frozen=True, kw_only=True)
class ECGadvTypeIConfig(ECGadvConfig):
    """ECGadv Type I: x' = x + delta (`l2`) or zscore(x + delta) (`smooth`, `smooth_l2`), minimise c f + D.

    Study defaults: Adam 5e-3, 5 binary-search steps from c = 1e-2, 1000 iterations, kappa 0.
    Beyond the study: `mask_to_length` leaves the zero padding of short records untouched (delta
    and z-score statistics on the real samples only); `renormalize` z-scores the `l2` variant too,
    as the study's evaluation script did to its saved samples before predicting.
    """

    metric: str = "l2"
    learning_rate: float = 5e-3
    max_iterations: int = 1000
    initial_const: float = 1e-2
    kappa: float = 0.0
    mask_to_length: bool = False
    renormalize: bool = False

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.metric not in METRICS:
            raise AttackError(f"metric {self.metric!r} is not an ECGadv distance; choose one of {', '.join(METRICS)}")
        if not (math.isfinite(self.kappa) and self.kappa >= 0):
            raise AttackError(f"kappa must be a finite number >= 0, got {self.kappa}")


@dataclass(frozen=True, kw_only=True)
class ECGadvTypeIIConfig(ECGadvConfig):
    """ECGadv Type II: a `window`-sample delta at a random circular offset, FFT bins in `stop_bands_hz`
    zeroed, x' = zscore(filtered shifted delta + x); minimise c * mean cross-entropy over the copies + sum delta^2.

    Study defaults: Adam 1.0, 5 binary-search steps from c = 5e4, 500 iterations; `ensemble_size`
    None draws int((L - w) / 50) copies per step (L / 50 when w = L). `stop_bands_hz` lists the
    bands as text ("lo-hi" or one frequency, comma-separated; see `parse_bands`). An iterate is
    kept if its power sum(delta^2) / w lies in (min_power, max_power); a step counts as a success
    only if the power of its lowest-loss success exceeds `min_step_power`. `seed` fixes the shifts.
    `fft_form` (`FFT_FORMS`) says which transform removes the bands.
    """

    window: int = 9000
    ensemble_size: int | None = None
    learning_rate: float = 1.0
    max_iterations: int = 500
    initial_const: float = 5e4
    stop_bands_hz: str = DEFAULT_STOP_BANDS_HZ
    fft_form: str = "study"
    min_power: float = 0.5
    max_power: float = 1.5
    min_step_power: float = 1.0
    seed: int = 0

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.window < 2:
            raise AttackError(f"window must be >= 2 samples, got {self.window}")
        if self.ensemble_size is not None and self.ensemble_size < 1:
            raise AttackError(f"ensemble_size must be >= 1 or None, got {self.ensemble_size}")
        if not 0 <= self.min_power < self.max_power:
            raise AttackError(f"need 0 <= min_power < max_power, got {self.min_power} and {self.max_power}")
        parse_bands(self.stop_bands_hz)
        if self.fft_form not in FFT_FORMS:
            raise AttackError(f"fft_form {self.fft_form!r} is not one of {', '.join(FFT_FORMS)}")

    def copies(self, length: int) -> int:
        """Shifted copies per step: int((L - w) / 50) for a window shorter than the record, L / 50 otherwise."""
        if self.ensemble_size is not None:
            return self.ensemble_size
        return length // 50 if self.window == length else (length - self.window) // 50


# --- the loop ----------------------------------------------------------------------------------


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


# --- the two types -----------------------------------------------------------------------------


class ECGadvTypeI(ECGadvAttack):
    """ECGadv Type I, cloud deployment (`ECGadvTypeIConfig`): the returned x' is what the model was fed,
    x + delta for `l2` and zscore(x + delta) otherwise; records with no success come back unchanged."""

    config: ECGadvTypeIConfig
    initial_prev_loss = 1e6

    def per_sample_constants(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if not self.config.mask_to_length:
            return {"mask": np.ones_like(x)}
        lengths = record_lengths(x)
        return {"mask": (np.arange(x.shape[1])[None, :, None] < lengths[:, None, None]).astype(np.float32)}

    def check_inputs(self, x: np.ndarray) -> None:
        if self.config.mask_to_length and len(x) and record_lengths(x).min() < 2:
            raise AttackError("mask_to_length needs records with at least 2 non-zero samples; found an empty record")

    def evaluate(self, delta: tf.Tensor, lanes: dict[str, tf.Tensor], clock: tf.Tensor) -> Iterate:
        config = self.config
        delta = delta * lanes["mask"]
        x = lanes["x"]
        x_adv = x + delta
        if config.metric != "l2" or config.renormalize:
            x_adv = zscore(x_adv, lanes["mask"])
        logits = self.logits(x_adv, training=False)
        distance = type1_distance(config.metric, delta, x_adv, x)
        loss = lanes["c"] * cw_margin(logits, lanes["target"], config.kappa) + distance
        success = targeted_success(logits, lanes["target"], config.kappa)
        return Iterate(loss, success, distance, tf.zeros_like(distance), x_adv)


class ECGadvTypeII(ECGadvAttack):
    """ECGadv Type II, local deployment (`ECGadvTypeIIConfig`): the returned x' is x + delta, delta the
    unfiltered window at the start of the record (zero elsewhere); records with no kept iterate come
    back unchanged. The model sees `len(x) * copies` records per iteration: keep `batch_size` small."""

    config: ECGadvTypeIIConfig
    initial_prev_loss = 1e9

    def check_inputs(self, x: np.ndarray) -> None:
        length, window = x.shape[1], self.config.window
        if window > length:
            raise AttackError(f"window {window} is longer than the records ({length} samples)")
        if self.config.copies(length) < 1:
            raise AttackError(f"window {window} of {length} leaves no shifted copies; set ensemble_size")
        if self.config.fft_form == "study" and length > STUDY_FFT_LENGTH:
            raise AttackError(f"fft_form=study pads records to {STUDY_FFT_LENGTH} samples; got {length}, use record")
        fft_keep_mask(length, self.config.fs_hz, parse_bands(self.config.stop_bands_hz))  # raises above fs/2

    def delta_shape(self, x: np.ndarray) -> tuple[int, ...]:
        return (len(x), self.config.window, 1)

    def keep(self, aux: tf.Tensor) -> tf.Tensor:
        return power_in_range(aux, self.config.min_power, self.config.max_power)

    def step_succeeded(self, found: np.ndarray, step_aux: np.ndarray) -> np.ndarray:
        return found & (step_aux > self.config.min_step_power)

    def filtered_copies(self, padded: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        """The windows padded to the record (n, L) at `offsets` (n, copies), the stop bands removed: (n, copies, L)."""
        config, length = self.config, padded.shape[-1]
        bands = parse_bands(config.stop_bands_hz)
        if config.fft_form == "record":  # circular: filtering once before the shifts equals filtering each copy
            return circular_shift(fft_filter(padded, fft_keep_mask(length, config.fs_hz, bands)), offsets)
        keep = fft_keep_mask(STUDY_FFT_LENGTH, config.fs_hz, bands)
        return fft_filter(circular_shift(padded, offsets), keep, STUDY_FFT_LENGTH)

    def evaluate(self, delta: tf.Tensor, lanes: dict[str, tf.Tensor], clock: tf.Tensor) -> Iterate:
        config = self.config
        x = lanes["x"]
        length, copies = x.shape[1], config.copies(x.shape[1])
        window = delta[:, :, 0]
        padded = tf.pad(window, [[0, 0], [0, length - config.window]])
        # Fresh offsets for every copy at every iteration, reproducible from the seed and the pool's clock.
        offsets = tf.random.stateless_uniform(
            [tf.shape(window)[0], copies],
            tf.stack([tf.constant(config.seed), clock]),
            minval=0,
            maxval=offset_range(length, config.window),
            dtype=tf.int32,
        )
        x_in = zscore(tf.reshape(self.filtered_copies(padded, offsets) + x[:, None, :, 0], (-1, length, 1)))
        logits = tf.reshape(self.logits(x_in, training=False), (-1, copies, self.num_classes))
        labels = tf.repeat(lanes["target"][:, None], copies, axis=1)
        xent = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits), axis=1)
        power_sum = tf.reduce_sum(tf.square(window), axis=1)
        success = targeted_success(tf.reduce_mean(logits, axis=1), lanes["target"])
        return Iterate(lanes["c"] * xent + power_sum, success, xent, power_sum / config.window, x + padded[..., None])


# --- universal evaluation of Type II -----------------------------------------------------------


@dataclass(frozen=True)
class UniversalEvaluation:
    """Predictions per class over every (record, position) of a universal evaluation."""

    counts: np.ndarray  # (num_classes,) int

    @property
    def shares(self) -> np.ndarray:
        return self.counts / max(int(self.counts.sum()), 1)


def universal_records(
    x: np.ndarray,
    y: np.ndarray,
    lengths: np.ndarray,
    source: int,
    min_length: int = 9000,
    y_pred: np.ndarray | None = None,
) -> np.ndarray:
    """The records of class `source` at least `min_length` samples long (30 s at 300 Hz, as the study);
    given the victim's predictions `y_pred`, only those it classifies correctly (the study's data_select lists)."""
    chosen = (np.asarray(y) == source) & (np.asarray(lengths) >= min_length)
    if y_pred is not None:
        chosen &= np.asarray(y_pred) == np.asarray(y)
    return np.asarray(x)[chosen]


def universal_evaluation(
    model: keras.Model,
    delta: np.ndarray,
    records: np.ndarray,
    *,
    fs_hz: float = 300.0,
    positions: int = 100,
    seed: int = 0,
    apply_device_filter: bool = True,
) -> UniversalEvaluation:
    """ECGadv's universal evaluation of a Type II window `delta` (w samples): pass it through the device
    filters (`device_filter`), add it at `positions` random offsets to every record (n, L, 1), z-score,
    and count the victim's predictions."""
    signal = np.asarray(delta, dtype=np.float64).reshape(-1)
    records = np.asarray(records, dtype=np.float32)
    if records.ndim != 3 or records.shape[2] != 1 or not 1 <= len(signal) <= records.shape[1]:
        raise AttackError(
            f"need records (n, L, 1) and a delta of at most L samples, got {records.shape}, {len(signal)}"
        )
    if positions < 1:
        raise AttackError(f"positions must be >= 1, got {positions}")
    if apply_device_filter:
        signal = device_filter(signal, fs_hz)
    length = records.shape[1]
    padded = np.zeros((1, length), dtype=np.float32)
    padded[0, : len(signal)] = signal
    offsets = np.random.default_rng(seed).integers(0, offset_range(length, len(signal)), size=(len(records), positions))
    num_classes = int(model.output_shape[-1])
    counts = np.zeros(num_classes, dtype=np.int64)
    for record, record_offsets in zip(records, offsets, strict=True):
        shifted = circular_shift(tf.constant(padded), tf.constant(record_offsets[None]))[0]
        probs = model(zscore(shifted[:, :, None] + record[None]), training=False)
        counts += np.bincount(np.argmax(np.asarray(probs), axis=1), minlength=num_classes)
    return UniversalEvaluation(counts)


def universal_control(
    model: keras.Model,
    target_record: np.ndarray,
    records: np.ndarray,
    *,
    fs_hz: float = 300.0,
    positions: int = 100,
    seed: int = 0,
) -> UniversalEvaluation:
    """The study's control: add a real record of the target class instead of delta (no device filter)."""
    return universal_evaluation(
        model, target_record, records, fs_hz=fs_hz, positions=positions, seed=seed, apply_device_filter=False
    )
