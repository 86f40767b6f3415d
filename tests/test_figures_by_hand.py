"""The figures the report and the runs show, pinned on tiny hand-made cases with the arithmetic in the comments:
classification scores, transfer metrics, the report's transfer tables and the robust-training metrics."""

from __future__ import annotations

import math

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from medadv.attacks.figures import perturbation_figure
from medadv.attacks.native import FGSMConfig, PGDConfig
from medadv.attacks.result import AttackResult
from medadv.data.base import Dataset
from medadv.jobs.robust import _robustness
from medadv.metrics.classification import classification_scores
from medadv.metrics.transfer import transfer_metrics
from medadv.report.tables import transfer_matrix, transfer_robustness_matrix

# --- classification_scores -------------------------------------------------------------------------------------


def test_binary_scores_by_hand() -> None:
    y_true = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    scores = classification_scores(y_true, np.stack([1 - p1, p1], axis=1))
    # predictions [0, 0, 0, 1]: 3 of 4 right
    assert scores["accuracy"] == 0.75
    # AUC = share of (positive, negative) pairs ranked right: 0.35 > 0.1, 0.35 < 0.4, 0.8 > 0.1, 0.8 > 0.4: 3 / 4
    assert scores["auc"] == pytest.approx(0.75)
    # class 0: TP 2, FP 1, FN 0: P 2/3, R 1, F1 0.8; class 1: TP 1, FP 0, FN 1: P 1, R 1/2, F1 2/3; mean 11/15
    assert scores["macro_f1"] == pytest.approx(11 / 15)


def test_macro_f1_weighs_classes_equally_whatever_their_size() -> None:
    p1 = np.array([0.1, 0.2, 0.9, 0.8])
    scores = classification_scores(np.array([0, 0, 0, 1]), np.stack([1 - p1, p1], axis=1))
    # predictions [0, 0, 1, 1]: class 0 P 1, R 2/3, F1 4/5; class 1 P 1/2, R 1, F1 2/3; macro 11/15 (weighted by
    # support it would be (3 x 4/5 + 2/3) / 4 = 23/30)
    assert scores["macro_f1"] == pytest.approx(11 / 15)


def test_multiclass_scores_by_hand() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array(
        [[0.7, 0.2, 0.1], [0.3, 0.2, 0.5], [0.2, 0.6, 0.2], [0.5, 0.4, 0.1], [0.1, 0.3, 0.6], [0.2, 0.1, 0.7]]
    )
    scores = classification_scores(y_true, probs)
    # predictions [0, 2, 1, 0, 2, 2]: samples 0, 2, 4, 5 right
    assert scores["accuracy"] == pytest.approx(4 / 6)
    # one-vs-rest, positives against the 4 negatives: class 0 {0.7, 0.3} vs {0.2, 0.5, 0.1, 0.2}: 4 + 3 of 8;
    # class 1 {0.6, 0.4} vs {0.2, 0.2, 0.3, 0.1}: 8 of 8; class 2 {0.6, 0.7} vs {0.1, 0.5, 0.2, 0.1}: 8 of 8
    assert scores["auc"] == pytest.approx((7 / 8 + 1 + 1) / 3)
    # F1 per class: 0: TP 1, FP 1, FN 1 -> 1/2; 1: TP 1, FP 0, FN 1 -> 2/3; 2: TP 2, FP 1, FN 0 -> 4/5; mean 59/90
    assert scores["macro_f1"] == pytest.approx(59 / 90)


def test_auc_is_nan_when_a_class_is_missing() -> None:
    scores = classification_scores(np.array([0, 0, 1]), np.array([[0.5, 0.2, 0.3], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]]))
    assert math.isnan(scores["auc"]) and scores["accuracy"] == pytest.approx(2 / 3)
    # class 0: TP 1, FN 1 -> F1 2/3; class 1: TP 1 -> 1; class 2: FP 1 -> 0 (zero_division=0); mean 5/9
    assert scores["macro_f1"] == pytest.approx(5 / 9)


# --- transfer_metrics ------------------------------------------------------------------------------------------


def _result(y_true: list[int], y_adv: list[int], y_target: list[int]) -> AttackResult:
    n = len(y_true)
    x = np.zeros((n, 2), dtype=np.float32)
    return AttackResult(
        x=x, x_adv=x + 0.1, ids=np.array([f"s{i}" for i in range(n)]), y_true=np.array(y_true),
        y_clean=np.array(y_true), y_adv=np.array(y_adv), y_target=np.array(y_target), p_clean=np.ones(n),
        p_adv=np.ones(n), seconds=np.zeros(n),
    )  # fmt: skip


