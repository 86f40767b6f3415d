"""The `study` entry point: each study's protocol as nested runs and one table, at tiny settings on generated data;
the real smoke scale on ../shared/data under the `study` mark."""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from medadv.contract import REPORT, STUDY_TABLE
from medadv.jobs.study import COLUMNS, StudySettings, study
from medadv.studies import ECGadvProtocol, StudyError, missing_data, protocol

# The smoke protocols cut to seconds: the same grids, fewer epochs, iterations and samples.
TINY = {
    "ecgadv": "length=600,victim.epochs=3,victim.arch_options=num_blocks=2,type1_iterations=10,type1_search_steps=1,"
    "windows=300,type2_iterations=5,type2_search_steps=1,type2_copies=2,universal_positions=3",
    "grad_attacks": "victim.epochs=2,victim.arch_options=width=4,samples=4,eps=0.1,pgd_iterations=3,"
    "deepfool_iterations=3",
    "foe": "victim.epochs=2,victim.arch_options=width=4,samples=4,image_size=16,iterations=3",
    "deepcustom": "victim.epochs=1,losses=lrp,robust_methods=fgsm,generator_epochs=1,robust_epochs=1",
}
# The headline figures each study's table must hold at the tiny settings (figure -> the paper's value, or NaN).
HEADLINES = {
    "ecgadv": {
        **{f"ECGadv Type I targeted success rate, {m}": math.nan for m in ("l2", "smooth", "smooth_l2")},
        "ECGadv Type II universal target rate, window=300": math.nan,
    },
    "grad_attacks": {
        "Grad-Attacks DeepFool fooling rate, best, pneumoniamnist": 0.93,
        "Grad-Attacks DeepFool fooling rate, best, oct2017": 0.96,
        "Grad-Attacks fooling rate, pneumoniamnist small_cnn pgd eps=0.1": math.nan,
        "Grad-Attacks Grad-CAM DSSIM, oct2017 small_cnn fgsm eps=0.1": math.nan,
    },
    "foe": {
        "foe target model accuracy, PGD transferred from the source model": math.nan,
        "foe target model accuracy, white-box PGD": math.nan,
        "foe transfer success rate": math.nan,
    },
    "deepcustom": {
        "DeepCustom mnist target test accuracy": 0.9656,
        "DeepCustom cifar10 target test accuracy": 0.7075,
        "DeepCustom best DGN attack robust accuracy, mnist": 0.0913,
        "DeepCustom mnist robust model accuracy under its attack, dgn_lrp": math.nan,
        "DeepCustom cifar10 robust model accuracy under its attack, fgsm": math.nan,
    },
}


def _table(run_id: str, folder: Path) -> pd.DataFrame:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=STUDY_TABLE, dst_path=str(folder))
    return pd.read_csv(local)


def _check_table(table: pd.DataFrame, name: str) -> None:
    assert tuple(table.columns) == COLUMNS
    by_figure = table.set_index("figure")
    for figure, paper in HEADLINES[name].items():
        assert figure in by_figure.index, f"{figure!r} missing from {list(by_figure.index)}"
        assert by_figure.loc[figure, "paper_value"] == pytest.approx(paper, nan_ok=True)
    rates = table[table["figure"].str.contains("rate|accuracy|DSSIM")]["medadv_value"].dropna()
    assert len(rates) >= len(HEADLINES[name]) - 1 and rates.between(0, 1).all()
    assert (table["n"] >= 1).all() and table["settings"].str.len().gt(0).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TINY))
def test_study_runs_its_protocol_as_nested_runs_with_one_table(
    name: str, tracking_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDADV_HOME", str(tmp_path / "home"))
    experiment = f"test-study-{name}"
    parent = study(StudySettings(name=name, options=TINY[name]), tracking_server, experiment)

    _check_table(_table(parent, tmp_path), name)
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    children = [run for run in runs if run.info.run_id != parent]
    assert children and all(run.info.status == "FINISHED" for run in runs)
    assert {run.data.tags.get("mlflow.parentRunId") for run in children if run.data.tags["medadv.step"] != "gradcam"
            and run.data.tags["medadv.step"] != "generator_class"} == {parent}  # fmt: skip
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent)}
    assert {STUDY_TABLE, REPORT} <= artifacts
    assert mlflow.get_run(parent).info.run_name == f"study {name} · smoke"  # named after what it did


