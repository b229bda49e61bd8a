"""Unit tests of the cluster tooling that need no cluster: certificates,
images, build plan, preflight, the `up` lock, teardown's report, interrupts.
`python3 -m unittest discover -s scripts/cluster`. The tests of kubeadm's and
crane's output need the built binaries (`scripts/just cluster-up` builds
them) and are skipped, saying so, without them."""
import base64
import contextlib
import hashlib
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import unittest
from unittest import mock

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import build
import certs
import containerd
import errors
import image
import lock
import node
import stages
import teardown
from layout import CONTEXT, NODE_IP, API_SERVICE_IP, NODE_NAME

BIN = build.built()
NEEDS_BIN = unittest.skipIf(BIN is None, "the cluster's binaries are not built (scripts/just cluster-up)")
HERE = pathlib.Path(__file__).resolve().parent


@NEEDS_BIN
class Certificates(unittest.TestCase):
    """What the API server's flags and the components rely on, from kubeadm."""

    @classmethod
    def setUpClass(cls):
        cls.dir = pathlib.Path(tempfile.mkdtemp())
        certs.create(BIN, cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def cert(self, stem):
        return x509.load_pem_x509_certificate((self.dir / "pki" / f"{stem}.crt").read_bytes())

    def kubeconfig(self, name):
        return yaml.safe_load((self.dir / name).read_text())

    def client_cert(self, name):
        user = self.kubeconfig(name)["users"][0]["user"]
        return x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))

    def test_every_certificate_is_v3_and_signed_by_the_ca(self):
        ca = self.cert("ca")
        certs_ = [self.cert("apiserver"), self.cert("apiserver-kubelet-client")]
        certs_ += [self.client_cert(f) for f in certs.KUBECONFIGS.values()]
        for c in certs_:
            # rustls (kube-rs) refuses v1 certificates.
            self.assertEqual(c.version, x509.Version.v3, c.subject)
            c.verify_directly_issued_by(ca)

    def test_the_api_server_answers_to_the_node_and_service_addresses(self):
        sans = self.cert("apiserver").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = {str(i) for i in sans.get_values_for_type(x509.IPAddress)}
        self.assertTrue({NODE_IP, API_SERVICE_IP, "127.0.0.1"} <= ips, ips)
        self.assertIn("kubernetes.default.svc", sans.get_values_for_type(x509.DNSName))

    def test_the_service_account_keys_are_a_pair(self):
        key = serialization.load_pem_private_key((self.dir / "pki" / "sa.key").read_bytes(), None)
        pub = serialization.load_pem_public_key((self.dir / "pki" / "sa.pub").read_bytes())
        self.assertEqual(key.public_key().public_numbers(), pub.public_numbers())

    def test_each_component_has_its_user_and_groups(self):
        want = {"admin.conf": ("kubernetes-admin", ["kubeadm:cluster-admins"]),
                "super-admin.conf": ("kubernetes-super-admin", ["system:masters"]),
                "controller-manager.conf": ("system:kube-controller-manager", []),
                "scheduler.conf": ("system:kube-scheduler", []),
                "kubelet.conf": (f"system:node:{NODE_NAME}", ["system:nodes"]),
                "kube-proxy.conf": ("system:kube-proxy", ["system:node-proxier"])}
        for name, (cn, groups) in want.items():
            c = self.client_cert(name)
            self.assertEqual(c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, cn, name)
            self.assertEqual([a.value for a in c.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)],
                             groups, name)
            eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            self.assertIn(ExtendedKeyUsageOID.CLIENT_AUTH, list(eku), name)
            self.assertEqual(self.kubeconfig(name)["clusters"][0]["cluster"]["server"], f"https://{NODE_IP}:6443")

    def test_the_admin_context_is_the_one_the_suite_names(self):
        self.assertEqual(self.kubeconfig("admin.conf")["current-context"], CONTEXT)

    def test_a_second_call_keeps_the_existing_files(self):
        before = (self.dir / "pki" / "ca.crt").read_bytes()
        certs.create(BIN, self.dir)
        self.assertEqual((self.dir / "pki" / "ca.crt").read_bytes(), before)


