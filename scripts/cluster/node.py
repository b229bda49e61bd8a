"""Bring the one-node cluster up and tear it down.

Every component runs inside the network namespace NETNS: `up` creates it,
then re-executes itself inside it with `nsenter --net`, which switches only
the network namespace (`ip netns exec` would also remount /sys and hide the
cgroup mounts that the kubelet and runc need). The namespace gets the node
address on a veth pair whose two ends both stay inside (this kernel has no
`dummy` link type) and a default route, which the kubelet and kube-proxy need
to pick the node address.
"""
import json
import os
import pathlib
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request

import dns.resolver

import build
import image
import manifests
import pki
import proc
from errors import Fail
from layout import (API_SERVICE_IP, CONTAINERD_SOCKET, DNS_SERVICE_IP, KUBECONFIG, LOGS, NETNS,
                    NETNS_PATH, NODE_IP, NODE_NAME, PAUSE_IMAGE, PIDS, POD_CIDR, RUN, SERVICE_CIDR,
                    STATE)

PKI = manifests.PKI
# Start order; `down` stops them in reverse. The API server waits a long time
# for etcd if etcd goes first.
ORDER = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd",
         "kubelet", "kube-proxy"]
DEBIAN = {"containerd": "containerd", "runc": "runc", "nft": "nftables", "nsenter": "util-linux",
          "ip": "iproute2", "ctr": "containerd"}
COREDNS_IMAGE = "localhost/lameduck-cluster/coredns:{v}"
PROMETHEUS_IMAGE = "localhost/lameduck-cluster/prometheus:{v}"
TRAEFIK_IMAGE = "localhost/lameduck-cluster/traefik:{v}"


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def preflight():
    if os.geteuid() != 0:
        raise Fail("the local cluster needs root (network namespaces, containerd, cgroups)",
                   "run it as root, e.g. `sudo scripts/just cluster-up`")
    missing = sorted({pkg for tool, pkg in DEBIAN.items() if shutil.which(tool) is None})
    if not pathlib.Path("/usr/lib/cni/bridge").exists():
        missing.append("containernetworking-plugins")
    if missing:
        raise Fail(f"missing Debian packages: {' '.join(missing)}",
                   f"scripts/setup-debian {' '.join(missing)}")


# -- inside the namespace -------------------------------------------------

def _tls():
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    return ctx


def _get(url, context=None, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, ssl.SSLError) as e:
        return None, str(e)


