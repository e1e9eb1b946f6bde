#!/usr/bin/env bash
# Stage: environment verification (guide §2; the deployment policy in production).
source "$(dirname "$0")/lib.sh"
"$BIN/verify_env" -e "$ENVIRONMENT" --fetch --junit "$REPORTS/verify_env.xml" --format json > "$REPORTS/verify_env.json"
