"""CLI wiring: every command registered, and no core module importing ``repro.audits``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import repro
from repro.cli import main

_PACKAGE = Path(repro.__file__).parent
CORE = sorted(
    ".".join(p.relative_to(_PACKAGE).with_suffix("").parts)
    for p in _PACKAGE.rglob("*.py")
    if p.parts[len(_PACKAGE.parts)] not in ("cli", "trainer", "audits", "__main__.py")
    and p.stem != "__init__"
    # repro.record.transformers needs the optional extra; it is imported only by a user's script.
    and (p.stem != "transformers" or importlib.util.find_spec("transformers") is not None)
)


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
