"""PhysioNet/CinC Challenge 2017 single-lead ECGs, preprocessed as the ECGadv study did.

On disk: `REFERENCE*.csv` (`record,label`, no header, labels N A O ~), one MATLAB v4 `<record>.mat`
per record holding `val` (int16, shape (1, n), 1000 units/mV, 300 Hz) and a WFDB `<record>.hea`
whose first line puts the date before the time and whose lines end in CRLF.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medadv.data.base import DataError, Dataset, require_dir, select_split

CLASS_NAMES = ("A", "N", "O", "~")  # the study's order: AF, normal, other rhythm, noisy
FS_HZ = 300
GAIN_PER_MV = 1000


def label_file(root: Path) -> Path:
    """The newest `REFERENCE*.csv` (the challenge re-released its labels as -v2, -v3)."""
    candidates = sorted(require_dir(root, "CinC 2017").glob("REFERENCE*.csv"))
    if not candidates:
        raise DataError(f"{root}: no REFERENCE*.csv label file found")
    return candidates[-1]


def read_labels(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    for row in rows:
        if len(row) != 2 or row[1] not in CLASS_NAMES:
            raise DataError(f"{path}: bad row {','.join(row)!r}; expected record,label with label in N A O ~")
    return [(record, label) for record, label in rows]


def read_header(path: Path) -> tuple[int, float, int, int]:
    """Sampling rate, gain (units/mV), signal count and sample count from a WFDB header, tolerating CRLF
    and date-before-time."""
    lines = path.read_text().splitlines()
    try:
        record = lines[0].split()
        num_signals, fs_hz, num_samples = int(record[1]), int(float(record[2])), int(record[3])
        gain = float(lines[1].split()[2].split("/")[0].split("(")[0])
    except (IndexError, ValueError):
        raise DataError(f"{path}: malformed WFDB header") from None
    return fs_hz, gain, num_signals, num_samples


def check_header(path: Path, signal: np.ndarray) -> float:
    """The record's gain, once its header agrees with the `.mat` beside it (one lead, 300 Hz, its length)."""
    fs_hz, gain, num_signals, num_samples = read_header(path)
    if fs_hz != FS_HZ:
        raise DataError(f"{path}: sampled at {fs_hz} Hz; the CinC 2017 models expect {FS_HZ} Hz")
    if gain <= 0:
        raise DataError(f"{path}: gain must be positive, got {gain}")
    if num_signals != 1:
        raise DataError(f"{path}: declares {num_signals} signals; CinC 2017 records have one lead")
    if num_samples != len(signal):
        raise DataError(
            f"{path}: declares {num_samples} samples, but {path.with_suffix('.mat').name} holds {len(signal)}"
        )
    return gain


def read_record(mat_path: Path) -> np.ndarray:
    """The raw int16 samples of one record, shape (n,)."""
    import scipy.io  # here: a step's input checks import this module, and scipy.io alone takes most of a second

    if not mat_path.is_file():
        raise DataError(f"{mat_path}: record listed in the label file but not found")
    try:
        val = scipy.io.loadmat(mat_path)["val"]
    except Exception as error:  # scipy raises many types for truncated or foreign files
        raise DataError(f"{mat_path}: cannot read a MATLAB v4 'val' array ({type(error).__name__})") from None
    if val.dtype != np.int16 or val.ndim != 2 or val.shape[0] != 1:
        raise DataError(f"{mat_path}: 'val' must be int16 of shape (1, n), found {val.dtype} {val.shape}")
    return val[0]


def mv_per_unit(signal: np.ndarray, length: int, gain: float) -> float:
    """mV per unit of the preprocessed record: the z-score divided by std (raw units), the raw units by gain."""
    std = np.nan_to_num(signal.astype(np.float64))[:length].std()
    return float((std if std > 0 else 1.0) / gain)


def preprocess(signal: np.ndarray, length: int) -> np.ndarray:
    """ECGadv's preprocessing: nan_to_num, crop to `length`, z-score the cropped part, zero-pad."""
    cropped = np.nan_to_num(signal.astype(np.float64))[:length]
    std = cropped.std()
    cropped = (cropped - cropped.mean()) / (std if std > 0 else 1.0)
    out = np.zeros(length, dtype=np.float32)
    out[: len(cropped)] = cropped
    return out[:, None]


