#!/usr/bin/env bash
# The deployment report (guide §5 Phase 5, §11): every run of the deploy journal with its stages,
# verdicts and rollbacks, and the DORA figures, as text, JSON and HTML.
source "$(dirname "$0")/lib.sh"
"$BIN/generate_deployment_report" -e "$ENVIRONMENT" --since "${REPORT_SINCE:-30days}" \
  --html "$REPORTS/deployments.html" --format json > "$REPORTS/deployments.json"
"$BIN/generate_deployment_report" -e "$ENVIRONMENT" --since "${REPORT_SINCE:-30days}" -q
