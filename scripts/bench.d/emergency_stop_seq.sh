#!/usr/bin/env bash
# The competitor for `scripts/bench emergency_stop`: the guide's emergency_stop.sh way — for each
# trading server, one after another, curl the three admin calls (stop orders, cancel all,
# trading off) with the same per-call timeout. Needs PROCS (the stack's procs file), DEADLINE
# (seconds) and DEPLOYKIT_ADMIN_TOKEN (sent from a header file, never an argument).
set -u
hdr=$(mktemp); chmod 600 "$hdr"
trap 'rm -f "$hdr"' EXIT
printf 'Authorization: Bearer %s\n' "${DEPLOYKIT_ADMIN_TOKEN:?}" > "$hdr"
failed=0
while read -r _ name role port; do
  case $role in trading-engine|oms|all) ;; *) continue ;; esac
  for path in orders/stop orders/cancel-all trading/deactivate; do
    curl -fsS -m "${DEADLINE:?}" -H @"$hdr" -H 'content-type: application/json' -d '{}' \
      "http://127.0.0.1:$port/admin/$path" >/dev/null 2>&1 || { failed=1; echo "not stopped: $name ($path)" >&2; }
  done
done < "${PROCS:?}"
exit $failed
