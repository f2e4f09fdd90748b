#!/usr/bin/env bash
# Installs ray[default] at an exact version into a virtual environment; a no-op when that install is complete.
# Usage: install-ray.sh --version X.Y.Z [--installer uv|pip] [--index-url URL] [--venv DIR]
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=install-ray

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

requirement="ray[default]==${version}"
marker="${venv}/.ray-cluster-installed"
# The marker is written last, so it names only an install that finished.
if state_matches "$marker" "$requirement"; then
    log "${requirement} already installed in ${venv}"
    exit 0
fi

started=$(date +%s)
if [ ! -x "${venv}/bin/python" ]; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
        # Images without cloud-init's packages lack venv support; a failed half-made venv is removed first.
        rm -rf "$venv"
        log "python3 venv support missing; installing python3-venv"
        "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -q python3-venv >/dev/null \
            || die "cannot create ${venv}: python3 -m venv failed and python3-venv could not be installed"
        python3 -m venv "$venv" || die "cannot create ${venv} with python3 -m venv"
    fi
fi

pip_index=()
if [ -n "$index_url" ]; then
    pip_index=(--index-url "$index_url")
    # pip refuses a plain-http index unless its host is trusted; the user chose this index explicitly.
    case $index_url in
        http://*) host=${index_url#http://}; pip_index+=(--trusted-host "${host%%[/:]*}") ;;
    esac
fi
pip=("${venv}/bin/python" -m pip --disable-pip-version-check --no-input -q)

if [ "$installer" = uv ]; then
    if [ ! -x "${venv}/bin/uv" ]; then
        "${pip[@]}" install "${pip_index[@]}" uv || die "could not install uv from ${index_url:-PyPI}"
    fi
    uv_index=()
    [ -z "$index_url" ] || uv_index=(--index-url "$index_url")
    "${venv}/bin/uv" pip install --quiet --python "${venv}/bin/python" "${uv_index[@]}" "$requirement" \
        || die "could not install ${requirement} from ${index_url:-PyPI} with uv"
else
    "${pip[@]}" install "${pip_index[@]}" "$requirement" \
        || die "could not install ${requirement} from ${index_url:-PyPI} with pip"
fi

"${venv}/bin/ray" --version >/dev/null || die "${requirement} installed, but the ray command does not run"
printf '%s\n' "$requirement" > "$marker"
log "installed ${requirement} with ${installer} in $(( $(date +%s) - started ))s"
