#!/usr/bin/env bash
# Stage: the release artefact — every binary the workspace builds (read from cargo metadata, so a
# new binary needs no edit here), copied into dist/<VERSION>/ with a SHA256SUMS file that a
# deploy verifies before installing.
source "$(dirname "$0")/lib.sh"
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
echo "packaged ${#bins[@]} binaries into $out (SHA256SUMS)"
