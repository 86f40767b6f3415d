"""Structural similarity (Wang et al., IEEE TIP 2004, eq. 13) per sample, computed the way a study computed it.

- `tf`: `tf.image.ssim`, an 11x11 Gaussian window (sigma 1.5), valid positions only, the mean over channels:
  what Grad-Attacks (de Aguiar et al., CBMS 2023, `measure_distiotion.py`, `measure_gradcam.py`) computed.
  Images only, at least 11 pixels on each side; 1-D signals (ECG maps) use scikit-image's below.
- `skimage`: `skimage.metrics.structural_similarity`, a uniform window of `win_size` along every axis.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from skimage.metrics import structural_similarity

from medadv.errors import MedadvError

SSIM_METHODS = ("tf", "skimage")
TF_SSIM_WINDOW = 11


def check_ssim_method(method: str, input_shape: tuple[int, ...] = ()) -> None:
    """Refuse an unknown method, or `tf` on (H, W, C) images smaller than its window, before any compute."""
    if method not in SSIM_METHODS:
        raise MedadvError(f"unknown ssim {method!r}; choose one of {', '.join(SSIM_METHODS)}")
    if method == "tf" and len(input_shape) == 3 and min(input_shape[:2]) < TF_SSIM_WINDOW:
        raise MedadvError(f"ssim=tf needs images of at least 11 x 11 pixels, got {input_shape[:2]}; use ssim=skimage")


def ssim_per_sample(
    a: np.ndarray, b: np.ndarray, *, data_range: float, method: str, win_size: int, channels: bool
) -> np.ndarray:
    """SSIM of each pair a[i], b[i]: (n, H, W, C) images when `channels`, else (n, H, W) or (n, L) maps."""
    check_ssim_method(method, a.shape[1:] if channels else (*a.shape[1:], 1))
    if len(a) == 0:
        return np.zeros(0, dtype=np.float64)
    if method == "tf" and a.ndim == (4 if channels else 3):
        images = [np.asarray(v, dtype=np.float32) if channels else np.asarray(v, dtype=np.float32)[..., None]
                  for v in (a, b)]  # fmt: skip
        values = tf.image.ssim(images[0], images[1], max_val=data_range, filter_size=TF_SSIM_WINDOW)
        return np.asarray(values, dtype=np.float64)
    return np.array(
        [
            structural_similarity(x, y, data_range=data_range, win_size=win_size, channel_axis=-1 if channels else None)
            for x, y in zip(a.astype(np.float64), b.astype(np.float64), strict=True)
        ],
        dtype=np.float64,
    )
