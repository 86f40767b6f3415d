"""`mlflow run . -e attack`: attack a registered victim and log every perturbation."""

from _cli import parser_for, run_step, settings_from

from medadv.jobs.attack import AttackSettings, attack

if __name__ == "__main__":
    arguments = parser_for(AttackSettings, __doc__).parse_args()
    run_step(lambda: attack(settings_from(arguments, AttackSettings), arguments.tracking_uri, arguments.experiment))
