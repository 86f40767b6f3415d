"""How fast a step answers `--help` and refuses bad input, beside the imports a real run pays.

Each figure is the median wall time of a few whole processes (interpreter start-up included), as a user
waits for them: `python steps/<step>.py --help` for every step, and one refusal of each kind that needs no
model (unknown attack, data set and architecture, a number out of range, a malformed key=value option, a
missing data folder). Beside them: a bare `python -c pass`, and the imports of a full run
(`import medadv.jobs.main`, which pulls in every job, TensorFlow, Keras, ART and MLflow).
Goal: every help and refusal under 1.5 s. RESULT: help_s and refusal_s (the slowest median of each kind),
full_import_s, python_s, and start_share (the slowest of them / full_import_s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("train", "attack", "gradcam", "evaluate", "study", "main")
REFUSALS = {
    "unknown attack": ("attack", "--attack", "magic"),
    "unknown data set": ("attack", "--dataset", "imagenet"),
    "unknown architecture": ("train", "--arch", "transformer"),
    "out-of-range number": ("train", "--epochs", "0"),
    "malformed attack_params": ("attack", "--attack_params", "eps"),
    "unknown data_options key": ("attack", "--dataset", "pneumoniamnist", "--data_options", "size=x"),
    "missing data folder": ("train", "--data_dir", "/no/such/folder"),
}


def median_seconds(command: list[str], runs: int, expect: int) -> float:
    """Median wall seconds of `runs` whole processes of `command` (after one warm-up), each checked to exit `expect`."""
    seconds = []
    for attempt in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        if attempt:  # the first run warms the file cache
            seconds.append(time.perf_counter() - start)
        if done.returncode != expect:
            raise SystemExit(f"{' '.join(command)} exited {done.returncode}, not {expect}: {done.stderr[-500:]}")
    return statistics.median(seconds)


def step(name: str, *args: str) -> list[str]:
    return [sys.executable, str(REPO / "steps" / f"{name}.py"), *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs of each command instead of 5, fewer refusals")
    args = parser.parse_args()
    runs = 3 if args.quick else 5
    refusals = dict(list(REFUSALS.items())[:3]) if args.quick else REFUSALS
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; median of {runs} whole processes")

    python_s = median_seconds([sys.executable, "-c", "pass"], runs, 0)
    full_import_s = median_seconds([sys.executable, "-c", "import medadv.jobs.main"], runs, 0)
    help_s = {name: median_seconds(step(name, "--help"), runs, 0) for name in STEPS}
    refusal_s = {kind: median_seconds(step(*command), runs, 1) for kind, command in refusals.items()}

    print(f"{'command':<42} {'seconds':>8}")
    print(f"{'python -c pass':<42} {python_s:8.2f}")
    print(f"{'imports of a full run (medadv.jobs.main)':<42} {full_import_s:8.2f}")
    for name, seconds in help_s.items():
        print(f"{f'steps/{name}.py --help':<42} {seconds:8.2f}")
    for kind, seconds in refusal_s.items():
        print(f"{'refuses: ' + kind:<42} {seconds:8.2f}")
    slowest_help, slowest_refusal = max(help_s.values()), max(refusal_s.values())
    print(
        f"RESULT help_s={slowest_help:.2f} refusal_s={slowest_refusal:.2f} full_import_s={full_import_s:.2f} "
        f"python_s={python_s:.2f} start_share={max(slowest_help, slowest_refusal) / full_import_s:.3f}"
    )


if __name__ == "__main__":
    main()
