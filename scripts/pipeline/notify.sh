#!/usr/bin/env bash
# Tell the team: EVENT (success|failure|info) and TITLE, with every failed check of the JSON
# reports under $REPORTS. The webhook URL comes from DEPLOYKIT_NOTIFY_WEBHOOK (a credential).
source "$(dirname "$0")/lib.sh"
link=()
[ -n "${BUILD_URL:-}" ] && link=(--link "$BUILD_URL")
"$BIN/notify" -e "$ENVIRONMENT" --event "${1:?success|failure|info}" --title "${2:?title}" \
  --reports-dir "$REPORTS" "${link[@]}" --junit "$REPORTS/notify.xml"
