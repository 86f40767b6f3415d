"""ECGadv Type I / Type II: formulas pinned on hand-made vectors, then small end-to-end runs on `tiny_ecg_model`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from medadv.attacks import ATTACKS
from medadv.attacks.base import AttackError, AttackRun
from medadv.attacks.carlini import binary_search_update, cw_margin, targeted_success
from medadv.attacks.ecgadv import (
    METRICS,
    ECGadvTypeI,
    ECGadvTypeIConfig,
    ECGadvTypeII,
    ECGadvTypeIIConfig,
    evaluation_distances,
    power_in_range,
    record_lengths,
    selection_masks,
    smoothness,
    type1_distance,
    universal_control,
    universal_evaluation,
    universal_records,
    universal_table,
    zscore,
)
from medadv.attacks.ecgadv.filters import (
    DEFAULT_STOP_BANDS_HZ,
    STUDY_FFT_LENGTH,
    Bands,
    circular_shift,
    device_filter,
    fft_filter,
    fft_keep_mask,
    fft_zeroed_bins,
    offset_range,
    parse_bands,
)
from medadv.attacks.result import AttackResult
from medadv.data import load_dataset
from medadv.data.base import Dataset


def column(*values: float) -> np.ndarray:
    """One record (1, L, 1) from a hand-written list."""
    return np.array(values, dtype=np.float32)[None, :, None]


# --- formulas ----------------------------------------------------------------------------------


def test_zscore_uses_population_statistics_and_an_optional_mask() -> None:
    # mean 2.5, population variance 1.25
    np.testing.assert_allclose(zscore(column(1, 2, 3, 4)).numpy().ravel(), np.array([-1.5, -0.5, 0.5, 1.5]) / 1.25**0.5)
    # statistics of the first three samples only (mean 2, variance 2/3); the masked sample becomes 0
    masked = zscore(column(1, 2, 3, 9), column(1, 1, 1, 0)).numpy().ravel()
    np.testing.assert_allclose(masked, [-(1.5**0.5), 0.0, 1.5**0.5, 0.0], rtol=1e-6)


def test_smoothness_is_the_variance_of_the_zero_padded_first_difference() -> None:
    # Delta = (0, 2-1, 4-2, -4) = (0, 1, 2, -4): mean -1/4, mean of squares 21/4, variance 5.1875
    np.testing.assert_allclose(smoothness(column(1, 2, 4)).numpy(), [5.1875])


@pytest.mark.parametrize(("metric", "expected"), [("l2", 21.0), ("smooth", 51875.0), ("smooth_l2", 51875.21)])
def test_type1_distance_per_metric(metric: str, expected: float) -> None:
    delta = column(1, 2, 4)
    x = np.zeros_like(delta)
    np.testing.assert_allclose(type1_distance(metric, delta, x + delta, x).numpy(), [expected], rtol=1e-6)


@pytest.mark.parametrize(
    ("kappa", "margin", "success"),
    [(0.0, [1.0, 0.0], [False, True]), (4.5, [5.5, 0.5], [False, False])],
)
def test_cw_margin_and_success(kappa: float, margin: list[float], success: list[bool]) -> None:
    logits = np.array([[1.0, 3.0, 2.0], [5.0, 0.0, 1.0]], dtype=np.float32)
    target = np.array([2, 0])
    np.testing.assert_allclose(cw_margin(logits, target, kappa).numpy(), margin)
    np.testing.assert_array_equal(targeted_success(logits, target, kappa).numpy(), success)


def test_untargeted_margin_and_the_default_kappa() -> None:
    logits = np.array([[1.0, 3.0, 2.0], [5.0, 0.0, 1.0]], dtype=np.float32)
    labels = np.array([1, 0])
    # away from the true class: max(0, Z_y - max other + kappa): 3 - 2 + 0.5 = 1.5, 5 - 1 + 0.5 = 4.5
    np.testing.assert_allclose(cw_margin(logits, labels, 0.5, targeted=False).numpy(), [1.5, 4.5])
    # kappa 0 by default: the target 1 wins by 0.5 (3 vs 2.5), which a kappa of 1 would not count; the target 2
    # loses (1 vs 5)
    close = np.array([[1.0, 3.0, 2.5], [5.0, 0.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(targeted_success(close, np.array([1, 2])).numpy(), [True, False])


def test_evaluation_distances_on_a_hand_made_record() -> None:
    x_adv = column(1, 2, 4, 4)
    distances = evaluation_distances(np.zeros_like(x_adv), x_adv)
    # delta (1, 2, 4, 4): sum of squares 37; the optimised D's padded difference (0, 1, 2, 0, -4) has mean -0.2,
    # mean square 4.2 and variance 4.16 (the plain diff (1, 2, 0) would give 2/3)
    np.testing.assert_allclose(distances["d_l2"], [37.0])
    np.testing.assert_allclose(distances["d_smooth"], [4.16])
    np.testing.assert_allclose(distances["d_smooth_l2"], [1e4 * 4.16 + 0.37])


def test_binary_search_update_sequence() -> None:
    """Two samples from c = 1e-2: fail, fail, succeed, succeed, fail / always succeed."""
    outcomes = [(False, True), (False, True), (True, True), (True, True), (False, True)]
    c, lower, upper = np.full(2, 1e-2), np.zeros(2), np.full(2, 1e10)
    seen = [c.copy()]
    for success in outcomes:
        c, lower, upper = binary_search_update(c, lower, upper, np.array(success))
        seen.append(c.copy())
    np.testing.assert_allclose(
        np.array(seen)[:, 0], [1e-2, 0.1, 1.0, 0.55, 0.325, 0.4375]
    )  # x10 while no upper bound, then bisection
    np.testing.assert_allclose(np.array(seen)[:, 1], 1e-2 / 2 ** np.arange(6))
    np.testing.assert_allclose(lower, [0.325, 0.0])
    np.testing.assert_allclose(upper, [0.55, 1e-2 / 16])


def test_binary_search_takes_c_at_1e9_as_no_upper_bound_yet() -> None:
    """C&W's rule: c is bisected once the upper bound is below 1e9 (strictly); a success at c = 1e9 leaves the
    bound at 1e9, still "unknown", so c stays (success) rather than becoming the midpoint or growing."""
    c, lower, upper = binary_search_update(np.array([1e9]), np.zeros(1), np.full(1, 1e10), np.array([True]))
    np.testing.assert_array_equal(c, [1e9])
    np.testing.assert_array_equal(upper, [1e9])
    np.testing.assert_array_equal(lower, [0.0])


def test_selection_rules() -> None:
    rank = np.array([1.0, 2.0, 3.0, 0.5], dtype=np.float32)
    success = np.array([True, True, False, True])
    keep = np.array([True, False, True, True])
    step_rank = np.array([2.0, 3.0, np.inf, 0.5], dtype=np.float32)
    best_rank = np.array([np.inf, np.inf, np.inf, 1.0], dtype=np.float32)
    step_better, best_better = selection_masks(rank, success, keep, step_rank, best_rank)
    np.testing.assert_array_equal(np.asarray(step_better), [True, True, False, False])  # ties do not replace
    np.testing.assert_array_equal(np.asarray(best_better), [True, False, False, True])  # not kept: step best only
    power = np.array([0.5, 0.51, 1.49, 1.5], dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(power_in_range(power, 0.5, 1.5)), [False, True, True, False])


def test_type2_step_counts_only_if_the_best_success_has_power_above_one(tiny_ecg_model: keras.Model) -> None:
    attack = ECGadvTypeII(tiny_ecg_model, ECGadvTypeIIConfig(window=128))
    found, power = np.array([True, True, False]), np.array([1.2, 1.0, 2.0])
    np.testing.assert_array_equal(attack.step_succeeded(found, power), [True, False, False])


def test_record_lengths_find_the_zero_padding() -> None:
    x = np.array([[1, -2, 0, 3, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]], dtype=np.float32)[..., None]
    np.testing.assert_array_equal(record_lengths(x), [4, 6, 0])


def test_record_lengths_recover_the_cinc_loaders_padding(shared_data: Path) -> None:
    """`mask_to_length` finds the real samples from the zero padding; on the real records it must agree
    with the lengths the loader reports."""
    data = load_dataset("cinc2017", shared_data / "cinc2017", "all")
    assert data.lengths is not None and np.any(data.lengths < 9000)  # some records are padded
    np.testing.assert_array_equal(record_lengths(data.x), data.lengths)


# --- filters and shifts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "fs_hz", "bands", "expected"),
    [
        (9000, 300.0, parse_bands(DEFAULT_STOP_BANDS_HZ), [1, 1500, 1800]),  # CinC: 0.033 Hz, 50 Hz, 60 Hz
        (256, 256.0, ((49.5, 50.5),), [50]),
        (256, 256.0, ((10.0, 12.0), (0.0, 0.0)), [0, 10, 11, 12]),
        (256, 300.0, ((50.0, 50.0),), [43]),  # no bin at 50 Hz: the nearest, 50.4 Hz
    ],
)
def test_fft_zeroed_bins(length: int, fs_hz: float, bands: Bands, expected: list[int]) -> None:
    np.testing.assert_array_equal(fft_zeroed_bins(length, fs_hz, bands), expected)


def test_fft_zeroed_bins_reject_bands_above_nyquist() -> None:
    with pytest.raises(AttackError, match="fs/2"):
        fft_zeroed_bins(9000, 100.0, parse_bands(DEFAULT_STOP_BANDS_HZ))


@pytest.mark.parametrize(
    ("text", "bands"),
    [("0.018-0.055,50,60", ((0.018, 0.055), (50.0, 50.0), (60.0, 60.0))), ("", ()), (" 5 ", ((5.0, 5.0),))],
)
def test_parse_bands(text: str, bands: Bands) -> None:
    assert parse_bands(text) == bands


def test_fft_filter_zeroes_exactly_those_bins_and_commutes_with_shifts() -> None:
    signal = np.random.default_rng(0).normal(size=(2, 300)).astype(np.float32)
    keep = fft_keep_mask(300, 300.0, ((50.0, 50.0), (60.0, 61.0)))
    filtered = fft_filter(signal, keep).numpy()
    before, after = np.fft.rfft(signal), np.fft.rfft(filtered)
    np.testing.assert_allclose(np.abs(after[:, [50, 60, 61]]), 0.0, atol=1e-4)
    others = np.setdiff1d(np.arange(151), [50, 60, 61])
    np.testing.assert_allclose(after[:, others], before[:, others], atol=1e-3)
    offsets = np.array([[0, 7, 299], [150, 1, 42]])
    np.testing.assert_allclose(
        fft_filter(circular_shift(signal, offsets), keep).numpy(),
        circular_shift(filtered, offsets).numpy(),
        atol=1e-5,
    )


def test_type2_filters_each_shifted_copy_with_the_studys_16384_point_transform() -> None:
    # ECGadv's bins at 300 Hz: 1-3 (baseline), 2731 (50 Hz) and 3277 (60 Hz) of 16384, the default bands.
    study_bins = [1, 2, 3, 2731, 3277]
    np.testing.assert_array_equal(
        fft_zeroed_bins(STUDY_FFT_LENGTH, 300.0, parse_bands(DEFAULT_STOP_BANDS_HZ)), study_bins
    )
    rng = np.random.default_rng(0)
    padded = np.zeros((1, 900), dtype=np.float32)
    padded[0, :300] = rng.normal(size=300)
    offsets = np.array([[0, 123, 599]])
    shifted = circular_shift(padded, offsets).numpy()
    spectrum = np.fft.rfft(shifted, n=STUDY_FFT_LENGTH)
    spectrum[..., study_bins] = 0
    expected = np.fft.irfft(spectrum, n=STUDY_FFT_LENGTH)[..., :900]
    attack = ECGadvTypeII(last_sample_model(900), ECGadvTypeIIConfig(window=300))
    np.testing.assert_allclose(attack.filtered_copies(padded, offsets).numpy(), expected, atol=1e-4)
    # `record`: one 900-point circular filter before the shifts (bin 0, nearest the baseline band; 150 and 180)
    record = ECGadvTypeII(last_sample_model(900), ECGadvTypeIIConfig(window=300, fft_form="record"))
    keep = fft_keep_mask(900, 300.0, parse_bands(DEFAULT_STOP_BANDS_HZ))
    np.testing.assert_array_equal(np.flatnonzero(keep == 0), [0, 150, 180])
    np.testing.assert_allclose(
        record.filtered_copies(padded, offsets).numpy(),
        circular_shift(fft_filter(padded, keep), offsets).numpy(),
        atol=1e-5,
    )
    assert not np.allclose(record.filtered_copies(padded, offsets).numpy(), expected, atol=1e-3)


def test_circular_shift_and_offset_range() -> None:
    signal = np.arange(5, dtype=np.float32)[None]
    np.testing.assert_array_equal(
        circular_shift(signal, np.array([[0, 2]])).numpy()[0], [[0, 1, 2, 3, 4], [3, 4, 0, 1, 2]]
    )
    assert offset_range(9000, 9000) == 9000  # a full window wraps round: any offset
    assert offset_range(9000, 1500) == 7500  # a short one must fit: starts in [0, 7500)


def test_device_filter_removes_mains_and_baseline_and_keeps_the_ecg_band() -> None:
    t = np.arange(9000) / 300.0
    steady = slice(6000, None)  # after the IIR transients
    for mains_hz in (50.0, 60.0):
        assert np.abs(device_filter(np.sin(2 * np.pi * mains_hz * t), 300.0)[steady]).max() < 0.05
    assert np.abs(device_filter(np.ones_like(t), 300.0)[steady]).max() < 0.05
    passed = device_filter(np.sin(2 * np.pi * 10.0 * t), 300.0)[steady]
    assert 0.95 < np.abs(passed).max() < 1.05


# --- universal evaluation ----------------------------------------------------------------------


def last_sample_model(length: int) -> keras.Model:
    """A hand-set victim: class 1 if and only if the z-scored record's last sample exceeds 2."""
    inputs = keras.Input((length, 1))
    logits = keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="probs")(logits))
    kernel = np.zeros((length, 2), dtype=np.float32)
    kernel[-1, 1] = 1.0
    model.get_layer("logits").set_weights([kernel, np.array([2.0, 0.0], dtype=np.float32)])
    return model


