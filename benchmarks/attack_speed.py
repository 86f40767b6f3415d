"""How close PGD gets to the bare cost of its gradient passes: native engine, ART engine, ART with its defaults.

One small CNN, one batch, PGD with `max_iter` steps. The bound is max_iter x the time of one bare
forward+backward pass of the batch (a compiled input gradient, nothing else). Prints
  (a) native_ratio = native PGD time / bound          (target <= 1.3)
  (b) art_ratio = `art` engine PGD time / bound        (target <= 3)
  (c) speedup_vs_art_default = ART PGD with its default batch size (32) / native PGD   (target >= 5)
Each time is the fastest of a few interleaved repeats, as the machine is shared; the same ratios in
process CPU time are printed too, as they hold up better when other jobs share the cores.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import medadv  # noqa: F401  (sets the Keras backend and quiets TensorFlow before either loads)

# isort: split
import keras
import numpy as np
import tensorflow as tf
from art.attacks.evasion import ProjectedGradientDescent
from art.estimators.classification import TensorFlowV2Classifier

from medadv.attacks import make_attack
from medadv.attacks.native import PGDConfig
from medadv.models import build_model, logits_model


def fastest(runs: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Best wall time and best process CPU time of each callable over `repeats` interleaved rounds (after one
    warm-up call each). CPU time counts work done, so it stays meaningful when other jobs share the cores."""
    for run in runs.values():
        run()
    wall, cpu = dict.fromkeys(runs, float("inf")), dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            began, began_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name] = min(wall[name], time.perf_counter() - began)
            cpu[name] = min(cpu[name], time.process_time() - began_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batch and fewer steps (under a minute)")
    args = parser.parse_args()
    batch, max_iter, repeats = (128, 10, 3) if args.quick else (256, 20, 5)

    keras.utils.set_random_seed(0)
    model = build_model("small_cnn", (28, 28, 1), 2)
    x = np.random.default_rng(0).uniform(0, 1, (batch, 28, 28, 1)).astype(np.float32)
    y = np.asarray(model(x).numpy().argmax(axis=1))
    config = PGDConfig(eps=8 / 255, eps_step=2 / 255, max_iter=max_iter, num_random_init=1)

    logits = logits_model(model)
    x_tf, y_tf = tf.constant(x), tf.constant(y)

    @tf.function
    def forward_backward() -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x_tf)
            loss = keras.losses.sparse_categorical_crossentropy(y_tf, logits(x_tf, training=False), from_logits=True)
        return tape.gradient(loss, x_tf)

    native = make_attack("pgd", model, config, (0.0, 1.0), batch, engine="native")
    art_engine = make_attack("pgd", model, config, (0.0, 1.0), batch, engine="art")
    plain_art = TensorFlowV2Classifier(
        logits,
        nb_classes=2,
        input_shape=(28, 28, 1),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )
    art_default = ProjectedGradientDescent(
        plain_art,
        eps=config.eps,
        eps_step=config.eps_step,
        max_iter=max_iter,
        num_random_init=config.num_random_init,
        verbose=False,
    )
    times, cpu = fastest(
        {
            "pass": lambda: forward_backward().numpy(),
            "native": lambda: native.generate(x, y, None),
            "art": lambda: art_engine.generate(x, y, None),
            "art_default": lambda: art_default.generate(x, y=y),
        },
        repeats,
    )
    bound, cpu_bound = max_iter * times["pass"], max_iter * cpu["pass"]
    native_ratio, art_ratio = times["native"] / bound, times["art"] / bound
    speedup = times["art_default"] / times["native"]
    print(f"small_cnn 28x28x1, batch {batch}, PGD-{max_iter}, {os.cpu_count()} CPU cores, best of {repeats}")
    print(f"bare forward+backward of the batch: {1000 * times['pass']:.1f} ms; bound {bound:.3f} s")
    print(f"native engine:                    {times['native']:.3f} s = {native_ratio:.2f} x bound (target <= 1.3)")
    print(f"art engine (batch {batch}):           {times['art']:.3f} s = {art_ratio:.2f} x bound (target <= 3)")
    print(f"ART with its defaults (batch 32): {times['art_default']:.3f} s = {speedup:.2f} x native (target >= 5)")
    print(
        f"same ratios in CPU time: native {cpu['native'] / cpu_bound:.2f}, art {cpu['art'] / cpu_bound:.2f}, "
        f"ART defaults / native {cpu['art_default'] / cpu['native']:.2f}"
    )
    print(f"RESULT native_ratio={native_ratio:.3f} art_ratio={art_ratio:.3f} speedup_vs_art_default={speedup:.3f}")


if __name__ == "__main__":
    main()
