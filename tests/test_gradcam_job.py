"""The `gradcam` entry point on attack runs logged to a real MLflow server."""

from __future__ import annotations

from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import EXPERIMENT
from mlflow_server import run_step

from medadv.attacks.result import AttackResult
from medadv.explain import Explainer, ExplainError
from medadv.jobs.attack import AttackSettings, attack
from medadv.jobs.gradcam import GradcamSettings, gradcam
from medadv.jobs.train import TrainSettings, train


@pytest.fixture(scope="module")
def image_attack_run(victims: dict[str, str], tracking_server: str) -> str:
    settings = AttackSettings(
        model="models:/tiny-pneumonia@candidate", dataset="pneumoniamnist", data_dir=victims["images"],
        split="train", attack="fgsm", attack_params="eps=0.1", num_samples=8,
    )  # fmt: skip
    return attack(settings, tracking_server, EXPERIMENT)


def test_gradcam_on_an_attack_run_logs_maps_that_reload_and_agree_with_the_metrics(
    image_attack_run: str, tracking_server: str, tmp_path: Path
) -> None:
    done = run_step(
        "gradcam.py", "--attack_run_id", image_attack_run, "--experiment", EXPERIMENT,
        tracking_uri=tracking_server, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.split("(")[1].split(")")[0]
    client = mlflow.MlflowClient(tracking_server)
    run = client.get_run(run_id)
    assert run.data.tags["mlflow.parentRunId"] == image_attack_run  # nested under the attack run
    assert run.data.params["layer"] == "last_conv" and run.data.params["attack"] == "fgsm"
    with np.load(client.download_artifacts(run_id, "heatmaps.npz", str(tmp_path))) as maps:
        clean, adversarial = maps["clean_maps"], maps["adversarial_maps"]
    assert clean.shape == adversarial.shape == (8, 28, 28) and clean.min() >= 0 and clean.max() <= 1
    table = pd.read_parquet(client.download_artifacts(run_id, "heatmaps.parquet", str(tmp_path)))
    assert run.data.metrics["dssim_mean"] == pytest.approx(table["dssim"].mean())
    assert run.data.metrics["dssim_max"] == pytest.approx(table["dssim"].max())
    assert "psnr_mean" in run.data.metrics  # the attack's own image degradation beside the heatmaps'
    assert [a.path for a in client.list_artifacts(run_id, "figures")] == ["figures/overlays.png"]


def _maps_and_run(run_id: str, tracking_server: str, folder: Path) -> tuple[np.ndarray, mlflow.entities.Run]:
    client = mlflow.MlflowClient(tracking_server)
    with np.load(client.download_artifacts(run_id, "heatmaps.npz", str(folder))) as maps:
        return np.stack([maps["clean_maps"], maps["adversarial_maps"]]), client.get_run(run_id)


@pytest.fixture(scope="module")
def default_gradcam_run(image_attack_run: str, tracking_server: str) -> str:
    """Grad-CAM with tf-keras-vis on the maps themselves: the reference the variants are compared with."""
    return gradcam(GradcamSettings(attack_run_id=image_attack_run), tracking_server, EXPERIMENT)


@pytest.mark.parametrize(
    "options",
    [{"engine": "compiled"}, {"on": "overlay"}, {"method": "gradcam++"}, {"method": "scorecam", "batch_size": 64}],
    ids=["compiled", "overlay", "gradcam++", "scorecam"],
)
def test_gradcam_variants_through_the_job(
    options: dict[str, str | int],
    image_attack_run: str,
    default_gradcam_run: str,
    tracking_server: str,
    tmp_path: Path,
) -> None:
    """Each variant records its setting, logs maps in [0, 1] and metrics that agree with its own table."""
    run_id = gradcam(GradcamSettings(attack_run_id=image_attack_run, **options), tracking_server, EXPERIMENT)  # type: ignore[arg-type]
    maps, run = _maps_and_run(run_id, tracking_server, tmp_path / "variant")
    reference, _ = _maps_and_run(default_gradcam_run, tracking_server, tmp_path / "reference")
    for key, value in options.items():
        assert run.data.params[key] == str(value)
    assert maps.shape == reference.shape == (2, 8, 28, 28) and maps.min() >= 0 and maps.max() <= 1
    table = pd.read_parquet(
        mlflow.MlflowClient(tracking_server).download_artifacts(run_id, "heatmaps.parquet", str(tmp_path))
    )
    assert run.data.metrics["dssim_mean"] == pytest.approx(table["dssim"].mean())
    reference_dssim = mlflow.MlflowClient(tracking_server).get_run(default_gradcam_run).data.metrics["dssim_mean"]
    if options.get("engine") == "compiled":  # the same Grad-CAM maps, one tf.function instead of tf-keras-vis
        np.testing.assert_allclose(maps, reference, atol=1e-3)
        assert run.data.metrics["dssim_mean"] == pytest.approx(reference_dssim, abs=1e-3)
    elif options.get("on") == "overlay":  # the same maps, compared as colour overlays on the images
        np.testing.assert_array_equal(maps, reference)
        assert run.data.metrics["dssim_mean"] != pytest.approx(reference_dssim, abs=1e-4)
    else:  # another method: other maps
        assert np.abs(maps - reference).max() > 0.05


def _two_channel_victim() -> keras.Model:
    """Class 1's logit sums channel 0, class 0's sums channel 1 (1x1 identity convolution, hand-set weights)."""
    inputs = keras.Input((8, 8, 2))
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="conv")
    features = conv(inputs)
    dense = keras.layers.Dense(2, name="logits")
    logits = dense(keras.layers.Flatten()(features))
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="softmax")(logits))
    conv.set_weights([np.eye(2, dtype=np.float32).reshape(1, 1, 2, 2), np.zeros(2, np.float32)])
    kernel = np.zeros((8 * 8 * 2, 2), np.float32)  # Flatten order (row, column, channel)
    kernel[1::2, 0] = 1.0  # class 0 <- channel 1
    kernel[0::2, 1] = 1.0  # class 1 <- channel 0
    dense.set_weights([kernel, np.zeros(2, np.float32)])
    return model


