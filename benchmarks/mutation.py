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
    "tests/test_report_and_map_metrics_by_hand.py",
    "tests/test_ecg_metrics_by_hand.py",
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
            "cw_margin_and_success", "untargeted_margin_and_the_default_kappa",
            "binary_search_takes_c_at_1e9_as_no_upper_bound_yet", "evaluation_distances_on_a_hand_made_record",
            "binary_search_update_sequence",
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
ZERO_OVER_ZERO = "where the denominator is 0 the numerator is 0 too (maps are non-negative): 0 / 0 gives the same NaN"
NO_DIVIDE = "no nonzero is divided by 0 (maps are non-negative: a zero denominator has a zero numerator), no warning"
ASTYPE_NONE = "astype(None) converts to float64, the dtype asked for"
INT_COORDINATES = "integer or float64 coordinates times float64 weights give the same float64 products"
SORT_KIND = "numpy reads the sort kind case-insensitively"
CAST = "typing.cast returns its value unchanged, whatever the type it names"
FALSY = "None is as false as False where the flag is read"
CONSTANT_SHIFT = "a constant added to a sample's image is removed by the final min-max scaling of that sample"
FLOAT64_VALUES = "skimage returns float64 values: the array is float64 without the dtype too"
CHANNELS_UNREAD = "check_ssim_method reads only the first two sides of the shape, never the channel count"
ORIENT_CASE = "pandas reads orient case-insensitively"
INF_FORMAT = "format(value, '.4g') writes inf, -inf and nan as str() does"
TF_FLOAT32 = "tf.image.ssim converts float images to float32 itself, whatever their float dtype"
NAN_CASE = 'float() reads "NAN" and "INF" case-insensitively: the same NaN or inf'
SAME_PEAKS = "ecg_quality without rpeaks finds them by the same ecg_peaks on the same cleaned signal"
CLEAN_FLOAT64 = "ecg_clean returns float64 whatever the input's dtype: the same cleaned signal, peaks and quality"
SLICE_TO_END = "a slice ending at None or past the record's end stops at the record's end, as at its length"
TOO_SHORT_EITHER_WAY = "0 or 1 samples: neurokit2's filter refuses both with the same ValueError (padlen 18)"
ONE_BIN_BAND = "a band holding one bin centre k has its middle within half a bin of k: its nearest bin is k again"
TWO_AXES = "the tensor is 2-D here ((n, length) signals, (batch, classes) outputs): axis +1 is axis -1"
WINDOW_CAST = "the window is copied into the float32 padded array either way (device_filter casts to float64 itself)"
RECORD_CAST = "tf's + converts the numpy record to the shifted window's float32: the values asarray float32 gives"
SAME_STREAM = "Generator.integers(high) draws from [0, high) with the same stream as integers(0, high)"
ONE_ROW_PER_RECORD = "offsets is drawn with one row per record: the zip never sees unequal lengths"
INFERENCE_BY_DEFAULT = "a Keras model called with training None outside fit runs in inference mode, as with False"
DISPLAY_ONLY = "a tqdm progress-bar argument (description, unit, or the stream: stderr is tqdm's default): display only"
INDEX_REPLACED = "every caller replaces the concatenated index with its run_id column"
NO_SAMPLES_NAN = "where n is 0 wilson_interval gives the same (NaN, NaN)"
SAME_LENGTHS = "the zipped sequences always have one length (two columns of one table; one entry per shard)"
MULTI_KEY_SORT = "sorting on several columns pandas uses a stable lexsort and ignores kind"
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
    "medadv.metrics.heatmap.x__centre_of_mass__mutmut_14": ANY_NEGATIVE_LENGTH,
    "medadv.metrics.heatmap.x__centre_of_mass__mutmut_22": ANY_NEGATIVE_LENGTH,
    "medadv.metrics.heatmap.x_heatmap_table__mutmut_66": ANY_NEGATIVE_LENGTH,
    "medadv.metrics.heatmap.x_heatmap_table__mutmut_74": ANY_NEGATIVE_LENGTH,
    "medadv.metrics.heatmap.x__centre_of_mass__mutmut_16": ASTYPE_NONE,
    "medadv.metrics.heatmap.x_heatmap_table__mutmut_60": ASTYPE_NONE,
    "medadv.metrics.heatmap.x_heatmap_table__mutmut_68": ASTYPE_NONE,
    "medadv.metrics.similarity.x_ssim_per_sample__mutmut_76": ASTYPE_NONE,
    "medadv.metrics.similarity.x_ssim_per_sample__mutmut_77": ASTYPE_NONE,
    "medadv.metrics.heatmap.x__centre_of_mass__mutmut_7": INT_COORDINATES,
    "medadv.metrics.heatmap.x__centre_of_mass__mutmut_9": INT_COORDINATES,
    "medadv.metrics.heatmap.x__centre_of_mass__mutmut_31": NO_DIVIDE,
    "medadv.metrics.heatmap.x__centre_of_mass__mutmut_33": NO_DIVIDE,
    "medadv.metrics.heatmap.x__top_region_iou__mutmut_15": NO_DIVIDE,
    "medadv.metrics.heatmap.x__top_region_iou__mutmut_17": NO_DIVIDE,
    "medadv.metrics.heatmap.x__centre_of_mass__mutmut_44": ZERO_OVER_ZERO,
    "medadv.metrics.heatmap.x__top_region_iou__mutmut_28": ZERO_OVER_ZERO,
    "medadv.metrics.heatmap.x__dssim__mutmut_6": SAME_DEFAULT,
    "medadv.metrics.heatmap.x__top_region__mutmut_12": SAME_DEFAULT,
    "medadv.metrics.heatmap.x__top_region__mutmut_17": SORT_KIND,
    "medadv.metrics.heatmap.x_heatmap_table__mutmut_23": CAST,
    "medadv.metrics.heatmap.x_heatmap_table__mutmut_27": CAST,
    "medadv.metrics.heatmap.x_heatmap_table__mutmut_53": FALSY,
    "medadv.metrics.heatmap.x_overlay__mutmut_21": CONSTANT_SHIFT,
    "medadv.metrics.similarity.x_ssim_per_sample__mutmut_13": SAME_DEFAULT,
    "medadv.metrics.similarity.x_ssim_per_sample__mutmut_15": SAME_DEFAULT,
    "medadv.metrics.similarity.x_ssim_per_sample__mutmut_45": SAME_DEFAULT,
    "medadv.metrics.similarity.x_ssim_per_sample__mutmut_53": FLOAT64_VALUES,
    "medadv.metrics.similarity.x_ssim_per_sample__mutmut_55": FLOAT64_VALUES,
    "medadv.metrics.similarity.x_ssim_per_sample__mutmut_9": CHANNELS_UNREAD,
    "medadv.attacks.result.x__write_npz__mutmut_23": FALSY,
    "medadv.attacks.result.x_load_probabilities__mutmut_4": FALSY,
    "medadv.attacks.result.x_load_probabilities__mutmut_6": SAME_DEFAULT,
    "medadv.metrics.classification.x_classification_scores__mutmut_32": NAN_CASE,
    "medadv.metrics.classification.x_classification_scores__mutmut_53": SAME_DEFAULT,
    "medadv.metrics.transfer.x_targets_table__mutmut_16": ORIENT_CASE,
    "medadv.report.html.x__number__mutmut_2": INF_FORMAT,
    "medadv.metrics.similarity.x_ssim_per_sample__mutmut_30": TF_FLOAT32,
    "medadv.metrics.similarity.x_ssim_per_sample__mutmut_32": TF_FLOAT32,
    "medadv.metrics.similarity.x_ssim_per_sample__mutmut_34": TF_FLOAT32,
    "medadv.metrics.similarity.x_ssim_per_sample__mutmut_36": TF_FLOAT32,
    "medadv.report.html.x_table_html__mutmut_14": SAME_DEFAULT,
    "medadv.metrics.ecg_plausibility.x_rr_statistics__mutmut_14": NAN_CASE,
    "medadv.metrics.ecg_plausibility.x_rr_statistics__mutmut_36": NAN_CASE,
    "medadv.metrics.ecg_plausibility.x_rr_statistics__mutmut_48": NAN_CASE,
    "medadv.metrics.ecg_plausibility.x_plausibility_metrics__mutmut_29": NAN_CASE,
    "medadv.metrics.ecg_plausibility.x_plausibility_metrics__mutmut_42": NAN_CASE,
    "medadv.metrics.ecg_plausibility.x_plausibility_metrics__mutmut_53": NAN_CASE,
    "medadv.metrics.ecg_plausibility.x_perturbation_figures__mutmut_34": NAN_CASE,
    "medadv.metrics.ecg_plausibility.x_r_peaks__mutmut_41": NAN_CASE,
    "medadv.metrics.ecg_plausibility.x_r_peaks__mutmut_28": SAME_PEAKS,
    "medadv.metrics.ecg_plausibility.x_r_peaks__mutmut_32": SAME_PEAKS,
    "medadv.metrics.ecg_plausibility.x_r_peaks__mutmut_10": CLEAN_FLOAT64,
    "medadv.metrics.ecg_plausibility.x_r_peaks__mutmut_12": CLEAN_FLOAT64,
    "medadv.metrics.ecg_plausibility.x_plausibility_table__mutmut_18": SLICE_TO_END,
    "medadv.metrics.ecg_plausibility.x_plausibility_table__mutmut_24": SLICE_TO_END,
    "medadv.metrics.ecg_plausibility.x_plausibility_table__mutmut_29": TOO_SHORT_EITHER_WAY,
    "medadv.attacks.ecgadv.filters.x_fft_zeroed_bins__mutmut_22": ONE_BIN_BAND,
    "medadv.attacks.ecgadv.filters.x_circular_shift__mutmut_2": TWO_AXES,
    "medadv.attacks.ecgadv.universal.x_universal_evaluation__mutmut_64": TWO_AXES,
    "medadv.attacks.ecgadv.universal.x_universal_evaluation__mutmut_8": WINDOW_CAST,
    "medadv.attacks.ecgadv.universal.x_universal_evaluation__mutmut_10": WINDOW_CAST,
    "medadv.attacks.ecgadv.universal.x_universal_evaluation__mutmut_12": ANY_NEGATIVE_LENGTH,
    "medadv.attacks.ecgadv.universal.x_universal_evaluation__mutmut_15": RECORD_CAST,
    "medadv.attacks.ecgadv.universal.x_universal_evaluation__mutmut_17": RECORD_CAST,
    "medadv.attacks.ecgadv.universal.x_universal_evaluation__mutmut_53": SAME_STREAM,
    "medadv.attacks.ecgadv.universal.x_universal_evaluation__mutmut_73": ONE_ROW_PER_RECORD,
    "medadv.attacks.ecgadv.universal.x_universal_evaluation__mutmut_76": ONE_ROW_PER_RECORD,
    "medadv.attacks.ecgadv.universal.x_universal_evaluation__mutmut_77": ONE_ROW_PER_RECORD,
    "medadv.attacks.ecgadv.universal.x_universal_evaluation__mutmut_88": INFERENCE_BY_DEFAULT,
    "medadv.attacks.ecgadv.universal.x_universal_evaluation__mutmut_90": INFERENCE_BY_DEFAULT,
    "medadv.attacks.ecgadv.universal.x_universal_control__mutmut_8": FALSY,
    "medadv.attacks.ecgadv.universal.x_universal_table__mutmut_53": DISPLAY_ONLY,
    "medadv.attacks.ecgadv.universal.x_universal_table__mutmut_55": DISPLAY_ONLY,
    "medadv.attacks.ecgadv.universal.x_universal_table__mutmut_57": DISPLAY_ONLY,
    "medadv.attacks.ecgadv.universal.x_universal_table__mutmut_58": DISPLAY_ONLY,
    "medadv.attacks.ecgadv.universal.x_universal_table__mutmut_59": DISPLAY_ONLY,
    "medadv.attacks.ecgadv.universal.x_universal_table__mutmut_60": DISPLAY_ONLY,
    "medadv.attacks.ecgadv.universal.x_universal_table__mutmut_61": DISPLAY_ONLY,
    "medadv.attacks.ecgadv.universal.x_universal_table__mutmut_62": DISPLAY_ONLY,
    "medadv.attacks.ecgadv.universal.x_universal_table__mutmut_63": DISPLAY_ONLY,
    "medadv.attacks.ecgadv.universal.x_universal_table__mutmut_156": ORIENT_CASE,
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
    "medadv.report.tables.x_headline_table__mutmut_25": FALSY,
    "medadv.report.tables.x_heatmap_table__mutmut_54": FALSY,
    "medadv.report.tables.x_robustness_matrix__mutmut_6": FALSY,
    "medadv.report.tables.x_transfer_matrix__mutmut_6": FALSY,
    "medadv.report.tables.x_transfer_robustness_matrix__mutmut_5": FALSY,
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
