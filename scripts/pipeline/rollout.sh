#!/usr/bin/env bash
# Stage: staged strategy activation (Phase 4), lowest risk first, one strategy at a time.
source "$(dirname "$0")/lib.sh"
"$BIN/strategy_rollout" -e "$ENVIRONMENT" --strategy "${STRATEGY:-MM_EQ_001}" \
  --then "${THEN_STRATEGIES:-STAT_ARB_PAIRS_001,MOMENTUM_ST_001}" \
  --steps 10,50,100 --hold "${HOLD:-5m}" --junit "$REPORTS/rollout.xml" --format json > "$REPORTS/rollout.json"
