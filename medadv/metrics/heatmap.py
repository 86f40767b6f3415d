"""How far an attack moves a heatmap: per-sample comparisons of clean and adversarial maps, and their summary.

Per-sample columns (`heatmap_table`), for maps in [0, 1] of shape (n, H, W) or (n, L):

- `dssim`: (1 - SSIM(clean map, adversarial map)) / 2, in [0, 1]; 0 for identical maps. SSIM is
  Wang et al. (IEEE TIP 2004, eq. 13), data range 1, by `ssim` (`medadv.metrics.similarity`): "tf"
  (the study's `tf.image.ssim`, 11 x 11 Gaussian window; maps at least 11 x 11) or "skimage" (a 7-wide
  uniform window along every map axis); ECG maps always take skimage's, 7 samples wide.
  With `on="overlay"` it compares colour overlays instead (below), as the Grad-Attacks
  study (de Aguiar et al., CBMS 2023) did; that mixes the input's own change into the score, so the
  default compares the maps themselves.
- `pearson`, `spearman`: linear and rank correlation of the two maps over all positions (Spearman:
  Pearson of average ranks); NaN where a map is constant (for example all zero).
- `iou_top<k>`: intersection over union of the two maps' top-k% regions: the ceil(k% of positions)
  largest values (ties by position), less zero-valued positions, which carry no evidence; NaN where
  both regions are empty.
- `com_shift`: distance between the maps' centres of mass, in pixels (images) or samples (ECGs);
  NaN where a map sums to zero.

Aggregates (`heatmap_summary`), named so runs compare in the MLflow UI: `dssim_mean` (the study's
"MOD"), `dssim_max` (its "NISSIM"), `dssim_std` (the population standard deviation across samples,
dividing by N; the study's "VID" divided by eps instead), and `<column>_mean` for every other column
(`pearson_mean`, `spearman_mean`, `iou_top20_mean`, `com_shift_mean`), skipping NaN samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np
import pandas as pd
from matplotlib import colormaps
from scipy.stats import rankdata

from medadv.errors import MedadvError
from medadv.metrics.similarity import ssim_per_sample

COMPARE_ON = ("map", "overlay")
SSIM_WINDOW = 7
OVERLAY_HEATMAP_WEIGHT = 0.4  # the Keras Grad-CAM example's superimposition, which the study used


class HeatmapError(MedadvError):
    """Heatmaps (or inputs) that cannot be compared; raised before any compute."""


def heatmap_table(
    clean_maps: np.ndarray,
    adv_maps: np.ndarray,
    *,
    on: str = "map",
    x_clean: np.ndarray | None = None,
    x_adv: np.ndarray | None = None,
    iou_top_percent: Sequence[float] = (20,),
    ids: Sequence[str] | np.ndarray | None = None,
    ssim: str = "tf",
) -> pd.DataFrame:
    """One row per sample: dssim, pearson, spearman, iou_top<k> per k, com_shift (and `id` if given).

    `on="overlay"` needs the inputs `x_clean`, `x_adv` (n, *map shape, channels) and applies to `dssim` only.
    """
    _check(clean_maps, adv_maps, on, x_clean, x_adv, iou_top_percent, ids)
    if on == "overlay":  # _check made sure both inputs are there
        x_clean, x_adv = cast(np.ndarray, x_clean), cast(np.ndarray, x_adv)
        dssim = _dssim(overlay(clean_maps, x_clean), overlay(adv_maps, x_adv), ssim, channels=True)
    else:
        dssim = _dssim(clean_maps, adv_maps, ssim, channels=False)
    clean_flat = clean_maps.reshape(len(clean_maps), -1).astype(np.float64)
    adv_flat = adv_maps.reshape(len(adv_maps), -1).astype(np.float64)
    columns: dict[str, np.ndarray] = {} if ids is None else {"id": np.asarray(ids)}
    columns["dssim"] = dssim
    columns["pearson"] = _pearson(clean_flat, adv_flat)
    columns["spearman"] = _pearson(rankdata(clean_flat, axis=1), rankdata(adv_flat, axis=1))
    for percent in iou_top_percent:
        columns[f"iou_top{percent:g}"] = _top_region_iou(clean_flat, adv_flat, percent)
    columns["com_shift"] = np.linalg.norm(_centre_of_mass(clean_maps) - _centre_of_mass(adv_maps), axis=1)
    return pd.DataFrame(columns)


def heatmap_summary(table: pd.DataFrame) -> dict[str, float]:
    """dssim_mean, dssim_max, dssim_std (divides by N) and <column>_mean for the other metric columns."""
    summary = {
        "dssim_mean": float(table["dssim"].mean()),
        "dssim_max": float(table["dssim"].max()),
        "dssim_std": float(table["dssim"].std(ddof=0)),
    }
    for column in table.columns.drop(["dssim", "id"], errors="ignore"):
        summary[f"{column}_mean"] = float(table[column].mean())
    return summary


def overlay(maps: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The study's colour overlay: 0.4 x jet(map) + the input in [0, 1] as RGB, min-max scaled to [0, 1].

    This is the Keras Grad-CAM example's `jet_heatmap * 0.4 + img` followed by `array_to_img`'s rescaling.
    """
    axes = tuple(range(1, x.ndim))
    low, high = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
    image = (x - low) / np.where(high > low, high - low, 1.0)
    rgb = np.broadcast_to(image, (*image.shape[:-1], 3)) if image.shape[-1] == 1 else image
    blended = OVERLAY_HEATMAP_WEIGHT * colormaps["jet"](maps)[..., :3] + rgb
    low, high = blended.min(axis=axes, keepdims=True), blended.max(axis=axes, keepdims=True)
    return np.asarray((blended - low) / np.where(high > low, high - low, 1.0))


