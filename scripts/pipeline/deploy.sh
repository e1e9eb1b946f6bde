#!/usr/bin/env bash
# Stage: put VERSION on COLOR (blue-green) or in place (dev, staging) with the playbooks
# (playbooks/deploy_<env>.yml, inventories/<env>/; locally the stack's generated inventory).
# In a blue-green environment (BLUE_GREEN=1) COLOR must be the idle colour: deploying to the
# live one would restart the servers taking orders, so the stage stops first (exit 5).
# COMPONENT (trading-engine, risk-engine, marketdata, oms, web) deploys one role only (dev);
# TARGET_SERVER narrows to hosts of the inventory (Ansible's --limit).
source "$(dirname "$0")/lib.sh"
case "${COMPONENT:-}" in
  ""|trading-engine|risk-engine|marketdata|oms|web) ;;
  *) echo "error: COMPONENT is '${COMPONENT}': use trading-engine, risk-engine, marketdata, oms or web (or leave it empty for all)" >&2; exit 2 ;;
esac
if [ "${BLUE_GREEN:-0}" = 1 ]; then
  "$BIN/cutover" -e "$ENVIRONMENT" idle --expect "${COLOR:?}" --junit "$REPORTS/deploy_guard.xml"
fi
# The artefact the Package stage made (dist/VERSION: trading-services-VERSION.tar.gz + SHA256SUMS).
ARTEFACT_DIR=${ARTEFACT_DIR:-dist/${VERSION:?}}
if [ "$ENVIRONMENT" = local ]; then
  # The local stack's generated inventory; without a packaged artefact the stack packs one.
  art=()
  [ -f "$ARTEFACT_DIR/trading-services-$VERSION.tar.gz" ] && art=(--artefact-dir "$ARTEFACT_DIR")
  bash scripts/stack deploy --dir "${STACK_DIR:-.stack}" --color "${COLOR:?}" --version "$VERSION" \
    ${COMPONENT:+--role "$COMPONENT"} "${art[@]}"
else
  # shellcheck source=scripts/lib.sh
  source "$(dirname "$0")/../lib.sh"
  # An agent may keep an environment's inventory outside the checkout: DEPLOY_INVENTORY_<ENV>.
  inv_var="DEPLOY_INVENTORY_${ENVIRONMENT^^}"
  ansible_playbook -i "${!inv_var:-inventories/$ENVIRONMENT}" "playbooks/deploy_${ENVIRONMENT}.yml" \
    -e "version=$VERSION" -e "artefact_dir=$(realpath -m "$ARTEFACT_DIR")" \
    ${COLOR:+-e "color=$COLOR"} ${COMPONENT:+-e "component=$COMPONENT"} ${TARGET_SERVER:+--limit "$TARGET_SERVER"}
fi
