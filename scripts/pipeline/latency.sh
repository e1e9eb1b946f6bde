#!/usr/bin/env bash
# Stage: latency of COLOR within LATENCY_THRESHOLD % (default 10) — against a stored baseline
# file when LATENCY_BASELINE names one (single-colour environments), else against the live
# colour measured in the same window in alternating slices (blue-green: LATENCY_AGAINST=live).
source "$(dirname "$0")/lib.sh"
if [ -n "${LATENCY_BASELINE:-}" ]; then
  gate=(--baseline "$LATENCY_BASELINE")
else
  gate=(--against "${LATENCY_AGAINST:-live}")
fi
"$BIN/measure_latency" -e "$ENVIRONMENT" --production --color "${COLOR:?}" \
  --duration "${LATENCY_DURATION:-30s}" --warmup "${LATENCY_WARMUP:-5s}" \
  "${gate[@]}" --threshold-pct "${LATENCY_THRESHOLD:-10}" \
  --report-dir "$REPORTS/latency" --junit "$REPORTS/latency.xml" --format json > "$REPORTS/latency.json"
