"""DeepCustom generators: architectures, the three losses on hand-made tensors, LRP and Tarantula by hand,
training, exact eps-ball generation and the DGN attack (the study's MNIST figures: tests/test_defense_jobs.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from medadv.attacks.base import AttackError
from medadv.attacks.dgn import (
    DGNAttack,
    DGNConfig,
    GeneratorConfig,
    eps_ball_clip,
    generate,
    generator_optimizer,
    train_generator,
)
from medadv.attacks.dgn_losses import (
    LRPLoss,
    NCELoss,
    Relevance,
    Suspiciousness,
    SuspiciousnessLoss,
    class_relevance,
    gradient_x_input,
    lrp_epsilon,
    suspiciousness,
    tarantula,
)
from medadv.data.base import Dataset
from medadv.models import build_model, logits_model
from medadv.models.cae import build_generator
from medadv.models.head import classifier_head


def dense_victim(hidden_kernel: list[list[float]], logits_kernel: list[list[float]]) -> keras.Model:
    """x (2 values) -> Dense ReLU without bias -> logits without bias: small enough to follow by hand."""
    inputs = keras.Input((2,))
    hidden = layers.Dense(len(hidden_kernel[0]), activation="relu", use_bias=False, name="hidden")(inputs)
    model = keras.Model(inputs, classifier_head(hidden, len(logits_kernel[0])))
    model.get_layer("hidden").set_weights([np.array(hidden_kernel, dtype=np.float32)])
    model.get_layer("logits").set_weights([np.array(logits_kernel, dtype=np.float32), np.zeros(len(logits_kernel[0]))])
    return model


def affine_generator(input_shape: tuple[int, ...], scale: float, offset: float) -> keras.Model:
    """A stand-in generator with a known output, scale * x + offset (scale 0: a constant)."""
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layers.Rescaling(scale, offset=offset)(inputs))


# -- architectures -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("input_shape", "encoded_shape"),
    [((28, 28, 1), (3, 3, 128)), ((28, 28, 3), (3, 3, 128)), ((32, 32, 3), (5, 5, 128))],
)
def test_study_layouts_encode_to_the_papers_code_size(input_shape: tuple[int, ...], encoded_shape: tuple) -> None:
    generator = build_generator(input_shape)
    assert tuple(generator.get_layer("encoded").output.shape[1:]) == encoded_shape
    assert tuple(generator.output_shape[1:]) == input_shape
    assert generator.layers[-1].get_config()["activation"] == "sigmoid"


@pytest.mark.parametrize(
    ("input_shape", "clip_range", "low", "high"),
    [
        ((16, 16, 1), (0.0, 1.0), 0.0, 1.0),
        ((20, 12, 2), (-1.0, 1.0), -1.0, 1.0),
        ((256, 1), (-np.inf, np.inf), -np.inf, np.inf),
        ((100, 2), (0.0, 1.0), 0.0, 1.0),
    ],
)
def test_other_shapes_keep_their_shape_and_range(
    input_shape: tuple[int, ...], clip_range: tuple[float, float], low: float, high: float
) -> None:
    generator = build_generator(input_shape, clip_range)
    x = np.random.default_rng(0).normal(0, 5, (3, *input_shape)).astype(np.float32)
    g = np.asarray(generator(x, training=False))
    assert g.shape == x.shape
    assert low <= g.min() and g.max() <= high
    if np.isinf(high):  # unbounded data (z-scored ECG): a linear output, no squashing
        assert generator.layers[-1].get_config()["activation"] == "linear"


def test_generator_refuses_bad_shapes() -> None:
    with pytest.raises(ValueError, match="inputs"):
        build_generator((784,))
    with pytest.raises(ValueError, match="low < high"):
        build_generator((28, 28, 1), (1.0, 0.0))


# -- Tarantula and the hit spectra ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ncf", "ncs", "nf", "ns", "expected"),
    [
        (2, 1, 2, 2, 2 / 3),  # (2/2) / (2/2 + 1/2)
        (1, 0, 2, 2, 1.0),  # only failing samples activate it
        (0, 2, 2, 2, 0.0),  # only passing samples activate it
        (1, 1, 4, 2, 1 / 3),  # (1/4) / (1/4 + 1/2)
        (0, 0, 2, 2, 0.0),  # never active
        (3, 0, 3, 0, 0.0),  # no passing samples at all: 0, as DeepCustom's Neuron.py
        (0, 3, 0, 3, 0.0),  # no failing samples at all
    ],
)
def test_tarantula_by_hand(ncf: int, ncs: int, nf: int, ns: int, expected: float) -> None:
    assert tarantula(np.array([ncf]), np.array([ncs]), nf, ns)[0] == pytest.approx(expected)


def test_suspicious_neurons_from_hand_made_spectra() -> None:
    # hidden = relu(x0), relu(x1), relu(-x0); logits = (h0, h1). Class 0 samples:
    # (1, 0) h=(1,0,0) correct; (0, 1) h=(0,1,0) wrong; (-1, 1) h=(0,1,1) wrong; (2, 1) h=(2,1,0) correct.
    victim = dense_victim([[1, 0, -1], [0, 1, 0]], [[1, 0], [0, 1], [0, 0]])
    x = np.array([[1, 0], [0, 1], [-1, 1], [2, 1]], dtype=np.float32)
    units = suspiciousness(victim, x, spectra_class=0, k=2)
    assert (units.num_failing, units.num_passing) == (2, 2)
    # h0: NCF 0, NCS 2 -> 0; h1: NCF 2, NCS 1 -> 1 / 1.5; h2: NCF 1, NCS 0 -> 1
    np.testing.assert_allclose(units.scores[0], [0.0, 2 / 3, 1.0])
    np.testing.assert_array_equal(units.suspicious[0], [2, 1])
    assert units.layer_names == ("hidden",)


def test_conv_units_score_per_feature_map(tiny_image_model: keras.Model, tiny_image_data: Dataset) -> None:
    units = suspiciousness(tiny_image_model, tiny_image_data.x[:40], spectra_class=1, k=3)
    conv_maps = [layer.filters for layer in tiny_image_model.layers if isinstance(layer, layers.Conv2D)]
    assert [len(s) for s in units.scores[:2]] == conv_maps
    assert all(len(chosen) == 3 for chosen in units.suspicious[:2])  # top k per convolutional layer
    assert len(units.suspicious[2]) == 3  # top k across the dense layers
    assert all(s.min() >= 0 and s.max() <= 1 for s in units.scores)


# -- LRP ------------------------------------------------------------------------------------------------------------


def test_lrp_epsilon_by_hand() -> None:
    # x = (1, 1): hidden z = (1 + 2, -1 + 1) = (3, 0); logits = (2 * 3, 1 * 3) = (6, 3); explain class 0.
    victim = dense_victim([[1, -1], [2, 1]], [[2, 1], [1, 1]])
    e = 0.01
    hidden_0 = 3 * 2 * 6 / (6 + e)  # a_j w_jk R_k / (z_k + e): all of logit 0 comes through hidden unit 0
    expected = [1 * 1 * hidden_0 / (3 + e), 1 * 2 * hidden_0 / (3 + e)]
    relevance = lrp_epsilon(victim, np.array([[1, 1]], dtype=np.float32), class_index=0, epsilon=e)
    np.testing.assert_allclose(relevance[0], expected, rtol=1e-6)


def test_gradient_x_input_by_hand() -> None:
    # logit 0 = 2 relu(x0 + 2 x1) + relu(-x0 + x1); at (1, 1) its gradient is 2 * (1, 2) + 0.
    victim = dense_victim([[1, -1], [2, 1]], [[2, 1], [1, 1]])
    relevance = gradient_x_input(victim, np.array([[1, 1]], dtype=np.float32), class_index=0)
    np.testing.assert_allclose(relevance[0], [2.0, 4.0])


def test_lrp_conserves_the_logit_through_conv_and_pooling() -> None:
    """Without biases and with a tiny epsilon the input relevance sums to the explained logit (Bach et al. 2015)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", use_bias=False)(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(4, 3, use_bias=False)(x)
    x = layers.ReLU()(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(6, activation="relu", use_bias=False)(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Activation("softmax", name="probs")(layers.Dense(3, use_bias=False, name="logits")(x))
    victim = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
    logits = np.asarray(logits_model(victim)(x))
    for class_index in range(3):
        relevance = lrp_epsilon(victim, x, class_index, epsilon=1e-7)
        np.testing.assert_allclose(relevance.reshape(4, -1).sum(1), logits[:, class_index], rtol=1e-3, atol=1e-6)
        # and, as LRP-0 on a ReLU network without biases, it is gradient x input
        np.testing.assert_allclose(relevance, gradient_x_input(victim, x, class_index), rtol=1e-3, atol=1e-6)


def test_class_relevance_averages_and_ranks(tiny_image_model: keras.Model, tiny_image_data: Dataset) -> None:
    x_class = tiny_image_data.x[tiny_image_data.y == 1][:20]
    relevance = class_relevance(tiny_image_model, x_class, 1, k=10)
    np.testing.assert_allclose(relevance.map, lrp_epsilon(tiny_image_model, x_class, 1).mean(0), rtol=1e-4, atol=1e-7)
    flat = relevance.map.ravel()
    assert flat[relevance.top_k].min() >= np.delete(flat, relevance.top_k).max()
    assert list(flat[relevance.top_k]) == sorted(flat[relevance.top_k], reverse=True)
    # class 1 is a bright blob on the right half: that is where its relevance lies
    columns = np.unravel_index(relevance.top_k, relevance.map.shape)[1]
    assert (columns >= 8).mean() >= 0.8


def test_residual_victims_are_refused_by_lrp_but_explained_by_gradients() -> None:
    victim = build_model("ecg_resnet", (64, 1), 4, num_blocks=2, base_filters=4)
    x = np.random.default_rng(0).normal(size=(3, 64, 1)).astype(np.float32)
    with pytest.raises(AttackError, match="gradient_x_input"):
        class_relevance(victim, x, 0, k=5)
    assert class_relevance(victim, x, 0, k=5, rule="gradient_x_input").top_k.shape == (5,)


# -- the losses on hand-made tensors --------------------------------------------------------------------------------


def test_lrp_loss_targets_and_value_by_hand() -> None:
    relevance = Relevance(0, "epsilon", np.zeros((2, 2, 1), np.float32), top_k=np.array([3]))
    loss = LRPLoss(relevance, eps=0.1, alpha=0.25)
    x = tf.constant([[[[0.5], [0.5]], [[0.5], [0.5]]]])
    # relevant element 3 is pulled down by eps, the other three up by eps
    np.testing.assert_allclose(loss.target(x), [[0.6, 0.6, 0.6, 0.4]], rtol=1e-6)
    assert float(loss(x, tf.reshape(loss.target(x), x.shape))) == pytest.approx(0.0, abs=1e-12)
    g = tf.constant([[[[0.5], [0.7]], [[0.6], [0.5]]]])  # squared errors: others 0.01, 0.01, 0; relevant 0.01
    assert float(loss(x, g)) == pytest.approx(0.25 * 0.01 + 0.75 * (0.02 / 3), rel=1e-5)


def test_nce_loss_by_hand() -> None:
    # zero weights: the logits are the bias (1, 0, 0) whatever the input, so CE(class 1) = log(e + 2) - 0
    inputs = keras.Input((2,))
    logits = layers.Dense(3, kernel_initializer="zeros", bias_initializer="zeros", name="logits")(inputs)
    victim = keras.Model(inputs, layers.Activation("softmax", name="probs")(logits))
    victim.get_layer("logits").set_weights([np.zeros((2, 3)), np.array([1.0, 0.0, 0.0])])
    x = tf.constant([[0.0, 0.0], [1.0, 1.0]])
    g = tf.constant([[0.2, 0.0], [1.0, 0.6]])  # squared errors 0.04, 0, 0, 0.16
    expected = (0.04 + 0.16) / 4 - np.log(np.e + 2)
    assert float(NCELoss(victim, class_index=1)(x, g)) == pytest.approx(expected, rel=1e-5)


def test_suspiciousness_loss_by_hand() -> None:
    # hidden pre-activations z = (x0 + 2 x1, -x0 + x1); unit 1 is the suspicious one
    victim = dense_victim([[1, -1], [2, 1]], [[1, 0], [0, 1]])
    units = Suspiciousness(0, ("hidden",), (np.array([0.1, 0.9]),), (np.array([1]),), 1, 1)
    loss = SuspiciousnessLoss(victim, units, alpha=0.8)
    x = tf.constant([[1.0, 1.0]])  # z = (3, 0)
    g = tf.constant([[0.5, 1.5]])  # z = (3.5, 1): the suspicious unit rose by 1, the other changed by 0.5
    lowered, changed, mse = 0.0 - 1.0, abs(3.5 - 3.0), (0.25 + 0.25) / 2
    expected = 0.8 * (0.5 * lowered + 0.5 * changed) + 0.2 * mse
    assert float(loss(x, g)) == pytest.approx(expected, rel=1e-6)
    assert set(loss.details()) == {"tarantula_hidden", "suspicious_hidden"}


def conv_victim() -> keras.Model:
    """2x2x1 images -> 1x1 conv with 3 maps (z_c = w_c x, w = 1, 2, 4) -> Flatten -> 2 dense units (z_0 = the sum of
    the 12 conv outputs, z_1 = half of it) -> logits: pre-activations follow by hand for positive images."""
    inputs = keras.Input((2, 2, 1))
    conv = layers.Conv2D(3, 1, activation="relu", use_bias=False, name="conv")(inputs)
    hidden = layers.Dense(2, activation="relu", use_bias=False, name="hidden")(layers.Flatten()(conv))
    model = keras.Model(inputs, classifier_head(hidden, 2))
    model.get_layer("conv").set_weights([np.array([1.0, 2.0, 4.0], np.float32).reshape(1, 1, 1, 3)])
    model.get_layer("hidden").set_weights([np.tile(np.array([[1.0, 0.5]], np.float32), (12, 1))])
    return model


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        # per sample d = mean(x) - mean(g) = -0.25, 0.5 and s = sum(x) - sum(g) = -1, 2. Suspicious: maps 1, 2 and
        # dense unit 0. study (Suspicious/RobustCIFAR/CustomLosses.py): maps averaged, batch summed, except Dn:
        # Cs = (3 * -0.25) + (3 * 0.5) = 0.75, Cn = 0.25 + 0.5, Ds = 7 * -1 + 7 * 2 = 7, Dn = mean(3.5, 7) = 5.25
        ("study", 0.5 * 0.75 + 0.01 * 0.75 + 0.5 * 7 + 0.01 * 5.25),
        # uniform: maps summed, batch averaged: lowered = mean(6 * -0.25 - 7, 6 * 0.5 + 14), changed likewise
        ("uniform", 0.5 * np.mean([-8.5, 17.0]) + 0.5 * np.mean([0.25 + 3.5, 0.5 + 7.0])),
    ],
)
def test_suspiciousness_loss_on_a_conv_victim_by_hand(form: str, expected: float) -> None:
    units = Suspiciousness(0, ("conv", "hidden"), (np.zeros(3), np.zeros(2)), (np.array([1, 2]), np.array([0])), 1, 1)
    loss = SuspiciousnessLoss(conv_victim(), units, alpha=0.9, form=form)
    x = tf.constant(np.stack([np.full((2, 2, 1), 0.5), np.full((2, 2, 1), 1.0)]), tf.float32)
    g = tf.constant(np.stack([np.full((2, 2, 1), 0.75), np.full((2, 2, 1), 0.5)]), tf.float32)
    mse = (0.25**2 + 0.5**2) / 2
    assert float(loss(x, g)) == pytest.approx(0.9 * expected + 0.1 * mse, rel=1e-6)


