"""`mlflow run . -e evaluate`: compare an experiment's runs in one HTML report and tables, in a run of its own."""

from _cli import parser_for, run_step, settings_from

from medadv.jobs.evaluate import EvaluateSettings, evaluate

if __name__ == "__main__":
    arguments = parser_for(EvaluateSettings, __doc__).parse_args()
    run_step(lambda: evaluate(settings_from(arguments, EvaluateSettings), arguments.tracking_uri, arguments.experiment))
