"""The report's tables and HTML, the heatmap and image-similarity metrics and the saved result files, pinned on tiny
hand-made cases (the arithmetic in the comments, or an independent formula in the test): what the mutation score
(benchmarks/mutation.py) found no test for."""

from __future__ import annotations

import io
import math
import re
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from medadv.attacks.result import (
    AttackResult,
    TargetProbabilities,
    _write_npz,
    load_probabilities,
    save_probabilities,
)
from medadv.errors import MedadvError
from medadv.metrics.attack import ssim, summary_table
from medadv.metrics.classification import classification_scores
from medadv.metrics.heatmap import HeatmapError, heatmap_table, overlay
from medadv.metrics.similarity import ssim_per_sample
from medadv.metrics.transfer import transfer_metrics
from medadv.report.html import Section, render_report, shown, table_html

K1, K2 = 0.01, 0.03  # SSIM's constants (Wang et al. 2004)


def uniform_ssim(x: np.ndarray, y: np.ndarray, win: int, data_range: float) -> float:
    """Mean SSIM over every window lying wholly inside one map or image (..., channels last when 3-D), with the
    sample (N - 1) statistics of a `win`-wide uniform window: the formula, window by window."""
    if x.ndim == 3:  # the mean over channels
        return float(np.mean([uniform_ssim(x[..., c], y[..., c], win, data_range) for c in range(x.shape[-1])]))
    axes = tuple(range(-x.ndim, 0))
    xs, ys = (sliding_window_view(v.astype(np.float64), (win,) * v.ndim) for v in (x, y))
    mx, my = xs.mean(axis=axes), ys.mean(axis=axes)
    vx, vy = xs.var(axis=axes, ddof=1), ys.var(axis=axes, ddof=1)
    n = win**x.ndim
    cov = ((xs - mx[(...,) + (None,) * x.ndim]) * (ys - my[(...,) + (None,) * x.ndim])).sum(axis=axes) / (n - 1)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return float(np.mean((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))))


def gaussian_ssim_11(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """SSIM of two 11 x 11 (x channels) images, one window: the Gaussian (sigma 1.5) weighted population statistics,
    the mean over channels."""
    offsets = np.arange(11) - 5.0
    weights = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5**2))
    weights /= weights.sum()
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    values = []
    for c in range(x.shape[-1]):
        a, b = x[..., c].astype(np.float64), y[..., c].astype(np.float64)
        ma, mb = (weights * a).sum(), (weights * b).sum()
        va, vb = (weights * a * a).sum() - ma**2, (weights * b * b).sum() - mb**2
        cov = (weights * a * b).sum() - ma * mb
        values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


# --- the report ---------------------------------------------------------------------------------------------------

RUN = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def test_shown_cuts_run_ids_to_8_characters_and_names_models_by_their_short_names() -> None:
    table = pd.DataFrame(
        {
            "run_id": [RUN, OTHER],
            "source_run_id": [OTHER, RUN],
            "model": ["models:/cnn/3 vs models:/cnn@candidate", "plain"],
            "eps": [0.5, 1.0],
            "models:/cnn/2": [1, 2],
            "target": pd.Series(["models:/cnn/4", 7], dtype=object, index=[RUN, OTHER]),
        },
        index=pd.Index([RUN, OTHER], name="run_id"),
    )
    table.columns.name = "metric"
    result = shown(table)
    assert result.to_dict(orient="list") == {
        "run_id": ["01234567", "fedcba98"],
        "source_run_id": ["fedcba98", "01234567"],
        "model": ["cnn v3 vs cnn@candidate", "plain"],
        "eps": [0.5, 1.0],
        "cnn v2": [1, 2],
        "target": ["cnn v4", 7],  # a mixed (object) column too
    }
    assert result.columns.name == "metric"
    assert (result.index.name, list(result.index)) == ("run", ["01234567", "fedcba98"])
    assert result["eps"].dtype == np.float64 and result["cnn v2"].dtype == np.int64
    assert table["run_id"].tolist() == [RUN, OTHER]  # the caller's table is left whole (the CSV keeps the ids)


