"""Batched Grad-CAM time per map, as a multiple of one forward+backward pass per sample.

A gradient explanation cannot cost less than one forward and one backward pass per sample, so the
baseline is exactly that, measured in the same run on the same model and batches: the gradient of
the explained class's logit with respect to the input, batched and compiled with tf.function (the
fastest TensorFlow does it). The eager version of the same pass, which is how tf-keras-vis runs, is
printed too. Models have random weights: the cost does not depend on them.

    python benchmarks/gradcam_speed.py [--quick]
"""

from __future__ import annotations  # noqa: I001  (medadv must come before keras: it picks the backend)

import argparse
import time
from collections.abc import Callable

import medadv  # noqa: F401
import keras
import numpy as np
import tensorflow as tf

from medadv.explain import Explainer
from medadv.models import build_model, logits_model


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` timed runs after one warm-up run (tracing, caches), least hit by noise."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def forward_backward(model: keras.Model, compiled: bool) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """d logit[class] / d input for a batch: one forward and one backward pass per sample."""
    logits = logits_model(model)

    def gradient(x: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.gather(logits(x, training=False), classes, batch_dims=1)
        return tape.gradient(score, x)

    step = tf.function(gradient) if compiled else gradient
    return lambda x, classes: step(tf.constant(x), tf.constant(classes)).numpy()


def measure(name: str, model: keras.Model, n: int, batch_size: int, repeats: int) -> tuple[float, float]:
    """Print and return Grad-CAM time per map over compiled and over eager forward+backward time per sample."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, *model.input_shape[1:])).astype(np.float32)
    classes = rng.integers(0, model.output_shape[-1], n)

    def batched(step: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[], None]:
        def run() -> None:
            for start in range(0, n, batch_size):
                step(x[start : start + batch_size], classes[start : start + batch_size])

        return run

    start = time.perf_counter()
    explainer = Explainer(model, method="gradcam")
    setup = time.perf_counter() - start
    gradcam = best_seconds(lambda: explainer(x, classes, batch_size=batch_size), repeats) / n
    compiled = best_seconds(batched(forward_backward(model, compiled=True)), repeats) / n
    eager = best_seconds(batched(forward_backward(model, compiled=False)), repeats) / n
    print(
        f"{name}: input {model.input_shape[1:]}, {model.count_params():,} parameters, layer {explainer.layer!r}, "
        f"{n} samples in batches of {batch_size}"
    )
    print(
        f"  per sample: grad-cam {gradcam * 1e3:.2f} ms, forward+backward {compiled * 1e3:.2f} ms compiled / "
        f"{eager * 1e3:.2f} ms eager; explainer set-up {setup:.2f} s once"
    )
    print(f"  ratio to forward+backward: {gradcam / compiled:.2f} compiled, {gradcam / eager:.2f} eager")
    return gradcam / compiled, gradcam / eager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller models and fewer samples (under 60 s)")
    quick = parser.parse_args().quick
    keras.utils.set_random_seed(0)
    # PneumoniaMNIST's victim (28 x 28 small CNN) and the ECGadv ResNet (9000 samples at 300 Hz).
    image = build_model("small_cnn", (28, 28, 1), 2)
    ecg_options = {"num_blocks": 4, "base_filters": 16} if quick else {}
    ecg = build_model("ecg_resnet", (3000 if quick else 9000, 1), 4, **ecg_options)
    repeats = 2 if quick else 3
    image_ratio, image_eager = measure("image small_cnn", image, 128 if quick else 512, 32, repeats)
    ecg_ratio, ecg_eager = measure("ecg ecg_resnet", ecg, 32, 32, repeats)
    print(
        f"RESULT ratio_to_fwdbwd={max(image_ratio, ecg_ratio):.2f} ratio_image={image_ratio:.2f} "
        f"ratio_ecg={ecg_ratio:.2f} ratio_to_eager_fwdbwd={max(image_eager, ecg_eager):.2f}"
    )


if __name__ == "__main__":
    main()
