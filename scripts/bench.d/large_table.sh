#!/usr/bin/env bash
# Large-table changes under a steady client (issue 22): ROWS rows in `orders`, a pgbench client
# reading and writing random rows at RATE tx/s, open loop, while each method changes the table:
#   (a) one plain UPDATE (backfill)          (b) the guide's DO-block batch loop (10 000, pg_sleep 0.1)
#   (c) db_migrate's batched backfill        (d) db_migrate's shadow-table change (price → numeric(20,8))
#   (e) the same type change as one ALTER TABLE (what (d) replaces)
# Per method: the client's p50/p99/max latency of the transactions scheduled while it ran and
# the clients aborted, its wall
# time, and its longest transaction (the longest any of its locks was held). Each method starts
# from the same database (CREATE DATABASE … TEMPLATE).
# Usage: large_table.sh BIN_DIR   (ROWS, RATE, IDLE_S from the environment; METHODS="idle c d"
# runs a subset; PACE="budget=50ms pause=50ms" adds options to (c) and (d)'s directives)
set -euo pipefail
BIN=$1
ROWS=${ROWS:-5000000}
RATE=${RATE:-200}
IDLE_S=${IDLE_S:-20}
METHODS=${METHODS:-idle a b c d e}
PACE=${PACE:-}
admin=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
base=${admin%/*}
tmp=$(mktemp -d)
tpl="bench_lt_tpl_$$"
db="bench_lt_$$"
# shellcheck disable=SC2064
trap "kill \$(jobs -p) 2>/dev/null; psql '$admin' -qc 'DROP DATABASE IF EXISTS $db WITH (FORCE)' -c 'DROP DATABASE IF EXISTS $tpl WITH (FORCE)' >/dev/null 2>&1; rm -rf $tmp" EXIT
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

log "building the template: $ROWS rows"
psql "$admin" -qc "CREATE DATABASE $tpl"
psql "$base/$tpl" -qX -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE orders (id bigserial PRIMARY KEY, account int NOT NULL, price numeric(12,4) NOT NULL,
  quantity int NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), notional numeric);
INSERT INTO orders (account, price, quantity) SELECT g % 1000, (g % 997) / 7.0, g % 500 FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE orders;
CHECKPOINT;
SQL
mkdir -p "$tmp/m"
printf '[environments.local]\ndatabase = { url_env = "DATABASE_URL" }\n' > "$tmp/deploy.toml"
cat > "$tmp/m/V1__orders.sql" <<'SQL'
-- deploykit: online
SELECT 1;
SQL
# The client is the new application version: it writes notional itself (expand, then backfill
# the old rows). An old version inserting NULLs would keep the guide's LIMIT loop from ever
# finishing — it would always find new rows to update (seen on the first run of this bench).
cat > "$tmp/client.sql" <<'SQL'
\set id random(1, 5000000)
BEGIN;
SELECT price, quantity, notional FROM orders WHERE id = :id;
UPDATE orders SET quantity = quantity + 1 WHERE id = :id;
INSERT INTO orders (account, price, quantity, notional) VALUES (:id % 1000, 1.5, 1, 1.5);
END;
SQL
sed -i "s/random(1, 5000000)/random(1, $ROWS)/" "$tmp/client.sql"

fresh() {
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db TEMPLATE $tpl"
  # db_migrate's history, with V1 applied, so the method's file is the only pending one.
  DATABASE_URL="$base/$db" "$BIN/db_migrate" --config "$tmp/deploy.toml" --migrations "$tmp/m" -q migrate >/dev/null
  # Start each method with no dirty buffers left from the last one.
  psql "$admin" -qc "CHECKPOINT"
}

# Longest open transaction of the method's sessions (application_name bench_method), sampled
# every 100 ms until told to stop.
watch_locks() {
  local out=$1 max=0 v
  while [ ! -e "$tmp/stop" ]; do
    v=$(psql "$admin" -qAtX -c "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start) * 1000), 0)::bigint FROM pg_stat_activity WHERE application_name = 'bench_method' AND xact_start IS NOT NULL AND state <> 'idle'" 2>/dev/null || echo 0)
    [ "${v:-0}" -gt "$max" ] && max=$v
    sleep 0.1
  done
  echo "$max" > "$out"
}

# run NAME COMMAND...: the client runs from 3 s before the command until 3 s after it; the
# transactions that ended while it ran are judged.
run() {
  local name=$1; shift
  fresh
  rm -f "$tmp/stop" "$tmp"/pgbench_log.* "$tmp/held"
  (cd "$tmp" && exec pgbench -n -f client.sql -c 4 -j 1 -R "$RATE" -T 100000 -l --log-prefix="$tmp/pgbench_log" "$base/$db" > "$tmp/pgbench.out" 2>&1) &
  local client=$!
  watch_locks "$tmp/held" &
  local watcher=$!
  sleep 3
  local t0 t1
  t0=$(date +%s%N)
  if ! "$@" > "$tmp/$name.out" 2>&1; then log "$name failed: $(tail -3 "$tmp/$name.out")"; fi
  t1=$(date +%s%N)
  sleep 3
  touch "$tmp/stop"; wait "$watcher"
  kill -TERM "$client" 2>/dev/null || true; wait "$client" 2>/dev/null || true
  local aborted; aborted=$(grep -c 'aborted' "$tmp/pgbench.out" || true)
  # pgbench's log: client tx latency(us) script epoch_s epoch_us lag(us); latency counts from
  # the scheduled start (open loop). Transactions scheduled while the method ran count, also
  # those it held up until after it ended.
  cat "$tmp"/pgbench_log.* | awk -v t0="$t0" -v t1="$t1" '{ s = ($5 * 1000000 + $6 - $3) * 1000; if (s >= t0 && s <= t1) print $3 / 1000 }' | sort -g > "$tmp/lat"
  local n p50 p99 mx wall
  n=$(wc -l < "$tmp/lat")
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  if [ "$n" -eq 0 ]; then printf '%-28s wall %7s s | no client transaction ended while it ran\n' "$name" "$wall"; return; fi
  p50=$(sed -n "$(( n / 2 + 1 ))p" "$tmp/lat"); p99=$(sed -n "$(( n * 99 / 100 + 1 ))p" "$tmp/lat"); mx=$(tail -1 "$tmp/lat")
  printf '%-28s wall %7s s | client p50 %6.1f ms  p99 %8.1f ms  max %8.1f ms | %d tx of ~%d, %d client(s) aborted | longest transaction %d ms\n' \
    "$name" "$wall" "$p50" "$p99" "$mx" "$n" "$(awk -v w="$wall" -v r="$RATE" 'BEGIN { printf "%d", w * r }')" "$aborted" "$(cat "$tmp/held")"
}

idle() { sleep "$IDLE_S"; }
plain_update() { PGAPPNAME=bench_method psql "$base/$db" -qX -v ON_ERROR_STOP=1 -c "UPDATE orders SET notional = price * quantity"; }
guide_loop() {
  PGAPPNAME=bench_method psql "$base/$db" -qX -v ON_ERROR_STOP=1 <<'SQL'
DO $$
DECLARE n bigint;
BEGIN
  LOOP
    UPDATE orders SET notional = price * quantity
     WHERE id IN (SELECT id FROM orders WHERE notional IS NULL LIMIT 10000);
    GET DIAGNOSTICS n = ROW_COUNT;
    EXIT WHEN n = 0;
    COMMIT;
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SQL
}
ours() {
  cp "$1" "$tmp/m/"
  DATABASE_URL="$base/$db?application_name=bench_method" "$BIN/db_migrate" --config "$tmp/deploy.toml" --migrations "$tmp/m" migrate
  rm -f "$tmp/m/$(basename "$1")"
}
cat > "$tmp/V2__backfill_notional.sql" <<'SQL'
-- deploykit: batch table=orders key=id PACE
UPDATE orders SET notional = price * quantity WHERE id > ${batch.from} AND id <= ${batch.to};
SQL
printf 'SELECT 1;\n' > "$tmp/V2__backfill_notional_rollback.sql"
cat > "$tmp/V2__widen_price.sql" <<'SQL'
-- deploykit: shadow table=orders PACE
ALTER TABLE ${shadow} ALTER COLUMN price TYPE numeric(20,8);
SQL
sed -i "s/ PACE\$/ $PACE/; s/ \$//" "$tmp/V2__backfill_notional.sql" "$tmp/V2__widen_price.sql"
batched() { ours "$tmp/V2__backfill_notional.sql"; }
shadow() { ours "$tmp/V2__widen_price.sql"; }
plain_alter() { PGAPPNAME=bench_method psql "$base/$db" -qX -v ON_ERROR_STOP=1 -c "ALTER TABLE orders ALTER COLUMN price TYPE numeric(20,8)"; }

echo "$ROWS rows; client: pgbench -c 4 -R $RATE (open loop) — per tx: SELECT, UPDATE and INSERT of random rows of orders"
want() { [[ " $METHODS " == *" $1 "* ]]; }
[ -n "$PACE" ] && echo "(c) and (d) with $PACE"
if want idle; then run "idle (no change)" idle; fi
if want a; then run "(a) plain UPDATE" plain_update; fi
if want b; then run "(b) guide's DO-block loop" guide_loop; fi
if want c; then run "(c) db_migrate batch" batched; fi
if want d; then run "(d) db_migrate shadow" shadow; fi
if want e; then run "(e) plain ALTER TYPE" plain_alter; fi
if want idle; then run "idle again (no change)" idle; fi
