"""The share of an attack run's wall time spent in MLflow: artifacts, metrics, figures, progress files.

Two attack runs, each through the `attack` job exactly as a step runs it, once against a local SQLite store and
once against a local `mlflow server` (SQLite behind it, served artifacts, started on a free 127.0.0.1 port and
stopped with its workers):
  (a) PGD-20 (eps 0.05, L-inf) on the PneumoniaMNIST test set (624 images, ../shared/data/pneumoniamnist.npz),
      on a small CNN trained one epoch here (outside MLflow);
  (b) ECGadv Type I (l2) on 4 x 100 generated CinC-format records (100 per class, 5 s at 300 Hz, each attacked
      toward the 3 other classes), on an untrained tiny ECG ResNet, with a short budget (1 binary-search step
      of 20 iterations; the study's is 5 x 1000): a short budget makes logging's share larger, not smaller.
The job's MLflow calls and the code that makes what they log (the progress and result `.npz` files, the
figures) are timed from the inside: each is wrapped by a stopwatch, and only the outermost timed call counts.
The attack hands its uploads, their checksums and its metrics to a background thread
(`medadv.tracking.background`): the run's thread counts the time it waits for that thread ("waits"); the
thread's own work counts by its CPU time while the run's thread does not wait for it ("background CPU": its
waits on the store overlap the attack, its CPU time may not, as TensorFlow uses both cores). A short run of
each workload goes first, untimed, on each store: TensorFlow traces there, not in the timed runs, and the
experiment is made there, as for every run of a sweep but its first.
Goal: share <= 5%.
RESULT: <workload>_<store>_share for the four runs and worst_share.
"""

from __future__ import annotations  # noqa: I001  (medadv must come before keras: it picks the backend)

import argparse
import functools
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import medadv  # noqa: F401
import keras
import mlflow
import mlflow.tracking.fluent

import medadv.jobs.attack as attack_job
from medadv.attacks.result import AttackResult
from medadv.data import cinc2017, load_dataset
from medadv.models import build_model
from medadv.settings import AttackSettings
from medadv.tracking.background import BackgroundLog

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from mlflow_server import mlflow_server  # noqa: E402  (the tests' server, stopped with every worker)

PNEUMONIA = REPO.parent / "shared" / "data" / "pneumoniamnist.npz"
# What each timed call counts as; a call made inside another timed call is not counted again.
TIMED: dict[str, tuple[Any, tuple[str, ...]]] = {
    "run": (mlflow, ("start_run", "get_run", "log_params", "set_tag", "set_tags")),
    "metrics": (mlflow, ("log_metric", "log_metrics", "log_input")),
    "artifacts": (mlflow, ("log_artifact", "log_artifacts")),
    "figures": (BackgroundLog, ("figure",)),
    "waits": (BackgroundLog, ("artifact", "metrics", "close")),  # close: once `wait` has returned
}
TIMED_JOB = {
    "run": ("connect",),
    "metrics": ("log_dataset",),
    "artifacts": ("_download_progress", "_delete_progress"),
    "figures": ("perturbation_figure", "ecg_overlay_figure"),
}
KINDS = ("run", "metrics", "artifacts", "npz writes", "figures", "waits", "background CPU")


class Stopwatch:
    """Seconds spent in the wrapped calls, by kind; nested timed calls count once, in the outermost (per thread)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._thread = threading.local()

    def wrap(
        self, kind: str, function: Callable[..., Any], clock: Callable[[], float] = time.perf_counter
    ) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self._thread, "depth", 0)
            self._thread.depth = depth + 1
            start = clock()
            try:
                return function(*args, **kwargs)
            finally:
                self._thread.depth = depth
                if depth == 0:
                    self.seconds[kind] += clock() - start

        return timed


def background_cpu(log: BackgroundLog) -> float:
    """CPU seconds the background log's thread has used so far."""
    return time.clock_gettime(time.pthread_getcpuclockid(log._thread.ident or 0))


@contextmanager
def timing(stopwatch: Stopwatch) -> Iterator[None]:
    """Every call in TIMED and TIMED_JOB, the runs' end and the result files' writes timed by `stopwatch`; every
    task of the background log by its thread's CPU time, less what it used while the run's thread waited."""
    targets = [(module, name, kind) for kind, (module, names) in TIMED.items() for name in names]
    targets += [(attack_job, name, kind) for kind, names in TIMED_JOB.items() for name in names]
    targets += [(mlflow.tracking.fluent, "end_run", "run"), (AttackResult, "save", "npz writes")]
    originals = [(module, name, getattr(module, name)) for module, name, _ in targets]
    for module, name, kind in targets:
        setattr(module, name, stopwatch.wrap(kind, getattr(module, name)))
    put, wait = BackgroundLog._put, BackgroundLog.wait

    def waited(log: BackgroundLog) -> None:
        began, cpu = time.perf_counter(), background_cpu(log)
        try:
            wait(log)
        finally:
            stopwatch.seconds["waits"] += time.perf_counter() - began
            stopwatch.seconds["background CPU"] -= background_cpu(log) - cpu

    BackgroundLog._put = lambda log, task: put(log, stopwatch.wrap("background CPU", task, time.thread_time))  # type: ignore[method-assign]
    BackgroundLog.wait = waited  # type: ignore[method-assign]
    try:
        yield
    finally:
        BackgroundLog._put, BackgroundLog.wait = put, wait  # type: ignore[method-assign]
        for module, name, original in originals:
            setattr(module, name, original)