def load(root: Path, split: str = "all", *, length: int = 9000) -> Dataset:
    """Records of `split` (stable hash split on record names), shape (n, length, 1)."""
    if length < 1:
        raise DataError(f"{root}: length must be positive, got {length}")
    labels_path = label_file(root)
    rows = read_labels(labels_path)
    rows = [rows[i] for i in select_split([record for record, _ in rows], split)]
    x = np.zeros((len(rows), length, 1), dtype=np.float32)
    lengths = np.zeros(len(rows), dtype=np.int64)
    scale = np.zeros(len(rows), dtype=np.float64)
    for i, (record, _) in enumerate(rows):
        signal = read_record(root / f"{record}.mat")
        header = root / f"{record}.hea"
        gain = check_header(header, signal) if header.is_file() else GAIN_PER_MV
        x[i] = preprocess(signal, length)
        lengths[i] = min(len(signal), length)
        scale[i] = mv_per_unit(signal, length, gain)
    y = np.array([CLASS_NAMES.index(label) for _, label in rows], dtype=np.int64)
    ids = np.array([record for record, _ in rows])
    return Dataset(
        "cinc2017", split, x, y, CLASS_NAMES, (-np.inf, np.inf), ids, str(root), lengths=lengths,
        mv_per_unit=scale, fs_hz=float(FS_HZ),
    )  # fmt: skip


# --- synthetic records in the same format ------------------------------------------------------

# (amplitude mV, offset s from the R peak, width s) of the P, Q, R, S, T waves of a normal beat.
_NORMAL_BEAT = ((0.15, -0.20, 0.025), (-0.10, -0.03, 0.010), (1.0, 0.0, 0.012), (-0.25, 0.03, 0.012), (0.3, 0.25, 0.05))
# A premature ventricular beat: no P wave, wide QRS, inverted T.
_PVC_BEAT = ((1.2, 0.0, 0.04), (-0.4, 0.08, 0.03), (-0.35, 0.32, 0.07))


def _beats(t: np.ndarray, r_peaks: list[float], waves: tuple[tuple[float, float, float], ...]) -> np.ndarray:
    signal = np.zeros_like(t)
    for r in r_peaks:
        for amplitude, offset, width in waves:
            signal += amplitude * np.exp(-(((t - r - offset) / width) ** 2) / 2)
    return signal


def synthetic_ecg(label: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A plausible single-lead ECG in mV for class N, A (irregular RR, no P wave, f-waves), O or ~."""
    t = np.arange(int(seconds * FS_HZ)) / FS_HZ
    rr_mean = 60.0 / rng.uniform(60, 90)
    if label == "A":
        rr = rng.uniform(0.35, 1.0, size=int(seconds / 0.3) + 2)
    else:
        rr = rr_mean * (1 + rng.normal(0, 0.03, size=int(seconds / rr_mean) + 2))
    r_peaks = list(np.cumsum(rr) - rng.uniform(0, rr[0]))
    if label == "A":
        qrst = tuple(wave for wave in _NORMAL_BEAT if wave[1] != -0.20)  # no P wave
        signal = _beats(t, r_peaks, qrst) + 0.06 * np.sin(2 * np.pi * rng.uniform(5, 8) * t + rng.uniform(0, 6))
    elif label == "O":
        ectopic = r_peaks[2::4]
        normal = [r for r in r_peaks if r not in ectopic]
        signal = _beats(t, normal, _NORMAL_BEAT) + _beats(t, ectopic, _PVC_BEAT)
    else:
        signal = _beats(t, r_peaks, _NORMAL_BEAT)
    signal += 0.1 * np.sin(2 * np.pi * rng.uniform(0.15, 0.3) * t) + rng.normal(0, 0.02, t.shape)
    if label == "~":
        signal += rng.normal(0, 0.5, t.shape) + 0.8 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)
    return signal


def write_header(path: Path, record: str, num_samples: int, rng: np.random.Generator) -> None:
    """A WFDB header with the challenge's quirks: date before time, CRLF line ends."""
    date = f"2014-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
    clock = f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}"
    lines = [
        f"{record} 1 {FS_HZ} {num_samples} {date} {clock} ",
        f"{record}.mat 16+24 {GAIN_PER_MV}/mV 16 0 0 0 0 ECG ",
    ]
    path.write_bytes("".join(line + "\r\n" for line in lines).encode())


def write_synthetic(
    root: Path, *, seed: int = 0, per_class: int = 40, min_seconds: float = 20.0, max_seconds: float = 40.0
) -> None:
    """`per_class` records of each class, 20-40 s long (so both cropping and padding happen at 9000)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(per_class * len(CLASS_NAMES)):
        label = CLASS_NAMES[index % len(CLASS_NAMES)]
        record = f"S{index + 1:05d}"
        signal_mv = synthetic_ecg(label, rng.uniform(min_seconds, max_seconds), rng)
        val = np.clip(np.round(signal_mv * GAIN_PER_MV), -32768, 32767).astype(np.int16)[None, :]
        import scipy.io  # see read_record

        scipy.io.savemat(root / f"{record}.mat", {"val": val}, format="4")
        write_header(root / f"{record}.hea", record, val.shape[1], rng)
        rows.append(f"{record},{label}\n")
    (root / "REFERENCE-v3.csv").write_text("".join(rows))
