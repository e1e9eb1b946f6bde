#!/usr/bin/env bash
# Stage: roll back the code, then (when TO_VERSION is set) the schema.
#   ROLLBACK=traffic (default; blue-green): `cutover rollback` switches back to the previous colour
#     (with DEPLOYKIT_BUILD set, as Jenkins does, only when that build's cutover moved traffic).
#   ROLLBACK=release (in-place environments: dev, staging): playbooks/rollback.yml puts every host
#     (of COLOR, of COMPONENT, when given) back on its previous release, or on TO_RELEASE when set
#     (already on the hosts under releases/), then waits for /health to report it.
#   ROLLBACK=schema: the code stays; only the schema rolls back.
# The schema step runs whichever code path ran: a topology without load balancers is not a
# reason to skip it.
source "$(dirname "$0")/lib.sh"
case "${ROLLBACK:-traffic}" in
  traffic)
    # In a CI failure handler (DEPLOYKIT_BUILD set): only a switch this build made is undone.
    "$BIN/cutover" -e "$ENVIRONMENT" rollback ${DEPLOYKIT_BUILD:+--if-switched-by "$DEPLOYKIT_BUILD"} \
      --junit "$REPORTS/rollback.xml"
    ;;
  release)
    # shellcheck source=scripts/lib.sh
    source "$(dirname "$0")/../lib.sh"
    # An agent may keep an environment's inventory outside the checkout: DEPLOY_INVENTORY_<ENV>.
    inv_var="DEPLOY_INVENTORY_${ENVIRONMENT^^}"
    inventory="${!inv_var:-inventories/$ENVIRONMENT}"
    [ "$ENVIRONMENT" = local ] && inventory="${STACK_DIR:-.stack}/inventory"
    ansible_playbook -i "$inventory" playbooks/rollback.yml ${COLOR:+-e "color=$COLOR"} \
      ${COMPONENT:+-e "component=$COMPONENT"} ${TO_RELEASE:+-e "version=$TO_RELEASE"}
    ;;
  schema)
    [ -n "${TO_VERSION:-}" ] || { echo "error: ROLLBACK=schema needs TO_VERSION (the schema version to go back to)" >&2; exit 2; }
    echo "rollback: the running release stays; rolling back the schema only" >&2
    ;;
  *)
    echo "error: ROLLBACK is '${ROLLBACK}': use traffic (blue-green), release (in-place) or schema" >&2
    exit 2
    ;;
esac
if [ -n "${TO_VERSION:-}" ]; then
  "$BIN/db_migrate" -e "$ENVIRONMENT" rollback --to-version "$TO_VERSION" --confirm --junit "$REPORTS/db_rollback.xml"
fi
