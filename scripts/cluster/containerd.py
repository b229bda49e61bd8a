"""The images in the cluster's containerd: import, and check before use.

A pod whose image is missing waits in ErrImageNeverPull until Helm's
`--wait` gives up minutes later; `require` says so at once, in one line,
with the command that imports it.
"""
import subprocess

from errors import Fail
from image import LAMEDUCK_REPO
from layout import CONTAINERD_SOCKET, PAUSE_REPO


def _ctr(*args):
    return subprocess.run(["ctr", "--address", str(CONTAINERD_SOCKET), "-n", "k8s.io", *args], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def present(ref):
    """True if the cluster's containerd has the image `ref` (its socket is
    reachable from the host too: a unix socket is a file)."""
    p = _ctr("images", "ls", "--quiet")
    if p.returncode != 0:
        raise Fail(f"ctr images ls failed: {p.stdout.strip()}", "scripts/just cluster-up")
    return ref in p.stdout.split()


def require(ref):
    """Fails with one line, and the command that imports it, unless `ref` is there."""
    if present(ref):
        return
    if ref.startswith(LAMEDUCK_REPO + ":"):
        fix = "scripts/just cluster-load (builds lameduck's image and imports it; its last line is the reference)"
    elif ref.startswith(("localhost/lameduck-cluster/", PAUSE_REPO + ":")):
        fix = "scripts/just cluster-down && scripts/just cluster-up (imports the cluster's own images)"
    else:
        fix = f"ctr --address {CONTAINERD_SOCKET} -n k8s.io images import <an archive of {ref}>"
    raise Fail(f"image {ref} is not in the local cluster's containerd", fix)


def import_tar(tar, ref):
    """Imports an image archive and checks that `ref` is there afterwards."""
    p = _ctr("images", "import", str(tar))
    if p.returncode != 0:
        raise Fail(f"ctr images import {tar} failed: {p.stdout.strip()}")
    if not present(ref):
        raise Fail(f"ctr images import {tar} succeeded, but containerd does not list {ref}: {p.stdout.strip()}")
