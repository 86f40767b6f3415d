"""The `main` demo end to end against a real MLflow server, at its smallest settings."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow_server import run_step

SMALLEST = [
    "--ecg_length", "600", "--epochs", "3", "--records", "2", "--ecgadv_iterations", "20", "--ecgadv_search_steps", "1",
]  # fmt: skip


@pytest.mark.slow
def test_main_runs_every_stage_and_the_report_matches_the_runs(tracking_server: str, tmp_path: Path) -> None:
    done = run_step("main.py", *SMALLEST, "--experiment", "test-main", tracking_uri=tracking_server, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "The report: " in done.stdout and "mlflow ui --backend-store-uri" in done.stdout

    mlflow.set_tracking_uri(tracking_server)
    runs = mlflow.search_runs(experiment_names=["test-main"], output_format="list")
    assert all(run.info.status == "FINISHED" for run in runs)
    by_step: dict[str, list[mlflow.entities.Run]] = {}
    for run in runs:
        by_step.setdefault(run.data.tags["medadv.step"], []).append(run)
    assert {step: len(found) for step, found in by_step.items()} == {
        "main": 1, "train": 3, "attack": 7, "gradcam": 1, "evaluate": 1,
    }  # fmt: skip
    parent = by_step["main"][0].info.run_id
    assert by_step["main"][0].info.run_name.startswith("main demo · ")  # every run is named after what it did
    assert not [run.info.run_name for run in runs if " · " not in run.info.run_name]
    assert all(run.data.tags.get("mlflow.parentRunId") for run in runs if run.info.run_id != parent)

    attacks = {
        (r.data.params["attack"], r.data.params.get("metric", ""), r.data.params.get("eps", "")): r
        for r in by_step["attack"]
    }
    assert set(attacks) == {("ecgadv_type1", "l2", ""), ("ecgadv_type1", "smooth", ""),
                            ("ecgadv_type1", "smooth_l2", ""), ("pgd", "", "0.25"), ("pgd", "", "0.5"),
                            ("pgd", "", "1.0"), ("deepfool", "", "")}  # fmt: skip
    client = mlflow.MlflowClient()
    for run in attacks.values():
        assert {"fooling_rate", "attack_success_rate", "l2_mean", "d_smooth_mean"} <= set(run.data.metrics)
        assert {"attack_result.npz", "samples.parquet"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    for metric in ("l2", "smooth", "smooth_l2"):
        assert "success_matrix.csv" in {
            a.path for a in client.list_artifacts(attacks["ecgadv_type1", metric, ""].info.run_id)
        }
    pgd = attacks["pgd", "", "0.5"]  # the middle of the eps sweep
    assert "transfer.csv" in {a.path for a in client.list_artifacts(pgd.info.run_id)}
    assert by_step["gradcam"][0].data.tags["medadv.attack_run_id"] == pgd.info.run_id
    assert "dssim_mean" in by_step["gradcam"][0].data.metrics
    robust = [r for r in by_step["train"] if r.data.params.get("mode") == "robust"]
    assert len(robust) == 1 and "robust_accuracy" in robust[0].data.metrics
    assert client.get_model_version_by_alias("medadv-demo-ecg-a", "candidate")
    assert client.get_model_version_by_alias("medadv-cinc2017-ecg_resnet-robust-pgd_online", "candidate")

    evaluate = by_step["evaluate"][0].info.run_id
    assert "report.html" in {a.path for a in client.list_artifacts(evaluate)}
    table = pd.read_csv(client.download_artifacts(evaluate, "tables/attacks.csv", str(tmp_path)), index_col=0)
    for run_id, run in ((r.info.run_id, r) for r in attacks.values()):
        for metric in ("fooling_rate", "robust_accuracy", "attack_success_rate"):
            assert table.loc[run_id, metric] == pytest.approx(run.data.metrics[metric])

    again = run_step("main.py", *SMALLEST, "--experiment", "test-main", tracking_uri=tracking_server, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        again.stdout.count("reusing finished train run") == 3 and again.stdout.count("reusing finished attack run") == 7
    )
