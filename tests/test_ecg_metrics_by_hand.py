"""The ECG plausibility metrics and ECGadv's universal evaluation pinned on tiny hand-made cases, the arithmetic
in the comments: what the mutation score (benchmarks/mutation.py) found no test for."""

from __future__ import annotations

import math

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from test_ecg_plausibility import ECG, FS_HZ, synthetic_ecg
from test_ecgadv import last_sample_model

import medadv.attacks.ecgadv.universal as universal
import medadv.metrics.ecg_plausibility as plausibility
from medadv.attacks.base import AttackError
from medadv.attacks.ecgadv import ECGadvTypeIIConfig, universal_control, universal_evaluation, universal_table, zscore
from medadv.attacks.ecgadv.filters import fft_filter, fft_keep_mask, fft_zeroed_bins, parse_bands
from medadv.attacks.result import AttackResult
from medadv.data.base import Dataset
from medadv.metrics.ecg_plausibility import (
    beats_matched,
    perturbation_figures,
    plausibility_metrics,
    plausibility_table,
    r_peaks,
    record_plausibility,
    rr_statistics,
    run_plausibility,
)

COLUMNS = [
    "beats", "beats_adv", "beats_matched", "heart_rate_bpm", "heart_rate_bpm_change", "rr_mean_ms",
    "rr_mean_ms_change", "sdnn_ms", "sdnn_ms_change", "rmssd_ms", "rmssd_ms_change", "quality", "quality_adv",
    "snr_db", "hf_share", "max_jump_mv", "clinically_unchanged",
]  # fmt: skip


# --- RR statistics and matched beats -----------------------------------------------------------


@pytest.mark.filterwarnings("error")  # no "Degrees of freedom <= 0" or "Mean of empty slice" on the way
def test_rr_statistics_of_hand_placed_r_peaks() -> None:
    # peaks 0, 300, 900, 1200 at 300 Hz: RR 1000, 2000, 1000 ms, mean 4000/3 ms -> 60000 / (4000/3) = 45 bpm;
    # SDNN: deviations -1000/3, 2000/3, -1000/3, squares 6e6/9 over n - 1 = 2 -> sqrt(1e6/3) = 577.35 ms
    # (ddof 2 would give 816.5); RMSSD: successive +1000, -1000 -> sqrt(1e6) = 1000 ms (x*2 or x**3 would average 0)
    three = rr_statistics(np.array([0, 300, 900, 1200]), 300.0)
    assert three == pytest.approx(
        {"heart_rate_bpm": 45.0, "rr_mean_ms": 4000 / 3, "sdnn_ms": (1e6 / 3) ** 0.5, "rmssd_ms": 1000.0}
    )
    # two intervals 1000, 2000: mean 1500 ms, 40 bpm, SDNN sqrt(2 x 500^2 / 1) = 707.1 ms, RMSSD 1000 ms
    two = rr_statistics(np.array([0, 300, 900]), 300.0)
    assert two == pytest.approx(
        {"heart_rate_bpm": 40.0, "rr_mean_ms": 1500.0, "sdnn_ms": 500 * 2**0.5, "rmssd_ms": 1000.0}
    )
    # one interval of 1000 ms: 60 bpm, no SDNN and no RMSSD
    one = rr_statistics(np.array([0, 300]), 300.0)
    assert (one["heart_rate_bpm"], one["rr_mean_ms"]) == (60.0, 1000.0)
    assert math.isnan(one["sdnn_ms"]) and math.isnan(one["rmssd_ms"])
    # one beat: no interval, everything NaN
    assert all(math.isnan(value) for value in rr_statistics(np.array([7]), 300.0).values())


def test_beats_matched_counts_within_the_tolerance_over_the_larger_count() -> None:
    beats = np.array([100, 200])
    assert beats_matched(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 5) == 1.0  # no beat either side
    assert beats_matched(np.array([], dtype=np.int64), np.array([5]), 5) == 0.0  # all beats added
    assert beats_matched(np.array([5]), np.array([], dtype=np.int64), 5) == 0.0  # all beats missed
    assert beats_matched(beats, np.array([100, 900]), 5) == 0.5  # 1 of 2 clean beats has an adversarial one
    assert beats_matched(np.array([100]), np.array([100, 500]), 5) == 0.5  # 1 match over max(1, 2)
    assert beats_matched(beats, np.array([100]), 5) == 0.5  # 1 match over max(2, 1)
    assert beats_matched(np.array([100]), np.array([105]), 5) == 1.0  # exactly at the tolerance still matches


