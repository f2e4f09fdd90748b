"""Test hook for the booted hosts: widens the window in which `ray start --block` kills its daemons.

Loaded by a .pth file in a node's Ray venv (BootedHosts.slowRayKill). While MARK_DIR/slow-kill exists, every bounded
Popen.wait in a `ray start --block` process (Ray calls one after each kill, node.py _kill_process_impl) first notes
its pid in MARK_DIR/killing and sleeps: a signal sent then lands while Ray holds Node.removal_lock, as one did in CI
when the script around it sent SIGTERM within the same two seconds.
"""

import os
import subprocess
import sys
import time

MARK_DIR = "/run/ray-cluster-test"
STALL_SECONDS = 8

_wait = subprocess.Popen.wait


def _stalling_wait(self, timeout=None):
    if timeout is not None and "--block" in sys.argv and os.path.exists(os.path.join(MARK_DIR, "slow-kill")):
        with open(os.path.join(MARK_DIR, "killing"), "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(STALL_SECONDS)
    return _wait(self, timeout)


subprocess.Popen.wait = _stalling_wait
