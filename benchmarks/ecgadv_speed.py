"""How close batched ECGadv Type I gets to the bare cost of its gradient passes, and what batching buys.

A small ECG ResNet, synthetic CinC-like records (z-scored, zero-padded as the loader does), Type I on a
reduced iteration budget (the study's settings otherwise), 256 records streamed through 64 lanes (a
batch of 64: a lane whose step ends takes the next step or record). Prints
  (a) ratio_to_fwdbwd = batched attack seconds per sample-iteration / bare forward+backward seconds per
      sample in a batch of the same size (target <= 1.3; a sample that stops early stops costing, so
      only the sample-iterations actually run are counted)
  (b) speedup_vs_one_at_a_time = seconds per sample-iteration attacking one record at a time (as the
      study did) / the same in the batch (target >= 10)
Times exclude tracing (a warm-up call first); the bare pass is the fastest of repeats taken before
and after the attack, as the machine is shared. The speed-up cannot exceed what batching saves on
the passes themselves (the bare pass of one record / per sample in the batch), printed alongside.
`--full-size` instead estimates seconds per targeted attack for the 34-layer
ResNet: seconds per sample-iteration in a batch, measured on a few iterations, x the 5 x 1000 budget.
"""

from __future__ import annotations  # noqa: I001  (medadv must come before keras: it picks the backend)

import argparse
import os
import time

import medadv  # noqa: F401
import keras
import numpy as np
import tensorflow as tf

from medadv.attacks.ecgadv import ECGadvTypeI, ECGadvTypeIConfig
from medadv.data.cinc2017 import CLASS_NAMES, FS_HZ, preprocess, synthetic_ecg
from medadv.models import build_model, logits_model


def records(count: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic records 0.6 to 1.2 x `length` long, preprocessed as the CinC loader does; labels cycle."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASS_NAMES)
    signals = [synthetic_ecg(CLASS_NAMES[c], rng.uniform(0.6, 1.2) * length / FS_HZ, rng) for c in labels]
    return np.stack([preprocess(s, length) for s in signals]), labels


def machine() -> str:
    """CPU count and load, so a reader can judge how noisy the timings are."""
    return f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}"


def forward_backward_seconds(model: keras.Model, x: np.ndarray, repeats: int) -> float:
    """Fastest time of one compiled input-gradient pass over the batch `x`."""
    logits, x_tf = logits_model(model), tf.constant(x)

    def input_gradient() -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x_tf)
            total = tf.reduce_sum(logits(x_tf, training=False))
        return tape.gradient(total, x_tf)

    forward_backward = tf.function(input_gradient)
    forward_backward().numpy()
    best = np.inf
    for _ in range(repeats):
        began = time.perf_counter()
        forward_backward().numpy()
        best = min(best, time.perf_counter() - began)
    return best


def seconds_per_sample_iteration(attack: ECGadvTypeI, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """Wall time of one `generate` call divided by the sample-iterations it ran."""
    target = (y + 1) % len(CLASS_NAMES)
    began = time.perf_counter()
    attack.generate(x, y, target)
    return (time.perf_counter() - began) / attack.iterations_run, attack.iterations_run


def full_size(batch: int, iterations: int) -> None:
    keras.utils.set_random_seed(0)
    model = build_model("ecg_resnet", (9000, 1), len(CLASS_NAMES))
    x, y = records(batch, 9000)
    config = ECGadvTypeIConfig(metric="smooth_l2", max_iterations=iterations, binary_search_steps=1, abort_early=False)
    attack = ECGadvTypeI(model, config, batch_size=batch)
    attack.generate(x[:1], y[:1], (y[:1] + 1) % 4)  # trace
    per_iteration, _ = seconds_per_sample_iteration(attack, x, y)
    pass_per_sample = forward_backward_seconds(model, x, repeats=2) / batch
    budget = ECGadvTypeIConfig().binary_search_steps * ECGadvTypeIConfig().max_iterations
    print(f"ecg_resnet 34 layers (untrained), 9000 samples, batch {batch}, {iterations} iterations, {machine()}")
    print(f"bare forward+backward: {1000 * pass_per_sample:.1f} ms per sample")
    print(f"Type I: {1000 * per_iteration:.1f} ms per sample-iteration")
    print(f"estimate: {per_iteration * budget:.0f} s per targeted attack at the full {budget}-iteration budget")
    print("(an upper bound: early stopping ends most binary-search steps sooner)")
    print(
        f"RESULT full_size_seconds_per_attack={per_iteration * budget:.1f} ms_per_sample_iteration="
        f"{1000 * per_iteration:.2f} fwdbwd_ms_per_sample={1000 * pass_per_sample:.2f}"
    )


def small(quick: bool) -> None:
    lanes, count, singles = 64, 256, (3 if quick else 6)
    length, iterations, steps = (3000, 40, 2) if quick else (9000, 100, 2)
    keras.utils.set_random_seed(0)
    model = build_model("ecg_resnet", (length, 1), len(CLASS_NAMES), num_blocks=4, base_filters=16)
    x, y = records(count, length)
    config = ECGadvTypeIConfig(metric="smooth_l2", max_iterations=iterations, binary_search_steps=steps)
    attack = ECGadvTypeI(model, config, batch_size=lanes)
    attack.generate(x[:1], y[:1], (y[:1] + 1) % 4)  # trace once; later calls reuse the graph for any batch
    pass_before = forward_backward_seconds(model, x[:lanes], repeats=3) / lanes
    batched, run = seconds_per_sample_iteration(attack, x, y)
    one_at_a_time = [seconds_per_sample_iteration(attack, x[i : i + 1], y[i : i + 1])[0] for i in range(singles)]
    pass_per_sample = min(pass_before, forward_backward_seconds(model, x[:lanes], repeats=3) / lanes)
    pass_alone = forward_backward_seconds(model, x[:1], repeats=5)
    single = float(np.median(one_at_a_time))
    ratio, speedup = batched / pass_per_sample, single / batched
    print(f"ecg_resnet 4 blocks x 16 filters (untrained), {length} samples, {machine()}")
    print(
        f"Type I smooth_l2, {steps} binary-search steps x {iterations} iterations, {count} records through"
        f" {lanes} lanes: {run} sample-iterations run of {count * steps * iterations} (the rest stopped early)"
    )
    print(f"bare forward+backward: {1000 * pass_per_sample:.2f} ms per sample in a batch of {lanes}")
    print(f"                       {1000 * pass_alone:.2f} ms for one sample alone")
    print(f"batched attack:        {1000 * batched:.2f} ms per sample-iteration = {ratio:.2f} x (target <= 1.3)")
    print(
        f"one record at a time:  {1000 * single:.2f} ms per sample-iteration (median of {singles})"
        f" = {speedup:.1f} x the batched time (target >= 10;"
        f" the passes alone allow {pass_alone / pass_per_sample:.1f} x here)"
    )
    print(f"RESULT ratio_to_fwdbwd={ratio:.3f} speedup_vs_one_at_a_time={speedup:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter records and fewer iterations (under a minute)")
    parser.add_argument("--full-size", action="store_true", help="estimate seconds per attack for the 34-layer ResNet")
    parser.add_argument("--batch", type=int, default=16, help="batch for --full-size")
    parser.add_argument("--iterations", type=int, default=5, help="iterations measured for --full-size")
    args = parser.parse_args()
    if args.full_size:
        full_size(args.batch, args.iterations)
    else:
        small(args.quick)


if __name__ == "__main__":
    main()
