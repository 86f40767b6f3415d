"""The `evaluate` entry point on real attack, gradcam and train runs: shards merged, tables equal to the runs."""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from medadv.attacks.result import AttackResult
from medadv.contract import TRANSFER_PROBABILITIES
from medadv.defenses.ecg_filters import defense_verdict
from medadv.jobs.attack import AttackSettings, attack
from medadv.jobs.evaluate import EvaluateError, EvaluateSettings, evaluate
from medadv.jobs.gradcam import GradcamSettings, gradcam
from medadv.metrics import wilson_interval
from medadv.report.tables import ATTACK_METRICS, DEFENSE_METRICS, PLAUSIBILITY_METRICS

EXPERIMENT = "evaluate-tests"  # its own experiment: the report covers exactly the runs made here
TABLES = (
    "attacks", "robustness", "robustness_transfer", "success_matrices", "transfer", "transfer_matrix", "heatmaps",
    "models", "missing", "skipped", "ecg_plausibility", "ecg_defenses",
)  # fmt: skip


@dataclass(frozen=True)
class Runs:
    whole: str  # FGSM eps 0.1 on 12 samples, unsharded, replayed on the registered version
    parent: str  # the same attack in shards 0/2 and 1/2 under this parent
    overlap_parent: str  # two "shards" holding the same samples
    rerun_parent: str  # hand-made shards: 0/2 run twice (the newer fools both samples, the older none), 1/2 once
    superseded: str  # the older run of shard 0/2, created last
    rerun: str  # the newer run of shard 0/2
    half_parent: str  # FGSM eps 0.2: shard 0/2 finished, shard 1/2 failed
    failed: str
    targeted: str  # ECG PGD towards every other class
    gradcam: str
    lacking: str  # a finished attack run with only one metric
    windows: list[str]  # ECGadv Type II runs at windows 300 and 600, logged directly with their success rates
    evaluate: str
    report: str  # what the step printed as the report's location
    tables: dict[str, pd.DataFrame]
    html: str
    figures: list[str]
    latex: dict[str, str]


def _fgsm_settings(victims: dict[str, str], victim_version: str, **changes: str) -> AttackSettings:
    common = {
        "model": "models:/tiny-pneumonia@candidate", "dataset": "pneumoniamnist", "data_dir": victims["images"],
        "split": "train", "attack": "fgsm", "attack_params": "eps=0.1", "num_samples": 12,
        "transfer_to": victim_version,
    }  # fmt: skip
    return AttackSettings(**(common | changes))  # type: ignore[arg-type]


def _logged_run(
    client: mlflow.MlflowClient,
    experiment_id: str,
    params: dict[str, str],
    *,
    status: str = "FINISHED",
    metrics: dict[str, float] | None = None,
    artifacts: tuple[str, ...] = (),
    start_time: int | None = None,
) -> str:
    """An attack run written directly, for what the entry point never leaves behind (failures, launcher bugs)."""
    run_id = client.create_run(experiment_id, start_time=start_time, tags={"medadv.step": "attack"}).info.run_id
    client.log_batch(
        run_id,
        params=[mlflow.entities.Param(key, value) for key, value in params.items()],
        metrics=[mlflow.entities.Metric(key, value, 0, 0) for key, value in (metrics or {}).items()],
    )
    for artifact in artifacts:
        client.log_artifact(run_id, artifact)
    client.set_terminated(run_id, status=status)
    return run_id


def _hand_made_npz(folder: Path, ids: list[str], *, fooled: bool) -> str:
    """attack_result.npz of two 12x12 images (SSIM's 11x11 window fits) of classes 0 and 1, both misclassified
    after the attack or neither."""
    folder.mkdir()
    x = np.zeros((2, 12, 12, 1), dtype=np.float32)
    y_true = np.array([0, 1])
    result = AttackResult(
        x=x, x_adv=x + 0.1, ids=np.array(ids), y_true=y_true, y_clean=y_true, y_adv=1 - y_true if fooled else y_true,
        y_target=np.full(2, -1), p_clean=np.ones(2), p_adv=np.ones(2), seconds=np.ones(2),
    )  # fmt: skip
    return str(result.save(folder / "attack_result.npz"))