def _dssim(clean: np.ndarray, adv: np.ndarray, method: str, *, channels: bool) -> np.ndarray:
    ssim = ssim_per_sample(clean, adv, data_range=1.0, method=method, win_size=SSIM_WINDOW, channels=channels)
    return (1.0 - ssim) / 2.0


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of (n, P) arrays; NaN where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=1) / denominator, np.nan)


def _top_region(flat: np.ndarray, percent: float) -> np.ndarray:
    """Boolean (n, P): the ceil(percent% of P) largest positions of each row (ties by position), if positive."""
    count = math.ceil(percent / 100.0 * flat.shape[1])
    order = np.argsort(-flat, axis=1, kind="stable")[:, :count]
    region = np.zeros(flat.shape, dtype=bool)
    np.put_along_axis(region, order, True, axis=1)
    return region & (flat > 0)


def _top_region_iou(clean: np.ndarray, adv: np.ndarray, percent: float) -> np.ndarray:
    a, b = _top_region(clean, percent), _top_region(adv, percent)
    union = (a | b).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, (a & b).sum(axis=1) / union, np.nan)


def _centre_of_mass(maps: np.ndarray) -> np.ndarray:
    """(n, ndim) centre of mass of each map in index units; NaN where a map sums to zero."""
    coordinates = np.indices(maps.shape[1:], dtype=np.float64).reshape(maps.ndim - 1, -1)  # (ndim, P)
    weights = maps.reshape(len(maps), -1).astype(np.float64)
    total = weights.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weights @ coordinates.T / total, np.nan)


def _check(
    clean_maps: np.ndarray,
    adv_maps: np.ndarray,
    on: str,
    x_clean: np.ndarray | None,
    x_adv: np.ndarray | None,
    iou_top_percent: Sequence[float],
    ids: Sequence[str] | np.ndarray | None,
) -> None:
    if on not in COMPARE_ON:
        raise HeatmapError(f"unknown on={on!r}; choose one of {', '.join(COMPARE_ON)}")
    if clean_maps.shape != adv_maps.shape or clean_maps.ndim < 2 or len(clean_maps) == 0:
        raise HeatmapError(f"expected two equal (n, ...) stacks of maps, got {clean_maps.shape} and {adv_maps.shape}")
    if min(clean_maps.shape[1:]) < SSIM_WINDOW:
        raise HeatmapError(f"maps of shape {clean_maps.shape[1:]} are too small for SSIM's {SSIM_WINDOW}-wide window")
    for maps in (clean_maps, adv_maps):
        if not (np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0):
            raise HeatmapError("heatmaps must be finite and normalised to [0, 1] (as medadv.explain returns them)")
    if on == "overlay" and any(x is None or x.shape[:-1] != clean_maps.shape for x in (x_clean, x_adv)):
        raise HeatmapError(f"on='overlay' needs x_clean and x_adv of shape {clean_maps.shape} + (channels,)")
    if not all(0 < percent <= 100 for percent in iou_top_percent):
        raise HeatmapError(f"iou_top_percent values must lie in (0, 100], got {list(iou_top_percent)}")
    if ids is not None and len(ids) != len(clean_maps):
        raise HeatmapError(f"got {len(clean_maps)} maps but {len(ids)} ids")
