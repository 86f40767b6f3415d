"""The entry points as jobs: each a short sequence that checks its input, runs library code and logs to MLflow.

`steps/*.py` (and the MLproject) call these; the library below them (`data`, `models`, `attacks`, `defenses`,
`explain`, `metrics`, `report`) never imports MLflow.
"""
