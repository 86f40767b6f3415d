"""ECGadv through the `attack` entry point: Type II's universal evaluation (table, metrics and figure agree
with each other and with the attack result), the success-versus-window figure helper, and the study's
acceptance figures on the real CinC 2017 records (`pytest -m study`: minutes to hours on a CPU)."""

from __future__ import annotations

from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import EXPERIMENT, REAL_CINC, REAL_CINC_OPTIONS, train_real_cinc

from medadv.attacks import AttackError
from medadv.attacks.ecgadv import ECGadvTypeIIConfig, universal_table
from medadv.attacks.figures import window_success_figure
from medadv.attacks.result import AttackResult
from medadv.data import load_dataset
from medadv.jobs.attack import AttackSettings, attack
from medadv.tracking.registry import load_model

CLASSES = ("A", "N", "O", "~")
# Power limits opened: the tiny victim's windows succeed only well above the study's power of about 1.
TINY_TYPE2 = "window=300,max_iterations=50,binary_search_steps=1,min_power=0,max_power=1000,min_step_power=0,target=-1"


def test_type2_run_logs_a_universal_table_that_agrees_with_its_metrics_and_result(
    victims: dict[str, str], tracking_server: str
) -> None:
    settings = AttackSettings(
        model="models:/tiny-cinc@candidate", dataset="cinc2017", data_dir=victims["ecg"], data_options="length=600",
        split="train", attack="ecgadv_type2", attack_params=TINY_TYPE2, num_samples=2, universal_positions=5,
    )  # fmt: skip
    run_id = attack(settings, tracking_server, EXPERIMENT)
    client = mlflow.MlflowClient(tracking_server)
    table = pd.read_csv(client.download_artifacts(run_id, "universal.csv"), index_col="pair")
    result = AttackResult.load(Path(client.download_artifacts(run_id, "attack_result.npz")))
    metrics = client.get_run(run_id).data.metrics

    found = np.any(result.delta != 0, axis=(1, 2))  # the windows the attack kept; the rest come back unchanged
    pairs = {
        f"{CLASSES[source]}->{CLASSES[target]}": int(
            np.sum(found & (result.y_true == source) & (result.y_target == target))
        )
        for source, target in zip(result.y_true, result.y_target, strict=True)
    }
    assert found.any(), "the tiny attack should find at least one window"
    assert table["deltas"].to_dict() == {pair: count for pair, count in pairs.items() if count}
    shares = table[[f"share_{name}" for name in CLASSES]].to_numpy()
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    # every share is a count over deltas x records x 5 positions
    counts = shares * (table["deltas"] * table["records"] * 5).to_numpy()[:, None]
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)
    np.testing.assert_allclose(table["target_share"], shares[np.arange(len(table)), table["target"]])
    controls = table["control_target_share"]  # NaN: no record of the target class the victim gets right
    assert (controls.between(0, 1) | controls.isna()).all()
    assert metrics["universal_target_rate_mean"] == pytest.approx(table["target_share"].mean())
    assert metrics["universal_majority_pairs"] == int((table["target_share"] > 0.5).sum())
    assert "figures/universal_rates.png" in {a.path for a in client.list_artifacts(run_id, "figures")}
    # the study's universal records: the source class's full-length records that the victim classifies correctly
    data = load_dataset("cinc2017", victims["ecg"], "train", length=600)
    y_pred = load_model("models:/tiny-cinc@candidate").predict(data.x, verbose=0).argmax(axis=1)
    full = data.lengths >= 600
    correct = {int(s): int(np.sum(full & (data.y == s) & (y_pred == s))) for s in table["source"]}
    assert table["records"].tolist() == [correct[int(s)] for s in table["source"]]
    # a victim that always says class 0 gets no source record right: `correct` leaves no pair, `all` keeps them
    constant = keras.Sequential([keras.Input((600, 1)), keras.layers.Flatten(), keras.layers.Dense(4, "softmax")])
    constant.layers[-1].set_weights([np.zeros((600, 4)), np.array([9.0, 0.0, 0.0, 0.0])])
    config = ECGadvTypeIIConfig(window=300)
    for correct_only, pairs_left in ((True, 0), (False, len(table))):
        assert (
            len(universal_table(result, constant, data, config, positions=1, correct_only=correct_only)) == pairs_left
        )