def wait(what, component, check, timeout, explain=None):
    """Polls `check` until it is true. If `component` dies or time runs out,
    fails with the last lines of its log (or what `explain` returns)."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        if check():
            log(f"{what} after {time.monotonic() - started:.1f} s")
            return
        if not proc.alive(component):
            raise Fail(f"{component} exited; the last lines of {LOGS / component}.log:\n"
                       f"{proc.log_tail(component)}")
        if time.monotonic() > deadline:
            detail = explain() if explain else f"the last lines of {component}'s log:\n{proc.log_tail(component)}"
            raise Fail(f"{what}: not within {timeout:.0f} s; {detail}")
        time.sleep(0.25)


def kubectl(bin, *args, input=None, check=True, from_host=False):
    """kubectl as the cluster's admin; `from_host` enters the namespace first."""
    argv = [str(bin / "kubectl"), "--kubeconfig", str(KUBECONFIG), *args]
    p = subprocess.run(in_netns(*argv) if from_host else argv, input=input,
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
    """The kubelet's cgroupRoot must exist in every v1 hierarchy before it starts."""
    for hierarchy in pathlib.Path("/sys/fs/cgroup").iterdir():
        if not (hierarchy / "cgroup.procs").exists():
            continue
        d = hierarchy / manifests.CGROUP_ROOT
        d.mkdir(exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / f).exists() and not (d / f).read_text().strip():
                (d / f).write_text((hierarchy / f).read_text())


def import_image(tar):
    p = subprocess.run(["ctr", "--address", str(CONTAINERD_SOCKET), "-n", "k8s.io", "images", "import",
                        str(tar)], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise Fail(f"ctr images import {tar} failed: {p.stdout.strip()}")


def cluster_images(bin):
    """The images no registry provides here, as OCI tars next to the binaries."""
    out = bin / "images"
    out.mkdir(exist_ok=True)
    versions = build.versions()
    wanted = {
        "pause": (PAUSE_IMAGE, {"/pause": bin / "pause"}, ["/pause"], "65535:65535"),
        "coredns": (COREDNS_IMAGE.format(v=versions["coredns"]), {"/coredns": bin / "coredns"},
                    ["/coredns"], "65532:65532"),
        "prometheus": (PROMETHEUS_IMAGE.format(v="v" + build.prometheus_release(versions["prometheus"])),
                       {"/bin/prometheus": bin / "prometheus"}, ["/bin/prometheus"], "65534:65534"),
        "traefik": (TRAEFIK_IMAGE.format(v=versions["traefik"]), {"/traefik": bin / "traefik"},
                    ["/traefik"], "65532:65532"),
    }
    refs = {}
    for name, (ref, files, entrypoint, user) in wanted.items():
        tar = out / f"{name}.tar"
        if not tar.exists():
            partial = tar.with_suffix(".partial")
            image.write(partial, ref, image.programs_layer(files), entrypoint, user=user)
            partial.rename(tar)
        refs[name] = (ref, tar)
    return refs


def start_all(bin):
    """Inside the namespace: start each component and wait for it."""
    for d in (STATE / "etcd", STATE / "cni", STATE / "kubelet", RUN):
        d.mkdir(parents=True, exist_ok=True)
    pki.create(PKI, NODE_IP, API_SERVICE_IP, NODE_NAME)
    for user in ("admin", "kube-controller-manager", "kube-scheduler", "kube-proxy", "node"):
        (STATE / f"{user}.kubeconfig").write_text(manifests.kubeconfig(user))
    # The loopback interface and forwarding between pods and Services.
    pathlib.Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    bridge_nf = pathlib.Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if bridge_nf.exists():
        bridge_nf.write_text("1")
    t0 = time.monotonic()
    kc = lambda user: str(STATE / f"{user}.kubeconfig")  # noqa: E731

    proc.start("etcd", [str(bin / "etcd"), "--name", "lameduck", "--data-dir", str(STATE / "etcd"),
                        "--listen-client-urls", "http://127.0.0.1:2379",
                        "--advertise-client-urls", "http://127.0.0.1:2379",
                        "--listen-peer-urls", "http://127.0.0.1:2380",
                        "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                        "--initial-cluster", "lameduck=http://127.0.0.1:2380",
                        # Throwaway data: fsync only slows a shared disk down.
                        "--unsafe-no-fsync", "--log-level", "warn"])
    wait("etcd healthy", "etcd", lambda: _get("http://127.0.0.1:2379/health")[0] == 200, 60)

    proc.start("kube-apiserver", [
        str(bin / "kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379",
        f"--advertise-address={NODE_IP}", "--bind-address=0.0.0.0", "--secure-port=6443",
        f"--tls-cert-file={PKI / 'apiserver.crt'}", f"--tls-private-key-file={PKI / 'apiserver.key'}",
        f"--client-ca-file={PKI / 'ca.crt'}", "--authorization-mode=Node,RBAC",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={PKI / 'sa.pub'}",
        f"--service-account-signing-key-file={PKI / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--kubelet-certificate-authority={PKI / 'ca.crt'}",
        f"--kubelet-client-certificate={PKI / 'admin.crt'}",
        f"--kubelet-client-key={PKI / 'admin.key'}",
        "--kubelet-preferred-address-types=InternalIP", "--profiling=false"])
    tls = _tls()
    wait("kube-apiserver ready", "kube-apiserver",
         lambda: _get(f"https://{NODE_IP}:6443/readyz", tls)[0] == 200, 120)

    common = [f"--kubeconfig={{kc}}", f"--authentication-kubeconfig={{kc}}",
              f"--authorization-kubeconfig={{kc}}", "--leader-elect=false", "--bind-address=127.0.0.1"]
    proc.start("kube-controller-manager", [str(bin / "kube-controller-manager")] + [
        a.format(kc=kc("kube-controller-manager")) for a in common] + [
        f"--root-ca-file={PKI / 'ca.crt'}",
        f"--service-account-private-key-file={PKI / 'sa.key'}",
        "--use-service-account-credentials=true",
        f"--cluster-signing-cert-file={PKI / 'ca.crt'}", f"--cluster-signing-key-file={PKI / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}"])
    proc.start("kube-scheduler", [str(bin / "kube-scheduler")] + [
        a.format(kc=kc("kube-scheduler")) for a in common])

    (STATE / "containerd.toml").write_text(manifests.containerd_toml())
    (STATE / "cni" / "10-lameduck.conflist").write_text(manifests.cni_conflist())
    proc.start("containerd", ["containerd", "--config", str(STATE / "containerd.toml")])
    wait("containerd answering", "containerd", lambda: subprocess.run(
        ["ctr", "--address", str(CONTAINERD_SOCKET), "version"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL).returncode == 0, 60)
    refs = cluster_images(bin)
    for ref, tar in refs.values():
        import_image(tar)
    log("imported " + ", ".join(ref for ref, _ in refs.values()))

    (STATE / "resolv.conf").write_text(f"nameserver {DNS_SERVICE_IP}\n")
    (STATE / "kubelet.json").write_text(manifests.kubelet_yaml())
    _cgroup_root()
    proc.start("kubelet", [str(bin / "kubelet"), f"--config={STATE / 'kubelet.json'}",
                           f"--kubeconfig={kc('node')}", f"--hostname-override={NODE_NAME}",
                           f"--node-ip={NODE_IP}", f"--root-dir={STATE / 'kubelet'}", "-v=1"])
    proc.start("kube-proxy", [str(bin / "kube-proxy"), f"--kubeconfig={kc('kube-proxy')}",
                              f"--hostname-override={NODE_NAME}", "--proxy-mode=nftables",
                              f"--cluster-cidr={POD_CIDR}", "--metrics-bind-address=127.0.0.1:10249",
                              "--healthz-bind-address=127.0.0.1:10256",
                              # No conntrack sysctls to set: they are not this namespace's to change.
                              "--conntrack-max-per-core=0"])
    wait(f"node {NODE_NAME} Ready", "kubelet", lambda: _node_ready(bin), 120)
    log(f"node Ready {time.monotonic() - t0:.1f} s after etcd started")

    coredns = {"apiVersion": "v1", "kind": "List",
               "items": manifests.coredns_manifests(refs["coredns"][0])}
    kubectl(bin, "apply", "-f", "-", input=json.dumps(coredns))
    wait("CoreDNS answering through the kube-dns Service", "kube-proxy", _dns_answers, 120,
         explain=lambda: "CoreDNS's pod:\n" + kubectl(
             bin, "-n", "kube-system", "describe", "pod", "-l", "k8s-app=kube-dns", check=False)[-2500:])


def healthy(bin):
    """True when every component runs and the node is Ready (inside the namespace)."""
    return (all(proc.alive(c) for c in ORDER)
            and _get(f"https://{NODE_IP}:6443/readyz", _tls())[0] == 200
            and _node_ready(bin) and _dns_answers())


# -- on the host ----------------------------------------------------------

def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)


def create_netns():
    _ip("netns", "add", NETNS)
    _ip("-n", NETNS, "link", "set", "lo", "up")
    _ip("-n", NETNS, "link", "add", "node0", "type", "veth", "peer", "name", "node0p")
    _ip("-n", NETNS, "link", "set", "node0p", "up")
    _ip("-n", NETNS, "addr", "add", f"{NODE_IP}/24", "dev", "node0")
    _ip("-n", NETNS, "link", "set", "node0", "up")
    _ip("-n", NETNS, "route", "add", "default", "dev", "node0")


def in_netns(*argv):
    """argv as run inside the cluster's network namespace."""
    return ["nsenter", f"--net={NETNS_PATH}", *argv]


def _leftovers():
    """What a killed run may have left: the namespace, pid files, pod cgroups."""
    cgroups = any((h / manifests.CGROUP_ROOT).exists() for h in pathlib.Path("/sys/fs/cgroup").iterdir())
    return NETNS_PATH.exists() or any(PIDS.glob("*")) or cgroups or bool(_shims())


def up(entry):
    preflight()
    build.build(log=log)
    if NETNS_PATH.exists() and subprocess.run(
            in_netns(sys.executable, entry, "_healthy"), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0:
        log(f"the cluster is already up (KUBECONFIG={KUBECONFIG}); nothing to do")
        return 0
    if _leftovers():
        log(f"found what an earlier run left (network namespace {NETNS}, processes or pods): removing it first")
        down()
    create_netns()
    os.execvp("nsenter", in_netns(sys.executable, entry, "_up-inside"))


def up_inside():
    start_all(build.built())
    log(f"up: KUBECONFIG={KUBECONFIG}; `scripts/just cluster-shell` opens a shell inside")
    return 0


def _mounts_under(prefixes):
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return sorted({p for p in points if any(p == str(x) or p.startswith(str(x) + "/") for x in prefixes)},
                  key=len, reverse=True)


def _kill_cgroup_tasks():
    """Every process the kubelet's pods left behind, found by their cgroup."""
    for hierarchy in pathlib.Path("/sys/fs/cgroup").iterdir():
        root = hierarchy / manifests.CGROUP_ROOT
        if not root.is_dir():
            continue
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


def down():
    """Stops everything, also after a `cluster-up` that was killed with SIGKILL."""
    if os.geteuid() != 0:
        raise Fail("the local cluster needs root", "run it as root, e.g. `sudo scripts/just cluster-down`")
    for name in reversed(ORDER):
        if name == "containerd":
            # The shims and the containers outlive containerd: stop them first.
            _kill_cgroup_tasks()
            for shim in _shims():
                proc.kill(shim, timeout=2)
        proc.stop(name)
    _kill_cgroup_tasks()
    for shim in _shims():
        proc.kill(shim, timeout=2)
    if NETNS_PATH.exists():
        pids = _ip("netns", "pids", NETNS, check=False).stdout.split()
        for p in pids:
            proc.kill(int(p), timeout=5)
    for point in _mounts_under([STATE, RUN]):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)
    if NETNS_PATH.exists():
        _ip("netns", "del", NETNS, check=False)
    for d in [RUN] + [STATE / n for n in ("etcd", "containerd", "containerd-opt", "kubelet", "cni-ipam",
                                         "pki")]:
        shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(PIDS, ignore_errors=True)
    KUBECONFIG.unlink(missing_ok=True)
    log("down: every component stopped, namespace and pod sandboxes removed")
    return 0


def _shims():
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
