"""Checks against the real local cluster: Ctrl-C and SIGTERM at several
points of `cluster-up` leave nothing (no process, mount, namespace, pod
cgroup), and a second `cluster-up` during a start waits for the first.

Each test starts and stops the cluster (a minute or two each), so they run
only when asked, as root, with the cluster down and its binaries built:

    LAMEDUCK_CLUSTER_LIVE=1 python3 -m unittest -v test_live    (in scripts/cluster)
"""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import build
import teardown
from layout import PIDS, RUN, STATE

HERE = pathlib.Path(__file__).resolve().parent
LIVE = os.environ.get("LAMEDUCK_CLUSTER_LIVE") == "1"


def cluster_processes():
    """Every process of the cluster's: by its arguments (state and run
    directories), its program (the built binaries) or its cgroup (the pods)."""
    bin_dir, out = str(build.bin_dir()), []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            exe = os.readlink(d / "exe") if (d / "exe").exists() else ""
            cgroup = (d / "cgroup").read_text()
        except OSError:
            continue
        if (str(STATE) in cmd or str(RUN) in cmd or exe.startswith(bin_dir)
                or "/lameduck-cluster/" in cgroup):
            out.append(f"{d.name} {cmd.strip()[:120]}")
    return out


@unittest.skipUnless(LIVE and os.geteuid() == 0, "set LAMEDUCK_CLUSTER_LIVE=1 and run as root: starts the cluster")
class Interrupts(unittest.TestCase):
    def setUp(self):
        self.assertIsNotNone(build.built(), "build first: scripts/just cluster-up")
        self.assertEqual(teardown.leftovers() + cluster_processes(), [],
                         "the cluster must be down first: scripts/just cluster-down")
        self.logs = pathlib.Path(tempfile.mkdtemp(prefix="cluster-live-"))
        self.started = []

    def tearDown(self):
        for p in self.started:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        subprocess.run([sys.executable, str(HERE), "down"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(self.logs)

    def up(self, name):
        """`cluster-up` in a process group of its own, as a terminal's foreground job."""
        with open(self.logs / f"{name}.out", "w") as out, open(self.logs / f"{name}.err", "w") as err:
            p = subprocess.Popen([sys.executable, str(HERE), "up"], stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=err, start_new_session=True)
        p.out, p.err = self.logs / f"{name}.out", self.logs / f"{name}.err"
        self.started.append(p)
        return p

    def until(self, what, check, timeout=300):
        deadline = time.monotonic() + timeout
        while not check():
            self.assertLess(time.monotonic(), deadline, f"not within {timeout} s: {what}")
            time.sleep(0.05)

    def interrupt_when(self, what, ready, signum, group=True):
        p = self.up(what.replace(" ", "-"))
        self.until(what, lambda: ready(p) or p.poll() is not None)
        self.assertIsNone(p.poll(), f"`up` ended before {what}: {p.err.read_text()}")
        if group:
            os.killpg(p.pid, signum)  # Ctrl-C: the whole foreground process group
        else:
            os.kill(p.pid, signum)
        code = p.wait(timeout=180)
        err = p.err.read_text()
        self.assertNotIn("Traceback", err)
        self.assertEqual(code, 128 + signum, err)
        self.assertTrue(err.strip().splitlines()[-1].endswith("nothing it started is left"), err)
        self.assertEqual(teardown.leftovers(), [])
        self.assertEqual(cluster_processes(), [])
        print(f"\n  {signal.Signals(signum).name} {what}: exit {code}, nothing left; {err.strip()}",
              file=sys.stderr)

    def test_sigint_while_etcd_starts(self):
        self.interrupt_when("while etcd starts", lambda p: (PIDS / "etcd").exists(), signal.SIGINT)

    def test_sigterm_while_the_api_server_starts(self):
        self.interrupt_when("while the API server starts", lambda p: (PIDS / "kube-apiserver").exists(),
                            signal.SIGTERM, group=False)

    def test_sigint_while_the_scheduler_is_waited_for(self):
        self.interrupt_when("while the scheduler is waited for", lambda p: (PIDS / "kube-scheduler").exists(),
                            signal.SIGINT)

    def test_sigint_while_the_kubelet_is_waited_for(self):
        self.interrupt_when("while the kubelet is waited for", lambda p: (PIDS / "kube-proxy").exists(),
                            signal.SIGINT)

    def test_sigterm_while_coredns_starts(self):
        self.interrupt_when("while CoreDNS starts", lambda p: "node Ready" in p.out.read_text(),
                            signal.SIGTERM, group=False)

    def test_a_second_up_waits_for_the_first_and_finds_it_up(self):
        first = self.up("first")
        self.until("etcd started", lambda: (PIDS / "etcd").exists() or first.poll() is not None)
        second = self.up("second")
        self.until("the second says it waits", lambda: "waiting for it" in second.out.read_text())
        self.assertEqual(first.wait(timeout=300), 0, first.err.read_text())
        self.assertEqual(second.wait(timeout=120), 0, second.err.read_text())
        self.assertIn("already up", second.out.read_text())
        self.assertEqual(subprocess.run([sys.executable, str(HERE), "down"]).returncode, 0)
        self.assertEqual(teardown.leftovers() + cluster_processes(), [])

    def test_ctrl_c_during_e2e_cluster_stops_the_suite_and_names_cluster_down(self):
        # The suite leaves the cluster up for the next run, interrupted or not; nothing of the
        # suite's own (cargo, the e2e runner, helm, kubectl) may outlive it.
        root = HERE.parents[1]
        with open(self.logs / "e2e.out", "w") as out:
            p = subprocess.Popen([str(root / "scripts" / "just"), "e2e-cluster"], cwd=root,
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.started.append(p)
        self.until("the e2e runner deploys", lambda: p.poll() is not None or any(
            "e2e cluster" in line for line in session_processes(p.pid)), timeout=1800)
        self.assertIsNone(p.poll(), (self.logs / "e2e.out").read_text()[-3000:])
        time.sleep(5)
        os.killpg(p.pid, signal.SIGINT)
        code = p.wait(timeout=300)
        text = (self.logs / "e2e.out").read_text()
        self.assertNotEqual(code, 0)
        self.assertIn("the cluster stays up: scripts/just cluster-down stops it", text)
        self.until("the session's processes end", lambda: session_processes(p.pid) == [], timeout=60)
        self.assertEqual(subprocess.run([sys.executable, str(HERE), "down"]).returncode, 0)
        self.assertEqual(teardown.leftovers() + cluster_processes(), [])
        print(f"\n  SIGINT during e2e-cluster: exit {code}; the last lines:\n" +
              "\n".join(text.strip().splitlines()[-4:]), file=sys.stderr)


def session_processes(sid):
    """The processes of session `sid` (what a terminal's Ctrl-C reaches)."""
    out = []
    for d in pathlib.Path("/proc").iterdir():
        try:
            if d.name.isdigit() and os.getsid(int(d.name)) == sid:
                out.append((d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return out


if __name__ == "__main__":
    unittest.main()
