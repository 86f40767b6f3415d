"""Image victims: transfer-learning heads for chest X-ray / OCT, a small CNN for 28x28 scans,
and the DeepCustom targets for MNIST and CIFAR-10. Inputs are in [0, 1]."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import keras
from keras import layers

from medadv.models.head import classifier_head


def small_cnn(input_shape: tuple[int, ...] = (28, 28, 1), num_classes: int = 2, *, width: int = 32) -> keras.Model:
    """Two conv/pool stages and a dense layer: trains in seconds on MedMNIST-sized images."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="last_conv")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(4 * width, activation="relu")(x)
    x = layers.Dropout(0.25)(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="small_cnn")


def mnist_dense(input_shape: tuple[int, ...] = (28, 28, 1), num_classes: int = 10) -> keras.Model:
    """DeepCustom's MNIST target: five dense layers of 30 ReLU units."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Flatten()(inputs)
    for _ in range(5):
        x = layers.Dense(30, activation="relu")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="mnist_dense")


def cifar_cnn(input_shape: tuple[int, ...] = (32, 32, 3), num_classes: int = 10) -> keras.Model:
    """DeepCustom's CIFAR-10 target (`cifar_keras.json`): three valid 3x3 ReLU convs (32, 64, 64), 2x2 max-pooling
    after the first two, a 64-unit ReLU dense layer: 122,570 parameters."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cifar_cnn")


def cifar_cnn_wide(input_shape: tuple[int, ...] = (32, 32, 3), num_classes: int = 10) -> keras.Model:
    """medadv's earlier CIFAR-10 CNN: three same-padded convs (32, 64, 128) each max-pooled, a 128-unit dense layer
    (356,810 parameters)."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cifar_cnn_wide")


def _transfer(
    application: Callable[..., keras.Model],
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    pretrained: bool,
    scale: float,
    offset: float,
) -> keras.Model:
    """An ImageNet backbone with a new head; grey images are repeated to 3 channels.

    `scale`/`offset` map [0, 1] inputs to the backbone's expected range with a plain Rescaling layer
    (no Lambda, so the model loads with safe_mode=True).
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if input_shape[-1] == 1:
        x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    x = layers.Rescaling(scale, offset=offset, name="to_backbone_range")(x)
    # input_tensor= puts the backbone's layers into this graph (not a nested model), so Grad-CAM
    # can find its last convolution.
    weights = "imagenet" if pretrained else None
    try:
        backbone = application(include_top=False, weights=weights, input_tensor=x, pooling="avg")
    except Exception as error:  # no network here: keep the architecture, say so loudly
        if weights is None:
            raise
        warnings.warn(
            f"{name}: ImageNet weights unavailable ({type(error).__name__}: {error}); using random initialisation",
            stacklevel=3,
        )
        backbone = application(include_top=False, weights=None, input_tensor=x, pooling="avg")
    return keras.Model(inputs, classifier_head(backbone.output, num_classes), name=name)


def resnet50(
    input_shape: tuple[int, ...] = (224, 224, 3), num_classes: int = 2, *, pretrained: bool = True
) -> keras.Model:
    return _transfer(keras.applications.ResNet50, "resnet50", input_shape, num_classes, pretrained, 255.0, -127.5)


def resnet50v2(
    input_shape: tuple[int, ...] = (224, 224, 3), num_classes: int = 2, *, pretrained: bool = True
) -> keras.Model:
    """Grad-Attacks' backbone (its Grad-CAM layer: `conv5_block3_out`); inputs in [-1, 1] as ResNetV2 expects."""
    return _transfer(keras.applications.ResNet50V2, "resnet50v2", input_shape, num_classes, pretrained, 2.0, -1.0)


def vgg16(
    input_shape: tuple[int, ...] = (224, 224, 3), num_classes: int = 2, *, pretrained: bool = True
) -> keras.Model:
    return _transfer(keras.applications.VGG16, "vgg16", input_shape, num_classes, pretrained, 255.0, -127.5)


def inception_v3(
    input_shape: tuple[int, ...] = (299, 299, 3), num_classes: int = 2, *, pretrained: bool = True
) -> keras.Model:
    return _transfer(keras.applications.InceptionV3, "inception_v3", input_shape, num_classes, pretrained, 2.0, -1.0)
