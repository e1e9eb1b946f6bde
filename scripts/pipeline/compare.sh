#!/usr/bin/env bash
# Stage: today vs yesterday (guide §5 Phase 4 step 4).
source "$(dirname "$0")/lib.sh"
"$BIN/compare_metrics" -e "$ENVIRONMENT" --baseline yesterday --current today --duration 15m \
  --html "$REPORTS/metrics.html" --junit "$REPORTS/metrics.xml" --format json > "$REPORTS/metrics.json"
