"""`mlflow run . -e evaluate`: compare an experiment's runs in one HTML report and tables, in a run of its own."""

from _flags import settings_from_command_line

from medadv.settings import EvaluateSettings

if __name__ == "__main__":
    settings, arguments = settings_from_command_line(EvaluateSettings, __doc__)
    # Only now, with the input checked, the imports that take seconds (TensorFlow, Keras, MLflow).
    from _cli import run_step

    from medadv.jobs.evaluate import evaluate

    run_step(lambda: evaluate(settings, arguments.tracking_uri, arguments.experiment))
