"""The ``repro`` console script and ``python -m repro``: start-up that cannot print a traceback.

Importing the CLI takes a moment; a Ctrl-C in that moment would otherwise end in a Python
traceback and exit 1 (which CI reads as "not reproduced"). So the interrupt is handled from the
first instant: one line, exit 130. This module imports only the standard library's ``os``,
``signal`` and ``sys`` before that handler is in place.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

INTERRUPTED = 130  # repro.errors.ExitCode.INTERRUPTED, not imported: start-up must stay minimal


def _interrupted_at_startup(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"interrupted\n")
    os._exit(INTERRUPTED)


def run() -> int:
    """Import the CLI with Ctrl-C handled, then run it with Python's usual KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, _interrupted_at_startup)
    from repro.cli import main

    # From here main() turns a KeyboardInterrupt into "interrupted" and exit 130 itself.
    signal.signal(signal.SIGINT, previous if callable(previous) else signal.default_int_handler)
    return main()


if __name__ == "__main__":
    sys.exit(run())
