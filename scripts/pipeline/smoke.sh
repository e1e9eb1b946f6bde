#!/usr/bin/env bash
# Stage: smoke tests of COLOR (default: the live colour), with the database group in staging.
source "$(dirname "$0")/lib.sh"
args=()
[ -n "${COLOR:-}" ] && args+=(--color "$COLOR")
[ -n "${VERSION:-}" ] && args+=(--expect-version "$VERSION")
[ "${DATABASE_FOCUSED:-0}" = 1 ] && args+=(--database-focused)
# SMOKE_ONLY: the groups a hotfix names (its verify_hotfix step), reported as smoke_<name>.
[ -n "${SMOKE_ONLY:-}" ] && args+=(--only "$SMOKE_ONLY")
name=${SMOKE_REPORT:-${COLOR:-live}}
"$BIN/smoke_tests" -e "$ENVIRONMENT" "${args[@]}" --junit "$REPORTS/smoke_$name.xml" --format json > "$REPORTS/smoke_$name.json"
