#!/usr/bin/env bash
# Stage: roll back traffic (cutover rollback) and, when TO_VERSION is set, the schema.
source "$(dirname "$0")/lib.sh"
"$BIN/cutover" -e "$ENVIRONMENT" rollback --junit "$REPORTS/rollback.xml"
if [ -n "${TO_VERSION:-}" ]; then
  "$BIN/db_migrate" -e "$ENVIRONMENT" rollback --to-version "$TO_VERSION" --confirm --junit "$REPORTS/db_rollback.xml"
fi
