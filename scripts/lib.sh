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

# Replaces a file's content in place (bind-mounted files such as /etc/hosts cannot be renamed over); succeeds only
# when it wrote.
write_in_place() {
    local target=$1 content=$2
    if [ "$(cat "$target" 2>/dev/null)" = "$content" ]; then
        return 1
    fi
    printf '%s\n' "$content" | "${SUDO[@]}" tee "$target" >/dev/null
}

# Reads the cluster token from stdin into Ray's default token file, readable by its owner only. Succeeds only
# when the token changed, so that Ray is restarted with the new one.
install_auth_token() {
    local token
    token=$(cat)
    [ -n "$token" ] || die "no Ray auth token on stdin"
    mkdir -p "${HOME}/.ray"
    chmod 700 "${HOME}/.ray"
    if [ "$(cat "${HOME}/.ray/auth_token" 2>/dev/null)" = "$token" ]; then
        return 1
    fi
    (umask 077 && printf '%s' "$token" > "${HOME}/.ray/auth_token")
}

# A node's record of what it started, so a re-run leaves a Ray that already matches alone.
state_matches() {
    local file=$1 desired=$2
    [ -f "$file" ] && [ "$(cat "$file")" = "$desired" ]
}

# Installs systemd unit NAME (ray-job-archive.service …) with TEXT, reloading systemd if it changed; returns 0 when it
# changed, 1 when it was already so. Usage: install_unit NAME TEXT
install_unit() {
    if install_if_changed "/etc/systemd/system/$1" 644 "$2"; then
        "${SUDO[@]}" systemctl daemon-reload
        return 0
    fi
    return 1
}

# Enables service UNIT and (re)starts it unless it runs already and CHANGED is no; returns 0 when it (re)started it,
# 1 when it left it running. Usage: ensure_service_running UNIT CHANGED
ensure_service_running() {
    "${SUDO[@]}" systemctl enable --quiet "$1"
    if systemctl is-active --quiet "$1" && [ "$2" = no ]; then
        return 1
    fi
    "${SUDO[@]}" systemctl restart "$1"
}

# Installs the AWS SDK (REQUIREMENTS, one per word, pinned) into VENV unless exactly this list is there already, as
# autostop, the job archive and the autoscaler each need; a recreated venv loses the marker and gets it again.
# Returns 0 when it installed it, 1 when it was there. Usage: ensure_aws_sdk VENV INSTALLER INDEX_URL REQUIREMENTS
ensure_aws_sdk() {
    local venv=$1 installer=$2 index_url=$3 requirements=$4
    local marker="${venv}/.ray-cluster-aws-sdk"
    if state_matches "$marker" "$requirements"; then
        return 1
    fi
    # shellcheck disable=SC2086 # one requirement per word
    venv_install "$venv" "$installer" "$index_url" $requirements \
        || die "could not install the AWS SDK (${requirements}) into ${venv} from ${index_url:-PyPI} with ${installer}"
    printf '%s\n' "$requirements" > "$marker"
}

# Waits, with a bound, until cloud-init has finished (the login user, host keys and hostname are set up then; nothing
# else may start before), dying with cloud-init's own account when it failed or did not finish. A host without
# cloud-init has nothing to wait for. Usage: wait_for_cloud_init TIMEOUT WHERE (WHERE names the host in messages)
wait_for_cloud_init() {
    local timeout_s=$1 where=$2 rc=0
    if ! command -v cloud-init >/dev/null 2>&1; then
        log "no cloud-init on this host; nothing to wait for"
        return 0
    fi
    timeout "$timeout_s" cloud-init status --wait >/dev/null || rc=$?
    case $rc in
        0|2) ;; # 2: done with recoverable errors, which still leaves the node usable
        124) die "cloud-init did not finish within ${timeout_s}s on ${where}: $(cloud-init status 2>&1 | tr '\n' ' ')" ;;
        *) die "cloud-init failed on ${where}: $(cloud-init status --long 2>&1 | tr '\n' ' ')" ;;
    esac
    log "cloud-init done"
}

# Whether this user runs a process named by PATTERN here. Matched by process name: a pattern on full command
# lines would also match the text of the script asking.
ray_running() {
    pgrep -u "$(id -u)" -x "$1" >/dev/null 2>&1
}

# Whether this user runs Ray's monitor (the autoscaler) from VENV. Anchored at the start of the command line, which
# for the script asking is bash's.
ray_running_monitor() {
    pgrep -u "$(id -u)" -f "^${1}/bin/python -m ray\.autoscaler\._private\.monitor" >/dev/null 2>&1
}

# Whether HOST accepts TCP connections on PORT; bash's /dev/tcp costs far less than starting Python to ask.
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash, from its own arguments
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' port_open "$1" "$2" 2>/dev/null
}

