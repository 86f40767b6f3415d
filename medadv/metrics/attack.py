"""How an attack went: accuracies, fooling and success rates, perturbation sizes and image degradation.

Every rate is a share of the attacked samples in [0, 1]. Norms are of delta = x_adv - x, flattened
per sample, in the data's own units. The names returned by `summarize` are stable, so runs compare
side by side in the MLflow UI.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from skimage.metrics import peak_signal_noise_ratio

from medadv.attacks.result import AttackResult
from medadv.metrics.similarity import ssim_per_sample


def _mean(values: np.ndarray) -> float:
    """Mean, or NaN for no values (no numpy warning)."""
    return float(np.mean(values)) if len(values) else math.nan


def clean_accuracy(y_true: np.ndarray, y_clean: np.ndarray) -> float:
    """Share of samples the model classifies correctly before the attack."""
    return _mean(y_clean == y_true)


def robust_accuracy(y_true: np.ndarray, y_adv: np.ndarray) -> float:
    """Share of samples the model still classifies correctly after the attack."""
    return _mean(y_adv == y_true)


def fooling_rate(y_clean: np.ndarray, y_adv: np.ndarray) -> float:
    """Share of samples whose predicted class changes under the attack (whatever the true class)."""
    return _mean(y_adv != y_clean)


def attack_success(y_true: np.ndarray, y_adv: np.ndarray, y_target: np.ndarray) -> np.ndarray:
    """Per sample: untargeted (target -1) the adversarial prediction is wrong; targeted it equals the target."""
    return np.where(y_target >= 0, y_adv == y_target, y_adv != y_true)


def attack_success_rate(y_true: np.ndarray, y_adv: np.ndarray, y_target: np.ndarray) -> float:
    """Share of samples where the attack succeeded (`attack_success`)."""
    return _mean(attack_success(y_true, y_adv, y_target))


def perturbation_norms(delta: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample L0 (number of input values changed), L2 and L-inf norms of the flattened perturbation."""
    flat = np.asarray(delta, dtype=np.float64).reshape(len(delta), -1)
    return {
        "l0": np.count_nonzero(flat, axis=1).astype(np.float64),
        "l2": np.linalg.norm(flat, axis=1),
        "linf": np.abs(flat).max(axis=1, initial=0.0),
    }


def is_image_batch(x: np.ndarray, clip_range: tuple[float, float]) -> bool:
    """PSNR and SSIM apply to (n, height, width, channels) images with a finite value range."""
    return x.ndim == 4 and all(math.isfinite(v) for v in clip_range)


def psnr(x: np.ndarray, x_adv: np.ndarray, clip_range: tuple[float, float]) -> np.ndarray:
    """Per-image peak signal-to-noise ratio in dB, 10 log10(range^2 / MSE); +inf for an unchanged image."""
    data_range = clip_range[1] - clip_range[0]
    with np.errstate(divide="ignore"):  # an unchanged image: MSE 0, PSNR +inf
        values = [
            peak_signal_noise_ratio(clean, adv, data_range=data_range) for clean, adv in zip(x, x_adv, strict=True)
        ]
    return np.array(values, dtype=np.float64)


def ssim(x: np.ndarray, x_adv: np.ndarray, clip_range: tuple[float, float], method: str = "tf") -> np.ndarray:
    """Per-image structural similarity, 1 = same: `tf` (Grad-Attacks': 11x11 Gaussian window) or `skimage` (7x7
    uniform window), the mean over windows and channels (`medadv.metrics.similarity`)."""
    window = min(7, *(side if side % 2 else side - 1 for side in x.shape[1:3]))
    data_range = clip_range[1] - clip_range[0]
    return ssim_per_sample(x, x_adv, data_range=data_range, method=method, win_size=window, channels=True)


def per_sample_table(result: AttackResult, clip_range: tuple[float, float], ssim_method: str = "tf") -> pd.DataFrame:
    """One row per attacked sample: labels, confidences, success, norms, PSNR/SSIM (NaN for signals), seconds."""
    norms = perturbation_norms(result.delta)
    images = is_image_batch(result.x, clip_range)
    blank = np.full(len(result), math.nan)
    return pd.DataFrame(
        {
            "id": result.ids.astype(str),
            "y_true": result.y_true,
            "y_clean": result.y_clean,
            "y_adv": result.y_adv,
            "y_target": result.y_target,
            "success": attack_success(result.y_true, result.y_adv, result.y_target),
            "p_clean": result.p_clean,
            "p_adv": result.p_adv,
            **norms,
            "psnr": psnr(result.x, result.x_adv, clip_range) if images else blank,
            "ssim": ssim(result.x, result.x_adv, clip_range, ssim_method) if images else blank,
            "seconds": result.seconds,
        }
    )


