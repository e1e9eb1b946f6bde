#!/usr/bin/env bash
# Tell the team: EVENT (success|failure|info) and TITLE, with every failed check of the JSON
# reports under $REPORTS. The webhook URL comes from DEPLOYKIT_NOTIFY_WEBHOOK (a credential).
source "$(dirname "$0")/lib.sh"
EVENT=${1:?usage: notify.sh success|failure|info TITLE}
TITLE=${2:?usage: notify.sh success|failure|info TITLE}
# A deploy outside the policy says so in every notification.
[ -n "${OVERRIDE_POLICY:-}" ] && TITLE="$TITLE [policy overridden: $OVERRIDE_POLICY]"
link=()
[ -n "${BUILD_URL:-}" ] && link=(--link "$BUILD_URL")
"$BIN/notify" -e "$ENVIRONMENT" --event "$EVENT" --title "$TITLE" \
  --reports-dir "$REPORTS" "${link[@]}" --junit "$REPORTS/notify.xml"
