"""The cluster's network namespace.

`up` creates it, then re-executes itself inside it with `nsenter --net`,
which switches only the network namespace (`ip netns exec` would also
remount /sys and hide the cgroup mounts that the kubelet and runc need). The
namespace gets the node address on a veth pair whose two ends both stay
inside (this kernel has no `dummy` link type) and a default route, which the
kubelet and kube-proxy need to pick the node address.
"""
import subprocess

from layout import NETNS, NETNS_PATH, NODE_IP


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)


def create():
    ip("netns", "add", NETNS)
    ip("-n", NETNS, "link", "set", "lo", "up")
    ip("-n", NETNS, "link", "add", "node0", "type", "veth", "peer", "name", "node0p")
    ip("-n", NETNS, "link", "set", "node0p", "up")
    ip("-n", NETNS, "addr", "add", f"{NODE_IP}/24", "dev", "node0")
    ip("-n", NETNS, "link", "set", "node0", "up")
    ip("-n", NETNS, "route", "add", "default", "dev", "node0")


def exists():
    return NETNS_PATH.exists()


def pids():
    """Every process inside the namespace (none when it does not exist)."""
    if not exists():
        return []
    return [int(p) for p in ip("netns", "pids", NETNS, check=False).stdout.split()]


def delete():
    """Removes the namespace; the error line of `ip` when it could not."""
    if not exists():
        return None
    p = ip("netns", "del", NETNS, check=False)
    return None if p.returncode == 0 else (p.stderr.strip() or f"ip netns del exited with {p.returncode}")


def in_netns(*argv):
    """argv as run inside the cluster's network namespace."""
    return ["nsenter", f"--net={NETNS_PATH}", *argv]