def test_universal_evaluation_counts_on_a_hand_built_case() -> None:
    length, positions, seed = 16, 50, 3
    # Records of amplitude 0.1 (last sample -0.1): only z-scoring lifts a spike on them above the threshold of 2.
    records = np.tile(np.array([0.1, -0.1] * 8, dtype=np.float32)[None, :, None], (3, 1, 1))
    model = last_sample_model(length)
    spike_at_end = np.zeros(8)
    spike_at_end[-1] = 0.8
    counts = universal_evaluation(model, np.zeros(8), records, positions=positions, apply_device_filter=False).counts
    np.testing.assert_array_equal(counts, [3 * positions, 0])
    # a half-length window starts in [0, 8): its last sample never reaches the record's last sample
    counts = universal_evaluation(model, spike_at_end, records, positions=positions, apply_device_filter=False).counts
    np.testing.assert_array_equal(counts, [3 * positions, 0])
    # a full-length spike at index 3 lands on the last sample for offset 12 of the 16 circular offsets; there the
    # record is 0.7 (below 2), which z-scores to (0.7 - 0.05) / sqrt(0.04 - 0.05^2) = 3.36 (mean 0.8 / 16,
    # mean square (15 x 0.01 + 0.49) / 16)
    full = np.zeros(length)
    full[3] = 0.8
    result = universal_control(model, full, records, positions=positions, seed=seed)
    hits = int(np.sum(np.random.default_rng(seed).integers(0, length, size=(3, positions)) == 12))
    assert hits > 0
    np.testing.assert_array_equal(result.counts, [3 * positions - hits, hits])
    np.testing.assert_allclose(result.shares, result.counts / (3 * positions))


