"""Heatmap metrics pinned on fixed maps, and Grad-CAM / Grad-CAM++ / Score-CAM on the tiny trained victims."""

from __future__ import annotations

import io
import math
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from matplotlib.figure import Figure
from scipy.ndimage import zoom

from medadv.data.base import Dataset
from medadv.explain import Explainer, ExplainError, explain, overlay_figure, target_classes
from medadv.explain.gradcam import _linear_resize
from medadv.metrics.heatmap import HeatmapError, heatmap_summary, heatmap_table, overlay
from medadv.models import ModelError, build_model

# SSIM of two constant maps 0 and 1 (Wang et al. eq. 13, variances 0): C1 / (1 + C1), C1 = (0.01 * 1)^2.
C1 = 1e-4
DSSIM_ZERO_VS_ONE = (1 - C1 / (1 + C1)) / 2


def block(shape: tuple[int, ...], index: tuple[slice, ...]) -> np.ndarray:
    """One map (as a stack of one) that is 1 on `index` and 0 elsewhere."""
    heatmap = np.zeros(shape)
    heatmap[index] = 1.0
    return heatmap[None]


# ---------------------------------------------------------------- heatmap metrics on fixed maps


def test_identical_maps_score_as_unchanged() -> None:
    heatmap = np.linspace(0, 1, 100).reshape(1, 10, 10) ** 2
    row = heatmap_table(heatmap, heatmap.copy(), ssim="skimage").iloc[0]
    assert row["dssim"] == pytest.approx(0.0, abs=1e-12)
    assert row["pearson"] == pytest.approx(1.0)
    assert row["spearman"] == pytest.approx(1.0)
    assert row["iou_top20"] == 1.0
    assert row["com_shift"] == pytest.approx(0.0)


def test_disjoint_blocks_have_no_overlap_and_a_known_shift() -> None:
    # 10 of 100 pixels each: top 10% is exactly each block. Centres (0.5, 2) and (8.5, 7).
    clean = block((10, 10), (slice(0, 2), slice(0, 5)))
    adv = block((10, 10), (slice(8, 10), slice(5, 10)))
    row = heatmap_table(clean, adv, iou_top_percent=(10,), ssim="skimage").iloc[0]
    assert row["iou_top10"] == 0.0
    assert row["com_shift"] == pytest.approx(math.hypot(8.0, 5.0))
    # Centred Pearson of two disjoint 10-pixel indicators on 100 pixels: (0 - 100 * 0.1 * 0.1) / (100 * 0.1 * 0.9).
    assert row["pearson"] == pytest.approx(-1 / 9)


@pytest.mark.parametrize(
    ("clean_index", "adv_index", "shift"),
    [
        ((slice(3, 6), slice(1, 4)), (slice(3, 6), slice(4, 7)), 3.0),  # image: 3 columns right
        ((slice(5, 9),), (slice(15, 19),), 10.0),  # ECG: 10 samples later
    ],
)
def test_centre_of_mass_shift_of_a_moved_block(
    clean_index: tuple[slice, ...], adv_index: tuple[slice, ...], shift: float
) -> None:
    shape = (10, 10) if len(clean_index) == 2 else (32,)
    row = heatmap_table(block(shape, clean_index), block(shape, adv_index), ssim="skimage").iloc[0]
    assert row["com_shift"] == pytest.approx(shift)


def test_pearson_and_spearman_of_a_monotone_but_curved_map() -> None:
    # x = 0..7 against x^2: covariance sum 294, sums of squares 42 and 2226 (by hand); ranks agree exactly.
    x = np.arange(8.0)
    row = heatmap_table((x / 7)[None], (x**2 / 49)[None]).iloc[0]
    assert row["pearson"] == pytest.approx(294 / math.sqrt(42 * 2226))
    assert row["spearman"] == pytest.approx(1.0)


