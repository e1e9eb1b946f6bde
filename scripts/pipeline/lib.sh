# Shared by the stage scripts: where the binaries and reports are. Sourced, not run.
# shellcheck shell=bash
set -euo pipefail
BIN=${BIN:-target/release}
REPORTS=${REPORTS:-reports}
ENVIRONMENT=${ENVIRONMENT:?set ENVIRONMENT (dev, staging, production)}
mkdir -p "$REPORTS"
