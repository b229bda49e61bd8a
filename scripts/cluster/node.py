"""Bring the one-node cluster up: check the host, build, create the
namespace, then start every component inside it (stages.py).

`up` runs on the host, holds the `up` lock (lock.py), then re-executes itself
inside the namespace as `_up-inside`, which starts the components. Ctrl-C or
SIGTERM at any point stops what this run started and removes the namespace;
a second one leaves everything as it is and names `cluster-down`.
"""
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import build
import lock
import netns
import stages
import teardown
from errors import Fail, Interrupted, log
from layout import KUBECONFIG, LOGS, NETNS, UP_LOCK

DEBIAN = {"containerd": "containerd", "runc": "runc", "nft": "nftables", "nsenter": "util-linux",
          "ip": "iproute2", "ctr": "containerd"}


def cgroup_v2(root=pathlib.Path("/sys/fs/cgroup")):
    """True when `root` is the unified (cgroup v2 only) hierarchy."""
    return (root / "cgroup.controllers").exists()


def preflight():
    if os.geteuid() != 0:
        raise Fail("the local cluster needs root (network namespaces, containerd, cgroups)",
                   "run it as root, e.g. `sudo scripts/just cluster-up`")
    if cgroup_v2():
        raise Fail("this host runs cgroup v2 only (/sys/fs/cgroup is the unified hierarchy); the local "
                   "cluster needs cgroup v1 (its kubelet uses the cgroupfs driver and puts the pods in a "
                   "cgroup of each v1 hierarchy)",
                   "boot with systemd.unified_cgroup_hierarchy=0, or use kind: `scripts/just e2e`")
    missing = sorted({pkg for tool, pkg in DEBIAN.items() if shutil.which(tool) is None})
    if not pathlib.Path("/usr/lib/cni/bridge").exists():
        missing.append("containernetworking-plugins")
    if missing:
        raise Fail(f"missing Debian packages: {' '.join(missing)}",
                   f"scripts/setup-debian {' '.join(missing)}")


def _already_up(entry):
    return netns.exists() and subprocess.run(
        netns.in_netns(sys.executable, entry, "_healthy"), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL).returncode == 0


def _stop_after(interrupt):
    """Cleans up after Ctrl-C or SIGTERM: stops every component, unmounts,
    removes the namespace. This process may be inside it: it spares itself."""
    name = signal.Signals(interrupt.signum).name
    log(f"{name}: stopping what this `cluster-up` started (send it again to leave it as it is)")
    try:
        code = teardown.down(exclude={os.getpid()})
    except Interrupted:
        raise Fail(f"{name} again: what this `cluster-up` started is left as it is",
                   "scripts/just cluster-down", code=interrupt.code) from None
    if code != 0:
        raise Fail(f"{name}: the cleanup left the things above", "scripts/just cluster-down",
                   code=interrupt.code)
    print(f"error: {name}: `cluster-up` stopped; nothing it started is left", file=sys.stderr)
    return interrupt.code


def up(entry):
    preflight()
    fd = lock.hold(UP_LOCK)
    build.build(log=log)
    if _already_up(entry):
        log(f"the cluster is already up (KUBECONFIG={KUBECONFIG}); nothing to do")
        return 0
    try:
        if teardown.leftovers():
            log(f"found what an earlier run left (network namespace {NETNS}, processes or pods): removing it first")
            if teardown.down() != 0:
                raise Fail("an earlier run left the things above, and they could not be removed",
                           "scripts/just cluster-down")
        netns.create()
        # The same process, inside the namespace: the lock's descriptor stays open.
        os.execvp("nsenter", netns.in_netns(sys.executable, entry, "_up-inside", str(fd)))
    except Interrupted as interrupt:
        return _stop_after(interrupt)


def up_inside(fd):
    lock.check_held(fd)
    try:
        stages.start_all(build.built())
    except KeyboardInterrupt:
        # Before this process installed its handlers.
        return _stop_after(Interrupted(signal.SIGINT))
    except Interrupted as interrupt:
        return _stop_after(interrupt)
    except Fail as f:
        # Left running, so that its logs can be read.
        f.fix = f.fix or f"scripts/just cluster-down stops what started (logs in {LOGS})"
        raise
    log(f"up: KUBECONFIG={KUBECONFIG}; `scripts/just cluster-shell` opens a shell inside")
    return 0