def test_generator_learning_rate_is_constant_as_the_study_ran() -> None:
    optimizer = generator_optimizer(GeneratorConfig(learning_rate=1e-3))
    optimizer.iterations.assign(5000)
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)
    decayed = generator_optimizer(GeneratorConfig(learning_rate=1e-3, decay_rate=0.9))
    decayed.iterations.assign(5000)
    assert float(decayed.learning_rate) == pytest.approx(1e-3 * 0.9**5)


# -- training -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["lrp", "nce", "suspiciousness"])
def test_a_few_steps_reduce_the_generator_loss(
    loss: str, tiny_image_model: keras.Model, tiny_image_data: Dataset
) -> None:
    config = GeneratorConfig(loss=loss, eps=0.2, top_k=10, epochs=4, batch_size=16, learning_rate=3e-3)
    trained = train_generator(tiny_image_model, tiny_image_data.x, tiny_image_data.y, 0, config)
    assert trained.losses[-1] < trained.losses[0]
    assert tuple(trained.model.output_shape[1:]) == tiny_image_data.input_shape
    if loss == "lrp":
        assert trained.details["relevant_pixels"].shape == (10,)


def test_ecg_generator_trains_with_the_nce_loss() -> None:
    victim = build_model("ecg_resnet", (64, 1), 4, num_blocks=2, base_filters=4)
    x = np.random.default_rng(0).normal(size=(24, 64, 1)).astype(np.float32)
    config = GeneratorConfig(loss="nce", epochs=4, batch_size=8, learning_rate=3e-3)
    trained = train_generator(victim, x, np.zeros(24, dtype=np.int64), 0, config, (-np.inf, np.inf))
    assert trained.losses[-1] < trained.losses[0]
    assert trained.model.layers[-1].get_config()["activation"] == "linear"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loss": "l2"}, "unknown generator loss"),
        ({"relevance_rule": "deeplift"}, "unknown relevance rule"),
        ({"suspiciousness_form": "mnist"}, "unknown suspiciousness form"),
        ({"alpha": 1.5}, "alpha"),
        ({"epochs": 0}, "epochs"),
        ({"spectra_class": 7}, "spectra_class"),
    ],
)
def test_bad_generator_settings_fail_before_training(
    changes: dict[str, object], message: str, tiny_image_model: keras.Model, tiny_image_data: Dataset
) -> None:
    with pytest.raises(AttackError, match=message):
        train_generator(tiny_image_model, tiny_image_data.x, tiny_image_data.y, 0, GeneratorConfig(**changes))