def test_gradcam_plus_plus_points_at_the_region_that_decides_the_output() -> None:
    """Channel 0 holds a bright square top left (it alone makes class 1's logit 16), channel 1 a dimmer one bottom
    right (class 0's logit 0.5 * 16 = 8): class 1's map must sit on the top-left square, class 0's on the other."""
    x = np.zeros((1, 8, 8, 2), np.float32)
    x[0, :4, :4, 0] = 1.0
    x[0, 4:, 4:, 1] = 0.5
    model = _two_channel_victim()
    assert np.asarray(model(x)).argmax() == 1
    explainer = Explainer(model, method="gradcam++", layer="conv")
    top_left, bottom_right = (slice(None, 4), slice(None, 4)), (slice(4, None), slice(4, None))
    for explained, inside, outside in ((1, top_left, bottom_right), (0, bottom_right, top_left)):
        heatmap = explainer(x, explained).maps[0]
        assert heatmap[inside].min() > 0.9 and heatmap[outside].max() < 0.1, (explained, heatmap.round(2))


def test_ecg_attack_runs_get_heatmaps_along_time(victims: dict[str, str], tracking_server: str, tmp_path: Path) -> None:
    attack_run = attack(
        AttackSettings(model="models:/tiny-cinc@candidate", dataset="cinc2017", data_dir=victims["ecg"],
                       data_options="length=600", attack="fgsm", attack_params="eps=0.5", num_samples=4),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    run_id = gradcam(GradcamSettings(attack_run_id=attack_run, explain_class="own"), tracking_server, EXPERIMENT)
    client = mlflow.MlflowClient(tracking_server)
    result = AttackResult.load(Path(client.download_artifacts(attack_run, "attack_result.npz", str(tmp_path))))
    with np.load(client.download_artifacts(run_id, "heatmaps.npz", str(tmp_path))) as maps:
        assert maps["clean_maps"].shape[1:] == (600,) and maps["adversarial_maps"].shape == maps["clean_maps"].shape
        # `own`, the Grad-Attacks way: the clean map explains the clean prediction, the adversarial map its own
        np.testing.assert_array_equal(maps["class_index"], result.y_clean)
        np.testing.assert_array_equal(maps["adversarial_class_index"], result.y_adv)


def test_clean_only_maps_from_a_model_and_a_data_set(victims: dict[str, str], tracking_server: str) -> None:
    settings = GradcamSettings(
        model="models:/tiny-pneumonia@candidate", dataset="pneumoniamnist", data_dir=victims["images"], num_samples=3
    )
    run_id = gradcam(settings, tracking_server, EXPERIMENT)
    run = mlflow.MlflowClient(tracking_server).get_run(run_id)
    assert run.data.metrics["num_samples"] == 3 and run.data.params["layer"] == "last_conv"


def test_bad_input_is_refused_before_any_map(
    victims: dict[str, str], image_attack_run: str, tracking_server: str, tmp_path: Path
) -> None:
    train_run = str(
        mlflow.MlflowClient(tracking_server).get_model_version_by_alias("tiny-pneumonia", "candidate").run_id
    )
    cases = [
        (GradcamSettings(attack_run_id="0" * 32), "attack run 00000000000000000000000000000000 not found"),
        (GradcamSettings(attack_run_id=train_run), "is a train run, not an attack run"),
        (GradcamSettings(attack_run_id=image_attack_run, layer="conv99"), "layer 'conv99' is not in model"),
        (GradcamSettings(), "give --attack_run_id"),
    ]
    for settings, message in cases:
        with pytest.raises(ExplainError, match=message):
            gradcam(settings, tracking_server, EXPERIMENT)
    dense = TrainSettings(
        dataset="pneumoniamnist", data_dir=victims["images"], arch="mnist_dense", epochs=1, model_name="tiny-dense"
    )
    train(dense, tracking_server, EXPERIMENT)
    done = run_step(
        "gradcam.py", "--model", "models:/tiny-dense@candidate", "--dataset", "pneumoniamnist",
        "--data_dir", victims["images"], "--experiment", EXPERIMENT, tracking_uri=tracking_server, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "medadv: error: model 'mnist_dense' has no Conv1D/Conv2D layer; pass layer= the name of a layer to explain"
    )


@pytest.mark.slow
def test_on_real_pneumoniamnist_dssim_grows_with_pgd_eps(shared_data: Path, tracking_server: str) -> None:
    npz = str(shared_data / "pneumoniamnist.npz")
    train(
        TrainSettings(dataset="pneumoniamnist", data_dir=npz, arch="small_cnn", arch_options="width=16",
                      epochs=3, learning_rate=2e-3, model_name="pneumonia-cnn"),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    dssim = []
    for eps in (0.01, 0.05, 0.1):
        attack_run = attack(
            AttackSettings(model="models:/pneumonia-cnn@candidate", dataset="pneumoniamnist", data_dir=npz,
                           attack="pgd", attack_params=f"eps={eps},eps_step={eps / 4},max_iter=10", num_samples=48),
            tracking_server, EXPERIMENT,
        )  # fmt: skip
        run_id = gradcam(GradcamSettings(attack_run_id=attack_run), tracking_server, EXPERIMENT)
        dssim.append(mlflow.MlflowClient(tracking_server).get_run(run_id).data.metrics["dssim_mean"])
    assert dssim[0] < dssim[1] < dssim[2], dssim
