"""How close batched ECGadv Type I gets to the bare cost of its gradient passes, and what batching buys.

A small untrained ECG ResNet, synthetic CinC-like records (z-scored and zero-padded as the loader
does), Type I smooth_l2 on a reduced iteration budget (the study's settings otherwise), 256 records
streamed through 64 lanes (a batch of 64: a lane whose binary-search step ends takes the next step
or record). Prints
  (a) ratio_to_fwdbwd = attack seconds per sample-iteration / bare forward+backward seconds per sample
      in a batch of 64 (target <= 1.3). Only the sample-iterations actually run count, so records that
      stop early must stop costing; the end of the run, when too few records are left to fill the
      lanes, is included. CPU seconds of this process: on a shared machine the wall time of one long
      run and of a short pass see different loads, CPU time much less so.
  (b) speedup_vs_one_at_a_time = wall seconds per sample-iteration attacking one record at a time (as
      the study did) / the same in the batch. It cannot exceed what batching saves on the passes
      themselves, (c) batching_gain = the bare pass of one record / its share of a batch's pass (wall);
      target: speedup_vs_one_at_a_time >= 0.8 x batching_gain (the 10x once asked is more than 2 cores allow).
Tracing is excluded (a warm-up call first); bare passes are the fastest of a few repeats.
`--full-size` instead estimates seconds per targeted attack for the 34-layer ResNet: wall seconds per
sample-iteration in a batch, measured on a few iterations, x the study's 5 x 1000 iteration budget.
"""

from __future__ import annotations  # noqa: I001  (medadv must come before keras: it picks the backend)

import argparse
import os
import time
from collections.abc import Callable

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


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def forward_backward(model: keras.Model, x: np.ndarray, repeats: int) -> tuple[float, float]:
    """Fastest (wall, CPU) seconds per sample of one compiled input-gradient pass over the batch `x`."""
    logits, x_tf = logits_model(model), tf.constant(x)

    def input_gradient() -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x_tf)
            total = tf.reduce_sum(logits(x_tf, training=False))
        return tape.gradient(total, x_tf)

    compiled = tf.function(input_gradient)
    compiled().numpy()
    times = np.array([timed(lambda: compiled().numpy()) for _ in range(repeats)])
    return times[:, 0].min() / len(x), times[:, 1].min() / len(x)


def attack_per_sample_iteration(attack: ECGadvTypeI, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(wall, CPU) seconds of one `generate` call per sample-iteration it ran."""
    wall, cpu = timed(lambda: attack.generate(x, y, (y + 1) % len(CLASS_NAMES)))
    return wall / attack.iterations_run, cpu / attack.iterations_run


def small(quick: bool) -> None:
    lanes, count, singles = 64, 256, (3 if quick else 6)
    length, iterations, steps = (3000, 40, 2) if quick else (9000, 100, 2)
    keras.utils.set_random_seed(0)
    model = build_model("ecg_resnet", (length, 1), len(CLASS_NAMES), num_blocks=4, base_filters=16)
    x, y = records(count, length)
    config = ECGadvTypeIConfig(metric="smooth_l2", max_iterations=iterations, binary_search_steps=steps)
    attack = ECGadvTypeI(model, config, batch_size=lanes)
    attack.generate(x[:1], y[:1], (y[:1] + 1) % 4)  # trace once; later calls reuse the graph for any batch
    batched = attack_per_sample_iteration(attack, x, y)
    run = attack.iterations_run
    each = [attack_per_sample_iteration(attack, x[i : i + 1], y[i : i + 1]) for i in range(singles)]
    alone = (float(np.median([t[0] for t in each])), float(np.median([t[1] for t in each])))
    in_batch, single_pass = forward_backward(model, x[:lanes], repeats=5), forward_backward(model, x[:1], repeats=5)
    ratio, speedup, gain = batched[1] / in_batch[1], alone[0] / batched[0], single_pass[0] / in_batch[0]
    print(f"ecg_resnet 4 blocks x 16 filters (untrained), {length} samples, {machine()}")
    print(
        f"Type I smooth_l2, {steps} binary-search steps x {iterations} iterations, {count} records through"
        f" {lanes} lanes: {run} sample-iterations run of {count * steps * iterations} (the rest stopped early)"
    )
    print("ms per sample(-iteration)            wall    CPU")
    rows: list[tuple[str, tuple[float, float]]] = [
        (f"bare pass, batch of {lanes}", in_batch),
        ("bare pass, one record", single_pass),
        ("attack, batched", batched),
        (f"attack, one record (median of {singles})", alone),
    ]
    for name, (wall, cpu) in rows:
        print(f"  {name:<34} {1000 * wall:6.2f} {1000 * cpu:6.2f}")
    print(f"attack / bare pass (CPU):      {ratio:.2f} x (target <= 1.3; wall {batched[0] / in_batch[0]:.2f} x)")
    print(
        f"one at a time / batched (wall): {speedup:.1f} x = {speedup / gain:.2f} of the {gain:.1f} x that batching"
        " saves on the bare passes (target >= 0.8 of it)"
    )
    print(f"RESULT ratio_to_fwdbwd={ratio:.3f} speedup_vs_one_at_a_time={speedup:.2f} batching_gain={gain:.2f}")


def full_size(batch: int, iterations: int) -> None:
    keras.utils.set_random_seed(0)
    model = build_model("ecg_resnet", (9000, 1), len(CLASS_NAMES))
    x, y = records(batch, 9000)
    config = ECGadvTypeIConfig(metric="smooth_l2", max_iterations=iterations, binary_search_steps=1, abort_early=False)
    attack = ECGadvTypeI(model, config, batch_size=batch)
    attack.generate(x[:1], y[:1], (y[:1] + 1) % 4)  # trace
    per_iteration = attack_per_sample_iteration(attack, x, y)[0]
    pass_per_sample = forward_backward(model, x, repeats=2)[0]
    budget = ECGadvTypeIConfig().binary_search_steps * ECGadvTypeIConfig().max_iterations
    print(f"ecg_resnet 34 layers (untrained), 9000 samples, batch {batch}, {iterations} iterations, {machine()}")
    print(f"bare forward+backward: {1000 * pass_per_sample:.1f} ms per sample (wall)")
    print(f"Type I smooth_l2: {1000 * per_iteration:.1f} ms per sample-iteration (wall)")
    print(f"estimate: {per_iteration * budget:.0f} s per targeted attack if all {budget} iterations run")
    print("(an upper bound: early stopping ends most binary-search steps sooner)")
    print(
        f"RESULT full_size_seconds_per_attack={per_iteration * budget:.1f}"
        f" ms_per_sample_iteration={1000 * per_iteration:.2f} fwdbwd_ms_per_sample={1000 * pass_per_sample:.2f}"
    )


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