def metric_name(text: str) -> str:
    """`text` reduced to characters every MLflow store accepts in a metric name (letters, digits, _ . -)."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", text).strip("_")


def class_keys(class_names: tuple[str, ...] | list[str]) -> list[str]:
    """Metric-safe, distinct names for the classes: the sanitised name, or the class index where that is empty or
    already taken."""
    keys: list[str] = []
    for index, name in enumerate(class_names):
        key = metric_name(name)
        keys.append(key if key and key not in keys else str(index))
    return keys


def summarize(
    result: AttackResult, clip_range: tuple[float, float], class_names: tuple[str, ...], ssim_method: str = "tf"
) -> dict[str, float]:
    """The run's metrics under stable names.

    - `selected_clean_accuracy` (`clean_accuracy` of the attacked samples, so 1.0 where `selection=correct` chose
      them; a victim's test accuracy is the train run's `test_accuracy`), `robust_accuracy`, `fooling_rate`,
      `attack_success_rate`: see the functions of those names.
    - `l0_mean`, `l2_mean`, `l2_median`, `linf_mean`, `linf_max`: statistics of the per-sample norms of delta over
      all attacked samples (successful or not).
    - `psnr_mean` (dB) and `ssim_mean`: means over the images the attack changed (unchanged images have
      infinite PSNR); only for image data. SSIM by `ssim_method` (`ssim`).
    - `seconds_per_sample`: mean wall time spent crafting one adversarial example.
    - `num_samples`: number of attacked samples (a sample attacked towards k targets counts k times).
    - `attack_success_rate_class_<class>`: success rate among samples of that true class (NaN when none).
    """
    y_true, y_adv, y_target = result.y_true, result.y_adv, result.y_target
    success = attack_success(y_true, y_adv, y_target)
    norms = perturbation_norms(result.delta)
    metrics = {
        "selected_clean_accuracy": clean_accuracy(y_true, result.y_clean),
        "robust_accuracy": robust_accuracy(y_true, y_adv),
        "fooling_rate": fooling_rate(result.y_clean, y_adv),
        "attack_success_rate": _mean(success),
        "l0_mean": _mean(norms["l0"]),
        "l2_mean": _mean(norms["l2"]),
        "l2_median": float(np.median(norms["l2"])) if len(result) else math.nan,
        "linf_mean": _mean(norms["linf"]),
        "linf_max": float(norms["linf"].max()) if len(result) else math.nan,
        "seconds_per_sample": _mean(result.seconds),
        "num_samples": float(len(result)),
    }
    if is_image_batch(result.x, clip_range):
        changed = norms["l0"] > 0
        metrics["psnr_mean"] = _mean(psnr(result.x[changed], result.x_adv[changed], clip_range))
        metrics["ssim_mean"] = _mean(ssim(result.x[changed], result.x_adv[changed], clip_range, ssim_method))
    for index, key in enumerate(class_keys(class_names)):
        metrics[f"attack_success_rate_class_{key}"] = _mean(success[y_true == index])
    return metrics


def summary_table(result: AttackResult, class_names: tuple[str, ...]) -> pd.DataFrame:
    """An attack's headline figures for the terminal: one row for every attacked sample and, when the attack is
    targeted, one per target class."""
    success = attack_success(result.y_true, result.y_adv, result.y_target)
    norms = perturbation_norms(result.delta)
    groups = {"all": np.ones(len(result), dtype=bool)}
    for target in np.unique(result.y_target[result.y_target >= 0]):
        groups[f"target {class_names[target]}"] = result.y_target == target
    rows = [
        {
            "samples": label,
            "n": int(chosen.sum()),
            "fooling_rate": fooling_rate(result.y_clean[chosen], result.y_adv[chosen]),
            "robust_accuracy": robust_accuracy(result.y_true[chosen], result.y_adv[chosen]),
            "attack_success_rate": _mean(success[chosen]),
            "l2_mean": _mean(norms["l2"][chosen]),
            "linf_mean": _mean(norms["linf"][chosen]),
        }
        for label, chosen in groups.items()
    ]
    return pd.DataFrame(rows)


def success_matrix(result: AttackResult, class_names: tuple[str, ...]) -> pd.DataFrame:
    """Targeted success rate by source (true class, rows) and target class (columns); NaN where no sample was
    attacked from that source towards that target (the diagonal, for ECGadv's every-other-class runs)."""
    size = len(class_names)
    attempts, hits = np.zeros((size, size)), np.zeros((size, size))
    targeted = result.y_target >= 0
    sources, targets = result.y_true[targeted], result.y_target[targeted]
    np.add.at(attempts, (sources, targets), 1)
    np.add.at(hits, (sources, targets), result.y_adv[targeted] == targets)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(attempts > 0, hits / attempts, math.nan)
    names = list(class_names)
    return pd.DataFrame(rates, index=pd.Index(names, name="source"), columns=pd.Index(names, name="target"))
