#!/usr/bin/env bash
# Runs the RestPipe server node for production, in the foreground: reads the
# environment file, then execs `node server/dist/cli.js` (restpipe-server), so
# signals reach the node directly (SIGTERM drains and exits 0) and its JSON
# logs go to stdout: the journal under systemd (deploy/systemd/restpipe-server.service).
#
#   scripts/start-server-prod.sh [ENV_FILE]        default: /etc/restpipe/server.env
#
# ENV_FILE has one NAME=value per line (deploy/env/server.env.example): the format
# systemd's EnvironmentFile= reads too; it is parsed here, never run as shell code.
# Variables already set in the environment win over the file (as everywhere in
# RestPipe: the environment wins); under systemd the unit has loaded the same file.
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
require_built server/dist/cli.js

printf '%s: starting restpipe-server with %s\n' "$program" "$env_file" >&2
exec "$node" "$root/server/dist/cli.js"
