#!/usr/bin/env bash
# Run the `attack` entry point as N shards (shard=i/N) under one parent run, wait for all, then close the parent.
#
#   deploy/sweep.sh N -P model=models:/NAME@champion -P attack=pgd [-P name=value ...]
#
# MEDADV_BACKEND=kubernetes (default): every shard is a Kubernetes Job through MLflow's backend; set MEDADV_IMAGE
#   to the pushed image (see deploy/README.md).
# MEDADV_BACKEND=local: every shard is a local process in this Python environment.
# The tracking server and credentials come from MLFLOW_TRACKING_URI and MLFLOW_TRACKING_USERNAME/PASSWORD;
# the experiment from MLFLOW_EXPERIMENT_NAME (default: medadv). Exit status 1 if any shard failed.
set -euo pipefail

fail() { echo "sweep: $1" >&2; exit 2; }
(($# >= 1)) || fail "usage: deploy/sweep.sh N [-P name=value ...]"
shards=$1
shift
[[ $shards =~ ^[1-9][0-9]*$ ]] || fail "N must be a positive integer, got '$shards'"
[[ -n ${MLFLOW_TRACKING_URI:-} ]] || fail "set MLFLOW_TRACKING_URI to the shared tracking server"
deploy=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$deploy")
experiment=${MLFLOW_EXPERIMENT_NAME:-medadv}

case ${MEDADV_BACKEND:-kubernetes} in
  kubernetes)
    [[ -n ${MEDADV_IMAGE:-} ]] || fail "set MEDADV_IMAGE to the pushed image, e.g. registry.example.org/medadv/medadv-gpu:0.1.0"
    project=$repo/build/kubernetes-project
    python "$deploy/kubernetes_project.py" --image "$MEDADV_IMAGE" "$project" >/dev/null
    backend=(--backend kubernetes --backend-config "$deploy/kubernetes_config.json")
    cd "$repo"  # the backend config names the job template relative to the repository
    ;;
  local)
    project=$repo
    backend=(--env-manager local)
    ;;
  *) fail "MEDADV_BACKEND must be kubernetes or local, got '${MEDADV_BACKEND}'" ;;
esac

parent=$(python - "$experiment" "$shards" <<'PY'
import sys

import mlflow

experiment, shards = sys.argv[1:]
experiment_id = mlflow.set_experiment(experiment).experiment_id
tags = {"medadv.step": "attack-sweep", "medadv.shards": shards}
print(mlflow.MlflowClient().create_run(experiment_id, tags=tags, run_name=f"attack-sweep-{shards}").info.run_id)
PY
)
logs=$(mktemp -d "${TMPDIR:-/tmp}/medadv-sweep-XXXXXX")
echo "sweep: parent run $parent, $shards shards, logs in $logs"

pids=()
for ((i = 0; i < shards; i++)); do
  mlflow run "$project" -e attack --experiment-name "$experiment" "${backend[@]}" \
    -P shard="$i/$shards" -P parent_run_id="$parent" "$@" >"$logs/shard-$i.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "sweep: shard $i/$shards failed, see $logs/shard-$i.log" >&2; failed=$((failed + 1)); }
done

status=FINISHED
((failed == 0)) || status=FAILED
python -c 'import sys, mlflow; mlflow.MlflowClient().set_terminated(sys.argv[1], sys.argv[2])' "$parent" "$status"
echo "sweep: $((shards - failed))/$shards shards finished; parent run $parent is $status"
((failed == 0))
