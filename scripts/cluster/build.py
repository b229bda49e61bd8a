"""Build the cluster's components from the pinned Go modules in deploy/cluster.

The binaries go to a cache directory outside the clone, named after a hash of
every go.mod, go.sum and source file and of the commands and flags, so that a
second run finds them and any change to a pin builds afresh. Go's own module and build caches stay where
Go keeps them, so a rebuild after a pin change is incremental.

The pod sandbox's `pause` is Kubernetes' own C program, compiled static with
gcc straight from the pinned k8s.io/kubernetes module in Go's module cache,
as its build/pause/Makefile does. The go.sum line of that module pins its
content (Go checks every module against it), so the key covers pause.c too.
"""
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

from layout import CACHE, MODULES
from errors import Fail

# Module directory → (upstream module, commands, ldflags that stamp the release
# so that /version, `kubectl version` and Helm's kubeVersion checks see it).
def _kube_ldflags(version):
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={major}",
                  f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean",
                  f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]
    return flags


def prometheus_release(version):
    # github.com/prometheus/prometheus v0.MMmPP.x is Prometheus M.mm.x (v0.316.0 is 3.16.0).
    minor, patch = version.lstrip("v").split(".")[1:3]
    return f"{int(minor) // 100}.{int(minor) % 100}.{patch}"


COMPONENTS = {
    "kubernetes": ("k8s.io/kubernetes", {
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        "kubelet": "k8s.io/kubernetes/cmd/kubelet",
        "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
        "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        "kubeadm": "k8s.io/kubernetes/cmd/kubeadm",
    }, _kube_ldflags),
    "etcd": ("go.etcd.io/etcd/server/v3", {"etcd": "go.etcd.io/etcd/server/v3"}, lambda v: []),
    "helm": ("helm.sh/helm/v4", {"helm": "helm.sh/helm/v4/cmd/helm"},
             lambda v: [f"-X helm.sh/helm/v4/internal/version.version={v}",
                        "-X helm.sh/helm/v4/internal/version.gitTreeState=clean"]),
    "coredns": ("github.com/coredns/coredns", {"coredns": "github.com/coredns/coredns"},
                lambda v: [f"-X github.com/coredns/coredns/coremain.GitCommit={v}"]),
    "prometheus": ("github.com/prometheus/prometheus",
                   {"prometheus": "github.com/prometheus/prometheus/cmd/prometheus"},
                   lambda v: [f"-X github.com/prometheus/common/version.Version={prometheus_release(v)}",
                              f"-X github.com/prometheus/common/version.Revision={v}",
                              "-X github.com/prometheus/common/version.Branch=release"]),
    # The ingress controller (`traefik version`, and its /api/version).
    "traefik": ("github.com/traefik/traefik/v3", {"traefik": "github.com/traefik/traefik/v3/cmd/traefik"},
                lambda v: [f"-X github.com/traefik/traefik/v3/pkg/version.Version={v}"]),
    "crane": ("github.com/google/go-containerregistry",
              {"crane": "github.com/google/go-containerregistry/cmd/crane"},
              lambda v: [f"-X github.com/google/go-containerregistry/cmd/crane/cmd.Version={v}"]),
}

# Kubernetes' pod sandbox program: (module directory, file in the module, gcc flags: those of
# build/pause/Makefile, which adds -DVERSION, and -s for the `strip` it runs after gcc).
PAUSE = ("kubernetes", "build/pause/linux/pause.c", ["-Os", "-Wall", "-Werror", "-static", "-s"])


def _plan():
    """(component, binary, package, ldflags) for everything Go builds."""
    plan = []
    for name, (module, commands, ldflags) in COMPONENTS.items():
        flags = ["-s", "-w"] + ldflags(_version(name, module))
        plan += [(name, binary, package, " ".join(flags)) for binary, package in commands.items()]
    return plan


def key():
    """Changes with any pin, source file, command or flag."""
    h = hashlib.sha256(json.dumps([_plan(), PAUSE]).encode())
    for name in sorted(COMPONENTS):
        for f in sorted((MODULES / name).glob("*")):
            if f.suffix in (".mod", ".sum", ".go"):
                h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def bin_dir():
    return CACHE / f"bin-{key()}"


def built():
    """The directory with every binary, or None if a build is needed."""
    d = bin_dir()
    return d if (d / ".complete").exists() else None


