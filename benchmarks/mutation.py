"""Mutation score of the metric code: does a one-line bug, the kind a refactor introduces, fail a fast test?

Each mutation of `MUTATIONS` replaces one exact snippet (it must occur exactly once, so a stale entry fails loudly)
in a temporary copy of the repository, then runs the fast tests that cover that file, stopping at the first
failure (-x). A mutation is caught when those tests fail. mutmut and cosmic-ray are not installed here, so the
list is fixed by hand: medadv/metrics/*.py plus the four bugs of issue #18 that once went uncaught.

    python benchmarks/mutation.py            # every mutation, a few minutes on 2 cores
    python benchmarks/mutation.py --only auc  # the mutations whose name contains "auc"

Prints one line per mutation and `RESULT mutation_score=<caught / all> caught=<n> survived=<n>`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts="]

METRICS_TESTS = ("tests/test_metrics.py", "tests/test_figures_by_hand.py")
HEATMAP_TESTS = (
    "tests/test_explain.py",
    "-k",
    "identical or disjoint or centre or pearson or constant or summary or overlay_follows or overlay_dssim"
    " or dssim_takes or bad_heatmaps",
)
PLAUSIBILITY_TESTS = ("tests/test_ecg_plausibility.py",)


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    # issue #18's four
    Mutation(
        "transfer_rate_over_all_samples",
        "medadv/metrics/transfer.py",
        "float(target_success[source_success].mean())",
        "float(target_success.mean())",
        ("tests/test_figures_by_hand.py",),
    ),
    Mutation(
        "auc_binary_columns_reversed",
        "medadv/metrics/classification.py",
        "positive = probs[:, 1] if",
        "positive = probs[:, 0] if",
        ("tests/test_figures_by_hand.py",),
    ),
    Mutation(
        "auc_multiclass_columns_reversed",
        "medadv/metrics/classification.py",
        "probs.shape[1] == 2 else probs",
        "probs.shape[1] == 2 else probs[:, ::-1]",
        ("tests/test_figures_by_hand.py",),
    ),
    Mutation(
        "older_shard_wins",
        "medadv/report/records.py",
        "for run in sorted(runs, key=lambda r: r.start_time):",
        "for run in sorted(runs, key=lambda r: -r.start_time):",
        ("tests/test_report.py", "-k", "shard"),
    ),
    Mutation(
        "universal_without_restandardisation",
        "medadv/attacks/ecgadv/universal.py",
        "probs = model(zscore(shifted[:, :, None] + record[None]), training=False)",
        "probs = model(shifted[:, :, None] + record[None], training=False)",
        ("tests/test_ecgadv.py", "-k", "universal_evaluation"),
    ),
    # medadv/metrics/attack.py
    Mutation(
        "robust_accuracy_against_clean",
        "medadv/metrics/attack.py",
        "return _mean(y_adv == y_true)",
        "return _mean(y_adv != y_true)",
        METRICS_TESTS,
    ),
    Mutation(
        "fooling_rate_inverted",
        "medadv/metrics/attack.py",
        "return _mean(y_adv != y_clean)",
        "return _mean(y_adv == y_clean)",
        METRICS_TESTS,
    ),
    Mutation(
        "targeted_success_ignores_target",
        "medadv/metrics/attack.py",
        "np.where(y_target >= 0, y_adv == y_target, y_adv != y_true)",
        "np.where(y_target >= 0, y_adv != y_true, y_adv != y_true)",
        METRICS_TESTS,
    ),
    Mutation(
        "l0_counts_all_entries",
        "medadv/metrics/attack.py",
        '"l0": np.count_nonzero(flat, axis=1)',
        '"l0": np.count_nonzero(flat + 1, axis=1)',
        METRICS_TESTS,
    ),
    Mutation(
        "linf_signed_max",
        "medadv/metrics/attack.py",
        '"linf": np.abs(flat).max(axis=1, initial=0.0)',
        '"linf": flat.max(axis=1, initial=0.0)',
        METRICS_TESTS,
    ),
    Mutation(
        "l2_median_is_mean",
        "medadv/metrics/attack.py",
        'float(np.median(norms["l2"]))',
        'float(np.mean(norms["l2"]))',
        METRICS_TESTS,
    ),
    Mutation(
        "psnr_over_unchanged_images",
        "medadv/metrics/attack.py",
        'changed = norms["l0"] > 0',
        'changed = norms["l0"] >= 0',
        METRICS_TESTS,
    ),
    Mutation(
        "per_class_rate_off_by_one",
        "medadv/metrics/attack.py",
        "_mean(success[y_true == index])",
        "_mean(success[y_true == index - 1])",
        METRICS_TESTS,
    ),
    Mutation(
        "success_matrix_counts_source_hits",
        "medadv/metrics/attack.py",
        "result.y_adv[targeted] == targets)",
        "result.y_adv[targeted] != sources)",
        METRICS_TESTS,
    ),
    # medadv/metrics/transfer.py
    Mutation(
        "ci_without_sqrt_n",
        "medadv/metrics/transfer.py",
        "confidence.std(ddof=1) / math.sqrt(len(confidence))",
        "confidence.std(ddof=1)",
        ("tests/test_figures_by_hand.py",),
    ),
    Mutation(
        "accuracy_drop_reversed",
        "medadv/metrics/transfer.py",
        '"accuracy_drop": clean["accuracy"] - adversarial["accuracy"]',
        '"accuracy_drop": adversarial["accuracy"] - clean["accuracy"]',
        ("tests/test_figures_by_hand.py",),
    ),
    Mutation(
        "auc_drop_on_clean_twice",
        "medadv/metrics/transfer.py",
        '"auc_drop": clean["auc"] - adversarial["auc"]',
        '"auc_drop": clean["auc"] - clean["auc"]',
        ("tests/test_figures_by_hand.py",),
    ),
    # medadv/metrics/classification.py
    Mutation(
        "macro_f1_weighted",
        "medadv/metrics/classification.py",
        'average="macro", labels=',
        'average="weighted", labels=',
        ("tests/test_figures_by_hand.py",),
    ),
    # medadv/metrics/heatmap.py
    Mutation(
        "dssim_not_halved",
        "medadv/metrics/heatmap.py",
        "return (1.0 - ssim) / 2.0",
        "return 1.0 - ssim",
        HEATMAP_TESTS,
    ),
    Mutation(
        "pearson_uncentred",
        "medadv/metrics/heatmap.py",
        "b = b - b.mean(axis=1, keepdims=True)",
        "b = b",
        HEATMAP_TESTS,
    ),
    Mutation(
        "iou_intersection_is_union",
        "medadv/metrics/heatmap.py",
        "(a & b).sum(axis=1) / union",
        "(a | b).sum(axis=1) / union",
        HEATMAP_TESTS,
    ),
    Mutation(
        "top_region_takes_the_lowest",
        "medadv/metrics/heatmap.py",
        'np.argsort(-flat, axis=1, kind="stable")',
        'np.argsort(flat, axis=1, kind="stable")',
        HEATMAP_TESTS,
    ),
    Mutation(
        "overlay_heatmap_unweighted",
        "medadv/metrics/heatmap.py",
        "OVERLAY_HEATMAP_WEIGHT = 0.4",
        "OVERLAY_HEATMAP_WEIGHT = 1.0",
        HEATMAP_TESTS,
    ),
    Mutation(
        "dssim_std_sample",
        "medadv/metrics/heatmap.py",
        'float(table["dssim"].std(ddof=0))',
        'float(table["dssim"].std(ddof=1))',
        HEATMAP_TESTS,
    ),
    # medadv/metrics/similarity.py
    Mutation(
        "tf_ssim_window_7",
        "medadv/metrics/similarity.py",
        "TF_SSIM_WINDOW = 11",
        "TF_SSIM_WINDOW = 7",
        METRICS_TESTS,
    ),
    # medadv/metrics/ecg_plausibility.py
    Mutation(
        "beat_match_tolerance_doubled",
        "medadv/metrics/ecg_plausibility.py",
        "nearest <= tolerance",
        "nearest <= 2 * tolerance",
        PLAUSIBILITY_TESTS,
    ),
    Mutation(
        "rr_in_seconds",
        "medadv/metrics/ecg_plausibility.py",
        "rr_ms = np.diff(peaks) / fs_hz * 1000.0",
        "rr_ms = np.diff(peaks) / fs_hz",
        PLAUSIBILITY_TESTS,
    ),
    Mutation(
        "heart_rate_change_signed",
        "medadv/metrics/ecg_plausibility.py",
        'abs(row["heart_rate_bpm_change"]) <= MAX_HEART_RATE_CHANGE_BPM',
        'row["heart_rate_bpm_change"] <= MAX_HEART_RATE_CHANGE_BPM',
        PLAUSIBILITY_TESTS,
    ),
    Mutation(
        "quality_drop_ignored",
        "medadv/metrics/ecg_plausibility.py",
        "and quality_adv >= quality - QUALITY_TOLERANCE",
        "and quality_adv >= quality - 1.0",
        PLAUSIBILITY_TESTS,
    ),
]


def copy_repo(destination: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the working tree (no .git, no virtual environment)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True, capture_output=True, text=True
    )
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run_tests(copy: Path, tests: tuple[str, ...]) -> int:
    env = os.environ | {"PYTHONPATH": str(copy)}
    return subprocess.run([*PYTEST, *tests], cwd=copy, env=env, capture_output=True, text=True).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run only the mutations whose name contains this text")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only in m.name]
    if not chosen:
        raise SystemExit(f"mutation.py: error: no mutation name contains {args.only!r}")
    caught = 0
    baseline: dict[tuple[str, ...], int] = {}  # the unmutated tests must pass, once per test selection
    with tempfile.TemporaryDirectory(prefix="medadv-mutation-") as folder:
        copy = Path(folder)
        copy_repo(copy)
        for mutation in chosen:
            path = copy / mutation.path
            original = path.read_text()
            if original.count(mutation.old) != 1:
                raise SystemExit(
                    f"mutation.py: error: {mutation.name}: snippet not found exactly once in {mutation.path}"
                )
            start = time.perf_counter()
            if mutation.tests not in baseline:
                baseline[mutation.tests] = run_tests(copy, mutation.tests)
            if baseline[mutation.tests] != 0:
                raise SystemExit(f"mutation.py: error: {mutation.name}: its tests fail before any mutation")
            path.write_text(original.replace(mutation.old, mutation.new))
            try:
                code = run_tests(copy, mutation.tests)
            finally:
                path.write_text(original)
            if code not in (0, 1):
                raise SystemExit(f"mutation.py: error: {mutation.name}: pytest exited {code} (not a test failure)")
            caught += code == 1
            verdict = "caught" if code == 1 else "SURVIVED"
            print(
                f"{mutation.name:40s} {mutation.path:36s} {verdict:9s} {time.perf_counter() - start:6.1f} s", flush=True
            )
    survived = len(chosen) - caught
    print(f"RESULT mutation_score={caught / len(chosen):.3f} caught={caught} survived={survived}")


if __name__ == "__main__":
    main()
