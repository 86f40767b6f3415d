"""`mlflow run . -e attack`: attack a registered victim and log every perturbation."""

from _flags import settings_from_command_line

from medadv.settings import AttackSettings

if __name__ == "__main__":
    settings, arguments = settings_from_command_line(AttackSettings, __doc__)
    # Only now, with the input checked, the imports that take seconds (TensorFlow, Keras, MLflow).
    from _cli import run_step

    from medadv.jobs.attack import attack

    run_step(lambda: attack(settings, arguments.tracking_uri, arguments.experiment))
