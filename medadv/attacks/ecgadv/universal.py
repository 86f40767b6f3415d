"""ECGadv's universal evaluation of Type II windows: each window the attack kept, passed through an ECG front
end's filters, added at random offsets to every long enough record of its source class; the victim's
predictions pooled per source -> target pair, beside the study's control (a real record of the target class
in the window's place)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from medadv.attacks.base import AttackError, AttackRun, Extras
from medadv.attacks.ecgadv.distances import zscore
from medadv.attacks.ecgadv.filters import circular_shift, device_filter, offset_range
from medadv.attacks.ecgadv.type2 import ECGadvTypeIIConfig
from medadv.attacks.figures import universal_rates_figure
from medadv.attacks.result import AttackResult
from medadv.attacks.runner import predict
from medadv.data.base import Dataset

UNIVERSAL_RECORDS = ("correct", "all")  # source records of the universal evaluation: the study's, or every one


@dataclass(frozen=True)
class UniversalEvaluation:
    """Predictions per class over every (record, position) of a universal evaluation."""

    counts: np.ndarray  # (num_classes,) int

    @property
    def shares(self) -> np.ndarray:
        return self.counts / max(int(self.counts.sum()), 1)


def universal_records(
    x: np.ndarray,
    y: np.ndarray,
    lengths: np.ndarray,
    source: int,
    min_length: int = 9000,
    y_pred: np.ndarray | None = None,
) -> np.ndarray:
    """The records of class `source` at least `min_length` samples long (30 s at 300 Hz, as the study);
    given the victim's predictions `y_pred`, only those it classifies correctly (the study's data_select lists)."""
    chosen = (np.asarray(y) == source) & (np.asarray(lengths) >= min_length)
    if y_pred is not None:
        chosen &= np.asarray(y_pred) == np.asarray(y)
    return np.asarray(x)[chosen]


def universal_evaluation(
    model: keras.Model,
    delta: np.ndarray,
    records: np.ndarray,
    *,
    fs_hz: float = 300.0,
    positions: int = 100,
    seed: int = 0,
    apply_device_filter: bool = True,
) -> UniversalEvaluation:
    """ECGadv's universal evaluation of a Type II window `delta` (w samples): pass it through the device
    filters (`device_filter`), add it at `positions` random offsets to every record (n, L, 1), z-score,
    and count the victim's predictions."""
    signal = np.asarray(delta, dtype=np.float64).reshape(-1)
    records = np.asarray(records, dtype=np.float32)
    if records.ndim != 3 or records.shape[2] != 1 or not 1 <= len(signal) <= records.shape[1]:
        raise AttackError(
            f"need records (n, L, 1) and a delta of at most L samples, got {records.shape}, {len(signal)}"
        )
    if positions < 1:
        raise AttackError(f"positions must be >= 1, got {positions}")
    if apply_device_filter:
        signal = device_filter(signal, fs_hz)
    length = records.shape[1]
    padded = np.zeros((1, length), dtype=np.float32)
    padded[0, : len(signal)] = signal
    offsets = np.random.default_rng(seed).integers(0, offset_range(length, len(signal)), size=(len(records), positions))
    num_classes = int(model.output_shape[-1])
    counts = np.zeros(num_classes, dtype=np.int64)
    for record, record_offsets in zip(records, offsets, strict=True):
        shifted = circular_shift(tf.constant(padded), tf.constant(record_offsets[None]))[0]
        probs = model(zscore(shifted[:, :, None] + record[None]), training=False)
        counts += np.bincount(np.argmax(np.asarray(probs), axis=1), minlength=num_classes)
    return UniversalEvaluation(counts)


def universal_control(
    model: keras.Model, target_record: np.ndarray, records: np.ndarray, *, positions: int = 100, seed: int = 0
) -> UniversalEvaluation:
    """The study's control: add a real record of the target class instead of delta (no device filter, so no
    sampling rate: `universal_evaluation` reads `fs_hz` only for the filter)."""
    return universal_evaluation(
        model, target_record, records, positions=positions, seed=seed, apply_device_filter=False
    )


