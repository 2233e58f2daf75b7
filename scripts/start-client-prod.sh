#!/usr/bin/env bash
# Runs the RestPipe client agent for production, in the foreground: reads the
# environment file, then execs restpipe-client with node, so signals reach the
# node directly (SIGTERM drains and exits 0) and its JSON logs go to stdout.
#
#   scripts/start-client-prod.sh [ENV_FILE]        default: /etc/restpipe/client.env
#
# Installed with npm, the restpipe package carries this script
# (node_modules/restpipe/scripts/) and it runs that package's restpipe-client
# (bin/restpipe-client.js); in a checkout it runs the build (client/dist/cli.js).
#
# ENV_FILE has one NAME=value per line (deploy/env/client.env.example): the format
# systemd's EnvironmentFile= reads too; it is parsed here, never run as shell code.
# Variables already set in the environment win over the file (as everywhere in
# RestPipe: the environment wins). The systemd unit (deploy/systemd/restpipe-client.service)
# runs restpipe-client itself and reads the file with EnvironmentFile=; this script
# runs the node by hand with the same settings, or under another supervisor.
# RP_NODE: the node binary (default: `node` on PATH).
# Exit codes: 2 when the environment file is missing or malformed; otherwise those
# of restpipe-client (0 after SIGTERM, 2 for a bad setting, 1 when it cannot start).
set -euo pipefail

program="$(basename -- "$0")"
root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=lib/common.sh
source "$root/scripts/lib/common.sh"
env_file="${1:-/etc/restpipe/client.env}"

load_env_file "$env_file" client.env.example
find_node
if [[ -f $root/bin/restpipe-client.js ]]; then
  cli="$root/bin/restpipe-client.js"
else
  require_built client/dist/cli.js
  cli="$root/client/dist/cli.js"
fi

printf '%s: starting restpipe-client with %s\n' "$program" "$env_file" >&2
exec "$node" "$cli"