def test_shown_names_models_in_labelled_rows_and_keeps_row_numbers_out_of_the_html() -> None:
    by_model = shown(pd.DataFrame({"rate": [0.5]}, index=pd.Index(["models:/cnn/3"], name="target")))
    assert (by_model.index.name, list(by_model.index)) == ("target", ["cnn v3"])
    numbered = shown(pd.DataFrame({"rate": [0.5, 0.25]}))
    assert isinstance(numbered.index, pd.RangeIndex)  # table_html leaves row numbers out only for a RangeIndex
    assert table_html(numbered) == (
        '<div class="scroll"><table class="dataframe data">\n  <thead>\n    <tr style="text-align: right;">\n'
        "      <th>rate</th>\n    </tr>\n  </thead>\n  <tbody>\n    <tr>\n      <td>0.5</td>\n    </tr>\n"
        "    <tr>\n      <td>0.25</td>\n    </tr>\n  </tbody>\n</table></div>"
    )


def test_table_html_is_exact_with_its_class_no_border_escaped_labels_and_infinities() -> None:
    table = pd.DataFrame(
        {"a<b": [2 / 3, math.inf], "n": ["<i>", "x"]}, index=pd.Index(["r&1", "r2"], name="row")
    )  # 2/3 -> 0.6667 (4 significant digits); inf is no missing value: "inf", not "-"
    assert table_html(table) == (
        '<div class="scroll"><table class="dataframe data">\n  <thead>\n    <tr style="text-align: right;">\n'
        "      <th></th>\n      <th>a&lt;b</th>\n      <th>n</th>\n    </tr>\n    <tr>\n      <th>row</th>\n"
        "      <th></th>\n      <th></th>\n    </tr>\n  </thead>\n  <tbody>\n    <tr>\n      <th>r&amp;1</th>\n"
        "      <td>0.6667</td>\n      <td>&lt;i&gt;</td>\n    </tr>\n    <tr>\n      <th>r2</th>\n"
        "      <td>inf</td>\n      <td>x</td>\n    </tr>\n  </tbody>\n</table></div>"
    )


def test_the_report_is_exact_and_leaves_out_only_sections_with_nothing_to_show() -> None:
    png = b"\x89PNG"  # embedded as it is: base64 "iVBORw=="
    sections = [
        Section(title="A & B", text="x < y", tables={"t<1>": pd.DataFrame({"v": [1.5]}), "none": pd.DataFrame()}),
        Section(title="empty", text="left out", tables={"none": pd.DataFrame()}),
        Section(title="picture", tables={"none": pd.DataFrame()}, images={"c&d": png}),
    ]
    page = render_report("T<1>", sections, {"k&": "v<", "when": "now"})
    table = (
        '<div class="scroll"><table class="dataframe data">\n  <thead>\n    <tr style="text-align: right;">\n'
        "      <th>v</th>\n    </tr>\n  </thead>\n  <tbody>\n    <tr>\n      <td>1.5</td>\n    </tr>\n"
        "  </tbody>\n</table></div>"
    )
    figure = '<figure><img alt="c&amp;d" src="data:image/png;base64,iVBORw=="><figcaption>c&amp;d</figcaption></figure>'
    style = re.search(r"<style>(.*)</style>", page, re.S)
    assert style is not None and "table.data" in style[1]
    assert page == (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>T&lt;1&gt;</title><style>{style[1]}</style></head>\n"
        '<body><h1>T&lt;1&gt;</h1><table class="facts"><tr><td>k&amp;</td><td>v&lt;</td></tr>'
        "<tr><td>when</td><td>now</td></tr></table>\n"
        f"<h2>A &amp; B</h2>\n<p>x &lt; y</p>\n<h3>t&lt;1&gt;</h3>{table}\n"
        f"<h2>picture</h2>\n{figure}\n</body></html>\n"
    )
    assert '<table class="facts"></table>' in render_report("T", [])  # no facts: an empty table, not an error


