#!/usr/bin/env bash
# Runs the RestPipe server node for production, in the foreground: reads the
# environment file, then execs restpipe-server with node, so signals reach the
# node directly (SIGTERM drains and exits 0) and its JSON logs go to stdout.
#
#   scripts/start-server-prod.sh [ENV_FILE]        default: /etc/restpipe/server.env
#
# Installed with npm, the restpipe package carries this script
# (node_modules/restpipe/scripts/) and it runs that package's restpipe-server
# (bin/restpipe-server.js); in a checkout it runs the build (server/dist/cli.js).
#
# ENV_FILE has one NAME=value per line (deploy/env/server.env.example): the format
# systemd's EnvironmentFile= reads too; it is parsed here, never run as shell code.
# Variables already set in the environment win over the file (as everywhere in
# RestPipe: the environment wins). The systemd unit (deploy/systemd/restpipe-server.service)
# runs restpipe-server itself and reads the file with EnvironmentFile=; this script
# runs the node by hand with the same settings, or under another supervisor.
# RP_NODE: the node binary (default: `node` on PATH).
# Exit codes: 2 when the environment file is missing or malformed; otherwise those
# of restpipe-server (0 after SIGTERM, 2 for a bad setting, 1 when it cannot start).
set -euo pipefail

program="$(basename -- "$0")"
root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=lib/common.sh
source "$root/scripts/lib/common.sh"
env_file="${1:-/etc/restpipe/server.env}"

load_env_file "$env_file" server.env.example
find_node
if [[ -f $root/bin/restpipe-server.js ]]; then
  cli="$root/bin/restpipe-server.js"
else
  require_built server/dist/cli.js
  cli="$root/server/dist/cli.js"
fi

printf '%s: starting restpipe-server with %s\n' "$program" "$env_file" >&2
exec "$node" "$cli"
