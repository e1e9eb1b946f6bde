#!/usr/bin/env bash
# Stage: put VERSION on COLOR. Locally the stack's stand-in; elsewhere the guide's playbooks.
# In a blue-green environment (BLUE_GREEN=1) COLOR must be the idle colour: deploying to the
# live one would restart the servers taking orders, so the stage stops first (exit 5).
source "$(dirname "$0")/lib.sh"
if [ "${BLUE_GREEN:-0}" = 1 ]; then
  "$BIN/cutover" -e "$ENVIRONMENT" idle --expect "${COLOR:?}" --junit "$REPORTS/deploy_guard.xml"
fi
if [ "$ENVIRONMENT" = local ]; then
  bash scripts/stack deploy --dir "${STACK_DIR:-.stack}" --color "${COLOR:?}" --version "${VERSION:?}"
else
  ansible-playbook "playbooks/deploy_${ENVIRONMENT}.yml" -e "color=${COLOR:?}" -e "version=${VERSION:?}"
fi
