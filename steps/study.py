"""`mlflow run . -e study -P name=ecgadv -P data_dir=../shared/data -P scale=smoke`: one study's protocol."""

from _flags import settings_from_command_line

from medadv.settings import StudySettings

if __name__ == "__main__":
    settings, arguments = settings_from_command_line(StudySettings, __doc__)
    # Only now, with the input checked, the imports that take seconds (TensorFlow, Keras, MLflow).
    from _cli import run_step

    from medadv.jobs.study import study

    run_step(lambda: study(settings, arguments.tracking_uri, arguments.experiment))
