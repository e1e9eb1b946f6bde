#!/usr/bin/env bash
# Route tests for alertmanager.yml (amtool): each kind of alert reaches exactly the receivers the
# guide names — critical pages, the deployment team's alerts are emailed, everything reaches the
# team channel. Run by scripts/test; the end-to-end test (tests/cli/alerting.rs) sends real ones.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
amtool check-config alertmanager.yml >/dev/null
route() { # expected-receivers label=value...
  local want=$1; shift
  amtool config routes test --config.file=alertmanager.yml --verify.receivers="$want" "$@" >/dev/null 2>&1 ||
    { echo "route of {$*}: expected $want, got $(amtool config routes test --config.file=alertmanager.yml "$@" 2>/dev/null)" >&2; exit 1; }
}
route pagerduty,deployment-email,team-slack severity=critical team=deployment alertname=DeploymentErrorRateHigh
route deployment-email,team-slack severity=warning team=deployment alertname=DeploymentFailed
route pagerduty,team-slack severity=critical team=trading-desk alertname=DeskDown
route team-slack severity=info team=trading-desk alertname=TradingDeskNotice
route team-slack alertname=Unlabelled
echo "alertmanager routes: 5 cases as expected"