# --- perturbation figures ----------------------------------------------------------------------


@pytest.mark.filterwarnings("error")
def test_perturbation_figures_by_hand() -> None:
    n = np.arange(30)
    # 30 samples at 300 Hz: rfft bins every 10 Hz. 0.1 x a 40 Hz cosine (bin 4, |X| = 0.1 x 30/2 = 1.5) and 0.2 x a
    # 50 Hz one (bin 5, |X| = 3): energies 2.25 and 9, so only the 50 Hz bin lies above 40 Hz: 9 / 11.25 = 0.8
    # (|X| instead of |X|^2 would give 3/4.5). Energy sum(delta^2) = 0.01 x 15 + 0.04 x 15 = 0.75 (below 1);
    # against a clean record of 30 ones: SNR 10 log10(30 / 0.75) = 10 log10(40) dB.
    delta = 0.1 * np.cos(2 * np.pi * 40 * n / 300) + 0.2 * np.cos(2 * np.pi * 50 * n / 300)
    figures = perturbation_figures(delta, np.ones(30), 300.0)
    assert figures["hf_share"] == pytest.approx(0.8, abs=1e-12)
    assert figures["snr_db"] == pytest.approx(10 * np.log10(40.0))
    assert figures["max_jump_mv"] == pytest.approx(float(np.abs(np.diff(delta)).max()))
    # no perturbation (and a silent record): SNR inf, no high-frequency share, no jump, and no 0/0 on the way
    silent = perturbation_figures(np.zeros(5), np.zeros(5), 300.0)
    assert silent == {"snr_db": np.inf, "hf_share": 0.0, "max_jump_mv": 0.0}
    # one sample: no jump; its only bin is 0 Hz. SNR 10 log10(1 / 0.25)
    one = perturbation_figures(np.array([0.5]), np.array([1.0]), 300.0)
    assert one == pytest.approx({"snr_db": 10 * np.log10(4.0), "hf_share": 0.0, "max_jump_mv": 0.0})
    # two samples: one jump of 0.3; bins 0 and 150 Hz, X = (0.3, -0.3): half the energy above 40 Hz; 10 log10(2 / 0.09)
    two = perturbation_figures(np.array([0.0, 0.3]), np.array([1.0, 1.0]), 300.0)
    assert two == pytest.approx({"snr_db": 10 * np.log10(2 / 0.09), "hf_share": 0.5, "max_jump_mv": 0.3})


# --- neurokit2's reading of one record ---------------------------------------------------------


def test_r_peaks_are_integer_indices_and_quality_is_nan_where_unmeasured() -> None:
    peaks, quality = r_peaks(np.zeros(3000), FS_HZ)  # neurokit2 gives an empty float array for no beats
    assert peaks.dtype == np.int64 and len(peaks) == 0 and math.isnan(quality)
    peaks, quality = r_peaks(ECG[:400], FS_HZ)  # one beat: too short for the quality
    np.testing.assert_array_equal(peaks, [150])
    assert peaks.dtype == np.int64 and math.isnan(quality)


def test_record_plausibility_columns_and_a_shifted_reading() -> None:
    shifted = synthetic_ecg(np.arange(160, 3000, 250), 3000)  # every beat 10 samples (33 ms) later: within 50 ms
    row = record_plausibility(ECG, shifted, FS_HZ)
    assert list(row) == COLUMNS
    assert (row["beats"], row["beats_adv"], row["beats_matched"]) == (12.0, 12.0, 1.0)  # tolerance round(0.05 x 300)
    assert row["heart_rate_bpm_change"] == pytest.approx(0.0, abs=1e-9) and 0.9 < row["quality_adv"] <= 1.0


def test_clinically_unchanged_thresholds_are_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    # the same record twice: beats matched exactly 1.0, heart-rate change exactly 0, quality equal: unchanged even
    # with every threshold at that very edge
    monkeypatch.setattr(plausibility, "MIN_BEATS_MATCHED", 1.0)
    monkeypatch.setattr(plausibility, "MAX_HEART_RATE_CHANGE_BPM", 0.0)
    monkeypatch.setattr(plausibility, "QUALITY_TOLERANCE", 0.0)
    row = record_plausibility(ECG, ECG, FS_HZ)
    assert row["beats_matched"] == 1.0 and row["heart_rate_bpm_change"] == 0.0 and row["quality_adv"] == row["quality"]
    assert row["clinically_unchanged"]


