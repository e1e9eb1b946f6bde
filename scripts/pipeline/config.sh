#!/usr/bin/env bash
# Stage: a config change (guide §8), one STEP of the config pipeline:
#   validate  both environments' files of CONFIG_TYPE, offline (no credentials needed)
#   deploy    the file into ENVIRONMENT: validate, live checks, back up, install, reload and
#             read back on every server that reads it, all or nothing
#   show      the read-back: the file every server of ENVIRONMENT uses (show_config)
# Every environment gets production's file (config/production/<type>), so staging tests the very
# bytes production will get — validate_config refuses production otherwise (promote_from).
# Database connections and API endpoints name each environment's own hosts: each gets its own.
# Results (JUnit, JSON for notify.sh) go to $REPORTS; the Jenkins log gets the progress lines.
source "$(dirname "$0")/lib.sh"
type=${CONFIG_TYPE:?set CONFIG_TYPE (risk-limits, strategy, app, database, endpoints)}
case "$type" in
  risk-limits) name=risk_limits.yaml ;;
  strategy|app|database|endpoints) name=$type.yaml ;;
  *) echo "error: CONFIG_TYPE $type is not a config type: risk-limits, strategy, app, database, endpoints" >&2; exit 2 ;;
esac
case "$type" in
  database|endpoints) file=config/$ENVIRONMENT/$name ;;
  *) file=config/production/$name ;;
esac
case "${STEP:?set STEP (validate, deploy, show)}" in
  validate)
    for e in staging production; do
      "$BIN/validate_config" -e "$e" --schema "$type" "config/$e/$name" --junit "$REPORTS/config_validate_$e.xml" \
        --format json > "$REPORTS/config_validate_$e.json"
    done ;;
  deploy)
    args=()
    [ -n "${APPROVE_INCREASE:-}" ] && args+=(--approve-increase "$APPROVE_INCREASE")
    "$BIN/validate_config" -e "$ENVIRONMENT" --schema "$type" "$file" --deploy "${args[@]}" \
      --junit "$REPORTS/config_deploy_$ENVIRONMENT.xml" --format json > "$REPORTS/config_deploy_$ENVIRONMENT.json" ;;
  show)
    "$BIN/show_config" -e "$ENVIRONMENT" --type "$type" --repo-file "$file" \
      --junit "$REPORTS/config_show_$ENVIRONMENT.xml" --format json > "$REPORTS/config_show_$ENVIRONMENT.json" ;;
  *) echo "error: STEP $STEP is not validate, deploy or show" >&2; exit 2 ;;
esac
