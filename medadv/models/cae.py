"""DeepCustom's data generator networks (DGN): convolutional autoencoders that turn an input into an adversarial one
in a single forward pass ("Fast and Customizable Adversarial Data Generation Using Convolutional Autoencoders").

One generator is trained per class (`medadv.attacks.dgn`). The MNIST (28x28) and CIFAR (32x32) layouts are the
study's; any other shape (other image sizes, 1-D ECG) gets the MNIST layout with "same" padding throughout and a
final crop back to the input length, so the output always has the input's shape.

The output lies in the data range: a sigmoid (rescaled when the range is not [0, 1]) for finite ranges such as
images, and a linear output for unbounded ranges such as z-scored ECG, where a sigmoid could not reach the data.
"""

from __future__ import annotations

import math

import keras
from keras import layers

MNIST_SHAPE = (28, 28)
CIFAR_SHAPE = (32, 32)


def build_generator(
    input_shape: tuple[int, ...], clip_range: tuple[float, float] = (0.0, 1.0), name: str = "dgn"
) -> keras.Model:
    """A generator whose output has `input_shape` and lies in `clip_range`; the layout is chosen by the shape."""
    if len(input_shape) not in (2, 3) or any(size < 1 for size in input_shape):
        raise ValueError(f"a generator needs (length, channels) or (height, width, channels) inputs, got {input_shape}")
    low, high = clip_range
    if not low < high:
        raise ValueError(f"clip_range must be (low, high) with low < high, got {clip_range}")
    inputs = keras.Input(shape=input_shape, name="x")
    channels = input_shape[-1]
    if input_shape[:-1] == MNIST_SHAPE:
        decoded = _mnist_layout(inputs, channels)
    elif input_shape[:-1] == CIFAR_SHAPE:
        decoded = _cifar_layout(inputs, channels)
    else:
        decoded = _same_padding_layout(inputs, input_shape)
    return keras.Model(inputs, _to_data_range(decoded, low, high), name=name)


def _relu_bn(x: keras.KerasTensor) -> keras.KerasTensor:
    """The study's decoder order: ReLU, then batch normalisation."""
    return layers.BatchNormalization()(layers.ReLU()(x))


def _mnist_layout(inputs: keras.KerasTensor, channels: int) -> keras.KerasTensor:
    """28x28 -> 3x3x128 -> 28x28: conv 32 same, pool, conv 64 same, pool, conv 128 valid, pool same;
    then ConvT(64, 3, s2, valid), ConvT(32, 2, s2), ConvT(channels, 2, s2), each hidden one ReLU + BN."""
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)  # 14x14
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)  # 7x7
    x = layers.Conv2D(128, 3, padding="valid", activation="relu")(x)  # 5x5
    x = layers.MaxPooling2D(2, padding="same", name="encoded")(x)  # 3x3x128
    x = _relu_bn(layers.Conv2DTranspose(64, 3, strides=2, padding="valid")(x))  # 7x7
    x = _relu_bn(layers.Conv2DTranspose(32, 2, strides=2, padding="valid")(x))  # 14x14
    return layers.Conv2DTranspose(channels, 2, strides=2, padding="valid")(x)  # 28x28


def _cifar_layout(inputs: keras.KerasTensor, channels: int) -> keras.KerasTensor:
    """32x32 -> 5x5x128 -> 32x32: valid 3x3 convs 32 s1, 64 s2, 128 s1, 128 s2 (ReLU); then ConvT(128, 3, s2),
    ConvT(64, 4, s1), ConvT(32, 4, s2), each ReLU + BN, and ConvT(channels, 3, s1)."""
    x = layers.Conv2D(32, 3, activation="relu")(inputs)  # 30x30
    x = layers.Conv2D(64, 3, strides=2, activation="relu")(x)  # 14x14
    x = layers.Conv2D(128, 3, activation="relu")(x)  # 12x12
    x = layers.Conv2D(128, 3, strides=2, activation="relu", name="encoded")(x)  # 5x5x128
    x = _relu_bn(layers.Conv2DTranspose(128, 3, strides=2)(x))  # 11x11
    x = _relu_bn(layers.Conv2DTranspose(64, 4, strides=1)(x))  # 14x14
    x = _relu_bn(layers.Conv2DTranspose(32, 4, strides=2)(x))  # 30x30
    return layers.Conv2DTranspose(channels, 3, strides=1)(x)  # 32x32


def _same_padding_layout(inputs: keras.KerasTensor, input_shape: tuple[int, ...]) -> keras.KerasTensor:
    """The MNIST layout for any size (Conv1D for 1-D signals): three conv + pool stages divide each side by 8
    (rounded up), three transposed convs multiply it by 8, and a crop removes the rounding."""
    one_d = len(input_shape) == 2
    conv = layers.Conv1D if one_d else layers.Conv2D
    pool = layers.MaxPooling1D if one_d else layers.MaxPooling2D
    conv_t = layers.Conv1DTranspose if one_d else layers.Conv2DTranspose
    x = inputs
    for filters in (32, 64, 128):
        x = conv(filters, 3, padding="same", activation="relu")(x)
        x = pool(2, padding="same")(x)
    x = _relu_bn(conv_t(64, 3, strides=2, padding="same")(x))
    x = _relu_bn(conv_t(32, 2, strides=2, padding="same")(x))
    x = conv_t(input_shape[-1], 2, strides=2, padding="same")(x)
    extra = [8 * math.ceil(size / 8) - size for size in input_shape[:-1]]
    if one_d:
        return layers.Cropping1D((0, extra[0]))(x)
    return layers.Cropping2D(((0, extra[0]), (0, extra[1])))(x)


def _to_data_range(x: keras.KerasTensor, low: float, high: float) -> keras.KerasTensor:
    if not (math.isfinite(low) and math.isfinite(high)):
        return layers.Activation("linear", name="generated")(x)
    if (low, high) == (0.0, 1.0):
        return layers.Activation("sigmoid", name="generated")(x)
    x = layers.Activation("sigmoid")(x)
    return layers.Rescaling(high - low, offset=low, name="generated")(x)
