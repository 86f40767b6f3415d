"""A fast start: `--help` and bad input answer before TensorFlow or MLflow is imported; every flag says what it
means; TensorFlow's start-up lines stay hidden unless `--verbose` asks for them.

What a step imports is read from `sys.modules` in a fresh interpreter, never from timings (benchmarks/startup.py
times it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from mlflow_server import REPO, run_step

from medadv import settings
from medadv.attacks import ATTACKS
from medadv.data import DATASETS
from medadv.models import ARCHITECTURES

sys.path.insert(0, str(REPO / "steps"))
from _flags import parser_for

HEAVY = ("tensorflow", "keras", "mlflow", "art")
SETTINGS = {
    "train.py": settings.TrainSettings,
    "attack.py": settings.AttackSettings,
    "gradcam.py": settings.GradcamSettings,
    "evaluate.py": settings.EvaluateSettings,
    "study.py": settings.StudySettings,
    "main.py": settings.MainSettings,
}
# Run a step script as `python steps/NAME.py ARGS` would, then report its exit code and every module it loaded.
PROBE = """
import json, runpy, sys
script, *args = sys.argv[1:]
sys.path.insert(0, str(__import__("pathlib").Path(script).parent))
sys.argv = [script, *args]
try:
    runpy.run_path(script, run_name="__main__")
    code = 0
except SystemExit as stop:  # as the interpreter would: a text is printed on stderr and exits with 1
    code = stop.code if isinstance(stop.code, int) else 1
    if isinstance(stop.code, str):
        print(stop.code, file=sys.stderr)
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.__stdout__)
"""


def _probe(script: str, *args: str, cwd: Path) -> tuple[dict[str, object], str]:
    """The step's exit code and the heavy packages it imported, and its stderr."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "steps" / script), *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    return {"code": outcome["code"], "loaded": [name for name in HEAVY if name in outcome["modules"]]}, done.stderr


@pytest.mark.parametrize("script", sorted(SETTINGS))
def test_help_imports_neither_tensorflow_nor_mlflow(script: str, tmp_path: Path) -> None:
    outcome, _ = _probe(script, "--help", cwd=tmp_path)
    assert outcome == {"code": 0, "loaded": []}


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("attack.py", ("--attack", "magic"), "unknown attack 'magic'; choose one of fgsm, bim, pgd"),
        ("attack.py", ("--dataset", "imagenet"), "unknown data set 'imagenet'"),
        ("attack.py", ("--attack_params", "eps"), "attack_params: 'eps' is not key=value"),
        ("attack.py", ("--num_samples", "-1"), "num_samples must be >= 0, got -1"),
        ("train.py", ("--arch", "transformer"), "unknown architecture 'transformer'"),
        ("train.py", ("--data_dir", "/no/such/folder"), "/no/such/folder: data folder for cinc2017 not found"),
        ("train.py", ("--data_options", "length=abc"), "data_options option length: cannot read 'abc' as int"),
        ("train.py", ("--arch_options", "depth"), "arch_options: 'depth' is not key=value"),
        ("gradcam.py", ("--iou_top_percent", "0"), "iou_top_percent must be in [1e-06, 100]"),
        ("study.py", ("--name", "nope"), "unknown study 'nope'"),
        ("main.py", ("--records", "0"), "records must be >= 1"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_the_heavy_imports(
    script: str, args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    outcome, stderr = _probe(script, *args, cwd=tmp_path)
    assert outcome == {"code": 1, "loaded": []}
    [line] = stderr.strip().splitlines()
    assert line.startswith("medadv: error: ") and message in line


def test_every_flag_of_every_entry_point_says_what_it_means_and_its_default() -> None:
    for script, settings_class in SETTINGS.items():
        parser = parser_for(settings_class, None)
        flags = [action for action in parser._actions if action.option_strings != ["-h", "--help"]]
        assert {action.dest for action in flags} >= {field.name for field in fields(settings_class)}
        unexplained = [action.dest for action in flags if not (action.help or "").strip()]
        assert unexplained == [], f"{script}: flags without help: {unexplained}"
        assert "(default: candidate)" in parser_for(settings.TrainSettings, None).format_help()


def test_the_light_name_lists_agree_with_the_registries() -> None:
    assert sorted(settings.ATTACK_NAMES) == sorted(ATTACKS)
    assert sorted(settings.ARCHITECTURE_NAMES) == sorted(ARCHITECTURES)
    assert "pneumoniamnist" in DATASETS  # the data sets' registry is light itself: checked by name directly


# Lines TensorFlow's C++ side and absl print while TensorFlow starts and runs (oneDNN, CPU features, CUDA, tf.data).
NOISE = ("oneDNN custom operations", "absl::InitializeLog", "cpu_feature_guard", "cuda", "NodeDef")


def _noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(marker.lower() in line.lower() for marker in NOISE)]


def test_tensorflow_start_up_lines_show_only_with_verbose(tmp_path: Path) -> None:
    tiny = (
        "--dataset", "mnist", "--arch", "mnist_dense", "--epochs", "1", "--batch_size", "64",
        "--model_name", "startup-quiet",
    )  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    quiet = run_step("train.py", *tiny, tracking_uri=uri, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert _noise(quiet.stderr) == []
    verbose = run_step("train.py", *tiny, "--verbose", tracking_uri=uri, cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert _noise(verbose.stderr) != []