# --- heatmap metrics ----------------------------------------------------------------------------------------------


def _maps() -> tuple[np.ndarray, np.ndarray]:
    clean, adv = np.zeros((3, 10)), np.zeros((3, 10))
    clean[0, :2], adv[0, 8:] = (1.0, 0.5), (0.5, 1.0)  # row 0: the same two values moved from the start to the end
    clean[1, 1], adv[1, 1] = 0.5, 0.25  # row 1: one position, halved
    return clean, adv  # row 2: all zero in both


def test_heatmap_metrics_of_hand_made_1d_maps_without_any_numpy_warning() -> None:
    clean, adv = _maps()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the 0 / 0 of the all-zero row is NaN by design, silently
        table = heatmap_table(clean, adv)
    assert list(table.columns) == ["dssim", "pearson", "spearman", "iou_top20", "com_shift"]  # no ids: no "id"
    assert all(table[column].dtype == np.float64 for column in table.columns)
    # pearson row 0 by np.corrcoef; row 1: adv = clean / 2, r = 1; row 2 constant: NaN
    assert table["pearson"].iloc[0] == pytest.approx(np.corrcoef(clean[0], adv[0])[0, 1], abs=1e-12)
    assert table["pearson"].iloc[1] == pytest.approx(1.0)
    # spearman = pearson of average ranks: row 0 ranks clean [10, 9, 4.5 x 8], adv [4.5 x 8, 9, 10]
    ranks = np.array([10, 9, *[4.5] * 8]), np.array([*[4.5] * 8, 9, 10])
    assert table["spearman"].iloc[0] == pytest.approx(np.corrcoef(*ranks)[0, 1], abs=1e-12)
    assert table["spearman"].iloc[1] == pytest.approx(1.0)
    # top 20% of 10 positions: 2; row 0 {0, 1} vs {8, 9}: 0 / 4; row 1 {1} vs {1} (zeros carry nothing): 1 / 1
    assert table["iou_top20"].iloc[:2].tolist() == [0.0, 1.0]
    # centre of mass: row 0 (0 x 1 + 1 x .5) / 1.5 = 1/3 vs (8 x .5 + 9 x 1) / 1.5 = 26/3: 25/3; row 1 (mass .5): 0
    assert table["com_shift"].iloc[:2].tolist() == pytest.approx([25 / 3, 0.0])
    assert table.iloc[2, 1:].isna().all()  # row 2 all zero: no correlation, no region, no centre
    # dssim = (1 - SSIM) / 2, SSIM of 1-D maps with a 7-wide uniform window (the ECG path)
    expected = [(1 - uniform_ssim(c, a, 7, 1.0)) / 2 for c, a in zip(clean, adv, strict=True)]
    assert table["dssim"].tolist() == pytest.approx(expected, abs=1e-12)
    assert expected[2] == 0.0


def test_pearson_of_a_map_whose_variance_underflows_is_nan_without_a_warning() -> None:
    clean, adv = np.zeros((1, 8)), np.zeros((1, 8))
    clean[0, 0] = 1e-200  # deviations of 1e-200 / 8 square to 0.0: the denominator is 0, the numerator is not
    adv[0, :4] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = heatmap_table(clean, adv, iou_top_percent=())
    assert math.isnan(table["pearson"].iloc[0])