def test_bad_universal_settings_fail_before_any_run(victims: dict[str, str], tracking_server: str) -> None:
    with pytest.raises(ValueError, match=r"universal_positions must be >= 1, got 0"):
        AttackSettings(model="models:/x@y", attack="ecgadv_type2", universal_positions=0)
    settings = AttackSettings(model="models:/x@y", attack="ecgadv_type2", universal_records="some")
    mlflow.set_tracking_uri(tracking_server)
    before = len(mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list"))
    with pytest.raises(AttackError, match="universal_records"):
        attack(settings, tracking_server, EXPERIMENT)
    assert len(mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")) == before


def test_window_success_figure_plots_every_row_and_the_mean_per_window() -> None:
    table = pd.DataFrame({"window": [9000, 1500, 9000, 4500], "success_rate": [1.0, 0.25, 0.5, 0.75]})
    figure = window_success_figure(table)
    axis = figure.axes[0]
    line = axis.get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), [1500, 4500, 9000])
    np.testing.assert_allclose(line.get_ydata(), [0.25, 0.75, 0.75])
    assert len(axis.collections[0].get_offsets()) == 4
    with pytest.raises(ValueError, match="lacks the columns success_rate"):
        window_success_figure(table.rename(columns={"success_rate": "rate"}))


# -- the study's figures on the real CinC 2017 records -------------------------------------------------------------

METRICS = ("l2", "smooth", "smooth_l2")


def type1_on_real_cinc(
    model: str, data_dir: str, data_options: str, per_class: str, budget: str, tracking_server: str
) -> dict[str, pd.DataFrame]:
    """Type I toward every other class with each metric on the same records: samples.parquet per metric."""
    client = mlflow.MlflowClient(tracking_server)
    samples = {}
    for metric in METRICS:
        settings = AttackSettings(
            model=model, dataset="cinc2017", data_dir=data_dir, data_options=data_options, split="all",
            attack="ecgadv_type1", attack_params=f"metric={metric},target=-1{budget}", per_class=per_class,
        )  # fmt: skip
        run_id = attack(settings, tracking_server, EXPERIMENT)
        samples[metric] = pd.read_parquet(client.download_artifacts(run_id, "samples.parquet")).set_index("id")
    return samples


def assert_study_type1_figures(samples: dict[str, pd.DataFrame], pairs: int) -> None:
    """>= 95% targeted success for every metric; the smooth metrics give smoother perturbations than l2."""
    success = {metric: table["success"].astype(bool) for metric, table in samples.items()}
    print({metric: f"{found.mean():.3f} of {len(found)}" for metric, found in success.items()})
    for metric, found in success.items():
        assert len(found) == pairs and found.mean() >= 0.95, metric
    both = success["l2"] & success["smooth"] & success["smooth_l2"]
    d_smooth = {metric: samples[metric].loc[both, "d_smooth"].mean() for metric in METRICS}
    print(f"mean d_smooth on the {both.sum()} pairs every metric fooled: {d_smooth}")
    assert d_smooth["smooth"] < d_smooth["l2"] and d_smooth["smooth_l2"] < d_smooth["l2"]


@pytest.mark.study  # 3 minutes: past what the test command can spend
def test_type1_on_real_cinc_fools_every_pair_and_smooth_metrics_perturb_more_smoothly(
    real_cinc_victim: str, tracking_server: str
) -> None:
    """The small ResNet on 15 s of real records, one correct record per class toward the 3 others, the
    study's settings but at most 300 iterations per binary-search step instead of 1000."""
    budget = ",max_iterations=300"
    samples = type1_on_real_cinc(REAL_CINC, real_cinc_victim, REAL_CINC_OPTIONS, "1,1,1,1", budget, tracking_server)
    assert_study_type1_figures(samples, pairs=12)


@pytest.fixture(scope="module")
def study_cinc_victim(shared_data: Path, tracking_server: str) -> str:
    """The same small ResNet (5.6 ms per record for a forward+backward pass on 2 CPU cores) at the study's
    30 s (9000 samples), registered as `study-cinc`."""
    return train_real_cinc(shared_data, tracking_server, "study-cinc")


