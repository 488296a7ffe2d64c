"""The ``repro`` console script and ``python -m repro``: start-up that cannot print a traceback.

Importing the CLI takes a moment; a Ctrl-C in that moment would otherwise end in a Python
traceback and exit 1 (which CI reads as "not reproduced"). So the interrupt is handled from the
first instant: one line, exit 130. The handler is set when the console script imports this
module, which needs nothing but ``signal`` and ``sys``; only the interpreter's own start-up
(before any line of repro runs) is out of its reach.
"""

from __future__ import annotations

# ``_signal`` is the interpreter's own, already loaded at start-up: importing it is a dictionary
# look-up, where ``import signal`` runs a module (a Ctrl-C measured inside it printed a traceback).
# CPython's builtin C module: typeshed has no stub for it (it mirrors ``signal``'s functions).
import _signal  # type: ignore[import-not-found]

INTERRUPTED = 130  # repro.errors.ExitCode.INTERRUPTED, not imported: start-up must stay minimal


def _interrupted_at_startup(signum: int, frame: object) -> None:
    import os

    os.write(2, b"interrupted\n")
    os._exit(INTERRUPTED)


# At import, not in run(): the console script imports this module first, so the window in which
# a Ctrl-C can still raise is only the interpreter's own start-up.
if __name__ in ("__main__", "repro.__main__") and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _interrupted_at_startup)

import signal  # noqa: E402 - after the handler: see above
import sys  # noqa: E402

# Rust extension modules (pyo3) import Python modules from native code, and some of those imports
# panic when they fail: a Ctrl-C landing in one printed a Rust panic and its backtrace note above
# "interrupted" (measured: pydantic_core importing ``datetime``'s C API, in CI). So they, and the
# module they import, are loaded here, while a Ctrl-C still exits at once; later their imports find
# ``sys.modules`` filled and run no Python code a Ctrl-C could interrupt.
# tests/repro/test_startup.py checks that every pyo3 module a command loads is on this list.
NATIVE_FIRST = ("datetime", "pydantic_core", "cryptography.hazmat.bindings._rust", "safetensors")


def _import_native_first() -> None:
    import contextlib
    import importlib

    for name in NATIVE_FIRST:
        # A missing dependency is the command's to report, in its own words.
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def run() -> int:
    """Import the CLI with Ctrl-C handled, then run it with Python's usual KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, _interrupted_at_startup)
    _import_native_first()
    from repro.cli.app import main

    # From here main() turns a KeyboardInterrupt into "interrupted" and exit 130 itself.
    if previous is _interrupted_at_startup:
        previous = signal.default_int_handler
    signal.signal(signal.SIGINT, previous)
    return main()


if __name__ == "__main__":
    sys.exit(run())
