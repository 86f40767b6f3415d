"""`mlflow run . -e main`: the end-to-end demo on generated data, every step in this one process."""

from _cli import parser_for, run_step, settings_from

from medadv.jobs.main import MainSettings, run_main

if __name__ == "__main__":
    arguments = parser_for(MainSettings, __doc__).parse_args()
    run_step(lambda: run_main(settings_from(arguments, MainSettings), arguments.tracking_uri, arguments.experiment))
