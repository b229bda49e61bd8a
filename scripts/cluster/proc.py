"""Background components: started with their real pid recorded, checked by
pid and start time (so a recycled pid is never mistaken for them), stopped
with SIGTERM then SIGKILL, and their logs' last lines at hand."""
import os
import signal
import subprocess
import time

from layout import LOGS, PIDS


def _start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Field 22, counted after the parenthesised command name.
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def start(name, argv, env=None):
    """Starts `argv` detached from this process, logging to LOGS/<name>.log."""
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / f"{name}.log", "ab") as log:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env)
    (PIDS / name).write_text(f"{p.pid} {_start_time(p.pid)}\n")
    return p.pid


def pid(name):
    """The component's pid if it is still the process that was started."""
    try:
        number, started = (PIDS / name).read_text().split()
    except (OSError, ValueError):
        return None
    return int(number) if _start_time(int(number)) == started else None


def alive(name):
    return pid(name) is not None


def stop(name, timeout=10.0):
    """SIGTERM, then SIGKILL after `timeout` seconds; forgets the pid once it
    is gone. False if the process is still there."""
    p = pid(name)
    if p is not None and not kill(p, timeout):
        return False
    (PIDS / name).unlink(missing_ok=True)
    return True


def kill(p, timeout=10.0):
    """SIGTERM, then SIGKILL after `timeout` seconds; True once it is gone."""
    try:
        os.kill(p, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if _gone_within(p, timeout):
        return True
    try:
        os.kill(p, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return _gone_within(p, 5.0)


def _gone_within(p, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if _start_time(p) is None or _zombie(p):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _zombie(p):
    try:
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def log_tail(name, lines=20):
    try:
        text = (LOGS / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {LOGS / (name + '.log')})"
    return "\n".join(text[-lines:])
