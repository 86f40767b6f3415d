"""Transferability: how adversarial inputs crafted on a source model fare on another (target) model."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from medadv.attacks.result import AttackResult, TargetProbabilities
from medadv.metrics.attack import attack_success
from medadv.metrics.classification import classification_scores


def transfer_metrics(
    result: AttackResult, probs_clean: np.ndarray, probs_adv: np.ndarray, probs_white_box: np.ndarray | None = None
) -> dict[str, float]:
    """The target model's view of a source model's attack, all on the attacked data's labels (the target
    task's, as foe scores it).

    - `transfer_success_rate`: share of the source-successful adversarial inputs that also succeed on
      the target (untargeted: wrong prediction; targeted: the target class), NaN when none succeeded;
    - `clean_accuracy`, `adversarial_accuracy` and `accuracy_drop` of the target on x and x_adv;
    - `clean_auc`, `adversarial_auc`, `auc_drop` (macro one-vs-rest; NaN when a class is absent);
    - `confidence_mean` and its 95% interval (normal approximation): the target's probability of the
      class it predicts on the adversarial inputs;
    - `white_box_accuracy`: the target's accuracy on the same attack crafted on itself (`probs_white_box`,
      foe's baseline beside the transferred attack), NaN without it.
    """
    source_success = attack_success(result.y_true, result.y_adv, result.y_target)
    target_success = attack_success(result.y_true, probs_adv.argmax(axis=1), result.y_target)
    clean, adversarial = (
        classification_scores(result.y_true, probs_clean),
        classification_scores(result.y_true, probs_adv),
    )
    confidence = probs_adv.max(axis=1)
    half_width = 1.96 * confidence.std(ddof=1) / math.sqrt(len(confidence)) if len(confidence) > 1 else math.nan
    return {
        "transfer_success_rate": float(target_success[source_success].mean()) if source_success.any() else math.nan,
        "clean_accuracy": clean["accuracy"],
        "adversarial_accuracy": adversarial["accuracy"],
        "accuracy_drop": clean["accuracy"] - adversarial["accuracy"],
        "clean_auc": clean["auc"],
        "adversarial_auc": adversarial["auc"],
        "auc_drop": clean["auc"] - adversarial["auc"],
        "confidence_mean": float(confidence.mean()),
        "confidence_ci95_low": float(confidence.mean() - half_width),
        "confidence_ci95_high": float(confidence.mean() + half_width),
        "white_box_accuracy": (
            math.nan if probs_white_box is None else classification_scores(result.y_true, probs_white_box)["accuracy"]
        ),
    }


def targets_table(result: AttackResult, probabilities: Mapping[str, TargetProbabilities]) -> pd.DataFrame:
    """transfer.csv: `transfer_metrics` of each target from its probabilities on the result's samples, by target."""
    rows = {uri: transfer_metrics(result, p.clean, p.adversarial, p.white_box) for uri, p in probabilities.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("target_model")