def test_universal_table_by_hand() -> None:
    """One source -> target pair: only the windows the attack found, only the source records the victim gets
    right, the pooled shares and the control's share, on the last-sample victim."""
    length, positions, seed = 16, 20, 3
    quiet = np.array([0.1, -0.1] * 8, dtype=np.float32)  # z-scores to +-1: class 0
    loud = quiet.copy()
    loud[-1] = 3.0  # raw last sample 3 > 2: the victim says class 1 (right for a class-1 record)
    wrong = quiet.copy()
    wrong[-1] = 5.0  # a class-0 record the victim gets wrong: left out of the sources
    x = np.stack([quiet, quiet, wrong, quiet, loud])[:, :, None]
    data = Dataset(
        "ecg", "test", x, np.array([0, 0, 0, 0, 1]), ("no", "yes"), (-10.0, 10.0), np.array(list("abcde")), ""
    )
    found, unchanged = np.zeros((length, 1), np.float32), np.zeros((length, 1), np.float32)
    found[0] = 1e-6  # a window the attack kept, too small to move any prediction
    result = AttackResult(
        x=x[:2], x_adv=x[:2] + np.stack([found, unchanged]), ids=np.array(["a", "b"]), y_true=np.array([0, 0]),
        y_clean=np.array([0, 0]), y_adv=np.array([0, 0]), y_target=np.array([1, 1]), p_clean=np.ones(2),
        p_adv=np.ones(2), seconds=np.ones(2),
    )  # fmt: skip
    model = last_sample_model(length)
    table = universal_table(result, model, data, ECGadvTypeIIConfig(window=length), positions=positions, seed=seed)
    # The control adds the first class-1 record (loud) at offset k to each quiet source: its 3.0 lands on the last
    # sample for k = 0 only, where the sum is 2 x quiet with a last sample of -0.1 + 3.0 = 2.9, mean 3.1 / 16 =
    # 0.19375, mean square (15 x 0.04 + 8.41) / 16 = 0.563125: z = (2.9 - 0.19375) / sqrt(0.563125 - 0.19375^2)
    # = 3.73 > 2, class 1; for k != 0 the last sample is -0.1 +- 0.1, below the mean: class 0.
    hits = int(np.sum(np.random.default_rng(seed).integers(0, length, size=(3, positions)) == 0))
    assert hits > 0
    row = table.loc["no->yes"]
    assert (row["source"], row["target"], row["deltas"], row["records"]) == (0, 1, 1, 3)
    assert (row["share_no"], row["share_yes"], row["target_share"]) == (1.0, 0.0, 0.0)
    assert row["control_target_share"] == pytest.approx(hits / (3 * positions))
    everyone = universal_table(
        result, model, data, ECGadvTypeIIConfig(window=length), positions=positions, seed=seed, correct_only=False
    )
    assert everyone.loc["no->yes", "records"] == 4  # the wrong one too: its own 5.0 z-scores above 2 at any offset
    assert everyone.loc["no->yes", "share_yes"] == pytest.approx(positions / (4 * positions))