# Stops Ray processes of this user that no Ray service runs, such as a Ray started by hand or by an older version
# of this stack. `ray stop` alone costs seconds of Python start-up, so it runs only when some process runs from
# VENV (daemons, the dashboard and workers all do; a script's own command line starts with bash, never matching).
stop_unmanaged_ray() {
    local venv=$1
    if systemctl is-active --quiet ray-head.service ray-worker.service ray-autoscaler.service 2>/dev/null; then
        return 0
    fi
    if pgrep -u "$(id -u)" -f "^${venv}/" >/dev/null 2>&1; then
        "${venv}/bin/ray" stop --force </dev/null >/dev/null 2>&1 || true
    fi
}

# Writes CONTENT to TARGET as root with MODE, only when it differs; succeeds only when it wrote.
install_if_changed() {
    local target=$1 mode=$2 content=$3
    if [ -f "$target" ] && [ "$(cat "$target")" = "$content" ]; then
        return 1
    fi
    "${SUDO[@]}" mkdir -p "$(dirname "$target")"
    printf '%s\n' "$content" | "${SUDO[@]}" tee "${target}.new" >/dev/null
    "${SUDO[@]}" chmod "$mode" "${target}.new"
    "${SUDO[@]}" mv -f "${target}.new" "$target"
}

# Installs REQUIREMENTS into the venv VENV with INSTALLER (uv or pip) from the package index INDEX_URL (empty:
# PyPI). uv is the one install-ray.sh fetched. Usage: venv_install VENV INSTALLER INDEX_URL REQUIREMENT...
venv_install() {
    local venv=$1 installer=$2 index_url=$3
    shift 3
    local index=()
    if [ -n "$index_url" ]; then
        index=(--index-url "$index_url")
    fi
    if [ "$installer" = uv ]; then
        "${RAY_STATE_DIR}/bin/uv" pip install --quiet --python "${venv}/bin/python" "${index[@]}" "$@"
    else
        # pip refuses a plain-http index unless its host is trusted; the user chose this index explicitly.
        case $index_url in
            http://*) local host=${index_url#http://}; index+=(--trusted-host "${host%%[/:]*}") ;;
        esac
        "${venv}/bin/python" -m pip --disable-pip-version-check --no-input -q install "${index[@]}" "$@"
    fi
}

RAY_RUNNER=/usr/local/lib/ray-cluster/ray-node-run.sh
RAY_SETTINGS_DIR=/etc/ray-cluster

# Installs and enables UNIT (ray-head or ray-worker) to run Ray from VENV at VERSION with the role's SETTINGS
# (KEY=VALUE lines), reading the cluster token from stdin. The service is restarted when the unit, the runner, the
# settings or the token changed, started when it is not running, and left alone otherwise, so a re-run restarts
# nothing. Prints started, restarted or running.
# Usage: ensure_ray_service UNIT VENV VERSION UNIT_TEXT RUNNER_TEXT SETTINGS
ensure_ray_service() {
    local unit=$1 venv=$2 version=$3 unit_text=$4 runner_text=$5 restart=no
    local settings="${RAY_SETTINGS_DIR}/${unit}.env" unit_file="/etc/systemd/system/${unit}.service"
    # The version is a setting too: a reinstalled Ray must restart to run.
    local settings_text="RAY_VERSION=${version}
RAY_VENV=${venv}
$6"
    unit_text=${unit_text//@USER@/$(id -un)}
    unit_text=${unit_text//@SETTINGS@/$settings}
    install_auth_token && restart=yes
    stop_unmanaged_ray "$venv"
    install_if_changed "$RAY_RUNNER" 755 "$runner_text" && restart=yes
    # No secret in either file: the settings are addresses and paths, readable like any unit.
    install_if_changed "$settings" 644 "$settings_text" && restart=yes
    if install_if_changed "$unit_file" 644 "$unit_text"; then
        "${SUDO[@]}" systemctl daemon-reload
        restart=yes
    fi
    "${SUDO[@]}" systemctl enable --quiet "${unit}.service"
    if ! systemctl is-active --quiet "${unit}.service"; then
        "${SUDO[@]}" systemctl start "${unit}.service"
        echo started
    elif [ "$restart" = yes ]; then
        "${SUDO[@]}" systemctl restart "${unit}.service"
        echo restarted
    else
        echo running
    fi
}

# Waits up to TIMEOUT seconds for CHECK (a command) to succeed while UNIT runs; on timeout dies with WHAT and the
# unit's last journal lines. Usage: wait_for_service UNIT TIMEOUT WHAT CHECK...
wait_for_service() {
    local unit=$1 timeout_s=$2 what=$3
    shift 3
    local deadline=$(( SECONDS + timeout_s ))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            "${SUDO[@]}" journalctl -u "${unit}.service" -n 20 --no-pager -o cat >&2 || true
            die "${what} within ${timeout_s}s; ${unit}.service's journal above (journalctl -u ${unit})"
        fi
        sleep 1
    done
}
