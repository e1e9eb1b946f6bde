#!/usr/bin/env bash
# Fault to receiver (issue 23): on a local stack (one server a colour), steady orders through
# HAProxy; REPEATS times: half of the live colour's answers become errors, and the time until
# PagerDuty, Slack and email each get DeploymentErrorRateHigh from Alertmanager is taken from the
# receivers' own clocks (scripts/alert-receiver.py); then the fault is cleared and the time to
# each resolve is taken the same way. The stack's clock: scrape and evaluation every 2 s, rules'
# `for:` 6 s and windows 20 s, Alertmanager group_wait 1 s (production: for 2m, windows 5m,
# group_wait 30s). The guide's competitor is a loop that checks every 5 minutes: its detection
# time is the wait for its next round (uniform over 0–300 s) plus one round of checks, whose
# duration is measured here on the same stack (the guide's curl of each colour's metrics).
# Usage: alerts.sh BIN_DIR   (REPEATS from the environment)
set -euo pipefail
BIN=$1
REPEATS=${REPEATS:-3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tmp=$(mktemp -d)
# shellcheck disable=SC2064
trap "kill \$(jobs -p) 2>/dev/null; DEPLOYKIT_BIN_DIR='$BIN' bash '$ROOT/scripts/stack' down --dir '$tmp/s' >/dev/null 2>&1; rm -rf $tmp" EXIT
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

DEPLOYKIT_BIN_DIR=$BIN bash "$ROOT/scripts/stack" up --dir "$tmp/s" --fleet 1 >/dev/null
# shellcheck disable=SC1091
source "$tmp/s/stack.env"
"$BIN/trading_sim" --load "$HAPROXY_URL" --load-rate 50 --load-duration-s 3600 >/dev/null 2>&1 &
sleep 25 # a full 20 s window of healthy traffic before the first fault
touch "$ALERTS_RECEIVED"

# first_at SINCE-LINE RECEIVER PATTERN: the receiver's clock when it first got an Alertmanager
# message whose title matches PATTERN after line SINCE-LINE, else empty.
first_at() {
  tail -n +"$(($1 + 1))" "$ALERTS_RECEIVED" | jq -rs --arg r "$2" --arg p "$3" '
    [.[] | select(.receiver == $r)
         | select(.receiver != "pagerduty" or (.body.dedup_key | test("^[0-9a-f]{64}$")))
         | select((if .receiver == "pagerduty" then .body.event_action + " " + (.body.payload.summary // "")
                   elif .receiver == "slack" then ((.body.attachments // [{}])[0].title // "")
                   else .subject end) | test($p))
         | .at] | first // empty'
}
# wait_all SINCE-LINE PATTERN T0: seconds from T0 to each receiver's first match (bounded: 180 s).
wait_all() {
  local since=$1 pat=$2 t0=$3 out r at deadline=$((SECONDS + 180))
  while [ $SECONDS -lt $deadline ]; do
    out=""
    for r in pagerduty slack email; do
      at=$(first_at "$since" "$r" "$pat")
      [ -n "$at" ] || { out=""; break; }
      out="$out $(echo "$at - $t0" | bc -l | xargs printf '%.1f')"
    done
    [ -z "$out" ] || { echo "$out"; return 0; }
    sleep 0.2
  done
  echo " timeout timeout timeout"
}

printf '%-8s %-24s %-24s\n' repeat "fired: PD Slack email (s)" "resolved: PD Slack email (s)"
for i in $(seq 1 "$REPEATS"); do
  n=$(wc -l < "$ALERTS_RECEIVED"); t0=$(date +%s.%N)
  curl -fsS -m 2 -X POST -H 'content-type: application/json' -d '{"error_rate":0.5}' "$BLUE_URL/sim/faults" >/dev/null
  fired=$(wait_all "$n" '(trigger|FIRING).*DeploymentErrorRateHigh' "$t0")
  n=$(wc -l < "$ALERTS_RECEIVED"); t0=$(date +%s.%N)
  curl -fsS -m 2 -X DELETE "$BLUE_URL/sim/faults" >/dev/null
  resolved=$(wait_all "$n" '^resolve|RESOLVED.*DeploymentErrorRateHigh' "$t0")
  printf '%-8s %-24s %-24s\n' "$i" "$fired" "$resolved"
  sleep 25 # the window empties of the fault before the next one
done

# The guide's loop, one round: each colour's metrics fetched and its errors read (its check);
# the loop then sleeps 300 s, so a fault waits for the next round.
t0=$(date +%s.%N)
for u in "$BLUE_URL" "$GREEN_URL"; do curl -fsS -m 5 "$u/metrics" | grep -c '^http_request_errors_total' >/dev/null || true; done
round=$(echo "$(date +%s.%N) - $t0" | bc -l | xargs printf '%.2f')
echo "guide's 5-minute loop: one round of checks ${round}s; detection = wait for the next round (0-300 s, mean 150 s) + ${round}s; nothing pages or resolves by itself"
