#!/usr/bin/env bash
# Runs the RestPipe client agent for production, in the foreground: reads the
# environment file, then execs `node client/dist/cli.js` (restpipe-client), so
# signals reach the node directly (SIGTERM drains and exits 0) and its JSON
# logs go to stdout: the journal under systemd (deploy/systemd/restpipe-client.service).
#
#   scripts/start-client-prod.sh [ENV_FILE]        default: /etc/restpipe/client.env
#
# ENV_FILE has one NAME=value per line (deploy/env/client.env.example): the format
# systemd's EnvironmentFile= reads too; it is parsed here, never run as shell code.
# Variables already set in the environment win over the file (as everywhere in
# RestPipe: the environment wins); under systemd the unit has loaded the same file.
# RP_NODE: the node binary (default: `node` on PATH).
# Exit codes: 2 when the environment file is missing or malformed; otherwise those
# of restpipe-client (0 after SIGTERM, 2 for a bad setting, 1 when it cannot start).
set -euo pipefail

program="$(basename -- "$0")"
root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
env_file="${1:-/etc/restpipe/client.env}"
entry="$root/client/dist/cli.js"

fail() {
  printf '%s: %s\n' "$program" "$*" >&2
  exit 2
}

[[ -e $env_file ]] || fail "environment file $env_file not found: copy deploy/env/client.env.example there and edit it, or pass the file to use as the first argument"
[[ -f $env_file && -r $env_file ]] || fail "environment file $env_file is not a readable file for user $(id -un) (install it mode 0640, owner root, group restpipe)"

# NAME=value lines; blank lines and # comments skipped; one pair of surrounding
# quotes removed. A name set in the environment before we started is kept.
declare -A from_file=()
lineno=0
while IFS= read -r line || [[ -n $line ]]; do
  lineno=$((lineno + 1))
  line="${line%$'\r'}"
  line="${line#"${line%%[![:space:]]*}"}"
  [[ -z $line || $line == '#'* ]] && continue
  [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || fail "$env_file:$lineno: expected NAME=value, not: $line"
  name="${BASH_REMATCH[1]}"
  value="${BASH_REMATCH[2]}"
  value="${value%"${value##*[![:space:]]}"}"
  if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value="${BASH_REMATCH[1]}"; fi
  if [[ -n ${!name+set} && -z ${from_file[$name]+set} ]]; then continue; fi
  from_file[$name]=1
  export "$name=$value"
done <"$env_file"

node="${RP_NODE:-$(command -v node || true)}"
[[ -n $node && -x $node ]] || fail "node not found: install Node.js 20.19 or newer, or set RP_NODE to its path"
[[ -f $entry ]] || fail "$entry is missing: build RestPipe first (npm ci, or npx tsc -b, in $root)"

printf '%s: starting restpipe-client with %s\n' "$program" "$env_file" >&2
exec "$node" "$entry"
