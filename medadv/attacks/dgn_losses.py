"""DeepCustom's generator losses (lrp, nce, suspiciousness) and what they read from the victim: LRP relevance of its
inputs and Tarantula suspiciousness of its ReLU units.

A loss is a small object built once per class from the victim and that class's samples, then called as
`loss(x, g)` on a batch of clean inputs `x` and generator outputs `g = G(x)`; the generator minimises it. LRP and
the hit spectra walk the victim layer by layer, so they need a chain of Dense / Conv / pooling / Flatten / ReLU /
Dropout layers (DeepCustom's targets, `small_cnn`); residual victims such as the ECG ResNet take the `nce` loss,
or the `lrp` loss with gradient x input relevance.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from medadv.attacks.base import AttackError
from medadv.models import check_victim, logits_model

RELEVANCE_RULES = ("epsilon", "gradient_x_input")

_LINEAR = (layers.Dense, layers.Conv1D, layers.Conv2D)
_POOLING = (
    layers.MaxPooling1D,
    layers.MaxPooling2D,
    layers.AveragePooling1D,
    layers.AveragePooling2D,
    layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D,
    layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D,
)
_RESHAPE = (layers.Flatten, layers.Reshape)
_PASS_THROUGH = (layers.ReLU, layers.Activation, layers.Dropout)  # relevance passes these unchanged


# -- the victim as a chain of layers ----------------------------------------------------------------------------


def _activation(layer: keras.layers.Layer) -> str:
    return str(layer.get_config().get("activation", "linear"))


def _is_relu(layer: keras.layers.Layer) -> bool:
    """Whether `layer`'s outputs are ReLU units (fused into a Dense/Conv, or a ReLU / Activation("relu") layer)."""
    return isinstance(layer, layers.ReLU) or (
        isinstance(layer, (*_LINEAR, layers.Activation)) and _activation(layer) == "relu"
    )


def chain_layers(victim: keras.Model) -> list[keras.layers.Layer]:
    """The victim's layers from its input to its logits, checked to be a chain that LRP and the spectra can walk."""
    check_victim(victim)
    chain = [layer for layer in victim.layers[:-1] if not isinstance(layer, layers.InputLayer)]
    for layer in chain:
        supported = isinstance(layer, (*_LINEAR, *_POOLING, *_RESHAPE, *_PASS_THROUGH))
        if isinstance(layer, (*_LINEAR, layers.Activation)):
            supported = _activation(layer) in ("relu", "linear")
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            supported = False
        if not supported:
            raise AttackError(
                f"layer {layer.name!r} ({type(layer).__name__}) of {victim.name!r} is not supported by LRP and the "
                "hit spectra (a chain of Dense/Conv/pooling/Flatten/ReLU/Dropout, channels last); use the nce loss "
                "or relevance_rule='gradient_x_input'"
            )
    return chain


def _linear_part(layer: keras.layers.Layer, a: tf.Tensor) -> tf.Tensor:
    """A Dense or Conv layer's pre-activation z = W a + b (its fused activation left out)."""
    z = tf.matmul(a, layer.kernel) if isinstance(layer, layers.Dense) else layer.convolution_op(a, layer.kernel)
    return z + layer.bias if layer.use_bias else z


def _forward(chain: list[keras.layers.Layer], x: tf.Tensor) -> tuple[list[tf.Tensor], list[tf.Tensor], tf.Tensor]:
    """Each layer's input, the pre-activations of every ReLU layer (in order), and the logits."""
    inputs: list[tf.Tensor] = []
    relu_pre: list[tf.Tensor] = []
    a = x
    for layer in chain:
        inputs.append(a)
        if isinstance(layer, _LINEAR):
            a = _linear_part(layer, a)
            if _is_relu(layer):
                relu_pre.append(a)
                a = tf.nn.relu(a)
        else:
            if _is_relu(layer):
                relu_pre.append(a)
            a = layer(a, training=False)
    return inputs, relu_pre, a


