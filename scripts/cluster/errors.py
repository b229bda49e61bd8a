"""What the user sees: progress lines, and one-line errors with the
commands that fix them."""
import signal
import sys
import time


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Fail(Exception):
    """A failure the user can act on: what went wrong, and what to run."""

    def __init__(self, message, fix=None, code=1):
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.code = code

    def report(self):
        print(f"error: {self.message}", file=sys.stderr)
        if self.fix:
            print(f"  to fix: {self.fix}", file=sys.stderr)
        return self.code


class Interrupted(Exception):
    """SIGINT or SIGTERM, raised where the program was, so that it can stop
    what it started (see `raise_on_signals`)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        # The shell's convention: 128 + the signal's number.
        self.code = 128 + signum


def _raise(signum, _frame):
    raise Interrupted(signum)


def raise_on_signals():
    """Ctrl-C (SIGINT) and SIGTERM raise Interrupted instead of ending the
    process with a traceback, or (SIGTERM) with nothing cleaned up."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _raise)
