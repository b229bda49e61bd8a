"""One `cluster-up` at a time.

A second `up` during a start would see an unhealthy cluster and tear the
first one down. `up` therefore holds an exclusive flock on a file in the
state directory from its start to its end. The descriptor is inheritable, so
the lock stays held across `up`'s re-execution inside the namespace
(`nsenter` execs in the same process); the components, started with
close_fds, do not inherit it, so it is released when `up` ends however it
ends.
"""
import fcntl
import os

from errors import Fail, log


def hold(path):
    """Takes the lock at `path`, waiting (with one line saying so) while
    another process holds it; returns the descriptor, to pass on."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        log(f"another `cluster-up` (pid {holder}) is starting the cluster; waiting for it to finish")
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as e:
        raise Fail(f"cannot lock {path}: {e.strerror}", f"check that {path.parent} is writable") from e
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    os.set_inheritable(fd, True)
    return fd


def check_held(fd):
    """Fails unless `fd` is a descriptor that holds the lock (re-locking an
    already held lock through the same open file succeeds at once)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        raise Fail(f"the `up` lock was not passed on (descriptor {fd}: {e.strerror})",
                   "scripts/just cluster-up") from e
