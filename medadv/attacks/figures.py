"""Figures of an attack run: the most and least perturbed examples, ECG overlays, and ECGadv Type II's
universal rates and success versus window length."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from medadv.attacks.result import AttackResult


def _extremes(result: AttackResult, count: int) -> list[int]:
    """Indices of the `count` least and `count` most perturbed samples (by L2 of delta)."""
    l2 = np.sqrt((result.delta.reshape(len(result), -1) ** 2).sum(axis=1))
    order = np.argsort(l2)
    return list(dict.fromkeys([*order[:count], *order[::-1][:count]]))


def perturbation_figure(result: AttackResult, class_names: tuple[str, ...], count: int = 2) -> Figure:
    """Per row: clean input, adversarial input and the perturbation, with predictions.

    The perturbation is drawn on one scale for the whole figure, the largest |delta| shown (stated in the
    title and colour bar), so rows compare and a small eps is not blown up to solid colour.
    Images are shown as images; 1-D signals (ECG) as clean/adversarial overlays and the perturbation.
    """
    rows = _extremes(result, count)
    images = result.x.ndim == 4
    scale = float(np.abs(result.delta[rows]).max()) or 1.0
    figure, axes = plt.subplots(len(rows), 3, figsize=(10, 2.4 * len(rows)), squeeze=False)
    for axis_row, i in zip(axes, rows, strict=True):
        delta = result.delta[i]
        titles = (
            f"{result.ids[i]}: clean, predicted {class_names[result.y_clean[i]]}",
            f"adversarial, predicted {class_names[result.y_adv[i]]}",
            f"perturbation (x{0.5 / scale:.3g}), max |delta| {np.abs(delta).max():.3g}",
        )
        if images:
            channels = result.x.shape[-1]
            show = (lambda a: a[..., 0]) if channels == 1 else (lambda a: a)
            axis_row[0].imshow(show(result.x[i]), cmap="gray", vmin=0, vmax=1)
            axis_row[1].imshow(show(np.clip(result.x_adv[i], 0, 1)), cmap="gray", vmin=0, vmax=1)
            if channels == 1:
                shown = axis_row[2].imshow(delta[..., 0], cmap="seismic", vmin=-scale, vmax=scale)
                figure.colorbar(shown, ax=axis_row[2], fraction=0.046, pad=0.04, label=f"delta (±{scale:.3g})")
            else:  # RGB: grey is no change, the colour limits ±scale as above
                axis_row[2].imshow(np.clip(delta / scale * 0.5 + 0.5, 0, 1))
        else:
            axis_row[0].plot(result.x[i, :, 0], lw=0.6)
            axis_row[1].plot(result.x[i, :, 0], lw=0.6, alpha=0.6, label="clean")
            axis_row[1].plot(result.x_adv[i, :, 0], lw=0.6, label="adversarial")
            axis_row[1].legend(loc="upper right", fontsize=6)
            axis_row[2].plot(delta[:, 0], lw=0.6, color="tab:red")
            axis_row[2].set_ylim(-1.05 * scale, 1.05 * scale)
        for axis, title in zip(axis_row, titles, strict=True):
            axis.set_title(title, fontsize=8)
            if images:
                axis.axis("off")
    figure.suptitle(f"perturbation colour limits ±{scale:.3g}: the largest |delta| in this figure", fontsize=9)
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


def universal_rates_figure(table: pd.DataFrame, class_names: tuple[str, ...]) -> Figure:
    """ECGadv Type II's universal evaluation as a heatmap: one row per source->target pair, one column
    per class, each cell the share of (record, position) inputs predicted as that class."""
    columns = [f"share_{name}" for name in class_names]
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"universal table lacks the columns {', '.join(missing)}")
    shares = table[columns].to_numpy(dtype=float)
    figure, axis = plt.subplots(figsize=(1.2 * len(columns) + 2.5, 0.45 * max(len(table), 1) + 1.5))
    image = axis.imshow(shares, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    axis.set_xticks(range(len(columns)), [f"predicted {name}" for name in class_names], fontsize=8)
    axis.set_yticks(range(len(table)), [str(pair) for pair in table.index], fontsize=8)
    for (row, column), share in np.ndenumerate(shares):
        axis.text(column, row, f"{share:.2f}", ha="center", va="center", fontsize=7, color="w" if share < 0.6 else "k")
    axis.set_xlabel("class predicted on source records with delta added")
    axis.set_ylabel("source -> target")
    figure.colorbar(image, ax=axis, label="share")
    figure.tight_layout()
    return figure


def window_success_figure(table: pd.DataFrame) -> Figure:
    """ECGadv Type II success rate versus window length: every (window, success_rate)
    row as a point, the mean per window as a line, so runs of several pairs or seeds plot together."""
    missing = [column for column in ("window", "success_rate") if column not in table.columns]
    if missing:
        raise ValueError(f"window table lacks the columns {', '.join(missing)}")
    means = table.groupby("window")["success_rate"].mean().sort_index()
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.scatter(table["window"], table["success_rate"], s=12, alpha=0.5, label="run")
    axis.plot(means.index, means.to_numpy(), marker="o", color="tab:red", label="mean per window")
    axis.set_xlabel("window length (samples)")
    axis.set_ylabel("targeted success rate")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure
