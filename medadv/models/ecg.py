"""The ECGadv victim: Andreotti et al. (2017)'s CinC-2017 ResNet (after Rajpurkar/Hannun et al.), and medadv's
wider variant of it."""

from __future__ import annotations

from collections import Counter

import keras
from keras import layers

from medadv.models.head import classifier_head


class _Keras2Names:
    """Keras 2's automatic layer names in creation order (`conv1d_1`, `conv1d_2`, ...): the names in a model
    built first in a fresh Keras 2 session, as Andreotti's released `ResNet_30s_34lay_16conv.hdf5` was, so that
    its weights load by name (`model.load_weights(path, by_name=True)`)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, prefix: str) -> str:
        self.counts[prefix] += 1
        return f"{prefix}_{self.counts[prefix]}"


def _bn_relu_dropout(x: keras.KerasTensor, dropout: float, name: _Keras2Names) -> keras.KerasTensor:
    x = layers.BatchNormalization(name=name("batch_normalization"))(x)
    x = layers.Activation("relu", name=name("activation"))(x)
    return layers.Dropout(dropout, name=name("dropout"))(x)


def _conv(x: keras.KerasTensor, filters: int, kernel_size: int, name: _Keras2Names) -> keras.KerasTensor:
    return layers.Conv1D(filters, kernel_size, padding="same", kernel_initializer="he_normal", name=name("conv1d"))(x)


def _andreotti_block(
    x: keras.KerasTensor, block: int, filters: int, kernel_size: int, dropout: float, name: _Keras2Names
) -> keras.KerasTensor:
    """One residual block of `train_model.py`: [BN, ReLU, dropout,] conv, BN, ReLU, dropout, conv, the even blocks
    max-pooled by 2 in both branches; a 1x1 conv widens the shortcut. Layers are created in his order."""
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv1D(filters, 1, name=name("conv1d"))(x)
    # The first block's input already went through BN + ReLU.
    y = x if block == 0 else _bn_relu_dropout(x, dropout, name)
    y = _conv(y, filters, kernel_size, name)
    y = _conv(_bn_relu_dropout(y, dropout, name), filters, kernel_size, name)
    if block % 2 == 0:
        y = layers.MaxPooling1D(2, name=name("max_pooling1d"))(y)
        shortcut = layers.MaxPooling1D(2, name=name("max_pooling1d"))(shortcut)
    return layers.Add(name=name("add"))([y, shortcut])


def ecg_resnet(
    input_shape: tuple[int, ...] = (9000, 1),
    num_classes: int = 4,
    *,
    num_blocks: int = 16,
    base_filters: int = 16,
    kernel_size: int = 16,
    dropout: float = 0.5,
) -> keras.Model:
    """Andreotti's released CinC-2017 network (fernandoandreotti/cinc-challenge2017, `deeplearn-approach/`), which
    ECGadv attacked: conv, BN, ReLU, then `num_blocks` residual blocks of two kernel-16 convs with dropout 0.5
    before each, max-pooling in blocks 0, 2, 4, ..., `base_filters` x k filters with k growing by 1 in blocks
    5, 9, 13, then BN, ReLU, Flatten and the dense logits: 34 weight layers and 843,780 parameters at 9000 x 1
    and 4 classes. Layer names are his (Keras 2's); the dense layer `dense_1` gives the logits, and the softmax
    he fused into it is the `probs` layer. `num_blocks=2, base_filters=8` trains in seconds.
    """
    name = _Keras2Names()
    inputs = keras.Input(shape=input_shape, name="input")
    x = _conv(inputs, base_filters, kernel_size, name)
    x = layers.BatchNormalization(name=name("batch_normalization"))(x)
    x = layers.Activation("relu", name=name("activation"))(x)
    for block in range(num_blocks):
        filters = base_filters * (1 + max(block - 1, 0) // 4)
        x = _andreotti_block(x, block, filters, kernel_size, dropout, name)
    x = layers.BatchNormalization(name=name("batch_normalization"))(x)
    x = layers.Activation("relu", name=name("activation"))(x)
    x = layers.Flatten(name=name("flatten"))(x)
    logits = layers.Dense(num_classes, name=name("dense"))(x)
    return keras.Model(inputs, layers.Activation("softmax", name="probs")(logits), name="ecg_resnet")


def ecg_resnet_wide(
    input_shape: tuple[int, ...] = (9000, 1),
    num_classes: int = 4,
    *,
    num_blocks: int = 16,
    base_filters: int = 64,
    kernel_size: int = 16,
    dropout: float = 0.2,
) -> keras.Model:
    """medadv's earlier ECG ResNet: 1 conv + `num_blocks` pre-activation residual blocks of 2 convs + a dense layer.

    Wider than Andreotti's (64 x k filters, 15.2 M parameters at full size), one dropout per block, strided
    subsampling in the odd blocks, widening every 4 blocks, global average pooling before the logits (so it takes
    any length). BatchNorm momentum 0.9 (not Keras' 0.99): CinC-sized sets give few steps per run, and the moving
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
    return keras.Model(inputs, classifier_head(x, num_classes), name="ecg_resnet_wide")
