"""One-line errors with the commands that fix them."""
import sys


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