# -- generation -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.3, 8 / 255, 0.1])
def test_eps_ball_clip_is_exact_in_float32(eps: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 20000).astype(np.float32)
    g = rng.choice([-1.0, 2.0], x.shape).astype(np.float32)  # far outside: lands on a bound
    x_adv = eps_ball_clip(x, g, eps, (0.0, 1.0))
    assert x_adv.dtype == np.float32
    assert (np.abs(x_adv - x) <= np.float32(eps)).all()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # on the bound: within one float of x +- eps, or at the edge of the valid range
    bound = np.clip(x.astype(np.float64) + np.where(g > 1, eps, -eps), 0, 1)
    assert np.abs(x_adv - bound).max() <= 2 * np.spacing(np.float32(1.0))
    inside = rng.uniform(0, 1, x.shape).astype(np.float32)
    close = np.abs(inside - x) < eps * 0.99
    np.testing.assert_array_equal(eps_ball_clip(x, inside, eps, (0.0, 1.0))[close], inside[close])


def test_generate_routes_each_sample_to_its_class_generator() -> None:
    generators = {0: affine_generator((2, 2, 1), 0.0, 1.0), 1: affine_generator((2, 2, 1), 0.0, 0.0)}
    x = np.array([0.1, 0.5, 0.8, 0.95], dtype=np.float32).reshape(1, 2, 2, 1).repeat(2, axis=0)
    x_adv = generate(generators, x, np.array([0, 1]), eps=0.3, clip_range=(0.0, 1.0))
    np.testing.assert_allclose(x_adv[0].ravel(), [0.4, 0.8, 1.0, 1.0], rtol=1e-6)  # up by eps, capped at 1
    np.testing.assert_allclose(x_adv[1].ravel(), [0.0, 0.2, 0.5, 0.65], rtol=1e-6)  # down by eps, floored at 0
    with pytest.raises(AttackError, match=r"no generator for class\(es\) \[2\]"):
        generate(generators, x, np.array([0, 2]), eps=0.3, clip_range=(0.0, 1.0))


