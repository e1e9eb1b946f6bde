#!/usr/bin/env bash
# Stage: the release artefacts in dist/<VERSION>/ with one SHA256SUMS file that a deploy verifies
# before installing: every binary the workspace builds (read from cargo metadata, so a new binary
# needs no edit here), and trading-services-<VERSION>.tar.gz, what the playbooks install on hosts.
# The artefact is the same for every environment: the Package stage runs before any names one.
ENVIRONMENT=${ENVIRONMENT:-any}
source "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
out="dist/${VERSION:?}"
rm -rf "$out"; mkdir -p "$out"
mapfile -t bins < <(cargo metadata --no-deps --format-version 1 --locked \
  | jq -r '.packages[].targets[] | select(.kind | index("bin")) | .name' | sort)
[ "${#bins[@]}" -gt 0 ] || { echo "error: cargo metadata lists no binary" >&2; exit 3; }
for b in "${bins[@]}"; do
  [ -x "$BIN/$b" ] || { echo "error: $BIN/$b is not built; run: cargo build --release --workspace --bins --locked" >&2; exit 3; }
  cp "$BIN/$b" "$out/"
done
(cd "$out" && sha256sum "${bins[@]}" > SHA256SUMS)
pack_service_artefact "$BIN" "$VERSION" "$out"
echo "packaged ${#bins[@]} binaries and trading-services-$VERSION.tar.gz into $out (SHA256SUMS)"
