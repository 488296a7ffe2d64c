"""No traceback, ever, property-based: junk argument lists and junk paths.

Whatever argument list ``repro.cli.app.main`` is given, it returns (never raises) and the code is one
of the documented ones for junk input: never 1 ("not reproduced") and never 70 (internal error).
Training is replaced by a stand-in that refuses, so a generated ``repro run`` stops where training
would start; everything before it (parsing, config resolution, key and output checks) is real.
"""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import repro
from repro.cli.app import build_parser, main
from repro.errors import CouldNotCheckError, ExitCode

REPRO_DIR = Path(repro.__file__).resolve().parent
JUNK_OK = {ExitCode.OK, ExitCode.USAGE, ExitCode.INTEGRITY, ExitCode.COULD_NOT_CHECK}


def _vocabulary() -> list[str]:
    """Every command and option name the parser knows."""
    words: set[str] = set()
    parser = build_parser()
    for action in parser._actions:
        words.update(action.option_strings)
        for name, sub in (getattr(action, "choices", None) or {}).items():
            words.add(name)
            for sub_action in sub._actions:
                words.update(sub_action.option_strings)
                words.update(str(c) for c in (sub_action.choices or []) if isinstance(c, str))
    return sorted(words)


VOCABULARY = _vocabulary()
VALUES = [
    ".", "/", "..", "/proc/self/status", "/proc/self/mem", "/dev/null", "/dev/zero", "missing.json",
    "malformed.json", "empty.txt", "folder", "smoke", "baseline", "gpt", ".x:Y", "x:", ":Y", "a.b:C.D",
    "seed=" + "9" * 20, "seed=-1", "steps=0", "steps=1e3", "=", "x", "-1", "0", "1e400", "nan", "9" * 30,
    "http://", "http://127.0.0.1:9/v1/query", "\x00", "é", "--", "-", "",
]
ARGV = st.lists(st.sampled_from(VOCABULARY) | st.sampled_from(VALUES) | st.text(max_size=8), max_size=7)


@pytest.fixture(scope="module")
def junk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding the junk files the values name (and no pyproject.toml)."""
    base = tmp_path_factory.mktemp("junk")
    (base / "malformed.json").write_text('{"kind": ')
    (base / "empty.txt").write_text("")
    (base / "folder").mkdir()
    return base


def _no_training(*args: object, **kwargs: object) -> None:
    raise CouldNotCheckError("fuzz: training is not started in this test")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=ARGV)
def test_any_argument_list_is_answered_without_a_crash(
    argv: list[str], junk_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(junk_dir)
    monkeypatch.setenv("REPRO_SIGNING_KEY", str(junk_dir / "fuzz-key.pem"))  # keygen --force writes here
    monkeypatch.setattr("repro.running.run.execute_run", _no_training)
    monkeypatch.setattr("repro.audits.engine.run_audit", _no_training)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code in JUNK_OK, (argv, code, err.getvalue()[-400:])
    assert "Traceback" not in out.getvalue() + err.getvalue()


@pytest.mark.parametrize("argv", [
    ["verify", "."], ["verify", "/"], ["audit", "."], ["audit", "/"], ["attest", "."],
    ["verify", "/proc/self/status"], ["verify", "/dev/null"],
    ["run", "smoke", "--trainer", ".x:Y"], ["run", "smoke", "--trainer", "x:"],
    ["run", "smoke", "--trainer", "os:path"], ["run", "smoke", "--set", "seed=" + "1" * 20],
    ["run", "smoke", "--seed", "1" * 20], ["audit", "missing.json", "--seed", "1" * 20],
])
def test_the_cases_found_by_review_are_one_line_errors(
    argv: list[str], junk_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(junk_dir)
    monkeypatch.setattr("repro.running.run.execute_run", _no_training)
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (ExitCode.USAGE, ExitCode.COULD_NOT_CHECK), (code, err)
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and "internal error" not in line, line
    assert "fuzz: training" not in line, "it got as far as training"


def _ctrl_c_as_in_a_terminal() -> None:
    """A shell without job control starts background jobs with SIGINT ignored, and children
    inherit that (a CI run launched as ``cmd &`` did: every Ctrl-C was lost, every verify finished);
    give the child the default action, which is what a terminal's Ctrl-C meets."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_at_any_moment_is_one_line_and_130(smoke_run: Path, tmp_path: Path) -> None:
    """A real ``repro`` process interrupted from its first instant to well into the command."""
    script = [sys.executable, "-c", "import sys; from repro.__main__ import run; sys.exit(run())"]
    seen = set()
    for delay in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0):
        proc = subprocess.Popen([*script, "verify", str(smoke_run)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                preexec_fn=_ctrl_c_as_in_a_terminal)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            continue  # finished before the signal
        seen.add(proc.returncode)
        if "Fatal Python error: init" in err:
            continue  # interrupted while the interpreter itself starts: before any line of repro runs
        if "Traceback" in err:
            # Interrupted in the wrapper before repro.__main__ is imported; any frame of repro's
            # own (a file of the repro package) would be repro's failure.
            assert f'File "{REPRO_DIR}' not in err, (delay, err[-600:])
            continue
        if proc.returncode != -signal.SIGINT:  # killed by SIGINT before Python installed its handler
            assert (proc.returncode, err) == (ExitCode.INTERRUPTED, "interrupted\n"), (delay, err[-600:])
    assert ExitCode.INTERRUPTED in seen
