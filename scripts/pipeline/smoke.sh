#!/usr/bin/env bash
# Stage: smoke tests of COLOR (default: the live colour), with the database group in staging.
source "$(dirname "$0")/lib.sh"
args=()
[ -n "${COLOR:-}" ] && args+=(--color "$COLOR")
[ -n "${VERSION:-}" ] && args+=(--expect-version "$VERSION")
[ "${DATABASE_FOCUSED:-0}" = 1 ] && args+=(--database-focused)
"$BIN/smoke_tests" -e "$ENVIRONMENT" "${args[@]}" --junit "$REPORTS/smoke_${COLOR:-live}.xml" --format json > "$REPORTS/smoke_${COLOR:-live}.json"
