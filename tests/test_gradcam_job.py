"""The `gradcam` entry point on attack runs logged to a real MLflow server."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import EXPERIMENT
from mlflow_server import run_step

from medadv.explain import ExplainError
from medadv.tracking.attack_job import AttackSettings, attack
from medadv.tracking.gradcam_job import GradcamSettings, gradcam
from medadv.tracking.train_job import TrainSettings, train


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


def test_ecg_attack_runs_get_heatmaps_along_time(victims: dict[str, str], tracking_server: str, tmp_path: Path) -> None:
    attack_run = attack(
        AttackSettings(model="models:/tiny-cinc@candidate", dataset="cinc2017", data_dir=victims["ecg"],
                       data_options="length=600", attack="fgsm", attack_params="eps=0.5", num_samples=4),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    run_id = gradcam(GradcamSettings(attack_run_id=attack_run, explain_class="true"), tracking_server, EXPERIMENT)
    path = mlflow.MlflowClient(tracking_server).download_artifacts(run_id, "heatmaps.npz", str(tmp_path))
    with np.load(path) as maps:
        assert maps["clean_maps"].shape[1:] == (600,) and maps["adversarial_maps"].shape == maps["clean_maps"].shape


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
    train_run = mlflow.MlflowClient(tracking_server).get_model_version_by_alias("tiny-pneumonia", "candidate").run_id
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
