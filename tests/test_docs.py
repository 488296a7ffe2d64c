"""The commands the README and docs show must exist as shown: every `repro …` example in a code
block parses with the real argument parser, and every flag in README's command table is a flag of
that command. (The examples' behaviour is tested where each feature is; this keeps the docs from
drifting away from the CLI.)"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from repro.cli.app import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```")
COMMAND = re.compile(r"^\s*(?:\.venv/bin/)?repro\s+(?P<args>.*)$")


def _examples() -> list[tuple[str, str]]:
    """(where, command line) for each `repro …` line inside a fenced code block."""
    found = []
    for doc in DOCS:
        inside, pending = False, ""
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if FENCE.match(line.strip()):
                inside, pending = not inside, ""
                continue
            if not inside:
                continue
            line = pending + line
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1] + " "
                continue
            pending = ""
            for command in re.split(r"&&|;", re.sub(r"\s#.*$", "", line)):  # `a && b`: each command
                match = COMMAND.match(command)
                if match:
                    found.append((f"{doc.name}:{number}", match["args"]))
    return found


def _argv(args: str) -> list[str]:
    """The example as argv: comments and `[optional]` groups dropped, `a|b` choices take the first."""
    args = re.sub(r"\s#.*$", "", args)
    args = re.sub(r"\[[^\[\]]*\]", "", args)
    return [word.split("|")[0] for word in shlex.split(args)]


EXAMPLES = _examples()


def test_the_docs_have_examples_to_check() -> None:
    assert len(EXAMPLES) >= 10, EXAMPLES  # the extraction itself works


@pytest.mark.parametrize(("where", "args"), EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_each_documented_command_parses(where: str, args: str) -> None:
    parsed = build_parser().parse_args(_argv(args))
    assert callable(parsed.func), where


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_flag_in_the_readme_table_exists() -> None:
    commands = _subparsers()
    rows = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| `repro ")]
    assert len(rows) >= 8
    for row in rows:
        usage = row.split("`")[1]
        name = usage.split()[1]
        assert name in commands, f"README names `repro {name}`, which does not exist"
        known = {option for action in commands[name]._actions for option in action.option_strings}
        for flag in re.findall(r"--[a-z][a-z-]*", usage):
            assert flag in known, f"README shows `repro {name} {flag}`, which that command does not accept"
