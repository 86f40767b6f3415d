"""`mlflow run . -e study -P name=ecgadv -P data_dir=../shared/data -P scale=smoke`: one study's protocol."""

from _cli import parser_for, run_step, settings_from

from medadv.jobs.study import StudySettings, study

if __name__ == "__main__":
    arguments = parser_for(StudySettings, __doc__).parse_args()
    run_step(lambda: study(settings_from(arguments, StudySettings), arguments.tracking_uri, arguments.experiment))
