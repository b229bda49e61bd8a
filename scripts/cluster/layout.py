"""Where the local cluster lives: its addresses, its directories, its names.

Every address is in 198.18.0.0/15, the range reserved for network tests
(RFC 2544), and exists only inside the cluster's network namespace.
"""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODULES = ROOT / "deploy" / "cluster"

NETNS = "lameduck-cluster"
NETNS_PATH = pathlib.Path("/var/run/netns") / NETNS
NODE_NAME = "lameduck-node"
NODE_IP = "198.18.0.1"
POD_CIDR = "198.18.64.0/20"
POD_GATEWAY = "198.18.64.1"
SERVICE_CIDR = "198.18.128.0/20"
API_SERVICE_IP = "198.18.128.1"
DNS_SERVICE_IP = "198.18.128.10"
CONTEXT = "lameduck-local"
# The components, in start order; `down` stops them in reverse. The API server
# waits a long time for etcd if etcd goes first.
ORDER = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd",
         "kubelet", "kube-proxy"]

# The pod sandbox image, built here from Kubernetes' pause.c (there is no registry
# to pull it from); its tag is the one Kubernetes' build/pause/Makefile gives it.
PAUSE_REPO = "registry.k8s.io/pause"


def _home(var, default):
    return pathlib.Path(os.environ.get(var) or default).expanduser()


# The Go build's output, outside the clone; a key per set of go.sum files.
CACHE = _home("LAMEDUCK_CLUSTER_CACHE", _home("XDG_CACHE_HOME", "~/.cache") / "lameduck-cluster")
# The running cluster: certificates, etcd, logs, pids, containerd's root.
STATE = _home("LAMEDUCK_CLUSTER_STATE", "/var/lib/lameduck-cluster")
# Sockets and containerd's state: short paths (unix socket paths are limited).
RUN = pathlib.Path("/run/lameduck-cluster")

# kubeadm's certificates and kubeconfigs, laid out as in /etc/kubernetes.
KUBEADM_DIR = STATE / "kubernetes"
PKI = KUBEADM_DIR / "pki"
KUBECONFIG = KUBEADM_DIR / "admin.conf"
LOGS = STATE / "logs"
PIDS = STATE / "pids"
# Held by `up` from its start to its end, across its re-execution inside the namespace.
UP_LOCK = STATE / "up.lock"
CONTAINERD_SOCKET = RUN / "containerd.sock"
