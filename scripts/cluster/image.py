"""OCI images written directly, without a daemon or a registry.

An image here is one layer: the given programs plus exactly the shared
libraries they load (as `ldd` reports them, the dynamic loader included), at
the paths they are loaded from, owned by root and dated at the epoch so that
the same binaries always make the same image. `ctr images import` takes the
OCI layout as a tar; the `io.containerd.image.name` annotation names it.
"""
import hashlib
import io
import json
import pathlib
import re
import subprocess
import tarfile

from errors import Fail

LAYER = "application/vnd.oci.image.layer.v1.tar"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


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


def _blob(tar, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = _info("blobs/sha256/" + digest.split(":")[1], len(data))
    tar.addfile(info, io.BytesIO(data))
    return digest


def _json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write(out, ref, layer_tar, entrypoint, user="65532:65532", labels=None, ports=()):
    """Writes an OCI layout tar to `out` for the image `ref` (one layer)."""
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "User": user,
            "Entrypoint": entrypoint,
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "ExposedPorts": {f"{p}/tcp": {} for p in ports},
            "Labels": labels or {},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "scripts/cluster image.py"}],
    }
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        layer_digest = _blob(tar, layer_tar)
        config_bytes = _json(config)
        config_digest = _blob(tar, config_bytes)
        manifest = _json({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": len(layer_tar)}],
        })
        manifest_digest = _blob(tar, manifest)
        tag = ref.rsplit(":", 1)[1]
        index = _json({
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [{
                "mediaType": MANIFEST, "digest": manifest_digest, "size": len(manifest),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": ref,
                                "org.opencontainers.image.ref.name": tag},
            }],
        })
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)):
            tar.addfile(_info(name, len(data)), io.BytesIO(data))
    return manifest_digest
