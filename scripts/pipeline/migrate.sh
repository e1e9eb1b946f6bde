#!/usr/bin/env bash
# Stage: database — lint, backup (staging/production take one inside migrate too), migrate, verify.
source "$(dirname "$0")/lib.sh"
"$BIN/db_migrate" -e "$ENVIRONMENT" lint --junit "$REPORTS/db_lint.xml"
"$BIN/db_migrate" -e "$ENVIRONMENT" backup --junit "$REPORTS/db_backup.xml"
"$BIN/db_migrate" -e "$ENVIRONMENT" migrate --junit "$REPORTS/db_migrate.xml" --format json > "$REPORTS/db_migrate.json"
"$BIN/db_migrate" -e "$ENVIRONMENT" verify --junit "$REPORTS/db_verify.xml"
