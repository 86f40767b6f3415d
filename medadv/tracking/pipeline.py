"""The `main` entry point: the end-to-end demo, each step run in-process and reused when already done."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import mlflow

from medadv.tracking.runs import connect, find_finished_run, start_step_run
from medadv.tracking.train_job import TrainSettings, train


@dataclass(frozen=True, kw_only=True)
class MainSettings:
    """The demo's size knobs: the defaults finish in minutes on 2 CPU cores with generated data."""

    ecg_length: int = 3000  # samples per record at 300 Hz (the study uses 9000)
    epochs: int = 8


def demo_train_settings(settings: MainSettings) -> TrainSettings:
    """A small ECG ResNet on generated CinC-format records."""
    return TrainSettings(
        dataset="cinc2017",
        data_options=f"length={settings.ecg_length}",
        arch="ecg_resnet",
        arch_options="num_blocks=4,base_filters=16",
        epochs=settings.epochs,
        learning_rate=3e-3,
    )


def run_main(settings: MainSettings, tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Run (or reuse) every step of the demo under one parent run; returns the parent run id."""
    uri = connect(tracking_uri, experiment)
    with start_step_run("main", asdict(settings)) as parent:
        train_settings = demo_train_settings(settings)
        finished = find_finished_run("train", asdict(train_settings))
        if finished is not None:
            print(f"reusing finished train run {finished.info.run_id}")
            train_run_id = finished.info.run_id
        else:
            train_run_id = train(train_settings, uri, experiment)
        mlflow.set_tag("medadv.train_run", train_run_id)
        print(f"\nDone. Browse the runs:  mlflow ui --backend-store-uri {uri}")
        print("Look at experiment 'medadv': the train run's metrics (per-epoch loss, accuracy, macro F1, AUC),")
        print("its figures/ (learning curves, confusion matrix) and the registered model under Models.")
        return str(parent.info.run_id)