def test_transfer_metrics_by_hand() -> None:
    # the source model was fooled on samples 0 and 1 (untargeted: its adversarial prediction is wrong)
    result = _result([0, 1, 1, 0], y_adv=[1, 0, 1, 0], y_target=[-1, -1, -1, -1])
    clean = np.array([[0.8, 0.2], [0.1, 0.9], [0.4, 0.6], [0.7, 0.3]])  # target model: all right
    adversarial = np.array([[0.4, 0.6], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])  # predicts [1, 1, 0, 1]
    metrics = transfer_metrics(result, clean, adversarial)
    # the target is fooled on 0, 2 and 3; of the source-successful 0 and 1 only on 0: 1/2 (over all samples: 3/4)
    assert metrics["transfer_success_rate"] == 0.5
    assert metrics["clean_accuracy"] == 1.0 and metrics["adversarial_accuracy"] == 0.25  # only sample 1 right
    assert metrics["accuracy_drop"] == 0.75
    # clean AUC: positives {0.9, 0.6} above negatives {0.2, 0.3}: 1; adversarial: positives {0.8, 0.3} against
    # negatives {0.6, 0.9}: only 0.8 > 0.6 of 4 pairs: 1/4
    assert metrics["clean_auc"] == 1.0 and metrics["adversarial_auc"] == pytest.approx(0.25)
    assert metrics["auc_drop"] == pytest.approx(0.75)
    # confidences [0.6, 0.8, 0.7, 0.9]: mean 0.75; sample std sqrt(0.05 / 3) = 0.129099; 1.96 x 0.129099 / 2
    assert metrics["confidence_mean"] == pytest.approx(0.75)
    half_width = 1.96 * math.sqrt(0.05 / 3) / 2  # 0.126517
    assert metrics["confidence_ci95_low"] == pytest.approx(0.75 - half_width)
    assert metrics["confidence_ci95_high"] == pytest.approx(0.75 + half_width)
    # foe's baseline beside it: the target's white-box adversarials predict [1, 1, 1, 1], right on sample 1 and 2
    assert math.isnan(metrics["white_box_accuracy"])
    white_box = np.array([[0.3, 0.7], [0.1, 0.9], [0.2, 0.8], [0.4, 0.6]])
    assert transfer_metrics(result, clean, adversarial, white_box)["white_box_accuracy"] == 0.5


def test_targeted_transfer_counts_only_the_target_class() -> None:
    # three classes; the source hit its targets on samples 0 and 2 (sample 1 reached class 2, not its target 1)
    result = _result([0, 0, 1], y_adv=[2, 2, 0], y_target=[2, 1, 0])
    clean = np.eye(3)[[0, 0, 1]] * 0.8 + 0.2 / 3
    adversarial = np.eye(3)[[1, 1, 0]] * 0.8 + 0.2 / 3  # predicts [1, 1, 0]: wrong on 0 and 1, on target for 1, 2
    metrics = transfer_metrics(result, clean, adversarial)
    # of samples 0 and 2, the target model predicts the target only on 2: 1/2 (wrong though not on target: 0)
    assert metrics["transfer_success_rate"] == 0.5
    assert math.isnan(metrics["clean_auc"])  # class 2 is missing from y_true
    nothing_fooled = transfer_metrics(_result([0, 1], [0, 1], [-1, -1]), clean[:2], adversarial[:2])
    assert math.isnan(nothing_fooled["transfer_success_rate"])


# --- the report's transfer tables ------------------------------------------------------------------------------


def _transfer_rows() -> pd.DataFrame:
    """transfer.csv rows of three attack runs: two runs of fgsm@0.1 on the victim, one of pgd@0.1."""
    return pd.DataFrame(
        {
            "label": ["fgsm@0.1", "fgsm@0.1", "fgsm@0.1", "pgd@0.1"],
            "source_model": ["m:victim"] * 4,
            "target_model": ["m:robust", "m:robust", "m:other", "m:robust"],
            "adversarial_accuracy": [0.6, 0.8, 0.1, 0.4],
            "transfer_success_rate": [0.2, 0.4, 0.9, 0.5],
        },
        index=pd.Index(["r1", "r2", "r1", "r3"], name="run_id"),
    )


def test_robustness_transfer_table_by_hand() -> None:
    table = transfer_robustness_matrix(_transfer_rows())
    # rows: target models; columns: "<attack> on <source>"; cells: mean adversarial accuracy, (0.6 + 0.8) / 2 = 0.7
    assert list(table.index) == ["m:other", "m:robust"]
    assert list(table.columns) == ["fgsm@0.1 on m:victim", "pgd@0.1 on m:victim"]
    np.testing.assert_allclose(table.to_numpy(), [[0.1, math.nan], [0.7, 0.4]])
    assert transfer_robustness_matrix(_transfer_rows().iloc[:0]).empty


