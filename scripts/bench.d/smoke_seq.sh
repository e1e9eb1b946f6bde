#!/usr/bin/env bash
# The competitor for `scripts/bench smoke_tests`: the same HTTP requests as smoke_tests (without
# database), one curl after another, the way smoke_tests.sh does them. Needs BASE (service URL).
set -u
B=${BASE:?set BASE}
A=TEST-SMOKE-01
J='content-type: application/json'
id=$(date +%s%N)
fail=0
c() { curl -fsS -m 10 "$@" || fail=1; }
for _ in 1 2 3 4 5; do c "$B/health" >/dev/null; done
c "$B/metrics" >/dev/null
price=$(c "$B/ticks?symbol=AAPL" | jq '.[-1].price * 0.9 | floor')
c "$B/positions?account=$A" >/dev/null
oid=$(c -H "$J" -d "{\"account\":\"$A\",\"symbol\":\"AAPL\",\"side\":\"buy\",\"qty\":1,\"type\":\"limit\",\"price\":$price,\"client_order_id\":\"s-$id-l\"}" "$B/orders" | jq -r .order_id)
c -X DELETE "$B/orders/$oid" >/dev/null
c "$B/orders/$oid" | jq -e '.status == "cancelled"' >/dev/null || fail=1
c -H "$J" -d "{\"account\":\"$A\",\"symbol\":\"AAPL\",\"side\":\"buy\",\"qty\":1,\"type\":\"market\",\"client_order_id\":\"s-$id-m\"}" "$B/orders" | jq -e '.status == "filled"' >/dev/null || fail=1
c "$B/positions?account=$A" >/dev/null
c "$B/pnl?account=$A" >/dev/null
c "$B/positions?account=$A" >/dev/null
c "$B/feeds" | jq -e 'all(.connected and .last_msg_age_ms < 1000)' >/dev/null || fail=1
c "$B/limits" >/dev/null
for q in 501 1 0 -1; do
  c -H "$J" -d "{\"account\":\"$A\",\"symbol\":\"AAPL\",\"side\":\"buy\",\"qty\":$q,\"type\":\"market\",\"client_order_id\":\"s-$id-r$q\"}" "$B/check" >/dev/null
done
c -H "$J" -d "{\"account\":\"$A\",\"symbol\":\"NOPE\",\"side\":\"buy\",\"qty\":1,\"type\":\"market\",\"client_order_id\":\"s-$id-u\"}" "$B/check" >/dev/null
c -H "$J" -d "{\"account\":\"$A\",\"symbol\":\"AAPL\",\"side\":\"buy\",\"qty\":1,\"type\":\"limit\",\"price\":-1,\"client_order_id\":\"s-$id-p\"}" "$B/check" >/dev/null
c "$B/" >/dev/null
c "$B/orders?account=$A" >/dev/null
c "$B/positions?account=$A" >/dev/null
c -H "$J" -d "{\"account\":\"$A\",\"symbol\":\"AAPL\",\"side\":\"sell\",\"qty\":1,\"type\":\"market\",\"client_order_id\":\"s-$id-f\"}" "$B/orders" >/dev/null
c "$B/orders?account=$A" >/dev/null
c "$B/positions?account=$A" >/dev/null
c "$B/metrics" >/dev/null
exit $fail
