"""The evaluation report, without MLflow: run records in (`records`), tables out (`tables`), then the
report's sections (`sections`), figures (`figures`) and one self-contained HTML page (`html`)."""