class Layers(unittest.TestCase):
    def test_a_dynamic_program_comes_with_its_loader_and_libraries(self):
        with tarfile.open(fileobj=io.BytesIO(image.programs_layer({"/true": shutil.which("true")}))) as t:
            names = t.getnames()
        self.assertIn("true", names)
        self.assertTrue(any("ld-linux" in n for n in names), names)
        self.assertTrue(any(n.endswith("libc.so.6") for n in names), names)

    def test_the_same_programs_make_the_same_layer(self):
        files = {"/true": shutil.which("true")}
        self.assertEqual(hashlib.sha256(image.programs_layer(files)).digest(),
                         hashlib.sha256(image.programs_layer(files)).digest())

    def test_a_static_program_has_no_libraries(self):
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"not an ELF file")
            f.flush()
            self.assertEqual(image.shared_libraries(f.name), [])


@NEEDS_BIN
class Images(unittest.TestCase):
    def setUp(self):
        self.dir = pathlib.Path(tempfile.mkdtemp())

    def tearDown(self):
        shutil.rmtree(self.dir)

    def write(self, name):
        out = self.dir / name
        image.write(BIN, out, "example.invalid/t:1", image.programs_layer({"/true": shutil.which("true")}),
                    ["/true"], user="65532:65532", ports=(8080,), labels={"a": "b"})
        with tarfile.open(out) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))
            config = json.load(tar.extractfile(manifest[0]["Config"]))
        return manifest, config

    def test_the_archive_names_the_image_and_carries_its_config(self):
        manifest, config = self.write("a.tar")
        self.assertEqual(manifest[0]["RepoTags"], ["example.invalid/t:1"])
        self.assertEqual(config["config"]["Entrypoint"], ["/true"])
        self.assertEqual(config["config"]["User"], "65532:65532")
        self.assertEqual(config["config"]["ExposedPorts"], {"8080/tcp": {}})
        self.assertEqual(config["config"]["Labels"], {"a": "b"})
        self.assertEqual((config["os"], config["architecture"]), ("linux", "amd64"))

    def test_the_same_programs_make_the_same_image(self):
        self.assertEqual(self.write("a.tar"), self.write("b.tar"))


class MissingImage(unittest.TestCase):
    def test_a_missing_image_names_the_command_that_imports_it(self):
        ref = f"{image.LAMEDUCK_REPO}:abc1234"
        listed = subprocess.CompletedProcess([], 0, stdout="docker.io/library/other:1\n")
        with mock.patch.object(containerd, "_ctr", return_value=listed) as ctr:
            with self.assertRaises(errors.Fail) as f:
                containerd.require(ref)
        ctr.assert_called_once_with("images", "ls", "--quiet")
        self.assertIn(ref, f.exception.message)
        self.assertNotIn("\n", f.exception.message)
        self.assertIn("cluster-load", f.exception.fix)

    def test_a_listed_image_passes(self):
        ref = f"{image.LAMEDUCK_REPO}:abc1234"
        with mock.patch.object(containerd, "_ctr", return_value=subprocess.CompletedProcess([], 0, stdout=ref)):
            containerd.require(ref)


