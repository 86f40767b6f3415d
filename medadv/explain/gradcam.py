"""Class activation maps of a victim's predictions through tf-keras-vis, batched, for images and ECGs.

Grad-CAM (Selvaraju et al., ICCV 2017, eq. 1-2), Grad-CAM++ (Chattopadhay et al., WACV 2018, eq. 19)
and Score-CAM (Wang et al., CVPRW 2020, eq. 6-7) all weight the feature maps of one layer and sum
them over channels, so they share everything here but the tf-keras-vis class. tf-keras-vis handles
Conv1D layers as well as Conv2D ones (it averages over every axis between batch and channels), so a
1-D ECG model gets a heatmap along time from the same code: (n, L) for inputs (n, L, 1), (n, H, W)
for inputs (n, H, W, C), bilinearly resized to the input and min-max normalised per map to [0, 1].

tf-keras-vis runs eagerly and resizes with SciPy, so a map costs several forward+backward passes.
`engine="compiled"` computes the same Grad-CAM in one `tf.function` per batch (less than one such pass)
and matches tf-keras-vis to float tolerance; it implements Grad-CAM only.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

from medadv.errors import MedadvError
from medadv.models import check_victim

METHODS: dict[str, type[Gradcam] | type[GradcamPlusPlus] | type[Scorecam]] = {
    "gradcam": Gradcam,
    "gradcam++": GradcamPlusPlus,
    "scorecam": Scorecam,
}
ENGINES = ("tf-keras-vis", "compiled")
EXPLAIN_CLASSES = ("clean", "adversarial", "true", "own")
CONV_LAYERS = (keras.layers.Conv1D, keras.layers.Conv2D)
# Studies' Grad-CAM layers for medadv's builders (by model name), where the last convolution is not it:
# Grad-Attacks explained ResNet50V2 at its last residual block's output, before post_bn.
STUDY_LAYERS = {"resnet50v2": "conv5_block3_out"}


class ExplainError(MedadvError):
    """A layer, method, class or input that cannot be explained; raised before any compute."""


@dataclass(frozen=True)
class Explanation:
    """One heatmap per sample, and what produced them (recorded with the maps)."""

    maps: np.ndarray  # float32 in [0, 1], (n, L) for ECGs or (n, H, W) for images
    layer: str
    method: str
    class_index: np.ndarray  # int64 (n,): the class each map explains


def default_layer(model: keras.Model) -> str:
    """The layer a study explained for this builder (`STUDY_LAYERS`), otherwise the last convolution."""
    study_layer = STUDY_LAYERS.get(str(model.name))
    if study_layer in {layer.name for layer in model.layers}:
        return str(study_layer)
    return last_conv_layer(model)


def last_conv_layer(model: keras.Model) -> str:
    """The name of the model's last Conv1D/Conv2D layer: Grad-CAM's usual choice (Selvaraju et al., sec. 3).

    Backbones built with `input_tensor=` (as medadv.models does) put their layers into the model's own
    graph, so their convolutions are found too; layers inside a nested sub-model are not reachable.
    """
    for layer in reversed(model.layers):
        if isinstance(layer, CONV_LAYERS):
            return str(layer.name)
    raise ExplainError(f"model {model.name!r} has no Conv1D/Conv2D layer; pass layer= the name of a layer to explain")


def target_classes(
    explain_class: str, *, y_true: np.ndarray, y_clean: np.ndarray, y_adv: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The class the clean map and the adversarial map of each sample explain.

    `clean`, `adversarial` and `true` give both maps one class (the clean prediction, the adversarial
    prediction or the label), so a difference between them is a change of evidence for one class;
    `own` explains each image's own prediction, as Grad-Attacks did (without an attack: the clean one).
    """
    if explain_class not in EXPLAIN_CLASSES:
        raise ExplainError(f"unknown explain_class {explain_class!r}; choose one of {', '.join(EXPLAIN_CLASSES)}")
    if explain_class == "adversarial" and y_adv is None:
        raise ExplainError("explain_class 'adversarial' needs adversarial predictions (an attack run)")
    if explain_class == "own":
        return np.asarray(y_clean, dtype=np.int64), np.asarray(y_clean if y_adv is None else y_adv, dtype=np.int64)
    chosen = np.asarray({"clean": y_clean, "adversarial": y_adv, "true": y_true}[explain_class], dtype=np.int64)
    return chosen, chosen


