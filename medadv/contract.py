"""The contract between jobs: every artifact path, tag and param that one job writes and another reads
(and the report package reads from run records; it imports nothing, so any layer may import it).

A job that logs one of these and a job (or test) that reads it import the same name from here, so a rename is
one edit and a typo is an ImportError, not a silently empty report.
"""

# --- artifacts -------------------------------------------------------------------------------------------------
ATTACK_RESULT = "attack_result.npz"  # attack: AttackResult (x, x_adv, labels, predictions, class names, clip range)
SAMPLES_TABLE = "samples.parquet"  # attack: one row per attacked sample (success, norms, ECG plausibility)
SUCCESS_MATRIX = "success_matrix.csv"  # targeted attack: source class x target class success counts
TRANSFER_TABLE = "transfer.csv"  # attack with transfer_to: one row per target model
TRANSFER_PROBABILITIES = "transfer_probabilities.npz"  # attack with transfer_to: each target's probabilities by id
PROGRESS = "progress"  # attack: per-batch results of an unfinished run, removed at the end
PERTURBATION_FIGURE = "figures/perturbations.png"  # attack: clean / adversarial / perturbation
ECG_OVERLAY_FIGURE = "figures/ecg_overlays.png"  # attack on ECGs: clean and adversarial records overlaid
HEATMAPS = "heatmaps.npz"  # gradcam: the maps of clean and adversarial inputs
HEATMAP_TABLE = "heatmaps.parquet"  # gradcam: one row per explained sample
OVERLAY_FIGURE = "figures/overlays.png"  # gradcam: maps over their inputs
PREDICTIONS = "predictions/test.json"  # train: the victim's test predictions
LEARNING_CURVES = "figures/learning_curves.png"  # train
CONFUSION_FIGURE = "figures/confusion_matrix.png"  # train
LOSS_DETAILS = "loss_details.npz"  # generator: what each generator loss was built from
REPORT = "report.html"  # evaluate and study: the report
STUDY_TABLE = "study_table.csv"  # study: one row per headline figure

# --- tags ------------------------------------------------------------------------------------------------------
STEP_TAG = "medadv.step"  # which entry point made the run: train, attack, gradcam, evaluate, ...
DATASET_TAG = "medadv.dataset"
FINGERPRINT_TAG = "medadv.data_fingerprint"  # a hash of the data the run read
MODEL_URI_TAG = "medadv.model_uri"  # the victim at its pinned version, models:/NAME/VERSION
MODEL_VERSION_TAG = "medadv.model_version"
MODEL_ALIAS_TAG = "medadv.model_alias"  # the alias the user gave, as it pointed when the run started
MODEL_RUN_TAG = "medadv.model_run_id"  # the run that trained the victim
REGISTERED_MODEL_TAG = "medadv.registered_model"  # train/robust: the model the run registered
ATTACK_TAG = "medadv.attack"
ATTACK_RUN_TAG = "medadv.attack_run_id"  # gradcam: the attack run it explains
ENGINE_TAG = "medadv.engine"
BATCH_SIZE_TAG = "medadv.batch_size"
SPLIT_TAG = "medadv.split"
SHARD_TAG = "medadv.shard"
TARGETED_TAG = "medadv.targeted"
CLASS_TAG = "medadv.class_index"  # generator: the class a nested generator run trains for
GENERATOR_LOSS_TAG = "medadv.generator_loss"
TRAINING_METHOD_TAG = "medadv.training_method"  # robust: fgsm, pgd, pgd_online, dgn_*
ROBUST_TRAINER_TAG = "medadv.robust_trainer"
EVALUATED_EXPERIMENT_TAG = "medadv.evaluated_experiment"  # evaluate: the experiment it reported on
WRITER_TAG = "medadv.writer"  # the process that holds the run (one writer per run)
CHECKSUM_TAG = "medadv.sha256."  # + an artifact path: the sha256 of that file as logged (set before its upload)

# --- params ----------------------------------------------------------------------------------------------------
MODEL_VERSION_PARAM = "model_version_uri"  # attack: the victim's pinned version; resume and evaluate read it
TRANSFER_VERSIONS_PARAM = "transfer_to_versions"  # attack: the transfer targets' pinned versions