class Plan(unittest.TestCase):
    def test_kubernetes_binaries_carry_their_release_version(self):
        plan = {binary: flags for _, binary, _, flags in build._plan()}
        version = build.versions()["kubernetes"]
        for binary in ("kube-apiserver", "kubeadm"):
            self.assertIn(f"k8s.io/component-base/version.gitVersion={version}", plan[binary])
        self.assertIn("version.Version=3.", plan["prometheus"])
        self.assertEqual(build.prometheus_release("v0.316.0"), "3.16.0")
        self.assertIn(f"traefik/v3/pkg/version.Version={build.versions()['traefik']}", plan["traefik"])

    def test_every_component_has_a_pinned_module(self):
        for name in build.COMPONENTS:
            self.assertTrue((build.MODULES / name / "go.mod").exists(), name)

    def test_the_key_covers_the_module_pause_c_comes_from(self):
        # go.sum pins the module's content, pause.c included; the key hashes go.sum.
        name = build.PAUSE[0]
        with tempfile.TemporaryDirectory() as d:
            copy = pathlib.Path(d) / "modules"
            shutil.copytree(build.MODULES, copy)
            with mock.patch.object(build, "MODULES", copy):
                before = build.key()
                gosum = copy / name / "go.sum"
                self.assertIn(f"{build.COMPONENTS[name][0]} {build.versions()[name]} h1:", gosum.read_text())
                gosum.write_text(gosum.read_text() + "example.invalid/x v1.0.0 h1:x=\n")
                self.assertNotEqual(build.key(), before)


class Preflight(unittest.TestCase):
    def test_a_unified_hierarchy_is_cgroup_v2(self):
        with tempfile.TemporaryDirectory() as d:
            root = pathlib.Path(d)
            (root / "memory").mkdir()
            self.assertFalse(node.cgroup_v2(root))
            (root / "cgroup.controllers").write_text("cpu memory pids\n")
            self.assertTrue(node.cgroup_v2(root))

    def test_cgroup_v2_fails_with_one_line_before_anything_is_made(self):
        with mock.patch.object(node.os, "geteuid", return_value=0), \
                mock.patch.object(node, "cgroup_v2", return_value=True):
            with self.assertRaises(errors.Fail) as f:
                node.preflight()
        self.assertIn("cgroup v1", f.exception.message)
        self.assertNotIn("\n", f.exception.message)


