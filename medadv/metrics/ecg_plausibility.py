"""Would a cardiologist notice? Standard ECG analysis of each clean and adversarial record, compared.

ECGadv (Chen et al., AAAI 2020) backed "the perturbed ECG reads like the original" with a survey; this
module measures it for every attack: neurokit2 (Makowski et al., 2021) cleans each record, finds its
R peaks and scores its quality (`templatematch`: a correlation in [0, 1], comparable across records,
where the default `averageQRS` moved more under 0.01 mV of noise than under a spike), and the clean
and adversarial readings are compared.

Units: the models see z-scored records, so a record (or its perturbation) is brought back to mV by
multiplying with `mv_per_unit` = the record's z-score std (raw units) / the data set's gain (units per mV),
which the CinC loader stores per record. The z-score's mean is an offset, irrelevant to every figure here.
Without a scale (a data set that does not carry one) the input units are taken as mV.

Records where fewer than two beats are found have no heart rate or RR statistics (NaN); records too
short for neurokit2's quality (under about 3 beats) have quality NaN. Any NaN among what the flag
checks makes `clinically_unchanged` False: unchanged is only claimed where it was measured.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import neurokit2 as nk
import numpy as np
import pandas as pd

from medadv.attacks.result import AttackResult
from medadv.data.base import Dataset
from medadv.metrics.attack import attack_success

MATCH_TOLERANCE_S = 0.05  # a beat is matched if the other reading has an R peak within 50 ms
MIN_BEATS_MATCHED = 0.95
MAX_HEART_RATE_CHANGE_BPM = 2.0
QUALITY_METHOD = "templatematch"  # Orphanidou et al. 2015: each beat's correlation with the record's mean beat
QUALITY_TOLERANCE = 0.02  # "quality not lower": lower by at most this (noise alone moves it by ~0.005)
HIGH_FREQUENCY_HZ = 40.0  # above the diagnostic band of a monitoring ECG front end
RR_STATISTICS = ("heart_rate_bpm", "rr_mean_ms", "sdnn_ms", "rmssd_ms")


def r_peaks(signal_mv: np.ndarray, fs_hz: float) -> tuple[np.ndarray, float]:
    """neurokit2's R peaks (sample indices) of one record in mV, and its mean quality (NaN if too short)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neurokit2 warns for flat or beat-less records; NaN says it here
        cleaned = nk.ecg_clean(np.asarray(signal_mv, dtype=np.float64), sampling_rate=fs_hz)
        peaks = np.asarray(nk.ecg_peaks(cleaned, sampling_rate=fs_hz)[1]["ECG_R_Peaks"], dtype=np.int64)
        try:
            scores = nk.ecg_quality(cleaned, rpeaks=peaks, sampling_rate=fs_hz, method=QUALITY_METHOD)
            quality = float(np.nanmean(scores))
        except (ValueError, IndexError):  # "The data length is too small to be segmented", or no peaks at all
            quality = float("nan")
    return peaks, quality


def rr_statistics(peaks: np.ndarray, fs_hz: float) -> dict[str, float]:
    """Heart rate (60 / mean RR) and the RR intervals' mean, SDNN and RMSSD in ms; NaN below two beats."""
    rr_ms = np.diff(peaks) / fs_hz * 1000.0
    if len(rr_ms) < 1:
        return dict.fromkeys(RR_STATISTICS, float("nan"))
    successive = np.diff(rr_ms)
    return {
        "heart_rate_bpm": 60000.0 / float(rr_ms.mean()),
        "rr_mean_ms": float(rr_ms.mean()),
        "sdnn_ms": float(rr_ms.std(ddof=1)) if len(rr_ms) > 1 else float("nan"),
        "rmssd_ms": float(np.sqrt(np.mean(successive**2))) if len(successive) else float("nan"),
    }


def beats_matched(clean: np.ndarray, adversarial: np.ndarray, tolerance: int) -> float:
    """Clean beats with an adversarial R peak within `tolerance` samples, over the larger of the two beat counts
    (so missed and added beats both lower it); 1.0 when neither reading has a beat, 0.0 when one has none."""
    if len(clean) == 0 or len(adversarial) == 0:
        return 1.0 if len(clean) == len(adversarial) else 0.0
    nearest = np.abs(clean[:, None] - adversarial[None, :]).min(axis=1)
    return float(np.sum(nearest <= tolerance)) / max(len(clean), len(adversarial))


