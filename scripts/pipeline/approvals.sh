#!/usr/bin/env bash
# Stage: role-based approvals (guide §6: a hotfix is approved by a senior developer, a risk
# manager and the CTO). The Jenkinsfile asks each role in turn and passes who answered as which
# role (APPROVALS: role=user,…) and who started the build (STARTED_BY); the config's rule
# (environments.<env>.approvals.<APPROVAL_RULE>) says who may approve for each role. Fails naming
# the missing or refused approval: not in the role's group, the starter, or one person twice.
source "$(dirname "$0")/lib.sh"
"$BIN/verify_env" -e "$ENVIRONMENT" --only approvals --approval-rule "${APPROVAL_RULE:?}" \
  --approved-by "${APPROVALS:?}" ${STARTED_BY:+--started-by "$STARTED_BY"} \
  --junit "$REPORTS/approvals.xml" --format json > "$REPORTS/approvals.json"
