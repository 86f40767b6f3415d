"""Figures of an attack run: the most and least perturbed examples, and ECG overlays."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from medadv.attacks.result import AttackResult


def _extremes(result: AttackResult, count: int) -> list[int]:
    """Indices of the `count` least and `count` most perturbed samples (by L2 of delta)."""
    l2 = np.sqrt((result.delta.reshape(len(result), -1) ** 2).sum(axis=1))
    order = np.argsort(l2)
    return list(dict.fromkeys([*order[:count], *order[::-1][:count]]))


def perturbation_figure(result: AttackResult, class_names: tuple[str, ...], count: int = 2) -> Figure:
    """Per row: clean input, adversarial input and the amplified perturbation, with predictions.

    Images are shown as images; 1-D signals (ECG) as clean/adversarial overlays and the perturbation.
    """
    rows = _extremes(result, count)
    images = result.x.ndim == 4
    figure, axes = plt.subplots(len(rows), 3, figsize=(10, 2.4 * len(rows)), squeeze=False)
    for axis_row, i in zip(axes, rows, strict=True):
        delta = result.delta[i]
        scale = np.abs(delta).max() or 1.0
        titles = (
            f"{result.ids[i]}: clean, predicted {class_names[result.y_clean[i]]}",
            f"adversarial, predicted {class_names[result.y_adv[i]]}",
            f"perturbation (x{1 / scale:.3g}), max |delta| {scale:.3g}",
        )
        if images:
            channels = result.x.shape[-1]
            show = (lambda a: a[..., 0]) if channels == 1 else (lambda a: a)
            axis_row[0].imshow(show(result.x[i]), cmap="gray", vmin=0, vmax=1)
            axis_row[1].imshow(show(np.clip(result.x_adv[i], 0, 1)), cmap="gray", vmin=0, vmax=1)
            axis_row[2].imshow(show(delta / scale * 0.5 + 0.5), cmap="seismic", vmin=0, vmax=1)
        else:
            axis_row[0].plot(result.x[i, :, 0], lw=0.6)
            axis_row[1].plot(result.x[i, :, 0], lw=0.6, alpha=0.6, label="clean")
            axis_row[1].plot(result.x_adv[i, :, 0], lw=0.6, label="adversarial")
            axis_row[1].legend(loc="upper right", fontsize=6)
            axis_row[2].plot(delta[:, 0], lw=0.6, color="tab:red")
        for axis, title in zip(axis_row, titles, strict=True):
            axis.set_title(title, fontsize=8)
            if images:
                axis.axis("off")
    figure.tight_layout()
    return figure


def ecg_overlay_figure(result: AttackResult, class_names: tuple[str, ...], length: int = 4000) -> Figure:
    """Clean vs adversarial ECG over the first `length` samples, one panel per (source, target) pair.

    As the ECGadv study's perception plots: one example per pair, the first that succeeded.
    """
    targets = result.y_target if (result.y_target >= 0).any() else result.y_adv
    pairs: dict[tuple[int, int], int] = {}
    for i, (source, target) in enumerate(zip(result.y_true, targets, strict=True)):
        if result.y_adv[i] != source:
            pairs.setdefault((int(source), int(target)), i)
    figure, axes = plt.subplots(max(1, len(pairs)), 1, figsize=(10, 1.8 * max(1, len(pairs))), squeeze=False)
    for axis, ((source, _target), i) in zip(axes[:, 0], sorted(pairs.items()), strict=False):
        axis.plot(result.x[i, :length, 0], lw=0.6, label="clean")
        axis.plot(result.x_adv[i, :length, 0], lw=0.6, alpha=0.8, label="adversarial")
        axis.set_title(f"{result.ids[i]}: {class_names[source]} -> {class_names[result.y_adv[i]]}", fontsize=8)
        axis.legend(loc="upper right", fontsize=6)
    if not pairs:
        axes[0, 0].text(0.5, 0.5, "no successful adversarial example", ha="center", va="center")
    figure.tight_layout()
    return figure
