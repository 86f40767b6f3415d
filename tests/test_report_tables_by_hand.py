"""The report's tables pinned whole on tiny hand-made run records: every index, column (names and order) and cell
worked out by hand, the arithmetic in the comments. No tracking server, no trained model."""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from medadv.attacks.result import AttackResult, TargetProbabilities
from medadv.contract import ATTACK_RUN_TAG, ENGINE_TAG
from medadv.metrics.attack import ssim
from medadv.report.records import ModelRecord, RunRecord
from medadv.report.tables import (
    ATTACK_METRICS,
    HEATMAP_METRICS,
    TRAIN_METRICS,
    Ledger,
    _interval,
    _rate_text,
    attack_rows,
    attack_table,
    compare,
    defense_table,
    headline_table,
    heatmap_table,
    merged_row,
    metrics_table,
    models_table,
    robustness_matrix,
    success_table,
    transfer_matrix,
    transfer_robustness_matrix,
    transfer_table,
)

NAN = math.nan
VICTIM, ROBUST, OTHER, Z9 = "models:/victim/1", "models:/robust/2", "models:/other/3", "models:/z/9"
MISSING = ["run_id", "step", "kind", "name"]
SKIPPED = ["run_id", "step", "run_name", "reason"]
Z = NormalDist().inv_cdf(0.975)  # 1.95996


