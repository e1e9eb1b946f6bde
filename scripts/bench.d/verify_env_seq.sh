#!/usr/bin/env bash
# The competitor for `scripts/bench verify_env`: the same checks as a sequential shell script,
# the way verify_deployment_env.sh does them.
set -u
fail=0
ver() { "$@" 2>&1 | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -1; }
ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }
if [ -z "$(git status --porcelain --untracked-files=all)" ]; then echo "[OK] Git repository clean"; else echo "[FAIL] Git repository clean"; fail=1; fi
if up=$(git rev-parse --abbrev-ref --symbolic-full-name '@{u}' 2>/dev/null); then
  if [ "$(git rev-list --count "HEAD..@{u}")" = 0 ]; then echo "[OK] Latest code pulled ($up)"; else echo "[FAIL] behind"; fail=1; fi
else echo "[WARN] Latest code pulled: no upstream"; fi
for spec in git:2.40 docker:24 ssh-keygen: curl: jq: psql: haproxy:; do
  t=${spec%%:*}; min=${spec#*:}
  command -v "$t" >/dev/null || { echo "[FAIL] $t missing"; fail=1; continue; }
  [ "$t" = ssh-keygen ] && { echo "[OK] $t"; continue; }
  if [ "$t" = haproxy ]; then v=$(ver haproxy -v); else v=$(ver "$t" --version); fi
  if [ -n "$min" ] && ! ge "$v" "$min"; then echo "[FAIL] $t $v < $min"; fail=1; else echo "[OK] $t $v"; fi
done
for v in BENCH_CRED_A BENCH_CRED_B; do [ -n "${!v:-}" ] || { echo "[FAIL] \$$v missing"; fail=1; }; done
echo "[OK] Required credentials available"
exit $fail