def universal_table(
    result: AttackResult,
    model: keras.Model,
    data: Dataset,
    config: ECGadvTypeIIConfig,
    *,
    positions: int = 100,
    min_length: int = 0,
    correct_only: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """ECGadv's universal evaluation per source->target pair: every window the attack kept (the first
    `config.window` samples of a non-zero delta: its own success over random shifts, not `y_adv`, which
    sees the window at offset 0 only) is added at `positions` random offsets to every record of its source
    class in the split at least `min_length` samples long (0: the input length; `correct_only`: only those
    the victim classifies correctly, as the study); its predictions are pooled per pair. The control
    adds, in delta's place, the first `window` samples of the split's first such record of the target class."""
    lengths = data.lengths if data.lengths is not None else np.full(len(data), data.input_shape[0])
    y_pred = predict(model, data.x).argmax(axis=1) if correct_only else None
    min_length = min_length or data.input_shape[0]
    fs_hz = config.fs_hz
    rows = {}
    found = np.any(result.delta != 0, axis=tuple(range(1, result.delta.ndim)))
    pairs = sorted({(int(s), int(t)) for s, t in zip(result.y_true, result.y_target, strict=True)})
    for source, target in tqdm(pairs, desc="universal evaluation", unit="pair", file=sys.stderr):
        sources = universal_records(data.x, data.y, lengths, source, min_length, y_pred)
        deltas = result.delta[found & (result.y_true == source) & (result.y_target == target), : config.window]
        if len(sources) == 0 or len(deltas) == 0:
            continue
        counts = np.sum(
            [
                universal_evaluation(model, delta, sources, fs_hz=fs_hz, positions=positions, seed=seed).counts
                for delta in deltas
            ],
            axis=0,
        )
        controls = universal_records(data.x, data.y, lengths, target, min_length, y_pred)
        control = np.nan
        if len(controls):
            window = controls[0, : config.window]
            control = universal_control(model, window, sources, positions=positions, seed=seed).shares[target]
        name = f"{data.class_names[source]}->{data.class_names[target]}"
        rows[name] = _pair_row(source, target, len(deltas), len(sources), counts / counts.sum(), control, data)
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("pair")


def _pair_row(
    source: int, target: int, deltas: int, records: int, shares: np.ndarray, control: float, data: Dataset
) -> dict[str, Any]:
    """One pair's row of `universal.csv`: its counts, the share of each predicted class and the control's."""
    return {
        "source": source,
        "target": target,
        "deltas": deltas,
        "records": records,
        **{f"share_{name}": share for name, share in zip(data.class_names, shares, strict=True)},
        "target_share": shares[target],
        "control_target_share": control,
    }


class UniversalSettings(Protocol):
    """The attack entry point's settings that the universal evaluation reads."""

    @property
    def universal_positions(self) -> int: ...

    @property
    def universal_min_length(self) -> int: ...

    @property
    def universal_records(self) -> str: ...

    @property
    def seed(self) -> int: ...


def check_universal_settings(settings: UniversalSettings) -> None:
    """Refuse universal settings that make no sense, before any compute."""
    if settings.universal_records not in UNIVERSAL_RECORDS:
        raise AttackError(
            f"universal_records {settings.universal_records!r} is not one of {', '.join(UNIVERSAL_RECORDS)}"
        )


def universal_extras(run: AttackRun[ECGadvTypeIIConfig]) -> Extras:
    """Type II's extra evaluation: `universal.csv` (`universal_table`), its metrics (a pair counts as a majority
    pair when over half its predictions are the target) and the pairs x classes heatmap."""
    settings: UniversalSettings = run.settings
    table = universal_table(
        run.result,
        run.model,
        run.data,
        run.config,
        positions=settings.universal_positions,
        min_length=settings.universal_min_length,
        correct_only=settings.universal_records == "correct",
        seed=settings.seed,
    )
    if table.empty:
        note = "no Type II window found had source records to evaluate; universal.csv is empty"
        return Extras(tables={"universal.csv": table}, notes=(note,))
    return Extras(
        tables={"universal.csv": table},
        metrics={
            "universal_target_rate_mean": float(table["target_share"].mean()),
            "universal_majority_pairs": int((table["target_share"] > 0.5).sum()),
        },
        figures={"figures/universal_rates.png": universal_rates_figure(table, run.data.class_names)},
    )
