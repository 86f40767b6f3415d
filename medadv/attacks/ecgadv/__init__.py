"""ECGadv (Chen et al., "ECGadv: Generating adversarial electrocardiogram to misguide arrhythmia
classification system", AAAI 2020): targeted attacks on single-lead ECG classifiers.

Type I (cloud deployment, `type1`) edits the recording: Carlini & Wagner's targeted optimisation of
`c * f + D`, the distance D the L2 norm, the paper's smoothness metric (eq. 4) or both (`distances`).
Type II (local deployment, `type2`) learns a short window of signal that fools the model wherever it
lands, with the bands an ECG front end filters out removed (`filters`); `universal` evaluates the
windows it found on every record of their source class. Both types run the one batched loop of
`lanes.ECGadvAttack` and differ in a few hooks.
"""

from medadv.attacks.ecgadv.distances import METRICS, evaluation_distances, smoothness, type1_distance, zscore
from medadv.attacks.ecgadv.lanes import ECGadvAttack, ECGadvConfig, Iterate, selection_masks
from medadv.attacks.ecgadv.type1 import ECGadvTypeI, ECGadvTypeIConfig, record_lengths, type1_label
from medadv.attacks.ecgadv.type2 import FFT_FORMS, ECGadvTypeII, ECGadvTypeIIConfig, power_in_range, type2_label
from medadv.attacks.ecgadv.universal import (
    UNIVERSAL_RECORDS,
    UniversalEvaluation,
    check_universal_settings,
    universal_control,
    universal_evaluation,
    universal_extras,
    universal_records,
    universal_table,
)

__all__ = [
    "FFT_FORMS",
    "METRICS",
    "UNIVERSAL_RECORDS",
    "ECGadvAttack",
    "ECGadvConfig",
    "ECGadvTypeI",
    "ECGadvTypeIConfig",
    "ECGadvTypeII",
    "ECGadvTypeIIConfig",
    "Iterate",
    "UniversalEvaluation",
    "check_universal_settings",
    "evaluation_distances",
    "power_in_range",
    "record_lengths",
    "selection_masks",
    "smoothness",
    "type1_distance",
    "type1_label",
    "type2_label",
    "universal_control",
    "universal_evaluation",
    "universal_extras",
    "universal_records",
    "universal_table",
    "zscore",
]
