"""Class activation maps of a victim's predictions through tf-keras-vis, batched, for images and ECGs.

Grad-CAM (Selvaraju et al., ICCV 2017, eq. 1-2), Grad-CAM++ (Chattopadhay et al., WACV 2018, eq. 19)
and Score-CAM (Wang et al., CVPRW 2020, eq. 6-7) all weight the feature maps of one layer and sum
them over channels, so they share everything here but the tf-keras-vis class. tf-keras-vis handles
Conv1D layers as well as Conv2D ones (it averages over every axis between batch and channels), so a
1-D ECG model gets a heatmap along time from the same code: (n, L) for inputs (n, L, 1), (n, H, W)
for inputs (n, H, W, C), bilinearly resized to the input and min-max normalised per map to [0, 1].
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

from medadv.models import check_victim

METHODS: dict[str, type[Gradcam] | type[GradcamPlusPlus] | type[Scorecam]] = {
    "gradcam": Gradcam,
    "gradcam++": GradcamPlusPlus,
    "scorecam": Scorecam,
}
EXPLAIN_CLASSES = ("clean", "adversarial", "true")
CONV_LAYERS = (keras.layers.Conv1D, keras.layers.Conv2D)


class ExplainError(ValueError):
    """A layer, method, class or input that cannot be explained; raised before any compute."""


@dataclass(frozen=True)
class Explanation:
    """One heatmap per sample, and what produced them (recorded with the maps)."""

    maps: np.ndarray  # float32 in [0, 1], (n, L) for ECGs or (n, H, W) for images
    layer: str
    method: str
    class_index: np.ndarray  # int64 (n,): the class each map explains


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
) -> np.ndarray:
    """The class each map explains: the clean prediction, the adversarial prediction or the true label.

    The clean and the adversarial map of a sample explain this same class, so a difference between
    them is a change of evidence for one class, not a change of question.
    """
    if explain_class not in EXPLAIN_CLASSES:
        raise ExplainError(f"unknown explain_class {explain_class!r}; choose one of {', '.join(EXPLAIN_CLASSES)}")
    if explain_class == "adversarial" and y_adv is None:
        raise ExplainError("explain_class 'adversarial' needs adversarial predictions (an attack run)")
    chosen = {"clean": y_clean, "adversarial": y_adv, "true": y_true}[explain_class]
    return np.asarray(chosen, dtype=np.int64)


class Explainer:
    """A victim prepared once for one method and layer, then called on clean and adversarial batches.

    The model is cloned once with its softmax replaced by a linear activation (`ReplaceToLinear`), so
    maps explain logits, as Grad-CAM prescribes; the victim itself is left untouched.
    """

    def __init__(self, model: keras.Model, *, method: str = "gradcam", layer: str | None = None) -> None:
        if method not in METHODS:
            raise ExplainError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        check_victim(model)
        self.layer = last_conv_layer(model) if layer is None else _check_layer(model, layer)
        self.method = method
        self.model = model
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


def explain(
    model: keras.Model,
    x: np.ndarray,
    class_index: np.ndarray | Sequence[int] | int,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    batch_size: int = 32,
) -> Explanation:
    """One-shot `Explainer(model, method=..., layer=...)(x, class_index)`; reuse an Explainer for several batches."""
    _check_request(model, x, class_index, batch_size)  # before the model is cloned
    return Explainer(model, method=method, layer=layer)(x, class_index, batch_size=batch_size)


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
