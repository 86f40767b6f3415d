"""`mlflow run . -e train`: train a victim, log it and register it."""

from _flags import settings_from_command_line

from medadv.settings import TrainSettings

if __name__ == "__main__":
    settings, arguments = settings_from_command_line(TrainSettings, __doc__)
    # Only now, with the input checked, the imports that take seconds (TensorFlow, Keras, MLflow).
    from _cli import run_step

    from medadv.jobs.train import train

    run_step(lambda: train(settings, arguments.tracking_uri, arguments.experiment))
