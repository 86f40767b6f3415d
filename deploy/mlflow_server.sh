#!/usr/bin/env bash
# Start the shared MLflow server: PostgreSQL store, S3 artifacts that the server reads and writes for its clients
# (--serve-artifacts: workers never hold bucket keys), MLflow's basic-auth app. Settings and secrets come from
# the environment only (see deploy/README.md); extra arguments go to `mlflow server` (e.g. --allowed-hosts).
set -euo pipefail

fail() { echo "mlflow_server: $1" >&2; exit 2; }
for name in MLFLOW_BACKEND_STORE_URI MLFLOW_ARTIFACTS_DESTINATION MLFLOW_AUTH_CONFIG_PATH MLFLOW_FLASK_SERVER_SECRET_KEY; do
  [[ -n ${!name:-} ]] || fail "set $name (see deploy/README.md)"
done
[[ ! $MLFLOW_BACKEND_STORE_URI =~ ^[a-z0-9+]+://[^/@]*:[^/@]*@ ]] ||
  fail "keep the password out of MLFLOW_BACKEND_STORE_URI: set PGPASSWORD (or use ~/.pgpass)"
# medadv runs no MLflow server jobs (GenAI evaluation); each job runner would be several more processes.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}

exec python -m mlflow server --host "${MEDADV_HOST:-127.0.0.1}" --port "${MEDADV_PORT:-5000}" \
  --workers "${MEDADV_WORKERS:-4}" --serve-artifacts --app-name basic-auth "$@"
