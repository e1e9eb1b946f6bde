#!/usr/bin/env bash
# Stage: database — plan, lint, backup (staging/production take one inside migrate too), migrate,
# verify. The maintenance window (503 page, orders stopped) is opened only when the plan says a
# pending migration needs it (its own declaration, else lint: db_migrate plan); MAINTENANCE=always
# or never overrides. A failed migration changed nothing of its own (each runs in one
# transaction), so the window is lifted again — unless the plan held a no-transaction file, which
# may be half-applied: then it stays on, and the stage says so and why.
source "$(dirname "$0")/lib.sh"
"$BIN/db_migrate" -e "$ENVIRONMENT" plan --junit "$REPORTS/db_plan.xml" --format json > "$REPORTS/db_plan.json"
answer=$(jq -c '.checks[] | select(.name == "Maintenance needed")' "$REPORTS/db_plan.json")
need=$(jq -r '.data.needs_maintenance' <<< "$answer")
case "${MAINTENANCE:-auto}" in
  auto) ;;
  always) need=true ;;
  never) need=false ;;
  *) echo "error: MAINTENANCE is '${MAINTENANCE}': use auto, always or never" >&2; exit 2 ;;
esac
[ "$need" = true ] || [ "$need" = false ] || { echo "error: db_migrate plan gave no answer ($REPORTS/db_plan.json)" >&2; exit 3; }
echo "maintenance window: $( [ "$need" = true ] && echo "needed" || echo "not needed") ($(jq -r '.message' <<< "$answer"))" >&2
# Lint gates an online migration; inside a maintenance window its locking findings are what the
# window is for, so they are reported, not fatal.
if [ "$need" = false ]; then
  "$BIN/db_migrate" -e "$ENVIRONMENT" lint --junit "$REPORTS/db_lint.xml"
else
  "$BIN/db_migrate" -e "$ENVIRONMENT" lint --junit "$REPORTS/db_lint.xml" \
    || echo "lint findings reported (reports/db_lint.xml), not fatal: the maintenance window covers them" >&2
fi
[ "$need" = false ] || bash "$(dirname "$0")/maintenance.sh" on
rc=0
{
  "$BIN/db_migrate" -e "$ENVIRONMENT" backup --junit "$REPORTS/db_backup.xml" &&
  "$BIN/db_migrate" -e "$ENVIRONMENT" migrate --junit "$REPORTS/db_migrate.xml" --format json > "$REPORTS/db_migrate.json" &&
  "$BIN/db_migrate" -e "$ENVIRONMENT" verify --junit "$REPORTS/db_verify.xml"
} || rc=$?
if [ "$need" = true ]; then
  if [ $rc -ne 0 ] && jq -e '[.checks[] | select(.group == "plan") | .message | select(test("no-transaction"))] | length > 0' "$REPORTS/db_plan.json" >/dev/null; then
    echo "maintenance LEFT ON: the failed run held a no-transaction migration, which may be half-applied; restore the backup or finish it by hand, then: maintenance.sh off" >&2
  else
    bash "$(dirname "$0")/maintenance.sh" off
    [ $rc -eq 0 ] || echo "migration failed: nothing half-applied (each migration is one transaction); maintenance lifted" >&2
  fi
fi
exit $rc
