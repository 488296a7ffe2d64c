"""One meaning per exit code: every condition, through every command, one code.

A table of conditions (a changed data file, a bad signature, a missing trainer, a malformed
manifest, a bug...) is run through ``verify``, ``audit`` and ``gate`` (a policy file in a temp
dir) and each command's exit code is checked against the table; nothing here trains, every
command stops before compute. To add a command, add it to :data:`COMMANDS`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from repro.audits.gate import GateReport
from repro.cli import main
from repro.errors import ExitCode
from repro.records.manifest_file import incomplete_marker, load_manifest, run_folder
from repro.trust.keys import default_key_path, generate_key, load_key, public_key_path
from repro.trust.signing import sign_body
from repro.trust.verify import data_source_root
from tests.conftest import copy_run


@dataclass(frozen=True)
class Case:
    """A prepared manifest and the trust list every command is given."""

    manifest: Path
    trusted: Path
    work: Path
    reference: Path
    """An untouched copy of the same run (what ``diff`` compares the prepared manifest with)."""


def _verify(case: Case) -> int:
    return main(["verify", str(case.manifest), "--trusted-keys", str(case.trusted)])


def _audit(case: Case) -> int:
    return main(["audit", str(case.manifest), "--trusted-keys", str(case.trusted)])


def _diff(case: Case) -> int:
    return main(["diff", str(case.manifest), str(case.reference), "--trusted-keys", str(case.trusted)])


def _gate(case: Case) -> int:
    config = case.work / "policy" / "pyproject.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(
        f'[tool.repro.gate]\nmanifests = ["{case.manifest}"]\ntrusted_keys = "{case.trusted}"\n'
        "[tool.repro.gate.vulnerabilities]\nenabled = false\n", encoding="utf-8")
    report = case.work / "gate.json"
    code = main(["gate", "--config", str(config), "--json", str(report)])
    # The gate always writes its report, whatever happened to the manifest.
    assert GateReport.model_validate_json(report.read_text()).results, "gate wrote no result"
    return code


COMMANDS: dict[str, Callable[[Case], int]] = {"verify": _verify, "audit": _audit, "gate": _gate, "diff": _diff}
"""Every command that judges a manifest."""


def _resign(manifest: Path, edit: Callable[[dict], None], key_path: Path | None = None) -> None:
    """Edit the manifest's JSON and sign it again (with the session's own, trusted key by default)."""
    raw = json.loads(manifest.read_text())
    edit(raw)
    key = load_key(key_path or default_key_path())
    raw["signature"] = sign_body({k: v for k, v in raw.items() if k != "signature"}, key).model_dump(mode="json")
    manifest.write_text(json.dumps(raw, indent=1))


def _own_data(manifest: Path) -> Path:
    """Move the run's data to a folder of its own (re-signed), so a test may change a data file."""
    m = load_manifest(manifest).manifest
    root, corpus = data_source_root(m.data.source), manifest.parent / "corpus"
    assert root is not None
    for f in m.data.files:
        (corpus / f.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / f.path, corpus / f.path)

    def edit(raw: dict) -> None:
        raw["data"]["source"] = {"kind": "path", "name": str(corpus), "version": None}

    _resign(manifest, edit)
    return corpus / m.data.files[0].path


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def changed_data_file(case: Case) -> None:
    _flip(_own_data(case.manifest))


def missing_data_file(case: Case) -> None:
    _own_data(case.manifest).unlink()


def missing_and_changed_data_files(case: Case) -> None:
    """One data file gone, another changed: the change is evidence (3), in every command alike."""
    first = _own_data(case.manifest)
    files = sorted(p for p in first.parent.rglob("*") if p.is_file())
    assert len(files) >= 2, "the smoke corpus has several files"
    files[0].unlink()
    _flip(files[-1])


def changed_checkpoint(case: Case) -> None:
    _flip(next(run_folder(case.manifest).rglob("*.safetensors")))


