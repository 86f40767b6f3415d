"""`mlflow run . -e gradcam`: Grad-CAM of an attack run's clean and adversarial inputs, and how far they moved."""

from _flags import settings_from_command_line

from medadv.settings import GradcamSettings

if __name__ == "__main__":
    settings, arguments = settings_from_command_line(GradcamSettings, __doc__)
    # Only now, with the input checked, the imports that take seconds (TensorFlow, Keras, MLflow).
    from _cli import run_step

    from medadv.jobs.gradcam import gradcam

    run_step(lambda: gradcam(settings, arguments.tracking_uri, arguments.experiment))
