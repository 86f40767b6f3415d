"""Victim architectures obey the contract; training is reproducible; option strings are typed."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from medadv.data.base import Dataset
from medadv.explain import Explainer, last_conv_layer
from medadv.models import ModelError, build_model, check_victim, logits_model
from medadv.models.training import FitConfig, TrainingDiverged, fit_victim, mixup, seed_everything
from medadv.options import parse_options


@pytest.mark.parametrize(
    ("arch", "input_shape", "options"),
    [
        ("ecg_resnet", (9000, 1), {}),
        ("ecg_resnet", (256, 1), {"num_blocks": 2, "base_filters": 4}),
        ("ecg_resnet_wide", (256, 1), {"num_blocks": 2, "base_filters": 4}),
        ("small_cnn", (28, 28, 1), {}),
        ("mnist_dense", (28, 28, 1), {}),
        ("cifar_cnn", (32, 32, 3), {}),
        ("cifar_cnn_wide", (32, 32, 3), {}),
        ("resnet50", (32, 32, 1), {"pretrained": False}),
        ("vgg16", (32, 32, 3), {"pretrained": False}),
        ("inception_v3", (75, 75, 3), {"pretrained": False}),
    ],
)
def test_every_architecture_ends_in_softmax_over_logits(arch: str, input_shape: tuple[int, ...], options: dict) -> None:  # type: ignore[type-arg]
    model = build_model(arch, input_shape, 3, **options)
    check_victim(model, input_shape)
    x = np.random.default_rng(0).uniform(0, 1, (2, *input_shape)).astype(np.float32)
    logits = logits_model(model)(x).numpy()
    np.testing.assert_allclose(model(x).numpy(), keras.ops.softmax(logits).numpy(), rtol=1e-4, atol=1e-6)


def test_resnet50v2_explains_at_grad_attacks_layer() -> None:
    """Grad-Attacks' backbone, without ImageNet weights (no download in tests), with the study's Grad-CAM layer."""
    model = build_model("resnet50v2", (32, 32, 1), 2, pretrained=False)
    check_victim(model, (32, 32, 1))
    assert model.count_params() == 23_568_898  # keras.applications.ResNet50V2 without its top, and a 2-way head
    assert Explainer(model).layer == "conv5_block3_out"  # the study's layer by default, not the last Conv2D
    assert last_conv_layer(model) == "conv5_block3_3_conv"


def test_full_size_ecg_resnet_has_34_weight_layers() -> None:
    model = build_model("ecg_resnet", (9000, 1), 4)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D) and layer.kernel_size == (16,)]
    assert len(convs) + 1 == 34  # 1 + 16 blocks x 2 convolutions of kernel 16, plus the dense logits layer


@pytest.mark.parametrize(
    ("arch", "input_shape", "num_classes", "count"),
    [
        ("ecg_resnet", (9000, 1), 4, 843_780),  # Andreotti's ResNet_30s_34lay_16conv
        ("cifar_cnn", (32, 32, 3), 10, 122_570),  # DeepCustom's cifar_keras
        ("cifar_cnn_wide", (32, 32, 3), 10, 356_810),
    ],
)
def test_study_architectures_have_the_studys_parameter_count(
    arch: str, input_shape: tuple[int, ...], num_classes: int, count: int
) -> None:
    assert build_model(arch, input_shape, num_classes).count_params() == count


def _andreotti_weight_layers() -> dict[str, tuple[int, ...]]:
    """His layers with weights, by their Keras 2 names, and their kernel (or BN gamma) shapes, in his
    `train_model.py`'s creation order: kernel-16 convs, 1x1 shortcut convs where the width grows, one dense layer."""
    shapes: dict[str, tuple[int, ...]] = {}
    convs, norms = iter(range(1, 100)), iter(range(1, 100))
    shapes[f"conv1d_{next(convs)}"] = (16, 1, 16)
    shapes[f"batch_normalization_{next(norms)}"] = (16,)
    width = 16
    for block in range(16):
        new_width = 16 * (1 + max(block - 1, 0) // 4)
        if new_width != width:
            shapes[f"conv1d_{next(convs)}"] = (1, width, new_width)
        if block:
            shapes[f"batch_normalization_{next(norms)}"] = (width,)
        shapes[f"conv1d_{next(convs)}"] = (16, width, new_width)
        shapes[f"batch_normalization_{next(norms)}"] = (new_width,)
        shapes[f"conv1d_{next(convs)}"] = (16, new_width, new_width)
        width = new_width
    shapes[f"batch_normalization_{next(norms)}"] = (64,)
    shapes["dense_1"] = (35 * 64, 4)
    return shapes


def test_ecg_resnet_has_andreottis_layer_names_and_loads_his_layout_by_name(tmp_path: Path) -> None:
    keras.utils.set_random_seed(1)
    ours = build_model("ecg_resnet", (9000, 1), 4)
    found = {layer.name: tuple(layer.weights[0].shape) for layer in ours.layers if layer.weights}
    assert found == _andreotti_weight_layers()
    assert len(found) == 70 and ours.input.name == "input"
    # his file's layout: the same layers, the softmax fused into dense_1 (no probs layer), saved as Keras 2 HDF5
    source = build_model("ecg_resnet", (9000, 1), 4)
    features = source.get_layer("dense_1").input
    his = keras.Model(source.input, keras.layers.Dense(4, activation="softmax", name="dense_1")(features))
    path = tmp_path / "ResNet_30s_34lay_16conv.hdf5"
    keras.saving.save_model(his, path)
    ours.load_weights(path, by_name=True)
    for layer in his.layers:
        for mine, theirs in zip(ours.get_layer(layer.name).weights, layer.weights, strict=True):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_missing_imagenet_weights_fall_back_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline by construction (the download fails whatever the network), so the test passes online too."""
    from keras.src.utils import file_utils

    def unreachable(*args: object, **kwargs: object) -> str:
        raise OSError("weights server unreachable (injected by the test)")

    monkeypatch.setattr(file_utils, "get_file", unreachable)
    with pytest.warns(UserWarning, match="ImageNet weights unavailable.*injected by the test"):
        model = build_model("vgg16", (32, 32, 3), 2, pretrained=True)
    check_victim(model)
    assert model.get_layer("block1_conv1").get_weights()[0].std() > 0  # random initialisation, not zeros


def test_contract_violations_are_explained() -> None:
    inputs = keras.Input((4,))
    probs_only = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    with pytest.raises(ModelError, match="must end in a softmax Activation layer after its logits layer"):
        check_victim(probs_only)
    with pytest.raises(ModelError, match=r"takes inputs of shape \(28, 28, 1\), the data has shape \(32, 32, 3\)"):
        check_victim(build_model("small_cnn", (28, 28, 1), 2), (32, 32, 3))
    with pytest.raises(ModelError, match="unknown architecture 'lstm'"):
        build_model("lstm", (4,), 2)


def _weights_after_training(data: Dataset) -> list[np.ndarray]:
    seed_everything(7)
    model = build_model("small_cnn", data.input_shape, 2, width=4)
    fit_victim(model, data, data.subset(slice(0, 16)), FitConfig(epochs=2, batch_size=16, seed=7))
    return [w.numpy() for w in model.weights]


def test_training_is_reproducible_on_cpu(tiny_image_data: Dataset) -> None:
    first, second = _weights_after_training(tiny_image_data), _weights_after_training(tiny_image_data)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_diverging_loss_stops_training(tiny_image_data: Dataset) -> None:
    model = build_model("small_cnn", tiny_image_data.input_shape, 2, width=4)
    with pytest.raises(TrainingDiverged, match="training diverged at epoch 1"):
        fit_victim(model, tiny_image_data, tiny_image_data, FitConfig(epochs=3, learning_rate=1e15))


def test_mixup_draws_one_lambda_per_sample() -> None:
    # half the batch is 0, half 1: the mixed value of a 0 sample is its 1 - lam, of a 1 sample its lam
    keras.utils.set_random_seed(0)
    x = np.repeat([0.0, 1.0], 32).astype(np.float32).reshape(64, 1, 1)
    y = np.eye(2, dtype=np.float32)[np.repeat([0, 1], 32)]
    x_mixed, y_mixed = (np.asarray(t) for t in mixup(x, y, 0.2))
    lam = np.where(x[:, 0, 0] == 1, x_mixed[:, 0, 0], 1 - x_mixed[:, 0, 0])
    np.testing.assert_allclose(y_mixed[:, 1], x_mixed[:, 0, 0], atol=1e-6)  # labels mix as their samples
    assert lam.std() > 0.1 and lam.min() >= 0 and lam.max() <= 1  # foe's: one Beta(0.2, 0.2) draw per sample


def test_option_strings_are_typed_by_the_signature() -> None:
    def builder(
        input_shape: tuple[int, ...], *, depth: int = 2, rate: float = 0.1, bn: bool = True, name: str = ""
    ) -> None:
        """A builder with one option of each type."""

    assert parse_options("depth=4, rate=0.5,bn=false,name=x", builder, "arch_options") == {
        "depth": 4, "rate": 0.5, "bn": False, "name": "x",
    }  # fmt: skip
    assert parse_options("", builder, "arch_options") == {}
    with pytest.raises(ValueError, match="unknown option 'input_shape=3'; valid options are depth, rate, bn, name"):
        parse_options("input_shape=3", builder, "arch_options")
    with pytest.raises(ValueError, match="arch_options option depth: cannot read 'four' as int"):
        parse_options("depth=four", builder, "arch_options")