class UpLock(unittest.TestCase):
    """A second `up` waits for the first; the lock survives the exec into the namespace."""

    def setUp(self):
        self.dir = pathlib.Path(tempfile.mkdtemp())
        self.path = self.dir / "up.lock"

    def tearDown(self):
        shutil.rmtree(self.dir)

    def run_python(self, code, **kw):
        return subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r})\n{code}"],
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)

    def test_a_second_holder_waits_with_one_line_until_the_first_lets_go(self):
        fd = lock.hold(self.path)
        second = self.run_python(f"import lock, pathlib; lock.hold(pathlib.Path({str(self.path)!r})); print('got it')")
        first_line = second.stdout.readline()
        self.assertIn(f"(pid {os.getpid()}) is starting the cluster; waiting", first_line)
        self.assertIsNone(second.poll())
        os.close(fd)
        out, _ = second.communicate(timeout=30)
        self.assertEqual(out.strip(), "got it")

    def test_the_lock_is_still_held_after_an_exec(self):
        fd = lock.hold(self.path)
        # The holder execs (as `up` does into nsenter) and checks that it still holds it.
        after = self.dir / "after_exec.py"
        after.write_text(f"import sys, time\nsys.path.insert(0, {str(HERE)!r})\nimport lock\n"
                         "lock.check_held(int(sys.argv[1]))\nprint('held', flush=True)\ntime.sleep(30)\n")
        holder = self.run_python(f"import os, sys; os.execv(sys.executable, [sys.executable, {str(after)!r}, '{fd}'])",
                                 pass_fds=(fd,))
        os.close(fd)
        self.assertEqual(holder.stdout.readline().strip(), "held")
        other = self.run_python(f"import fcntl, os; fd = os.open({str(self.path)!r}, os.O_RDWR)\n"
                                "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                                "except BlockingIOError:\n    print('locked')")
        self.assertEqual(other.communicate(timeout=30)[0].strip(), "locked")
        holder.kill()
        holder.communicate()

    def test_a_descriptor_that_does_not_hold_it_fails(self):
        fd = lock.hold(self.path)
        other = os.open(self.path, os.O_RDWR)
        try:
            with self.assertRaises(errors.Fail):
                lock.check_held(other)
        finally:
            os.close(other)
            os.close(fd)


class Teardown(unittest.TestCase):
    def test_down_fails_with_one_line_per_leftover(self):
        left = ["etcd still running (pid 42)", "mount /run/lameduck-cluster/x"]
        stderr = io.StringIO()
        with mock.patch.object(teardown.os, "geteuid", return_value=0), \
                mock.patch.multiple(teardown, _kill_pods=mock.DEFAULT, mounts_under=mock.Mock(return_value=[]),
                                    leftovers=mock.Mock(return_value=left)), \
                mock.patch.object(teardown.proc, "stop"), mock.patch.object(teardown.netns, "pids", return_value=[]), \
                mock.patch.object(teardown.netns, "delete", return_value=None), \
                mock.patch.object(teardown.shutil, "rmtree"), contextlib.redirect_stderr(stderr):
            self.assertEqual(teardown.down(), 1)
        self.assertEqual(stderr.getvalue().splitlines(),
                         [f"error: still there after cluster-down: {x}" for x in left])

    def test_mounts_are_found_below_the_prefixes_deepest_first(self):
        with tempfile.NamedTemporaryFile("w") as f:
            f.write("overlay /run/lameduck-cluster/a overlay rw 0 0\n"
                    "shm /run/lameduck-cluster/a/b\\040c tmpfs rw 0 0\n"
                    "tmpfs /run/lameduck-clusterx tmpfs rw 0 0\n")
            f.flush()
            self.assertEqual(teardown.mounts_under([pathlib.Path("/run/lameduck-cluster")], f.name),
                             ["/run/lameduck-cluster/a/b c", "/run/lameduck-cluster/a"])


class Waiting(unittest.TestCase):
    def test_a_component_that_died_is_named_not_the_one_waited_on(self):
        with tempfile.TemporaryDirectory() as d:
            pids = pathlib.Path(d)
            (pids / "kube-scheduler").write_text("999999999 1\n")
            with mock.patch.object(stages, "PIDS", pids), mock.patch.object(stages.proc, "PIDS", pids):
                with self.assertRaises(errors.Fail) as f:
                    stages.wait("CoreDNS answering", lambda: False, 60, lambda: "explained")
        self.assertTrue(f.exception.message.startswith("kube-scheduler exited"), f.exception.message)


class Interrupts(unittest.TestCase):
    def test_an_interrupted_up_stops_what_it_started_and_exits_130(self):
        stderr = io.StringIO()
        with mock.patch.object(node.teardown, "down", return_value=0) as down, \
                contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = node._stop_after(errors.Interrupted(signal.SIGINT))
        self.assertEqual(code, 130)
        down.assert_called_once_with(exclude={os.getpid()})
        self.assertEqual(len(stderr.getvalue().splitlines()), 1, stderr.getvalue())

    def test_a_second_interrupt_leaves_it_and_names_cluster_down(self):
        with mock.patch.object(node.teardown, "down", side_effect=errors.Interrupted(signal.SIGTERM)), \
                contextlib.redirect_stdout(io.StringIO()):
            with self.assertRaises(errors.Fail) as f:
                node._stop_after(errors.Interrupted(signal.SIGTERM))
        self.assertEqual(f.exception.code, 143)
        self.assertIn("cluster-down", f.exception.fix)

    def test_sigterm_ends_a_command_with_one_line_and_no_traceback(self):
        # `build`, made to sleep instead of building, gets SIGTERM.
        script = (f"import os, runpy, signal, sys, threading, time\nsys.path.insert(0, {str(HERE)!r})\n"
                  "import build\nbuild.build = lambda log: time.sleep(30)\nsys.argv = ['cluster', 'build']\n"
                  "threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()\n"
                  f"runpy.run_path({str(HERE / '__main__.py')!r}, run_name='__main__')\n")
        p = subprocess.run([sys.executable, "-c", script], text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 143, p.stderr)
        self.assertEqual(p.stderr.strip().splitlines(), ["error: build interrupted (SIGTERM)"])


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