def test_universal_records_keep_long_records_of_the_source_class() -> None:
    x = np.arange(4, dtype=np.float32)[:, None, None]
    chosen = universal_records(x, np.array([1, 1, 0, 1]), np.array([9000, 8999, 9000, 9500]), source=1)
    np.testing.assert_array_equal(chosen.ravel(), [0, 3])
    # with the victim's predictions: only the correctly classified ones (the study's data_select lists)
    chosen = universal_records(
        x, np.array([1, 1, 0, 1]), np.array([9000, 8999, 9000, 9500]), source=1, y_pred=np.array([1, 1, 0, 2])
    )
    np.testing.assert_array_equal(chosen.ravel(), [0])


def test_type2_extras_without_a_window_found_are_an_empty_table_and_a_note(tiny_ecg_model, tiny_ecg_data) -> None:  # type: ignore[no-untyped-def]
    x, y = tiny_ecg_data.x[:2], tiny_ecg_data.y[:2]
    unchanged = AttackResult(
        x, x.copy(), tiny_ecg_data.ids[:2], y, y, y, (y + 1) % 4, np.ones(2), np.ones(2), np.ones(2)
    )  # fmt: skip
    settings = SimpleNamespace(universal_positions=2, universal_min_length=0, universal_records="all", seed=0)
    run = AttackRun(unchanged, tiny_ecg_model, tiny_ecg_data, ECGadvTypeIIConfig(window=100), settings)
    extras = ATTACKS["ecgadv_type2"].extras(run)
    assert list(extras.tables) == ["universal.csv"] and extras.tables["universal.csv"].empty
    assert extras.notes == ("no Type II window found had source records to evaluate; universal.csv is empty",)
    assert not extras.metrics and not extras.figures


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ECGadvTypeIConfig(target=None), "targeted"),
        (ECGadvTypeIConfig(metric="l1"), "metric"),
        (ECGadvTypeIIConfig(fft_form="circular"), "fft_form"),
        (ECGadvTypeIConfig(learning_rate=0.0), "learning_rate"),
        (ECGadvTypeIConfig(max_iterations=0), "max_iterations"),
        (ECGadvTypeIIConfig(min_power=1.5, max_power=0.5), "min_power"),
        (ECGadvTypeIIConfig(stop_bands_hz="50,sixty"), "stop band"),
        (ECGadvTypeIIConfig(ensemble_size=0), "ensemble_size"),
    ],
)
def test_bad_settings_fail_before_any_compute(
    tiny_ecg_model: keras.Model, config: ECGadvTypeIConfig | ECGadvTypeIIConfig, message: str
) -> None:
    attack_class = ECGadvTypeI if isinstance(config, ECGadvTypeIConfig) else ECGadvTypeII
    with pytest.raises(AttackError, match=message):
        attack_class(tiny_ecg_model, config)


