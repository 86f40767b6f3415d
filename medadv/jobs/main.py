"""The `main` entry point: the end-to-end demo on generated data, each step run in-process under one
parent run and reused when a finished run with the same parameters and code version exists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import mlflow

from medadv.contract import REPORT
from medadv.jobs.attack import attack
from medadv.jobs.evaluate import evaluate
from medadv.jobs.gradcam import gradcam
from medadv.jobs.train import train
from medadv.settings import AttackSettings, EvaluateSettings, GradcamSettings, MainSettings, TrainSettings
from medadv.tracking.runs import connect, find_finished_run, start_step_run


def run_main(settings: MainSettings, tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Run (or reuse) every step of the demo under one parent run; returns the parent run id."""
    uri = connect(tracking_uri, experiment)
    data_options = f"length={settings.ecg_length}"
    victim = TrainSettings(data_options=data_options, epochs=settings.epochs, learning_rate=3e-3)
    victim_a = replace(victim, arch_options="num_blocks=4,base_filters=16", model_name="medadv-demo-ecg-a")
    victim_b = replace(victim, arch_options="num_blocks=2,base_filters=16", seed=1, model_name="medadv-demo-ecg-b")
    model_a, model_b = (f"models:/{v.model_name}@candidate" for v in (victim_a, victim_b))
    on_a = AttackSettings(model=model_a, data_options=data_options, num_samples=settings.records)
    # c starts at 10, not the study's 0.01, so that two short binary-search steps already succeed.
    iterations, steps = settings.ecgadv_iterations, settings.ecgadv_search_steps
    ecgadv = f"max_iterations={iterations},binary_search_steps={steps},initial_const=10"
    robust = replace(
        victim, mode="robust", method="pgd_online", victim=model_a, epochs=2, from_scratch=False,
        attack_params="eps=0.5,eps_step=0.1,max_iter=5",
    )  # fmt: skip

    with start_step_run("main", asdict(settings), name=f"main demo · {settings.records} records") as parent:
        step = reusing_step(uri, experiment)
        step("train", train, victim_a)
        step("train", train, victim_b)
        for metric in ("l2", "smooth", "smooth_l2"):
            step("attack", attack, replace(on_a, attack="ecgadv_type1", attack_params=f"metric={metric},{ecgadv}"))
        # A small eps sweep, so the report's curves are curves; the middle eps is transferred and explained.
        for eps in (0.25, 1.0):
            step(
                "attack", attack, replace(on_a, attack="pgd", attack_params=f"eps={eps},eps_step={eps / 5},max_iter=20")
            )
        pgd = replace(on_a, attack="pgd", attack_params="eps=0.5,eps_step=0.1,max_iter=20", transfer_to=model_b)
        pgd_run = step("attack", attack, pgd)
        step("attack", attack, replace(on_a, attack="deepfool", attack_params="overshoot=0.02"))
        step("gradcam", gradcam, GradcamSettings(attack_run_id=pgd_run))
        step("train", train, robust)
        report = evaluate(EvaluateSettings(), uri, experiment)  # always anew: it reads every run so far
        report_uri = mlflow.get_run(report).info.artifact_uri + f"/{REPORT}"
        print(f"\nDone. The report: {report_uri}")
        print(f"Browse every run: mlflow ui --backend-store-uri {uri}  (then open http://127.0.0.1:5000)")
        print("Experiment 'medadv': the demo's parent run holds the train, attack, gradcam and evaluate runs.")
        return str(parent.info.run_id)


def reusing_step(uri: str, experiment: str | None) -> Callable[[str, Callable[..., str], Any], str]:
    """Run a step in-process, or reuse its finished run with the same parameters and code version."""

    def step(name: str, job: Callable[..., str], settings: Any) -> str:
        finished = find_finished_run(name, asdict(settings))
        if finished is not None:
            print(f"reusing finished {name} run {finished.info.run_id}")
            return str(finished.info.run_id)
        return job(settings, uri, experiment)

    return step
