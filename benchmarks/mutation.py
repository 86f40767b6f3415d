"""Mutation score of the code that computes reported numbers, measured with mutmut: does a one-line bug, the kind
a refactor introduces, fail a fast unit test?

mutmut 3 (`pip install -e .[bench]`) rewrites every function of `MUTATED` into its mutants, runs the fast tests
once in-process to learn which tests reach which function, then forks once per mutant and runs only those tests
(TensorFlow is imported once). A child forked after TensorFlow ran an op on its thread pools waits on them forever
(6 of 6 children here), and one that runs a `tf.function` (Keras's predict) waits on the pool that runs graphs (4
of 4), so the copy's tests run `tf.function`s eagerly and TensorFlow's pools at one thread (`TF_NUM_INTRAOP_THREADS`,
`TF_NUM_INTEROP_THREADS`: 0 of 4 hang; one thread also suits one child per core), and tqdm's lock is a thread lock,
not a semaphore the children share (`FORK_SAFE`); a child that still times out counts as a survivor, not as killed.
It runs in a copy of the repository, `COPY`, with a `[tool.mutmut]` section written from the constants below, so
the working tree gets no `mutants/` folder.

    python benchmarks/mutation.py                  # every mutant: about 25 minutes on 2 shared cores
    python benchmarks/mutation.py --only interval  # the functions whose mutant names contain "interval"
    python benchmarks/mutation.py --report-only    # the table and score of the last run, from COPY

Prints the survivors (with their diffs) and `RESULT mutation_score=<killed / (all - equivalent)> killed=<n>
survived=<n> equivalent=<n>`; a survivor listed in `EQUIVALENT` counts as equivalent, not as survived.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPY = Path(tempfile.gettempdir()) / "medadv-mutation"
ALL = ("*",)

# The mutated files and, where a file also holds code that computes no reported number (the attack loop, plotting),
# the functions of it that do. Methods are `Class.method`.
MUTATED: dict[str, tuple[str, ...]] = {
    "medadv/metrics/attack.py": ALL,
    "medadv/metrics/classification.py": ("classification_scores", "prediction_table"),
    "medadv/metrics/ecg_plausibility.py": ALL,
    "medadv/metrics/heatmap.py": ALL,
    "medadv/metrics/interval.py": ALL,
    "medadv/metrics/similarity.py": ALL,
    "medadv/metrics/transfer.py": ALL,
    "medadv/attacks/result.py": ALL,
    "medadv/attacks/ecgadv/filters.py": ALL,
    "medadv/attacks/ecgadv/distances.py": ALL,
    "medadv/attacks/ecgadv/lanes.py": ("selection_masks",),
    "medadv/attacks/ecgadv/type1.py": ("record_lengths",),
    "medadv/attacks/ecgadv/type2.py": ("power_in_range",),
    "medadv/attacks/ecgadv/universal.py": (
        "universal_records", "universal_evaluation", "universal_control", "UniversalEvaluation.shares",
        "universal_table", "_pair_row",
    ),
    "medadv/attacks/carlini.py": ("cw_margin", "targeted_success", "binary_search_update"),
    "medadv/report/records.py": ("number", "shard_of", "newest_shards", "join_shards", "short_model", "model_label"),
    "medadv/report/tables.py": ALL,
    "medadv/report/html.py": ("shown", "_number", "table_html", "_section_html", "render_report", "Section.is_empty"),
}  # fmt: skip

# The fast unit tests (no tracking server, no trained victim): seconds, not minutes, for the whole selection.
FAST_TESTS = (
    "tests/test_metrics.py",
    "tests/test_metrics_by_hand.py",
    "tests/test_figures_by_hand.py",
    "tests/test_report_tables_by_hand.py",
    *(
        f"tests/test_report.py::test_{name}"
        for name in (
            "of_two_runs_of_one_shard_the_newer_counts_and_the_older_is_listed_as_superseded",
            "a_shard_without_its_result_is_listed_and_ids_seen_twice_count_once",
            "merged_shards_are_scored_on_their_transfer_targets_from_the_probabilities_they_saved",
            "a_shard_that_saved_no_probabilities_leaves_its_targets_out_and_is_listed",
            "transfer_probabilities_round_trip_by_uri_and_join_by_first_occurrence",
            "transfer_and_robustness_matrices_from_logged_tables",
            "headline_table_shows_rates_with_their_wilson_intervals",
            "results_carry_class_names_and_clip_range_through_save_and_join",
        )
    ),
    "tests/test_report.py::test_tables_escape_text_format_numbers_and_mark_missing_values",
    "tests/test_report.py::test_report_is_self_contained_with_every_figure_embedded_as_a_png",
    "tests/test_report.py::test_model_uris_are_shortened_for_legends_and_cells",
    *(
        f"tests/test_explain.py::test_{name}"
        for name in (
            "identical_maps_score_as_unchanged", "disjoint_blocks_have_no_overlap_and_a_known_shift",
            "centre_of_mass_shift_of_a_moved_block", "pearson_and_spearman_of_a_monotone_but_curved_map",
            "constant_maps_give_hand_computed_dssim_and_undefined_correlations",
            "summary_names_and_population_std", "overlay_follows_the_keras_example_recipe",
            "overlay_dssim_mixes_in_the_input_change", "dssim_takes_the_studys_tf_ssim_by_default",
            "bad_heatmaps_raise_one_line",
        )
    ),
    *(
        f"tests/test_ecg_plausibility.py::test_{name}"
        for name in (
            "known_beats_are_found_exactly_and_the_heart_rate_is_exact",
            "a_spike_is_flagged_and_a_small_smooth_perturbation_is_not",
            "records_without_beats_are_read_in_model_units_and_never_claimed_unchanged",
            "linear_defenses_pass_the_ecg_band_and_bad_defenses_fail",
        )
    ),
    *(
        f"tests/test_ecgadv.py::test_{name}"
        for name in (
            "zscore_uses_population_statistics_and_an_optional_mask",
            "smoothness_is_the_variance_of_the_zero_padded_first_difference", "type1_distance_per_metric",
            "cw_margin_and_success", "evaluation_distances_on_a_hand_made_record", "binary_search_update_sequence",
            "selection_rules", "record_lengths_find_the_zero_padding", "fft_zeroed_bins",
            "fft_zeroed_bins_reject_bands_above_nyquist", "parse_bands",
            "fft_filter_zeroes_exactly_those_bins_and_commutes_with_shifts",
            "type2_filters_each_shifted_copy_with_the_studys_16384_point_transform",
            "circular_shift_and_offset_range", "device_filter_removes_mains_and_baseline_and_keeps_the_ecg_band",
            "universal_evaluation_counts_on_a_hand_built_case", "universal_table_by_hand",
            "universal_records_keep_long_records_of_the_source_class",
        )
    ),
)  # fmt: skip

# Survivors that cannot change any output, each with the reason (mutant names as `mutmut results` prints them).
# Why a survivor is equivalent (a mutation that cannot change any output).
WARNING_ONLY = "a warning switched on or off, the values unchanged"
SAME_DEFAULT = "the default of the argument removed or set to None is the same value"
ANY_NEGATIVE_LENGTH = "reshape infers a length from any negative number, -2 as -1"
FLOAT64_ANYWAY = "the other operand is float64, so the difference is computed in float64 anyway"
LFILTER_FLOAT64 = "lfilter computes in the float64 of the filter coefficients whatever the input's dtype"
CASE_INSENSITIVE = "scipy reads btype case-insensitively"
BROADCAST = "a grey (..., 1) image broadcasts over the 3 colour channels just as broadcast_to does"
ZERO_NUMERATOR = "where high == low the numerator is 0 too: 0 / 1 = 0 / 2"
NEVER_CONSTANT = "a blend is never constant (jet has no grey), so high > low and high >= low agree"
SAME_MEAN = "the loop then recomputes dssim_mean as the same mean"
UNREACHABLE_EMPTY = "an empty result fails in perturbation_norms before: len(result) is never 0 here"
SAME_NAN = "where attempts is 0, hits is 0 too: 0 / 0 gives the same NaN"
INDEX_REPLACED = "every caller replaces the concatenated index with its run_id column"
NO_SAMPLES_NAN = "where n is 0 wilson_interval gives the same (NaN, NaN)"
SAME_LENGTHS = "the zipped sequences always have one length (two columns of one table; one entry per shard)"
MULTI_KEY_SORT = "sorting on several columns pandas uses a stable lexsort and ignores kind"
FALSY_NONE = "None is read as false, like the False it replaces (no categorical keys here)"
ALL_NUMERIC = "every column but the group keys is a logged metric, a number"

EQUIVALENT: dict[str, str] = {
    "medadv.metrics.attack.x_psnr__mutmut_5": WARNING_ONLY,
    "medadv.metrics.attack.x_success_matrix__mutmut_23": WARNING_ONLY,
    "medadv.metrics.attack.x_success_matrix__mutmut_24": WARNING_ONLY,
    "medadv.metrics.attack.x_success_matrix__mutmut_25": WARNING_ONLY,
    "medadv.metrics.attack.x_success_matrix__mutmut_26": WARNING_ONLY,
    "medadv.metrics.attack.x__mean__mutmut_2": WARNING_ONLY,
    "medadv.metrics.attack.x_summarize__mutmut_48": UNREACHABLE_EMPTY,
    "medadv.metrics.attack.x_summarize__mutmut_61": UNREACHABLE_EMPTY,
    "medadv.metrics.attack.x_perturbation_norms__mutmut_14": SAME_DEFAULT,
    "medadv.metrics.attack.x_perturbation_norms__mutmut_30": SAME_DEFAULT,
    "medadv.metrics.attack.x_perturbation_norms__mutmut_32": SAME_DEFAULT,
    "medadv.metrics.attack.x_psnr__mutmut_23": SAME_DEFAULT,
    "medadv.metrics.attack.x_psnr__mutmut_25": SAME_DEFAULT,
    "medadv.attacks.ecgadv.filters.x_device_filter__mutmut_15": SAME_DEFAULT,
    "medadv.attacks.result.xǁAttackResultǁload__mutmut_2": SAME_DEFAULT,
    "medadv.attacks.result.xǁAttackResultǁload__mutmut_4": SAME_DEFAULT,
    "medadv.metrics.attack.x_perturbation_norms__mutmut_11": ANY_NEGATIVE_LENGTH,
    "medadv.attacks.ecgadv.distances.x_evaluation_distances__mutmut_16": ANY_NEGATIVE_LENGTH,
    "medadv.attacks.ecgadv.type1.x_record_lengths__mutmut_8": ANY_NEGATIVE_LENGTH,
    "medadv.attacks.ecgadv.distances.x_evaluation_distances__mutmut_8": FLOAT64_ANYWAY,
    "medadv.attacks.ecgadv.distances.x_evaluation_distances__mutmut_10": FLOAT64_ANYWAY,
    "medadv.attacks.ecgadv.distances.x_evaluation_distances__mutmut_12": FLOAT64_ANYWAY,
    "medadv.attacks.ecgadv.distances.x_evaluation_distances__mutmut_14": FLOAT64_ANYWAY,
    "medadv.attacks.ecgadv.filters.x_device_filter__mutmut_3": LFILTER_FLOAT64,
    "medadv.attacks.ecgadv.filters.x_device_filter__mutmut_5": LFILTER_FLOAT64,
    "medadv.attacks.ecgadv.filters.x_device_filter_stages__mutmut_23": CASE_INSENSITIVE,
    "medadv.metrics.heatmap.x_overlay__mutmut_32": BROADCAST,
    "medadv.metrics.heatmap.x_overlay__mutmut_33": BROADCAST,
    "medadv.metrics.heatmap.x_overlay__mutmut_41": BROADCAST,
    "medadv.metrics.heatmap.x_overlay__mutmut_42": BROADCAST,
    "medadv.metrics.heatmap.x_overlay__mutmut_43": BROADCAST,
    "medadv.metrics.heatmap.x_overlay__mutmut_44": BROADCAST,
    "medadv.metrics.heatmap.x_overlay__mutmut_30": ZERO_NUMERATOR,
    "medadv.metrics.heatmap.x_overlay__mutmut_74": ZERO_NUMERATOR,
    "medadv.metrics.heatmap.x_overlay__mutmut_72": NEVER_CONSTANT,
    "medadv.metrics.heatmap.x_heatmap_summary__mutmut_23": SAME_MEAN,
    "medadv.metrics.heatmap.x_heatmap_summary__mutmut_24": SAME_MEAN,
    "medadv.metrics.attack.x_success_matrix__mutmut_38": SAME_NAN,
    "medadv.report.tables.x__concat__mutmut_5": INDEX_REPLACED,
    "medadv.report.tables.x__concat__mutmut_7": INDEX_REPLACED,
    "medadv.report.tables.x__concat__mutmut_8": INDEX_REPLACED,
    "medadv.report.tables.x__interval__mutmut_6": NO_SAMPLES_NAN,
    "medadv.report.tables.x_attack_table__mutmut_16": SAME_LENGTHS,
    "medadv.report.tables.x_attack_table__mutmut_19": SAME_LENGTHS,
    "medadv.report.tables.x_attack_table__mutmut_22": SAME_LENGTHS,
    "medadv.report.tables.x_merged_transfer__mutmut_9": SAME_LENGTHS,
    "medadv.report.tables.x_merged_transfer__mutmut_12": SAME_LENGTHS,
    "medadv.report.tables.x_merged_transfer__mutmut_13": SAME_LENGTHS,
    "medadv.report.tables.x_attack_table__mutmut_34": MULTI_KEY_SORT,
    "medadv.report.tables.x_attack_table__mutmut_36": MULTI_KEY_SORT,
    "medadv.report.tables.x_attack_table__mutmut_45": MULTI_KEY_SORT,
    "medadv.report.tables.x_attack_table__mutmut_46": MULTI_KEY_SORT,
    "medadv.report.tables.x_metrics_table__mutmut_33": MULTI_KEY_SORT,
    "medadv.report.tables.x_metrics_table__mutmut_35": MULTI_KEY_SORT,
    "medadv.report.tables.x_metrics_table__mutmut_47": MULTI_KEY_SORT,
    "medadv.report.tables.x_metrics_table__mutmut_48": MULTI_KEY_SORT,
    "medadv.report.tables.x_headline_table__mutmut_25": FALSY_NONE,
    "medadv.report.tables.x_heatmap_table__mutmut_54": FALSY_NONE,
    "medadv.report.tables.x_robustness_matrix__mutmut_6": FALSY_NONE,
    "medadv.report.tables.x_transfer_matrix__mutmut_6": FALSY_NONE,
    "medadv.report.tables.x_transfer_robustness_matrix__mutmut_5": FALSY_NONE,
    "medadv.report.tables.x_heatmap_table__mutmut_58": SAME_DEFAULT,
    "medadv.report.tables.x_robustness_matrix__mutmut_10": SAME_DEFAULT,
    "medadv.report.tables.x_transfer_matrix__mutmut_10": SAME_DEFAULT,
    "medadv.report.tables.x_transfer_robustness_matrix__mutmut_9": SAME_DEFAULT,
    "medadv.report.tables.x_heatmap_table__mutmut_67": ALL_NUMERIC,
}


def mutant_patterns(only: list[str] | None) -> list[str]:
    """mutmut's names of the chosen functions' mutants: `module.x_function__mutmut_N`, `module.xǁClassǁmethod__...`."""
    patterns = []
    for path, functions in MUTATED.items():
        module = path.removesuffix(".py").replace("/", ".")
        for function in functions:
            owner, _, method = function.rpartition(".")
            mangled = f"xǁ{owner}ǁ{method}" if owner else f"x_{function}"
            patterns.append(f"{module}.{'*' if function == '*' else mangled + '__mutmut_*'}")
    return [pattern for pattern in patterns if any(text in pattern for text in only)] if only else patterns


def mutmut_config() -> str:
    """The `[tool.mutmut]` section the temporary copy runs under."""
    settings = {
        "source_paths": ["medadv/"],
        "only_mutate": list(MUTATED),
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-o", "addopts=", "-q"],
        "pytest_add_cli_args_test_selection": list(FAST_TESTS),
        "timeout_multiplier": 10.0,  # the machine is shared: a slow test is not a hung one
        "timeout_constant": 15.0,
    }
    return "[tool.mutmut]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())


# Appended to the copy's tests/conftest.py, so the forked children never wait on what they did not inherit: graphs run
# eagerly (a tf.function waits on a pool thread the fork did not copy); tqdm's default lock, a semaphore every child
# shares, becomes each child's own thread lock (a child timed out while holding it would stall every later one).
FORK_SAFE = """

