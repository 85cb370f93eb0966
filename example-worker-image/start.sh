#!/bin/sh
# Worker entrypoint. The scheduler passes, as container environment:
#   HYPER_TABLE_PREFIX  the host's DynamoDB table prefix (e.g. hyper-prod-)
#   HYPER_MAIN_REGION   the region of those tables (falls back to AWS_REGION)
#   HYPER_QUEUE, HYPER_DEFINITION   which jobs this worker takes
#   HYPER_WORKER_IDLE   seconds without work before the worker exits (optional)
#   HYPER_MAX_JOBS      jobs before the worker exits (the definition's ratio: keeps it inside Batch's timeout)
#   HYPER_POD_NAME      on EKS, the pod's name (downward API): the worker id there
# Credentials come from the container's IAM role (the standard AWS chain); nothing secret is passed here.
set -eu
: "${HYPER_TABLE_PREFIX:?set HYPER_TABLE_PREFIX to the host's table prefix}"
: "${HYPER_QUEUE:?set HYPER_QUEUE}"
: "${HYPER_DEFINITION:?set HYPER_DEFINITION}"
region="${HYPER_MAIN_REGION:-${AWS_REGION:-}}"
[ -n "$region" ] || { echo "start.sh: set HYPER_MAIN_REGION (the region of the host's tables)" >&2; exit 2; }

export HYPER_HOME="${HYPER_HOME:-/work/.hyper}"
hyper hosts import-deployment --table-prefix "$HYPER_TABLE_PREFIX" --main-region "$region" --name worker \
    ${AWS_ENDPOINT_URL:+--endpoint-url "$AWS_ENDPOINT_URL"} >/dev/null
exec hyper --host worker worker run --queue "$HYPER_QUEUE" --definition "$HYPER_DEFINITION" \
    --worker-id "${AWS_BATCH_JOB_ID:-${HYPER_POD_NAME:-$(hostname)}}${AWS_BATCH_JOB_ARRAY_INDEX:+-$AWS_BATCH_JOB_ARRAY_INDEX}" \
    --workdir "${HYPER_WORKDIR:-$PWD/run}" ${HYPER_MAX_JOBS:+--max-jobs "$HYPER_MAX_JOBS"}
