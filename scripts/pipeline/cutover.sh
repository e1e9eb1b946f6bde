#!/usr/bin/env bash
# Stage: warm up and verify the idle colour, then switch to it with a watch (automatic rollback).
source "$(dirname "$0")/lib.sh"
"$BIN/cutover" -e "$ENVIRONMENT" warmup --to "${COLOR:?}" --junit "$REPORTS/cutover_warmup.xml"
"$BIN/cutover" -e "$ENVIRONMENT" verify --to "$COLOR" --expect-version "${VERSION:?}" --junit "$REPORTS/cutover_verify.xml"
"$BIN/cutover" -e "$ENVIRONMENT" run --to "$COLOR" --expect-version "$VERSION" --watch "${WATCH:-5m}" \
  --junit "$REPORTS/cutover.xml" --format json > "$REPORTS/cutover.json"
