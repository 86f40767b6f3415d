"""Transfer as foe does it: the source model crafts on the target task's data and labels, the target is scored
on them beside a white-box attack on itself; targets trained for another task are refused."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from medadv.attacks import AttackError
from medadv.attacks.result import AttackResult, load_probabilities
from medadv.contract import ATTACK_RESULT, TRANSFER_PROBABILITIES
from medadv.data import nih
from medadv.jobs.attack import AttackSettings, attack
from medadv.jobs.evaluate import EvaluateSettings, evaluate
from medadv.jobs.train import TrainSettings, train
from medadv.metrics.transfer import targets_table

EXPERIMENT = "test-transfer"
PNEUMONIA, CINC = "models:/tiny-pneumonia@candidate", "models:/tiny-cinc@candidate"
REAL_IMAGES = {"00000001_000.png", "00027426_000.png"}  # Cardiomegaly, No Finding


def nih_set(root: Path, task: str, shared: Path) -> Path:
    """A generated set in the NIH layout for `task`, plus the two real NIH images and their metadata rows."""
    nih.write_synthetic(root, task=task, patients=30, images_per_patient=3)
    for name in REAL_IMAGES:
        shutil.copy(shared / "nih" / name, root / "images_001" / "images" / name)
    with gzip.open(shared / "nih" / "Data_Entry_2017_v2020.csv.gz") as handle:
        real = pd.read_csv(handle)
    table = root / "Data_Entry_2017_v2020.csv"
    pd.concat([pd.read_csv(table), real[real["Image Index"].isin(REAL_IMAGES)]]).to_csv(table, index=False)
    return root


@pytest.mark.slow
def test_transfer_matrix_between_two_conditions_with_clean_aucs(
    shared_data: Path, tracking_server: str, tmp_path: Path
) -> None:
    roots = {task: nih_set(tmp_path / task, task, shared_data) for task in ("pneumothorax", "cardiomegaly")}
    for task, root in roots.items():
        train(
            TrainSettings(dataset=f"nih_{task}", data_dir=str(root), data_options="image_size=64", arch="small_cnn",
                          arch_options="width=8", epochs=6, learning_rate=3e-3, model_name=f"nih-{task}"),
            tracking_server, EXPERIMENT,
        )  # fmt: skip
    # foe: the pneumothorax model crafts PGD on the cardiomegaly images with their cardiomegaly labels
    attack_run = attack(
        AttackSettings(model="models:/nih-pneumothorax@candidate", dataset="nih_cardiomegaly",
                       data_dir=str(roots["cardiomegaly"]), data_options="image_size=64", split="all",
                       attack="pgd", attack_params="eps=0.1,eps_step=0.02,max_iter=10", num_samples=16,
                       selection="first_last", transfer_to="models:/nih-cardiomegaly@candidate"),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    client = mlflow.MlflowClient(tracking_server)
    transfer = pd.read_csv(client.download_artifacts(attack_run, "transfer.csv", str(tmp_path)), index_col=0)
    assert list(transfer.index) == ["models:/nih-cardiomegaly/1"]  # the version the alias named
    row = transfer.iloc[0]
    assert 0 <= row["transfer_success_rate"] <= 1 and np.isfinite(row["clean_auc"])
    assert row["confidence_ci95_low"] <= row["confidence_mean"] <= row["confidence_ci95_high"]
    assert 0 <= row["white_box_accuracy"] <= 1

    report = evaluate(EvaluateSettings(), tracking_server, EXPERIMENT)
    matrix = pd.read_csv(client.download_artifacts(report, "tables/transfer_matrix.csv", str(tmp_path)))
    assert matrix.loc[0, "models:/nih-cardiomegaly/1"] == pytest.approx(row["transfer_success_rate"])
    source_run = client.get_model_version_by_alias("nih-pneumothorax", "candidate").run_id
    assert matrix.loc[0, "source_clean_auc"] == pytest.approx(client.get_run(source_run).data.metrics["test_auc"])


def test_a_target_trained_for_another_task_is_refused_before_any_run(
    victims: dict[str, str], tracking_server: str
) -> None:
    settings = AttackSettings(
        model=CINC, dataset="cinc2017", data_dir=victims["ecg"], data_options="length=600", transfer_to=PNEUMONIA
    )
    mlflow.set_tracking_uri(tracking_server)
    before = len(mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list"))
    with pytest.raises(AttackError, match=f"transfer_to {PNEUMONIA} was trained on pneumoniamnist, not cinc2017"):
        attack(settings, tracking_server, EXPERIMENT)
    assert len(mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")) == before


def test_transfer_reports_the_white_box_attack_on_the_target_beside(
    victims: dict[str, str], tracking_server: str, tmp_path: Path
) -> None:
    # replayed on the victim itself, the deterministic FGSM's white-box adversarials are the transferred ones
    run_id = attack(
        AttackSettings(model=PNEUMONIA, dataset="pneumoniamnist", data_dir=victims["images"], split="train",
                       attack="fgsm", attack_params="eps=0.1", num_samples=8, transfer_to=PNEUMONIA),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    client = mlflow.MlflowClient(tracking_server)
    transfer = pd.read_csv(client.download_artifacts(run_id, "transfer.csv", str(tmp_path)), index_col=0)
    row = transfer.iloc[0]
    assert row["white_box_accuracy"] == pytest.approx(row["adversarial_accuracy"])
    assert row["white_box_accuracy"] == pytest.approx(client.get_run(run_id).data.metrics["robust_accuracy"])
    # beside it, the probabilities transfer.csv was scored from, by sample id: evaluate merges shards from them
    result = AttackResult.load(client.download_artifacts(run_id, ATTACK_RESULT, str(tmp_path)))
    saved = load_probabilities(client.download_artifacts(run_id, TRANSFER_PROBABILITIES, str(tmp_path)))
    (target,) = saved.values()
    assert list(saved) == list(transfer.index) and list(target.ids) == list(result.ids)
    assert target.clean.shape == target.adversarial.shape == (8, 2) and target.white_box is not None
    pd.testing.assert_frame_equal(targets_table(result, saved), transfer, rtol=1e-9)
