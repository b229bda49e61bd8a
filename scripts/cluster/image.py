"""The cluster's images, made without a daemon or a registry to pull from,
and imported into the cluster's containerd.

An image here is one layer: the given programs plus exactly the shared
libraries they load (as `ldd` reports them, the dynamic loader included), at
the paths they are loaded from, owned by root and dated at the epoch so that
the same binaries always make the same layer. That part is ours: no upstream
tool picks a program's libraries. go-containerregistry's `crane` makes the
image of it: `crane append --oci-empty-base` the image from the layer, `crane
mutate` its entrypoint, user, ports and labels and the archive that `ctr
images import` takes. `crane mutate` reads its image from a registry only, so
`crane registry serve` runs on the loopback (in memory) while it does.
"""
import contextlib
import io
import pathlib
import re
import subprocess
import tarfile
import tempfile
import time

import build
from errors import Fail
from layout import PAUSE_REPO

COREDNS_IMAGE = "localhost/lameduck-cluster/coredns:{v}"
PROMETHEUS_IMAGE = "localhost/lameduck-cluster/prometheus:{v}"
TRAEFIK_IMAGE = "localhost/lameduck-cluster/traefik:{v}"
LAMEDUCK_REPO = "docker.io/library/lameduck-local"


def shared_libraries(binary):
    """The absolute paths a dynamically linked program loads; [] if static."""
    proc = subprocess.run(["ldd", str(binary)], text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    if "not a dynamic executable" in proc.stdout or "statically linked" in proc.stdout:
        return []
    if proc.returncode != 0:
        raise Fail(f"ldd {binary} failed: {proc.stdout.strip()}")
    libs = []
    for line in proc.stdout.splitlines():
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
        elif "not found" in line:
            raise Fail(f"{binary} needs a library that is missing here: {line.strip()}")
    return libs


def _info(path, size=0, mode=0o644, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(path.lstrip("/"))
    info.size, info.mode, info.type = size, mode, kind
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def layer(files):
    """An uncompressed tar of `files` ({path in image: path on host}) and their parents."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = set()
        for dest in sorted(files):
            for parent in reversed(pathlib.PurePosixPath(dest).parents[:-1]):
                if str(parent) not in dirs:
                    dirs.add(str(parent))
                    tar.addfile(_info(str(parent), mode=0o755, kind=tarfile.DIRTYPE))
            data = pathlib.Path(files[dest]).read_bytes()
            mode = 0o755 if pathlib.Path(files[dest]).stat().st_mode & 0o111 else 0o644
            tar.addfile(_info(dest, len(data), mode), io.BytesIO(data))
    return buf.getvalue()


def programs_layer(programs):
    """{path in image: host binary} plus every shared library they load."""
    files = dict(programs)
    for binary in programs.values():
        for lib in shared_libraries(binary):
            files.setdefault(lib, str(pathlib.Path(lib).resolve()))
    return layer(files)


def _crane(bin, *args):
    p = subprocess.run([str(bin / "crane"), *map(str, args)], text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise Fail(f"crane {args[0]} failed: {p.stdout.strip()[-800:]}")
    return p.stdout


@contextlib.contextmanager
def _registry(bin, timeout=30.0):
    """crane's in-memory registry on 127.0.0.1 (a free port), for the `with`
    block; its log goes to a file, which can never fill up and stall it."""
    with tempfile.TemporaryFile() as log:
        p = subprocess.Popen([str(bin / "crane"), "registry", "serve", "--address", "127.0.0.1:0"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + timeout
            while True:
                log.seek(0)
                text = log.read().decode(errors="replace")
                port = re.search(r"serving on port (\d+)", text)
                if port:
                    break
                if p.poll() is not None or time.monotonic() > deadline:
                    raise Fail(f"crane registry serve did not start: {text.strip()[-500:]}")
                time.sleep(0.05)
            yield f"127.0.0.1:{port.group(1)}"
        finally:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def write(bin, out, ref, layer_tar, entrypoint, user="65532:65532", labels=None, ports=()):
    """Writes the image `ref` (the one layer `layer_tar`) as an archive to `out`."""
    with tempfile.TemporaryDirectory() as tmp, _registry(bin) as registry:
        layer = pathlib.Path(tmp) / "layer.tar"
        layer.write_bytes(layer_tar)
        staged = f"{registry}/staged:latest"
        _crane(bin, "append", "--oci-empty-base", "--new_layer", layer, "--new_tag", staged)
        args = ["mutate", staged, "--set-platform", "linux/amd64", "--entrypoint", ",".join(entrypoint),
                "--user", user, "--env", "PATH=/usr/local/bin:/usr/bin:/bin", "--tag", ref, "--output", out]
        for port in ports:
            args += ["--exposed-ports", f"{port}/tcp"]
        for key, value in sorted((labels or {}).items()):
            args += ["--label", f"{key}={value}"]
        _crane(bin, *args)


def prometheus_ref():
    return PROMETHEUS_IMAGE.format(v="v" + build.prometheus_release(build.versions()["prometheus"]))


def pause_ref(bin):
    return f"{PAUSE_REPO}:{(bin / 'pause.tag').read_text().strip()}"


def cluster_images(bin):
    """The images no registry provides here, as OCI tars next to the binaries."""
    out = bin / "images"
    out.mkdir(exist_ok=True)
    wanted = {
        "pause": (pause_ref(bin), {"/pause": bin / "pause"}, ["/pause"], "65535:65535"),
        "coredns": (COREDNS_IMAGE.format(v=build.versions()["coredns"]), {"/coredns": bin / "coredns"},
                    ["/coredns"], "65532:65532"),
        "prometheus": (prometheus_ref(), {"/bin/prometheus": bin / "prometheus"}, ["/bin/prometheus"],
                       "65534:65534"),
        "traefik": (TRAEFIK_IMAGE.format(v=build.versions()["traefik"]), {"/traefik": bin / "traefik"},
                    ["/traefik"], "65532:65532"),
    }
    refs = {}
    for name, (ref, files, entrypoint, user) in wanted.items():
        tar = out / f"{name}.tar"
        if not tar.exists():
            partial = tar.with_suffix(".partial")
            write(bin, partial, ref, programs_layer(files), entrypoint, user=user)
            partial.rename(tar)
        refs[name] = (ref, tar)
    return refs
