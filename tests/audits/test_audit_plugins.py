"""Out-of-tree trainers end to end: run, verify and audit through an entry point and through
``package.module:Class``; a changed or missing trainer; a nondeterministic one.

The plugin (``tests/assets/plugins/tinymlp.py``) is an MLP regression, not a GPT. Installed, it is
the distribution ``tinymlp-plugin`` in a site-packages-like folder (``tests.plugin_site``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.cli import main
from repro.records.hashing import sha256_file
from repro.records.manifest_file import load_manifest
from tests.audits.forgery import resign
from tests.plugin_site import REGRESSION_CSV, PluginSite, make_importable


@pytest.fixture(scope="module")
def entry_point_run(tmp_path_factory: pytest.TempPathFactory, repro_home: Path) -> Path:
    """``repro run mlp-tiny --data regression.csv`` with tinymlp-plugin 1.2.3 installed; the
    preset is found through the entry point. Uninstalled again afterwards. Do not modify."""
    out = tmp_path_factory.mktemp("entry-point") / "mlp.json"
    site = PluginSite(tmp_path_factory.mktemp("site"))
    with pytest.MonkeyPatch.context() as patch:
        make_importable(patch, site.root)
        site.install("1.2.3")
        try:
            assert main(["run", "mlp-tiny", "--data", str(REGRESSION_CSV), "--out", str(out)]) == 0
        finally:
            site.uninstall()
    return out


def _audit(manifest: Path, report: Path, *extra: str) -> tuple[int, dict]:
    code = main(["audit", str(manifest), "--json", str(report), *extra])
    return code, json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}


def test_an_entry_point_trainer_is_recorded_verified_and_audits_bitwise(
    entry_point_run: Path, plugin_site: PluginSite, tmp_path: Path, capsys
) -> None:
    m = load_manifest(entry_point_run).manifest
    trainer = m.run.trainer
    assert (trainer.name, trainer.distribution, trainer.version) == ("tinymlp", "tinymlp-plugin", "1.2.3")
    assert m.run.preset == "mlp-tiny" and len(m.steps) == 12 and [c.step for c in m.checkpoints] == [4, 8, 12]
    assert m.data.source.kind == "path" and m.data.source.name == str(REGRESSION_CSV.parent.resolve())
    assert [(f.path, f.sha256) for f in m.data.files] == [("regression.csv", sha256_file(REGRESSION_CSV))]
    assert (m.data.train_tokens, m.data.val_tokens) == (36, 12)
    assert m.environment.distributions["tinymlp-plugin"] == "1.2.3"  # the child saw the distribution too

    plugin_site.install("1.2.3")
    assert main(["verify", str(entry_point_run)]) == 0
    code, report = _audit(entry_point_run, tmp_path / "report.json")
    assert code == 0, capsys.readouterr().err
    assert report["verdict"] == "bitwise" and report["steps_compared"] == 12
    assert not [d for d in report["differences"] if d["category"] == "trainer"]


def test_another_trainer_version_is_reported_as_an_environment_difference(
    entry_point_run: Path, plugin_site: PluginSite, tmp_path: Path, capsys
) -> None:
    plugin_site.install("1.3.0")
    code, report = _audit(entry_point_run, tmp_path / "report.json")
    assert code == 0  # the same computation still reproduces bit for bit ...
    assert report["verdict"] == "bitwise"
    versions = [d for d in report["differences"] if d["field"] == "trainer.version"]
    assert [(d["recorded"], d["here"]) for d in versions] == [("1.2.3", "1.3.0")]  # ... and the change is listed
    assert "trainer.version" in capsys.readouterr().out


def test_a_trainer_that_is_not_installed_cannot_be_audited(
    entry_point_run: Path, plugin_site: PluginSite, tmp_path: Path, capsys
) -> None:
    code, report = _audit(entry_point_run, tmp_path / "report.json")
    assert code == 4 and (report["kind"], report["outcome"]) == ("repro.command-failure", "could_not_check")
    err = capsys.readouterr().err
    assert "trainer 'tinymlp' (tinymlp:TinyMLPTrainer), which is not installed here" in err
    assert "tinymlp-plugin 1.2.3" in err and "Traceback" not in err


def test_a_module_class_trainer_on_pythonpath_runs_and_audits_bitwise(plugin_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "mlp.json"
    assert main(["run", "--trainer", "tinymlp:TinyMLPTrainer", "--steps", "8", "--set", "checkpoint_every=4",
                 "--out", str(out)]) == 0
    m = load_manifest(out).manifest
    assert (m.run.trainer.name, m.run.trainer.distribution, m.run.trainer.version) == \
        ("tinymlp:TinyMLPTrainer", None, "unknown")
    assert m.data.source.kind == "generated" and m.data.files == []  # made from the seed
    assert main(["verify", str(out)]) == 0
    # Not an installed entry point, but signed by this user's own key: the recorded module is
    # imported without a flag (a stranger's manifest is refused: test_data_location.py).
    code, report = _audit(out, tmp_path / "report.json")
    assert code == 0 and report["verdict"] == "bitwise" and report["steps_compared"] == 8
    # --vary chooses and allows the trainer exactly as the audit does (it ignored the signer's trust
    # and --trainer): a stranger's manifest naming a module is refused before anything runs.
    resign(out, lambda raw: None, tmp_path / "stranger.pem")
    code, report = _audit(out, tmp_path / "vary.json", "--vary", "hashseed", "--steps", "4")
    assert code == 4 and report["outcome"] == "could_not_check" and "--allow-imports" in report["message"]


@pytest.mark.slow  # two --vary reruns of a module-named trainer
def test_vary_runs_a_module_named_trainer_when_the_audit_would(plugin_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "mlp.json"
    assert main(["run", "--trainer", "tinymlp:TinyMLPTrainer", "--steps", "8", "--set", "checkpoint_every=4",
                 "--out", str(out)]) == 0
    code, report = _audit(out, tmp_path / "vary.json", "--vary", "hashseed", "--steps", "4")  # the own key
    assert code == 0 and report["kind"] == "repro.vary-report" and report["control"]["status"] == "bitwise"
    resign(out, lambda raw: None, tmp_path / "stranger.pem")
    code, report = _audit(out, tmp_path / "vary.json", "--vary", "hashseed", "--steps", "4",
                          "--trainer", "tinymlp:TinyMLPTrainer")
    assert code == 0 and report["control"]["status"] == "bitwise"


def test_a_nondeterministic_trainer_is_named_as_the_cause(
    plugin_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)  # outside any git repository: nobody's edits can be a code difference
    out = tmp_path / "noisy.json"
    assert main(["run", "mlp-tiny", "--trainer", "tinymlp:NoisyTrainer", "--out", str(out)]) == 0
    code, report = _audit(out, tmp_path / "report.json", "--trainer", "tinymlp:NoisyTrainer")
    assert code == 1
    assert report["verdict"] == "diverged" and report["batches"]["identical"]  # numbers drift, data does not
    assert report["attribution"]["kind"] == "nondeterminism"
    assert "nondeterminism in the trainer" in report["attribution"]["summary"]
    assert "nondeterminism in the trainer" in capsys.readouterr().out
