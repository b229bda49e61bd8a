"""Stop the cluster and remove what it made, also after a `cluster-up` that
was killed; say what could not be removed."""
import os
import pathlib
import shutil
import subprocess
import sys

import manifests
import netns
import proc
from errors import Fail, log
from layout import CONTAINERD_SOCKET, KUBEADM_DIR, NETNS, ORDER, PIDS, RUN, STATE

CGROUPS = pathlib.Path("/sys/fs/cgroup")


def mounts_under(prefixes, table="/proc/self/mounts"):
    """Mount points at or below any of `prefixes`, deepest first."""
    with open(table) as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return sorted({p for p in points if any(p == str(x) or p.startswith(str(x) + "/") for x in prefixes)},
                  key=len, reverse=True)


def shims():
    """containerd-shim processes that belong to this cluster's containerd."""
    out = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and str(CONTAINERD_SOCKET).encode() in cmd:
            out.append(int(d.name))
    return out


def _comm(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _pod_cgroups():
    return [h / manifests.CGROUP_ROOT for h in CGROUPS.iterdir() if (h / manifests.CGROUP_ROOT).is_dir()]


def leftovers(exclude=()):
    """What a run (or a killed run) left, one line each; [] when nothing."""
    out = [f"network namespace {NETNS}"] if netns.exists() else []
    out += [f"process {_comm(p)} (pid {p}) in the namespace" for p in netns.pids() if p not in exclude]
    for f in sorted(PIDS.glob("*")) if PIDS.is_dir() else []:
        p = proc.pid(f.name)
        out.append(f"{f.name} still running (pid {p})" if p else f"pid file {f} of a stopped {f.name}")
    out += [f"containerd shim (pid {p})" for p in shims()]
    out += [f"pod cgroup {d}" for d in _pod_cgroups()]
    out += [f"mount {m}" for m in mounts_under([STATE, RUN])]
    return out


def _kill_cgroup_tasks():
    """Every process the kubelet's pods left behind, found by their cgroup."""
    for root in _pod_cgroups():
        # os.walk, not Path.rglob: shims and runc remove cgroups while we walk, and os.walk skips a
        # directory that vanished instead of raising. Bottom-up, so children are removed first.
        for d, _, files in os.walk(root, topdown=False):
            if "cgroup.procs" in files:
                try:
                    pids = pathlib.Path(d, "cgroup.procs").read_text().split()
                except OSError:
                    pids = []
                for pid in pids:
                    proc.kill(int(pid), timeout=0)
        for d, _, _ in os.walk(root, topdown=False):
            try:
                os.rmdir(d)
            except OSError:
                pass


def _kill_pods():
    # The shims and the containers outlive containerd: stop them first.
    _kill_cgroup_tasks()
    for shim in shims():
        proc.kill(shim, timeout=2)


def down(exclude=()):
    """Stops everything; `exclude` are pids to spare (an interrupted `up`
    cleaning up from inside the namespace is one of its processes). Exit
    code 1, with one line per thing left, unless nothing is left."""
    if os.geteuid() != 0:
        raise Fail("the local cluster needs root", "run it as root, e.g. `sudo scripts/just cluster-down`")
    for name in reversed(ORDER):
        if name == "containerd":
            _kill_pods()
        proc.stop(name)
    _kill_pods()
    for p in netns.pids():
        if p not in exclude:
            proc.kill(p, timeout=5)
    for point in mounts_under([STATE, RUN]):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)
    error = netns.delete()
    for d in [RUN, KUBEADM_DIR] + [STATE / n for n in ("etcd", "containerd", "containerd-opt", "kubelet",
                                                     "cni-ipam")]:
        shutil.rmtree(d, ignore_errors=True)
    # A pid file goes once its process is gone; what still runs is a leftover.
    for f in PIDS.glob("*") if PIDS.is_dir() else []:
        if not proc.alive(f.name):
            f.unlink(missing_ok=True)
    left = leftovers(exclude)
    if error and netns.exists():
        left = [f"network namespace {NETNS} ({error})" if x == f"network namespace {NETNS}" else x
                for x in left]
    if left:
        for thing in left:
            print(f"error: still there after cluster-down: {thing}", file=sys.stderr)
        return 1
    log("down: every component stopped, namespace and pod sandboxes removed")
    return 0
