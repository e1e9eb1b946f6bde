#!/usr/bin/env bash
# Stage: put VERSION on COLOR. Locally the stack's stand-in; elsewhere the guide's playbooks.
source "$(dirname "$0")/lib.sh"
if [ "$ENVIRONMENT" = local ]; then
  bash scripts/stack deploy --dir "${STACK_DIR:-.stack}" --color "${COLOR:?}" --version "${VERSION:?}"
else
  ansible-playbook "playbooks/deploy_${ENVIRONMENT}.yml" -e "color=${COLOR:?}" -e "version=${VERSION:?}"
fi