@pytest.mark.parametrize(
    ("config", "target", "message"),
    [
        (ECGadvTypeIConfig(), None, "one target class per record"),
        (ECGadvTypeIConfig(), np.array([4, 0]), "targets must lie"),
        (ECGadvTypeIIConfig(window=300), np.array([1, 0]), "longer than the records"),
        (ECGadvTypeIIConfig(window=230), np.array([1, 0]), "no shifted copies"),
    ],
)
def test_bad_inputs_fail_before_any_compute(
    tiny_ecg_model: keras.Model,
    tiny_ecg_data: Dataset,
    config: ECGadvTypeIConfig | ECGadvTypeIIConfig,
    target: np.ndarray | None,
    message: str,
) -> None:
    attack_class = ECGadvTypeI if isinstance(config, ECGadvTypeIConfig) else ECGadvTypeII
    attack = attack_class(tiny_ecg_model, config)
    with pytest.raises(AttackError, match=message):
        attack.generate(tiny_ecg_data.x[:2], tiny_ecg_data.y[:2], target)


# --- end to end on the tiny ECG model ----------------------------------------------------------


def tiny_type1(metric: str, **options: object) -> ECGadvTypeIConfig:
    """The study's loop on a small budget: a larger step and c0 make up for 60 iterations and 2 steps."""
    settings: dict[str, object] = {"learning_rate": 0.05, "initial_const": 100.0, "max_iterations": 60}
    return ECGadvTypeIConfig(metric=metric, binary_search_steps=2, **(settings | options))  # type: ignore[arg-type]


