#!/usr/bin/env bash
# Runs Ray in the foreground for systemd: ray-head.service runs `ray-node-run.sh head`, ray-worker.service runs
# `ray-node-run.sh worker`, and ray-autoscaler.service runs `ray-node-run.sh autoscaler` (Ray's monitor: the
# autoscaler with RAY_AUTOSCALING_CONFIG once that file exists, else only the status `ray status` shows). It ends, and systemd starts the node afresh, whenever one of the node's Ray daemons
# is gone: `ray start --block` exits on a crash, but not when a daemon exits cleanly, as a worker's raylet does when
# its head went away. Settings come from the unit's EnvironmentFile: RAY_VENV and RAY_NODE_IP, plus RAY_PORT and
# RAY_DASHBOARD_PORT on the head, or RAY_ADDRESS and RAY_JOIN_TRY_SECONDS on a worker, and on any node
# RAY_LABELS (key=value,…), RAY_NUM_CPUS and RAY_NUM_GPUS when set. The token is read by Ray itself from
# ~/.ray/auth_token.
set -euo pipefail

role=${1:?usage: ray-node-run.sh head|worker}
: "${RAY_VENV:?RAY_VENV is not set}" "${RAY_NODE_IP:?RAY_NODE_IP is not set}"
export PATH="${RAY_VENV}/bin:${PATH}" VIRTUAL_ENV=$RAY_VENV
export RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0 RAY_USAGE_STATS_PROMPT_ENABLED=0
ray=("${RAY_VENV}/bin/ray" start --block --disable-usage-stats --node-ip-address="$RAY_NODE_IP")
# Unset means Ray's own detection: CPUs and, on GPU instances, the GPUs it finds.
[ -z "${RAY_LABELS:-}" ] || ray+=(--labels="$RAY_LABELS")
[ -z "${RAY_NUM_CPUS:-}" ] || ray+=(--num-cpus="$RAY_NUM_CPUS")
[ -z "${RAY_NUM_GPUS:-}" ] || ray+=(--num-gpus="$RAY_NUM_GPUS")

# Bounds on the node's way out. When a daemon dies of a crash, `ray start --block` kills the others itself (a second
# at most each) and exits: this is its grace. When one exits cleanly (a worker's raylet whose head went away, or a
# drained one), Ray counts that as expected and blocks on, so the grace runs out and the kill below ends it. A stop
# (SIGTERM from systemd) first drains the node, up to Ray's RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S (30 s), so it gets
# longer, still inside the units' TimeoutStopSec (60 s).
EXIT_GRACE_SECONDS=${RAY_EXIT_GRACE_SECONDS:-10}
STOP_GRACE_SECONDS=45

# True once PID has exited, false if it is still there after SECONDS.
gone_within() {
    local pid=$1 deadline=$(( SECONDS + $2 ))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 1
    done
}