def test_constant_maps_give_hand_computed_dssim_and_undefined_correlations() -> None:
    row = heatmap_table(np.zeros((1, 8, 8)), np.ones((1, 8, 8)), ssim="skimage").iloc[0]
    assert row["dssim"] == pytest.approx(DSSIM_ZERO_VS_ONE)
    assert np.isnan(row["pearson"]) and np.isnan(row["spearman"])
    assert row["iou_top20"] == 0.0  # the zero map has no top region, the other does
    assert np.isnan(row["com_shift"])  # the zero map has no centre of mass


def test_summary_names_and_population_std() -> None:
    same = np.full((1, 8, 8), 0.5)
    clean = np.concatenate([same, np.zeros((1, 8, 8))])
    adv = np.concatenate([same, np.ones((1, 8, 8))])
    table = heatmap_table(clean, adv, iou_top_percent=(10, 25), ids=["a", "b"], ssim="skimage")
    assert list(table["id"]) == ["a", "b"]
    summary = heatmap_summary(table)
    assert set(summary) == {
        "dssim_mean",
        "dssim_max",
        "dssim_std",
        "pearson_mean",
        "spearman_mean",
        "iou_top10_mean",
        "iou_top25_mean",
        "com_shift_mean",
    }
    # dssim = [0, d]: mean d/2, max d, std dividing by N = 2: d/2.
    assert summary["dssim_mean"] == pytest.approx(DSSIM_ZERO_VS_ONE / 2)
    assert summary["dssim_max"] == pytest.approx(DSSIM_ZERO_VS_ONE)
    assert summary["dssim_std"] == pytest.approx(DSSIM_ZERO_VS_ONE / 2)
    assert summary["com_shift_mean"] == pytest.approx(0.0)  # the NaN sample is skipped


def test_overlay_follows_the_keras_example_recipe() -> None:
    # jet(0) = (0, 0, 0.5): 0.4 * that + image [0, 1] -> (0, 0, 0.2), (1, 1, 1.2) -> divided by 1.2.
    x = np.array([[[0.0], [1.0]]])
    expected = np.array([[[0, 0, 0.2], [1, 1, 1.2]]]) / 1.2
    np.testing.assert_allclose(overlay(np.zeros((1, 2)), x), expected, atol=1e-6)


def test_overlay_dssim_mixes_in_the_input_change() -> None:
    rng = np.random.default_rng(0)
    maps = rng.uniform(size=(2, 8, 8))
    x_clean = rng.uniform(size=(2, 8, 8, 1))
    x_adv = np.clip(x_clean + rng.normal(0, 0.2, x_clean.shape), 0, 1)
    on_map = heatmap_table(maps, maps.copy(), ssim="skimage")["dssim"]
    on_overlay = heatmap_table(maps, maps.copy(), on="overlay", x_clean=x_clean, x_adv=x_adv, ssim="skimage")["dssim"]
    np.testing.assert_allclose(on_map, 0.0, atol=1e-12)
    assert (on_overlay > 0.01).all()


def test_dssim_takes_the_studys_tf_ssim_by_default() -> None:
    """Grad-Attacks' DSSIM: (1 - tf.image.ssim) / 2, an 11x11 Gaussian window; skimage's 7x7 uniform one differs."""
    rng = np.random.default_rng(1)
    clean, adv = rng.uniform(size=(2, 2, 24, 24))
    study = (1 - np.asarray(tf.image.ssim(clean[..., None], adv[..., None], max_val=1.0))) / 2
    np.testing.assert_allclose(heatmap_table(clean, adv)["dssim"], study, rtol=1e-5)
    assert not np.allclose(heatmap_table(clean, adv, ssim="skimage")["dssim"], study, rtol=1e-3)
    with pytest.raises(ValueError, match="at least 11 x 11"):
        heatmap_table(clean[:, :8, :8], adv[:, :8, :8])


