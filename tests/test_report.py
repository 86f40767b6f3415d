"""The report package without a tracking server: tables from hand-made run records checked against hand-computed
values, the HTML builder and its figures (escaped tables, embedded PNGs), and a real browser rendering it."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medadv.attacks.result import AttackResult, TargetProbabilities, load_probabilities, save_probabilities
from medadv.contract import TRANSFER_PROBABILITIES
from medadv.report.figures import eps_curves, example_grid, matrix_heatmap
from medadv.report.html import Section, render_report, table_html
from medadv.report.records import (
    Example,
    Heatmaps,
    ModelRecord,
    RunRecord,
    model_label,
    needs,
    newest_shards,
    short_model,
)
from medadv.report.sections import example_grids, example_images
from medadv.report.tables import compare, headline_table

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EMBEDDED = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


@pytest.fixture
def attacks() -> pd.DataFrame:
    """Two models under FGSM at three eps, one row without eps (an attack that has none)."""
    return pd.DataFrame(
        {
            "model": ["a", "a", "a", "b", "b", "b", "a"],
            "attack": ["fgsm"] * 6 + ["deepfool"],
            "target": [""] * 7,
            "eps": [0.1, 0.01, 0.05, 0.01, 0.05, 0.1, np.nan],
            "fooling_rate": [0.9, 0.1, 0.5, 0.2, 0.6, 1.0, 0.7],
            "robust_accuracy": [0.1, 0.9, 0.5, 0.8, 0.4, 0.0, 0.3],
            "robust_accuracy_low": [0.0, 0.7, 0.3, 0.6, 0.2, 0.0, 0.1],
            "robust_accuracy_high": [0.3, 1.0, 0.7, 0.9, 0.6, 0.2, 0.5],
        }
    )


# --- tables from hand-made records ------------------------------------------------------------------------------

VICTIM, ROBUST, OTHER = "models:/victim/1", "models:/robust/2", "models:/other/3"


def _images(ids: list[str], *, fooled: bool) -> AttackResult:
    """Two 12x12 grey images of classes 0 and 1, each pixel moved by +0.1; both misclassified after, or neither."""
    x = np.full((len(ids), 12, 12, 1), 0.5, dtype=np.float32)
    y_true = np.arange(len(ids)) % 2
    return AttackResult(
        x=x, x_adv=x + np.float32(0.1), ids=np.array(ids), y_true=y_true, y_clean=y_true,
        y_adv=1 - y_true if fooled else y_true, y_target=np.full(len(ids), -1), p_clean=np.ones(len(ids)),
        p_adv=np.ones(len(ids)), seconds=np.ones(len(ids)), class_names=("normal", "pneumonia"), clip_range=(0.0, 1.0),
    )  # fmt: skip


def _shard(
    run_id: str,
    shard: str,
    start_time: int,
    result: AttackResult | None,
    saved: dict[str, TargetProbabilities] | None = None,
    **params: str,
) -> RunRecord:
    """A shard's record as evaluate loads it: what it lacks listed (a result; probabilities, with transfer targets)."""
    common = {"model": VICTIM, "attack": "fgsm", "eps": "0.1", "parent_run_id": "sweep"}
    lacking = ("attack_result.npz",) * (result is None)
    lacking += (TRANSFER_PROBABILITIES,) * (saved is None and "transfer_to_versions" in params)
    return RunRecord(
        run_id=run_id, start_time=start_time, params=common | params | {"shard": shard}, result=result,
        transfer_probabilities=saved, lacking=lacking,
    )  # fmt: skip


def _single(run_id: str, model: str, label_eps: str, robust: float, n: int = 10, **fields: object) -> RunRecord:
    metrics = {"robust_accuracy": robust, "fooling_rate": 1 - robust, "num_samples": float(n)}
    return RunRecord(run_id=run_id, params={"model": model, "attack": "fgsm", "eps": label_eps}, metrics=metrics,
                     **fields)  # type: ignore[arg-type]  # fmt: skip