def relu_layer_names(chain: list[keras.layers.Layer]) -> tuple[str, ...]:
    """Names of the layers whose outputs are ReLU units, in the order `_forward` returns their pre-activations."""
    return tuple(layer.name for layer in chain if _is_relu(layer))


# -- LRP relevance ---------------------------------------------------------------------------------------------


def _lrp_step(layer: keras.layers.Layer, a: tf.Tensor, relevance: tf.Tensor, epsilon: float) -> tf.Tensor:
    """Relevance of a layer's inputs from that of its outputs by the LRP epsilon rule (Bach et al. 2015, eq. 58):
    R_j = a_j * sum_k w_jk R_k / (z_k + epsilon * sign(z_k)), computed with Montavon et al. (2019)'s gradient
    trick as a * grad(z . s), s = R / (z + epsilon * sign(z)); max-pooling thereby passes relevance to the winner."""
    if isinstance(layer, _RESHAPE):
        return tf.reshape(relevance, tf.shape(a))
    if isinstance(layer, _PASS_THROUGH):
        return relevance
    with tf.GradientTape() as tape:
        tape.watch(a)
        z = _linear_part(layer, a) if isinstance(layer, _LINEAR) else layer(a)
    s = relevance / (z + epsilon * tf.where(z >= 0, 1.0, -1.0))
    return a * tape.gradient(z, a, output_gradients=s)


def lrp_epsilon(
    victim: keras.Model, x: np.ndarray, class_index: int, epsilon: float = 1e-2, batch_size: int = 256
) -> np.ndarray:
    """Per-sample LRP-epsilon relevance of every input element for the logit of `class_index`."""
    chain = chain_layers(victim)
    parts = []
    for start in range(0, len(x), batch_size):
        inputs, _, logits = _forward(chain, tf.convert_to_tensor(x[start : start + batch_size], tf.float32))
        relevance = logits * tf.one_hot(class_index, logits.shape[-1])
        for layer, a in zip(reversed(chain), reversed(inputs), strict=True):
            relevance = _lrp_step(layer, a, relevance, epsilon)
        parts.append(np.asarray(relevance))
    return np.concatenate(parts)


