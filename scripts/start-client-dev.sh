#!/usr/bin/env bash
# Runs the RestPipe client agent for development, in the foreground, with DEBUG=1
# (verbose logs of connections and frames) as readable lines (RP_LOG_FORMAT=pretty) and
# local defaults. Ctrl-C drains and stops.
#
#   scripts/start-server-dev.sh        (in another terminal)
#   scripts/start-client-dev.sh
#   curl http://127.0.0.1:8001/server/time
#
# On the first run it makes throwaway dev identities with restpipe-certs in
# $RP_DEV_DIR (default: .dev/ in the repo): a CA, a server identity for
# localhost/127.0.0.1 and a client named dev-client, installed for both nodes.
# Delete the folder to start over. Never use these identities in production.
#
# Defaults, each kept when already set in the environment:
#   RP_CLIENT_TARGET_HOSTNAME=localhost  RP_CLIENT_TARGET_PORT=1234
#   RP_CLIENT_GATEWAY_HOST=127.0.0.1     RP_CLIENT_GATEWAY_PORT=8001
#   RP_CLIENT_CERT_PATH=$RP_DEV_DIR/client   RP_STATSD_HOST= (statsd off)   DEBUG=1
#   RP_LOG_FORMAT=pretty (json for pino's JSON lines)
# For nginx (deploy/nginx/restpipe-client.conf), put the gateway on a unix socket:
#   RP_CLIENT_GATEWAY_SOCKET=/run/restpipe/client-gateway.sock scripts/start-client-dev.sh
# RP_NODE: the node binary (default: `node` on PATH).
set -euo pipefail

program="$(basename -- "$0")"
root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=lib/common.sh
source "$root/scripts/lib/common.sh"

find_node
require_built server/dist/cli.js client/dist/cli.js certs-tool/dist/cli.js
dev_identities "${RP_DEV_DIR:-$root/.dev}"
dev="${RP_DEV_DIR:-$root/.dev}"

export DEBUG="${DEBUG:-1}"
export RP_LOG_FORMAT="${RP_LOG_FORMAT:-pretty}"
export RP_STATSD_HOST="${RP_STATSD_HOST-}"
export RP_CLIENT_CERT_PATH="${RP_CLIENT_CERT_PATH:-$dev/client}"
export RP_CLIENT_TARGET_HOSTNAME="${RP_CLIENT_TARGET_HOSTNAME:-localhost}"
export RP_CLIENT_TARGET_PORT="${RP_CLIENT_TARGET_PORT:-1234}"
export RP_CLIENT_GATEWAY_HOST="${RP_CLIENT_GATEWAY_HOST:-127.0.0.1}"
export RP_CLIENT_GATEWAY_PORT="${RP_CLIENT_GATEWAY_PORT:-8001}"
where="$(gateway_where "${RP_CLIENT_GATEWAY_SOCKET:-}" "$RP_CLIENT_GATEWAY_HOST" "$RP_CLIENT_GATEWAY_PORT")"

printf '%s: dialing %s:%s, gateway on %s; try: curl %s/server/time\n' "$program" \
  "$RP_CLIENT_TARGET_HOSTNAME" "$RP_CLIENT_TARGET_PORT" "$where" \
  "$(curl_base "$where")" >&2
exec "$node" "$root/client/dist/cli.js"