def _wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval written out: centre (p + z^2 / 2n) / (1 + z^2 / n), half width
    z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n)."""
    p, d = k / n, 1 + Z * Z / n
    centre, half = (p + Z * Z / (2 * n)) / d, Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def _frame(rows: list[dict[str, object]], columns: list[str], index: str | None = None) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=columns)
    return table.set_index(index) if index else table


# --- Ledger -----------------------------------------------------------------------------------------------------


def test_ledger_lists_the_unfinished_runs_the_metrics_and_artifacts_lacking_and_the_skipped() -> None:
    done = RunRecord(run_id="r1", step="train", name="fit", metrics={"test_auc": 0.5}, lacking=("model", "history"))
    failed = RunRecord(run_id="r2", step="attack", name="pgd", status="FAILED")
    running = RunRecord(run_id="r3", step="gradcam", status="RUNNING")
    ledger = Ledger()
    assert ledger.finished([failed, done, running]) == [done]
    ledger.expect(done, ["test_accuracy", "test_auc", "clean_accuracy"])  # test_auc logged
    ledger.lack(None, "train", "train run", VICTIM)  # no record: an empty run id
    ledger.skip(done, "superseded")
    tables = ledger.tables()
    assert list(tables) == ["missing", "skipped"]
    expected_missing = _frame(
        [
            {"run_id": "r1", "step": "train", "kind": "metric", "name": "test_accuracy"},
            {"run_id": "r1", "step": "train", "kind": "metric", "name": "clean_accuracy"},
            {"run_id": "r1", "step": "train", "kind": "artifact", "name": "model"},
            {"run_id": "r1", "step": "train", "kind": "artifact", "name": "history"},
            {"run_id": "", "step": "train", "kind": "train run", "name": VICTIM},
        ],
        MISSING,
    )
    pd.testing.assert_frame_equal(tables["missing"], expected_missing)
    expected_skipped = _frame(
        [
            {"run_id": "r2", "step": "attack", "run_name": "pgd", "reason": "status FAILED"},
            {"run_id": "r3", "step": "gradcam", "run_name": "", "reason": "status RUNNING"},
            {"run_id": "r1", "step": "train", "run_name": "fit", "reason": "superseded"},
        ],
        SKIPPED,
    )
    pd.testing.assert_frame_equal(tables["skipped"], expected_skipped)

    empty = Ledger().tables()  # nothing lacking: the tables still have their columns
    assert list(empty["missing"].columns) == MISSING and list(empty["skipped"].columns) == SKIPPED
    assert empty["missing"].empty and empty["skipped"].empty


# --- heatmaps ---------------------------------------------------------------------------------------------------


def _gradcam(run_id: str, metrics: dict[str, float], *, explains: bool = True, **params: str) -> RunRecord:
    tags = {ATTACK_RUN_TAG: "a" + run_id} if explains else {}
    return RunRecord(run_id=run_id, step="gradcam", params=params, tags=tags, metrics=metrics)


def test_heatmap_table_averages_the_runs_of_each_model_attack_eps_and_method() -> None:
    full = dict.fromkeys(HEATMAP_METRICS, 0.25)
    runs = [
        # maps of clean inputs only: left out, and nothing listed as lacking
        _gradcam("g4", {}, explains=False, model=VICTIM, attack="pgd", eps="0.1", method="gradcam"),
        # pgd@0.1 by grad-cam, twice: the second run names the victim by its pinned version and lacks com_shift_mean
        _gradcam("g1", full | {"iou_top10_mean": 0.5, "unrelated": 7.0, "iou_top5_mean": 9.0},
                 model=VICTIM, attack="pgd", eps="0.1", method="gradcam", iou_top_percent="10"),
        _gradcam("g2", {k: v for k, v in (full | {"dssim_mean": 0.75, "iou_top10_mean": 1.0}).items()
                        if k != "com_shift_mean"},
                 model="models:/victim@champion", model_version_uri=VICTIM, attack="pgd", eps="0.1",
                 method="gradcam", iou_top_percent="10"),
        # fgsm without eps (NaN) by grad-cam++ with the top 5%: its own group, sorted first (fgsm < pgd)
        _gradcam("g3", full | {"iou_top5_mean": 0.125}, model=VICTIM, attack="fgsm", method="gradcam++",
                 iou_top_percent="5"),
    ]  # fmt: skip
    ledger = Ledger()
    table = heatmap_table(runs, ledger)
    # group means: dssim_mean (0.25 + 0.75) / 2 = 0.5, com_shift_mean only g1's 0.25, iou_top10 (0.5 + 1) / 2;
    # g3 alone; a run's metric it does not expect (g1's iou_top5_mean, unrelated) is not taken
    expected = pd.DataFrame(
        {
            "model": [VICTIM, VICTIM],
            "attack": ["fgsm", "pgd"],
            "eps": [NAN, 0.1],
            "method": ["gradcam++", "gradcam"],
            "runs": [1, 2],
            "dssim_mean": [0.25, 0.5],
            "dssim_max": [0.25, 0.25],
            "dssim_std": [0.25, 0.25],
            "pearson_mean": [0.25, 0.25],
            "spearman_mean": [0.25, 0.25],
            "com_shift_mean": [0.25, 0.25],
            "iou_top10_mean": [NAN, 0.75],
            "iou_top5_mean": [0.125, NAN],
        }
    )
    pd.testing.assert_frame_equal(table, expected)
    pd.testing.assert_frame_equal(ledger.tables()["missing"], _frame(
        [{"run_id": "g2", "step": "gradcam", "kind": "metric", "name": "com_shift_mean"}], MISSING
    ))  # fmt: skip

    # an attack without method or attack parameters still groups (on empty strings)
    bare = heatmap_table([_gradcam("g5", {"dssim_mean": 0.5}, iou_top_percent="20")], Ledger())
    assert bare.to_dict("records")[0] == pytest.approx(
        {"model": "", "attack": "", "eps": NAN, "method": "", "runs": 1, "dssim_mean": 0.5}, nan_ok=True
    )
    assert list(bare.columns) == ["model", "attack", "eps", "method", "runs", "dssim_mean"]

    empty = heatmap_table([runs[0]], Ledger())
    assert list(empty.columns) == ["model", "attack", "eps", "method", "runs", *HEATMAP_METRICS] and empty.empty


# --- metrics and defenses ---------------------------------------------------------------------------------------


def test_metrics_and_defense_tables_by_run_sorted_by_model_and_label() -> None:
    def run(run_id: str, model: str, eps: str, metrics: dict[str, float], **params: str) -> RunRecord:
        return RunRecord(run_id=run_id, params={"model": model, "attack": "type2", "eps": eps} | params,
                         metrics=metrics)  # fmt: skip

    runs = [
        # undefended 0.9: non-adaptive 0.2 < 0.9 - 0.1 and adaptive 0.85 >= 0.8: the defense only stops the
        # non-adaptive attack
        run("d1", VICTIM, "0.5", {"undefended_success_rate": 0.9, "nonadaptive_success_rate": 0.2,
                                  "adaptive_success_rate": 0.85}, defense="lowpass"),
        # 0.85 >= 0.9 - 0.1: no effect
        run("d2", VICTIM, "0.25", {"undefended_success_rate": 0.9, "nonadaptive_success_rate": 0.85,
                                   "adaptive_success_rate": 0.9}),
        # 0.1 and 0.2 below 0.8; 0.2 < 0.1 + 0.1 after all: holds
        run("d3", "models:/a/1", "0.5", {"undefended_success_rate": 0.9, "nonadaptive_success_rate": 0.1,
                                         "adaptive_success_rate": 0.15}, defense="median"),
        # 0.5 >= 0.1 + 0.1: partly broken
        run("d4", "models:/a/1", "0.1", {"undefended_success_rate": 0.9, "nonadaptive_success_rate": 0.1,
                                         "adaptive_success_rate": 0.5}, defense="median"),
        run("d5", VICTIM, "0.5", {"undefended_success_rate": 0.9}),  # no adaptive attack: not a defended run
    ]  # fmt: skip
    table = defense_table(runs)
    # sorted by model, then label: models:/a/1 before models:/victim/1; type2@0.1 < type2@0.5, type2@0.25 < @0.5
    expected = _frame(
        [
            {"run_id": "d4", "model": "models:/a/1", "attack": "type2", "label": "type2@0.1", "defense": "median",
             "undefended_success_rate": 0.9, "nonadaptive_success_rate": 0.1, "adaptive_success_rate": 0.5,
             "verdict": "partly broken by the adaptive attack"},
            {"run_id": "d3", "model": "models:/a/1", "attack": "type2", "label": "type2@0.5", "defense": "median",
             "undefended_success_rate": 0.9, "nonadaptive_success_rate": 0.1, "adaptive_success_rate": 0.15,
             "verdict": "holds against the adaptive attack"},
            {"run_id": "d2", "model": VICTIM, "attack": "type2", "label": "type2@0.25", "defense": "",
             "undefended_success_rate": 0.9, "nonadaptive_success_rate": 0.85, "adaptive_success_rate": 0.9,
             "verdict": "no effect"},
            {"run_id": "d1", "model": VICTIM, "attack": "type2", "label": "type2@0.5", "defense": "lowpass",
             "undefended_success_rate": 0.9, "nonadaptive_success_rate": 0.2, "adaptive_success_rate": 0.85,
             "verdict": "stops only the non-adaptive attack"},
        ],
        ["run_id", "model", "attack", "label", "defense", "undefended_success_rate", "nonadaptive_success_rate",
         "adaptive_success_rate", "verdict"],
        "run_id",
    )  # fmt: skip
    pd.testing.assert_frame_equal(table, expected)

    # any metrics, of the runs that logged `logged`; one a run lacks is NaN; same model and label keep their order
    plain = metrics_table(runs, ("nonadaptive_success_rate", "quality_mean"), "undefended_success_rate")
    expected_plain = _frame(
        [
            {"run_id": "d4", "model": "models:/a/1", "attack": "type2", "label": "type2@0.1", "defense": "median",
             "nonadaptive_success_rate": 0.1, "quality_mean": NAN},
            {"run_id": "d3", "model": "models:/a/1", "attack": "type2", "label": "type2@0.5", "defense": "median",
             "nonadaptive_success_rate": 0.1, "quality_mean": NAN},
            {"run_id": "d2", "model": VICTIM, "attack": "type2", "label": "type2@0.25", "defense": "",
             "nonadaptive_success_rate": 0.85, "quality_mean": NAN},
            {"run_id": "d1", "model": VICTIM, "attack": "type2", "label": "type2@0.5", "defense": "lowpass",
             "nonadaptive_success_rate": 0.2, "quality_mean": NAN},
            {"run_id": "d5", "model": VICTIM, "attack": "type2", "label": "type2@0.5", "defense": "",
             "nonadaptive_success_rate": NAN, "quality_mean": NAN},
        ],
        ["run_id", "model", "attack", "label", "defense", "nonadaptive_success_rate", "quality_mean"],
        "run_id",
    )  # fmt: skip
    pd.testing.assert_frame_equal(plain, expected_plain)
    none = metrics_table(runs, ("quality_mean",), "quality_mean")
    assert list(none.columns) == ["model", "attack", "label", "defense", "quality_mean"] and none.empty
    assert none.index.name == "run_id"


# --- models -----------------------------------------------------------------------------------------------------


def test_models_table_takes_version_tags_over_params_over_tags() -> None:
    trained = RunRecord(
        run_id="t1", step="train", tags={"training_method": "standard", "dataset": "tagged", "arch": "tagged"},
        params={"dataset": "chest", "arch": "resnet"}, metrics={"test_accuracy": 0.75, "test_auc": 0.5, "x": 1.0},
    )  # fmt: skip
    models = [
        ModelRecord(uri=ROBUST, version="robust/2", version_tags={"training_method": "adversarial"},
                    train_run=trained),
        ModelRecord(uri=OTHER, version="other/3"),  # its training run unknown: listed, and only its URI shown
        ModelRecord(uri=VICTIM, train_run=RunRecord(run_id="t2", step="train")),  # nothing logged
    ]  # fmt: skip
    ledger = Ledger()
    table = models_table(models, ledger)
    expected = _frame(
        [
            {"model": ROBUST, "version": "robust/2", "train_run_id": "t1", "training_method": "adversarial",
             "dataset": "chest", "arch": "resnet", "clean_accuracy": NAN, "test_accuracy": 0.75,
             "test_macro_f1": NAN, "test_auc": 0.5},
            {"model": OTHER},
            {"model": VICTIM, "version": "", "train_run_id": "t2", "training_method": "", "dataset": "", "arch": "",
             "clean_accuracy": NAN, "test_accuracy": NAN, "test_macro_f1": NAN, "test_auc": NAN},
        ],
        ["model", "version", "train_run_id", "training_method", "dataset", "arch", "clean_accuracy", "test_accuracy",
         "test_macro_f1", "test_auc"],
        "model",
    )  # fmt: skip
    pd.testing.assert_frame_equal(table, expected)
    pd.testing.assert_frame_equal(ledger.tables()["missing"], _frame(
        [{"run_id": "", "step": "train", "kind": "train run", "name": OTHER}], MISSING
    ))  # fmt: skip
    bare = models_table([models[2]], Ledger())  # no metric logged at all: still NaN numbers
    assert (
        list(bare[list(TRAIN_METRICS)].dtypes) == [np.dtype(float)] * 4 and bare[list(TRAIN_METRICS)].isna().all().all()
    )
    empty = models_table([], Ledger())
    assert list(empty.columns) == list(expected.columns) and empty.index.name == "model" and empty.empty


# --- attacks: single runs and merged shards ---------------------------------------------------------------------


def _images(ids: list[str], *, fooled: bool, targeted: bool = False) -> AttackResult:
    """12x12 grey images of classes 0, 1, 0, ... each pixel moved from 0.5 to 0.625 (exact in float32): all
    misclassified after, or none; targeted: each towards the other class."""
    x = np.full((len(ids), 12, 12, 1), 0.5, dtype=np.float32)
    y_true = np.arange(len(ids)) % 2
    return AttackResult(
        x=x, x_adv=x + np.float32(0.125), ids=np.array(ids), y_true=y_true, y_clean=y_true,
        y_adv=1 - y_true if fooled else y_true, y_target=1 - y_true if targeted else np.full(len(ids), -1),
        p_clean=np.ones(len(ids)), p_adv=np.ones(len(ids)), seconds=np.full(len(ids), 0.5),
        class_names=("normal", "pneumonia"), clip_range=(0.0, 1.0),
    )  # fmt: skip


def _shard(id_: str, shard: str, start: int, result: AttackResult | None, **params: str) -> RunRecord:
    common = {"model": VICTIM, "attack": "fgsm", "eps": "0.125", "parent_run_id": "sweep", "batch_size": "8"}
    return RunRecord(run_id=id_, start_time=start, params=common | params | {"shard": shard}, result=result,
                     lacking=("attack_result.npz",) * (result is None))  # fmt: skip


# SSIM of a constant 0.5 image against a constant 0.625 one: the variances and covariance are 0, so only the
# luminance term is left, (2 x 0.5 x 0.625 + C1) / (0.5^2 + 0.625^2 + C1), C1 = (0.01 x 1)^2
SSIM = (2 * 0.5 * 0.625 + 1e-4) / (0.25 + 0.390625 + 1e-4)
# every one of the 144 pixels moved by 0.125: L0 144, L2 sqrt(144 x 0.125^2) = 1.5, Linf 0.125; MSE 1/64 on the
# range [0, 1]: PSNR 10 log10(64) dB
PSNR = 10 * math.log10(64)


def _row(**cells: object) -> dict[str, object]:
    """An attack table row: the columns every row has, their defaults, then `cells`."""
    return {
        "run_id": "", "model": VICTIM, "model_label": "victim v1", "dataset": "", "split": "", "attack": "fgsm",
        "variant": "fgsm", "engine": "", "eps": NAN, "window": NAN, "target": "", "target_class": "", "label": "fgsm",
        "shards": "1/1", "missing_shards": "", "duplicate_ids": NAN, **dict.fromkeys(ATTACK_METRICS, NAN),
    } | cells  # fmt: skip


def _attacks(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows).set_index("run_id")


def test_attack_table_of_single_runs_and_merged_shards_whole() -> None:
    # a logged success matrix as read back, its axes unnamed
    success = pd.DataFrame([[NAN, 0.75], [0.5, NAN]], index=["normal", "pneumonia"], columns=["normal", "pneumonia"])
    logged = {"robust_accuracy": 0.25, "fooling_rate": 0.75, "attack_success_rate": 0.5, "num_samples": 4.0,
              "l2_mean": 1.0, "linf_max": 0.25, "psnr_mean": 30.0, "extra": 1.0}  # fmt: skip
    runs = [
        RunRecord(run_id="u1", params={"model": VICTIM, "attack": "pgd", "eps": "0.25", "target": "1",
                                       "dataset": "chest", "split": "test"},
                  tags={ENGINE_TAG: "native"}, metrics=logged, success=success),
        RunRecord(run_id="u2", params={"model": "models:/a/1", "attack": "deepfool", "shard": "0/1"}),
        _shard("s0", "0/2", 0, _images(["a", "b"], fooled=True)),
        _shard("s1", "1/2", 1, _images(["c", "d"], fooled=False), batch_size="4", run_id="x"),
    ]  # fmt: skip
    ledger = Ledger()
    rows = attack_rows(runs, ledger)
    assert [a.row["run_id"] for a in rows] == ["u1", "u2", "sweep"]  # single runs first, then merged shards
    assert rows[0].success is success and rows[2].success is None and rows[2].transfer is None
    assert rows[1].row == pytest.approx(_row(run_id="u2", model="models:/a/1", model_label="a v1", attack="deepfool",
                                             variant="deepfool", label="deepfool"), nan_ok=True)  # fmt: skip
    pd.testing.assert_frame_equal(success_table(rows), _frame(
        [{"run_id": "u1", "model": VICTIM, "label": "pgd@0.25 target 1", "source": s, "target": t,
          "success_rate": v}
         for s, t, v in (("normal", "normal", NAN), ("normal", "pneumonia", 0.75), ("pneumonia", "normal", 0.5),
                         ("pneumonia", "pneumonia", NAN))],
        ["run_id", "model", "label", "source", "target", "success_rate"], "run_id",
    ))  # fmt: skip
    table = attack_table(rows)
    low, high = _wilson(1, 4)  # u1: 0.25 x 4 = 1 right of 4; 3 of 4 fooled is its mirror image
    # sweep: s0 fooled a and b, s1 neither of c, d: 2 of 4 right, 2 of 4 fooled
    half_low, half_high = _wilson(2, 4)
    expected = _attacks([
        # sorted by model (models:/a/1 first), then attack: fgsm before pgd
        _row(run_id="u2", model="models:/a/1", model_label="a v1", attack="deepfool", variant="deepfool",
             label="deepfool", fooling_rate_low=NAN, fooling_rate_high=NAN, robust_accuracy_low=NAN,
             robust_accuracy_high=NAN),
        _row(run_id="sweep", eps=0.125, label="fgsm@0.125", shards="2/2", duplicate_ids=0,
             selected_clean_accuracy=1.0, robust_accuracy=0.5, fooling_rate=0.5, attack_success_rate=0.5,
             l0_mean=144.0, l2_mean=1.5, l2_median=1.5, linf_mean=0.125, linf_max=0.125, psnr_mean=PSNR,
             ssim_mean=SSIM, seconds_per_sample=0.5, num_samples=4.0, fooling_rate_low=half_low,
             fooling_rate_high=half_high, robust_accuracy_low=half_low, robust_accuracy_high=half_high),
        _row(run_id="u1", dataset="chest", split="test", attack="pgd", variant="pgd", engine="native", eps=0.25,
             target="1", target_class="pneumonia", label="pgd@0.25 target 1",
             **{k: v for k, v in logged.items() if k != "extra"},
             fooling_rate_low=1 - high, fooling_rate_high=1 - low, robust_accuracy_low=low,
             robust_accuracy_high=high),
    ])  # fmt: skip
    pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=1e-6)
    assert table["duplicate_ids"].dtype == float
    # the unsharded runs lack the metrics they did not log (PSNR and SSIM are only for images: never expected)
    unlogged = [m for m in ATTACK_METRICS if m not in ("psnr_mean", "ssim_mean")]
    expected_missing = [("u1", m) for m in unlogged if m not in logged] + [("u2", m) for m in unlogged]
    assert list(zip(*(ledger.tables()["missing"][c] for c in ("run_id", "name")), strict=True)) == expected_missing
    assert set(ledger.tables()["missing"]["kind"]) == {"metric"} and ledger.tables()["skipped"].empty

    headline = headline_table(table)
    expected_headline = pd.DataFrame({
        "model": ["a v1", "victim v1", "victim v1"], "attack": ["deepfool", "fgsm", "pgd"], "eps": [NAN, 0.125, 0.25],
        "target": ["", "", "pneumonia"], "n": [NAN, 4.0, 4.0],
        "fooling rate [95% CI]": ["-", f"0.50 [{half_low:.2f}, {half_high:.2f}]",
                                  f"0.75 [{1 - high:.2f}, {1 - low:.2f}]"],
        "robust accuracy [95% CI]": ["-", f"0.50 [{half_low:.2f}, {half_high:.2f}]", f"0.25 [{low:.2f}, {high:.2f}]"],
        "L2 mean": [NAN, 1.5, 1.0], "Linf max": [NAN, 0.125, 0.25], "shards": ["1/1", "2/2", "1/1"],
        "run": ["u2", "sweep", "u1"],
    })  # fmt: skip
    pd.testing.assert_frame_equal(headline, expected_headline, check_exact=False, rtol=1e-6)
    assert headline.loc[2, "robust accuracy [95% CI]"] == "0.25 [0.05, 0.70]"  # Wilson 1 of 4: [0.0456, 0.6994]


def test_merged_shards_lacking_results_keep_their_description_and_no_metrics() -> None:
    # three shards named, only 1/3 found and it lacks its result: nothing to join
    ledger = Ledger()
    row = merged_row([_shard("s1", "1/3", 5, None, target="0")], ledger).row
    assert row == pytest.approx(_row(
        run_id="sweep", eps=0.125, target="0", target_class="0", label="fgsm@0.125 target 0", shards="0/3",
        missing_shards="0,1,2",
    ), nan_ok=True)  # fmt: skip
    assert set(row) == set(_row())
    assert ledger.missing == [{"run_id": "s1", "step": "attack", "kind": "artifact", "name": "attack_result.npz"}]


def test_merged_targeted_shards_give_a_success_matrix_and_the_newest_shard() -> None:
    shards = [
        _shard("s0", "0/2", 10, _images(["a", "b"], fooled=True, targeted=True), target="-1", ssim="skimage"),
        _shard("s0old", "0/2", 5, _images(["a", "b"], fooled=False, targeted=True), target="-1", ssim="skimage"),
        _shard("s1", "1/2", 7, _images(["c", "d"], fooled=False, targeted=True), target="-1", ssim="skimage"),
    ]
    ledger = Ledger()
    merged = merged_row(shards, ledger)
    assert merged.row["target_class"] == "each other class" and merged.row["shards"] == "2/2"
    # a (normal -> pneumonia) hit, b (pneumonia -> normal) hit, c, d missed: each source 1 of 2
    pd.testing.assert_frame_equal(merged.success, pd.DataFrame(
        [[NAN, 0.5], [0.5, NAN]], index=pd.Index(["normal", "pneumonia"], name="source"),
        columns=pd.Index(["normal", "pneumonia"], name="target"),
    ))  # fmt: skip
    assert merged.row["attack_success_rate"] == 0.5 and merged.row["ssim_mean"] == pytest.approx(SSIM, rel=1e-6)
    assert ledger.skipped == [{"run_id": "s0old", "step": "attack", "run_name": "",
                               "reason": "superseded by run s0 of the same shard"}]  # fmt: skip
    # every sample towards class 0 (normal): b (pneumonia) hit it, a was already normal and was moved off it
    zero = dataclasses.replace(_images(["a", "b"], fooled=True), y_target=np.zeros(2, dtype=int))
    towards = merged_row([_shard("z0", "0/2", 0, zero, target="0")], Ledger())
    assert towards.row["target_class"] == "normal"
    pd.testing.assert_frame_equal(towards.success, pd.DataFrame(
        [[0.0, NAN], [1.0, NAN]], index=pd.Index(["normal", "pneumonia"], name="source"),
        columns=pd.Index(["normal", "pneumonia"], name="target"),
    ))  # fmt: skip
    # no parent run: the first shard's own id
    alone = merged_row([_shard("s9", "0/2", 0, _images(["a"], fooled=True), parent_run_id="")], Ledger())
    assert (alone.row["run_id"], alone.row["shards"], alone.row["missing_shards"]) == ("s9", "1/2", "1")

    table = success_table([merged, merged_row(shards[:1], Ledger())])
    # long form, source-major, NaN cells kept; both rows are "sweep"
    expected = _frame(
        [
            {"run_id": "sweep", "model": VICTIM, "label": "fgsm@0.125 target -1", "source": s, "target": t,
             "success_rate": v}
            for _ in range(2)
            for s, t, v in (("normal", "normal", NAN), ("normal", "pneumonia", 0.5), ("pneumonia", "normal", 0.5),
                            ("pneumonia", "pneumonia", NAN))
        ],
        ["run_id", "model", "label", "source", "target", "success_rate"],
        "run_id",
    )  # fmt: skip
    expected.iloc[4:, -1] = [NAN, 1.0, 1.0, NAN]  # shard 0 alone: both its samples hit
    pd.testing.assert_frame_equal(table, expected)
    empty = success_table([])
    assert list(empty.columns) == ["model", "label", "source", "target", "success_rate"] and empty.empty
    assert empty.index.name == "run_id"


# --- intervals and rate cells -----------------------------------------------------------------------------------


def test_interval_and_rate_text() -> None:
    assert _interval(0.5, 4.0) == pytest.approx(_wilson(2, 4))
    assert _interval(0.3, 10.0) == pytest.approx((0.1078, 0.6032), abs=1e-4)  # 3 of 10
    # a rate of 0.25 x 3 = 0.75 rounds to 1 success of 3
    assert _interval(0.25, 3.0) == pytest.approx(_wilson(1, 3))
    # one sample is enough: 1 of 1 is centre (1 + z^2 / 2) / (1 + z^2), half width z sqrt(z^2 / 4) / (1 + z^2)
    assert _interval(1.0, 1.0) == pytest.approx(((1 + Z * Z / 2 - Z * Z / 2) / (1 + Z * Z), 1.0))
    for rate, n in ((NAN, 4.0), (0.5, NAN), (0.5, 0.0), (0.5, -1.0), (math.inf, 4.0), (0.5, math.inf)):
        assert all(math.isnan(b) for b in _interval(rate, n))
    assert _rate_text(0.5, 0.25, 0.75) == "0.50 [0.25, 0.75]"
    assert _rate_text(0.5, NAN, NAN) == "0.50" and _rate_text(NAN, 0.1, 0.2) == "-"


# --- transfer and robustness ------------------------------------------------------------------------------------


def _transfer(rates: dict[str, tuple[float, float]]) -> pd.DataFrame:
    rows = {uri: {"transfer_success_rate": t, "adversarial_accuracy": a} for uri, (t, a) in rates.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("target_model")


def _single(run_id: str, model: str, eps: str, robust: float, n: int = 10, **fields: object) -> RunRecord:
    metrics = {"robust_accuracy": robust, "fooling_rate": 1 - robust, "num_samples": float(n)}
    return RunRecord(run_id=run_id, params={"model": model, "attack": "fgsm", "eps": eps}, metrics=metrics,
                     **fields)  # type: ignore[arg-type]  # fmt: skip


def _trained(run_id: str, accuracy: float, auc: float) -> RunRecord:
    return RunRecord(run_id=run_id, step="train", metrics={"test_accuracy": accuracy, "test_auc": auc})


MODELS = {
    VICTIM: ModelRecord(uri=VICTIM, version="victim/1", train_run=_trained("t1", 0.875, 0.9375)),
    ROBUST: ModelRecord(uri=ROBUST, version="robust/2", train_run=_trained("t2", 0.75, 0.8125)),
}


def test_transfer_tables_and_matrices_whole() -> None:
    runs = [
        _single("r1", VICTIM, "0.1", 0.25, transfer=_transfer({ROBUST: (0.5, 0.625), OTHER: (0.875, 0.125)})),
        _single("r2", VICTIM, "0.1", 0.5, n=30, transfer=_transfer({ROBUST: (0.25, 0.875)})),
        _single("r3", VICTIM, "0.3", 0.0),
        # a target that scored nothing (NaN) keeps its (empty) column and row
        _single("r4", ROBUST, "0.1", 0.75, transfer=_transfer({VICTIM: (0.125, 0.5), Z9: (NAN, NAN)})),
        RunRecord(run_id="r5", params={"model": ROBUST, "attack": "deepfool"}),  # no metrics: an empty column
    ]
    tables, rows = compare({"attack": runs}, MODELS)
    assert list(tables) == [
        "attacks", "robustness", "robustness_transfer", "success_matrices", "transfer", "transfer_matrix",
        "heatmaps", "ecg_plausibility", "ecg_defenses", "models", "missing", "skipped",
    ]  # fmt: skip
    assert [a.row["run_id"] for a in rows] == ["r1", "r2", "r3", "r4", "r5"]

    expected_transfer = pd.DataFrame({
        "run_id": ["r1", "r1", "r2", "r4", "r4"], "source_model": [VICTIM, VICTIM, VICTIM, ROBUST, ROBUST],
        "label": ["fgsm@0.1"] * 5, "target_model": [ROBUST, OTHER, ROBUST, VICTIM, Z9],
        "transfer_success_rate": [0.5, 0.875, 0.25, 0.125, NAN],
        "adversarial_accuracy": [0.625, 0.125, 0.875, 0.5, NAN], "n": [10.0, 10.0, 30.0, 10.0, 10.0],
    }).set_index("run_id")  # fmt: skip
    pd.testing.assert_frame_equal(tables["transfer"], expected_transfer)
    pd.testing.assert_frame_equal(transfer_table(rows), expected_transfer)

    # models x attack@eps, mean robust accuracy: victim at 0.1 (0.25 + 0.5) / 2; the robust model not at 0.3
    robustness = pd.DataFrame(
        {
            "clean_test_accuracy": [0.75, 0.875],
            "deepfool": [NAN, NAN],
            "fgsm@0.1": [0.75, 0.375],
            "fgsm@0.3": [NAN, 0.0],
        },
        index=pd.Index([ROBUST, VICTIM], name="model"),
    ).rename_axis(columns="label")
    pd.testing.assert_frame_equal(tables["robustness"], robustness)

    # (source, attack) x target, mean transfer success: victim -> robust (0.5 + 0.25) / 2; source AUC last;
    # the pairs never run are NaN
    matrix = pd.DataFrame(
        {
            OTHER: [NAN, 0.875],
            ROBUST: [NAN, 0.375],
            VICTIM: [0.125, NAN],
            Z9: [NAN, NAN],
            "source_clean_auc": [0.8125, 0.9375],
        },
        index=pd.MultiIndex.from_tuples([(ROBUST, "fgsm@0.1"), (VICTIM, "fgsm@0.1")], names=["source_model", "label"]),
    ).rename_axis(columns="target_model")
    pd.testing.assert_frame_equal(tables["transfer_matrix"], matrix)

    # target x crafted, mean adversarial accuracy: robust under fgsm on the victim (0.625 + 0.875) / 2
    crafted = pd.DataFrame(
        {f"fgsm@0.1 on {ROBUST}": [NAN, NAN, 0.5, NAN], f"fgsm@0.1 on {VICTIM}": [0.125, 0.75, NAN, NAN]},
        index=pd.Index([OTHER, ROBUST, VICTIM, Z9], name="target_model"),
    ).rename_axis(columns="crafted")
    pd.testing.assert_frame_equal(tables["robustness_transfer"], crafted)

    models = tables["models"]
    assert list(models.index) == [OTHER, ROBUST, VICTIM, Z9]  # attacked and transfer targets, by URI
    assert models.loc[VICTIM, "test_accuracy"] == 0.875 and math.isnan(models.loc[OTHER, "test_auc"])
    missing = tables["missing"]
    assert missing[missing["kind"] != "metric"].to_dict("records") == [
        {"run_id": "", "step": "train", "kind": "train run", "name": OTHER},
        {"run_id": "", "step": "train", "kind": "train run", "name": Z9},
    ]
    for name in ("success_matrices", "heatmaps", "ecg_plausibility", "ecg_defenses", "skipped"):
        assert tables[name].empty, name

    # no attacks: empty matrices
    for matrix_of in (
        robustness_matrix(tables["attacks"].iloc[:0], models),
        transfer_matrix(tables["transfer"].iloc[:0], models),
        transfer_robustness_matrix(tables["transfer"].iloc[:0]),
    ):
        pd.testing.assert_frame_equal(matrix_of, pd.DataFrame())


def test_compare_reads_every_step_and_lists_what_is_lacking() -> None:
    train = [
        RunRecord(run_id="t1", step="train", metrics={"clean_accuracy": 1.0, "test_accuracy": 0.5,
                                                      "test_macro_f1": 0.5, "test_auc": 0.5}),
        RunRecord(run_id="t2", step="train", metrics={"test_accuracy": 0.5}),
        RunRecord(run_id="t3", step="train", status="FAILED"),
    ]  # fmt: skip
    attack = [
        RunRecord(run_id="e1", params={"model": VICTIM, "attack": "type1"},
                  metrics={**dict.fromkeys(ATTACK_METRICS, 0.5), "stealthy_success_rate": 0.25,
                           "adaptive_success_rate": 0.5, "undefended_success_rate": 0.5,
                           "nonadaptive_success_rate": 0.5}),
        RunRecord(run_id="e2", params={"model": VICTIM}, status="KILLED"),
    ]  # fmt: skip
    gradcam = [
        _gradcam("g1", dict.fromkeys((*HEATMAP_METRICS, "iou_top10_mean"), 0.5), model=VICTIM, attack="type1",
                 method="gradcam", iou_top_percent="10"),
        RunRecord(run_id="g2", step="gradcam", status="FAILED"),
    ]  # fmt: skip
    tables, _ = compare({"train": train, "attack": attack, "gradcam": gradcam, "other": train}, MODELS)
    pd.testing.assert_frame_equal(tables["missing"], _frame(
        [{"run_id": "t2", "step": "train", "kind": "metric", "name": n}
         for n in ("clean_accuracy", "test_macro_f1", "test_auc")], MISSING,
    ))  # fmt: skip
    pd.testing.assert_frame_equal(tables["skipped"], _frame(
        [{"run_id": "t3", "step": "train", "run_name": "", "reason": "status FAILED"},
         {"run_id": "e2", "step": "attack", "run_name": "", "reason": "status KILLED"},
         {"run_id": "g2", "step": "gradcam", "run_name": "", "reason": "status FAILED"}], SKIPPED,
    ))  # fmt: skip
    assert list(tables["heatmaps"]["runs"]) == [1] and tables["heatmaps"].loc[0, "iou_top10_mean"] == 0.5
    assert list(tables["ecg_plausibility"].index) == ["e1"]
    assert tables["ecg_plausibility"].loc["e1", "stealthy_success_rate"] == 0.25
    assert tables["ecg_defenses"].loc["e1", "verdict"] == "no effect"
    assert list(tables["models"].index) == [VICTIM] and list(tables["attacks"].index) == ["e1"]
    assert list(tables["robustness"].columns) == ["clean_test_accuracy", "type1"]
    assert tables["transfer"].empty and list(tables["transfer"].columns) == [
        "source_model", "label", "target_model"] and tables["transfer"].index.name == "run_id"  # fmt: skip

    nothing, rows = compare({}, {})  # train runs only, or none: every table empty (this used to raise)
    assert rows == [] and nothing["attacks"].empty and nothing["models"].empty
    assert list(nothing["attacks"].columns[-4:]) == [
        "fooling_rate_low", "fooling_rate_high", "robust_accuracy_low", "robust_accuracy_high"]  # fmt: skip
    assert list(nothing["attacks"].dtypes.iloc[-4:]) == [np.dtype(float)] * 4
    for name in ("robustness", "robustness_transfer", "transfer_matrix"):
        pd.testing.assert_frame_equal(nothing[name], pd.DataFrame())


def test_merged_transfer_joins_each_targets_probabilities() -> None:
    def saved(ids: str, p_clean: list[float], p_adv: list[float]) -> TargetProbabilities:
        return TargetProbabilities(ids=np.array(list(ids)), clean=np.array([[1 - p, p] for p in p_clean]),
                                   adversarial=np.array([[1 - p, p] for p in p_adv]))  # fmt: skip

    # a (class 0) and b (class 1) fooled, c, d (0, 1) not; ROBUST predicts right on the clean ones and the
    # adversarial a; b fooled it (transferred): 1 of the 2 fooled; c and d right: adversarial accuracy 3/4
    shards = [
        _shard("s0", "0/2", 0, _images(["a", "b"], fooled=True), transfer_to_versions=f"{OTHER} {ROBUST}"),
        _shard("s1", "1/2", 1, _images(["c", "d"], fooled=False), transfer_to_versions=f"{OTHER} {ROBUST}"),
    ]
    shards = [
        RunRecord(run_id=s.run_id, start_time=s.start_time, params=s.params, result=s.result,
                  transfer_probabilities=p)
        for s, p in zip(shards, [{ROBUST: saved("ab", [0.25, 0.75], [0.25, 0.25])},
                                 {ROBUST: saved("cd", [0.25, 0.75], [0.25, 0.75]), OTHER: saved("cd", [0.5], [0.5])}],
                        strict=True)
    ]  # fmt: skip
    ledger = Ledger()
    transfer = merged_row(shards, ledger).transfer
    assert transfer is not None and list(transfer.index) == [ROBUST] and transfer.index.name == "target_model"
    assert transfer.loc[ROBUST, ["transfer_success_rate", "clean_accuracy", "adversarial_accuracy"]].tolist() == [
        0.5, 1.0, 0.75]  # fmt: skip
    assert ledger.missing == [
        {
            "run_id": "s0",
            "step": "attack",
            "kind": "transfer target",
            "name": f"{OTHER}: left out of the merged shards (1 of 2 shards saved no probabilities)",
        }
    ]


def test_merged_shards_take_skimages_ssim_unless_the_run_names_one() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, (2, 12, 12, 1)).astype(np.float32)
    x_adv = x + rng.uniform(-0.1, 0.1, x.shape).astype(np.float32)
    result = dataclasses.replace(_images(["a", "b"], fooled=True), x=x, x_adv=x_adv)
    skimage, tf = (float(np.mean(ssim(x, x_adv, (0.0, 1.0), method))) for method in ("skimage", "tf"))
    assert abs(skimage - tf) > 1e-3  # a 7x7 uniform window is not an 11x11 Gaussian one
    before = merged_row([_shard("s0", "0/2", 0, result)], Ledger())  # a run from before the parameter
    named = merged_row([_shard("s0", "0/2", 0, result, ssim="tf")], Ledger())
    assert before.row["ssim_mean"] == pytest.approx(skimage, rel=1e-6)
    assert named.row["ssim_mean"] == pytest.approx(tf, rel=1e-6)
