"""AutoAttack (Croce & Hein, ICML 2020) as a sequence of medadv attacks, for both engines."""

from __future__ import annotations

import math
from typing import ClassVar

import keras
import numpy as np

from medadv.attacks.apgd import APGD, APGDConfig
from medadv.attacks.art_attacks import ArtAPGD, ArtSquare, AutoAttackConfig, SquareConfig
from medadv.attacks.base import Attack
from medadv.attacks.runner import predict


class AutoAttack(Attack):
    """AutoAttack (`AutoAttackConfig`): APGD-CE, APGD-DLR (>= 3 classes) and Square (finite-range images), each
    on the samples no earlier one fooled within the eps-ball (ART's `run_attack`). FAB is left out, as in ART's
    TensorFlow AutoAttack. `apgd` is the engine of the APGD components; Square is ART's in both engines."""

    config: AutoAttackConfig
    apgd: ClassVar[type[Attack]]

    def __init__(
        self, model: keras.Model, config: AutoAttackConfig, clip_range: tuple[float, float], batch_size: int
    ) -> None:
        super().__init__(model, config, clip_range, batch_size)
        losses = ["cross_entropy"] + (["difference_logits_ratio"] if int(model.output_shape[-1]) >= 3 else [])
        apgd = [
            APGDConfig(
                norm=config.norm,
                eps=config.eps,
                eps_step=config.eps_step,
                max_iter=config.max_iter,
                num_random_init=config.num_random_init,
                loss_type=loss,
            )
            for loss in losses
        ]
        self.components = [self.apgd(model, settings, clip_range, batch_size) for settings in apgd]
        if len(model.input_shape) == 4 and all(math.isfinite(bound) for bound in clip_range):
            square = SquareConfig(norm=config.norm, eps=config.eps, max_iter=config.square_max_iter)
            self.components.append(ArtSquare(model, square, clip_range, batch_size))

    def generate(self, x: np.ndarray, y: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        x_adv = np.array(x, dtype=np.float32)
        robust = predict(self.model, x_adv).argmax(axis=1) == y
        for component in self.components:
            rows = np.flatnonzero(robust)
            if not len(rows):
                break
            candidate = component.generate(x_adv[rows], y[rows], None)
            delta = (candidate - x_adv[rows]).reshape(len(rows), -1)
            size = np.abs(delta).max(axis=1) if self.config.norm == "inf" else np.linalg.norm(delta, axis=1)
            within = size <= self.config.eps * (1 + 1e-5)
            fooled = (predict(self.model, candidate).argmax(axis=1) != y[rows]) & within
            x_adv[rows[fooled]], robust[rows[fooled]] = candidate[fooled], False
        return x_adv


class NativeAutoAttack(AutoAttack):
    apgd = APGD


class ArtAutoAttack(AutoAttack):
    apgd = ArtAPGD
