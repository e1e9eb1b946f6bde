#!/usr/bin/env bash
# Stage: latency of COLOR against the stored baseline (within LATENCY_THRESHOLD %, default 10).
source "$(dirname "$0")/lib.sh"
"$BIN/measure_latency" -e "$ENVIRONMENT" --production --color "${COLOR:?}" \
  --duration "${LATENCY_DURATION:-30s}" --warmup "${LATENCY_WARMUP:-5s}" \
  --baseline "${LATENCY_BASELINE:?}" --threshold-pct "${LATENCY_THRESHOLD:-10}" \
  --report-dir "$REPORTS/latency" --junit "$REPORTS/latency.xml" --format json > "$REPORTS/latency.json"
