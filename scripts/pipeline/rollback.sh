#!/usr/bin/env bash
# Stage: roll back the code, then (when TO_VERSION is set) the schema.
#   ROLLBACK=traffic (default; blue-green): `cutover rollback` switches back to the previous colour.
#   ROLLBACK=release (in-place environments: dev, staging): redeploy TO_RELEASE (the previous
#     release) on COLOR in place; without TO_RELEASE the running release stays and only the
#     schema is rolled back (said in the log).
# The schema step runs whichever code path ran: a topology without load balancers is not a
# reason to skip it.
source "$(dirname "$0")/lib.sh"
case "${ROLLBACK:-traffic}" in
  traffic)
    "$BIN/cutover" -e "$ENVIRONMENT" rollback --junit "$REPORTS/rollback.xml"
    ;;
  release)
    if [ -n "${TO_RELEASE:-}" ]; then
      COLOR=${COLOR:-blue} VERSION=$TO_RELEASE bash "$(dirname "$0")/deploy.sh"
    else
      echo "rollback: no TO_RELEASE given: the running release stays; rolling back the schema only" >&2
    fi
    ;;
  *)
    echo "error: ROLLBACK is '${ROLLBACK}': use traffic (blue-green) or release (in-place)" >&2
    exit 2
    ;;
esac
if [ -n "${TO_VERSION:-}" ]; then
  "$BIN/db_migrate" -e "$ENVIRONMENT" rollback --to-version "$TO_VERSION" --confirm --junit "$REPORTS/db_rollback.xml"
fi
