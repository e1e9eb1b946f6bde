# Shared helpers for scripts/*: sourced, not run.
# shellcheck shell=bash

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# need CMD:PACKAGE ... — install missing Debian packages when root, else print the command.
need() {
  local missing=() pair cmd pkg
  for pair in "$@"; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || pg_bin "$cmd" >/dev/null || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  # De-duplicate while keeping order.
  local uniq; uniq=$(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++' | tr '\n' ' ')
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages: $uniq"
    if [ -z "${DEPLOYKIT_APT_UPDATED:-}" ]; then
      apt-get update -qq >/dev/null || die "apt-get update failed"
      export DEPLOYKIT_APT_UPDATED=1
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $uniq >/dev/null \
      || die "apt-get install $uniq failed"
  else
    die "missing packages; run: sudo apt-get update && sudo apt-get install -y $uniq"
  fi
}

# PostgreSQL server binaries (initdb, pg_ctl) live outside PATH on Debian.
pg_bin() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/$1" ] && { echo "$d/$1"; return; }
  done
  return 1
}

# The one way scripts find or start PostgreSQL (scripts/test and scripts/stack).
# pg_reachable — print an admin URL that answers: DATABASE_URL, else 127.0.0.1:5432; else fail.
pg_reachable() {
  if [ -n "${DATABASE_URL:-}" ] && psql "$DATABASE_URL" -qAtc 'select 1' >/dev/null 2>&1; then
    echo "$DATABASE_URL"
  elif psql "postgres://postgres@127.0.0.1:5432/postgres" -qAtc 'select 1' >/dev/null 2>&1; then
    echo "postgres://postgres@127.0.0.1:5432/postgres"
  else
    return 1
  fi
}

# pg_throwaway_start DIR PORT — a private initdb cluster in DIR (whatever major version is
# installed), trust auth, listening on 127.0.0.1:PORT; prints its admin URL. As root it runs as
# `postgres`, which must be able to reach DIR.
pg_throwaway_start() {
  local dir=$1 port=$2 as=()
  pg_bin initdb >/dev/null || need initdb:postgresql
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; as=(runuser -u postgres --); fi
  "${as[@]}" "$(pg_bin initdb)" -D "$dir/data" -U postgres -A trust >/dev/null
  "${as[@]}" "$(pg_bin pg_ctl)" -D "$dir/data" -l "$dir/log" -w -t 30 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
  echo "postgres://postgres@127.0.0.1:$port/postgres"
}

# pg_throwaway_stop DIR — stop the cluster pg_throwaway_start made and remove DIR.
pg_throwaway_stop() {
  local dir=$1 as=()
  [ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$(pg_bin pg_ctl)" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_until SECONDS DESCRIPTION CMD... — poll CMD every 100 ms until it succeeds or time runs out.
wait_until() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs)) next_note=$((SECONDS + 5))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && { log "timed out after ${secs}s waiting for $what"; return 1; }
    if [ $SECONDS -ge $next_note ]; then log "still waiting for $what"; next_note=$((SECONDS + 5)); fi
    sleep 0.1
  done
}

# Where the built binaries are: DEPLOYKIT_BIN_DIR, else build release binaries once.
bin_dir() {
  if [ -n "${DEPLOYKIT_BIN_DIR:-}" ]; then echo "$DEPLOYKIT_BIN_DIR"; return; fi
  need cargo:cargo
  (cd "$ROOT" && cargo build --release --workspace --bins --quiet) >&2 || die "cargo build failed"
  echo "$ROOT/target/release"
}

# pyvenv [REQUIREMENTS] — the project's Python tools (pinned; default scripts/requirements-test.txt)
# in $ROOT/.venv; prints the venv's python. Installs only what is missing (a marker per file holds
# its pins' hash); a lock keeps two callers (parallel tests) from building the venv at once.
pyvenv() {
  local venv="$ROOT/.venv" req="${1:-$ROOT/scripts/requirements-test.txt}" sum marker
  sum=$(sha256sum "$req" | cut -d' ' -f1); marker="$venv/.pins-$(basename "$req")"
  mkdir -p "$venv"
  exec {venv_lock}>"$ROOT/.venv.lock"
  flock -w 600 "$venv_lock" || die "another process holds $ROOT/.venv.lock for 10 minutes"
  if [ ! -x "$venv/bin/python" ] && ! python3 -m venv "$venv" >&2; then
    # Debian's python3 needs its venv module as a package of its own.
    rm -rf "$venv"
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null \
        || die "apt-get install python3-venv failed"
      python3 -m venv "$venv" >&2 || die "python3 -m venv failed"
    else
      die "python3 -m venv failed; run: sudo apt-get install -y python3-venv"
    fi
  fi
  if [ "$(cat "$marker" 2>/dev/null)" != "$sum" ]; then
    log "installing Python tools into .venv: $(grep -v '^#' "$req" | tr '\n' ' ')"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2 || die "pip install -r $req failed"
    echo "$sum" > "$marker"
  fi
  exec {venv_lock}>&-
  echo "$venv/bin/python"
}

# ansible_playbook ARGS... — ansible-playbook: the one on PATH when it is at least the pinned
# minor (a Jenkins agent's own), else the project's pinned one in .venv (installed on first use).
ansible_playbook() {
  local py
  if command -v ansible-playbook >/dev/null 2>&1 \
    && ansible-playbook --version 2>/dev/null | head -1 | grep -qE 'core 2\.(1[5-9]|[2-9][0-9])'; then
    ANSIBLE_CONFIG=${ANSIBLE_CONFIG:-$ROOT/ansible.cfg} ansible-playbook "$@"
  else
    py=$(pyvenv "$ROOT/scripts/requirements-deploy.txt")
    ANSIBLE_CONFIG=${ANSIBLE_CONFIG:-$ROOT/ansible.cfg} "$(dirname "$py")/ansible-playbook" "$@"
  fi
}

# pack_service_artefact BIN VERSION OUTDIR — the trading services' release artefact
# (trading_sim stands in for them): OUTDIR/trading-services-VERSION.tar.gz holding bin/trading_sim
# (debug info stripped: every host keeps a copy per release) and VERSION, recorded in
# OUTDIR/SHA256SUMS, which the deploy playbook verifies before touching a host.
pack_service_artefact() {
  local bin=$1 version=$2 out=$3 name stage
  [ -x "$bin/trading_sim" ] || die "$bin/trading_sim not found; run: cargo build --workspace --bins"
  name="trading-services-$version.tar.gz"
  stage=$(mktemp -d); mkdir -p "$stage/bin" "$out"
  strip --strip-debug -o "$stage/bin/trading_sim" "$bin/trading_sim" 2>/dev/null || cp "$bin/trading_sim" "$stage/bin/"
  echo "$version" > "$stage/VERSION"
  tar -czf "$out/$name" -C "$stage" VERSION bin
  rm -rf "$stage"
  touch "$out/SHA256SUMS"
  { grep -v " $name\$" "$out/SHA256SUMS" || true; (cd "$out" && sha256sum "$name"); } > "$out/SHA256SUMS.new"
  mv "$out/SHA256SUMS.new" "$out/SHA256SUMS"
}
