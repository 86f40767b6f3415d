"""Attack metrics on small hand-made arrays, with values worked out by hand."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from medadv.attacks.result import AttackResult
from medadv.metrics import (
    attack_success,
    attack_success_rate,
    clean_accuracy,
    fooling_rate,
    per_sample_table,
    perturbation_norms,
    psnr,
    robust_accuracy,
    ssim,
    success_matrix,
    summarize,
    wilson_interval,
)
from medadv.metrics.attack import class_keys, metric_name

Y_TRUE = np.array([0, 1, 1, 0])
Y_CLEAN = np.array([0, 1, 0, 0])  # sample 2 misclassified before the attack
Y_ADV = np.array([1, 1, 1, 0])  # sample 0 flipped, sample 2 flipped back to its true class


def test_rates() -> None:
    assert clean_accuracy(Y_TRUE, Y_CLEAN) == 0.75
    assert robust_accuracy(Y_TRUE, Y_ADV) == 0.75
    assert fooling_rate(Y_CLEAN, Y_ADV) == 0.5  # samples 0 and 2 changed
    assert fooling_rate(np.array([0, 0, 0, 1]), np.array([1, 0, 0, 1])) == 0.25  # 1 of 4 changed (not 2 of 4)
    untargeted = np.full(4, -1)
    assert attack_success_rate(Y_TRUE, Y_ADV, untargeted) == 0.25  # only sample 0 is now wrong
    mixed = np.array([1, 0, -1, 1])  # targeted 0->1 (hit), 1->0 (miss), untargeted (miss), 0->1 (miss)
    assert list(attack_success(Y_TRUE, Y_ADV, mixed)) == [True, False, False, False]
    assert math.isnan(clean_accuracy(np.array([]), np.array([])))


def test_norms() -> None:
    delta = np.array([[[3.0, 4.0], [0.0, 0.0]], [[0.0, -0.5], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    norms = perturbation_norms(delta)
    np.testing.assert_allclose(norms["l0"], [2, 1, 0])
    np.testing.assert_allclose(norms["l2"], [5.0, 0.5, 0.0])
    np.testing.assert_allclose(norms["linf"], [4.0, 0.5, 0.0])


def test_psnr_and_ssim() -> None:
    x = np.zeros((2, 8, 8, 1), dtype=np.float32)
    x_adv = x.copy()
    x_adv[0] += 0.1  # MSE 0.01
    # 10 log10(1 / 0.01) = 20 dB on [0, 1]; 10 log10(4 / 0.01) = 26.02 dB on [-1, 1]; unchanged: +inf
    np.testing.assert_allclose(psnr(x, x_adv, (0.0, 1.0)), [20.0, math.inf])
    np.testing.assert_allclose(psnr(x, x_adv, (-1.0, 1.0))[0], 10 * math.log10(400))
    values = ssim(x, x_adv, (0.0, 1.0), "skimage")
    assert values[1] == pytest.approx(1.0) and values[0] < 1.0


def test_ssim_is_the_studys_tf_image_ssim_by_default() -> None:
    """Grad-Attacks computed SSIM with tf.image.ssim (11x11 Gaussian window, max_val the data range)."""
    rng = np.random.default_rng(0)
    x = np.kron(rng.uniform(size=(3, 8, 8, 3)), np.ones((1, 4, 4, 1))).astype(np.float32)  # 4x4 blocks
    x_adv = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    study = np.asarray(tf.image.ssim(x * 255, x_adv * 255, max_val=255.0))  # the study's 0-255 images
    np.testing.assert_allclose(ssim(x, x_adv, (0.0, 1.0)), study, rtol=1e-4)
    assert not np.allclose(ssim(x, x_adv, (0.0, 1.0), "skimage"), study, rtol=1e-2)


def _result(x: np.ndarray, x_adv: np.ndarray, y_target: np.ndarray | None = None) -> AttackResult:
    n = len(x)
    return AttackResult(
        x=x,
        x_adv=x_adv,
        ids=np.array([f"s{i}" for i in range(n)]),
        y_true=Y_TRUE[:n],
        y_clean=Y_CLEAN[:n],
        y_adv=Y_ADV[:n],
        y_target=np.full(n, -1) if y_target is None else y_target,
        p_clean=np.linspace(0.6, 0.9, n),
        p_adv=np.linspace(0.5, 0.8, n),
        seconds=np.array([0.1, 0.1, 0.3, 0.3])[:n],
    )


def test_per_sample_table_and_summary_for_images() -> None:
    x = np.full((4, 8, 8, 1), 0.5, dtype=np.float32)
    x_adv = x.copy()
    x_adv[0, 0, 0, 0] = 0.7  # one value changed by 0.2
    x_adv[1] = 0.4  # every value changed by 0.1
    result = _result(x, x_adv)
    table = per_sample_table(result, (0.0, 1.0), "skimage")  # 8 x 8: too small for tf.image.ssim's window
    assert list(table.columns) == [
        "id", "y_true", "y_clean", "y_adv", "y_target", "success", "p_clean", "p_adv",
        "l0", "l2", "linf", "psnr", "ssim", "seconds",
    ]  # fmt: skip
    np.testing.assert_allclose(table["l0"], [1, 64, 0, 0])
    np.testing.assert_allclose(table["l2"], [0.2, 0.8, 0, 0], atol=1e-6)  # sqrt(64 * 0.01) = 0.8
    np.testing.assert_allclose(table["linf"], [0.2, 0.1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(table["psnr"][:2], [10 * math.log10(64 / 0.04), 20.0], rtol=1e-4)
    assert list(table["success"]) == [True, False, False, False]

    metrics = summarize(result, (0.0, 1.0), ("left", "right"), "skimage")
    assert set(metrics) == {
        "selected_clean_accuracy", "robust_accuracy", "fooling_rate", "attack_success_rate", "l0_mean", "l2_mean",
        "l2_median", "linf_mean", "linf_max", "psnr_mean", "ssim_mean", "seconds_per_sample", "num_samples",
        "attack_success_rate_class_left", "attack_success_rate_class_right",
    }  # fmt: skip
    assert metrics["attack_success_rate"] == 0.25 and metrics["fooling_rate"] == 0.5
    assert metrics["l0_mean"] == pytest.approx(65 / 4)
    assert metrics["l2_mean"] == pytest.approx(0.25, abs=1e-6) and metrics["l2_median"] == pytest.approx(0.1, abs=1e-6)
    assert metrics["linf_max"] == pytest.approx(0.2, abs=1e-6)
    # PSNR over the two changed images only: (32.04 + 20) / 2
    assert metrics["psnr_mean"] == pytest.approx((10 * math.log10(1600) + 20) / 2, rel=1e-4)
    assert metrics["seconds_per_sample"] == pytest.approx(0.2) and metrics["num_samples"] == 4
    assert metrics["attack_success_rate_class_left"] == 0.5  # samples 0 (fooled) and 3 (not) are class 0
    assert metrics["attack_success_rate_class_right"] == 0.0


def test_signals_get_no_psnr_or_ssim() -> None:
    x = np.zeros((4, 16, 1), dtype=np.float32)
    result = _result(x, x + 0.5)
    table = per_sample_table(result, (-math.inf, math.inf))
    assert table["psnr"].isna().all() and table["ssim"].isna().all()
    metrics = summarize(result, (-math.inf, math.inf), ("A", "~"))
    assert "psnr_mean" not in metrics and "ssim_mean" not in metrics
    assert metrics["l2_mean"] == pytest.approx(2.0) and metrics["linf_mean"] == 0.5
    assert "attack_success_rate_class_1" in metrics  # "~" is not a valid metric name: the class index stands in


def test_success_matrix() -> None:
    x = np.zeros((4, 3), dtype=np.float32)
    result = _result(x, x, y_target=np.array([1, 0, 0, 1]))
    matrix = success_matrix(result, ("a", "b"))
    expected = pd.DataFrame([[math.nan, 0.5], [0.0, math.nan]], index=["a", "b"], columns=["a", "b"])
    np.testing.assert_array_equal(matrix.to_numpy(), expected.to_numpy())
    assert matrix.index.name == "source" and matrix.columns.name == "target"


def test_success_matrix_counts_only_the_target_class_as_a_hit() -> None:
    """Three classes: both samples 0 -> 1 leave class 0, but only one lands on its target: a rate of 1/2."""
    x = np.zeros((2, 3), dtype=np.float32)
    result = dataclasses.replace(
        _result(x, x), y_true=np.array([0, 0]), y_adv=np.array([2, 1]), y_target=np.array([1, 1])
    )
    assert success_matrix(result, ("a", "b", "c")).loc["a", "b"] == 0.5


@pytest.mark.parametrize(
    ("names", "keys"),
    [
        (("A", "N", "O", "~"), ["A", "N", "O", "3"]),
        (("normal lung", "a/b"), ["normal_lung", "a_b"]),
        (("x", "x"), ["x", "1"]),
    ],
)
def test_class_keys_are_safe_and_distinct(names: tuple[str, ...], keys: list[str]) -> None:
    assert class_keys(names) == keys
    assert metric_name("p(adv) > 0.5") == "p_adv_0.5"


def test_wilson_interval_by_hand() -> None:
    # 8 of 10, z = 1.95996: centre (0.8 + z²/20) / (1 + z²/10) = 0.99207 / 1.38415 = 0.71675,
    # half width z * sqrt(0.016 + z²/400) / 1.38415 = 1.95996 * 0.16001 / 1.38415 = 0.22658
    low, high = wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.49016, abs=1e-4), pytest.approx(0.94332, abs=1e-4))
    # 0 of 5: centre = half width = (z²/10) / (1 + z²/5) = 0.38415 / 1.76829: the interval starts at 0, not empty
    assert wilson_interval(0, 5) == (pytest.approx(0.0, abs=1e-12), pytest.approx(0.43449, abs=1e-4))
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(3, 2)
