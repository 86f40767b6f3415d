"""The ECGadv victim: the CinC-2017 1-D residual network (Andreotti et al. 2017, after Hannun et al.)."""

from __future__ import annotations

import keras
from keras import layers

from medadv.models.head import classifier_head


def ecg_resnet(
    input_shape: tuple[int, ...] = (9000, 1),
    num_classes: int = 4,
    *,
    num_blocks: int = 16,
    base_filters: int = 64,
    kernel_size: int = 16,
    dropout: float = 0.2,
) -> keras.Model:
    """1 conv + `num_blocks` pre-activation residual blocks of 2 convs + a dense layer: 34 layers by default.

    Kernel 16; every other block halves the length by max-pooling (strided in the main path); the
    width grows by `base_filters` every 4 blocks. `num_blocks=4, base_filters=8` trains in seconds.
    BatchNorm momentum 0.9 (not Keras' 0.99): CinC-sized sets give few steps per run, and the moving
    statistics must settle within them for inference to match training.
    """
    inputs = keras.Input(shape=input_shape, name="ecg")
    x = layers.Conv1D(base_filters, kernel_size, padding="same", name="conv_in")(inputs)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    for block in range(num_blocks):
        filters = base_filters * (1 + block // 4)
        subsample = block % 2 == 1
        shortcut = layers.MaxPooling1D(2, padding="same")(x) if subsample else x
        if shortcut.shape[-1] != filters:
            shortcut = layers.Conv1D(filters, 1, padding="same")(shortcut)
        # The first block is not pre-activated: its input already went through BN + ReLU.
        y = x if block == 0 else layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
        y = layers.Conv1D(filters, kernel_size, strides=2 if subsample else 1, padding="same")(y)
        y = layers.BatchNormalization(momentum=0.9)(y)
        y = layers.ReLU()(y)
        y = layers.Dropout(dropout)(y)
        y = layers.Conv1D(filters, kernel_size, padding="same")(y)
        x = layers.Add()([shortcut, y])
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="ecg_resnet")