import threading

import tensorflow as tf
import tqdm

tf.config.run_functions_eagerly(True)  # benchmarks/mutation.py
tqdm.tqdm.set_lock(threading.RLock())
"""


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
    pyproject = destination / "pyproject.toml"
    text = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", pyproject.read_text())
    pyproject.write_text(f"{text.rstrip()}\n\n{mutmut_config()}")
    with (destination / "tests" / "conftest.py").open("a") as conftest:
        conftest.write(FORK_SAFE)


def mutmut(copy: Path, *args: str, log: Path | None = None) -> str:
    command = [sys.executable, "-m", "mutmut", *args]
    if log is None:
        return subprocess.run(command, cwd=copy, check=True, capture_output=True, text=True).stdout
    env = os.environ | {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}  # forked children do not hang
    with log.open("w") as out:
        code = subprocess.run(command, cwd=copy, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"mutation.py: error: mutmut exited {code}; its output: {log}")
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="mutate only the functions whose names contain this text")
    parser.add_argument("--children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--report-only", action="store_true", help="report the last run's results, run nothing")
    args = parser.parse_args()
    patterns = mutant_patterns(args.only)
    if not patterns:
        raise SystemExit(f"mutation.py: error: no mutated function's name contains {args.only!r}")
    start = time.perf_counter()
    if not args.report_only:
        shutil.rmtree(COPY, ignore_errors=True)
        copy_repo(COPY)
        mutmut(COPY, "run", "--max-children", str(args.children), *patterns, log=COPY / "mutmut.log")
    statuses = {}
    for line in mutmut(COPY, "results", "--all", "true").splitlines():
        name, _, status = line.strip().rpartition(": ")
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            statuses[name] = status
    survivors = sorted(name for name, status in statuses.items() if status != "killed")
    print(f"{'survivor':70s} status     equivalent because")
    for name in survivors:
        print(f"{name:70s} {statuses[name]:10s} {EQUIVALENT.get(name, '-')}")
        if name not in EQUIVALENT:
            print("\n".join(f"    {line}" for line in mutmut(COPY, "show", name).splitlines()[3:]))
    equivalent = sum(name in EQUIVALENT for name in survivors)
    killed = len(statuses) - len(survivors)
    survived = len(survivors) - equivalent
    score = killed / max(len(statuses) - equivalent, 1)
    print(f"{len(statuses)} mutants in {time.perf_counter() - start:.0f} s (a timeout counts as a survivor)")
    print(f"RESULT mutation_score={score:.3f} killed={killed} survived={survived} equivalent={equivalent}")


if __name__ == "__main__":
    main()