def test_transfer_matrix_by_hand() -> None:
    models = pd.DataFrame({"test_auc": [0.9, 0.5]}, index=pd.Index(["m:victim", "m:robust"], name="model"))
    table = transfer_matrix(_transfer_rows(), models)
    # rows (source, attack); cells: mean transfer success rate, (0.2 + 0.4) / 2 = 0.3; then the source's clean AUC
    assert list(table.index) == [("m:victim", "fgsm@0.1"), ("m:victim", "pgd@0.1")]
    np.testing.assert_allclose(table[["m:other", "m:robust"]].to_numpy(), [[0.9, 0.3], [math.nan, 0.5]])
    assert list(table["source_clean_auc"]) == [0.9, 0.9]


# --- robust training: robust_accuracy and robust_accuracy_gain -------------------------------------------------


def threshold_model(threshold: float) -> keras.Model:
    """A hand-set classifier of one feature in [0, 1]: class 1 where x > threshold (logits 0 and 10 (x - t))."""
    inputs = keras.Input((1,))
    logits = keras.layers.Dense(2, name="logits")(inputs)
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="probs")(logits))
    model.get_layer("logits").set_weights([np.array([[0.0, 10.0]], np.float32), np.array([0.0, -10.0 * threshold])])
    return model


@pytest.mark.parametrize(
    ("attack", "config"),
    [("fgsm", FGSMConfig(eps=0.2)), ("pgd", PGDConfig(eps=0.2, eps_step=0.1, max_iter=3, num_random_init=0))],
)
def test_robust_training_metrics_by_hand(attack: str, config: FGSMConfig) -> None:
    """What the fgsm and pgd/pgd_online robust-training jobs log, on two threshold models."""
    x = np.array([[0.1], [0.4], [0.6], [0.9]], np.float32)
    test = Dataset("line", "test", x, np.array([0, 0, 1, 1]), ("low", "high"), (0.0, 1.0), np.arange(4).astype(str), "")
    # On a threshold model both attacks move each x by 0.2 away from its class (PGD: two steps of 0.1, then held at
    # the budget): x_adv = [0.3, 0.6, 0.4, 0.7].
    # victim, t = 0.5: clean [0, 0, 1, 1] all right; adversarial [0, 1, 0, 1]: 2 of 4 right.
    # "robust", t = 0.35: clean [0, 1, 1, 1]: 3 of 4; adversarial [0, 1, 1, 1]: 3 of 4 right.
    # "robust" on the victim's x_adv [0.3, 0.6, 0.4, 0.7] (DeepCustom's evaluation): [0, 1, 1, 1]: 3 of 4 right.
    metrics = _robustness(threshold_model(0.5), threshold_model(0.35), test, attack, config, {}, batch_size=4)
    assert metrics == pytest.approx(
        {
            "clean_accuracy": 0.75, "robust_accuracy": 0.75, "victim_clean_accuracy": 1.0,
            "victim_robust_accuracy": 0.5, "robust_accuracy_gain": 0.25, "robust_accuracy_victim_crafted": 0.75,
        }
    )  # fmt: skip


# --- the perturbation figure ----------------------------------------------------------------------------------


def test_perturbation_figure_scales_to_the_largest_change_shown() -> None:
    x = np.full((3, 4, 4, 1), 0.5, dtype=np.float32)
    x_adv = x.copy()
    x_adv[0, 0, 0, 0] += 0.01  # the least perturbed
    x_adv[1, 1, 1, 0] -= 0.03  # the most perturbed: its 0.03 sets the scale of every row
    x_adv[2, 2, 2, 0] += 0.02
    labels = np.array([0, 1, 0])
    result = AttackResult(
        x=x, x_adv=x_adv, ids=np.array(["a", "b", "c"]), y_true=labels, y_clean=labels, y_adv=1 - labels,
        y_target=np.full(3, -1), p_clean=np.ones(3), p_adv=np.ones(3), seconds=np.zeros(3),
    )  # fmt: skip
    figure = perturbation_figure(result, ("normal", "pneumonia"), count=1)
    (mosaic,) = [axis for axis in figure.axes if axis.images]  # every panel drawn in one axes, one bar beside it
    perturbations = [image for image in mosaic.images if image.get_cmap().name == "seismic"]
    assert [image.get_clim() for image in perturbations] == [pytest.approx((-0.03, 0.03))] * 2
    titles = [text.get_text() for text in mosaic.texts]
    assert "0.03" in figure.get_suptitle() and "0.01" in titles[2] and "0.03" in titles[5]  # least, then most
    assert [axis.get_ylabel() for axis in figure.axes if axis is not mosaic] == ["delta (±0.03)"]
    plt.close(figure)