def pneumonia_workload(folder: Path, quick: bool) -> tuple[AttackSettings, AttackSettings]:
    """PGD-20 on the PneumoniaMNIST test set (the first 128 images with --quick) against a 1-epoch small CNN;
    and its warm-up, a full batch and the last, shorter one (their shapes are traced once)."""
    train = load_dataset("pneumoniamnist", PNEUMONIA, "train")
    keras.utils.set_random_seed(0)
    model = build_model("small_cnn", train.input_shape, train.num_classes)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(train.x, train.y, epochs=1, batch_size=128, verbose=0)
    model.save(folder / "pneumonia.keras")
    settings = AttackSettings(
        model=str(folder / "pneumonia.keras"), dataset="pneumoniamnist", data_dir=str(PNEUMONIA), split="test",
        attack="pgd", attack_params="eps=0.05,eps_step=0.01,max_iter=20", selection="all", batch_size=128,
        num_samples=128 if quick else 0,
    )  # fmt: skip
    return settings, replace(settings, num_samples=128 if quick else 128 + 624 % 128)


def ecg_workload(folder: Path, quick: bool) -> tuple[AttackSettings, AttackSettings]:
    """ECGadv Type I on 4 x 100 generated records (4 x 10 with --quick), each toward the 3 other classes;
    and its warm-up, 4 x 6 records (the attack streams them through 64 lanes, so one shape)."""
    per_class = 10 if quick else 100
    cinc2017.write_synthetic(folder / "cinc", per_class=per_class, min_seconds=4, max_seconds=6)
    length = 1500
    keras.utils.set_random_seed(0)
    model = build_model("ecg_resnet", (length, 1), 4, num_blocks=2, base_filters=8)
    model.save(folder / "ecg.keras")
    settings = AttackSettings(
        model=str(folder / "ecg.keras"), dataset="cinc2017", data_dir=str(folder / "cinc"), split="all",
        data_options=f"length={length}", attack="ecgadv_type1",
        attack_params="metric=l2,max_iterations=20,binary_search_steps=1,initial_const=10",
        per_class=",".join([str(per_class)] * 4), selection="all", batch_size=64,
    )  # fmt: skip
    return settings, replace(settings, per_class="6,6,6,6")


def measured(settings: AttackSettings, uri: str) -> tuple[float, dict[str, float]]:
    """(wall seconds, MLflow seconds by kind) of one attack run."""
    stopwatch = Stopwatch()
    with timing(stopwatch):
        start = time.perf_counter()
        attack_job.attack(settings, uri, "logging-cost")
        wall = time.perf_counter() - start
    return wall, dict(stopwatch.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 images, 4 x 10 records (not 624 and 4 x 100)")
    args = parser.parse_args()
    if not PNEUMONIA.exists():
        raise SystemExit(f"needs the real PneumoniaMNIST test set at {PNEUMONIA}")
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="medadv-logging-cost-") as folder:
        root = Path(folder)
        workloads = {"pneumonia_pgd20": pneumonia_workload(root, args.quick), "ecgadv": ecg_workload(root, args.quick)}
        (root / "server").mkdir()
        with mlflow_server(root / "server") as server_uri:
            stores = {"sqlite": f"sqlite:///{root / 'store.db'}", "server": server_uri}
            for workload, (settings, warm_up) in workloads.items():
                # Untimed: TensorFlow traces the attack's loops here, not in the timed runs, and each store makes
                # the experiment, as for every run of a sweep but its first.
                for uri in stores.values():
                    attack_job.attack(warm_up, uri, "logging-cost")
                for store, uri in stores.items():
                    wall, seconds = measured(settings, uri)
                    rows.append((workload, store, wall, seconds))

    header = f"{'workload':<17} {'store':<7} {'wall s':>7} {'MLflow s':>9} {'share':>6}  "
    print(header + " ".join(f"{kind + ' s':>12}" for kind in KINDS))
    result = {}
    for workload, store, wall, seconds in rows:
        total = sum(seconds.values())
        result[f"{workload}_{store}_share"] = total / wall
        by_kind = " ".join(f"{seconds.get(kind, 0.0):12.2f}" for kind in KINDS)
        print(f"{workload:<17} {store:<7} {wall:7.1f} {total:9.2f} {total / wall:6.1%}  {by_kind}")
    shares = " ".join(f"{name}={value:.4f}" for name, value in result.items())
    print(f"RESULT {shares} worst_share={max(result.values()):.4f}")


if __name__ == "__main__":
    main()