@pytest.mark.parametrize("metric", METRICS)
def test_type1_reaches_every_target(metric: str, tiny_ecg_model: keras.Model, tiny_ecg_data: Dataset) -> None:
    x, y = tiny_ecg_data.x[:6], tiny_ecg_data.y[:6]
    target = (y + 1) % 4
    x_adv = ECGadvTypeI(tiny_ecg_model, tiny_type1(metric)).generate(x, y, target)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    np.testing.assert_array_equal(np.argmax(tiny_ecg_model(x_adv, training=False), axis=1), target)
    if metric != "l2":  # the model was fed zscore(x + delta), and that is what comes back
        np.testing.assert_allclose(x_adv.mean(axis=1), 0.0, atol=1e-5)
        np.testing.assert_allclose(x_adv.std(axis=1), 1.0, atol=1e-4)


def test_batched_run_equals_one_record_at_a_time_and_drops_finished_records(
    tiny_ecg_model: keras.Model, tiny_ecg_data: Dataset
) -> None:
    x, y = tiny_ecg_data.x[:3], tiny_ecg_data.y[:3]
    target = (y + 1) % 4
    attack = ECGadvTypeI(tiny_ecg_model, tiny_type1("l2"), batch_size=2)  # 2 lanes: the third record waits
    x_adv = attack.generate(x, y, target)
    batched_iterations = attack.iterations_run
    singles, single_iterations = [], 0
    for i in range(3):
        singles.append(attack.generate(x[i : i + 1], y[i : i + 1], target[i : i + 1]))
        single_iterations += attack.iterations_run
    np.testing.assert_allclose(x_adv, np.concatenate(singles), atol=1e-4)
    assert batched_iterations == single_iterations  # stopped records cost no further iterations
    assert batched_iterations < 3 * 2 * 60  # and some did stop early