@pytest.mark.study
def test_type1_at_the_study_settings_on_real_cinc(study_cinc_victim: str, tracking_server: str) -> None:
    """Two correct records per class toward the 3 others, 5 binary-search steps of up to 1000 iterations."""
    samples = type1_on_real_cinc("models:/study-cinc@candidate", study_cinc_victim, "", "2,2,2,2", "", tracking_server)
    assert_study_type1_figures(samples, pairs=24)


@pytest.mark.study
def test_type2_at_window_9000_on_real_cinc_reaches_a_majority_target_rate_on_half_the_pairs(
    study_cinc_victim: str, tracking_server: str
) -> None:
    """One correct record per class toward the 3 others (12 pairs); each window added at 100 random positions
    to every source-class record of 30 s. The study's settings but 30 shifted copies per step instead of 180
    and 5 x 100 iterations instead of 5 x 500: the study's budget is 12 x 180 x 2500 passes, hours on 2 CPU
    cores (`attack_params="window=9000,target=-1"` runs it, on a GPU)."""
    settings = AttackSettings(
        model="models:/study-cinc@candidate", dataset="cinc2017", data_dir=study_cinc_victim, split="all",
        attack="ecgadv_type2", attack_params="window=9000,target=-1,ensemble_size=30,max_iterations=100",
        per_class="1,1,1,1",
    )  # fmt: skip
    run_id = attack(settings, tracking_server, EXPERIMENT)
    client = mlflow.MlflowClient(tracking_server)
    table = pd.read_csv(client.download_artifacts(run_id, "universal.csv"), index_col="pair")
    print(table.to_string())
    assert client.get_run(run_id).data.metrics["universal_majority_pairs"] >= 6


PLAUSIBILITY_COLUMNS = (
    "success", "clinically_unchanged", "beats_matched", "heart_rate_bpm_change", "quality", "quality_adv", "snr_db",
    "hf_share", "max_jump_mv",
)  # fmt: skip


@pytest.mark.study  # 6 minutes on 2 CPU cores
def test_stealthy_success_per_metric_on_real_cinc(real_cinc_victim: str, tracking_server: str) -> None:
    """Type I with each distance (one correct record per class toward the 3 others, <= 300 iterations per step)
    and Type II (w = 4500, the whole 15 s record, 10 shifted copies, 5 x 50 iterations) on the same victim:
    the share of adversarial records that fool the model and still read clinically unchanged."""
    samples = type1_on_real_cinc(
        REAL_CINC, real_cinc_victim, REAL_CINC_OPTIONS, "1,1,1,1", ",max_iterations=300", tracking_server
    )
    settings = AttackSettings(
        model=REAL_CINC, dataset="cinc2017", data_dir=real_cinc_victim, data_options=REAL_CINC_OPTIONS, split="all",
        attack="ecgadv_type2", attack_params="window=4500,target=-1,ensemble_size=10,max_iterations=50",
        per_class="1,1,1,1", universal_positions=2,
    )  # fmt: skip
    run_id = attack(settings, tracking_server, EXPERIMENT)
    client = mlflow.MlflowClient(tracking_server)
    samples["type2"] = pd.read_parquet(client.download_artifacts(run_id, "samples.parquet")).set_index("id")
    table = pd.DataFrame(
        {
            name: {
                "records": len(frame),
                "success_rate": frame["success"].mean(),
                "stealthy_success_rate": (frame["success"] & frame["clinically_unchanged"]).mean(),
                **{column: frame[column].replace(np.inf, np.nan).mean() for column in PLAUSIBILITY_COLUMNS[2:]},
            }
            for name, frame in samples.items()
        }
    ).T
    print(table.to_string(float_format=lambda value: f"{value:.3g}"))
    assert table[["success_rate", "stealthy_success_rate", "beats_matched"]].stack().between(0, 1).all()
    assert (table["stealthy_success_rate"] <= table["success_rate"]).all()
    # the study's finding, measured: the smooth distances perturb with smaller sample-to-sample jumps than L2
    assert table.loc["smooth", "max_jump_mv"] < table.loc["l2", "max_jump_mv"]