def test_of_two_runs_of_one_shard_the_newer_counts_and_the_older_is_listed_as_superseded() -> None:
    older = _shard("old", "0/2", 100, _images(["a", "b"], fooled=False))
    newer = _shard("new", "0/2", 200, _images(["a", "b"], fooled=True))
    sibling = _shard("sib", "1/2", 150, _images(["c", "d"], fooled=False))
    newest, superseded = newest_shards([newer, sibling, older])
    assert newest == {0: newer, 1: sibling} and superseded == [(older, newer)]

    tables, _ = compare({"attack": [newer, sibling, older]}, {})
    row = tables["attacks"].loc["sweep"]  # merged shards are indexed by their parent run
    assert (row["shards"], row["missing_shards"], row["duplicate_ids"], row["num_samples"]) == ("2/2", "", 0, 4)
    # the newer shard 0/2 fooled both its samples, shard 1/2 neither: 2 of 4 still right
    assert row["robust_accuracy"] == row["fooling_rate"] == 0.5
    # every one of the 144 pixels moved by 0.1: L2 = sqrt(144 x 0.01) = 1.2; on the clip range [0, 1] the MSE of
    # 0.01 gives PSNR = 10 log10(1 / 0.01) = 20 dB, read from the results' own clip range (no data set loaded)
    assert row["l2_mean"] == pytest.approx(1.2, rel=1e-5) and row["linf_max"] == pytest.approx(0.1, rel=1e-5)
    assert row["psnr_mean"] == pytest.approx(20.0, rel=1e-4)
    skipped = tables["skipped"].set_index("run_id")
    assert list(skipped.index) == ["old"] and skipped.loc["old", "reason"] == "superseded by run new of the same shard"


def test_a_shard_without_its_result_is_listed_and_ids_seen_twice_count_once() -> None:
    twice = [_shard(f"s{i}", f"{i}/3", i, _images(["a", "b"], fooled=i == 0)) for i in range(2)]
    lost = _shard("s2", "2/3", 2, None)
    tables, _ = compare({"attack": [*twice, lost]}, {})
    row = tables["attacks"].loc["sweep"]
    # shards 0 and 1 both hold a and b: the first (fooled) copies count, the second two are dropped
    assert (row["shards"], row["missing_shards"], row["duplicate_ids"], row["num_samples"]) == ("2/3", "2", 2, 2)
    assert row["robust_accuracy"] == 0.0
    missing = tables["missing"]
    assert missing[missing["kind"] == "artifact"].to_dict("records") == [
        {"run_id": "s2", "step": "attack", "kind": "artifact", "name": "attack_result.npz"}
    ]
    assert needs(lost) == ("result",) and needs(_single("u", VICTIM, "0.1", 0.5)) == ()


def _saved(ids: list[str], clean: list[float], adversarial: list[float], white_box: list[float] | None = None
           ) -> TargetProbabilities:  # fmt: skip
    """A two-class target's probabilities, given as each sample's probability of class 1."""

    def two(p1: list[float]) -> np.ndarray:
        return np.array([[1 - p, p] for p in p1])

    return TargetProbabilities(ids=np.array(ids), clean=two(clean), adversarial=two(adversarial),
                               white_box=None if white_box is None else two(white_box))  # fmt: skip


