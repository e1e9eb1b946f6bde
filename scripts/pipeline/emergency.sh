#!/usr/bin/env bash
# Stage: one of the guide's §10 emergency procedures (PIPELINE=emergency), on ENVIRONMENT.
#   ACTION=stop                emergency_stop: every trading server at once (no lock, no drain)
#   ACTION=rollback            emergency_rollback: traffic back on the previous colour, whatever the journal says
#   ACTION=show-config         show_config: the config each risk engine uses vs disk vs repository (§10 Issue 5)
#   ACTION=isolate SERVER=N    isolate_server N (REASON, WORKING_ORDERS=cancel|keep)
#   ACTION=return SERVER=N     isolate_server N --return (healthy, its colour's version, smoke)
source "$(dirname "$0")/lib.sh"
case ${ACTION:?set ACTION to stop, rollback, show-config, isolate or return} in
  stop) "$BIN/emergency_stop" -e "$ENVIRONMENT" --reason "${REASON:-trading halted}" --junit "$REPORTS/emergency_stop.xml" ;;
  isolate) "$BIN/isolate_server" -e "$ENVIRONMENT" "${SERVER:?set SERVER to the server to isolate}" --reason "${REASON:-isolated from Jenkins}" --working-orders "${WORKING_ORDERS:-cancel}" --junit "$REPORTS/isolate_server.xml" ;;
  rollback) "$BIN/emergency_rollback" -e "$ENVIRONMENT" --reason "${REASON:-total deployment failure}" --junit "$REPORTS/emergency_rollback.xml" ;;
  show-config) "$BIN/show_config" -e "$ENVIRONMENT" --junit "$REPORTS/show_config.xml" ;;
  return) "$BIN/isolate_server" -e "$ENVIRONMENT" "${SERVER:?set SERVER to the server to return}" --return --junit "$REPORTS/isolate_server.xml" ;;
  *) echo "ACTION must be stop, rollback, show-config, isolate or return (not '$ACTION')" >&2; exit 2 ;;
esac
