"""CLI wiring without the core importing ``repro.audits`` (issue 10 item 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import repro
from repro.cli import COMMANDS, main

CORE = sorted(p.stem for p in Path(repro.__file__).parent.glob("*.py") if p.stem not in ("__init__", "__main__"))


def test_no_core_module_imports_audits_when_imported() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {CORE!r}:\n"
        "    importlib.import_module('repro.' + name)\n"
        "bad = sorted(m for m in sys.modules if m.startswith('repro.audits'))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    names = ("run", "verify", "keygen", "trainers", "attest", "show", "gate", "audit", "diff")
    for name in names:
        assert f"    {name} " in out, name
    assert len(COMMANDS) == len(names) and all(":" in reference for reference in COMMANDS)