def test_merged_shards_are_scored_on_their_transfer_targets_from_the_probabilities_they_saved() -> None:
    targets = {"transfer_to_versions": f"{OTHER} {ROBUST}"}
    # s0: a (class 0) and b (class 1), both fooled; s1: b, c, d (classes 0, 1, 0), none fooled. b is in both: the
    # first (s0's, class 1, fooled) counts, so the joined samples are a:0 fooled, b:1 fooled, c:1, d:0.
    # OTHER (class 1 probabilities; s1's b, a copy that must not count, says the opposite of s0's everywhere):
    #   clean 0.1 0.7 | 0.2 0.8 0.4 -> predicts 0 1 1 0: all 4 right;
    #   adversarial 0.8 0.4 | 0.9 0.3 0.45 -> 1 0 0 0: a, b wrong (both transfer: 2 of 2), c wrong, d right: 1/4;
    #   white-box 0.6 0.9 | 0.1 0.7 0.7 -> 1 1 1 1: b, c right: 2/4;
    #   confidence on the adversarial inputs (0.8 + 0.6 + 0.7 + 0.55) / 4 = 0.6625.
    #   With s1's copy of b instead: clean 3/4, transfer 1 of 2, white-box 1/4.
    # ROBUST (no white-box) says class 0 to everything: right for a and d, 2/4 clean and adversarial; of the fooled
    # a and b only b transfers: 1 of 2; white-box accuracy NaN.
    robust = {ids: _saved(list(ids), [0.3] * len(ids), [0.3] * len(ids)) for ids in ("ab", "bcd")}
    shards = [
        _shard("s0", "0/2", 0, _images(["a", "b"], fooled=True),
               {OTHER: _saved(["a", "b"], [0.1, 0.7], [0.8, 0.4], [0.6, 0.9]), ROBUST: robust["ab"]}, **targets),
        _shard("s1", "1/2", 1, _images(["b", "c", "d"], fooled=False),
               {OTHER: _saved(["b", "c", "d"], [0.2, 0.8, 0.4], [0.9, 0.3, 0.45], [0.1, 0.7, 0.7]),
                ROBUST: robust["bcd"]}, **targets),
    ]  # fmt: skip
    tables, _ = compare({"attack": shards}, {})
    assert tables["attacks"].loc["sweep", "duplicate_ids"] == 1
    transfer = tables["transfer"].set_index("target_model")
    assert list(transfer.index) == [OTHER, ROBUST] and list(transfer["n"]) == [4, 4]
    columns = ["transfer_success_rate", "clean_accuracy", "adversarial_accuracy", "white_box_accuracy"]
    assert transfer.loc[OTHER, columns].tolist() == [1.0, 1.0, 0.25, 0.5]
    assert transfer.loc[OTHER, "confidence_mean"] == pytest.approx(0.6625)
    assert transfer.loc[ROBUST, columns[:3]].tolist() == [0.5, 0.5, 0.5]
    assert np.isnan(transfer.loc[ROBUST, "white_box_accuracy"])
    missing = tables["missing"]
    assert set(missing["kind"]) == {"train run"}  # nothing lacking but the (unknown) models' training runs


def test_a_shard_that_saved_no_probabilities_leaves_its_targets_out_and_is_listed() -> None:
    shards = [  # s1 is a run from before shards saved their targets' probabilities
        _shard("s0", "0/2", 0, _images(["a", "b"], fooled=True), {OTHER: _saved(["a", "b"], [0.1, 0.7], [0.8, 0.4])},
               transfer_to_versions=OTHER),
        _shard("s1", "1/2", 1, _images(["c", "d"], fooled=False), transfer_to_versions=OTHER),
    ]  # fmt: skip
    tables, _ = compare({"attack": shards}, {})
    assert tables["attacks"].loc["sweep", "num_samples"] == 4  # the attack itself is still merged
    assert tables["transfer"].empty
    missing = tables["missing"]
    assert missing[missing["kind"] != "train run"].to_dict("records") == [
        {"run_id": "s1", "step": "attack", "kind": "artifact", "name": TRANSFER_PROBABILITIES},
        {"run_id": "s1", "step": "attack", "kind": "transfer target",
         "name": f"{OTHER}: left out of the merged shards (1 of 2 shards saved no probabilities)"},
    ]  # fmt: skip
    assert needs(shards[1]) == ("result", "transfer_probabilities")


