#!/usr/bin/env bash
# Stage: maintenance mode on|off.
source "$(dirname "$0")/lib.sh"
case ${1:?on|off} in
  on) "$BIN/maintenance_mode" -e "$ENVIRONMENT" --enable --reason "${REASON:-deployment}" --deadline 60s --junit "$REPORTS/maintenance_on.xml" ;;
  off) "$BIN/maintenance_mode" -e "$ENVIRONMENT" --disable --junit "$REPORTS/maintenance_off.xml" ;;
esac
