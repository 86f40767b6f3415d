"""The ending every victim shares, so the logits are always one layer before the output."""

import keras


def classifier_head(features: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    """A `logits` Dense layer followed by a `probs` softmax Activation."""
    logits = keras.layers.Dense(num_classes, name="logits")(features)
    return keras.layers.Activation("softmax", name="probs")(logits)