class Explainer:
    """A victim prepared once for one method, layer and engine, then called on clean and adversarial batches.

    Maps explain logits, as Grad-CAM prescribes: the tf-keras-vis engine clones the model once with its
    softmax replaced by a linear activation (`ReplaceToLinear`), the compiled engine reads the softmax's
    input; the victim itself is left untouched either way.
    """

    def __init__(
        self, model: keras.Model, *, method: str = "gradcam", layer: str | None = None, engine: str = "tf-keras-vis"
    ) -> None:
        _check_method(method, engine)
        check_victim(model)
        self.layer = default_layer(model) if layer is None else _check_layer(model, layer)
        self.method = method
        self.engine = engine
        self.model = model
        self._compiled = CompiledGradcam(model, self.layer) if engine == "compiled" else None
        self._visualizer: Any = None
        if self._compiled is None:
            self._visualizer = METHODS[method](model, model_modifier=ReplaceToLinear(), clone=True)
        if method == "scorecam":  # Score-CAM predicts on masked inputs: keep Keras' progress bar quiet
            self._visualizer.model.predict = functools.partial(self._visualizer.model.predict, verbose=0)

    def __call__(
        self, x: np.ndarray, class_index: np.ndarray | Sequence[int] | int, *, batch_size: int = 32
    ) -> Explanation:
        """Maps of `class_index` for `x`, `batch_size` samples per forward/backward pass.

        Score-CAM runs one forward pass per channel of the layer per sample; there `batch_size`
        counts masked inputs per pass, so batch_size // channels samples are explained at a time.
        """
        classes = _check_request(self.model, x, class_index, batch_size)
        step = batch_size
        if self.method == "scorecam":
            step = max(1, batch_size // int(self.model.get_layer(self.layer).output.shape[-1]))
        maps = np.empty((len(x), *x.shape[1:-1]), dtype=np.float32)
        for start in range(0, len(x), step):
            maps[start : start + step] = self._maps(x[start : start + step], classes[start : start + step], batch_size)
        return Explanation(maps=maps, layer=self.layer, method=self.method, class_index=classes)

    def _maps(self, x: np.ndarray, classes: np.ndarray, batch_size: int) -> np.ndarray:
        if self._compiled is not None:
            return self._compiled(x, classes)
        options = {"batch_size": batch_size} if self.method == "scorecam" else {}
        with warnings.catch_warnings():
            # tf-keras-vis passes a single input as a one-element list, which Keras 3 accepts with a warning.
            warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
            maps = self._visualizer(
                CategoricalScore(classes.tolist()),
                np.asarray(x, dtype=np.float32),
                penultimate_layer=self.layer,
                seek_penultimate_conv_layer=False,
                **options,
            )
        return np.asarray(maps, dtype=np.float32).reshape(len(x), *x.shape[1:-1])


class CompiledGradcam:
    """Grad-CAM (Selvaraju et al., eq. 1-2) of a batch as one `tf.function`, computed as tf-keras-vis does.

    alpha_k = mean over space of d logit_c / d A_k (eq. 1), map = ReLU(sum_k alpha_k A_k) (eq. 2), then
    linearly resized to the input with the corners aligned (SciPy's `zoom(order=1)`, which tf-keras-vis
    uses) and min-max normalised per map with Keras' epsilon, so both engines give the same maps.
    """

    def __init__(self, model: keras.Model, layer: str) -> None:
        # The softmax's input is the logits: what ReplaceToLinear leaves as the output. Weights are shared.
        features_and_logits = keras.Model(model.input, [model.get_layer(layer).output, model.layers[-1].input])
        if None in model.input_shape[1:]:
            raise ExplainError(
                f"engine 'compiled' needs a fixed input shape, model {model.name!r} takes {model.input_shape}"
            )
        feature_shape = tuple(int(size) for size in model.get_layer(layer).output.shape[1:-1])
        input_shape = tuple(int(size) for size in model.input_shape[1:])
        resize = [_linear_resize(n_in, n_out) for n_in, n_out in zip(feature_shape, input_shape[:-1], strict=True)]
        epsilon = keras.config.epsilon()

        def gradcam(x: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x)
                features, logits = features_and_logits(x, training=False)
                score = tf.gather(logits, classes, batch_dims=1)
            grads = tape.gradient(score, features)  # samples are independent: d sum / d A = per-sample gradients
            weights = tf.reduce_mean(grads, axis=tuple(range(1, len(resize) + 1)), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))
            for low, high, fraction in resize:  # each pass resizes axis 1 and moves it last: (n, H, W) back in order
                cam = tf.experimental.numpy.moveaxis(cam, 1, -1)
                cam = tf.gather(cam, low, axis=-1) * (1.0 - fraction) + tf.gather(cam, high, axis=-1) * fraction
            axes = tuple(range(1, len(resize) + 1))
            low_value = tf.reduce_min(cam, axis=axes, keepdims=True)
            high_value = tf.reduce_max(cam, axis=axes, keepdims=True)
            return (cam - low_value) / (high_value - low_value + epsilon)

        signature = [tf.TensorSpec((None, *input_shape), tf.float32), tf.TensorSpec((None,), tf.int64)]
        self._gradcam = tf.function(gradcam, input_signature=signature)

    def __call__(self, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Maps of `classes` for `x`: (n, L) or (n, H, W) float32 in [0, 1]."""
        maps = self._gradcam(tf.constant(x, tf.float32), tf.constant(classes, tf.int64))
        return np.asarray(maps, dtype=np.float32)


def _linear_resize(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour indices and weights of linear interpolation from n_in to n_out points, first and last aligned.

    Output point i sits at input coordinate i * (n_in - 1) / (n_out - 1), as in `scipy.ndimage.zoom`.
    """
    position = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    low = np.minimum(np.floor(position).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (position - low).astype(np.float32)


def explain(
    model: keras.Model,
    x: np.ndarray,
    class_index: np.ndarray | Sequence[int] | int,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    engine: str = "tf-keras-vis",
    batch_size: int = 32,
) -> Explanation:
    """One-shot `Explainer(model, method=..., ...)(x, class_index)`; reuse an Explainer for several batches."""
    _check_method(method, engine)
    _check_request(model, x, class_index, batch_size)  # before the model is cloned
    return Explainer(model, method=method, layer=layer, engine=engine)(x, class_index, batch_size=batch_size)


def _check_method(method: str, engine: str) -> None:
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if engine not in ENGINES:
        raise ExplainError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "compiled" and method != "gradcam":
        raise ExplainError(
            f"engine 'compiled' computes method 'gradcam' only, not {method!r}; use engine 'tf-keras-vis'"
        )


def _check_layer(model: keras.Model, name: str) -> str:
    """A named layer must exist and keep the input's spatial axes (batch, space..., channels)."""
    names = [layer.name for layer in model.layers]
    if name not in names:
        convs = [layer.name for layer in model.layers if isinstance(layer, CONV_LAYERS)][-3:]
        hint = f"; its last convolutions are {', '.join(convs)}" if convs else ""
        raise ExplainError(f"layer {name!r} is not in model {model.name!r}{hint}")
    shape = tuple(model.get_layer(name).output.shape)
    if len(shape) != len(model.input_shape):
        raise ExplainError(
            f"layer {name!r} outputs shape {shape}, which has no spatial axes like the input "
            f"{tuple(model.input_shape)}; pick a convolution layer"
        )
    return name


def _check_request(
    model: keras.Model, x: np.ndarray, class_index: np.ndarray | Sequence[int] | int, batch_size: int
) -> np.ndarray:
    """Check `x` fits the victim and return one class index per sample (an int is repeated)."""
    if batch_size < 1:
        raise ExplainError(f"batch_size must be at least 1, got {batch_size}")
    check_victim(model, tuple(x.shape[1:]))
    classes = np.asarray(class_index, dtype=np.int64)
    if classes.ndim == 0:
        classes = np.full(len(x), classes)
    if classes.shape != (len(x),):
        raise ExplainError(f"got {len(x)} samples but {classes.size} class indices")
    num_classes = int(model.output_shape[-1])
    if classes.size and not (classes.min() >= 0 and classes.max() < num_classes):
        raise ExplainError(f"class indices must lie in [0, {num_classes}), got {classes.min()}..{classes.max()}")
    return classes