@pytest.fixture(scope="module")
def runs(victims: dict[str, str], tracking_server: str, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    client = mlflow.MlflowClient(tracking_server)
    mlflow.set_tracking_uri(tracking_server)
    experiment_id = mlflow.set_experiment(EXPERIMENT).experiment_id
    version = client.get_model_version_by_alias("tiny-pneumonia", "candidate").version
    victim_version = f"models:/tiny-pneumonia/{version}"

    def parent_run() -> str:  # what a sweep launcher creates: an empty run the shards point at
        run_id = client.create_run(experiment_id, run_name="sweep").info.run_id
        client.set_terminated(run_id)
        return run_id

    whole = attack(_fgsm_settings(victims, victim_version), tracking_server, EXPERIMENT)
    parent = parent_run()
    for shard in ("0/2", "1/2"):
        settings = _fgsm_settings(victims, victim_version, shard=shard, parent_run_id=parent)
        attack(settings, tracking_server, EXPERIMENT)
    # Two "shards" that both hold every sample (a launcher bug): each id must count once.
    overlap_parent = parent_run()
    whole_params = client.get_run(whole).data.params
    whole_folder = str(tmp_path_factory.mktemp("whole"))
    whole_files = tuple(
        client.download_artifacts(whole, path, whole_folder) for path in ("attack_result.npz", TRANSFER_PROBABILITIES)
    )
    for shard in ("0/2", "1/2"):
        params = whole_params | {"shard": shard, "parent_run_id": overlap_parent}
        _logged_run(client, experiment_id, params, artifacts=whole_files)
    # Shard 0/2 run twice: the newer run (by start time; created first here) must win over the older.
    rerun_parent = parent_run()
    folder = tmp_path_factory.mktemp("rerun")
    rerun_params = whole_params | {"parent_run_id": rerun_parent, "eps": "0.25"}
    rerun_params |= {"transfer_to": "", "transfer_to_versions": ""}
    rerun = _logged_run(client, experiment_id, rerun_params | {"shard": "0/2"},
                        artifacts=(_hand_made_npz(folder / "new", ["a", "b"], fooled=True),))  # fmt: skip
    _logged_run(client, experiment_id, rerun_params | {"shard": "1/2"},
                artifacts=(_hand_made_npz(folder / "other", ["c", "d"], fooled=False),))  # fmt: skip
    superseded = _logged_run(
        client, experiment_id, rerun_params | {"shard": "0/2"},
        artifacts=(_hand_made_npz(folder / "old", ["a", "b"], fooled=False),),
        start_time=client.get_run(rerun).info.start_time - 60_000,
    )  # fmt: skip
    # Shard 0/2 finished, its sibling 1/2 (same parameters) failed.
    half_parent = parent_run()
    half = _fgsm_settings(victims, "", attack_params="eps=0.2", shard="0/2", parent_run_id=half_parent)
    half_params = client.get_run(attack(half, tracking_server, EXPERIMENT)).data.params
    failed = _logged_run(client, experiment_id, half_params | {"shard": "1/2"}, status="FAILED")
    targeted = attack(
        AttackSettings(model="models:/tiny-cinc@candidate", dataset="cinc2017", data_dir=victims["ecg"],
                       data_options="length=600", attack="pgd", num_samples=2, defense="bandpass",
                       attack_params="eps=1.0,eps_step=0.25,max_iter=5,target=-1"),
        tracking_server, EXPERIMENT,
    )  # fmt: skip
    gradcam_run = gradcam(GradcamSettings(attack_run_id=whole), tracking_server, EXPERIMENT)
    lacking = _logged_run(
        client, experiment_id, {"model": "models:/tiny-pneumonia@candidate", "attack": "fgsm", "eps": "0.3"},
        metrics={"fooling_rate": 0.5},
    )  # fmt: skip

    windows = [
        _logged_run(
            client, experiment_id, {"model": "models:/tiny-cinc@candidate", "attack": "ecgadv_type2", "window": window},
            metrics={"attack_success_rate": rate},
        )
        for window, rate in (("300", 0.25), ("600", 0.75))
    ]  # fmt: skip

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        evaluate_id = evaluate(EvaluateSettings(), tracking_server, EXPERIMENT)
    local = Path(client.download_artifacts(evaluate_id, "", str(tmp_path_factory.mktemp("evaluate"))))
    return Runs(
        whole=whole, parent=parent, overlap_parent=overlap_parent, rerun_parent=rerun_parent, superseded=superseded,
        rerun=rerun, half_parent=half_parent, failed=failed,
        targeted=targeted, gradcam=gradcam_run, lacking=lacking, windows=windows, evaluate=evaluate_id,
        report=printed.getvalue().strip().splitlines()[-1],
        tables={name: pd.read_parquet(local / "tables" / f"{name}.parquet") for name in TABLES},
        html=(local / "report.html").read_text(),
        figures=sorted(path.name for path in (local / "figures").iterdir()),
        latex={path.stem: path.read_text() for path in (local / "tables").glob("*.tex")},
    )  # fmt: skip


def test_merged_shards_give_the_unsharded_runs_metrics_with_no_sample_twice(runs: Runs, tracking_server: str) -> None:
    attacks = runs.tables["attacks"]
    merged, whole = attacks.loc[runs.parent], attacks.loc[runs.whole]
    assert (merged["shards"], merged["missing_shards"], merged["duplicate_ids"]) == ("2/2", "", 0)
    assert merged["num_samples"] == whole["num_samples"] == 12
    assert whole["fooling_rate"] > 0  # so the transfer rates below are numbers, not NaN
    for name in ATTACK_METRICS:
        if name != "seconds_per_sample":  # wall time differs between runs
            assert merged[name] == pytest.approx(whole[name], rel=1e-6), name
    overlapping = attacks.loc[runs.overlap_parent]
    assert (overlapping["shards"], overlapping["duplicate_ids"], overlapping["num_samples"]) == ("2/2", 12, 12)
    assert overlapping["robust_accuracy"] == whole["robust_accuracy"]
    # transfer.csv recomputed from the probabilities the shards saved (no model loaded) equals the unsharded run's
    # logged one, every column (white-box accuracy included); the overlapping copies count once there too.
    client = mlflow.MlflowClient(tracking_server)
    logged = pd.read_csv(client.download_artifacts(runs.whole, "transfer.csv"), index_col=0)
    assert np.isfinite(logged["white_box_accuracy"]).all()
    transfer = runs.tables["transfer"]
    for parent in (runs.parent, runs.overlap_parent):
        merged = transfer.loc[[parent]].set_index("target_model")[list(logged.columns)]
        pd.testing.assert_frame_equal(merged, logged, rtol=1e-6)


def test_every_table_matches_the_runs_logged_metrics_and_artifacts(runs: Runs, tracking_server: str) -> None:
    client = mlflow.MlflowClient(tracking_server)
    attacks = runs.tables["attacks"]
    for run_id in (runs.whole, runs.targeted):
        logged = client.get_run(run_id).data.metrics
        row = attacks.loc[run_id]
        assert {name: row[name] for name in logged if name in ATTACK_METRICS} == {
            name: value for name, value in logged.items() if name in ATTACK_METRICS
        }
    assert attacks.loc[runs.whole, "label"] == "fgsm@0.1"
    n, robust = attacks.loc[runs.whole, ["num_samples", "robust_accuracy"]]
    interval = wilson_interval(round(robust * n), int(n))
    assert tuple(attacks.loc[runs.whole, ["robust_accuracy_low", "robust_accuracy_high"]]) == pytest.approx(interval)
    assert attacks.loc[runs.targeted, "target_class"] == "each other class"

    robustness = runs.tables["robustness"]
    pneumonia = client.get_run(runs.whole).data.params["model_version_uri"]  # the version @candidate named then
    cinc = client.get_run(runs.targeted).data.params["model_version_uri"]
    assert attacks.loc[runs.whole, "model"] == pneumonia and pneumonia.startswith("models:/tiny-pneumonia/")
    assert attacks.loc[runs.whole, "model_label"] == f"tiny-pneumonia v{pneumonia[-1]} (@candidate at the time)"
    whole_robust = client.get_run(runs.whole).data.metrics["robust_accuracy"]
    assert robustness.loc[pneumonia, "fgsm@0.1"] == pytest.approx(whole_robust)
    train_run = client.get_model_version_by_alias("tiny-cinc", "candidate").run_id
    train_metrics = client.get_run(train_run).data.metrics
    assert robustness.loc[cinc, "clean_test_accuracy"] == train_metrics["test_accuracy"]
    assert runs.tables["models"].loc[cinc, "test_auc"] == pytest.approx(train_metrics["test_auc"], nan_ok=True)

    logged_matrix = pd.read_csv(client.download_artifacts(runs.targeted, "success_matrix.csv"), index_col=0)
    long = runs.tables["success_matrices"].loc[runs.targeted]
    assert long.pivot(index="source", columns="target", values="success_rate").equals(
        logged_matrix.rename_axis(index="source", columns="target")
    )

    logged_transfer = pd.read_csv(client.download_artifacts(runs.whole, "transfer.csv"), index_col=0)
    target = logged_transfer.index[0]
    matrix = runs.tables["transfer_matrix"]  # indexed by (source_model, label)
    assert matrix.loc[(pneumonia, "fgsm@0.1"), target] == pytest.approx(
        logged_transfer.loc[target, "transfer_success_rate"]
    )  # the mean of the unsharded and the merged run, which are equal

    logged = client.get_run(runs.targeted).data.metrics  # the ECG run: clinical plausibility, defended by a band-pass
    plausibility = runs.tables["ecg_plausibility"]
    assert list(plausibility.index) == [runs.targeted]
    assert plausibility.loc[runs.targeted, list(PLAUSIBILITY_METRICS)].to_dict() == pytest.approx(
        {name: logged[name] for name in PLAUSIBILITY_METRICS}, nan_ok=True
    )
    defense = runs.tables["ecg_defenses"].loc[runs.targeted]
    assert defense["defense"] == "bandpass" and defense["adaptive_success_rate"] == logged["attack_success_rate"]
    assert defense["verdict"] == defense_verdict(*(logged[name] for name in DEFENSE_METRICS))

    heatmaps = runs.tables["heatmaps"].set_index(["model", "attack", "eps", "method"])
    logged_heat = client.get_run(runs.gradcam).data.metrics
    row = heatmaps.loc[(pneumonia, "fgsm", 0.1, "gradcam")]
    assert row["runs"] == 1
    assert row["dssim_mean"] == logged_heat["dssim_mean"] and row["iou_top20_mean"] == logged_heat["iou_top20_mean"]


def test_type2_runs_are_labelled_by_window(runs: Runs) -> None:
    attacks = runs.tables["attacks"]
    assert list(attacks.loc[runs.windows, "label"]) == ["ecgadv_type2 w=300", "ecgadv_type2 w=600"]
    assert list(attacks.loc[runs.windows, "window"]) == [300, 600]
    assert attacks.drop(index=runs.windows)["window"].isna().all()


def test_missing_metrics_missing_shards_and_failed_runs_are_listed(runs: Runs) -> None:
    missing = runs.tables["missing"]
    lacking = set(missing.loc[missing["run_id"] == runs.lacking, "name"])
    assert {"robust_accuracy", "selected_clean_accuracy", "num_samples"} <= lacking and "fooling_rate" not in lacking
    assert np.isnan(runs.tables["attacks"].loc[runs.lacking, "robust_accuracy"])
    assert runs.tables["attacks"].loc[runs.lacking, "fooling_rate"] == 0.5
    assert not set(missing["run_id"]) & {runs.whole, runs.targeted, runs.gradcam}

    # a shard run twice: the newer run counts, the older is listed as superseded by it
    rerun = runs.tables["attacks"].loc[runs.rerun_parent]
    assert (rerun["shards"], rerun["num_samples"], rerun["duplicate_ids"]) == ("2/2", 4, 0)
    assert rerun["robust_accuracy"] == 0.5  # the newer shard 0/2 fooled both its samples, shard 1/2 neither: 2/4
    assert rerun["attack_success_rate"] == 0.5 and rerun["fooling_rate"] == 0.5
    assert skipped_reason(runs, runs.superseded) == f"superseded by run {runs.rerun} of the same shard"
    assert runs.rerun not in set(runs.tables["skipped"]["run_id"])

    half = runs.tables["attacks"].loc[runs.half_parent]
    assert (half["shards"], half["missing_shards"]) == ("1/2", "1")
    assert skipped_reason(runs, runs.failed) == "status FAILED"


def skipped_reason(runs: Runs, run_id: str) -> str:
    return str(runs.tables["skipped"].set_index("run_id").loc[run_id, "reason"])


def test_the_report_embeds_every_figure_and_its_location_is_printed(runs: Runs, tracking_server: str) -> None:
    embedded = re.findall(r'src="data:image/png;base64,', runs.html)
    # eps curves of each model (the ECG one at a single eps), white-box and transferred robustness, one success
    # matrix, Type II success vs window, transfer, and the grid of the FGSM example explained by Grad-CAM; each
    # as PNG and SVG
    curves = "fooling_rate_and_robust_accuracy_vs_eps_95_Wilson_intervals"
    drawn = {
        f"tiny_pneumonia_v1_{curves}", f"tiny_pneumonia_candidate_{curves}", f"tiny_cinc_v1_{curves}",
        "white_box_robust_accuracy_n_samples_attacked", "accuracy_on_transferred_adversarial_inputs_n_inputs_replayed",
        f"tiny_cinc_v1_pgd_1_target_1_run_{runs.targeted[:8]}",
        "tiny_cinc_candidate_ECGadv_Type_II_success_vs_window", "transfer_success_rate_n_inputs_replayed",
        f"tiny_pneumonia_v1_fgsm_0_1_run_{runs.whole[:8]}_Grad_CAM_of_clean_and_adversarial_inputs_beside_the_images"
        "_and_the_perturbation",
    }  # fmt: skip
    assert set(runs.figures) == {f"{name}.{suffix}" for name in drawn for suffix in ("png", "svg")}
    # and the examples the runs logged: the FGSM images with the Grad-CAM run that explained them, the ECG overlays
    examples = re.findall(r"<figcaption>([^<]*\(run [0-9a-f]{8}\): [^<]*)</figcaption>", runs.html)
    assert len(embedded) == len(drawn) - 1 + len(examples) and len(examples) >= 3  # the grid is an example
    assert any(f"fgsm@0.1 (run {runs.whole[:8]}): Grad-CAM" in caption for caption in examples)
    assert set(TABLES) <= set(runs.latex) and 'class="none"' not in runs.html  # empty sections left out
    assert r"\toprule" in runs.latex["robustness"] and r"clean\_test\_accuracy" in runs.latex["robustness"]
    assert not re.search(r'src="(?!data:)', runs.html)
    for heading in ("Attacks", "Robustness matrix", "Transferability", "Missing metrics and artifacts"):
        assert f"<h2>{heading}</h2>" in runs.html
    assert runs.report.startswith("report: ") and runs.report.endswith(f"{runs.evaluate}/artifacts/report.html")
    run = mlflow.MlflowClient(tracking_server).get_run(runs.evaluate)
    assert run.data.tags["medadv.step"] == "evaluate" and run.data.tags["medadv.evaluated_experiment"] == EXPERIMENT


def test_the_attack_table_opens_on_key_figures_and_ends_on_short_ids(runs: Runs) -> None:
    table = re.search(r"<h3>attacks</h3>(.*?)</table>", runs.html, re.S)
    assert table is not None
    headers = re.findall(r"<th>([^<]*)</th>", table[1])
    assert headers[:7] == ["model", "attack", "eps", "target", "n", "fooling rate [95% CI]", "robust accuracy [95% CI]"]
    assert headers[-1] == "run" and f"<td>{runs.whole[:8]}</td>" in table[1]
    assert "models:/" not in table[1] and runs.whole not in runs.html  # short names and ids throughout


def test_a_filter_narrows_the_runs_and_bad_input_fails_before_any_run(runs: Runs, tracking_server: str) -> None:
    client = mlflow.MlflowClient(tracking_server)
    run_id = evaluate(EvaluateSettings(filter="params.attack = 'pgd'"), tracking_server, EXPERIMENT)
    path = client.download_artifacts(run_id, "tables/attacks.parquet")
    assert list(pd.read_parquet(path).index) == [runs.targeted]

    before = len(client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id]))
    cases = [
        (EvaluateSettings(experiment_name="nope"), "experiment 'nope' not found"),
        (EvaluateSettings(filter="params.attack ~ 'pgd'"), "filter \"params.attack ~ 'pgd'\" is not usable"),
    ]
    for settings, message in cases:
        with pytest.raises(EvaluateError) as error:
            evaluate(settings, tracking_server, EXPERIMENT)
        assert message in str(error.value) and "\n" not in str(error.value)
    assert len(client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])) == before