@pytest.mark.parametrize(
    ("clean", "adv", "options", "message"),
    [
        (np.zeros((2, 8, 8)), np.zeros((2, 8, 9)), {}, "equal"),
        (np.zeros((2, 5, 8)), np.zeros((2, 5, 8)), {}, "too small"),
        (np.full((1, 8, 8), 2.0), np.zeros((1, 8, 8)), {}, r"\[0, 1\]"),
        (np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), {"on": "pixels"}, "unknown on"),
        (np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), {"on": "overlay"}, "needs x_clean"),
        (np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), {"iou_top_percent": (0,)}, "iou_top_percent"),
        (np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), {"ids": ["a", "b"]}, "ids"),
    ],
)
def test_bad_heatmaps_raise_one_line(clean: np.ndarray, adv: np.ndarray, options: dict[str, Any], message: str) -> None:
    with pytest.raises(HeatmapError, match=message) as error:
        heatmap_table(clean, adv, **options)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- class activation maps on the tiny victims


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
def test_image_maps_are_normalised_per_pixel_and_name_the_last_conv(
    method: str, tiny_image_model: keras.Model, tiny_image_data: Dataset
) -> None:
    x, y = tiny_image_data.x[:6], tiny_image_data.y[:6]
    result = explain(tiny_image_model, x, y, method=method)
    assert result.maps.shape == (6, 16, 16) and result.maps.dtype == np.float32
    assert result.maps.min() >= 0.0 and result.maps.max() <= 1.0 and result.maps.max() > 0.5
    assert result.layer == "last_conv" and result.method == method
    np.testing.assert_array_equal(result.class_index, y)


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_image_maps_point_at_the_blob_of_the_explained_class(
    method: str, tiny_image_model: keras.Model, tiny_image_data: Dataset
) -> None:
    # Class 0 is a bright blob on the left half, class 1 on the right (tests/conftest.py).
    x, y = tiny_image_data.x[:16], tiny_image_data.y[:16]
    maps = explain(tiny_image_model, x, y, method=method).maps
    left_share = maps[..., :8].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    assert (left_share[y == 0] > 0.6).all() and (left_share[y == 1] < 0.4).all()


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
def test_ecg_maps_run_along_time(method: str, tiny_ecg_model: keras.Model, tiny_ecg_data: Dataset) -> None:
    x, y = tiny_ecg_data.x[:4], tiny_ecg_data.y[:4]
    result = explain(tiny_ecg_model, x, y, method=method)
    assert result.maps.shape == (4, 256)
    assert result.maps.min() >= 0.0 and result.maps.max() <= 1.0 and result.maps.max() > 0.5
    conv_positions = [i for i, layer in enumerate(tiny_ecg_model.layers) if isinstance(layer, keras.layers.Conv1D)]
    assert tiny_ecg_model.get_layer(result.layer) is tiny_ecg_model.layers[conv_positions[-1]]


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_batched_maps_equal_one_at_a_time(method: str, tiny_image_model: keras.Model, tiny_image_data: Dataset) -> None:
    x, y = tiny_image_data.x[:5], tiny_image_data.y[:5]
    explainer = Explainer(tiny_image_model, method=method)
    batched = explainer(x, y, batch_size=64 if method == "scorecam" else 3).maps
    single = np.concatenate([explainer(x[i : i + 1], y[i : i + 1], batch_size=8).maps for i in range(5)])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_an_explicit_layer_and_class_change_the_map_and_leave_the_victim_alone(
    tiny_image_model: keras.Model, tiny_image_data: Dataset
) -> None:
    x = tiny_image_data.x[:4]
    probs_before = tiny_image_model.predict(x, verbose=0)
    first_conv = next(layer.name for layer in tiny_image_model.layers if isinstance(layer, keras.layers.Conv2D))
    default = explain(tiny_image_model, x, 0)
    early = explain(tiny_image_model, x, 0, layer=first_conv)
    other_class = explain(tiny_image_model, x, 1)
    assert early.layer == first_conv != default.layer
    assert np.abs(early.maps - default.maps).max() > 0.1
    assert np.abs(other_class.maps - default.maps).max() > 0.1
    assert tiny_image_model.layers[-1].get_config()["activation"] == "softmax"
    np.testing.assert_allclose(tiny_image_model.predict(x, verbose=0), probs_before)