# Ends `ray start --block` (PID, the leader of its own process group) within GRACE seconds. It is never sent
# SIGTERM here: Ray's SIGTERM handler calls kill_all_processes, and when the signal lands while `ray start` is
# already in there (killing its daemons after one died) the handler blocks for good on the lock the outer call
# holds (ray 2.60, node.py: sigterm_handler -> _kill_process_type -> removal_lock). SIGKILL of the whole group
# cannot deadlock, and takes the daemons with it.
end_ray() {
    local pid=$1 grace=$2 why=$3
    if ! gone_within "$pid" "$grace"; then
        echo "ray-node-run: ray start did not exit within ${grace}s ${why}; killing it and its daemons" >&2
        kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Runs `ray start --block` with the given arguments and returns when it exits or when any of DAEMONS, once up,
# is gone; either way the node is out of the cluster and the service must end. Every wait here is bounded.
run_ray() {
    local daemons=$1 daemon up=no stopping=no
    shift
    # Its own process group, so that end_ray can kill it with every daemon it started. Without job control a
    # background command is no group leader, so setsid makes the group without a fork and $! is its leader.
    setsid "${ray[@]}" "$@" &
    local block=$!
    # systemd's stop signals every process of the unit; Ray drains and stops on its own, within a bound.
    trap 'stopping=yes' TERM INT
    while kill -0 "$block" 2>/dev/null; do
        if [ "$stopping" = yes ]; then
            end_ray "$block" "$STOP_GRACE_SECONDS" "of the service's stop"
            exit 0
        fi
        sleep 2
        for daemon in $daemons; do
            if pgrep -u "$(id -u)" -x "$daemon" >/dev/null; then
                continue
            fi
            if [ "$up" = yes ]; then
                echo "ray-node-run: ${daemon} is gone; ending the service so that systemd starts the node afresh" >&2
                end_ray "$block" "$EXIT_GRACE_SECONDS" "after ${daemon} was gone"
                exit 1
            fi
            continue 2
        done
        up=yes
    done
    wait "$block"
}

# ray-spot-watch.service writes this before it drains the node (spot_watch.py): until=EPOCH and reason=TEXT.
DRAIN_MARK=/run/ray-cluster-spot/drained

# A drained node stays out of the cluster until its mark's time: Ray shuts a drained raylet down once the node is
# idle, and a fresh one here would take new work on an instance EC2 is about to take. The mark is read again every
# few seconds, so removing it lets the node back at once. Bounded by the mark's time.
stay_out_while_drained() {
    local until reason said=no
    while [ -f "$DRAIN_MARK" ]; do
        until=$(sed -n 's/^until=//p' "$DRAIN_MARK" 2>/dev/null || true)
        reason=$(sed -n 's/^reason=//p' "$DRAIN_MARK" 2>/dev/null || true)
        if ! [[ $until =~ ^[0-9]+$ ]] || [ "$until" -le "$(date +%s)" ]; then
            return 0
        fi
        if [ "$said" = no ]; then
            echo "ray-worker: this node was drained (${reason}); it stays out of the cluster until" \
                "$(date -u -d "@${until}" +%Y-%m-%dT%H:%M:%SZ) unless its instance goes first" >&2
            said=yes
        fi
        sleep 5
    done
}

case $role in
    head)
        # The monitor runs as ray-autoscaler.service: it can then be stopped before elastic workers are terminated,
        # and be given a config or lose it, without restarting the head.
        run_ray "gcs_server raylet" --head --no-monitor --port="${RAY_PORT:-6379}" \
            --dashboard-host=0.0.0.0 --dashboard-port="${RAY_DASHBOARD_PORT:-8265}"
        ;;
    autoscaler)
        gcs="${RAY_NODE_IP}:${RAY_PORT:-6379}"
        # shellcheck disable=SC2016 # expanded by the inner bash, from its own arguments
        if ! timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' probe "$RAY_NODE_IP" "${RAY_PORT:-6379}" 2>/dev/null; then
            echo "ray-autoscaler: the head's GCS at ${gcs} does not answer yet; trying again" >&2
            exit 75
        fi
        monitor=("${RAY_VENV}/bin/python" -m ray.autoscaler._private.monitor --gcs-address="$gcs"
            --monitor-ip="$RAY_NODE_IP" --logs-dir=/tmp/ray/session_latest/logs)
        if [ -n "${RAY_AUTOSCALING_CONFIG:-}" ] && [ -f "$RAY_AUTOSCALING_CONFIG" ]; then
            monitor+=(--autoscaling-config="$RAY_AUTOSCALING_CONFIG")
            # install-autoscaler.sh puts it into the venv with the config: a type EC2 refused ranks below the others.
            export RAY_AUTOSCALER_UTILIZATION_SCORER=ray_cluster_scorer.prefer_available
        fi
        exec "${monitor[@]}"
        ;;
    worker)
        : "${RAY_ADDRESS:?RAY_ADDRESS is not set}"
        stay_out_while_drained
        host=${RAY_ADDRESS%:*} port=${RAY_ADDRESS##*:} try_seconds=${RAY_JOIN_TRY_SECONDS:-60}
        deadline=$(( SECONDS + try_seconds ))
        # ray start would wait minutes on a head that is down; one bounded try, one clear line, then systemd
        # tries again after its restart delay, for as long as the head stays away.
        # shellcheck disable=SC2016 # expanded by the inner bash, from its own arguments
        until timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' probe "$host" "$port" 2>/dev/null; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                echo "ray-worker: the Ray head's GCS at ${RAY_ADDRESS} did not answer within ${try_seconds}s; trying again" >&2
                exit 75
            fi
            sleep 2
        done
        run_ray raylet --address="$RAY_ADDRESS"
        ;;
    *)
        echo "ray-node-run: unknown role '${role}', expected head, worker or autoscaler" >&2
        exit 2
        ;;
esac