def perturbation_figures(delta_mv: np.ndarray, clean_mv: np.ndarray, fs_hz: float) -> dict[str, float]:
    """SNR of the perturbation (dB; inf when it is zero), its spectral energy share above 40 Hz and its largest
    sample-to-sample jump in mV."""
    energy = float(np.sum(delta_mv**2))
    spectrum = np.abs(np.fft.rfft(delta_mv)) ** 2
    high = np.fft.rfftfreq(len(delta_mv), 1.0 / fs_hz) > HIGH_FREQUENCY_HZ
    return {
        "snr_db": 10 * np.log10(np.sum(clean_mv**2) / energy) if energy > 0 else float("inf"),
        "hf_share": float(spectrum[high].sum() / spectrum.sum()) if energy > 0 else 0.0,
        "max_jump_mv": float(np.abs(np.diff(delta_mv)).max()) if len(delta_mv) > 1 else 0.0,
    }


def record_plausibility(clean_mv: np.ndarray, adversarial_mv: np.ndarray, fs_hz: float) -> dict[str, float]:
    """The clinical reading of one record (mV, 1-D) before and after the attack, and whether it is unchanged."""
    clean_peaks, quality = r_peaks(clean_mv, fs_hz)
    adversarial_peaks, quality_adv = r_peaks(adversarial_mv, fs_hz)
    before, after = rr_statistics(clean_peaks, fs_hz), rr_statistics(adversarial_peaks, fs_hz)
    row = {
        "beats": float(len(clean_peaks)),
        "beats_adv": float(len(adversarial_peaks)),
        "beats_matched": beats_matched(clean_peaks, adversarial_peaks, round(MATCH_TOLERANCE_S * fs_hz)),
    }
    for name in RR_STATISTICS:
        row[name] = before[name]
        row[f"{name}_change"] = after[name] - before[name]
    row |= {"quality": quality, "quality_adv": quality_adv}
    row |= perturbation_figures(adversarial_mv - clean_mv, clean_mv, fs_hz)
    row["clinically_unchanged"] = bool(
        row["beats_matched"] >= MIN_BEATS_MATCHED
        and abs(row["heart_rate_bpm_change"]) <= MAX_HEART_RATE_CHANGE_BPM  # False when NaN
        and quality_adv >= quality - QUALITY_TOLERANCE
    )
    return row


def plausibility_table(
    x: np.ndarray,
    x_adv: np.ndarray,
    fs_hz: float,
    mv_per_unit: np.ndarray | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per record (x, x_adv: (n, L, 1) in model units): `record_plausibility` on the first `lengths[i]`
    samples (the recording, not the loader's zero padding), in mV through `mv_per_unit`."""
    n, length = len(x), int(np.prod(x.shape[1:]))
    scale = np.ones(n) if mv_per_unit is None else np.asarray(mv_per_unit, dtype=np.float64)
    ends = np.full(n, length) if lengths is None else np.clip(np.asarray(lengths), 0, length)
    flat, flat_adv = np.reshape(x, (n, length)), np.reshape(x_adv, (n, length))
    rows = [
        record_plausibility(flat[i, : ends[i]] * scale[i], flat_adv[i, : ends[i]] * scale[i], fs_hz) for i in range(n)
    ]
    return pd.DataFrame(rows)


def plausibility_metrics(table: pd.DataFrame, success: np.ndarray) -> dict[str, float]:
    """Run metrics: the mean of every column over the records where it is finite (`<column>_mean`; of the
    absolute value for changes, `<column>_abs_mean`), the share of clinically unchanged records, and
    `stealthy_success_rate`: the share that the attack fooled and that still read clinically unchanged."""
    metrics = {}
    for name in table.columns.drop("clinically_unchanged"):
        values = table[name].to_numpy(dtype=np.float64)
        values = np.abs(values) if name.endswith("_change") else values
        key = f"{name}_abs_mean" if name.endswith("_change") else f"{name}_mean"
        metrics[key] = float(np.mean(values[np.isfinite(values)])) if np.isfinite(values).any() else float("nan")
    unchanged = table["clinically_unchanged"].to_numpy(dtype=bool)
    metrics["clinically_unchanged_rate"] = float(unchanged.mean()) if len(unchanged) else float("nan")
    metrics["stealthy_success_rate"] = float(np.mean(unchanged & success)) if len(unchanged) else float("nan")
    return metrics


def run_plausibility(result: AttackResult, data: Dataset) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-record columns for `samples.parquet` and run metrics of an attack on ECG records `data` (rows aligned
    with `result`); nothing for data without a sampling rate (images, or signals of unknown rate)."""
    if data.fs_hz is None:
        return pd.DataFrame(index=range(len(result))), {}
    table = plausibility_table(result.x, result.x_adv, data.fs_hz, data.mv_per_unit, data.lengths)
    return table, plausibility_metrics(table, attack_success(result.y_true, result.y_adv, result.y_target))