def changed_tokenizer(case: Case) -> None:
    _flip(run_folder(case.manifest) / "tokenizer.model")


def missing_artifact(case: Case) -> None:
    next(run_folder(case.manifest).rglob("*.safetensors")).unlink()


def bad_signature(case: Case) -> None:
    raw = json.loads(case.manifest.read_text())
    raw["validation"][0]["loss"] += 1.0  # any signed value, edited without re-signing
    case.manifest.write_text(json.dumps(raw))


def untrusted_key(case: Case) -> None:
    _resign(case.manifest, lambda raw: None, generate_key(case.work / "stranger.pem").path)


def small_order_key(case: Case) -> None:
    import base64

    identity = bytes([1]) + bytes(31)
    raw = json.loads(case.manifest.read_text())
    raw["signature"].update(public_key=base64.b64encode(identity).decode(),
                            value=base64.b64encode(identity + bytes(32)).decode())
    from repro.trust.keys import key_id

    raw["signature"]["key_id"] = key_id(identity)
    case.manifest.write_text(json.dumps(raw))


def artifact_path_into_proc(case: Case) -> None:
    """A signed manifest naming /proc/self/mem: an absolute path, refused unread by path confinement."""
    _resign(case.manifest, lambda raw: raw["artifacts"][0].update(path="/proc/self/mem"))


def unfinished_run(case: Case) -> None:
    case.manifest.unlink()
    incomplete_marker(case.manifest).write_text("")


def missing_manifest(case: Case) -> None:
    case.manifest.unlink()


def missing_trainer(case: Case) -> None:
    def edit(raw: dict) -> None:
        raw["run"]["trainer"].update(name="absent-trainer", entry="absent_trainer_pkg.module:Trainer",
                                     distribution="absent-trainer")

    _resign(case.manifest, edit)


def malformed_manifest(case: Case) -> None:
    case.manifest.write_text('{"kind": "repro.run-manifest", ')


def manifest_is_a_folder(case: Case) -> None:
    case.manifest.unlink()
    case.manifest.mkdir()


def newer_schema_version(case: Case) -> None:
    _resign(case.manifest, lambda raw: raw.update(schema_version=99))


def untouched(case: Case) -> None:
    """Control: the copy as recorded verifies (exit 0), so the other rows cannot pass vacuously."""


@dataclass(frozen=True)
class Condition:
    """A condition, the code every command must give, and the commands that cannot see it."""

    prepare: Callable[[Case], None]
    code: ExitCode
    differs: dict[str, ExitCode] = field(default_factory=dict)
    """Commands with another code, and why: ``verify`` and ``diff`` do not need the trainer."""


CONDITIONS = [
    Condition(untouched, ExitCode.OK),
    Condition(changed_data_file, ExitCode.INTEGRITY),
    Condition(changed_checkpoint, ExitCode.INTEGRITY),
    Condition(changed_tokenizer, ExitCode.INTEGRITY),
    Condition(bad_signature, ExitCode.INTEGRITY),
    Condition(untrusted_key, ExitCode.INTEGRITY),
    Condition(small_order_key, ExitCode.INTEGRITY),
    Condition(missing_data_file, ExitCode.COULD_NOT_CHECK),
    Condition(missing_and_changed_data_files, ExitCode.INTEGRITY),
    Condition(missing_artifact, ExitCode.COULD_NOT_CHECK),
    Condition(unfinished_run, ExitCode.COULD_NOT_CHECK),
    Condition(missing_manifest, ExitCode.COULD_NOT_CHECK),
    Condition(missing_trainer, ExitCode.COULD_NOT_CHECK, {"verify": ExitCode.OK, "diff": ExitCode.OK}),
    Condition(malformed_manifest, ExitCode.USAGE),
    Condition(manifest_is_a_folder, ExitCode.USAGE),
    Condition(newer_schema_version, ExitCode.USAGE),
    Condition(artifact_path_into_proc, ExitCode.INTEGRITY),
]
ROWS = [(c, command) for c in CONDITIONS for command in COMMANDS
        if not (c.prepare is untouched and command != "verify")]


