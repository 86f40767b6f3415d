"""`mlflow run . -e train`: train a victim, log it and register it."""

from _cli import parser_for, run_step, settings_from

from medadv.jobs.train import TrainSettings, train

if __name__ == "__main__":
    arguments = parser_for(TrainSettings, __doc__).parse_args()
    run_step(lambda: train(settings_from(arguments, TrainSettings), arguments.tracking_uri, arguments.experiment))