def test_unsuccessful_records_come_back_unchanged(tiny_ecg_model: keras.Model, tiny_ecg_data: Dataset) -> None:
    x, y = tiny_ecg_data.x[:2], tiny_ecg_data.y[:2]
    config = tiny_type1("l2", learning_rate=1e-4, initial_const=1e-3, max_iterations=5)
    np.testing.assert_array_equal(ECGadvTypeI(tiny_ecg_model, config).generate(x, y, (y + 1) % 4), x)


def test_mask_to_length_leaves_the_padding_alone(tiny_ecg_model: keras.Model, tiny_ecg_data: Dataset) -> None:
    x, y = tiny_ecg_data.x[:2].copy(), tiny_ecg_data.y[:2]
    x[:, 200:] = 0.0
    x_adv = ECGadvTypeI(tiny_ecg_model, tiny_type1("smooth_l2", mask_to_length=True)).generate(x, y, (y + 1) % 4)
    assert np.any(x_adv[:, :200] != x[:, :200])
    np.testing.assert_array_equal(x_adv[:, 200:], 0.0)


def test_type2_small_window_smoke(tiny_ecg_model: keras.Model, tiny_ecg_data: Dataset) -> None:
    x, y = tiny_ecg_data.x[:4], tiny_ecg_data.y[:4]
    window = 128
    config = ECGadvTypeIIConfig(
        window=window, ensemble_size=8, learning_rate=0.1, initial_const=10.0, max_iterations=50, binary_search_steps=3
    )
    x_adv = ECGadvTypeII(tiny_ecg_model, config, batch_size=4).generate(x, y, (y + 1) % 4)
    delta = (x_adv - x)[:, :, 0]
    np.testing.assert_array_equal(delta[:, window:], 0.0)  # the window sits at the start, unfiltered
    power = np.sum(delta**2, axis=1) / window
    found = power > 0
    assert found.any()
    assert np.all((power[found] > 0.5) & (power[found] < 1.5))
