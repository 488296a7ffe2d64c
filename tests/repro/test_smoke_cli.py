"""The smoke run end to end through the CLI: it writes a manifest that verifies."""

from pathlib import Path

from repro.cli import main
from repro.records.manifest_file import load_manifest


def test_smoke_run_writes_a_verifiable_manifest(smoke_run: Path, capsys) -> None:
    loaded = load_manifest(smoke_run)
    assert loaded.manifest.run.preset == "smoke"
    assert len(loaded.manifest.steps) == 20
    assert [c.step for c in loaded.manifest.checkpoints] == [10, 20]
    assert main(["verify", str(smoke_run)]) == 0
    assert "verified" in capsys.readouterr().out
