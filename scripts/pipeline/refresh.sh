#!/usr/bin/env bash
# Stage: the weekly staging refresh (guide §4), from Jenkins' Saturday cron or from the crontab
# line in scripts/staging-refresh.cron. The guide's six steps, each a binary:
#   stop staging → back up its database → restore anonymized production → restart → smoke tests
#   → notify (always: success, or the failure with its failed checks).
# A failed refresh leaves the staging database as it was (one transaction) and staging running.
source "$(dirname "$0")/lib.sh"
[ "$ENVIRONMENT" != production ] || { echo "refresh.sh refreshes staging, never production" >&2; exit 2; }
EVENT=failure
MAINTENANCE=0
finish() {
  if [ "$MAINTENANCE" = 1 ]; then
    "$BIN/maintenance_mode" -e "$ENVIRONMENT" --disable --junit "$REPORTS/refresh_maintenance_off.xml" || true
  fi
  "$BIN/notify" -e "$ENVIRONMENT" --event "$EVENT" --title "weekly staging refresh" \
    --reports-dir "$REPORTS" --junit "$REPORTS/refresh_notify.xml" || true
}
trap finish EXIT
"$BIN/maintenance_mode" -e "$ENVIRONMENT" --enable --reason "weekly staging refresh" \
  --junit "$REPORTS/refresh_maintenance_on.xml" --format json > "$REPORTS/refresh_maintenance_on.json"
MAINTENANCE=1
"$BIN/db_migrate" -e "$ENVIRONMENT" backup --junit "$REPORTS/refresh_backup.xml"
"$BIN/db_migrate" -e "$ENVIRONMENT" refresh --source-environment "${SOURCE_ENVIRONMENT:-production}" \
  --rules "${ANONYMIZE_RULES:-config/anonymize.toml}" --no-backup "taken by the step before" \
  --junit "$REPORTS/refresh.xml" --format json > "$REPORTS/refresh.json"
"$BIN/maintenance_mode" -e "$ENVIRONMENT" --disable --resume-strategies --junit "$REPORTS/refresh_maintenance_off.xml"
MAINTENANCE=0
"$BIN/smoke_tests" -e "$ENVIRONMENT" --database-focused --junit "$REPORTS/refresh_smoke.xml" \
  --format json > "$REPORTS/refresh_smoke.json"
EVENT=success
