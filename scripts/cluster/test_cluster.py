"""Unit tests of the cluster tooling that need no cluster: certificates,
images, build plan. `python3 -m unittest discover -s scripts/cluster`."""
import hashlib
import io
import json
import pathlib
import shutil
import tarfile
import tempfile
import unittest

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

import build
import image
import pki


class Certificates(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = pathlib.Path(tempfile.mkdtemp())
        pki.create(cls.dir, "198.18.0.1", "198.18.128.1", "node-a")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def cert(self, stem):
        return x509.load_pem_x509_certificate((self.dir / f"{stem}.crt").read_bytes())

    def test_every_certificate_is_v3_and_signed_by_the_ca(self):
        ca = self.cert("ca")
        for f in self.dir.glob("*.crt"):
            c = x509.load_pem_x509_certificate(f.read_bytes())
            # rustls (kube-rs) refuses v1 certificates.
            self.assertEqual(c.version, x509.Version.v3, f.name)
            c.verify_directly_issued_by(ca)

    def test_the_api_server_answers_to_the_node_and_service_addresses(self):
        sans = self.cert("apiserver").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = {str(i) for i in sans.get_values_for_type(x509.IPAddress)}
        self.assertTrue({"198.18.0.1", "198.18.128.1"} <= ips, ips)
        self.assertIn("kubernetes.default.svc", sans.get_values_for_type(x509.DNSName))

    def test_client_certificates_name_their_groups_and_allow_client_auth(self):
        admin = self.cert("admin")
        self.assertIn("O=system:masters", admin.subject.rfc4514_string())
        eku = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertIn(ExtendedKeyUsageOID.CLIENT_AUTH, list(eku))

    def test_a_second_call_keeps_the_existing_files(self):
        before = (self.dir / "ca.crt").read_bytes()
        pki.create(self.dir, "198.18.0.1", "198.18.128.1", "node-a")
        self.assertEqual((self.dir / "ca.crt").read_bytes(), before)


class Images(unittest.TestCase):
    def setUp(self):
        self.dir = pathlib.Path(tempfile.mkdtemp())

    def tearDown(self):
        shutil.rmtree(self.dir)

    def write(self, name):
        layer = image.programs_layer({"/true": shutil.which("true")})
        out = self.dir / name
        digest = image.write(out, "example.invalid/t:1", layer, ["/true"])
        return out, digest

    def test_a_dynamic_program_comes_with_its_loader_and_libraries(self):
        out, _ = self.write("a.tar")
        with tarfile.open(out) as tar:
            index = json.load(tar.extractfile("index.json"))
            manifest_digest = index["manifests"][0]["digest"]
            self.assertEqual(index["manifests"][0]["annotations"]["io.containerd.image.name"],
                             "example.invalid/t:1")
            manifest = json.load(tar.extractfile("blobs/sha256/" + manifest_digest.split(":")[1]))
            layer_digest = manifest["layers"][0]["digest"]
            layer = tar.extractfile("blobs/sha256/" + layer_digest.split(":")[1]).read()
        # Every blob is named by its content.
        self.assertEqual("sha256:" + hashlib.sha256(layer).hexdigest(), layer_digest)
        with tarfile.open(fileobj=io.BytesIO(layer)) as files:
            names = files.getnames()
        self.assertIn("true", names)
        self.assertTrue(any("ld-linux" in n for n in names), names)
        self.assertTrue(any(n.endswith("libc.so.6") for n in names), names)

    def test_the_same_programs_make_the_same_image(self):
        self.assertEqual(self.write("a.tar")[1], self.write("b.tar")[1])

    def test_a_static_program_has_no_libraries(self):
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"not an ELF file")
            f.flush()
            self.assertEqual(image.shared_libraries(f.name), [])


class Plan(unittest.TestCase):
    def test_kubernetes_binaries_carry_their_release_version(self):
        plan = {binary: flags for _, binary, _, flags in build._plan()}
        version = build.versions()["kubernetes"]
        self.assertIn(f"k8s.io/component-base/version.gitVersion={version}", plan["kube-apiserver"])
        self.assertIn("version.Version=3.", plan["prometheus"])
        self.assertEqual(build.prometheus_release("v0.316.0"), "3.16.0")
        self.assertIn(f"traefik/v3/pkg/version.Version={build.versions()['traefik']}", plan["traefik"])

    def test_every_component_has_a_pinned_module(self):
        for name in build.COMPONENTS:
            self.assertTrue((build.MODULES / name / "go.mod").exists(), name)


class Pins(unittest.TestCase):
    """deploy/cluster/pin.py copies what Go ignores in a dependency's go.mod."""

    def test_forks_and_excludes_are_kept_and_relative_replaces_are_not(self):
        import importlib.util
        spec = importlib.util.spec_from_file_location("pin", build.MODULES / "pin.py")
        pin = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(pin)
        gomod = """module example.com/up
require (
\tgithub.com/a/b v1.0.0 // indirect
)
// forks
replace (
\tgithub.com/a/b => github.com/fork/b v0.0.0-2020 // why
\texample.com/up/sub => ./sub
)
replace github.com/c/d => github.com/fork/d v1.2.3
replace example.com/up/api => ../api
exclude github.com/e/f v3.0.83+incompatible
exclude (
\tgithub.com/g/h v0.1.0
)
require (
\tgithub.com/i/j v1.0.0
)
"""
        forks, excludes = pin.forks_and_excludes(gomod)
        self.assertEqual(forks, ["github.com/a/b => github.com/fork/b v0.0.0-2020",
                                 "github.com/c/d => github.com/fork/d v1.2.3"])
        self.assertEqual(excludes, ["github.com/e/f v3.0.83+incompatible", "github.com/g/h v0.1.0"])

    def test_the_traefik_module_carries_its_forks(self):
        gomod = (build.MODULES / "traefik" / "go.mod").read_text()
        for line in ("github.com/gorilla/mux => github.com/containous/mux",
                     "exclude github.com/tencentcloud/tencentcloud-sdk-go"):
            self.assertIn(line, gomod)


if __name__ == "__main__":
    unittest.main()
