#!/usr/bin/env bash
# Stage: today vs yesterday (guide §5 Phase 4 step 4); COMPARE_* override the windows (a saved
# pre-switch window as the baseline, say) and the metric set.
source "$(dirname "$0")/lib.sh"
args=()
[ -n "${COMPARE_METRICS:-}" ] && args+=(--metrics "$COMPARE_METRICS")
[ -n "${COMPARE_STEP:-}" ] && args+=(--step "$COMPARE_STEP")
"$BIN/compare_metrics" -e "$ENVIRONMENT" --baseline "${COMPARE_BASELINE:-yesterday}" --current "${COMPARE_CURRENT:-today}" \
  --duration "${COMPARE_DURATION:-15m}" "${args[@]}" \
  --html "$REPORTS/metrics.html" --junit "$REPORTS/metrics.xml" --format json > "$REPORTS/metrics.json"