@pytest.mark.parametrize(
    ("explain_class", "expected_clean", "expected_adversarial"),
    [
        ("clean", [1, 1, 0], [1, 1, 0]),
        ("adversarial", [0, 1, 1], [0, 1, 1]),
        ("true", [1, 0, 0], [1, 0, 0]),
        ("own", [1, 1, 0], [0, 1, 1]),  # Grad-Attacks: each map explains its own image's prediction
    ],
)
def test_explain_class_picks_the_class_of_each_map(
    explain_class: str, expected_clean: list[int], expected_adversarial: list[int]
) -> None:
    y_true, y_clean, y_adv = np.array([1, 0, 0]), np.array([1, 1, 0]), np.array([0, 1, 1])
    clean, adversarial = target_classes(explain_class, y_true=y_true, y_clean=y_clean, y_adv=y_adv)
    np.testing.assert_array_equal(clean, expected_clean)
    np.testing.assert_array_equal(adversarial, expected_adversarial)


def test_adversarial_class_without_an_attack_is_refused() -> None:
    with pytest.raises(ExplainError, match="attack run"):
        target_classes("adversarial", y_true=np.zeros(2), y_clean=np.zeros(2))


@pytest.fixture(scope="module")
def dense_model() -> keras.Model:
    return build_model("mnist_dense", (16, 16, 1), 2)


@pytest.mark.parametrize(
    ("model_name", "options", "error", "message"),
    [
        ("image", {"layer": "no_such_layer"}, ExplainError, "'no_such_layer' is not in model"),
        ("image", {"layer": "logits"}, ExplainError, "no spatial axes"),
        ("dense", {}, ExplainError, "no Conv1D/Conv2D layer"),
        ("image", {"method": "lime"}, ExplainError, "unknown method"),
        ("image", {"class_index": 2}, ExplainError, r"class indices must lie in \[0, 2\)"),
        ("image", {"class_index": [0, 1]}, ExplainError, "3 samples but 2 class indices"),
        ("image", {"batch_size": 0}, ExplainError, "batch_size"),
        ("image", {"x": np.zeros((3, 8, 8, 1), np.float32)}, ModelError, "shape"),
    ],
)
def test_bad_requests_raise_one_line(
    model_name: str,
    options: dict[str, Any],
    error: type[Exception],
    message: str,
    tiny_image_model: keras.Model,
    dense_model: keras.Model,
) -> None:
    model = tiny_image_model if model_name == "image" else dense_model
    arguments = {"x": np.zeros((3, 16, 16, 1), np.float32), "class_index": 0, **options}
    with pytest.raises(error, match=message) as raised:
        explain(model, **arguments)
    assert "\n" not in str(raised.value)


def test_a_model_without_softmax_is_refused(tiny_image_model: keras.Model) -> None:
    logits_only = keras.Model(tiny_image_model.inputs, tiny_image_model.get_layer("logits").output)
    with pytest.raises(ModelError, match="softmax"):
        Explainer(logits_only)


# ---------------------------------------------------------------- figures


@pytest.mark.parametrize(("kind", "columns"), [("image", 4), ("ecg", 2), ("image clean only", 2)])
def test_overlay_figure_has_one_row_per_sample(kind: str, columns: int) -> None:
    rng = np.random.default_rng(0)
    shape = (3, 64, 1) if kind == "ecg" else (3, 16, 16, 1)
    x = rng.uniform(size=shape).astype(np.float32)
    maps = rng.uniform(size=shape[:-1]).astype(np.float32)
    adversarial = {} if kind.endswith("only") else {"x_adv": x + 0.1, "adv_maps": maps[:, ::-1].copy()}
    figure = overlay_figure(x, maps, **adversarial, titles=["a", "b", "c"], max_samples=2)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 2 * columns + 1  # two rows of panels and a colour bar
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")