def test_misclassification_check_keeps_only_changed_predictions(
    tiny_image_model: keras.Model, tiny_image_data: Dataset
) -> None:
    x, y = tiny_image_data.x[:40], tiny_image_data.y[:40]
    inverted = affine_generator(x.shape[1:], -1.0, 1.0)  # pulls the blob down and the background up
    x_adv = generate({0: inverted, 1: inverted}, x, y, eps=0.3, clip_range=(0.0, 1.0), victim=tiny_image_model)
    before = tiny_image_model.predict(x, verbose=0).argmax(1)
    after = tiny_image_model.predict(x_adv, verbose=0).argmax(1)
    kept = np.any(x_adv != x, axis=(1, 2, 3))
    assert kept.any() and not kept.all()
    np.testing.assert_array_equal(after[kept] != before[kept], True)
    np.testing.assert_array_equal(x_adv[~kept], x[~kept])


def test_dgn_attack_applies_the_generators_and_checks_its_settings(
    tiny_image_model: keras.Model, tiny_image_data: Dataset
) -> None:
    generators = {c: affine_generator(tiny_image_data.input_shape, 0.0, 0.5) for c in (0, 1)}
    attack = DGNAttack(tiny_image_model, DGNConfig(eps=0.1), (0.0, 1.0), 32, generators=generators)
    x, y = tiny_image_data.x[:10], tiny_image_data.y[:10]
    expected = generate(generators, x, y, eps=0.1, clip_range=(0.0, 1.0))
    np.testing.assert_array_equal(attack.generate(x, y, None), expected)
    with pytest.raises(AttackError, match="untargeted"):
        DGNAttack(tiny_image_model, DGNConfig(target=1), (0.0, 1.0), 32, generators=generators)
    with pytest.raises(AttackError, match="eps"):
        DGNAttack(tiny_image_model, DGNConfig(eps=0.0), (0.0, 1.0), 32, generators=generators)
    with pytest.raises(AttackError, match="takes"):
        DGNAttack(
            tiny_image_model, DGNConfig(), (0.0, 1.0), 32, generators={0: affine_generator((28, 28, 1), 0.0, 0.0)}
        )