def test_top_region_ties_go_by_position_and_the_region_is_rounded_up() -> None:
    # 25% of 16 positions is 4: the 0.5s at 0, 1, 2 and then 9 (the first of the tied ones by position)
    clean = np.array([[0.5, 0.5, 0.5, *[0.25] * 6, *[0.5] * 7]])
    adv = np.zeros((1, 16))
    adv[0, [0, 1, 2, 9]] = 1.0
    assert heatmap_table(clean, adv, iou_top_percent=(25,))["iou_top25"].tolist() == [1.0]
    # top 100% of 120 positive positions is every one of them, however they are ordered
    ramp = np.linspace(1.0, 0.01, 120)[None]
    assert heatmap_table(ramp, ramp[:, ::-1], iou_top_percent=(100,))["iou_top100"].tolist() == [1.0]
    # 10.05% of 10 positions: ceil(1.005) = 2: {0, 1} vs {0, 2}: 1 / 3
    a, b = np.zeros((1, 10)), np.zeros((1, 10))
    a[0, :2], b[0, [0, 2]] = (1.0, 0.9), (1.0, 0.9)
    assert heatmap_table(a, b, iou_top_percent=(10.05,))["iou_top10.05"].tolist() == pytest.approx([1 / 3])


def test_heatmap_checks_accept_their_limits_and_say_exactly_what_is_wrong() -> None:
    maps = np.full((1, 7), 0.5)  # 7 samples: just wide enough for the 7-wide window
    table = heatmap_table(maps, maps, iou_top_percent=(0.5, 100))
    assert list(table.columns) == ["dssim", "pearson", "spearman", "iou_top0.5", "iou_top100", "com_shift"]

    def refused(message: str, clean: np.ndarray, adv: np.ndarray, **options: object) -> None:
        with pytest.raises(HeatmapError, match=f"^{re.escape(message)}$"):
            heatmap_table(clean, adv, **options)  # type: ignore[arg-type]

    refused("unknown on='maps'; choose one of map, overlay", maps, maps, on="maps")
    empty = np.zeros((0, 8))
    refused("expected two equal (n, ...) stacks of maps, got (0, 8) and (0, 8)", empty, empty)
    small = np.zeros((1, 6, 9))
    refused("maps of shape (6, 9) are too small for SSIM's 7-wide window", small, small)
    refused("heatmaps must be finite and normalised to [0, 1] (as medadv.explain returns them)", maps, maps * 3)
    refused("iou_top_percent values must lie in (0, 100], got [100.5]", maps, maps, iou_top_percent=(100.5,))


def test_overlay_is_min_max_scaled_per_sample() -> None:
    maps = np.array([[[0.5, 0.5]], [[0.0, 0.0]]])  # (2 samples, 1 x 2 pixels)
    x = np.array([[[[0.0], [1.0]]], [[[0.0], [1.0]]]])  # grey, dark then bright
    out = overlay(maps, x)
    # sample 0: jet(0.5) has no zero channel, so its blend's minimum is above 0 (sample 1's, jet(0) = (0, 0, .5), is
    # 0): each sample is scaled between its own minimum and maximum, to exactly 0 and 1
    assert out.min(axis=(1, 2, 3)).tolist() == [0.0, 0.0]
    assert out.max(axis=(1, 2, 3)).tolist() == [1.0, 1.0]


# --- image similarity ---------------------------------------------------------------------------------------------


def _images(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, shape)
    return a, np.clip(a + rng.normal(0, 0.2, shape), 0, 1)


def test_skimage_ssim_per_sample_is_the_uniform_window_formula() -> None:
    a, b = _images((2, 5, 6, 2))
    values = ssim_per_sample(a, b, data_range=1.0, method="skimage", win_size=3, channels=True)
    assert values.dtype == np.float64
    assert values.tolist() == pytest.approx([uniform_ssim(x, y, 3, 1.0) for x, y in pairs(a, b)], abs=1e-12)
    grey = ssim_per_sample(a[..., 0], b[..., 0], data_range=2.0, method="skimage", win_size=5, channels=False)
    assert grey.tolist() == pytest.approx([uniform_ssim(x, y, 5, 2.0) for x, y in pairs(a[..., 0], b[..., 0])])
    with pytest.raises(ValueError):  # pairs only: a second stack of another length is no pair
        ssim_per_sample(a, b[:1], data_range=1.0, method="skimage", win_size=3, channels=True)


def pairs(a: np.ndarray, b: np.ndarray) -> zip[tuple[np.ndarray, np.ndarray]]:
    return zip(a, b, strict=True)


