#!/usr/bin/env bash
# Stage: latency of COLOR against the stored baseline (within 10 %).
source "$(dirname "$0")/lib.sh"
"$BIN/measure_latency" -e "$ENVIRONMENT" --production --color "${COLOR:?}" --duration 30s --warmup 5s \
  --baseline "${LATENCY_BASELINE:?}" --threshold-pct 10 --report-dir "$REPORTS/latency" --junit "$REPORTS/latency.xml"
