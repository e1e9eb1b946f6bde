#!/usr/bin/env bash
# Stage: the standing alerts armed for the new version (guide §9, T+2 h to T+24 h monitoring):
# Prometheus has every rule of monitoring/rules loaded and evaluating, the trading servers and
# the Pushgateway are scraped and up, an Alertmanager takes the alerts, and no silence mutes
# them. It silences nothing itself. The deploy is done by now, so unarmed alerts must not roll
# it back: the stage passes with a warning and its failed JUnit cases make the build UNSTABLE
# (Jenkins' junit step), naming what is not armed. A usage or config error (exit 2-5) fails it.
source "$(dirname "$0")/lib.sh"
rc=0
"$BIN/verify_env" -e "$ENVIRONMENT" --only alerts \
  --junit "$REPORTS/alerts_armed.xml" --format json > "$REPORTS/alerts_armed.json" || rc=$?
case $rc in
  0) ;;
  1) echo "WARNING: the standing alerts are NOT armed for this deploy (see $REPORTS/alerts_armed.json); the deploy itself stands: fix monitoring, then re-run: verify_env -e $ENVIRONMENT --only alerts" >&2 ;;
  *) exit "$rc" ;;
esac
