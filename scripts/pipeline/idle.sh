#!/usr/bin/env bash
# Stage: which colour a blue-green deploy goes to — the idle one, asked from the load balancers,
# never assumed. Writes it to $REPORTS/idle_color for the later stages (the Jenkinsfile reads it
# into env.DEPLOY_COLOR) and prints it.
source "$(dirname "$0")/lib.sh"
"$BIN/cutover" -e "$ENVIRONMENT" idle --junit "$REPORTS/idle.xml" --format json > "$REPORTS/idle.json"
jq -er '.checks[] | select(.name == "Idle colour") | .data.idle' "$REPORTS/idle.json" > "$REPORTS/idle_color"
echo "deploying to the idle colour: $(cat "$REPORTS/idle_color") ($(jq -r '.checks[] | select(.name == "Idle colour") | .data.live' "$REPORTS/idle.json") is live)"
