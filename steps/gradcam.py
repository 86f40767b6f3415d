"""`mlflow run . -e gradcam`: Grad-CAM of an attack run's clean and adversarial inputs, and how far they moved."""

from _cli import parser_for, run_step, settings_from

from medadv.jobs.gradcam import GradcamSettings, gradcam

if __name__ == "__main__":
    arguments = parser_for(GradcamSettings, __doc__).parse_args()
    run_step(lambda: gradcam(settings_from(arguments, GradcamSettings), arguments.tracking_uri, arguments.experiment))
