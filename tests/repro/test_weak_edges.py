"""The weaker findings of issue 18 (item 9) that are fixed, each with real files and processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repro.cli import crashlog, main
from repro.errors import MAX_MESSAGE_CHARS, InputError, UsageError
from repro.records.manifest_file import refuse_overwriting_inputs, run_folder
from repro.trust.keys import load_trusted_keys

SECRET = "SECRET-7d1e-never-echo"


def test_a_fifo_trust_list_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "keys.txt"
    os.mkfifo(fifo)  # nobody writes: a read would block forever
    with pytest.raises(InputError, match="FIFO"):
        load_trusted_keys(fifo)


@pytest.mark.parametrize("line", [f"{SECRET} {SECRET}", f"ed25519 {SECRET}", SECRET])
def test_a_bad_trust_list_line_is_not_echoed(line: str, tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(line + "\n")
    with pytest.raises(InputError) as caught:
        load_trusted_keys(path)
    assert f"{path}:1" in str(caught.value) and SECRET[:6] not in str(caught.value)


def test_error_text_is_bounded() -> None:
    huge = "x" * 23_000_000
    message = str(UsageError(huge))
    assert len(message) < MAX_MESSAGE_CHARS + 100 and "22,996,000 more characters not shown" in message
    assert str(UsageError("short")) == "short"


def test_the_crash_report_fallback_never_follows_a_planted_link(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("")
    monkeypatch.setattr(crashlog, "cache_dir", lambda: blocked)  # the cache cannot take it
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    # Plant links at every name the old fallback could have used this second.
    for pid in (os.getpid(),):
        import time

        (tmp_path / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{pid}.txt").symlink_to(victim)
    path = crashlog.write_crash_report(RuntimeError("boom"))
    assert victim.read_text() == "keep me\n"
    assert path.parent.parent == tmp_path and path.parent.name.startswith("repro-crash-")
    assert (path.parent.stat().st_mode & 0o777) == 0o700 and "boom" in path.read_text()


def test_the_crash_folder_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crashlog, "cache_dir", lambda: tmp_path)
    folder = tmp_path / "crashes"
    folder.mkdir()
    for n in range(crashlog.MAX_REPORTS + 10):
        (folder / f"crash-20000101-0000{n:02d}-1.txt").write_text("old\n")
    crashlog.write_crash_report(RuntimeError("new"))
    assert len(list(folder.glob("crash-*.txt"))) == crashlog.MAX_REPORTS


@pytest.mark.parametrize("target", ["manifest", "run file", "marker", "trust list", "link to manifest"])
def test_a_report_never_overwrites_an_input(target: str, tmp_path: Path) -> None:
    manifest = tmp_path / "run.json"
    manifest.write_text("{}")
    (run_folder(manifest) / "checkpoints").mkdir(parents=True)
    keys = tmp_path / "keys.txt"
    link = tmp_path / "report.json"
    link.symlink_to(manifest)
    output = {"manifest": manifest, "run file": run_folder(manifest) / "checkpoints" / "x.json",
              "marker": tmp_path / "run.json.incomplete", "trust list": keys, "link to manifest": link}[target]
    with pytest.raises(UsageError, match="would overwrite"):
        refuse_overwriting_inputs(output, "--json", manifest, keys)
    refuse_overwriting_inputs(tmp_path / "elsewhere.json", "--json", manifest, keys)  # anything else is fine


def test_audit_json_onto_the_manifest_is_refused_before_anything(smoke_copy: Path, capsys) -> None:
    before = smoke_copy.read_bytes()
    assert main(["audit", str(smoke_copy), "--json", str(smoke_copy)]) == 2
    assert "would overwrite the manifest" in capsys.readouterr().err
    assert smoke_copy.read_bytes() == before


def test_planted_fifos_beside_the_output_or_as_the_key_never_hang_a_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run.json"
    os.mkfifo(tmp_path / "run.json.incomplete")  # nobody writes: reading it would block forever
    assert main(["run", "smoke", "--out", str(out), "--resume"]) == 2
    assert "unreadable" in capsys.readouterr().err
    key = tmp_path / "key.pem"
    os.mkfifo(key, 0o600)
    assert main(["run", "smoke", "--key", str(key), "--out", str(tmp_path / "other.json")]) == 2
    assert "FIFO" in capsys.readouterr().err


def test_a_refused_report_path_gets_no_failure_report_either(smoke_copy: Path, tmp_path: Path, capsys) -> None:
    """The failure-report guard writes a report for every failure; never over an input it refused."""
    inside = run_folder(smoke_copy) / "report.json"
    assert main(["audit", str(smoke_copy), "--json", str(inside)]) == 2
    assert not inside.exists()
    from repro.trust.keys import default_key_path, public_key_path

    config = tmp_path / "pyproject.toml"
    config.write_text(f'[tool.repro.gate]\nmanifests = ["{smoke_copy}"]\n'
                      f'trusted_keys = "{public_key_path(default_key_path())}"\n')
    before = smoke_copy.read_bytes()
    assert main(["gate", "--config", str(config), "--json", str(smoke_copy)]) == 2
    assert smoke_copy.read_bytes() == before
    assert "would overwrite" in capsys.readouterr().err
