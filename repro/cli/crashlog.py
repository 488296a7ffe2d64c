"""Crash reports: the traceback of an unexpected exception, kept in a file instead of the console.

``repro.cli.app.main`` turns a bug into one line ("internal error: ...") and the exit code
:attr:`repro.errors.ExitCode.INTERNAL`; the traceback goes to ``<cache>/crashes/`` (mode 0600,
written atomically), or to the temporary folder when the cache cannot be written.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

from repro import __version__
from repro.files import atomic
from repro.files.paths import cache_dir


def crash_text(exc: BaseException) -> str:
    """What a bug report needs: versions, the command line, the full traceback."""
    lines = [
        f"repro {__version__}, Python {platform.python_version()}, {platform.platform()}",
        f"command: {sys.argv!r}",
        "",
        *traceback.format_exception(type(exc), exc, exc.__traceback__),
    ]
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"


def write_crash_report(exc: BaseException) -> Path:
    """Write the crash report; return its path. Raises OSError only if no folder can take it."""
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    text = crash_text(exc)
    folders = [cache_dir() / "crashes", Path(tempfile.gettempdir())]
    for n, folder in enumerate(folders):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic.write_text(folder / name, text, mode=0o600)
            return folder / name
        except OSError:
            if n == len(folders) - 1:
                raise
    raise AssertionError("unreachable")
