#!/usr/bin/env bash
# Stage: environment verification (guide §2; the deployment policy in production). The stages'
# own output (reports, the packaged dist/) is build output, not a change to the checkout.
source "$(dirname "$0")/lib.sh"
"$BIN/verify_env" -e "$ENVIRONMENT" --fetch --build-output "$REPORTS,dist" \
  --junit "$REPORTS/verify_env.xml" --format json > "$REPORTS/verify_env.json"
