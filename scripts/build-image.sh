#!/usr/bin/env bash
# Makes an image builder Ray-ready, then seals it for aws.ec2.AmiFromInstance: the node scripts (a JSON object of
# file name → content on stdin) go to /usr/local/lib/ray-cluster/scripts, and those very scripts install the pinned Ray,
# uv and the venv (install-ray.sh) and the AWS SDK, as they do on a node booted from the plain base image; a node
# booted from the image then finds it all in place. Sealing leaves no instance identity behind: cloud-init's state,
# logs and the machine-id go, so each instance of the image is a first boot with its own host keys and its own key pair.
# On any failure, or once --timeout seconds have passed since the builder's boot, the builder powers itself off;
# launched with the shutdown behaviour "terminate", it is then gone, so a failed build leaves nothing running. The
# bound counts from the boot, not from this script's start, so that it ends before the power-off the builder's user
# data arms at boot for the same bound and a margin, however long SSH took to come up.
# Usage: build-image.sh --version X.Y.Z --key KEY [--installer uv|pip] [--index-url URL] [--timeout SECONDS] < SCRIPTS_JSON
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=build-image

power_off_on_failure() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "${SCRIPT_NAME}: error: the image build failed (exit ${rc}); powering the builder off, which terminates it" >&2
        # Delayed, so that this command's own output and status reach the caller first; to the 100 ms, as a timer's
        # default accuracy is a minute.
        "${SUDO[@]}" systemd-run --quiet --on-active=3 --timer-property=AccuracySec=100ms systemctl poweroff >/dev/null 2>&1 ||
            "${SUDO[@]}" shutdown -P +1 >/dev/null 2>&1 || true
    fi
}
# From the first line that can fail: a bad argument is a failed build too.
trap power_off_on_failure EXIT

version="" key="" installer=uv index_url="" timeout_s=1800
while [ $# -gt 0 ]; do
    case $1 in
        --version) version=$2; shift 2 ;;
        --key) key=$2; shift 2 ;;
        --installer) installer=$2; shift 2 ;;
        --index-url) index_url=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
if ! { [ -n "$version" ] && [ -n "$key" ]; }; then
    die "--version and --key are required"
fi

scripts_dir=/usr/local/lib/ray-cluster/scripts
manifest=/etc/ray-cluster/image

# A builder that already made this image (the command ran again) has nothing to do.
if state_matches "$manifest" "key=${key}"; then
    log "this builder already holds image ${key}"
    exit 0
fi

started=$(date +%s)
# The boot is when PID 1 started: its age, unlike /proc/uptime, is the host's own in a container too.
if pid1_age=$(ps -o etimes= -p 1 2>/dev/null) && [ -n "${pid1_age// /}" ]; then
    booted=$((started - pid1_age))
else
    log "cannot tell when this builder booted; the ${timeout_s}s bound counts from now"
    booted=$started
fi
# What is left of the bound: each step gets only that.
remaining() { local left=$((booted + timeout_s - $(date +%s))); echo $((left > 1 ? left : 1)); }

wait_for_cloud_init "$(remaining)" "the builder"

files=$(cat)
[ -n "$files" ] || die "no node scripts on stdin"
"${SUDO[@]}" rm -rf "$scripts_dir"
"${SUDO[@]}" mkdir -p "$scripts_dir"
# shellcheck disable=SC2016 # the Python program's own text
printf '%s' "$files" | "${SUDO[@]}" python3 -c '
import json, os, sys
for name, text in json.load(sys.stdin).items():
    if os.path.basename(name) != name:
        sys.exit(f"not a plain file name: {name}")
    with open(os.path.join(sys.argv[1], name), "w", encoding="utf-8") as f:
        f.write(text)
' "$scripts_dir" || die "cannot write the node scripts to ${scripts_dir}"

timeout "$(remaining)" bash "${scripts_dir}/install-ray.sh" --version "$version" --installer "$installer" \
    ${index_url:+--index-url "$index_url"} || die "install-ray.sh failed or outlived the ${timeout_s}s bound"
# The SDK that autostop, the job archive and the autoscaler need on the head, so that they install nothing either.
ensure_aws_sdk "$RAY_VENV_DEFAULT" "$installer" "$index_url" "$(cat "${scripts_dir}/boto3-requirements.txt")" || true

# Installers leave modules uncompiled, so a node's first `ray start` would compile them on its critical path; the
# image carries the bytecode instead (its files' times, which the bytecode is checked against, stay as they are).
"${RAY_VENV_DEFAULT}/bin/python" -m compileall -q -j 0 "${RAY_VENV_DEFAULT}/lib" >/dev/null 2>&1 || true

# Sealed last, so that an image holds only a finished build. The login user's authorized_keys go too: an instance
# gets exactly its own key pair's key from cloud-init, never the builder's.
"${SUDO[@]}" cloud-init clean --logs --machine-id
rm -f "${HOME}/.ssh/authorized_keys" "${HOME}/.bash_history"
# The installer's download cache would only make every snapshot bigger.
if [ -x "${RAY_STATE_DIR}/bin/uv" ]; then
    "${RAY_STATE_DIR}/bin/uv" cache clean --quiet >/dev/null 2>&1 || true
fi
rm -rf "${HOME}/.cache/pip"
"${SUDO[@]}" journalctl --rotate --vacuum-time=1s >/dev/null 2>&1 || true
install_if_changed "$manifest" 644 "key=${key}" || true
sync
log "image ${key} ready: ${version} with ${installer} in $(( $(date +%s) - started ))s"