def _require_go():
    if shutil.which("go") is None:
        raise Fail("no Go toolchain on PATH: the cluster's components are built from Go modules",
                   "install Go 1.26 (https://go.dev/dl/) and put it on PATH, then run `scripts/just cluster-up` again")


def _version(name, module):
    """The upstream version that deploy/cluster/<name>/go.mod requires."""
    text = (MODULES / name / "go.mod").read_text()
    m = re.search(rf"^require {re.escape(module)} (\S+)$", text, re.M)
    if not m:
        raise Fail(f"deploy/cluster/{name}/go.mod does not require {module}", "deploy/cluster/pin.py")
    return m.group(1)


def versions():
    """Upstream module versions by component directory."""
    return {name: _version(name, module) for name, (module, _, _) in COMPONENTS.items()}


def _module_dir(name):
    """Where Go's module cache holds the module that deploy/cluster/<name> pins
    (downloaded, and checked against go.sum, if it is not there yet)."""
    module = COMPONENTS[name][0]
    p = subprocess.run(["go", "mod", "download", "-json", module], cwd=MODULES / name, text=True,
                       env=dict(os.environ, GOFLAGS="-mod=readonly"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise Fail(f"go mod download {module} failed: {p.stdout.strip()[-500:]}",
                   f"cd {MODULES / name} && go mod download {module}")
    return pathlib.Path(json.loads(p.stdout)["Dir"])


def _require_static_gcc():
    libc = subprocess.run(["gcc", "-print-file-name=libc.a"], text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL).stdout.strip() if shutil.which("gcc") else ""
    if not os.path.isabs(libc):
        raise Fail("no gcc with a static C library: the pod sandbox's pause.c is compiled static",
                   "scripts/setup-debian gcc libc6-dev")


def build_pause(out):
    """Kubernetes' pause, static; writes `pause` and `pause.tag` (the image tag
    its Makefile gives it) into `out`."""
    name, source, flags = PAUSE
    src = _module_dir(name) / source
    makefile = (src.parents[1] / "Makefile").read_text()
    m = re.search(r"^TAG \?= (\S+)$", makefile, re.M)
    if not m:
        raise Fail(f"no `TAG ?=` line in {src.parents[1] / 'Makefile'}: cannot name the pause image")
    version = f"v{m.group(1)}-{_version(name, COMPONENTS[name][0])}"
    p = subprocess.run(["gcc", *flags, f"-DVERSION={version}", "-o", str(out / "pause"), str(src)],
                       text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise Fail(f"gcc {src} failed:\n{p.stdout.strip()}", "scripts/setup-debian gcc libc6-dev")
    (out / "pause.tag").write_text(m.group(1) + "\n")


def build(log=print):
    """Build every component that is not cached yet; return the bin directory."""
    done = built()
    if done:
        return done
    _require_go()
    _require_static_gcc()
    out = bin_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bin-partial-", dir=out.parent))
    try:
        _build_into(tmp, log)
    except BaseException:
        # Failed or interrupted: no half-built directory stays behind.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    # Older keys are pins no longer in use.
    for old in out.parent.glob("bin-*"):
        if old != out:
            shutil.rmtree(old, ignore_errors=True)
    log(f"built every component in {(out / '.complete').read_text().strip()} s into {out}")
    return out


def _build_into(tmp, log):
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    started = time.monotonic()
    for name, binary, package, flags in _plan():
        t = time.monotonic()
        log(f"building {binary} ({COMPONENTS[name][0]})")
        cmd = ["go", "build", "-trimpath", "-ldflags", flags, "-o", str(tmp / binary), package]
        proc = subprocess.run(cmd, cwd=MODULES / name, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-15:])
            raise Fail(f"building {binary} failed:\n{tail}", f"cd {MODULES / name} && go build {package}")
        log(f"  {binary}: {time.monotonic() - t:.0f} s")
    t = time.monotonic()
    log(f"building pause ({PAUSE[1]} of {COMPONENTS[PAUSE[0]][0]}, gcc -static)")
    build_pause(tmp)
    log(f"  pause: {time.monotonic() - t:.1f} s")
    (tmp / ".complete").write_text(f"{time.monotonic() - started:.0f}\n")


if __name__ == "__main__":
    try:
        build()
    except Fail as f:
        sys.exit(f.report())
