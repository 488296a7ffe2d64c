"""Finding trainers: entry points of installed distributions, ``package.module:Class``, listing."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.cli import main
from repro.errors import TrainerError, TrainerNotFoundError, UsageError
from repro.records.manifest import TrainerRef
from repro.running.registry import check_trainer_class, installed_trainers, resolve_trainer
from tests.plugin_site import PluginSite


def test_an_installed_distribution_registers_its_trainer(plugin_site: PluginSite) -> None:
    assert "tinymlp" not in installed_trainers()
    plugin_site.install("1.2.3")
    entry = installed_trainers()["tinymlp"]
    assert (entry.entry, entry.distribution, entry.version) == ("tinymlp:TinyMLPTrainer", "tinymlp-plugin", "1.2.3")
    ref, cls = resolve_trainer("tinymlp")
    assert ref == TrainerRef(
        name="tinymlp", version="1.2.3", distribution="tinymlp-plugin", entry="tinymlp:TinyMLPTrainer"
    )
    assert cls.__name__ == "TinyMLPTrainer"
    # The same class named by import reference is recognised as the registered trainer.
    assert resolve_trainer("tinymlp:TinyMLPTrainer")[0] == ref
    # Upgrading the distribution is seen at once (importlib.metadata caches are invalidated).
    plugin_site.install("1.3.0")
    assert resolve_trainer("tinymlp")[0].version == "1.3.0"


def test_the_distribution_version_wins_over_a_declared_one(plugin_site: PluginSite) -> None:
    plugin_site.install("1.2.3")
    ref, _ = resolve_trainer("tinymlp:VersionedTrainer")  # not an entry point, but the package is installed
    assert (ref.name, ref.distribution, ref.version) == ("tinymlp:VersionedTrainer", "tinymlp-plugin", "1.2.3")


def test_code_on_pythonpath_records_its_declared_version_or_unknown(plugin_path: Path) -> None:
    assert resolve_trainer("tinymlp:VersionedTrainer")[0] == TrainerRef(
        name="tinymlp:VersionedTrainer", version="0.9.dev1", distribution=None, entry="tinymlp:VersionedTrainer"
    )
    assert resolve_trainer("tinymlp:TinyMLPTrainer")[0].version == "unknown"


def test_the_builtin_trainers_come_through_the_same_door() -> None:
    trainers = installed_trainers()
    assert trainers["gpt"].entry == "repro.trainer.gpt.trainer:GPTTrainer"
    assert trainers["gpt"].distribution == "repro-audit"
    assert trainers["lightning"].entry == "repro.trainer.lightning.adapter:LightningTrainer"


def test_repro_trainers_lists_name_distribution_version_and_presets(plugin_site: PluginSite, capsys) -> None:
    plugin_site.install("1.2.3")
    assert main(["trainers"]) == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.count("│") > 4}
    assert {"gpt", "lightning", "tinymlp"} <= set(rows)
    for cell in ("tinymlp-plugin", "1.2.3", "tinymlp:TinyMLPTrainer", "mlp-tiny"):
        assert cell in rows["tinymlp"]
    assert "repro" in rows["gpt"] and "smoke" in rows["gpt"]


def test_unknown_names_and_bad_references_say_what_to_do(plugin_path: Path) -> None:
    with pytest.raises(TrainerNotFoundError, match=r"no trainer named 'nope' is installed \(installed: gpt, lightning"):
        resolve_trainer("nope")
    missing_module = r"cannot import trainer module 'no_such_pkg.mod' \(No module named 'no_such_pkg'\)"
    with pytest.raises(TrainerNotFoundError, match=missing_module):
        resolve_trainer("no_such_pkg.mod:Trainer")
    with pytest.raises(TrainerNotFoundError, match="has no attribute 'Missing'"):
        resolve_trainer("tinymlp:Missing")
    with pytest.raises(UsageError, match=r"must look like 'package\.module:Class'"):
        resolve_trainer("tinymlp:")


def test_a_class_that_does_not_fit_the_contract_is_named() -> None:
    class Half:
        config_model = dict

        @classmethod
        def presets(cls) -> dict:
            return {}

    with pytest.raises(TrainerError, match="trainer pkg:Half does not implement prepare_data, build"):
        check_trainer_class(Half, "pkg:Half")
    for name in ("prepare_data", "build", "train_step", "validate", "state_tensors", "load_state_tensors"):
        setattr(Half, name, lambda self: None)
    with pytest.raises(TrainerError, match=r"config_model must subclass repro\.trainer_api\.TrainerConfig"):
        check_trainer_class(Half, "pkg:Half")