# --- the table and its metrics -----------------------------------------------------------------


def test_plausibility_table_defaults_lengths_and_scale() -> None:
    x = ECG[None, :, None].astype(np.float32)
    table = plausibility_table(x, x.copy(), FS_HZ)  # no scale (mV), no lengths (all 3000 samples)
    assert list(table.columns) == COLUMNS and len(table) == 1
    assert table.loc[0, "beats"] == 12.0 and table.loc[0, "heart_rate_bpm"] == pytest.approx(72.0, abs=1e-6)
    # the first 1500 samples only: beats at 150, 400, ..., 1400
    assert plausibility_table(x, x.copy(), FS_HZ, lengths=[1500]).loc[0, "beats"] == 6.0
    # a negative length is clipped to an empty recording, which neurokit2 refuses ("greater than padlen")
    with pytest.raises(ValueError, match="padlen"):
        plausibility_table(x, x.copy(), FS_HZ, lengths=[-1000])
    # a float32 scale is read in float64: the jump of 3 units is 3 x float64(float32(0.1)) = 0.30000000447 mV,
    # where float32 arithmetic would give 0.30000001192
    silent = np.zeros((1, 3000, 1), dtype=np.float32)
    jumped = silent.copy()
    jumped[0, 1000, 0] = 3.0
    scaled = plausibility_table(silent, jumped, FS_HZ, mv_per_unit=np.array([0.1], dtype=np.float32))
    assert scaled.loc[0, "max_jump_mv"] == 3.0 * np.float64(np.float32(0.1))


@pytest.mark.filterwarnings("error")
def test_plausibility_metrics_by_hand() -> None:
    table = pd.DataFrame(
        {
            "beats": pd.Series([2.0, 4.0, 6.0], dtype=object),  # objects (as a join leaves them) are read as floats
            "snr_db": [-10.0, 20.0, np.inf],  # finite ones: (-10 + 20) / 2 = 5, signed (not 15)
            "heart_rate_bpm_change": [-1.0, 3.0, np.nan],  # |-1| and |3|: 2 (not 1)
            "sdnn_ms": [np.nan, np.nan, np.nan],  # nothing finite: NaN, without a mean of an empty slice
            "clinically_unchanged": [1.0, 0.0, 1.0],  # a 0/1 flag is read as booleans
        }
    )
    metrics = plausibility_metrics(table, success=np.array([True, True, False]))
    assert list(metrics) == [
        "beats_mean", "snr_db_mean", "heart_rate_bpm_change_abs_mean", "sdnn_ms_mean", "clinically_unchanged_rate",
        "stealthy_success_rate",
    ]  # fmt: skip
    assert metrics["beats_mean"] == 4.0 and metrics["snr_db_mean"] == 5.0
    assert metrics["heart_rate_bpm_change_abs_mean"] == 2.0 and math.isnan(metrics["sdnn_ms_mean"])
    assert metrics["clinically_unchanged_rate"] == pytest.approx(2 / 3)  # records 0 and 2
    assert metrics["stealthy_success_rate"] == pytest.approx(1 / 3)  # record 0: unchanged and fooled
    empty = plausibility_metrics(pd.DataFrame({"beats": [], "clinically_unchanged": []}), success=np.zeros(0, bool))
    assert list(empty) == ["beats_mean", "clinically_unchanged_rate", "stealthy_success_rate"]
    assert all(math.isnan(value) for value in empty.values())


def test_run_plausibility_reads_lengths_and_success_per_target() -> None:
    x = np.stack([ECG] * 3)[:, :, None].astype(np.float32)
    ids = np.array(["a", "b", "c"])
    data = Dataset(
        "ecg", "test", x, np.zeros(3, np.int64), ("n", "a"), (-10.0, 10.0), ids, "",
        lengths=np.array([3000, 1500, 3000]), fs_hz=FS_HZ,
    )  # fmt: skip
    # untargeted and still right (a miss), then two targeted hits: success (F, T, T)
    result = AttackResult(
        x, x.copy(), ids, np.zeros(3, np.int64), np.zeros(3, np.int64), np.array([0, 1, 1]), np.array([-1, 1, 1]),
        np.ones(3), np.ones(3), np.ones(3),
    )  # fmt: skip
    table, metrics = run_plausibility(result, data)
    assert list(table["beats"]) == [12.0, 6.0, 12.0]  # record 1 cut at its length
    assert metrics["clinically_unchanged_rate"] == 1.0
    assert metrics["stealthy_success_rate"] == pytest.approx(2 / 3)


