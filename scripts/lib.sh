# Shared helpers of the node scripts. Each script sources this file; the program inlines it in the command text
# in place of that line (see src/scripts.ts), since the nodes have no copy of it.
# shellcheck shell=bash

set -euo pipefail

SCRIPT_NAME=${SCRIPT_NAME:-ray-cluster}

die() {
    echo "${SCRIPT_NAME}: error: $*" >&2
    exit 1
}

log() {
    echo "${SCRIPT_NAME}: $*"
}

# Root on test hosts and custom images, a sudo-capable login user on Ubuntu.
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
else
    SUDO=(sudo -n)
fi

# shellcheck disable=SC2034 # used by the scripts that source this file
RAY_VENV_DEFAULT="${HOME}/ray-venv"
# shellcheck disable=SC2034
RAY_STATE_DIR="${HOME}/.ray-cluster"

# Every Ray process and client on a node runs with token authentication and without the usage-stats prompt.
# The venv leads PATH so that job entrypoints such as `python script.py` run in it.
ray_env() {
    local venv=$1
    export PATH="${venv}/bin:${PATH}" VIRTUAL_ENV=$venv
    export RAY_AUTH_MODE=token
    export RAY_USAGE_STATS_ENABLED=0
    export RAY_USAGE_STATS_PROMPT_ENABLED=0
}

# Replaces a file's content in place (bind-mounted files such as /etc/hosts cannot be renamed over).
write_in_place() {
    local target=$1 content=$2
    if [ "$(cat "$target" 2>/dev/null)" = "$content" ]; then
        return 1
    fi
    printf '%s\n' "$content" | "${SUDO[@]}" tee "$target" >/dev/null
}

# Reads the cluster token from stdin into Ray's default token file, readable by its owner only.
install_auth_token() {
    local token
    token=$(cat)
    [ -n "$token" ] || die "no Ray auth token on stdin"
    mkdir -p "${HOME}/.ray"
    chmod 700 "${HOME}/.ray"
    if [ "$(cat "${HOME}/.ray/auth_token" 2>/dev/null)" != "$token" ]; then
        (umask 077 && printf '%s' "$token" > "${HOME}/.ray/auth_token")
    fi
}

# A node's record of what it started, so a re-run leaves a Ray that already matches alone.
state_matches() {
    local file=$1 desired=$2
    [ -f "$file" ] && [ "$(cat "$file")" = "$desired" ]
}

# Whether this user runs a process named by PATTERN here. Matched by process name: a pattern on full command
# lines would also match the text of the script asking.
ray_running() {
    pgrep -u "$(id -u)" -x "$1" >/dev/null 2>&1
}

# Whether HOST accepts TCP connections on PORT; bash's /dev/tcp costs far less than starting Python to ask.
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash, from its own arguments
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' port_open "$1" "$2" 2>/dev/null
}

# Starts Ray afresh from RAY (the venv's ray command) with the given `ray start` arguments and records DESIRED in
# STATE_FILE once it runs; whatever ran before is stale. The daemons get no handle on the SSH session's output,
# or the session would never end. Usage: restart_ray RAY STATE_FILE DESIRED LOG_NAME ray-start-args...
restart_ray() {
    local ray=$1 state_file=$2 desired=$3 start_log="${RAY_STATE_DIR}/$4.log"
    shift 4
    # `ray stop` alone costs seconds of Python start-up; skip it when nothing runs from this venv (daemons, the
    # dashboard and workers all do; this script's own command line starts with bash, so it never matches).
    if pgrep -u "$(id -u)" -f "^${ray%/bin/ray}/" >/dev/null 2>&1; then
        "$ray" stop --force >/dev/null 2>&1 || true
    fi
    rm -f "$state_file"
    mkdir -p "$RAY_STATE_DIR"
    if ! "$ray" start "$@" --disable-usage-stats </dev/null >"$start_log" 2>&1; then
        tail -n 40 "$start_log" >&2
        die "ray start $* failed; log above and in ${start_log}"
    fi
    printf '%s\n' "$desired" > "$state_file"
}