def gradient_x_input(victim: keras.Model, x: np.ndarray, class_index: int, batch_size: int = 256) -> np.ndarray:
    """Per-sample gradient x input relevance (Shrikumar et al. 2016) for the logit of `class_index`: works for
    any victim, and equals LRP-0 on a ReLU network without biases."""
    logits = logits_model(victim)
    parts = []
    for start in range(0, len(x), batch_size):
        batch = tf.convert_to_tensor(x[start : start + batch_size], tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(batch)
            score = logits(batch, training=False)[:, class_index]
        parts.append(np.asarray(batch * tape.gradient(score, batch)))
    return np.concatenate(parts)


@dataclass(frozen=True)
class Relevance:
    """A class's relevance map (the mean over its samples) and its `k` most relevant input elements: the set R of
    the lrp loss, as flat indices into one sample, most relevant first."""

    class_index: int
    rule: str
    map: np.ndarray
    top_k: np.ndarray


def class_relevance(
    victim: keras.Model,
    x_class: np.ndarray,
    class_index: int,
    k: int,
    *,
    rule: str = "epsilon",
    epsilon: float = 1e-2,
    batch_size: int = 256,
) -> Relevance:
    """Relevance for `class_index` averaged over that class's samples `x_class`, and its top `k` elements."""
    size = int(np.prod(x_class.shape[1:]))
    if rule not in RELEVANCE_RULES:
        raise AttackError(f"unknown relevance rule {rule!r}; choose one of {', '.join(RELEVANCE_RULES)}")
    if not 0 < k < size:
        raise AttackError(f"k must be between 1 and {size - 1} (the input has {size} elements), got {k}")
    if len(x_class) == 0:
        raise AttackError(f"no samples of class {class_index} to compute its relevance on")
    if rule == "epsilon":
        scores = lrp_epsilon(victim, x_class, class_index, epsilon, batch_size)
    else:
        scores = gradient_x_input(victim, x_class, class_index, batch_size)
    mean = scores.mean(axis=0, dtype=np.float64).astype(np.float32)
    top_k = np.argsort(-mean.ravel(), kind="stable")[:k]
    return Relevance(class_index, rule, mean, top_k.astype(np.int64))


# -- Tarantula suspiciousness of ReLU units ---------------------------------------------------------------------


def tarantula(ncf: np.ndarray, ncs: np.ndarray, nf: int, ns: int) -> np.ndarray:
    """Tarantula suspiciousness (Jones & Harrold 2005) from hit spectra: (NCF/NF) / (NCF/NF + NCS/NS).

    `ncf`/`ncs`: how many failing (misclassified) / passing (correct) samples activated each unit; `nf`/`ns`:
    how many failing / passing samples there were. Without failing or without passing samples every unit
    scores 0, as in DeepCustom's `suspicious_detection/Neuron.py`; so does a unit that no sample activated.
    """
    if not nf or not ns:
        return np.zeros(np.shape(ncf))
    fail_ratio, pass_ratio = ncf / nf, ncs / ns
    total = fail_ratio + pass_ratio
    return np.divide(fail_ratio, total, out=np.zeros(np.shape(total)), where=total > 0)


@dataclass(frozen=True)
class Suspiciousness:
    """Tarantula scores of the victim's ReLU layers over one class's samples, and the suspicious units.

    Dense units score one per neuron and the top k are chosen across all dense layers together; convolutional
    units score one per feature map (the mean of its positions' scores) and the top k are chosen per layer, as
    in DeepCustom's code (after DeepFault, Eniser et al. 2019).
    """

    spectra_class: int
    layer_names: tuple[str, ...]
    scores: tuple[np.ndarray, ...]  # per ReLU layer: one score per neuron / feature map
    suspicious: tuple[np.ndarray, ...]  # per ReLU layer: indices of its suspicious units, most suspicious first
    num_failing: int
    num_passing: int


def suspiciousness(
    victim: keras.Model, x: np.ndarray, spectra_class: int, k: int, batch_size: int = 256
) -> Suspiciousness:
    """Hit spectra (active = ReLU output > 0) of the victim's ReLU units over samples `x` of `spectra_class`,
    split by whether the victim classifies them correctly, and the top `k` suspicious units."""
    chain = chain_layers(victim)
    if len(x) == 0:
        raise AttackError(f"no samples of class {spectra_class} to compute the hit spectra on")
    if k < 1:
        raise AttackError(f"k must be >= 1, got {k}")
    ncf: list[np.ndarray] = []  # per ReLU layer: failing samples that activated each unit
    ncs: list[np.ndarray] = []  # per ReLU layer: passing samples that activated each unit
    nf = ns = 0
    for start in range(0, len(x), batch_size):
        _, relu_pre, logits = _forward(chain, tf.convert_to_tensor(x[start : start + batch_size], tf.float32))
        correct = np.argmax(np.asarray(logits), axis=1) == spectra_class
        nf, ns = nf + int((~correct).sum()), ns + int(correct.sum())
        active = [np.asarray(z) > 0 for z in relu_pre]
        fail_hits = [hits[~correct].sum(axis=0) for hits in active]
        pass_hits = [hits[correct].sum(axis=0) for hits in active]
        ncf = fail_hits if not ncf else [a + b for a, b in zip(ncf, fail_hits, strict=True)]
        ncs = pass_hits if not ncs else [a + b for a, b in zip(ncs, pass_hits, strict=True)]
    scores, is_conv = [], []
    for layer_ncf, layer_ncs in zip(ncf, ncs, strict=True):
        score = tarantula(layer_ncf, layer_ncs, nf, ns)
        is_conv.append(score.ndim > 1)
        scores.append(score.reshape(-1, score.shape[-1]).mean(axis=0) if score.ndim > 1 else score)
    suspicious = [
        _top(score, k) if conv else np.zeros(0, np.int64) for score, conv in zip(scores, is_conv, strict=True)
    ]
    dense = [i for i, conv in enumerate(is_conv) if not conv]
    if dense:
        pooled = np.concatenate([scores[i] for i in dense])
        owner = np.concatenate([np.full(len(scores[i]), i) for i in dense])
        offset = np.concatenate([np.arange(len(scores[i])) for i in dense])
        chosen = _top(pooled, k)
        for i in dense:
            suspicious[i] = offset[chosen[owner[chosen] == i]]
    return Suspiciousness(spectra_class, relu_layer_names(chain), tuple(scores), tuple(suspicious), nf, ns)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` highest scores, highest first (ties by index)."""
    return np.argsort(-scores, kind="stable")[:k].astype(np.int64)


# -- the losses ---------------------------------------------------------------------------------------------------


class GeneratorLoss(abc.ABC):
    """A generator's training objective for one class, L(x, g) with g = G(x); the generator minimises it."""

    @abc.abstractmethod
    def __call__(self, x: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
        """The batch's loss, a scalar."""

    def details(self) -> dict[str, np.ndarray]:
        """What the loss was built from, to record with the generator (relevance map, suspicious units)."""
        return {}


def _over_units(values: tf.Tensor, mask: tf.Tensor, average: bool) -> tf.Tensor:
    """Per sample, the sum (or, with `average`, the mean) of `values` over the units that `mask` selects."""
    chosen = tf.reduce_sum(values * mask, axis=-1)
    return chosen / tf.maximum(tf.reduce_sum(mask), 1.0) if average else chosen


def _flat(t: tf.Tensor) -> tf.Tensor:
    return tf.reshape(t, (tf.shape(t)[0], -1))


class LRPLoss(GeneratorLoss):
    """DeepCustom's lrp loss: move the class's most relevant elements R down by eps and all others up by eps,
    L = alpha * mean((g_R - (x_R - eps))^2) + (1 - alpha) * mean((g_notR - (x_notR + eps))^2)."""

    def __init__(self, relevance: Relevance, eps: float, alpha: float) -> None:
        self.relevance = relevance
        self.eps = eps
        self.alpha = alpha
        self.relevant = tf.constant(relevance.top_k)
        others = np.setdiff1d(np.arange(relevance.map.size), relevance.top_k)
        self.others = tf.constant(others)
        shift = np.full(relevance.map.size, eps, dtype=np.float32)
        shift[relevance.top_k] = -eps
        self.shift = tf.constant(shift)

    def target(self, x: tf.Tensor) -> tf.Tensor:
        """Where the loss pulls G(x): x - eps on R, x + eps elsewhere (flattened per sample)."""
        return _flat(x) + self.shift

    def __call__(self, x: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
        squared = tf.square(_flat(g) - self.target(x))
        relevant = tf.reduce_mean(tf.gather(squared, self.relevant, axis=1))
        others = tf.reduce_mean(tf.gather(squared, self.others, axis=1))
        return self.alpha * relevant + (1.0 - self.alpha) * others

    def details(self) -> dict[str, np.ndarray]:
        return {"relevance_map": self.relevance.map, "relevant_pixels": self.relevance.top_k}


class NCELoss(GeneratorLoss):
    """DeepCustom's negative cross-entropy loss: stay close to x while pushing the victim away from the class,
    L = mean((g - x)^2) - CE(y, softmax(Z(g))), Z the victim's logits."""

    def __init__(self, victim: keras.Model, class_index: int) -> None:
        self.logits = logits_model(victim)
        self.class_index = class_index

    def __call__(self, x: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
        labels = tf.fill((tf.shape(g)[0],), self.class_index)
        cross_entropy = keras.losses.sparse_categorical_crossentropy(
            labels, self.logits(g, training=False), from_logits=True
        )
        return tf.reduce_mean(tf.square(g - x)) - tf.reduce_mean(cross_entropy)


SUSPICIOUSNESS_FORMS = ("study", "uniform")


class SuspiciousnessLoss(GeneratorLoss):
    """DeepCustom's suspiciousness loss: raise the suspicious units' pre-activations z, keep the others, stay close,
    L = alpha * custom + (1 - alpha) * mean((g - x)^2). Per sample and layer, a dense unit's change is z(x) - z(g)
    (|z(g) - z(x)| for the other units), a feature map's the mean of that over its positions.

    `form="study"`: on a victim with convolutions, `Suspicious/RobustCIFAR/CustomLosses.py`: custom =
    0.5 Cs + 0.01 Cn + 0.5 Ds + 0.01 Dn, with Cs / Cn the mean over the suspicious / other maps of each conv
    layer, summed over layers and over the batch, Ds the sum over the suspicious dense units summed over the
    batch, Dn the sum over the other dense units averaged over the batch; on a dense victim,
    `Suspicious/RobustMNIST/CustomLosses.py`: custom = 0.5 Ds + 0.5 Dn, both averaged over the batch.
    `form="uniform"` (medadv's earlier one) applies that dense formula to every victim, a map counting as a unit.
    """

    def __init__(self, victim: keras.Model, units: Suspiciousness, alpha: float, form: str = "study") -> None:
        self.chain = chain_layers(victim)
        self.units = units
        self.alpha = alpha
        relu_layers = [layer for layer in self.chain if _is_relu(layer)]
        self.conv_form = form == "study" and any(len(layer.output.shape) > 2 for layer in relu_layers)
        self.masks: list[tf.Tensor] = []
        for score, chosen in zip(units.scores, units.suspicious, strict=True):
            mask = np.zeros(len(score), dtype=np.float32)
            mask[chosen] = 1.0
            self.masks.append(tf.constant(mask))

    def __call__(self, x: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
        _, z_clean, _ = _forward(self.chain, x)
        _, z_generated, _ = _forward(self.chain, g)
        # per sample, keyed by whether the layer is convolutional: suspicious units lowered, other units changed
        lowered = {True: tf.zeros(tf.shape(x)[0]), False: tf.zeros(tf.shape(x)[0])}
        changed = dict(lowered)
        for zx, zg, mask in zip(z_clean, z_generated, self.masks, strict=True):
            positions = list(range(1, len(zx.shape) - 1))  # a feature map's positions; none for dense units
            conv = bool(positions)
            diff = zx - zg
            mean_diff = tf.reduce_mean(diff, axis=positions) if conv else diff
            mean_change = tf.reduce_mean(tf.abs(diff), axis=positions) if conv else tf.abs(diff)
            average = conv and self.conv_form  # the CIFAR loss averages over a layer's chosen maps
            lowered[conv] += _over_units(mean_diff, mask, average)
            changed[conv] += _over_units(mean_change, 1.0 - mask, average)
        if self.conv_form:
            total = tf.reduce_sum
            custom = (
                0.5 * total(lowered[True]) + 0.01 * total(changed[True])
                + 0.5 * total(lowered[False]) + 0.01 * tf.reduce_mean(changed[False])
            )  # fmt: skip
        else:
            custom = 0.5 * tf.reduce_mean(lowered[True] + lowered[False])
            custom += 0.5 * tf.reduce_mean(changed[True] + changed[False])
        return self.alpha * custom + (1.0 - self.alpha) * tf.reduce_mean(tf.square(g - x))

    def details(self) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for name, score, chosen in zip(self.units.layer_names, self.units.scores, self.units.suspicious, strict=True):
            found[f"tarantula_{name}"] = score
            found[f"suspicious_{name}"] = chosen
        return found
