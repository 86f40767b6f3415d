"""Victim architectures obey the contract; training is reproducible; option strings are typed."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from medadv.data.base import Dataset
from medadv.models import ModelError, build_model, check_victim, logits_model
from medadv.models.training import FitConfig, TrainingDiverged, fit_victim, seed_everything
from medadv.options import parse_options


@pytest.mark.parametrize(
    ("arch", "input_shape", "options"),
    [
        ("ecg_resnet", (9000, 1), {}),
        ("ecg_resnet", (256, 1), {"num_blocks": 2, "base_filters": 4}),
        ("small_cnn", (28, 28, 1), {}),
        ("mnist_dense", (28, 28, 1), {}),
        ("cifar_cnn", (32, 32, 3), {}),
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


def test_full_size_ecg_resnet_has_34_weight_layers() -> None:
    model = build_model("ecg_resnet", (9000, 1), 4)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D) and layer.kernel_size == (16,)]
    assert len(convs) + 1 == 34  # 1 + 16 blocks x 2 convolutions of kernel 16, plus the dense logits layer


def test_missing_imagenet_weights_fall_back_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="ImageNet weights unavailable"):
        model = build_model("vgg16", (32, 32, 3), 2, pretrained=True)
    check_victim(model)


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
