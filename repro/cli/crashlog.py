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


MAX_REPORTS = 50
"""Crash reports kept in the cache's crash folder; older ones are removed."""

MAX_REPORT_CHARS = 1 << 20
"""Longest crash report written (a traceback can quote huge values)."""


def write_crash_report(exc: BaseException) -> Path:
    """Write the crash report; return its path. Raises OSError only if no folder can take it.

    In the cache's ``crashes/`` folder (the newest :data:`MAX_REPORTS` kept), else in a new private
    folder made by ``mkdtemp`` in the temporary folder: a predictable name there could be a
    symlink planted by another user, which the report would follow.
    """
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    text = crash_text(exc)[:MAX_REPORT_CHARS]
    folder = cache_dir() / "crashes"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic.write_text(folder / name, text, mode=0o600)
        _prune(folder)
        return folder / name
    except OSError:
        private = Path(tempfile.mkdtemp(prefix="repro-crash-"))  # 0700, a fresh unpredictable name
        atomic.write_text(private / name, text, mode=0o600)
        return private / name


def _prune(folder: Path) -> None:
    """Keep the newest :data:`MAX_REPORTS` crash reports (regular files only; links are left alone)."""
    reports = sorted((p for p in folder.glob("crash-*.txt") if p.is_file() and not p.is_symlink()),
                     key=lambda p: p.name)
    for old in reports[:-MAX_REPORTS]:
        old.unlink(missing_ok=True)
