"""Metrics of attacks (and, from their own modules, of classification and explanations)."""

from medadv.metrics.attack import (
    attack_success,
    attack_success_rate,
    clean_accuracy,
    fooling_rate,
    per_sample_table,
    perturbation_norms,
    psnr,
    robust_accuracy,
    ssim,
    success_matrix,
    summarize,
    summary_table,
)
from medadv.metrics.interval import wilson_interval

__all__ = [
    "attack_success",
    "attack_success_rate",
    "clean_accuracy",
    "fooling_rate",
    "per_sample_table",
    "perturbation_norms",
    "psnr",
    "robust_accuracy",
    "ssim",
    "success_matrix",
    "summarize",
    "summary_table",
    "wilson_interval",
]
