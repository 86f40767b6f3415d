"""Victim architectures by name, and the victim contract every attack and explainer relies on.

A victim is a Functional Keras 3 model whose last layer is a softmax `Activation` fed by a
logits layer, so attacks and Grad-CAM can take the logits without rebuilding the model.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from medadv.errors import MedadvError
from medadv.models.ecg import ecg_resnet, ecg_resnet_wide
from medadv.models.image import (
    cifar_cnn,
    cifar_cnn_wide,
    inception_v3,
    mnist_dense,
    resnet50,
    resnet50v2,
    small_cnn,
    vgg16,
)

ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "ecg_resnet": ecg_resnet,
    "ecg_resnet_wide": ecg_resnet_wide,
    "small_cnn": small_cnn,
    "resnet50": resnet50,
    "resnet50v2": resnet50v2,
    "vgg16": vgg16,
    "inception_v3": inception_v3,
    "mnist_dense": mnist_dense,
    "cifar_cnn": cifar_cnn,
    "cifar_cnn_wide": cifar_cnn_wide,
}


class ModelError(MedadvError):
    """A model that does not fit the victim contract or the data; the message says what to do."""


def architecture(arch: str) -> Callable[..., keras.Model]:
    """The builder of `arch`; its keyword arguments are the architecture's options."""
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {arch!r}; choose one of {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[arch]


def build_model(arch: str, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> keras.Model:
    """Build a victim by architecture name."""
    return architecture(arch)(input_shape=input_shape, num_classes=num_classes, **options)


def check_victim(model: keras.Model, input_shape: tuple[int, ...] | None = None) -> None:
    """Pre-flight check that `model` outputs probabilities through a softmax over logits.

    With `input_shape`, also check the model accepts samples of that shape.
    """
    last = model.layers[-1]
    if not (isinstance(last, keras.layers.Activation) and last.get_config()["activation"] == "softmax"):
        raise ModelError(
            f"model {model.name!r} must end in a softmax Activation layer after its logits layer "
            f"(found {type(last).__name__} {last.name!r}); rebuild it with medadv.models.build_model"
        )
    expected = tuple(model.input_shape[1:])
    if input_shape is not None and len(expected) == len(input_shape):
        mismatch = any(e is not None and e != s for e, s in zip(expected, input_shape, strict=True))
    else:
        mismatch = input_shape is not None
    if mismatch:
        raise ModelError(f"model {model.name!r} takes inputs of shape {expected}, the data has shape {input_shape}")
    if input_shape is not None and model not in _PROBED:
        probe_outputs(model, input_shape)
        _PROBED.add(model)


PROBE_BATCH = 4
_PROBED: weakref.WeakSet[keras.Model] = weakref.WeakSet()  # a model is probed once, however often it is checked


def _is_probability(values: np.ndarray) -> bool:
    return bool(np.all((values >= -1e-6) & (values <= 1 + 1e-6)) and np.allclose(values.sum(axis=-1), 1, atol=1e-3))


def probe_outputs(model: keras.Model, input_shape: tuple[int, ...]) -> None:
    """Check on a random batch what the model computes, not what its layers are called.

    The outputs must be probabilities and the final softmax's input must not be: a softmax before the
    last one (e.g. `Dense(activation="softmax")` then `Activation("softmax")`) would hand the attacks
    probabilities as if they were logits, and their gradients would nearly vanish.
    """
    x = np.random.default_rng(0).uniform(0, 1, (PROBE_BATCH, *input_shape)).astype("float32")
    logits = keras.ops.convert_to_numpy(logits_model(model)(x, training=False))
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    if not _is_probability(probs):
        raise ModelError(f"model {model.name!r} does not output probabilities (rows in [0, 1] summing to 1)")
    if logits.shape[-1] > 1 and _is_probability(logits):
        raise ModelError(
            f"model {model.name!r}: the input of its final softmax is already probabilities (a softmax inside "
            "its last layer); give the logits layer activation=None"
        )


def logits_model(model: keras.Model) -> keras.Model:
    """The same model cut before its softmax, sharing weights: what attacks differentiate."""
    check_victim(model)
    return keras.Model(model.input, model.layers[-1].input, name=f"{model.name}_logits")


def ensemble(models: list[keras.Model]) -> keras.Model:
    """One victim whose logits are the mean of the members' logits: a transfer attack's source ensemble."""
    for model in models:
        check_victim(model, tuple(models[0].input_shape[1:]))
    inputs = keras.Input(shape=tuple(models[0].input_shape[1:]), name="input")
    logits = [logits_model(model)(inputs) for model in models]
    mean_logits = keras.layers.Average(name="logits")(logits)
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probs")(mean_logits), name="ensemble")
