#!/usr/bin/env bash
# Runs the RestPipe server node for development, in the foreground, with DEBUG=1
# (verbose logs of connections and frames) and local defaults. Ctrl-C drains and stops.
#
#   scripts/start-server-dev.sh
#   scripts/start-client-dev.sh        (in another terminal)
#   curl http://127.0.0.1:8002/client/dev-client/time
#
# On the first run it makes throwaway dev identities with restpipe-certs in
# $RP_DEV_DIR (default: .dev/ in the repo): a CA, a server identity for
# localhost/127.0.0.1 and a client named dev-client, installed for both nodes.
# Delete the folder to start over. Never use these identities in production.
#
# Defaults, each kept when already set in the environment:
#   RP_SERVER_BIND_INTERFACE=127.0.0.1  RP_SERVER_BIND_PORT=1234
#   RP_SERVER_GATEWAY_HOST=127.0.0.1    RP_SERVER_GATEWAY_PORT=8002
#   RP_SERVER_CERT_PATH=$RP_DEV_DIR/server   RP_STATSD_HOST= (statsd off)   DEBUG=1
# For nginx (deploy/nginx/restpipe-server.conf), put the gateway on a unix socket:
#   RP_SERVER_GATEWAY_SOCKET=/run/restpipe/server-gateway.sock scripts/start-server-dev.sh
# RP_NODE: the node binary (default: `node` on PATH).
set -euo pipefail

program="$(basename -- "$0")"
root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
dev="${RP_DEV_DIR:-$root/.dev}"
node="${RP_NODE:-$(command -v node || true)}"

fail() {
  printf '%s: %s\n' "$program" "$*" >&2
  exit 2
}

[[ -n $node && -x $node ]] || fail "node not found: install Node.js 20.19 or newer, or set RP_NODE to its path"
for built in server/dist/cli.js client/dist/cli.js certs-tool/dist/cli.js; do
  [[ -f $root/$built ]] || fail "$root/$built is missing: build first (npm ci, or npx tsc -b, in $root)"
done

# Dev identities, made once (under a lock: the other dev script may be starting too).
make_dev_identities() {
  [[ -f $dev/server/restpipe.server.crt.pem && -f $dev/client/restpipe.client.crt.pem ]] && return 0
  printf '%s: making dev identities in %s\n' "$program" "$dev" >&2
  local ids="$dev/identities"
  certs() { "$node" "$root/certs-tool/dist/cli.js" "$@" >/dev/null; }
  rm -rf -- "$ids" "$dev/server" "$dev/client"
  certs create-ca --out "$ids" --name "RestPipe Dev CA"
  certs create-server --out "$ids" --name localhost --dns localhost --ip 127.0.0.1
  certs create-client --out "$ids" --name dev-client
  certs set-identity server --dir "$dev/server" --key "$ids/server.key.pem" --cert "$ids/server.crt.pem" --ca "$ids/ca.crt.pem"
  certs set-identity client --dir "$dev/client" --key "$ids/dev-client.key.pem" --cert "$ids/dev-client.crt.pem" --ca "$ids/ca.crt.pem"
}
mkdir -p -- "$dev"
if command -v flock >/dev/null; then
  exec 9>"$dev/.lock"
  flock 9
  make_dev_identities
  flock -u 9
  exec 9>&-
else
  make_dev_identities
fi

export DEBUG="${DEBUG:-1}"
export RP_STATSD_HOST="${RP_STATSD_HOST-}"
export RP_SERVER_CERT_PATH="${RP_SERVER_CERT_PATH:-$dev/server}"
export RP_SERVER_BIND_INTERFACE="${RP_SERVER_BIND_INTERFACE:-127.0.0.1}"
export RP_SERVER_BIND_PORT="${RP_SERVER_BIND_PORT:-1234}"
export RP_SERVER_GATEWAY_HOST="${RP_SERVER_GATEWAY_HOST:-127.0.0.1}"
export RP_SERVER_GATEWAY_PORT="${RP_SERVER_GATEWAY_PORT:-8002}"
if [[ -n ${RP_SERVER_GATEWAY_SOCKET:-} ]]; then
  mkdir -p -- "$(dirname -- "$RP_SERVER_GATEWAY_SOCKET")"
  where="unix:$RP_SERVER_GATEWAY_SOCKET"
else
  where="http://$RP_SERVER_GATEWAY_HOST:$RP_SERVER_GATEWAY_PORT"
fi

printf '%s: pipe on %s:%s, gateway on %s; try: curl %s/client/dev-client/time\n' "$program" \
  "$RP_SERVER_BIND_INTERFACE" "$RP_SERVER_BIND_PORT" "$where" \
  "$([[ $where == unix:* ]] && printf -- '--unix-socket %s http://localhost' "$RP_SERVER_GATEWAY_SOCKET" || printf '%s' "$where")" >&2
exec "$node" "$root/server/dist/cli.js"
