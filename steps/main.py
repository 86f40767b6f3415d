"""`mlflow run . -e main`: the end-to-end demo on generated data, every step in this one process."""

from _flags import settings_from_command_line

from medadv.settings import MainSettings

if __name__ == "__main__":
    settings, arguments = settings_from_command_line(MainSettings, __doc__)
    # Only now, with the input checked, the imports that take seconds (TensorFlow, Keras, MLflow).
    from _cli import run_step

    from medadv.jobs.main import run_main

    run_step(lambda: run_main(settings, arguments.tracking_uri, arguments.experiment))