def test_tf_ssim_per_sample_is_the_gaussian_window_formula_on_11_by_11_images() -> None:
    a, b = _images((2, 11, 11, 2), seed=1)  # 11 x 11: tf's one window, the smallest image it takes
    values = ssim_per_sample(a, b, data_range=1.0, method="tf", win_size=7, channels=True)
    assert values.dtype == np.float64
    assert values.tolist() == pytest.approx([gaussian_ssim_11(x, y, 1.0) for x, y in pairs(a, b)], abs=2e-6)
    grey = ssim_per_sample(a[..., 0], b[..., 0], data_range=1.0, method="tf", win_size=7, channels=False)
    assert grey.dtype == np.float64
    expected = [gaussian_ssim_11(x[..., :1], y[..., :1], 1.0) for x, y in pairs(a, b)]
    assert grey.tolist() == pytest.approx(expected, abs=2e-6)


def test_ssim_of_no_samples_is_an_empty_float_array_and_bad_methods_say_so() -> None:
    none = ssim_per_sample(np.zeros((0, 12, 12, 1)), np.zeros((0, 12, 12, 1)), data_range=1.0, method="tf",
                           win_size=7, channels=True)  # fmt: skip
    assert none.shape == (0,) and none.dtype == np.float64
    with pytest.raises(MedadvError, match=r"^unknown ssim 'gauss'; choose one of tf, skimage$"):
        ssim_per_sample(none, none, data_range=1.0, method="gauss", win_size=7, channels=True)
    message = r"^ssim=tf needs images of at least 11 x 11 pixels, got \(10, 12\); use ssim=skimage$"
    small = np.zeros((1, 10, 12, 1))
    with pytest.raises(MedadvError, match=message):
        ssim_per_sample(small, small, data_range=1.0, method="tf", win_size=7, channels=True)
    with pytest.raises(MedadvError, match=message):
        ssim_per_sample(small[..., 0], small[..., 0], data_range=1.0, method="tf", win_size=7, channels=False)


def test_attack_ssim_takes_the_largest_odd_window_up_to_7_and_the_clip_range_width() -> None:
    # 4 x 9: the odd window that fits is 3; 5 x 6: 5; 9 x 9: 7. Data range of clip (1, 3): 2
    for shape, window in (((2, 4, 9, 1), 3), ((1, 5, 6, 1), 5), ((1, 9, 9, 2), 7)):
        a, b = _images(shape, seed=window)
        a, b = 1 + 2 * a, 1 + 2 * b
        expected = [uniform_ssim(x, y, window, 2.0) for x, y in zip(a, b, strict=True)]
        assert ssim(a, b, (1.0, 3.0), "skimage").tolist() == pytest.approx(expected, abs=1e-12)


# --- classification, transfer and the terminal table -------------------------------------------------------------


def _result(y_true: list[int], y_adv: list[int]) -> AttackResult:
    n = len(y_true)
    return AttackResult(
        x=np.zeros((n, 1)), x_adv=np.ones((n, 1)), ids=np.array([f"s{i}" for i in range(n)]),
        y_true=np.array(y_true), y_clean=np.array(y_true), y_adv=np.array(y_adv), y_target=np.full(n, -1),
        p_clean=np.ones(n), p_adv=np.ones(n), seconds=np.ones(n),
    )  # fmt: skip


def test_macro_f1_averages_over_every_class_of_the_model_quietly() -> None:
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])  # 3 classes, class 2 neither true nor predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # class 2's 0 / 0 precision and recall count as 0, without a warning
        scores = classification_scores(np.array([0, 1]), probs)
    assert scores["accuracy"] == 1.0
    assert scores["macro_f1"] == pytest.approx(2 / 3)  # (1 + 1 + 0) / 3
    assert math.isnan(scores["auc"])


