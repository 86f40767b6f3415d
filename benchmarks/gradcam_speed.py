"""Batched Grad-CAM time per map, as a multiple of one forward+backward pass per sample.

A gradient explanation cannot cost less than one forward and one backward pass per sample, so the
baseline is exactly that, measured in the same run on the same model and batches: the gradient of
the explained class's logit with respect to the input, batched and compiled with tf.function (the
fastest TensorFlow does it). Both Grad-CAM engines are timed: the compiled one (the RESULT's
`ratio_to_fwdbwd`) and tf-keras-vis, which runs eagerly, so its ratio to the eager version of the same
pass is printed too (`ratio_to_eager_fwdbwd`). Models have random weights: the cost does not depend on them.

    python benchmarks/gradcam_speed.py [--quick]
"""

from __future__ import annotations  # noqa: I001  (medadv must come before keras: it picks the backend)

import argparse
import functools
import time
from collections.abc import Callable

import medadv  # noqa: F401
import keras
import numpy as np
import tensorflow as tf

from medadv.explain import Explainer
from medadv.explain.gradcam import ENGINES
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


def measure(name: str, model: keras.Model, n: int, batch_size: int, repeats: int) -> dict[str, float]:
    """Print and return each engine's Grad-CAM time per map over compiled forward+backward time per sample.

    The key "tf-keras-vis eager" is tf-keras-vis' time over the eager forward+backward pass.
    """
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, *model.input_shape[1:])).astype(np.float32)
    classes = rng.integers(0, model.output_shape[-1], n)

    def batched(step: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[], None]:
        def run() -> None:
            for start in range(0, n, batch_size):
                step(x[start : start + batch_size], classes[start : start + batch_size])

        return run

    compiled = best_seconds(batched(forward_backward(model, compiled=True)), repeats) / n
    eager = best_seconds(batched(forward_backward(model, compiled=False)), repeats) / n
    print(
        f"{name}: input {model.input_shape[1:]}, {model.count_params():,} parameters, "
        f"{n} samples in batches of {batch_size}"
    )
    print(f"  per sample: forward+backward {compiled * 1e3:.2f} ms compiled / {eager * 1e3:.2f} ms eager")
    ratios = {}
    for engine in ENGINES:
        start = time.perf_counter()
        explainer = Explainer(model, method="gradcam", engine=engine)
        setup = time.perf_counter() - start
        gradcam = best_seconds(functools.partial(explainer, x, classes, batch_size=batch_size), repeats) / n
        ratios[engine] = gradcam / compiled
        print(
            f"  grad-cam {engine} (layer {explainer.layer!r}): {gradcam * 1e3:.2f} ms per sample, "
            f"{gradcam / compiled:.2f}x compiled / {gradcam / eager:.2f}x eager forward+backward; "
            f"set-up {setup:.2f} s once"
        )
    ratios["tf-keras-vis eager"] = ratios["tf-keras-vis"] * compiled / eager
    return ratios


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
    image = measure("image small_cnn", image, 128 if quick else 512, 32, repeats)
    ecg = measure("ecg ecg_resnet", ecg, 32, 32, repeats)

    def worst(key: str) -> float:
        return max(image[key], ecg[key])

    print(
        f"RESULT ratio_to_fwdbwd={worst('compiled'):.2f} ratio_tf_keras_vis={worst('tf-keras-vis'):.2f} "
        f"ratio_image={image['compiled']:.2f} ratio_ecg={ecg['compiled']:.2f} "
        f"ratio_to_eager_fwdbwd={worst('tf-keras-vis eager'):.2f}"
    )


if __name__ == "__main__":
    main()
