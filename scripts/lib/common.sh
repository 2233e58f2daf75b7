# Shared by the start scripts (sourced, not run): error exit, finding node,
# reading an environment file, making dev identities. Expects `program` and
# `root` to be set by the script that sources it.

fail() {
  printf '%s: %s\n' "$program" "$*" >&2
  exit 2
}

# Sets `node` to the node binary: $RP_NODE, else `node` on PATH.
find_node() {
  node="${RP_NODE:-$(command -v node || true)}"
  [[ -n $node && -x $node ]] || fail "node not found: install Node.js 20.19 or newer, or set RP_NODE to its path"
}

# Exports the NAME=value lines of an environment file (the format systemd's
# EnvironmentFile= reads): blank lines and # comments skipped, one pair of
# surrounding quotes removed, never run as shell code. A name set in the
# environment before we started is kept: the environment wins.
load_env_file() {
  local env_file="$1" example="$2" line name value lineno=0
  [[ -e $env_file ]] || fail "environment file $env_file not found: copy deploy/env/$example there and edit it, or pass the file to use as the first argument"
  [[ -f $env_file && -r $env_file ]] || fail "environment file $env_file is not a readable file for user $(id -un) (install it mode 0640, owner root, group restpipe)"
  declare -A from_file=()
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
}

# Checks that the built files exist.
require_built() {
  local built
  for built in "$@"; do
    [[ -f $root/$built ]] || fail "$root/$built is missing: build RestPipe first (npm ci, or npx tsc -b, in $root)"
  done
}

# Throwaway dev identities in $1, made once (under a lock: the other dev
# script may be starting too): a CA, a server identity for
# localhost/127.0.0.1 and a client named dev-client, installed for both nodes.
dev_identities() {
  local dev="$1"
  mkdir -p -- "$dev"
  if command -v flock >/dev/null; then
    exec 9>"$dev/.lock"
    flock 9
    make_dev_identities "$dev"
    flock -u 9
    exec 9>&-
  else
    make_dev_identities "$dev"
  fi
}

make_dev_identities() {
  local dev="$1" ids="$1/identities"
  [[ -f $dev/server/restpipe.server.crt.pem && -f $dev/client/restpipe.client.crt.pem ]] && return 0
  printf '%s: making dev identities in %s\n' "$program" "$dev" >&2
  certs() { "$node" "$root/certs-tool/dist/cli.js" "$@" >/dev/null; }
  rm -rf -- "$ids" "$dev/server" "$dev/client"
  certs create-ca --out "$ids" --name "RestPipe Dev CA"
  certs create-server --out "$ids" --name localhost --dns localhost --ip 127.0.0.1
  certs create-client --out "$ids" --name dev-client
  certs set-identity server --dir "$dev/server" --key "$ids/server.key.pem" --cert "$ids/server.crt.pem" --ca "$ids/ca.crt.pem"
  certs set-identity client --dir "$dev/client" --key "$ids/dev-client.key.pem" --cert "$ids/dev-client.crt.pem" --ca "$ids/ca.crt.pem"
}

# Prints where a gateway listens: unix:<path> or http://host:port; makes the socket's folder.
gateway_where() {
  local socket="$1" host="$2" port="$3"
  if [[ -n $socket ]]; then
    mkdir -p -- "$(dirname -- "$socket")"
    printf 'unix:%s' "$socket"
  else
    printf 'http://%s:%s' "$host" "$port"
  fi
}

# The curl base for a gateway address from gateway_where.
curl_base() {
  local where="$1"
  if [[ $where == unix:* ]]; then printf -- '--unix-socket %s http://localhost' "${where#unix:}"; else printf '%s' "$where"; fi
}