def test_overlay_figure_needs_adversarial_maps_with_adversarial_inputs() -> None:
    x = np.zeros((2, 16, 16, 1), np.float32)
    with pytest.raises(ExplainError, match="both x_adv and adv_maps"):
        overlay_figure(x, np.zeros((2, 16, 16)), x_adv=x)


# ---------------------------------------------------------------- the compiled Grad-CAM engine


@pytest.mark.parametrize(("kind", "layer"), [("image", None), ("image", "first conv"), ("ecg", None)])
def test_compiled_gradcam_equals_tf_keras_vis(
    kind: str,
    layer: str | None,
    tiny_image_model: keras.Model,
    tiny_image_data: Dataset,
    tiny_ecg_model: keras.Model,
    tiny_ecg_data: Dataset,
) -> None:
    model, data = (tiny_image_model, tiny_image_data) if kind == "image" else (tiny_ecg_model, tiny_ecg_data)
    if layer == "first conv":  # a layer the size of the input: the resize is the identity there
        layer = next(c.name for c in model.layers if isinstance(c, keras.layers.Conv2D))
    x, y = data.x[:5], data.y[:5]
    reference = Explainer(model, layer=layer)(x, y, batch_size=3)
    compiled = Explainer(model, layer=layer, engine="compiled")(x, y, batch_size=3)
    assert compiled.maps.shape == reference.maps.shape and compiled.maps.dtype == np.float32
    assert compiled.layer == reference.layer
    np.testing.assert_allclose(compiled.maps, reference.maps, atol=1e-5)
    np.testing.assert_array_equal(compiled.class_index, y)


@pytest.mark.parametrize(
    ("n_in", "n_out", "low", "high", "fraction"),
    [
        # 3 -> 5 points, corners aligned: positions 0, 0.5, 1, 1.5, 2.
        (3, 5, [0, 0, 1, 1, 2], [1, 1, 2, 2, 2], [0, 0.5, 0, 0.5, 0]),
        (2, 2, [0, 1], [1, 1], [0, 0]),
        (1, 3, [0, 0, 0], [0, 0, 0], [0, 0, 0]),  # one feature point: a constant map
    ],
)
def test_linear_resize_aligns_the_corners_like_scipy_zoom(
    n_in: int, n_out: int, low: list[int], high: list[int], fraction: list[float]
) -> None:
    got_low, got_high, got_fraction = _linear_resize(n_in, n_out)
    np.testing.assert_array_equal(got_low, low)
    np.testing.assert_array_equal(got_high, high)
    np.testing.assert_allclose(got_fraction, fraction)
    values = np.linspace(1.0, 4.0, n_in)
    resized = values[got_low] * (1 - got_fraction) + values[got_high] * got_fraction
    np.testing.assert_allclose(resized, zoom(values, n_out / n_in, order=1), atol=1e-6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"engine": "onnx"}, "unknown engine 'onnx'"),
        ({"engine": "compiled", "method": "gradcam++"}, "'gradcam' only, not 'gradcam\\+\\+'"),
        ({"engine": "compiled", "method": "scorecam"}, "'gradcam' only, not 'scorecam'"),
    ],
)
def test_bad_engines_raise_one_line(options: dict[str, str], message: str, tiny_image_model: keras.Model) -> None:
    for call in (
        lambda: Explainer(tiny_image_model, **options),
        lambda: explain(tiny_image_model, np.zeros((1, 16, 16, 1), np.float32), 0, **options),
    ):
        with pytest.raises(ExplainError, match=message) as raised:
            call()
        assert "\n" not in str(raised.value)


def test_compiled_engine_refuses_a_variable_length_input() -> None:
    inputs = keras.Input((None, 1))
    features = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(4, 3)(inputs))
    logits = keras.layers.Dense(2, name="logits")(features)
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="probs")(logits))
    with pytest.raises(ExplainError, match="needs a fixed input shape"):
        Explainer(model, engine="compiled")
