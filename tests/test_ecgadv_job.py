"""ECGadv Type II through the `attack` entry point: the universal evaluation's table, metrics and figure
agree with each other and with the attack result; the success-versus-window figure helper."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import EXPERIMENT

from medadv.attacks import AttackError
from medadv.attacks.figures import window_success_figure
from medadv.attacks.result import AttackResult
from medadv.tracking.attack_job import AttackSettings, attack

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
    assert table["control_target_share"].between(0, 1).all()
    assert metrics["universal_target_rate_mean"] == pytest.approx(table["target_share"].mean())
    assert metrics["universal_majority_pairs"] == int((table["target_share"] > 0.5).sum())
    assert "figures/universal_rates.png" in {a.path for a in client.list_artifacts(run_id, "figures")}


def test_bad_universal_settings_fail_before_any_run(victims: dict[str, str], tracking_server: str) -> None:
    settings = AttackSettings(model="models:/x@y", attack="ecgadv_type2", universal_positions=0)
    mlflow.set_tracking_uri(tracking_server)
    before = len(mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list"))
    with pytest.raises(AttackError, match="need universal_positions >= 1"):
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
