"""Clinical plausibility of adversarial ECGs (neurokit2's reading of clean vs adversarial records) and the
ECG preprocessing defenses evaluated with the adaptive attack beside the non-adaptive one."""

from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
import pandas as pd
import pytest

from medadv.attacks import Attack, make_attack, parse_config
from medadv.attacks.result import AttackResult
from medadv.attacks.runner import attack_batches
from medadv.data.base import Dataset
from medadv.defenses.ecg_filters import (
    DEFENSES,
    DefenseError,
    check_defense,
    defended,
    defense_evaluation,
    defense_verdict,
    frequency_response,
)
from medadv.metrics.ecg_plausibility import plausibility_metrics, plausibility_table, r_peaks, record_plausibility

FS_HZ = 300.0
# (amplitude mV, offset s from the R peak, width s) of the P, Q, R, S and T waves of a normal beat
BEAT = ((0.15, -0.20, 0.025), (-0.10, -0.03, 0.010), (1.0, 0.0, 0.012), (-0.25, 0.03, 0.012), (0.3, 0.25, 0.05))


def synthetic_ecg(r_peaks_at: np.ndarray, num_samples: int) -> np.ndarray:
    """A noiseless ECG in mV with its R peaks exactly at the sample indices `r_peaks_at`."""
    t = np.arange(num_samples) / FS_HZ
    return sum(
        amplitude * np.exp(-(((t - peak / FS_HZ - offset) / width) ** 2) / 2)
        for peak in r_peaks_at
        for amplitude, offset, width in BEAT
    )


BEATS = np.arange(150, 3000, 250)  # every 250 samples at 300 Hz: 72 bpm, 12 beats in 10 s
ECG = synthetic_ecg(BEATS, 3000)


def test_known_beats_are_found_exactly_and_the_heart_rate_is_exact() -> None:
    peaks, quality = r_peaks(ECG, FS_HZ)
    np.testing.assert_array_equal(peaks, BEATS)
    row = record_plausibility(ECG, ECG, FS_HZ)
    assert row["heart_rate_bpm"] == pytest.approx(72.0, abs=1e-9) and row["rr_mean_ms"] == pytest.approx(2500 / 3)
    assert row["beats_matched"] == 1.0 and row["heart_rate_bpm_change"] == 0.0 and row["snr_db"] == np.inf
    assert 0.9 < quality <= 1.0 and row["clinically_unchanged"]


def test_a_spike_is_flagged_and_a_small_smooth_perturbation_is_not() -> None:
    n = np.arange(len(ECG))
    spike = 2.0 * np.exp(-(((n - 1525) / 3.0) ** 2) / 2)  # a 2 mV, 10 ms spike between two beats
    smooth = 0.02 * np.sin(2 * np.pi * 5.0 * n / FS_HZ)  # 0.02 mV at 5 Hz
    flagged, passed = record_plausibility(ECG, ECG + spike, FS_HZ), record_plausibility(ECG, ECG + smooth, FS_HZ)
    assert not flagged["clinically_unchanged"] and flagged["beats_matched"] < 0.95
    assert flagged["max_jump_mv"] > 0.3 and flagged["hf_share"] > 1e-4
    assert passed["clinically_unchanged"] and passed["beats_matched"] == 1.0
    assert passed["max_jump_mv"] < 0.01 and passed["hf_share"] < 1e-6
    assert passed["snr_db"] == pytest.approx(10 * np.log10(np.sum(ECG**2) / np.sum(smooth**2)))


def test_records_without_beats_are_read_in_model_units_and_never_claimed_unchanged() -> None:
    x = np.stack([ECG / 0.5, np.zeros_like(ECG)])[..., None].astype(np.float32)  # z-units of 0.5 mV
    x_adv = x.copy()
    x_adv[0, 1000] += 1.0  # one 0.5 mV jump
    table = plausibility_table(x, x_adv, FS_HZ, mv_per_unit=np.array([0.5, 0.5]), lengths=[3000, 3000])
    assert table.loc[0, "max_jump_mv"] == pytest.approx(0.5, rel=1e-5)
    assert table.loc[1, "beats"] == 0 and np.isnan(table.loc[1, "heart_rate_bpm"])
    assert not table.loc[1, "clinically_unchanged"]
    metrics = plausibility_metrics(table, success=np.array([True, True]))
    assert (
        metrics["stealthy_success_rate"] == metrics["clinically_unchanged_rate"] == table["clinically_unchanged"].mean()
    )
    assert plausibility_metrics(table, success=np.array([False, False]))["stealthy_success_rate"] == 0.0
    assert metrics["heart_rate_bpm_mean"] == pytest.approx(table.loc[0, "heart_rate_bpm"])  # NaN rows left out


def test_linear_defenses_pass_the_ecg_band_and_bad_defenses_fail() -> None:
    bins = np.array([0, 5, 100, 400, 500, 600])  # 0, 0.5, 10, 40, 50 and 60 Hz of a 10 s record at 300 Hz
    bandpass, notch = (np.abs(frequency_response(name, 3000, FS_HZ)[bins]) for name in ("bandpass", "notch"))
    np.testing.assert_allclose(bandpass, [0, 0.5, 1, 0.5, 0.26, 0.12], atol=0.01)  # -3 dB at each corner
    np.testing.assert_allclose(notch, [0, 1, 1, 1, 0, 0], atol=0.01)
    images = Dataset("x", "all", np.zeros((1, 4, 4, 1), np.float32), np.zeros(1, np.int64), ("a",), (0, 1),
                     np.array(["i"]), "generated")  # fmt: skip
    with pytest.raises(DefenseError, match="unknown defense 'lowpass'"):
        check_defense("lowpass", images)
    with pytest.raises(DefenseError, match="filters ECG records"):
        check_defense("median", images)
    assert DEFENSES == ("bandpass", "notch", "median", "wavelet")
    verdicts = [defense_verdict(0.9, *rates) for rates in ((0.85, 0.9), (0.0, 0.85), (0.0, 0.5), (0.0, 0.05))]
    assert verdicts == [
        "no effect", "stops only the non-adaptive attack", "partly broken by the adaptive attack",
        "holds against the adaptive attack",
    ]  # fmt: skip


def _run(attack: Attack, model: keras.Model, data: Dataset, y_target: np.ndarray) -> AttackResult:
    batches = attack_batches(attack, model, data, y_target, batch_size=16, progress=False)
    return AttackResult.concatenate([batch for _, batch in batches])


def test_adaptive_attack_through_a_bandpass_recovers_what_the_nonadaptive_one_lost(
    tiny_ecg_model: keras.Model, tiny_ecg_data: Dataset
) -> None:
    data = replace(tiny_ecg_data.subset(np.arange(16)), fs_hz=FS_HZ)
    victim = defended(tiny_ecg_model, "bandpass", FS_HZ)
    config = parse_config("pgd", {"eps": "0.7", "eps_step": "0.14", "max_iter": "40"})
    y_target = np.full(len(data), -1)
    adaptive = _run(make_attack("pgd", victim, config, data.clip_range, 16), victim, data, y_target)
    bare = make_attack("pgd", tiny_ecg_model, config, data.clip_range, 16)
    rates = defense_evaluation(bare, tiny_ecg_model, victim, data, y_target, adaptive, batch_size=16, seed=0)
    print(rates)
    assert rates["undefended_success_rate"] >= 0.9 and rates["nonadaptive_success_rate"] <= 0.1
    assert rates["adaptive_success_rate"] >= 0.4
    assert defense_verdict(*rates.values()) != "holds against the adaptive attack"
    assert pd.Series(rates).between(0, 1).all()
