#!/usr/bin/env bash
# Stage: validate and deploy a trading config (guide §8).
source "$(dirname "$0")/lib.sh"
"$BIN/validate_config" -e "$ENVIRONMENT" "${CONFIG_FILE:?}" --live --junit "$REPORTS/config_validate.xml"
"$BIN/validate_config" -e "$ENVIRONMENT" "$CONFIG_FILE" --deploy --junit "$REPORTS/config_deploy.xml"