def test_transfer_probabilities_round_trip_by_uri_and_join_by_first_occurrence(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    two = TargetProbabilities(ids=np.array(["a", "b", "c"]), clean=rng.random((3, 2)), adversarial=rng.random((3, 2)),
                              white_box=rng.random((3, 2)))  # fmt: skip
    three = TargetProbabilities(ids=np.array(["a", "b", "c"]), clean=rng.random((3, 3)), adversarial=rng.random((3, 3)))
    saved = {"models:/victim@candidate": two, "runs:/0123abcd/model": three, "models:/robust/2": two}
    loaded = load_probabilities(save_probabilities(saved, tmp_path / TRANSFER_PROBABILITIES))
    assert list(loaded) == list(saved)
    for uri, target in saved.items():
        for name in ("ids", "clean", "adversarial"):
            np.testing.assert_array_equal(getattr(loaded[uri], name), getattr(target, name))
    np.testing.assert_array_equal(loaded["models:/robust/2"].white_box, two.white_box)
    assert loaded["runs:/0123abcd/model"].white_box is None and loaded["runs:/0123abcd/model"].clean.shape == (3, 3)
    assert load_probabilities(save_probabilities({}, tmp_path / "none.npz")) == {}

    # one target's parts joined in the order asked for, each id from the part where it first occurs (c: the first)
    later = TargetProbabilities(ids=np.array(["c", "d"]), clean=rng.random((2, 2)), adversarial=rng.random((2, 2)))
    joined = TargetProbabilities.join([two, later], np.array(["d", "c", "a"]))
    assert list(joined.ids) == ["d", "c", "a"] and joined.white_box is None  # the later part has no white-box
    np.testing.assert_array_equal(joined.clean, [later.clean[1], two.clean[2], two.clean[0]])
    with pytest.raises(ValueError, match="no probabilities for sample ids"):
        TargetProbabilities.join([two], np.array(["a", "z"]))


def _transfer(rates: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """A logged transfer.csv: per target model, transfer success rate and adversarial accuracy."""
    rows = {uri: {"transfer_success_rate": t, "adversarial_accuracy": a} for uri, (t, a) in rates.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("target_model")


def _models() -> dict[str, ModelRecord]:
    def trained(run_id: str, accuracy: float, auc: float) -> RunRecord:
        return RunRecord(run_id=run_id, step="train", metrics={"test_accuracy": accuracy, "test_auc": auc})

    return {
        VICTIM: ModelRecord(uri=VICTIM, version="victim/1", train_run=trained("t1", 0.9, 0.95)),
        ROBUST: ModelRecord(uri=ROBUST, version="robust/2", train_run=trained("t2", 0.8, 0.85)),
        OTHER: ModelRecord(uri=OTHER),  # a model whose training run is unknown
    }


def test_transfer_and_robustness_matrices_from_logged_tables() -> None:
    runs = [
        _single("r1", VICTIM, "0.1", 0.2, transfer=_transfer({ROBUST: (0.5, 0.6), OTHER: (0.9, 0.1)})),
        _single("r2", VICTIM, "0.1", 0.4, n=30, transfer=_transfer({ROBUST: (0.3, 0.8)})),
        _single("r3", VICTIM, "0.3", 0.0),
        _single("r4", ROBUST, "0.1", 0.7),
    ]
    tables, _ = compare({"attack": runs}, _models())

    robustness = tables["robustness"]  # models x attack@eps, mean over the runs sharing a cell
    assert list(robustness.columns) == ["clean_test_accuracy", "fgsm@0.1", "fgsm@0.3"]
    # victim under fgsm@0.1: r1 and r2, (0.2 + 0.4) / 2 = 0.3; the robust model was not attacked at 0.3
    np.testing.assert_allclose(robustness.loc[[ROBUST, VICTIM]].to_numpy(), [[0.8, 0.7, np.nan], [0.9, 0.3, 0.0]])

    matrix = tables["transfer_matrix"]  # (source, attack) x target, mean transfer success; the source's AUC last
    assert list(matrix.index) == [(VICTIM, "fgsm@0.1")]
    # ROBUST: (0.5 + 0.3) / 2 = 0.4; OTHER: r1 alone, 0.9
    assert matrix.loc[(VICTIM, "fgsm@0.1")].to_dict() == pytest.approx({OTHER: 0.9, ROBUST: 0.4,
                                                                        "source_clean_auc": 0.95})  # fmt: skip
    transferred = tables["robustness_transfer"]  # target x crafted, mean adversarial accuracy: (0.6 + 0.8) / 2
    assert transferred.loc[ROBUST, f"fgsm@0.1 on {VICTIM}"] == pytest.approx(0.7)
    assert list(tables["transfer"]["n"]) == [10, 10, 30]  # each row with its attack's sample count

    models = tables["models"]
    assert list(models.index) == [OTHER, ROBUST, VICTIM] and models.loc[VICTIM, "test_auc"] == 0.95
    assert list(tables["missing"]["name"].loc[tables["missing"]["kind"] == "train run"]) == [OTHER]


def test_headline_table_shows_rates_with_their_wilson_intervals() -> None:
    runs = [
        RunRecord(
            run_id="0123456789abcdef",
            params={"model": "models:/victim@candidate", "model_version_uri": VICTIM, "attack": "pgd", "eps": "0.05"},
            metrics={"robust_accuracy": 0.3, "fooling_rate": 0.7, "num_samples": 10.0, "l2_mean": 1.5},
        ),
        RunRecord(run_id="fedcba9876543210", params={"model": ROBUST, "attack": "deepfool"}, metrics={}),
    ]
    attacks = compare({"attack": runs}, _models())[0]["attacks"]
    # Wilson, z = 1.96, n = 10: 3 right is centre (0.3 + z^2 / 20) / (1 + z^2 / 10) = 0.4921 / 1.3841 = 0.3555,
    # half width z sqrt(0.3 x 0.7 / 10 + z^2 / 400) / 1.3841 = 0.2477: [0.1078, 0.6032]; 7 fooled: [0.3968, 0.8922]
    assert tuple(attacks.loc["0123456789abcdef", ["robust_accuracy_low", "robust_accuracy_high"]]) == pytest.approx(
        (0.1078, 0.6032), abs=1e-4
    )
    assert attacks.loc["0123456789abcdef", "model_label"] == "victim v1 (@candidate at the time)"
    table = headline_table(attacks)
    # key figures first, the short run id last; no target column, as no attack was targeted
    assert list(table.columns) == [
        "model", "attack", "eps", "n", "fooling rate [95% CI]", "robust accuracy [95% CI]", "L2 mean", "Linf max",
        "run",
    ]  # fmt: skip
    first, second = table.to_dict("records")  # sorted by model: robust v2 before victim v1
    # a run without metrics shows a dash, not "nan"
    assert (first["model"], first["attack"], first["fooling rate [95% CI]"], first["run"]) == (
        "robust v2", "deepfool", "-", "fedcba98"
    )  # fmt: skip
    assert (second["model"], second["eps"], second["n"], second["L2 mean"]) == ("victim v1", 0.05, 10, 1.5)
    assert second["fooling rate [95% CI]"] == "0.70 [0.40, 0.89]"
    assert second["robust accuracy [95% CI]"] == "0.30 [0.11, 0.60]"
    assert model_label("models:/victim/1", VICTIM) == "victim v1"
    assert model_label("x", "runs:/ab/model") == "runs:/ab/model"


def test_results_carry_class_names_and_clip_range_through_save_and_join(tmp_path: Path) -> None:
    result = _images(["a", "b"], fooled=True)
    loaded = AttackResult.load(result.save(tmp_path / "result.npz"))
    assert (loaded.class_names, loaded.clip_range) == (("normal", "pneumonia"), (0.0, 1.0))
    joined = AttackResult.concatenate([loaded, result.take(np.array([1]))])
    assert list(joined.ids) == ["a", "b", "b"] and joined.class_names == ("normal", "pneumonia")
    with pytest.raises(ValueError, match="different class names"):
        AttackResult.concatenate([result, AttackResult(**{**result.__dict__, "class_names": ("a", "b")})])
    # a result saved before results carried them loads with "unknown" (no names, no finite range)
    arrays = {name: value for name, value in np.load(tmp_path / "result.npz").items() if name not in
              ("class_names", "clip_range")}  # fmt: skip
    np.savez(tmp_path / "old.npz", **arrays)
    old = AttackResult.load(tmp_path / "old.npz")
    assert old.class_names == () and old.clip_range == (-np.inf, np.inf) and list(old.ids) == ["a", "b"]


def test_an_image_attack_explained_by_gradcam_is_one_grid_of_images_perturbation_and_maps() -> None:
    result = _images(["a", "b", "c"], fooled=False)
    result = AttackResult(**{**result.__dict__, "y_adv": np.array([0, 0, 1])})  # only b (class 1) is fooled
    maps = Heatmaps(ids=np.array(["c", "b"]), clean=np.full((2, 12, 12), 0.25), adversarial=np.full((2, 12, 12), 0.75))
    figure = example_grid(result, maps)
    # b first (fooled), then c; a has no map and is left out
    axes = np.array(figure.axes).reshape(2, 5)
    assert [axis.get_title() for axis in axes[:, 0]] == ["b: clean, predicted pneumonia", "c: clean, predicted normal"]
    assert axes[0, 1].get_title() == "adversarial, predicted normal"
    # every pixel moved by 0.1: the colour limits +-0.1, and 0.5 / 0.1 = x5 the stated amplification
    assert axes[0, 2].get_title() == "perturbation x5" and axes[0, 2].images[0].get_clim() == pytest.approx((-0.1, 0.1))
    clean_map, adversarial_map = axes[0, 3].images[1], axes[0, 4].images[1]  # each over its image
    assert clean_map.get_array().mean() == 0.25 and adversarial_map.get_array().mean() == 0.75
    plt.close(figure)

    run = RunRecord(run_id="0123456789abcdef", params={"model": VICTIM, "attack": "fgsm", "eps": "0.1"})
    example = Example(attack=run, perturbations=b"png", gradcam=b"overlays", result=result, heatmaps=maps)
    # what the run logged stays as it is; the grid is the report's own figure (logged as PNG and SVG)
    assert example_images([example]) == {
        "victim v1 fgsm@0.1 (run 01234567): clean, adversarial, perturbation (scale in the figure)": b"png"
    }
    grids = example_grids([example])
    [(caption, grid)] = grids.items()
    assert caption == (
        "victim v1 fgsm@0.1 (run 01234567): Grad-CAM of clean and adversarial inputs, beside the images and the "
        "perturbation"
    )
    assert len(grid.axes) == 2 * 5
    plt.close(grid)


# --- the HTML report and its figures ------------------------------------------------------------------------------


def _report(attacks: pd.DataFrame) -> str:
    matrix = pd.DataFrame([[0.25, np.nan], [1.0, 0.5]], index=["A", "N"], columns=["A", "N"])
    return render_report(
        "medadv evaluation: <tests>",
        [
            Section(
                title="Attacks",
                text="fooling rate & robust accuracy",
                tables={"runs": attacks},
                figures={
                    "vs eps": eps_curves(attacks, ["fooling_rate", "robust_accuracy"], line=["model", "attack"]),
                    "success": matrix_heatmap(matrix, "success by source and target"),
                },
            ),
            Section(title="Skipped runs", tables={"skipped": pd.DataFrame(columns=["run_id", "reason"])}),
            Section(title="Wide", tables={"wide": pd.DataFrame({f"a long column name {i}": [0.5] for i in range(30)})}),
        ],
        facts={"experiment": "tests"},
    )


def test_tables_escape_text_format_numbers_and_mark_missing_values() -> None:
    table = pd.DataFrame({"model": ["<b>x</b>"], "rate": [0.123456], "auc": [np.nan]})
    html = table_html(table)
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x" not in html
    assert "<td>0.1235</td>" in html and "<td>-</td>" in html
    assert table_html(pd.DataFrame(columns=["run_id"])) == ""


def test_report_is_self_contained_with_every_figure_embedded_as_a_png(attacks: pd.DataFrame) -> None:
    html = _report(attacks)
    images = [Image.open(io.BytesIO(base64.b64decode(data))) for data in EMBEDDED.findall(html)]
    assert [image.format for image in images] == ["PNG", "PNG"]
    assert all(image.width > 300 and image.height > 150 for image in images)
    assert "<title>medadv evaluation: &lt;tests&gt;</title>" in html
    assert "fooling rate &amp; robust accuracy" in html
    assert not re.search(r"<script|<link|src=\"http|url\(", html)  # nothing fetched from elsewhere
    assert "Skipped runs" not in html and "none" not in html  # a section with nothing to show is left out


def test_eps_curves_draw_one_line_per_model_and_attack_sorted_by_eps(attacks: pd.DataFrame) -> None:
    figure = eps_curves(attacks, ["fooling_rate", "robust_accuracy"], line=["model", "attack"])
    fooling, robust = figure.axes
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in fooling.get_lines()}
    assert lines == {"a / fgsm": ([0.01, 0.05, 0.1], [0.1, 0.5, 0.9]), "b / fgsm": ([0.01, 0.05, 0.1], [0.2, 0.6, 1.0])}
    assert [list(line.get_ydata()) for line in robust.get_lines()] == [[0.9, 0.5, 0.1], [0.8, 0.4, 0.0]]
    assert fooling.get_ylabel() == "fooling rate"
    assert [tick.get_text() for tick in fooling.get_xticklabels()] == ["0.01", "0.05", "0.1"]  # the eps run
    assert not fooling.collections  # no interval columns for the fooling rate: no band
    band = robust.collections[0].get_paths()[0].vertices  # model a's robust accuracy between its bounds
    assert band[:, 1].min() == pytest.approx(0.0) and band[:, 1].max() == pytest.approx(1.0)
    plt.close(figure)


def test_a_single_eps_is_a_bar_per_series_with_its_interval(attacks: pd.DataFrame) -> None:
    figure = eps_curves(attacks[attacks["eps"] == 0.05], ["robust_accuracy"], line=["model"])
    axis = figure.axes[0]
    assert [bar.get_height() for bar in axis.patches] == [0.5, 0.4]
    assert axis.get_xlabel() == "eps = 0.05"
    # each bar's interval: 0.3 to 0.7 for a, 0.2 to 0.6 for b
    segments = [segment for whiskers in axis.collections for segment in whiskers.get_segments()]
    spans = sorted(tuple(np.round(segment[:, 1], 6)) for segment in segments)
    assert spans == [(0.2, 0.6), (0.3, 0.7)]
    assert [text.get_text() for text in axis.get_legend().get_texts()] == ["a", "b"]
    plt.close(figure)


def test_model_uris_are_shortened_for_legends_and_cells() -> None:
    assert short_model("models:/pneumonia-cnn/3") == "pneumonia-cnn v3"
    assert short_model("models:/pneumonia-cnn@candidate") == "pneumonia-cnn@candidate"
    assert short_model("runs:/0123456789abcdef0123456789abcdef/model") == "run 01234567"
    assert short_model("/tmp/model.keras") == "/tmp/model.keras"


def test_matrix_heatmap_writes_each_cell_and_greys_out_missing_ones() -> None:
    matrix = pd.DataFrame(
        [[np.nan, 0.25], [1.0, np.nan]],
        index=pd.Index(["A", "N"], name="source"),
        columns=pd.Index(["A", "N"], name="target"),
    )
    figure = matrix_heatmap(matrix, "success")
    axis = figure.axes[0]
    assert [text.get_text() for text in axis.texts] == ["-", "0.25", "1.00", "-"]
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("target", "source")
    assert [label.get_text() for label in axis.get_yticklabels()] == ["A", "N"]
    assert axis.images[0].get_array().mask.tolist() == [[True, False], [False, True]]
    plt.close(figure)
    counts = pd.DataFrame([[4, 8], [4, np.nan]], index=matrix.index, columns=matrix.columns)
    counted = matrix_heatmap(matrix, "success", counts=counts)
    assert [text.get_text() for text in counted.axes[0].texts] == ["-\nn=4", "0.25\nn=8", "1.00\nn=4", "-"]
    plt.close(counted)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
    ]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium_with_its_figures_visible(attacks: pd.DataFrame, tmp_path: Path) -> None:
    html = _report(attacks)
    page = tmp_path / "report.html"
    page.write_text(html)
    # A copy that reports, from inside the browser, how many images decoded and any script error.
    probe = tmp_path / "probe.html"
    probe.write_text(
        html.replace(
            "</body>",
            "<script>window.onerror = (m) => document.body.append('PAGE ERROR ' + m);"
            "window.onload = () => { const all = [...document.images];"
            "const ok = all.filter((i) => i.complete && i.naturalWidth > 0).length;"
            "const wide = document.documentElement.scrollWidth > window.innerWidth;"
            "document.body.append(`DECODED ${ok} OF ${all.length} WIDE ${wide}`); };</script></body>",
        )
    )
    dumped = _chromium(tmp_path, "--virtual-time-budget=5000", "--window-size=1400,900", "--dump-dom", probe.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    written = dumped.stdout.rsplit("</script>", 1)[1]  # what the probe wrote, after its own source
    assert "DECODED 2 OF 2 WIDE false" in written and "PAGE ERROR" not in written  # a wide table scrolls in its box

    shot = tmp_path / "report.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert pixels.shape == (2000, 1280, 3)
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 80  # text and rules are grey; the figures are not
    assert colourful.mean() > 0.005, "no figure visible in the screenshot"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500