def test_transfer_interval_needs_two_samples_and_no_success_is_nan_without_warnings() -> None:
    probs = np.array([[0.9, 0.1], [0.3, 0.7]])
    two = transfer_metrics(_result([0, 1], [1, 0]), probs, probs)
    # confidence [0.9, 0.7]: mean 0.8, std (ddof 1) sqrt(0.02) = 0.1414; 1.96 x 0.1414 / sqrt(2) = 0.196
    assert (two["confidence_ci95_low"], two["confidence_ci95_high"]) == pytest.approx((0.604, 0.996))
    assert two["transfer_success_rate"] == 0.0  # both fooled the source; the target is right on both
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = transfer_metrics(_result([0], [0]), probs[:1], probs[:1])  # one sample, the source not fooled
    assert math.isnan(one["confidence_ci95_low"]) and math.isnan(one["transfer_success_rate"])


def test_summary_table_counts_an_unchanged_untargeted_prediction_as_no_success() -> None:
    table = summary_table(_result([0, 1], [0, 0]), ("a", "b"))  # sample 0 still right, sample 1 fooled
    assert table["attack_success_rate"].tolist() == [0.5]


# --- saved result files -------------------------------------------------------------------------------------------


def test_write_npz_deflates_at_level_1_with_zip64_headers_and_no_pickles(tmp_path: Path) -> None:
    values = np.tile(np.arange(300, dtype=np.int64) % 17, 40)  # repetitive: deflate levels differ in size
    path = _write_npz(tmp_path / "a.npz", {"v": values, "names": np.array(["x", "yz"])})
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["v.npy", "names.npy"]
        info = archive.getinfo("v.npy")
        raw = archive.read("v.npy")
    assert info.compress_type == zipfile.ZIP_DEFLATED
    assert info.extract_version == 45  # zip64 headers: a member may pass 2 GiB, its size unknown until written
    deflate = zlib.compressobj(1, zlib.DEFLATED, -15)
    assert info.compress_size == len(deflate.compress(raw) + deflate.flush())
    for level in (2, 6):  # the data tells the levels apart
        other = zlib.compressobj(level, zlib.DEFLATED, -15)
        assert len(other.compress(raw) + other.flush()) != info.compress_size
    with np.load(path, allow_pickle=False) as data:
        assert data["v"].tolist() == values.tolist() and data["names"].dtype == np.dtype("<U2")
    with pytest.raises(ValueError):
        _write_npz(tmp_path / "b.npz", {"o": np.array([{"a": 1}], dtype=object)})


def test_saved_descriptions_and_uris_stay_strings_even_when_empty(tmp_path: Path) -> None:
    result = _result([0], [1])  # no class names
    with np.load(result.save(tmp_path / "r.npz"), allow_pickle=False) as data:
        assert data["class_names"].dtype.kind == "U" and data["class_names"].shape == (0,)
    with np.load(save_probabilities({}, tmp_path / "p.npz"), allow_pickle=False) as data:
        assert data["uris"].dtype.kind == "U" and data["uris"].shape == (0,)
    buffer = io.BytesIO()
    np.savez(buffer, uris=np.array(["models:/a/1"], dtype=object))  # a pickled member
    buffer.seek(0)
    with pytest.raises(ValueError):
        load_probabilities(buffer)


def test_result_joins_say_exactly_what_does_not_fit() -> None:
    part = TargetProbabilities(ids=np.array(["a"]), clean=np.ones((1, 2)), adversarial=np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"^no probabilities for sample ids \['b', 'c', 'd', 'e', 'f'\]$"):
        TargetProbabilities.join([part], np.array(["b", "c", "d", "e", "f", "g"]))
    nothing = TargetProbabilities.join([part], np.array([], dtype=str))
    assert nothing.clean.shape == (0, 2) and nothing.white_box is None
    left, right = _result([0], [1]), AttackResult(**{**_result([0], [1]).__dict__, "class_names": ("a",)})
    message = "^cannot join attack results of data with different class names or clip ranges$"
    with pytest.raises(ValueError, match=message):
        AttackResult.concatenate([left, right])
