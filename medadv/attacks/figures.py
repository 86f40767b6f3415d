"""Figures of an attack run: the most and least perturbed examples, ECG overlays, and ECGadv Type II's
universal rates and success versus window length."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from medadv.attacks.result import AttackResult

# Inches: an image's width in the perturbation figure, the space between its columns and a row's title band.
_TILE_IN, _GAP_IN, _TITLE_IN = 2.0, 0.6, 0.3


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
    Drawn lean (fixed layout, no tight_layout): it is drawn on every attack run.
    """
    rows = _extremes(result, count)
    scale = float(np.abs(result.delta[rows]).max()) or 1.0
    titles = [
        (
            f"{result.ids[i]}: clean, predicted {class_names[result.y_clean[i]]}",
            f"adversarial, predicted {class_names[result.y_adv[i]]}",
            f"perturbation (x{0.5 / scale:.3g}), max |delta| {np.abs(result.delta[i]).max():.3g}",
        )
        for i in rows
    ]
    draw = _image_rows if result.x.ndim == 4 else _signal_rows
    figure = draw(result, rows, scale, titles)
    figure.suptitle(f"perturbation colour limits ±{scale:.3g}: the largest |delta| in this figure", fontsize=9)
    return figure


def _image_rows(result: AttackResult, rows: list[int], scale: float, titles: list[tuple[str, str, str]]) -> Figure:
    """The rows as images in one axes without ticks (axes are what costs), one colour bar for the figure."""
    height, width, channels = result.x.shape[1:]
    pixel = _TILE_IN / width  # inches per image pixel
    gap, band = round(_GAP_IN / pixel), max(1, round(_TITLE_IN / pixel))  # in image pixels
    mosaic = (3 * width + 2 * gap, len(rows) * (height + band))
    size = (mosaic[0] * pixel + 1.3, mosaic[1] * pixel + 0.55)  # + colour bar, + suptitle
    figure = Figure(figsize=size)
    axis = figure.add_axes((0.1 / size[0], 0.1 / size[1], mosaic[0] * pixel / size[0], mosaic[1] * pixel / size[1]))
    axis.set_axis_off()
    norm = Normalize(-scale, scale)
    for row, (i, row_titles) in enumerate(zip(rows, titles, strict=True)):
        top = row * (height + band) + band
        panels = (np.clip(result.x[i], 0, 1), np.clip(result.x_adv[i], 0, 1), result.delta[i])
        for column, (panel, title) in enumerate(zip(panels, row_titles, strict=True)):
            left = column * (width + gap)
            extent = (left, left + width, top + height, top)
            if column < 2:
                shown = panel[..., 0] if channels == 1 else panel
                axis.imshow(shown, cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="nearest")
            elif channels == 1:
                delta = axis.imshow(panel[..., 0], cmap="seismic", norm=norm, extent=extent, interpolation="nearest")
            else:  # RGB: grey is no change, the colour limits ±scale as above
                axis.imshow(np.clip(panel / scale * 0.5 + 0.5, 0, 1), extent=extent, interpolation="nearest")
            axis.text(left + width / 2, top - band * 0.15, title, ha="center", va="bottom", fontsize=8)
    axis.set(xlim=(0, mosaic[0]), ylim=(mosaic[1], 0), aspect="auto")
    if channels == 1:
        bar = figure.add_axes(
            ((mosaic[0] * pixel + 0.3) / size[0], 0.1 / size[1], 0.15 / size[0], axis.get_position().height)
        )
        figure.colorbar(delta, cax=bar, label=f"delta (±{scale:.3g})")
    return figure


def _signal_rows(result: AttackResult, rows: list[int], scale: float, titles: list[tuple[str, str, str]]) -> Figure:
    """The rows as 1-D signals: clean and adversarial overlaid (with both predictions), and the perturbation."""
    figure = Figure(figsize=(10, 2.2 * len(rows) + 0.5))
    inch = 1 / figure.get_figheight()
    grid = {"left": 0.07, "right": 0.98, "top": 1 - 0.7 * inch, "bottom": 0.35 * inch, "hspace": 0.4}
    axes = figure.subplots(len(rows), 2, squeeze=False, sharex=True, gridspec_kw=grid)
    for (overlay, perturbation), i, (clean, adversarial, change) in zip(axes, rows, titles, strict=True):
        overlay.plot(result.x[i, :, 0], lw=0.6, alpha=0.6, label="clean")
        overlay.plot(result.x_adv[i, :, 0], lw=0.6, label="adversarial")
        overlay.set_title(f"{clean}; {adversarial}", fontsize=8, y=1.0)
        perturbation.plot(result.delta[i, :, 0], lw=0.6, color="tab:red")
        perturbation.set_ylim(-1.05 * scale, 1.05 * scale)
        perturbation.set_title(change, fontsize=8, y=1.0)
    axes[0, 0].legend(loc="upper right", fontsize=6)
    return figure


def ecg_overlay_figure(result: AttackResult, class_names: tuple[str, ...], length: int = 4000) -> Figure:
    """Clean vs adversarial ECG over the first `length` samples, one panel per (source, target) pair.

    As the ECGadv study's perception plots: one example per pair, the first that succeeded. Drawn lean
    (fixed layout, one legend, shared sample axis): it is drawn on every ECG attack run.
    """
    targets = result.y_target if (result.y_target >= 0).any() else result.y_adv
    pairs: dict[tuple[int, int], int] = {}
    for i, (source, target) in enumerate(zip(result.y_true, targets, strict=True)):
        if result.y_adv[i] != source:
            pairs.setdefault((int(source), int(target)), i)
    figure = Figure(figsize=(10, 1.8 * max(1, len(pairs)) + 0.4))
    inch = 1 / figure.get_figheight()
    grid = {"left": 0.07, "right": 0.98, "top": 1 - 0.3 * inch, "bottom": 0.35 * inch, "hspace": 0.45}
    axes = figure.subplots(max(1, len(pairs)), 1, squeeze=False, sharex=True, gridspec_kw=grid)
    for axis, ((source, _target), i) in zip(axes[:, 0], sorted(pairs.items()), strict=False):
        axis.plot(result.x[i, :length, 0], lw=0.6, label="clean")
        axis.plot(result.x_adv[i, :length, 0], lw=0.6, alpha=0.8, label="adversarial")
        axis.set_title(f"{result.ids[i]}: {class_names[source]} -> {class_names[result.y_adv[i]]}", fontsize=8, y=1.0)
    if pairs:
        axes[0, 0].legend(loc="upper right", fontsize=6)
    else:
        axes[0, 0].text(0.5, 0.5, "no successful adversarial example", ha="center", va="center")
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
