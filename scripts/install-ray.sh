#!/usr/bin/env bash
# Installs ray[default,data] at an exact version into a virtual environment; a no-op when that install is complete.
# The data extra (pyarrow, pandas) is what Ray Data reads and writes the pipeline's buckets with.
# With uv (the default) it needs only python3 and the package index: uv itself comes from the index.
# Usage: install-ray.sh --version X.Y.Z [--installer uv|pip] [--index-url URL] [--venv DIR]
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=install-ray
FETCH_UV_PY=$(cat "$(dirname "${BASH_SOURCE[0]}")/fetch_uv.py")

version="" installer=uv index_url="" venv=$RAY_VENV_DEFAULT
while [ $# -gt 0 ]; do
    case $1 in
        --version) version=$2; shift 2 ;;
        --installer) installer=$2; shift 2 ;;
        --index-url) index_url=$2; shift 2 ;;
        --venv) venv=$2; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
if ! { [ -n "$version" ]; }; then
    die "--version is required"
fi
case $installer in uv|pip) ;; *) die "--installer must be uv or pip, got '${installer}'" ;; esac

requirement="ray[default,data]==${version}"
marker="${venv}/.ray-cluster-installed"
# The marker is written last, so it names only an install that finished.
if state_matches "$marker" "$requirement"; then
    log "${requirement} already installed in ${venv}"
    exit 0
fi

started=$(date +%s)

if [ "$installer" = uv ]; then
    # uv makes the venv and installs into it: no pip, no python3-venv, no apt, only the package index.
    uv="${RAY_STATE_DIR}/bin/uv"
    if [ ! -x "$uv" ]; then
        python3 -c "$FETCH_UV_PY" --index-url "${index_url:-https://pypi.org/simple/}" --dest "$uv" >/dev/null \
            || die "could not fetch uv from ${index_url:-PyPI}"
    fi
    if [ ! -x "${venv}/bin/python" ]; then
        "$uv" venv --quiet --python "$(command -v python3)" "$venv" || die "cannot create ${venv} with uv venv"
    fi
else
    if [ ! -x "${venv}/bin/python" ] && ! python3 -m venv "$venv" 2>/dev/null; then
        # pip needs the OS's venv support, which cloud images lack. Only this mode installs it, here rather than
        # in cloud-init, and waits for the dpkg lock (unattended upgrades at first boot) with a bound.
        rm -rf "$venv"
        log "python3 venv support missing; installing python3-venv with apt"
        apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
        { "${apt[@]}" update >/dev/null && "${apt[@]}" install -y python3-venv >/dev/null; } \
            || die "cannot create ${venv}: python3 -m venv failed and python3-venv could not be installed (waited up to 300s for the dpkg lock)"
        python3 -m venv "$venv" || die "cannot create ${venv} with python3 -m venv"
    fi
fi
venv_install "$venv" "$installer" "$index_url" "$requirement" \
    || die "could not install ${requirement} from ${index_url:-PyPI} with ${installer}"

"${venv}/bin/ray" --version >/dev/null || die "${requirement} installed, but the ray command does not run"
printf '%s\n' "$requirement" > "$marker"
log "installed ${requirement} with ${installer} in $(( $(date +%s) - started ))s"
