"""Nothing from a manifest, a report, a file name or an error reaches a terminal raw (issue 18.7),
and nothing printed is read as rich markup (issue 19).

Real commands on copies of the session's smoke run: paths that look like markup, and escape
sequences (erase line, carriage return, window title, OSC 52 clipboard, C1 CSI) in folder names,
in a trainer name and artifact path re-signed with an attacker's key, and in error text.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from repro.cli import main
from repro.rendering.console import SafeConsole, say
from repro.text import escape_text, first_names, plural, utc_now
from repro.trust.keys import generate_key
from tests.audits.forgery import resign
from tests.conftest import copy_run

ERASE = "\x1b[2K\r"  # erase the line, back to its start: an error could hide itself
TITLE = "\x1b]0;owned\x07"  # set the window title
CLIPBOARD = "\x1b]52;c;cHduZWQ=\x07"  # write the clipboard
C1 = "\x9b31m"  # a C1 control sequence introducer
SEQUENCES = (ERASE, TITLE, CLIPBOARD, C1, "\x08\x7f")
RAW = ("\x1b", "\x07", "\x9b", "\r", "\x08", "\x7f")


def _clean(text: str) -> None:
    """No raw control character (a newline is ours); each sequence is shown, escaped."""
    assert not any(ch in text for ch in RAW), repr(text)


def _output(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_escape_text_shows_every_control_character() -> None:
    text = "a" + ERASE + TITLE + CLIPBOARD + C1 + "\x00\x7f\u202e\n" + "ü [b]"
    shown = escape_text(text)
    assert shown == ("a\\x1b[2K\\r\\x1b]0;owned\\a\\x1b]52;c;cHduZWQ=\\a\\x9b31m\\x00\\x7f\\u202e\\n"
                     "ü [b]")
    assert escape_text("one\ntwo", keep_newlines=True) == "one\ntwo"


def test_the_text_helpers() -> None:
    assert [plural(n, "file") for n in (0, 1, 3, 12000)] == ["0 files", "1 file", "3 files", "12,000 files"]
    assert plural(2, "process", "processes") == "2 processes"
    assert first_names([]) == "-" and first_names(["a", "b"]) == "a, b"
    assert first_names([str(i) for i in range(9)], 3) == "0, 1, 2 and 6 more"
    stamp = utc_now()
    assert stamp.endswith("+00:00") and len(stamp) == len("2026-12-06T01:56:28+00:00")


def test_the_console_never_reads_markup_and_escapes_controls() -> None:
    console = SafeConsole(width=80, file=io.StringIO(), force_terminal=True)
    say("path a[/x]b [draft] [bold]c[/] :smile: " + CLIPBOARD, console=console)
    console.print("cell [red]x[/red]" + TITLE)  # a plain string, as a table cell or print gets it
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "a[/x]b [draft] [bold]c[/] :smile: \\x1b]52;c;cHduZWQ=\\a" in out
    assert "cell [red]x[/red]\\x1b]0;owned\\a" in out
    assert "\x1b]" not in out and "\x07" not in out


def test_paths_that_look_like_markup_are_printed_as_written(smoke_run: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    manifest = copy_run(smoke_run, tmp_path / "a[" / "x] [draft] [bold]:smile:")
    assert "[/x]" in str(manifest)
    for command in (["verify", str(manifest)], ["show", str(manifest)]):
        assert main(command) == 0
        assert str(manifest) in _output(capsys)
    missing = tmp_path / "gone[/x]" / "[draft].json"
    assert main(["verify", str(missing)]) == 4  # as for any missing manifest; not 70: never read as markup
    out = _output(capsys)
    assert str(missing) in out and "error:" in out and "internal error" not in out


@pytest.mark.parametrize("sequence", SEQUENCES, ids=["erase", "title", "clipboard", "c1", "backspace-del"])
def test_a_trainer_name_with_escape_sequences_is_shown_escaped(smoke_run: Path, tmp_path: Path, sequence: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = copy_run(smoke_run, tmp_path / "run")

    def edit(raw: dict) -> None:
        raw["run"]["trainer"]["name"] = "gpt" + sequence + "verified"

    resign(manifest, edit, tmp_path / "attacker.pem")
    assert main(["show", str(manifest)]) == 0  # signed by a key on no trust list: shown, as such
    out = _output(capsys)
    _clean(out)
    assert "gpt" + escape_text(sequence) + "verified" in out
    # The audit cannot load such a trainer: its error names it, escaped (by repr() or by the console).
    assert main(["audit", str(manifest)]) in (2, 4)
    out = _output(capsys)
    _clean(out)
    assert "error: the run was made with trainer 'gpt\\x" in out


def test_an_artifact_path_with_escape_sequences_cannot_hide_the_error(smoke_run: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    manifest = copy_run(smoke_run, tmp_path / "run")
    forged = "ckpt" + ERASE + "\x1b[32mverified run.json: all artifacts match" + TITLE + CLIPBOARD

    def edit(raw: dict) -> None:
        raw["checkpoints"][0]["path"] = forged

    resign(manifest, edit, tmp_path / "attacker.pem")
    for command in (["verify", str(manifest)], ["show", str(manifest)], ["audit", str(manifest)]):
        code = main(command)
        out = _output(capsys)
        assert code in (2, 3, 4), (command, out)
        _clean(out)
        assert "error:" in out and "\\x1b[2K\\r\\x1b[32mverified" in out


def test_a_key_id_with_escape_sequences_is_shown_escaped(smoke_run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    manifest = copy_run(smoke_run, tmp_path / "run")
    raw = json.loads(manifest.read_text())
    raw["signature"]["key_id"] = raw["signature"]["key_id"] + CLIPBOARD
    manifest.write_text(json.dumps(raw))
    for command in (["verify", str(manifest)], ["show", str(manifest)]):
        assert main(command) != 0
        out = _output(capsys)
        _clean(out)


def test_diff_and_gate_show_escaped_folder_names(smoke_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    a = copy_run(smoke_run, tmp_path / ("a" + ERASE + TITLE))
    b = copy_run(smoke_run, tmp_path / ("b" + CLIPBOARD + C1))
    assert main(["diff", str(a), str(b)]) == 0
    out = _output(capsys)
    _clean(out)
    assert escape_text(str(a)) in out and escape_text(str(b)) in out

    trust = tmp_path / "trusted.txt"
    trust.write_text(generate_key(tmp_path / "someone-else.pem").public_line())
    config = tmp_path / "pyproject.toml"
    config.write_text(f"[tool.repro.gate]\nmanifests = [{json.dumps(str(b))}]\n"
                      f"trusted_keys = {json.dumps(str(trust))}\n"
                      "[tool.repro.gate.vulnerabilities]\nenabled = false\n", encoding="utf-8")
    summary, junit = tmp_path / "gate.md", tmp_path / "gate.xml"
    # The key is on no trust list: it fails before a rerun.
    assert main(["gate", "--config", str(config), "--summary", str(summary), "--junit", str(junit)]) != 0
    out = _output(capsys)
    _clean(out)
    assert escape_text(str(b)) in out and "gate:" in out
    for report in (summary.read_text(), junit.read_text()):  # the CI reports too: escaped, and valid XML
        _clean(report)
        assert escape_text(str(b)).replace("\\", "") in report.replace("\\", "")
    ET.parse(junit)
