"""Inside the namespace: start the components, one stage at a time, each
waited for before the next begins."""
import json
import pathlib
import ssl
import subprocess
import time
import urllib.request

import dns.resolver

import certs
import containerd
import image
import manifests
import netns
import proc
from errors import Fail, log
from layout import (API_SERVICE_IP, CONTAINERD_SOCKET, DNS_SERVICE_IP, KUBECONFIG, LOGS, NODE_IP,
                    NODE_NAME, ORDER, PIDS, PKI, POD_CIDR, RUN, SERVICE_CIDR, STATE)

# Where the controller-manager and the scheduler answer /healthz (https, with
# a certificate they make for themselves, so it is not verified).
HEALTHZ = {"kube-controller-manager": "https://127.0.0.1:10257/healthz",
           "kube-scheduler": "https://127.0.0.1:10259/healthz"}


def _tls():
    # /readyz needs no client certificate (system:public-info-viewer).
    return ssl.create_default_context(cafile=str(PKI / "ca.crt"))


def _self_signed():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _get(url, context=None, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, ssl.SSLError) as e:
        return None, str(e)


def dead():
    """The components started so far whose process is gone."""
    return [c for c in ORDER if (PIDS / c).exists() and not proc.alive(c)]


def wait(what, check, timeout, explain):
    """Polls `check` until it is true. Fails with the log of any component
    that died meanwhile (so a crash is reported as that component's), or at
    the timeout with what `explain` returns."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        if check():
            log(f"{what} after {time.monotonic() - started:.1f} s")
            return
        gone = dead()
        if gone:
            raise Fail(f"{gone[0]} exited; the last lines of {LOGS / gone[0]}.log:\n{proc.log_tail(gone[0])}")
        if time.monotonic() > deadline:
            raise Fail(f"{what}: not within {timeout:.0f} s; {explain()}")
        time.sleep(0.25)


def tail_of(component):
    return lambda: f"the last lines of {LOGS / component}.log:\n{proc.log_tail(component)}"


def kubectl(bin, *args, input=None, check=True, from_host=False, kubeconfig=KUBECONFIG):
    """kubectl as the cluster's admin; `from_host` enters the namespace first."""
    argv = [str(bin / "kubectl"), "--kubeconfig", str(kubeconfig), *args]
    p = subprocess.run(netns.in_netns(*argv) if from_host else argv, input=input,
                       text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and p.returncode != 0:
        raise Fail(f"kubectl {' '.join(args)} failed: {p.stdout.strip()}")
    return p.stdout


def _node_ready(bin):
    out = kubectl(bin, "get", "node", NODE_NAME, "-o",
                  "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
    return out.strip() == "True"


def _dns_answers():
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [DNS_SERVICE_IP]
    r.lifetime = 1.0
    try:
        answer = r.resolve("kubernetes.default.svc.cluster.local", "A")
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False
    return [a.address for a in answer] == [API_SERVICE_IP]


def _cgroup_root():
    """The kubelet's cgroupRoot must exist in every v1 hierarchy before it starts
    (preflight has refused a cgroup v2 host)."""
    for hierarchy in pathlib.Path("/sys/fs/cgroup").iterdir():
        if not (hierarchy / "cgroup.procs").exists():
            continue
        d = hierarchy / manifests.CGROUP_ROOT
        d.mkdir(exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / f).exists() and not (d / f).read_text().strip():
                (d / f).write_text((hierarchy / f).read_text())


def certs_and_configs(bin):
    """Certificates, kubeconfigs, the component configs and the sysctls."""
    for d in (STATE / "etcd", STATE / "cni", STATE / "kubelet", RUN):
        d.mkdir(parents=True, exist_ok=True)
    certs.create(bin)
    (STATE / "containerd.toml").write_text(manifests.containerd_toml(image.pause_ref(bin)))
    (STATE / "cni" / "10-lameduck.conflist").write_text(manifests.cni_conflist())
    (STATE / "resolv.conf").write_text(f"nameserver {DNS_SERVICE_IP}\n")
    (STATE / "kubelet.json").write_text(manifests.kubelet_yaml())
    # Forwarding between pods and Services.
    pathlib.Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    bridge_nf = pathlib.Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if bridge_nf.exists():
        bridge_nf.write_text("1")


def control_plane(bin):
    """etcd, the API server, the controller-manager and the scheduler, each healthy."""
    proc.start("etcd", [str(bin / "etcd"), "--name", "lameduck", "--data-dir", str(STATE / "etcd"),
                        "--listen-client-urls", "http://127.0.0.1:2379",
                        "--advertise-client-urls", "http://127.0.0.1:2379",
                        "--listen-peer-urls", "http://127.0.0.1:2380",
                        "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                        "--initial-cluster", "lameduck=http://127.0.0.1:2380",
                        # Throwaway data: fsync only slows a shared disk down.
                        "--unsafe-no-fsync", "--log-level", "warn"])
    wait("etcd healthy", lambda: _get("http://127.0.0.1:2379/health")[0] == 200, 60, tail_of("etcd"))

    proc.start("kube-apiserver", [
        str(bin / "kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379",
        f"--advertise-address={NODE_IP}", "--bind-address=0.0.0.0", "--secure-port=6443",
        f"--tls-cert-file={PKI / 'apiserver.crt'}", f"--tls-private-key-file={PKI / 'apiserver.key'}",
        f"--client-ca-file={PKI / 'ca.crt'}", "--authorization-mode=Node,RBAC",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={PKI / 'sa.pub'}",
        f"--service-account-signing-key-file={PKI / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--kubelet-client-certificate={PKI / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={PKI / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP", "--profiling=false"])
    tls = _tls()
    wait("kube-apiserver ready", lambda: _get(f"https://{NODE_IP}:6443/readyz", tls)[0] == 200, 120,
         tail_of("kube-apiserver"))
    kubectl(bin, "apply", "-f", "-", kubeconfig=certs.kubeconfig("super-admin"),
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests.kubeadm_bindings()}))

    def common(component):
        kc = certs.kubeconfig(component)
        return [f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}", "--leader-elect=false", "--bind-address=127.0.0.1"]

    proc.start("kube-controller-manager", [
        str(bin / "kube-controller-manager"), *common("kube-controller-manager"),
        f"--root-ca-file={PKI / 'ca.crt'}",
        f"--service-account-private-key-file={PKI / 'sa.key'}",
        "--use-service-account-credentials=true",
        f"--cluster-signing-cert-file={PKI / 'ca.crt'}", f"--cluster-signing-key-file={PKI / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}"])
    proc.start("kube-scheduler", [str(bin / "kube-scheduler"), *common("kube-scheduler")])
    insecure = _self_signed()
    for name, url in HEALTHZ.items():
        wait(f"{name} healthy", lambda url=url: _get(url, insecure)[0] == 200, 60, tail_of(name))


def node(bin):
    """containerd with the cluster's images, the kubelet and kube-proxy, until
    the node is Ready. Returns the images' references."""
    proc.start("containerd", ["containerd", "--config", str(STATE / "containerd.toml")])
    wait("containerd answering", lambda: subprocess.run(
        ["ctr", "--address", str(CONTAINERD_SOCKET), "version"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL).returncode == 0, 60, tail_of("containerd"))
    refs = image.cluster_images(bin)
    for ref, tar in refs.values():
        containerd.import_tar(tar, ref)
    log("imported " + ", ".join(ref for ref, _ in refs.values()))

    _cgroup_root()
    proc.start("kubelet", [str(bin / "kubelet"), f"--config={STATE / 'kubelet.json'}",
                           f"--kubeconfig={certs.kubeconfig('kubelet')}", f"--hostname-override={NODE_NAME}",
                           f"--node-ip={NODE_IP}", f"--root-dir={STATE / 'kubelet'}",
                           # Its self-signed serving certificate, here rather than in /var/lib/kubelet.
                           f"--cert-dir={STATE / 'kubelet' / 'pki'}", "-v=1"])
    proc.start("kube-proxy", [str(bin / "kube-proxy"), f"--kubeconfig={certs.kubeconfig('kube-proxy')}",
                              f"--hostname-override={NODE_NAME}", "--proxy-mode=nftables",
                              f"--cluster-cidr={POD_CIDR}", "--metrics-bind-address=127.0.0.1:10249",
                              "--healthz-bind-address=127.0.0.1:10256",
                              # No conntrack sysctls to set: they are not this namespace's to change.
                              "--conntrack-max-per-core=0"])
    wait(f"node {NODE_NAME} Ready", lambda: _node_ready(bin), 120, tail_of("kubelet"))
    return refs


def cluster_dns(bin, coredns_image):
    """CoreDNS, until it answers through the kube-dns Service (and so through kube-proxy)."""
    coredns = {"apiVersion": "v1", "kind": "List", "items": manifests.coredns_manifests(coredns_image)}
    kubectl(bin, "apply", "-f", "-", input=json.dumps(coredns))
    wait("CoreDNS answering through the kube-dns Service", _dns_answers, 120,
         lambda: "CoreDNS's pod:\n" + kubectl(
             bin, "-n", "kube-system", "describe", "pod", "-l", "k8s-app=kube-dns", check=False)[-2500:])


def start_all(bin):
    """Every stage, in order."""
    certs_and_configs(bin)
    t0 = time.monotonic()
    control_plane(bin)
    refs = node(bin)
    log(f"node Ready {time.monotonic() - t0:.1f} s after etcd started")
    cluster_dns(bin, refs["coredns"][0])


def healthy(bin):
    """True when every component runs and the node is Ready (inside the namespace)."""
    return (all(proc.alive(c) for c in ORDER)
            and _get(f"https://{NODE_IP}:6443/readyz", _tls())[0] == 200
            and all(_get(url, _self_signed())[0] == 200 for url in HEALTHZ.values())
            and _node_ready(bin) and _dns_answers())
