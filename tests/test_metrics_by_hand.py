"""The numbers of the mutated code (benchmarks/mutation.py) pinned on tiny hand-made cases, the arithmetic in the
comments: what the mutation score found no test for."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.signal
import tensorflow as tf
from test_ecg_plausibility import ECG, FS_HZ

from medadv.attacks.base import AttackError
from medadv.attacks.ecgadv import evaluation_distances, selection_masks, type1_distance
from medadv.attacks.ecgadv.filters import device_filter_stages
from medadv.attacks.result import AttackResult
from medadv.data.base import Dataset
from medadv.metrics import (
    attack_success,
    per_sample_table,
    perturbation_norms,
    psnr,
    success_matrix,
    summarize,
    wilson_interval,
)
from medadv.metrics.attack import is_image_batch, metric_name, summary_table
from medadv.metrics.classification import prediction_table
from medadv.metrics.ecg_plausibility import run_plausibility
from medadv.metrics.heatmap import heatmap_summary, overlay


def result_of(x: list[float], x_adv: list[float], y_adv: list[int]) -> AttackResult:
    """Signals of one sample each; true and clean class 0, untargeted."""
    n = len(x)
    return AttackResult(
        x=np.array(x)[:, None], x_adv=np.array(x_adv)[:, None], ids=np.array([f"s{i}" for i in range(n)]),
        y_true=np.zeros(n, np.int64), y_clean=np.zeros(n, np.int64), y_adv=np.array(y_adv), y_target=np.full(n, -1),
        p_clean=np.full(n, 0.9), p_adv=np.full(n, 0.6), seconds=np.full(n, 0.5),
    )  # fmt: skip


def test_attack_result_saves_its_delta_and_joins_in_order(tmp_path: Path) -> None:
    first, second = result_of([1.0, 2.0], [1.5, 2.0], [1, 0]), result_of([4.0], [3.0], [1])
    saved = np.load(first.save(tmp_path / "first.npz"))
    np.testing.assert_array_equal(saved["delta"].ravel(), [0.5, 0.0])  # 1.5 - 1, 2 - 2
    loaded = AttackResult.load(tmp_path / "first.npz")
    np.testing.assert_array_equal(loaded.x_adv.ravel(), [1.5, 2.0])
    joined = AttackResult.concatenate([first, second])
    assert len(joined) == 3
    np.testing.assert_array_equal(joined.ids, ["s0", "s1", "s0"])
    np.testing.assert_array_equal(joined.delta.ravel(), [0.5, 0.0, -1.0])  # 3 - 4


@pytest.mark.parametrize(("successes", "n", "confidence"), [(0, -1, 0.95), (1, 0, 0.95), (1, 2, 0.0), (1, 2, 1.0)])
def test_wilson_interval_refuses_impossible_counts_and_confidences(successes: int, n: int, confidence: float) -> None:
    with pytest.raises(ValueError, match="need 0 <= successes <= n"):
        wilson_interval(successes, n, confidence)


def test_wilson_interval_stays_inside_zero_and_one() -> None:
    # 9 of 9: centre + half width = (1 + z²/18 + z²/18) / (1 + z²/9) = 1 exactly, but 1.0000000000000002 in floats
    assert wilson_interval(9, 9)[1] == 1.0


def test_success_matrix_leaves_untargeted_samples_out() -> None:
    # sample 0 attacked 0 -> 1 and lands on 1; sample 1 untargeted (-1): no cell of the matrix, not even the last
    targeted = dataclasses.replace(
        result_of([0.0, 0.0], [1.0, 1.0], [1, 1]), y_target=np.array([1, -1]), y_true=np.array([0, 1])
    )
    matrix = success_matrix(targeted, ("a", "b"))
    np.testing.assert_array_equal(matrix.to_numpy(), [[np.nan, 1.0], [np.nan, np.nan]])


def test_prediction_table_by_hand() -> None:
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    data = Dataset("d", "test", np.zeros((3, 1), np.float32), np.array([0, 0, 1]), ("neg", "pos"), (0.0, 1.0),
                   np.array(["a", "b", "c"]), "generated")  # fmt: skip
    table = prediction_table(data, probs)
    assert list(table.columns) == ["id", "y_true", "y_pred", "prob_neg", "prob_pos"]
    assert table["id"].tolist() == ["a", "b", "c"] and table["y_true"].tolist() == [0, 0, 1]
    assert table["y_pred"].tolist() == [0, 1, 0]  # the larger probability of each row
    assert table["prob_pos"].tolist() == [0.3, 0.8, 0.4]


def test_run_plausibility_reads_records_in_mv_and_counts_stealthy_successes() -> None:
    spike = 2.0 * np.exp(-(((np.arange(len(ECG)) - 1525) / 3.0) ** 2) / 2)  # flagged (test_ecg_plausibility)
    x = np.stack([ECG, ECG])[..., None] / 0.5  # model units of 0.5 mV
    x_adv = np.stack([ECG, ECG + spike])[..., None] / 0.5
    data = Dataset("ecg", "test", x.astype(np.float32), np.array([0, 0]), ("N", "A"), (-np.inf, np.inf),
                   np.array(["r0", "r1"]), "generated", lengths=np.array([3000, 3000]),
                   mv_per_unit=np.array([0.5, 0.5]), fs_hz=FS_HZ)  # fmt: skip
    result = dataclasses.replace(result_of([0.0, 0.0], [0.0, 0.0], [1, 1]), x=data.x, x_adv=x_adv.astype(np.float32))
    table, metrics = run_plausibility(result, data)
    assert table["beats"].tolist() == [12.0, 12.0] and table["clinically_unchanged"].tolist() == [True, False]
    # the spike's largest step in mV: model units x 0.5 mV
    assert table.loc[1, "max_jump_mv"] == pytest.approx(np.abs(np.diff(spike)).max(), rel=1e-4)
    # both fooled (untargeted, class 1 != 0); only record 0 reads unchanged: 1 of 2
    assert metrics["stealthy_success_rate"] == 0.5 and metrics["clinically_unchanged_rate"] == 0.5
    images = dataclasses.replace(data, fs_hz=None)
    table, metrics = run_plausibility(result, images)
    assert len(table) == 2 and table.columns.empty and metrics == {}


def test_selection_keeps_the_first_of_equally_ranked_successes() -> None:
    # rank 1 against a step best of 2 and an overall best of 1: better than the step's, a tie with the overall best,
    # which keeps the earlier iterate
    step_better, best_better = selection_masks(
        np.array([1.0], np.float32), np.array([True]), np.array([True]), np.array([2.0], np.float32),
        np.array([1.0], np.float32),
    )  # fmt: skip
    assert np.asarray(step_better).tolist() == [True] and np.asarray(best_better).tolist() == [False]


def test_norms_are_float64_even_of_a_float32_delta() -> None:
    # l2 of (1, 1e-4) = sqrt(1 + 1e-8) = 1 + 5e-9; in float32 1 + 1e-8 rounds to 1
    norms = perturbation_norms(np.array([[1.0, 1e-4]], np.float32))
    assert norms["l2"][0] == pytest.approx(1 + 5e-9, rel=1e-10, abs=0)
    assert norms["l0"].tolist() == [2.0] and norms["linf"].tolist() == [1.0]
    assert all(values.dtype == np.float64 for values in norms.values())  # samples.parquet columns


def test_only_4d_batches_of_a_finite_range_are_images() -> None:
    assert is_image_batch(np.zeros((2, 4, 4, 1)), (0.0, 1.0))
    assert not is_image_batch(np.zeros((2, 5, 1)), (0.0, 1.0))  # a signal with a finite range
    assert not is_image_batch(np.zeros((2, 4, 4, 1)), (-np.inf, np.inf))
    with pytest.raises(ValueError):  # one adversarial image for two clean ones
        psnr(np.zeros((2, 4, 4, 1)), np.zeros((1, 4, 4, 1)), (0.0, 1.0))


def image_result() -> AttackResult:
    """Four 12x12 grey images of 0.5: image 0 unchanged, images 1-3 with one pixel + 0.5; true class 0, clean
    predictions [0, 0, 0, 1] (3 of 4 right), adversarial [0, 1, 1, 1] (1 of 4 right)."""
    x = np.full((4, 12, 12, 1), 0.5)
    x_adv = x.copy()
    x_adv[1:, 3, 3, 0] = 1.0
    return AttackResult(
        x=x, x_adv=x_adv, ids=np.array(list("abcd")), y_true=np.zeros(4, np.int64), y_clean=np.array([0, 0, 0, 1]),
        y_adv=np.array([0, 1, 1, 1]), y_target=np.full(4, -1), p_clean=np.ones(4), p_adv=np.ones(4),
        seconds=np.ones(4),
    )  # fmt: skip


def test_image_tables_take_tf_ssim_by_default_and_signals_get_float_nans() -> None:
    result = image_result()
    table = per_sample_table(result, (0.0, 1.0))  # ssim_method left at its default, "tf"
    assert table.loc[0, "ssim"] == pytest.approx(1.0) and (table.loc[1:, "ssim"] < 1.0).all()
    # PSNR of one pixel changed by 0.5 in 144: MSE 0.25 / 144, 10 log10(1 / MSE) = 10 log10(576) = 27.6 dB
    assert table.loc[1, "psnr"] == pytest.approx(10 * np.log10(576.0))
    metrics = summarize(result, (0.0, 1.0), ("a", "b"))
    assert metrics["selected_clean_accuracy"] == 0.75 and metrics["robust_accuracy"] == 0.25
    assert metrics["ssim_mean"] == pytest.approx(table.loc[1, "ssim"])  # over the 3 changed images, all alike
    signal = dataclasses.replace(result_of([0.0, 1.0], [0.5, 1.0], [1, 0]))
    blank = per_sample_table(signal, (-np.inf, np.inf))
    assert blank["psnr"].dtype == np.float64 and blank["ssim"].isna().all()


def test_metric_names_keep_their_letters_at_the_ends() -> None:
    assert metric_name("X ray") == "X_ray" and metric_name("_a b_") == "a_b"


def test_heatmap_summary_of_a_table_without_ids() -> None:
    table = pd.DataFrame({"dssim": [0.1, 0.3], "pearson": [1.0, 0.5]})
    # dssim mean 0.2, max 0.3, population std |0.1 - 0.2| = 0.1; pearson mean 0.75
    assert heatmap_summary(table) == pytest.approx(
        {"dssim_mean": 0.2, "dssim_max": 0.3, "dssim_std": 0.1, "pearson_mean": 0.75}
    )


def test_overlay_scales_each_sample_on_its_own() -> None:
    # maps 0: jet(0) = (0, 0, 0.5), so the blend is (s, s, s + 0.2) with s the input min-max scaled per sample;
    # its min 0 and max 1.2, so the overlay is (s, s, s + 0.2) / 1.2.
    x = np.array([[2.0, 4.0, 6.0], [-1.0, -1.0, 3.0], [5.0, 5.0, 5.0]])[..., None]  # s: (0, .5, 1), (0, 0, 1), 0
    blended = overlay(np.zeros((3, 3)), x)
    np.testing.assert_allclose(blended[0, :, 0], np.array([0.0, 0.5, 1.0]) / 1.2)
    np.testing.assert_allclose(blended[0, :, 2], np.array([0.2, 0.7, 1.2]) / 1.2)
    np.testing.assert_allclose(blended[1, :, 0], np.array([0.0, 0.0, 1.0]) / 1.2)
    # a constant input scales to 0: the blend is (0, 0, 0.2) everywhere, min 0, max 0.2
    np.testing.assert_allclose(blended[2], [[0.0, 0.0, 1.0]] * 3)


def column(*values: float) -> np.ndarray:
    """One record (1, L, 1) from a hand-written list."""
    return np.array(values, dtype=np.float32)[None, :, None]


def test_ecgadv_distances_are_per_record() -> None:
    x = np.stack([column(1, 1, 1, 1)[0], column(0, 0, 0, 0)[0]])
    x_adv = np.stack([column(2, 3, 5, 5)[0], column(0, 0, 0, 1)[0]])
    # record 0: delta (1, 2, 4, 4) as in test_ecgadv: sum of squares 37, padded difference (0, 1, 2, 0, -4):
    # variance 4.16; record 1: delta (0, 0, 0, 1): 1, padded difference (0, 0, 0, 1, -1): mean 0, variance 2/5
    distances = evaluation_distances(x, x_adv)
    np.testing.assert_allclose(distances["d_l2"], [37.0, 1.0])
    np.testing.assert_allclose(distances["d_smooth"], [4.16, 0.4], rtol=1e-6)
    delta = tf.constant(x_adv - x)
    np.testing.assert_allclose(type1_distance("l2", delta, tf.constant(x_adv), tf.constant(x)).numpy(), [37.0, 1.0])


def test_attack_result_refuses_pickled_arrays(tmp_path: Path) -> None:
    arrays = {name: np.zeros(1) for name in ("x", "x_adv", "y_true", "y_clean", "y_adv", "y_target", "p_clean")}
    np.savez(tmp_path / "bad.npz", ids=np.array([{"any": "object"}], dtype=object), p_adv=np.zeros(1),
             seconds=np.zeros(1), **arrays)  # fmt: skip
    with pytest.raises(ValueError, match="allow_pickle"):
        AttackResult.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("options", [{"highpass_hz": 0.0}, {"notches_hz": (150.0,)}, {"notches_hz": (200.0,)}])
def test_device_filter_frequencies_must_lie_strictly_inside_the_band(options: dict[str, object]) -> None:
    with pytest.raises(AttackError, match=r"must lie in \(0, fs/2 = 150.0\) Hz"):
        device_filter_stages(300.0, **options)  # type: ignore[arg-type]


def test_device_notch_is_2_hz_wide_at_60_hz() -> None:
    # Q 30 at 60 Hz: a -3 dB width of 60 / 30 = 2 Hz, so |H| = 1 / sqrt 2 at 59 and 61 Hz; 120 Hz is allowed
    b, a = device_filter_stages(300.0, notches_hz=(60.0, 120.0))[1]
    _, response = scipy.signal.freqz(b, a, worN=[59.0, 61.0], fs=300.0)
    np.testing.assert_allclose(np.abs(response), 2**-0.5, atol=0.01)


def test_a_target_of_class_0_is_targeted() -> None:
    # true class 1 attacked towards class 0 lands on class 2: wrong, but not the target, so no success
    assert attack_success(np.array([1]), np.array([2]), np.array([0])).tolist() == [False]


def test_summary_table_by_hand() -> None:
    """The terminal's table: every sample, then one row per target class, each with its own n and rates."""
    labels = np.array([0, 0, 1, 1])
    delta = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])  # L2 5, 0, 1, 2; L-inf 4, 0, 1, 2
    result = AttackResult(
        x=np.zeros((4, 2)), x_adv=delta, ids=np.array(list("abcd")), y_true=labels, y_clean=labels,
        y_adv=np.array([1, 0, 0, 0]), y_target=np.array([1, 1, 0, 0]), p_clean=np.ones(4), p_adv=np.ones(4),
        seconds=np.zeros(4),
    )  # fmt: skip
    table = summary_table(result, ("no", "yes"))
    # all: y_adv 1 0 0 0 against y_clean = y_true 0 0 1 1: a, c and d changed class (3 of 4), each to its target
    # (3 of 4); b alone is still right (1 of 4); L2 mean (5+0+1+2)/4 = 2, L-inf mean (4+0+1+2)/4 = 1.75.
    # target yes (a, b): a fooled and hit, b not; robust 1 of 2; L2 2.5, L-inf 2.
    # target no (c, d): both moved to 0, the target (hit 2 of 2); fooled 2 of 2; robust 0; L2 1.5, L-inf 1.5.
    assert list(table["samples"]) == ["all", "target no", "target yes"]
    assert list(table["n"]) == [4, 2, 2]
    np.testing.assert_allclose(table["fooling_rate"], [3 / 4, 1.0, 0.5])
    np.testing.assert_allclose(table["robust_accuracy"], [1 / 4, 0.0, 0.5])
    np.testing.assert_allclose(table["attack_success_rate"], [3 / 4, 1.0, 0.5])
    np.testing.assert_allclose(table["l2_mean"], [2.0, 1.5, 2.5])
    np.testing.assert_allclose(table["linf_mean"], [1.75, 1.5, 2.0])