@pytest.mark.parametrize(("condition", "command"), ROWS, ids=[f"{c.prepare.__name__}-{cmd}" for c, cmd in ROWS])
def test_each_condition_has_one_exit_code_in_every_command(
    condition: Condition, command: str, smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = Case(manifest=copy_run(smoke_run, tmp_path / "runs"), trusted=public_key_path(default_key_path()),
                work=tmp_path, reference=copy_run(smoke_run, tmp_path / "reference"))
    condition.prepare(case)
    expected = condition.differs.get(command, condition.code)
    code = COMMANDS[command](case)
    out = capsys.readouterr()
    assert code == expected, (condition.prepare.__name__, command, code, out.err[-500:])
    assert "Traceback" not in out.err + out.out


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_bug_is_an_internal_error_never_1(
    command: str, smoke_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in repro")

    monkeypatch.setattr("repro.trust.verify.parse_json", broken)  # every command verifies first
    case = Case(manifest=copy_run(smoke_run, tmp_path / "runs"), trusted=public_key_path(default_key_path()),
                work=tmp_path, reference=copy_run(smoke_run, tmp_path / "reference"))
    assert COMMANDS[command](case) == ExitCode.INTERNAL
    assert int(ExitCode.INTERNAL) == 70
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if command != "gate":  # the gate records it in its report, keeps going, and says so
        [line] = err.strip().splitlines()
        assert line.startswith("internal error: RuntimeError: a bug in repro (traceback written to ")
        crash = Path(line.split("traceback written to ")[1].split(";")[0])
        assert "Traceback" in crash.read_text() and "a bug in repro" in crash.read_text()
        assert crash.stat().st_mode & 0o077 == 0
    else:
        report = GateReport.model_validate_json((tmp_path / "gate.json").read_text())
        assert report.outcome == "internal_error" and "traceback written to" in report.results[0].message


STALE = [changed_data_file, missing_artifact, malformed_manifest, bad_signature, missing_trainer]


@pytest.mark.parametrize("prepare", STALE, ids=[p.__name__ for p in STALE])
def test_every_report_asked_for_replaces_the_last_one_whatever_the_outcome(
    prepare: Callable[[Case], None], smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CI job that publishes --junit/--json/--html after every audit must never show an older green
    report for an audit that stopped with 2, 3 or 4: each file now says what stopped it."""
    import xml.etree.ElementTree as ET

    case = Case(manifest=copy_run(smoke_run, tmp_path / "runs"), trusted=public_key_path(default_key_path()),
                work=tmp_path, reference=copy_run(smoke_run, tmp_path / "reference"))
    prepare(case)
    reports = {name: tmp_path / name for name in ("r.json", "r.xml", "r.html", "r.png")}
    for path in reports.values():
        path.write_text("an older, green report")
    code = main(["audit", str(case.manifest), "--trusted-keys", str(case.trusted), "--json", str(reports["r.json"]),
                 "--junit", str(reports["r.xml"]), "--html", str(reports["r.html"]), "--plot", str(reports["r.png"])])
    assert code in (ExitCode.USAGE, ExitCode.INTEGRITY, ExitCode.COULD_NOT_CHECK), capsys.readouterr().err
    failure = json.loads(reports["r.json"].read_text())
    assert (failure["kind"], failure["exit_code"], failure["reproduced"]) == ("repro.command-failure", code, False)
    suite = ET.fromstring(reports["r.xml"].read_bytes()).find("testsuite")
    assert suite is not None and suite.get("errors") == "1"
    html = reports["r.html"].read_text()
    assert "nothing was judged" in html and "older, green" not in html
    assert not reports["r.png"].exists()
    assert "Traceback" not in capsys.readouterr().err