# --- z-score and FFT bins ----------------------------------------------------------------------


def test_zscore_statistics_are_per_record_in_a_batch() -> None:
    batch = np.array([[1, 2, 3, 4], [0, 0, 0, 4]], dtype=np.float32)[:, :, None]
    z = zscore(batch).numpy()
    assert z.shape == (2, 4, 1)
    # record 0: mean 2.5, variance 1.25; record 1: mean 1, variance (3 x 1 + 9) / 4 = 3
    np.testing.assert_allclose(z[0, :, 0], np.array([-1.5, -0.5, 0.5, 1.5]) / 1.25**0.5, rtol=1e-6)
    np.testing.assert_allclose(z[1, :, 0], np.array([-1, -1, -1, 3]) / 3**0.5, rtol=1e-6)
    signal = np.array([[1, 2, 3, 9], [4, 0, 2, 7]], dtype=np.float32)[:, :, None]
    mask = np.array([[1, 1, 1, 0], [0, 1, 1, 1]], dtype=np.float32)[:, :, None]
    masked = zscore(signal, mask).numpy()
    assert masked.shape == (2, 4, 1)
    # record 0: samples 1, 2, 3 (mean 2, variance 2/3); record 1: samples 0, 2, 7 (mean 3, variance 26/3)
    np.testing.assert_allclose(masked[0, :, 0], [-(1.5**0.5), 0.0, 1.5**0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(masked[1, :, 0], np.array([0.0, -3.0, -1.0, 4.0]) / (26 / 3) ** 0.5, rtol=1e-6)


def test_fft_bins_at_the_nyquist_edge_and_their_dtypes() -> None:
    np.testing.assert_array_equal(fft_zeroed_bins(256, 256.0, ((128.0, 128.0),)), [128])  # fs/2 itself is allowed
    # odd length 255 at 255 Hz: bin centres at whole Hz, the last one 127; 127.5 Hz holds none, and its nearest,
    # round(127.5) = 128, is past the last bin 255 // 2 = 127
    np.testing.assert_array_equal(fft_zeroed_bins(255, 255.0, ((127.5, 127.5),)), [127])
    none = fft_zeroed_bins(256, 256.0, ())
    assert none.dtype == np.int64 and none.size == 0
    keep = fft_keep_mask(8, 8.0, ())
    assert keep.dtype == np.float32 and keep.tolist() == [1.0] * 5
    # an odd-length record keeps its length through the inverse transform (rfft of 7 points: 4 bins)
    signal = tf.constant(np.arange(1, 8, dtype=np.float32)[None])
    np.testing.assert_allclose(fft_filter(signal, tf.ones(4)).numpy(), signal.numpy(), atol=1e-5)
    with pytest.raises(AttackError, match="stop band 'x' is not 'low-high' or one frequency in Hz"):
        parse_bands("50,x")


# --- universal evaluation ----------------------------------------------------------------------

QUIET = np.array([0.1, -0.1] * 8, dtype=np.float32)  # z-scores to +-1: the last-sample victim says class 0
LOUD = np.concatenate([QUIET[:-1], [3.0]]).astype(np.float32)  # raw last sample 3 > 2: class 1
SPIKE = np.zeros(16)
SPIKE[3] = 0.8  # a full-length window: on a quiet record it reaches the last sample at circular offset 12 only,
# where the sum is 0.7: z = (0.7 - 0.05) / sqrt(0.04 - 0.05^2) = 3.36 > 2, class 1 (test_ecgadv's arithmetic)


def hits(seed: int, shape: tuple[int, int], offset: int) -> int:
    """How many of the offsets drawn as the universal evaluation draws them (16 start positions) equal `offset`."""
    return int(np.sum(np.random.default_rng(seed).integers(0, 16, size=shape) == offset))


@pytest.fixture
def filter_calls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sampling rates `device_filter` was called with; the filter itself passes the window through unchanged."""
    calls: list[float] = []

    def identity(signal: np.ndarray, fs_hz: float) -> np.ndarray:
        calls.append(fs_hz)
        return np.asarray(signal, dtype=np.float64)

    monkeypatch.setattr(universal, "device_filter", identity)
    return calls


def test_universal_evaluation_and_control_defaults(filter_calls: list[float]) -> None:
    records = np.tile(QUIET.astype(np.float64)[None, :, None], (3, 1, 1))  # float64 records are read as float32
    model = last_sample_model(16)
    expected = hits(0, (3, 100), 12)  # defaults: 100 positions per record, seed 0
    assert expected > 0
    evaluation = universal_evaluation(model, SPIKE, records)
    assert filter_calls == [300.0]  # the device filter, at 300 Hz
    assert evaluation.counts.dtype == np.int64
    np.testing.assert_array_equal(evaluation.counts, [300 - expected, expected])
    control = universal_control(model, SPIKE, records)
    assert filter_calls == [300.0]  # the control adds a real record: no filter
    np.testing.assert_array_equal(control.counts, [300 - expected, expected])


def test_universal_evaluation_edges_and_refusals() -> None:
    records = np.tile(QUIET[None, :, None], (3, 1, 1))
    model = last_sample_model(16)
    one = universal_evaluation(model, np.zeros(1), records, positions=1, apply_device_filter=False)
    np.testing.assert_array_equal(one.counts, [3, 0])  # a 1-sample window, 1 position per record
    with pytest.raises(AttackError, match=r"need records \(n, L, 1\) and a delta of at most L samples"):
        universal_evaluation(model, np.zeros(4), np.zeros((3, 16, 2)))
    with pytest.raises(AttackError, match="got \\(3, 16, 1\\), 17"):
        universal_evaluation(model, np.zeros(17), records)
    with pytest.raises(AttackError, match="got \\(3, 16, 1\\), 0"):
        universal_evaluation(model, np.zeros(0), records)
    with pytest.raises(AttackError, match="positions must be >= 1, got 0"):
        universal_evaluation(model, np.zeros(4), records, positions=0)


def test_universal_evaluation_runs_the_victim_in_inference_mode() -> None:
    inputs = keras.Input((16, 1))
    dropped = keras.layers.Dropout(0.9)(keras.layers.Flatten()(inputs))
    logits = keras.layers.Dense(2, name="logits")(dropped)
    model = keras.Model(inputs, keras.layers.Activation("softmax")(logits))
    kernel = np.zeros((16, 2), dtype=np.float32)
    kernel[-1, 1] = 1.0
    model.get_layer("logits").set_weights([kernel, np.array([2.0, 0.0], dtype=np.float32)])
    records = np.tile(QUIET[None, :, None], (3, 1, 1))
    expected = hits(3, (3, 50), 12)  # training mode would drop 90% of the spikes that land on the last sample
    assert expected > 0
    counts = universal_evaluation(model, SPIKE, records, positions=50, seed=3, apply_device_filter=False).counts
    np.testing.assert_array_equal(counts, [150 - expected, expected])


class InputDtypes:
    """The last-sample victim, noting the dtype of every batch it is called on."""

    def __init__(self) -> None:
        self.model = last_sample_model(16)
        self.output_shape = self.model.output_shape
        self.dtypes: list[tf.DType] = []

    def __call__(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        self.dtypes.append(x.dtype)
        return self.model(x, training=training)


def test_universal_evaluation_feeds_the_victim_float32() -> None:
    victim = InputDtypes()
    records = np.tile(QUIET[None, :, None], (2, 1, 1))
    counts = universal_evaluation(victim, SPIKE, records, positions=3, apply_device_filter=False).counts  # type: ignore[arg-type]
    assert counts.sum() == 6 and victim.dtypes == [tf.float32, tf.float32]  # one batch per record, as the attack


def _result(x: np.ndarray, delta: np.ndarray, y_true: list[int], y_target: list[int]) -> AttackResult:
    n = len(x)
    return AttackResult(
        x=x, x_adv=x + delta, ids=np.array([f"r{i}" for i in range(n)]), y_true=np.array(y_true),
        y_clean=np.array(y_true), y_adv=np.array(y_true), y_target=np.array(y_target), p_clean=np.ones(n),
        p_adv=np.ones(n), seconds=np.ones(n),
    )  # fmt: skip


def test_universal_table_defaults_lengths_and_the_correct_control(filter_calls: list[float]) -> None:
    # class 0: a 16-sample quiet record and one only 10 samples long (below the default minimum: the input length);
    # class 1: a quiet record the victim gets wrong (raw last sample -0.1: class 0), then a loud one it gets right
    x = np.stack([QUIET, QUIET, QUIET, LOUD])[:, :, None]
    data = Dataset(
        "ecg", "test", x, np.array([0, 0, 1, 1]), ("no", "yes"), (-10.0, 10.0), np.array(list("abcd")), "",
        lengths=np.array([16, 10, 16, 16]),
    )  # fmt: skip
    spike = SPIKE.astype(np.float32)[:, None]
    result = _result(x[[0, 0]], np.stack([spike, np.zeros_like(spike)]), [0, 0], [1, 1])  # one window found
    model = last_sample_model(16)
    config = ECGadvTypeIIConfig(window=16, fs_hz=250.0)
    for kwargs, seed, positions in (({}, 0, 100), ({"positions": 40, "seed": 3}, 3, 40)):
        table = universal_table(result, model, data, config, **kwargs)  # type: ignore[arg-type]
        assert table.index.name == "pair" and list(table.index) == ["no->yes"]
        row = table.loc["no->yes"]
        assert (row["source"], row["target"], row["deltas"], row["records"]) == (0, 1, 1, 1)
        # the spike hits at offset 12; the control (the loud record, not the first class-1 one) at offset 0, where
        # the quiet source plus it has a last sample of 2.9: z = 3.73 > 2 (test_ecgadv's arithmetic)
        spiked, controlled = hits(seed, (1, positions), 12), hits(seed, (1, positions), 0)
        assert spiked > 0 and controlled > 0
        assert row["share_yes"] == row["target_share"] == pytest.approx(spiked / positions)
        assert row["share_no"] == pytest.approx(1 - spiked / positions)
        assert row["control_target_share"] == pytest.approx(controlled / positions)
    assert set(filter_calls) == {250.0}  # the config's sampling rate, not the default 300 Hz


def test_universal_table_skips_pairs_without_windows_and_refuses_mismatches(filter_calls: list[float]) -> None:
    x = np.stack([QUIET, LOUD])[:, :, None]
    data = Dataset("ecg", "test", x, np.array([0, 1]), ("no", "yes"), (-10.0, 10.0), np.array(["a", "b"]), "")
    tiny = np.zeros((2, 16, 1), np.float32)
    tiny[1, 0] = 1e-6  # no window for no->yes (sorted first), a window too small to matter for yes->no
    result = _result(x, tiny, [0, 1], [1, 0])
    model, config = last_sample_model(16), ECGadvTypeIIConfig(window=16)
    table = universal_table(result, model, data, config, positions=5)
    # yes->no: the one loud source stays class 1 at every offset, and so does it plus the quiet control
    assert list(table.index) == ["yes->no"]
    assert table.loc["yes->no"].to_dict() == {
        "source": 1, "target": 0, "deltas": 1, "records": 1, "share_no": 0.0, "share_yes": 1.0, "target_share": 0.0,
        "control_target_share": 0.0,
    }  # fmt: skip
    # without a correctly classified record of the target class the control is NaN (a float, not None)
    alone = Dataset("ecg", "test", x[1:], np.array([1]), ("no", "yes"), (-10.0, 10.0), np.array(["b"]), "")
    single = _result(x[1:], tiny[1:], [1], [0])
    control = universal_table(single, model, alone, config, positions=5).loc["yes->no", "control_target_share"]
    assert isinstance(control, float) and math.isnan(control)
    # three class names for a two-class victim, or targets for fewer samples than labels: refused
    three = Dataset("ecg", "test", x[1:], np.array([1]), ("no", "yes", "maybe"), (-10.0, 10.0), np.array(["b"]), "")
    with pytest.raises(ValueError, match="zip"):
        universal_table(single, model, three, config, positions=5)
    with pytest.raises(ValueError, match="zip"):
        universal_table(_result(x, tiny, [0, 1], [1]), model, data, config, positions=5)
