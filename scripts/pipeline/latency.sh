#!/usr/bin/env bash
# Stage: latency of COLOR within LATENCY_THRESHOLD % (default 10) — against the live colour
# measured in the same window in alternating slices (blue-green: LATENCY_AGAINST=live), or
# against the environment's last accepted baseline kept in its database (single-colour
# environments: LATENCY_AGAINST=accepted; a missing one fails, it never passes), or a baseline
# file (LATENCY_BASELINE). ACCEPT_BASELINE=1 stores a passing run as the next accepted baseline,
# named by VERSION and the build (DEPLOYKIT_BUILD).
source "$(dirname "$0")/lib.sh"
if [ -n "${LATENCY_BASELINE:-}" ]; then
  gate=(--baseline "$LATENCY_BASELINE")
else
  gate=(--against "${LATENCY_AGAINST:-live}")
fi
[ "${ACCEPT_BASELINE:-0}" = 1 ] && gate+=(--accept-baseline)
"$BIN/measure_latency" -e "$ENVIRONMENT" --production --color "${COLOR:?}" \
  --duration "${LATENCY_DURATION:-30s}" --warmup "${LATENCY_WARMUP:-5s}" \
  "${gate[@]}" --threshold-pct "${LATENCY_THRESHOLD:-10}" ${VERSION:+--release "$VERSION"} \
  --report-dir "$REPORTS/latency" --junit "$REPORTS/latency.xml" --format json > "$REPORTS/latency.json"
