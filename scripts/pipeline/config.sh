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
type=${CONFIG_TYPE:?set CONFIG_TYPE (auto, risk-limits, strategy, app, database, endpoints)}
# auto: the one config type the build's commits change (CHANGED_PATHS, from the Jenkinsfile).
if [ "$type" = auto ]; then
  types=$(for p in ${CHANGED_PATHS:-}; do
    case "$(basename "$p")" in
      risk_limits.yaml) echo risk-limits ;;
      strategy.yaml|app.yaml|database.yaml|endpoints.yaml) basename "$p" .yaml ;;
    esac
  done | sort -u)
  case $(printf '%s\n' "$types" | grep -c .) in
    1) type=$types ;;
    0) echo "error: CONFIG_TYPE=auto but this build changes no config/<environment>/<type>.yaml (changed: ${CHANGED_PATHS:-nothing}); run PIPELINE=config with CONFIG_TYPE" >&2; exit 2 ;;
    *) echo "error: this build changes several config types ($(tr '\n' ' ' <<< "$types")): deploy one at a time, PIPELINE=config with CONFIG_TYPE" >&2; exit 2 ;;
  esac
  echo "config change: $type (from ${CHANGED_PATHS})" >&2
fi
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
