"""`train` in generator and robust modes against a real MLflow server: generator sets, robust models registered,
and DeepCustom's MNIST figures on the real MNIST images, logged as the runs' metrics."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from conftest import EXPERIMENT

from medadv.attacks.result import AttackResult
from medadv.data import mnist
from medadv.defenses import DefenseError
from medadv.errors import MedadvError
from medadv.jobs.attack import AttackSettings, attack
from medadv.jobs.train import TrainSettings, train
from medadv.tracking.registry import load_generators, load_model


@pytest.fixture(scope="module")
def mnist_victim(tracking_server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("mnist")
    mnist.write_synthetic(root)
    train(
        TrainSettings(dataset="mnist", data_dir=str(root), arch="mnist_dense", epochs=8, learning_rate=3e-3,
                      model_name="tiny-mnist"),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    return str(root)


def test_generator_set_and_dgn_robust_model(mnist_victim: str, tracking_server: str) -> None:
    common = {"dataset": "mnist", "data_dir": mnist_victim, "victim": "models:/tiny-mnist@candidate", "batch_size": 32}
    generator_run = train(
        TrainSettings(mode="generator", generator_loss="nce", epochs=2, **common),
        tracking_server,
        EXPERIMENT,  # type: ignore[arg-type]
    )
    client = mlflow.MlflowClient(tracking_server)
    parent = client.get_run(generator_run)
    assert parent.data.tags["medadv.step"] == "generator" and parent.data.tags["medadv.generator_loss"] == "nce"
    assert {"clean_accuracy", "dgn_accuracy", "accuracy_drop"} <= set(parent.data.metrics)
    mlflow.set_tracking_uri(tracking_server)
    generators = load_generators(generator_run)
    assert sorted(generators) == list(range(10)) and generators[0].input_shape[1:] == (28, 28, 1)

    dgn_attack = attack(
        AttackSettings(model="models:/tiny-mnist@candidate", dataset="mnist", data_dir=mnist_victim, attack="dgn",
                       attack_params="eps=0.3", generators=generator_run),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    result = AttackResult.load(Path(client.download_artifacts(dgn_attack, "attack_result.npz")))
    assert abs(result.delta).max() <= 0.3 + 1e-6 and result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert client.get_run(dgn_attack).data.metrics["num_samples"] == len(result) > 0

    robust_run = train(
        TrainSettings(mode="robust", method="dgn_nce", generators=generator_run, epochs=2, **common),  # type: ignore[arg-type]
        tracking_server,
        EXPERIMENT,
    )
    version = client.get_model_version_by_alias("medadv-mnist-mnist_dense-robust-dgn_nce", "candidate")
    assert version.run_id == robust_run and version.tags["training_method"] == "dgn_nce"
    metrics = client.get_run(robust_run).data.metrics
    assert {"clean_accuracy", "robust_accuracy", "victim_robust_accuracy", "robust_accuracy_gain"} <= set(metrics)
    load_model("models:/medadv-mnist-mnist_dense-robust-dgn_nce@candidate")  # obeys the victim contract

    with pytest.raises(DefenseError, match="is not a generator set trained with the lrp loss"):
        train(
            TrainSettings(mode="robust", method="dgn_lrp", generators=generator_run, **common),
            tracking_server,
            EXPERIMENT,
        )  # type: ignore[arg-type]


def test_fgsm_robust_model_is_registered_with_its_threat_model(mnist_victim: str, tracking_server: str) -> None:
    settings = TrainSettings(
        mode="robust", method="fgsm", attack_params="eps=0.3", dataset="mnist", data_dir=mnist_victim,
        victim="models:/tiny-mnist@candidate", epochs=2, batch_size=32,
    )  # fmt: skip
    run_id = train(settings, tracking_server, EXPERIMENT)
    version = mlflow.MlflowClient(tracking_server).get_model_version_by_alias(
        "medadv-mnist-mnist_dense-robust-fgsm", "candidate"
    )
    assert version.run_id == run_id and "robust_accuracy_fgsm" in version.tags
    run = mlflow.MlflowClient(tracking_server).get_run(run_id)
    assert run.data.tags["medadv.robust_trainer"] == "gf" and run.data.params["trainer"] == "gf"  # DeepCustom's
    # the study's evaluation (test data crafted against the victim) beside the white-box one
    assert {"robust_accuracy", "robust_accuracy_victim_crafted"} <= set(run.data.metrics)
    assert "robust_accuracy_fgsm_victim_crafted" in version.tags


@pytest.mark.study  # 10,000 real MNIST images through generators and robust training: about 2 minutes
def test_real_mnist_dgn_attack_and_dgn_robust_training_log_the_study_figures(
    shared_data: Path, tracking_server: str
) -> None:
    """Real MNIST, the 5x30 dense victim, lrp generators at eps 0.3: the generator set's run logs a drop of
    >= 30 points of accuracy on DGN test data, the dgn_lrp robust model's run a gain of >= 30 points on it."""
    common = {"dataset": "mnist", "data_dir": str(shared_data / "mnist"), "batch_size": 50}
    train(
        TrainSettings(arch="mnist_dense", epochs=5, model_name="real-mnist-dense", **common),  # type: ignore[arg-type]
        tracking_server,
        EXPERIMENT,
    )
    victim = {"victim": "models:/real-mnist-dense@candidate"}
    generator_run = train(
        TrainSettings(mode="generator", generator_loss="lrp", generator_options="eps=0.3,top_k=20", epochs=1,
                      **common, **victim),  # type: ignore[arg-type]
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    robust_run = train(
        TrainSettings(mode="robust", method="dgn_lrp", generators=generator_run, epochs=3,
                      model_name="real-mnist-dense-robust-dgn_lrp", **common, **victim),  # type: ignore[arg-type]
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    client = mlflow.MlflowClient(tracking_server)
    attacked, defended = client.get_run(generator_run).data.metrics, client.get_run(robust_run).data.metrics
    print(
        f"MNIST 5x30: clean {attacked['clean_accuracy']:.3f}, DGN(lrp) {attacked['dgn_accuracy']:.3f}, "
        f"DGN-robust on DGN data {defended['robust_accuracy']:.3f}"
    )
    assert attacked["accuracy_drop"] >= 0.30
    assert defended["victim_robust_accuracy"] == pytest.approx(attacked["dgn_accuracy"])  # the same DGN test data
    assert defended["robust_accuracy_gain"] >= 0.30


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": "robust", "method": "magic"}, "unknown robust method 'magic'"),
        ({"mode": "robust", "method": "pgd"}, "needs --victim"),
        ({"mode": "robust", "method": "pgd", "trainer": "madry"}, "unknown robust trainer 'madry'"),
        ({"mode": "generator", "victim": "models:/tiny-mnist@candidate", "generator_loss": "l1"}, "loss"),
        ({"mode": "sideways"}, "unknown mode 'sideways'"),
    ],
)
def test_bad_modes_fail_before_any_run(mnist_victim: str, tracking_server: str, changes: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        train(TrainSettings(dataset="mnist", data_dir=mnist_victim, **changes), tracking_server, EXPERIMENT)


@pytest.mark.parametrize(
    ("step", "logged", "finished", "changes", "message"),
    [
        ("generator", {"generator_loss": "nce"}, False, {"mode": "generator", "generator_loss": "lrp"},
         "was started with other values of generator_loss"),
        ("generator", {}, True, {"mode": "generator"}, "has finished; nothing to resume"),
        ("generator", {}, False, {"mode": "robust", "method": "fgsm"}, "is not a train run"),
        ("train", {"mode": "victim"}, False, {"mode": "robust", "method": "fgsm"}, "other values of mode"),
        ("train", {"method": "pgd_online"}, False, {"mode": "robust", "method": "fgsm"}, "other values of method"),
    ],
)  # fmt: skip
def test_a_robust_or_generator_resume_that_cannot_go_on_is_refused_before_any_compute(
    tracking_server: str, step: str, logged: dict[str, str], finished: bool, changes: dict[str, str], message: str
) -> None:
    client = mlflow.MlflowClient(tracking_server)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    run_id = client.create_run(experiment_id, tags={"medadv.step": step}).info.run_id
    for key, value in logged.items():
        client.log_param(run_id, key, value)
    client.set_terminated(run_id, "FINISHED" if finished else "KILLED")
    with pytest.raises(MedadvError, match=f"run {run_id} .*{message}"):
        train(TrainSettings(dataset="mnist", run_id=run_id, **changes), tracking_server, EXPERIMENT)
    assert client.get_run(run_id).info.status == ("FINISHED" if finished else "KILLED")  # left as it was
