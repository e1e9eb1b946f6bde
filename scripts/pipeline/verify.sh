#!/usr/bin/env bash
# Stage: environment verification (guide §2; the deployment policy in production). The stages'
# own output (reports, the packaged dist/) is build output, not a change to the checkout.
source "$(dirname "$0")/lib.sh"
# OVERRIDE_POLICY (a reason; a Jenkins parameter) turns policy failures into recorded warnings.
"$BIN/verify_env" -e "$ENVIRONMENT" --fetch --build-output "$REPORTS,dist" \
  ${OVERRIDE_POLICY:+--override-policy "$OVERRIDE_POLICY"} \
  --junit "$REPORTS/verify_env.xml" --format json > "$REPORTS/verify_env.json"
