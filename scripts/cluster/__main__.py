"""A one-node Kubernetes cluster from upstream sources, in a network namespace.

    python3 scripts/cluster build          build (or find cached) every component
    python3 scripts/cluster up             start the cluster; a no-op when it is up
    python3 scripts/cluster down           stop it and remove everything it made
    python3 scripts/cluster shell [CMD…]   CMD (or a shell) inside, with kubectl and helm
    python3 scripts/cluster load           build lameduck's image and import it; prints its reference
    python3 scripts/cluster prometheus     apply deploy/prometheus/ with the image built here
    python3 scripts/cluster traefik        apply deploy/traefik/ (the ingress controller) likewise
    python3 scripts/cluster has-image REF  exit 0 if the cluster's containerd has the image REF
    python3 scripts/cluster dashboard --namespace NS --runs RUN.json… --out PNG
                                           deploy/grafana's Shutdowns row, drawn from the cluster's Prometheus

Exit codes: 0 done, 1 failed (one line saying why, and what to run), 2 bad usage,
130 and 143 interrupted by SIGINT (Ctrl-C) and SIGTERM; an interrupted `up`
first stops what it started.
"""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import yaml

import build
import containerd
import image
import netns
import node
import stages
import teardown
from errors import Fail, Interrupted, log, raise_on_signals
from layout import CONTAINERD_SOCKET, KUBECONFIG, NETNS_PATH, ROOT

ENTRY = str(pathlib.Path(__file__).resolve().parent)


def _require_up():
    if not (NETNS_PATH.exists() and KUBECONFIG.exists()):
        raise Fail("the local cluster is not up", "scripts/just cluster-up")


def shell(argv):
    _require_up()
    bin = build.built()
    if bin is None:
        raise Fail("the cluster's binaries are not built", "scripts/just cluster-up")
    env = dict(os.environ, KUBECONFIG=str(KUBECONFIG), PATH=f"{bin}:{os.environ.get('PATH', '')}")
    argv = argv or [os.environ.get("SHELL") or "/bin/bash", "-i"]
    os.execvpe("nsenter", netns.in_netns(*argv), env)


def _git_tag():
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, text=True,
                           stdout=subprocess.PIPE).stdout.strip()
    return sha + ("-dirty" if dirty else "")


def load():
    """lameduck and loadgen, release builds, as an image in the cluster's containerd."""
    _require_up()
    log("cargo build --release -p lameduck-cli -p loadgen")
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "lameduck-cli", "-p", "loadgen"],
                   cwd=ROOT, check=True)
    release = ROOT / "target" / "release"
    ref = f"{image.LAMEDUCK_REPO}:{_git_tag()}"
    out = ROOT / "target" / "cluster"
    out.mkdir(parents=True, exist_ok=True)
    tar = out / "lameduck-image.tar"
    layer = image.programs_layer({"/lameduck": release / "lameduck", "/loadgen": release / "loadgen"})
    # The same user as the Dockerfile's distroless nonroot image.
    image.write(build.built(), tar, ref, layer, ["/lameduck"], user="65532:65532", ports=(8080, 8081),
                labels={"org.opencontainers.image.title": "lameduck",
                        "org.opencontainers.image.source": "https://github.com/lameduck-rs/lameduck"})
    containerd.import_tar(tar, ref)
    log(f"imported into {CONTAINERD_SOCKET} ({len(layer) // 1024} KiB layer)")
    print(ref)
    return 0


def _apply(directory, namespace, container, ref):
    """deploy/<directory>/ applied as it is but for one container's image, built
    here (no registry), then its Deployment (named like the container) waited for."""
    _require_up()
    bin = build.built()
    containerd.require(ref)
    docs = []
    for f in sorted((ROOT / "deploy" / directory).glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    # A changed ConfigMap reaches a running Deployment only through a new pod:
    # the pod template carries a hash of everything applied.
    digest = hashlib.sha256(json.dumps(docs, sort_keys=True).encode()).hexdigest()[:16]
    for d in docs:
        if d["kind"] == "Deployment":
            template = d["spec"]["template"]
            template.setdefault("metadata", {}).setdefault("annotations", {})[
                "lameduck.local/applied-hash"] = digest
            for c in template["spec"]["containers"]:
                if c["name"] == container:
                    c["image"], c["imagePullPolicy"] = ref, "Never"
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    stages.kubectl(bin, "apply", "-f", "-", input=manifest, from_host=True)
    stages.kubectl(bin, "-n", namespace, "rollout", "status", f"deployment/{container}", "--timeout=120s",
                   from_host=True)


def prometheus():
    """Debian's Prometheus has no Kubernetes discovery."""
    ref = image.prometheus_ref()
    _apply("prometheus", "monitoring", "prometheus", ref)
    log(f"Prometheus ({ref}) is ready: monitoring/prometheus:web")
    return 0


def traefik():
    """The ingress controller, built from deploy/cluster/traefik."""
    ref = image.TRAEFIK_IMAGE.format(v=build.versions()["traefik"])
    _apply("traefik", "traefik", "traefik", ref)
    log(f"Traefik ({ref}) is ready: IngressClass traefik, Service traefik/traefik port 80")
    return 0


def dashboard(argv):
    """deploy/grafana's Shutdowns row as a PNG, from the cluster's Prometheus."""
    import argparse

    parser = argparse.ArgumentParser(prog="scripts/cluster dashboard")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--runs", nargs="+", required=True,
                        help="the rollout suite's run records (target/e2e/<run>.json) whose time range to draw")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    _require_up()
    bin = build.built()
    import dashboard as board

    def get(path):
        return json.loads(stages.kubectl(bin, "get", "--raw", path, from_host=True))

    log(f"wrote {board.draw(get, args.namespace, args.runs, args.out)}")
    return 0


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    raise_on_signals()
    try:
        if command == "build":
            print(build.build(log=log))
            return 0
        if command == "up":
            return node.up(ENTRY)
        if command == "_up-inside":
            return node.up_inside(int(rest[0]))
        if command == "_healthy":
            return 0 if stages.healthy(build.built()) else 1
        if command == "down":
            return teardown.down()
        if command == "has-image":
            if len(rest) != 1:
                print("error: has-image takes one image reference, e.g. "
                      f"{image.LAMEDUCK_REPO}:abc1234", file=sys.stderr)
                return 2
            _require_up()
            containerd.require(rest[0])
            return 0
        if command == "shell":
            return shell(rest)
        if command == "load":
            return load()
        if command == "prometheus":
            return prometheus()
        if command == "traefik":
            return traefik()
        if command == "dashboard":
            return dashboard(rest)
    except Fail as f:
        return f.report()
    except (Interrupted, KeyboardInterrupt) as e:
        i = e if isinstance(e, Interrupted) else Interrupted(2)
        print(f"error: {command} interrupted ({i})", file=sys.stderr)
        return i.code
    except subprocess.CalledProcessError as e:
        return Fail(f"{' '.join(map(str, e.cmd))} exited with {e.returncode}").report()
    print(f"error: unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
