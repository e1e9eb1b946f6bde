#!/usr/bin/env bash
# Stage: put VERSION on COLOR. Locally the stack's stand-in; elsewhere the guide's playbooks.
# In a blue-green environment (BLUE_GREEN=1) COLOR must be the idle colour: deploying to the
# live one would restart the servers taking orders, so the stage stops first (exit 5).
# COMPONENT (trading-engine, risk-engine, marketdata, oms, web) deploys one role only (dev).
source "$(dirname "$0")/lib.sh"
case "${COMPONENT:-}" in
  ""|trading-engine|risk-engine|marketdata|oms|web) ;;
  *) echo "error: COMPONENT is '${COMPONENT}': use trading-engine, risk-engine, marketdata, oms or web (or leave it empty for all)" >&2; exit 2 ;;
esac
if [ "${BLUE_GREEN:-0}" = 1 ]; then
  "$BIN/cutover" -e "$ENVIRONMENT" idle --expect "${COLOR:?}" --junit "$REPORTS/deploy_guard.xml"
fi
if [ "$ENVIRONMENT" = local ]; then
  bash scripts/stack deploy --dir "${STACK_DIR:-.stack}" --color "${COLOR:?}" --version "${VERSION:?}" \
    ${COMPONENT:+--role "$COMPONENT"}
else
  ansible-playbook "playbooks/deploy_${ENVIRONMENT}.yml" -e "color=${COLOR:?}" -e "version=${VERSION:?}" \
    ${COMPONENT:+-e "component=$COMPONENT"}
fi
