"""The cluster's certificates and kubeconfigs, made by kubeadm's own phases
(`kubeadm init phase certs …`, `kubeadm init phase kubeconfig …`), from one
kubeadm configuration, into STATE/kubernetes as kubeadm would into
/etc/kubernetes.

kubeadm makes everything but two things, which are left to what a kubeadm
cluster does instead:
- kube-proxy's kubeconfig: kubeadm runs kube-proxy as a DaemonSet with a
  service account; here it is a process, so it gets a client certificate from
  `kubeadm kubeconfig user` (CN system:kube-proxy, group system:node-proxier).
- the kubelet's serving certificate: none, as in a kubeadm cluster; the
  kubelet signs its own, and the API server does not verify it.
The two ClusterRoleBindings that `kubeadm init` creates for the certificates
it issued (manifests.kubeadm_bindings) are applied once the API server runs.
"""
import subprocess

import yaml

import build
from errors import Fail
from layout import (CONTAINERD_SOCKET, CONTEXT, KUBEADM_DIR, NODE_IP, NODE_NAME, PKI, POD_CIDR,
                    SERVICE_CIDR)

CONFIG = KUBEADM_DIR / "kubeadm.yaml"
# Long enough for any test run, short enough not to matter if one leaks.
VALIDITY = "168h"
# kubeconfig file of each component (kubeadm's names, and kube-proxy's).
KUBECONFIGS = {"admin": "admin.conf", "super-admin": "super-admin.conf",
               "kube-controller-manager": "controller-manager.conf", "kube-scheduler": "scheduler.conf",
               "kubelet": "kubelet.conf", "kube-proxy": "kube-proxy.conf"}


def kubeconfig(component):
    return KUBEADM_DIR / KUBECONFIGS[component]


def kubeadm_config(pki=PKI):
    """kubeadm's configuration: the node's name and address, the Service
    range (its first address is the API server's Service IP, in the API
    server's certificate), ECDSA keys and a week's validity."""
    return yaml.safe_dump_all([
        {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration",
         "localAPIEndpoint": {"advertiseAddress": NODE_IP, "bindPort": 6443},
         "nodeRegistration": {"name": NODE_NAME, "criSocket": f"unix://{CONTAINERD_SOCKET}"}},
        {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration",
         # Given, so that kubeadm does not ask dl.k8s.io for the latest release.
         "kubernetesVersion": build.versions()["kubernetes"],
         "clusterName": CONTEXT,
         "certificatesDir": str(pki),
         "networking": {"serviceSubnet": SERVICE_CIDR, "podSubnet": POD_CIDR, "dnsDomain": "cluster.local"},
         "apiServer": {"certSANs": ["127.0.0.1", "localhost"]},
         "encryptionAlgorithm": "ECDSA-P256",
         "certificateValidityPeriod": VALIDITY,
         "caCertificateValidityPeriod": VALIDITY},
    ])


def _kubeadm(bin, *args):
    p = subprocess.run([str(bin / "kubeadm"), *args], text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise Fail(f"kubeadm {' '.join(args)} failed: {p.stderr.strip()[-800:]}")
    return p.stdout


def create(bin, dir=KUBEADM_DIR):
    """Writes every certificate, key and kubeconfig into `dir`, unless already there."""
    if (dir / ".complete").exists():
        return
    dir.mkdir(parents=True, exist_ok=True)
    config = dir / CONFIG.name
    config.write_text(kubeadm_config(dir / "pki"))
    # etcd serves plain HTTP on the namespace's loopback, and there is no
    # front proxy: only these certificates are needed.
    for cert in ("ca", "apiserver", "apiserver-kubelet-client", "sa"):
        _kubeadm(bin, "init", "phase", "certs", cert, f"--config={config}")
    for kc in ("admin", "super-admin", "controller-manager", "scheduler", "kubelet"):
        _kubeadm(bin, "init", "phase", "kubeconfig", kc, f"--config={config}", f"--kubeconfig-dir={dir}")
    (dir / KUBECONFIGS["kube-proxy"]).write_text(_kubeadm(
        bin, "kubeconfig", "user", f"--config={config}", "--client-name=system:kube-proxy",
        "--org=system:node-proxier", f"--validity-period={VALIDITY}"))
    # The context the README and the e2e suite name (kubeadm calls it kubernetes-admin@<cluster>).
    subprocess.run([str(bin / "kubectl"), "--kubeconfig", str(dir / KUBECONFIGS["admin"]), "config",
                    "rename-context", f"kubernetes-admin@{CONTEXT}", CONTEXT],
                   check=True, stdout=subprocess.DEVNULL)
    (dir / ".complete").write_text("")