@pytest.mark.slow
def test_study_again_reuses_every_finished_step(
    tracking_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDADV_HOME", str(tmp_path / "home"))
    settings = StudySettings(name="foe", options=TINY["foe"])
    first = study(settings, tracking_server, "test-study-reuse")
    capsys.readouterr()
    again = study(settings, tracking_server, "test-study-reuse")
    out = capsys.readouterr().out
    assert out.count("reusing finished train run") == 2 and out.count("reusing finished attack run") == 1
    assert _table(again, tmp_path / "b").equals(_table(first, tmp_path / "a"))


def test_missing_real_data_is_refused_in_one_line_and_nothing_is_logged(tracking_server: str, tmp_path: Path) -> None:
    settings = StudySettings(name="ecgadv", data_dir=str(tmp_path / "none"))
    with pytest.raises(StudyError) as refused:  # steps/_cli.py prints it as one `medadv: error:` line, exit 1
        study(settings, tracking_server, "test-study-refused")
    line = str(refused.value)
    assert "\n" not in line and line.startswith("study ecgadv at scale=smoke needs cinc2017 at ")
    assert "REFERENCE-v3.csv" in line and "physionet.org" in line
    mlflow.set_tracking_uri(tracking_server)
    assert mlflow.get_experiment_by_name("test-study-refused") is None


def test_paper_scale_names_every_real_set_it_needs(tmp_path: Path) -> None:
    needs = missing_data(protocol("grad_attacks", "paper"), "")
    assert "chest_xray at DATA_DIR/chest_xray" in needs and "oct2017 at DATA_DIR/OCT2017" in needs
    (tmp_path / "chest_xray").mkdir()
    assert missing_data(protocol("grad_attacks", "paper"), str(tmp_path)).startswith("oct2017 at ")
    assert missing_data(protocol("grad_attacks", "smoke"), "") == "pneumoniamnist at DATA_DIR/pneumoniamnist.npz " + (
        "(pneumoniamnist.npz; from https://zenodo.org/records/10519652 (MedMNIST v2))"
    )


def test_overrides_are_typed_and_unknown_settings_refused() -> None:
    tiny = protocol("ecgadv", "smoke", "windows=600 300,type1_iterations=7,victim.epochs=1")
    assert isinstance(tiny, ECGadvProtocol)
    assert (tiny.windows, tiny.type1_iterations, tiny.victim.epochs) == ((600, 300), 7, 1)
    assert protocol("ecgadv", "paper").type1_per_class == (360, 360, 360, 220)
    for bad, says in (("iterations=3", "not a setting"), ("victim.depth=3", "not a victim setting"),
                      ("type1_iterations=many", "cannot read")):  # fmt: skip
        with pytest.raises(StudyError, match=says):
            protocol("ecgadv", "smoke", bad)
    with pytest.raises(StudyError, match="unknown study"):
        protocol("ecg", "smoke")


@pytest.mark.study
@pytest.mark.parametrize("name", list(TINY))
def test_study_at_smoke_scale_on_the_real_data(
    name: str, shared_data: Path, tracking_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDADV_HOME", str(tmp_path / "home"))
    parent = study(StudySettings(name=name, data_dir=str(shared_data)), tracking_server, f"study-smoke-{name}")
    table = _table(parent, tmp_path)
    print(f"\nSTUDY {name} smoke on {shared_data}:\n{table.to_string()}")  # the README's figures (pytest -rP)
    assert tuple(table.columns) == COLUMNS and len(table) >= 3
    assert table["medadv_value"].dropna().between(0, 1).all()
