"""ART's attacks behind medadv's `Attack` interface: the victim's logits wrapped in a `TensorFlowV2Classifier`.

Every ART attack here is built with the run's batch size (ART's defaults of 1 or 32 are far too
small on a CPU and far from what the data allows) and without ART's own progress bars (the
runner draws one). Attacks that need image input or a finite data range refuse other victims
with an `AttackError` when built, before any compute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf
from art.attacks import EvasionAttack
from art.attacks.evasion import (
    AutoProjectedGradientDescent,
    CarliniL2Method,
    CarliniLInfMethod,
    DeepFool,
    FastGradientMethod,
    HopSkipJump,
    ProjectedGradientDescent,
    SquareAttack,
    UniversalPerturbation,
)
from art.estimators.classification import TensorFlowV2Classifier

from medadv.attacks.apgd import APGDConfig
from medadv.attacks.base import Attack, AttackConfig, AttackError, UntargetedConfig
from medadv.attacks.carlini import CWL2Config, CWLinfConfig
from medadv.attacks.deepfool import DeepFoolConfig
from medadv.attacks.native import BIMConfig, FGSMConfig, LpConfig, PGDConfig, targets_for
from medadv.models import logits_model


class CompiledClassifier(TensorFlowV2Classifier):
    """ART's TensorFlow 2 classifier with its loss gradient traced once into a graph.

    ART computes the gradient eagerly, op by op, on every call, which costs about as much again
    as the gradient itself on a small network. Same loss, same reduction, same result; only for
    classifiers without preprocessing, which is how `art_classifier` builds them.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._graph_loss_gradient = tf.function(self._loss_gradient_of, reduce_retracing=True)

    def _loss_gradient_of(self, x: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = self._loss_object(labels, self._model(x, training=False))
        return tape.gradient(loss, x)

    def loss_gradient(
        self, x: np.ndarray | tf.Tensor, y: np.ndarray | tf.Tensor, training_mode: bool = False, **kwargs: Any
    ) -> np.ndarray | tf.Tensor:
        if training_mode:
            return super().loss_gradient(x, y, training_mode=training_mode, **kwargs)
        labels = tf.argmax(y, axis=1) if len(y.shape) == 2 else y  # ART passes one-hot labels
        grad = self._graph_loss_gradient(tf.convert_to_tensor(x, dtype=tf.float32), labels)
        return grad.numpy() if isinstance(x, np.ndarray) else grad


def art_classifier(model: keras.Model, clip_range: tuple[float, float]) -> TensorFlowV2Classifier:
    """The victim's logits as an ART classifier, with cross-entropy on logits as the attack loss.

    `clip_values` is the data range, or None where it is unbounded (z-scored ECG): ART then
    clips nothing (C&W and HopSkipJump fall back to the batch's own min and max).
    """
    logits = logits_model(model)
    low, high = clip_range
    return CompiledClassifier(
        model=logits,
        nb_classes=int(logits.output_shape[-1]),
        input_shape=tuple(model.input_shape[1:]),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(low, high) if math.isfinite(low) and math.isfinite(high) else None,
        preprocessing=None,
    )


def _art_norm(norm: str) -> float:
    return np.inf if norm == "inf" else float(norm)


@dataclass(frozen=True, kw_only=True)
class PositiveLpConfig(LpConfig):
    """An Lp budget that must be strictly positive (ART's AutoAttack, Square and universal refuse eps = 0)."""

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.eps <= 0:
            raise AttackError(f"eps must be > 0, got {self.eps}")


@dataclass(frozen=True, kw_only=True)
class AutoAttackConfig(PositiveLpConfig, UntargetedConfig):
    """AutoAttack (Croce & Hein 2020): APGD with cross-entropy, then APGD with the DLR loss (eq. 6; needs >= 3
    classes), then Square (images with a finite range), each on the samples still not fooled. FAB is left out
    (ART has no TensorFlow FAB). `max_iter` and `num_random_init` are APGD's; the paper uses 100 and 5."""

    eps_step: float = 0.01
    max_iter: int = 100
    num_random_init: int = 5
    square_max_iter: int = 5000

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.eps_step <= 0 or self.max_iter < 1 or self.num_random_init < 1 or self.square_max_iter < 1:
            raise AttackError(
                "need eps_step > 0 and max_iter, num_random_init and square_max_iter >= 1, got "
                f"{self.eps_step}, {self.max_iter}, {self.num_random_init} and {self.square_max_iter}"
            )


@dataclass(frozen=True, kw_only=True)
class SquareConfig(PositiveLpConfig, UntargetedConfig):
    """Square Attack (Andriushchenko et al. 2020): black-box random search with square-shaped updates of the
    margin loss inside the eps-ball; `p_init` is the initial fraction of pixels changed. Images only."""

    max_iter: int = 100
    p_init: float = 0.8
    nb_restarts: int = 1

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.max_iter < 1 or self.nb_restarts < 1 or not 0 < self.p_init <= 1:
            raise AttackError(
                f"need max_iter >= 1, nb_restarts >= 1 and 0 < p_init <= 1, got {self.max_iter}, "
                f"{self.nb_restarts} and {self.p_init}"
            )


@dataclass(frozen=True, kw_only=True)
class HopSkipJumpConfig(AttackConfig):
    """HopSkipJump (Chen et al. 2020): decision-based (labels only) attack that estimates the boundary's gradient
    from `init_eval`..`max_eval` queries per step and binary-searches to the boundary; minimises the `norm`."""

    norm: str = "2"
    max_iter: int = 50
    max_eval: int = 10000
    init_eval: int = 100
    init_size: int = 100

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.norm not in ("inf", "2"):
            raise AttackError(f"norm {self.norm!r} is not supported; choose inf or 2")
        if min(self.max_iter, self.init_eval, self.init_size) < 1 or self.max_eval < self.init_eval:
            raise AttackError(
                "need max_iter, init_eval, init_size >= 1 and max_eval >= init_eval, got "
                f"{self.max_iter}, {self.init_eval}, {self.init_size} and {self.max_eval}"
            )


UNIVERSAL_ATTACKERS = ("deepfool", "fgsm", "pgd")


@dataclass(frozen=True, kw_only=True)
class UniversalConfig(PositiveLpConfig, UntargetedConfig):
    """Universal perturbation (Moosavi-Dezfooli et al. 2017, Alg. 1): one perturbation for the whole batch, grown
    sample by sample with `attacker` (ART defaults) and projected onto the eps-ball, for up to `max_iter`
    passes or until the fooling rate reaches 1 - `delta`."""

    eps: float = 0.1
    attacker: str = "deepfool"
    delta: float = 0.2
    max_iter: int = 20

    def validate(self, num_classes: int) -> None:
        super().validate(num_classes)
        if self.attacker not in UNIVERSAL_ATTACKERS:
            raise AttackError(f"attacker {self.attacker!r} is not supported; choose one of {UNIVERSAL_ATTACKERS}")
        if not 0 <= self.delta < 1 or self.max_iter < 1:
            raise AttackError(f"need 0 <= delta < 1 and max_iter >= 1, got {self.delta} and {self.max_iter}")


class ArtAttack(Attack):
    """Runs an ART attack; `generate` passes true labels, or targets when targeted.

    Every wrapper builds its ART attack the same way, so a subclass only declares it: `art_class`, the
    config fields ART takes under the same name (`fields`) or another (`renamed`: ART's name -> the field),
    and constants (`fixed`). `arguments` adds the run's batch size and `verbose=False` (where ART's attack
    has a `verbose`: `quiet`) and turns a `norm` into ART's number; a subclass overrides it for the rest."""

    art_class: ClassVar[type[EvasionAttack]]
    fields: ClassVar[tuple[str, ...]] = ()
    renamed: ClassVar[Mapping[str, str]] = {}
    fixed: ClassVar[Mapping[str, Any]] = {}
    quiet: ClassVar[bool] = True
    images_only: ClassVar[bool] = False  # refuse victims that `require_images` refuses, before any compute

    def __init__(
        self, model: keras.Model, config: AttackConfig, clip_range: tuple[float, float], batch_size: int
    ) -> None:
        super().__init__(model, config, clip_range, batch_size)
        self.classifier = art_classifier(model, clip_range)
        self.art = self.build()

    def build(self) -> EvasionAttack:
        """The configured ART attack on `self.classifier`."""
        if self.images_only:
            self.require_images()
        return self.art_class(self.classifier, **self.arguments())

    def arguments(self) -> dict[str, Any]:
        """ART's keyword arguments, as the class declares them."""
        named = {field: field for field in self.fields} | dict(self.renamed)
        arguments = {name: getattr(self.config, field) for name, field in named.items()} | dict(self.fixed)
        if "norm" in arguments:
            arguments["norm"] = _art_norm(arguments["norm"])
        arguments["batch_size"] = self.batch_size
        if self.quiet:
            arguments["verbose"] = False
        return arguments

    def require_images(self) -> None:
        """Refuse victims that do not take finite-range (H, W, C) images."""
        if len(self.classifier.input_shape) != 3 or self.classifier.clip_values is None:
            raise AttackError(
                f"this attack needs (height, width, channels) images with a finite range; this victim takes "
                f"{self.classifier.input_shape} in {self.clip_range}"
            )

    def generate(self, x: np.ndarray, y: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        target = targets_for(self.config, target, len(x))
        x_adv = self.art.generate(np.asarray(x, dtype=np.float32), y=np.asarray(y if target is None else target))
        return np.asarray(x_adv, dtype=np.float32)


class ArtFGSM(ArtAttack):
    """One step of the whole budget (`eps_step` = `eps`); ART's FGSM has no `verbose`."""

    config: FGSMConfig
    art_class = FastGradientMethod
    fields = ("norm", "eps", "targeted")
    renamed: ClassVar[Mapping[str, str]] = {"eps_step": "eps"}
    quiet = False


class ArtBIM(ArtAttack):
    """BIM is ART's PGD without a random start (ART's `BasicIterativeMethod` is exactly that, for L-inf only)."""

    config: BIMConfig
    art_class = ProjectedGradientDescent
    fields = ("norm", "eps", "eps_step", "max_iter", "targeted")
    fixed: ClassVar[Mapping[str, Any]] = {"num_random_init": 0}


class ArtPGD(ArtAttack):
    config: PGDConfig
    art_class = ProjectedGradientDescent
    fields = ("norm", "eps", "eps_step", "max_iter", "targeted", "num_random_init")


class ArtDeepFool(ArtAttack):
    config: DeepFoolConfig
    art_class = DeepFool
    fields = ("max_iter", "nb_grads")
    renamed: ClassVar[Mapping[str, str]] = {"epsilon": "overshoot"}


class ArtCWL2(ArtAttack):
    config: CWL2Config
    art_class = CarliniL2Method
    fields = ("confidence", "targeted", "learning_rate", "binary_search_steps", "max_iter", "initial_const")


class ArtCWLinf(ArtAttack):
    config: CWLinfConfig
    art_class = CarliniLInfMethod
    fields = (
        "confidence",
        "targeted",
        "learning_rate",
        "max_iter",
        "decrease_factor",
        "initial_const",
        "largest_const",
        "const_factor",
    )


class ArtAPGD(ArtAttack):
    config: APGDConfig
    art_class = AutoProjectedGradientDescent
    fields = ("norm", "eps", "eps_step", "max_iter", "targeted", "loss_type")
    renamed: ClassVar[Mapping[str, str]] = {"nb_random_init": "num_random_init"}


class ArtSquare(ArtAttack):
    config: SquareConfig
    art_class = SquareAttack
    fields = ("norm", "eps", "max_iter", "p_init", "nb_restarts")
    images_only = True


class ArtHopSkipJump(ArtAttack):
    config: HopSkipJumpConfig
    art_class = HopSkipJump
    fields = ("targeted", "norm", "max_iter", "max_eval", "init_eval", "init_size")


class ArtUniversal(ArtAttack):
    """One universal perturbation per call of `generate`, i.e. per batch of the run."""

    config: UniversalConfig
    art_class = UniversalPerturbation
    fields = ("attacker", "delta", "max_iter", "eps", "norm")

    def arguments(self) -> dict[str, Any]:
        attacker_params: dict[str, Any] = {"batch_size": 1}
        if self.config.attacker != "fgsm":  # ART's FGSM has no `verbose`
            attacker_params["verbose"] = False
        return super().arguments() | {"attacker_params": attacker_params}
