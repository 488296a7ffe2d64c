"""The PyTorch Lightning adapter: a real (small, non-GPT) LightningModule run, resumed and audited
through repro, the adapter's pieces in-process, and Lightning staying optional."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from repro.cli import main
from repro.errors import InputError
from repro.records.hashing import sha256_file
from repro.records.manifest import RunSettings
from repro.records.manifest_file import load_manifest
from repro.trainer_api import TrainerContext
from tests.audits.forgery import resign
from tests.conftest import copy_run
from tests.plugin_site import REGRESSION_CSV, interrupt_after

LIT = ["--trainer", "lightning", "--set", "module=tinylit:TinyRegressor", "--set", "datamodule=tinylit:TinyData",
       "--steps", "12", "--set", "checkpoint_every=4", "--set", "eval_every=4"]


@pytest.fixture
def lightning_installed() -> None:
    pytest.importorskip("lightning", reason="the Lightning adapter tests need `pip install repro-audit[lightning]`")


def test_a_lightning_module_runs_resumes_step_exactly_and_audits_bitwise(
    lightning_installed: None, plugin_path: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run" / "lit.json"
    assert main(["run", *LIT, "--out", str(out)]) == 0
    m = load_manifest(out).manifest
    assert (m.run.trainer.name, m.run.trainer.distribution) == ("lightning", "repro-audit")
    assert m.run.config["module"] == "tinylit:TinyRegressor"
    assert [s.step for s in m.steps] == list(range(1, 13)) and [v.step for v in m.validation] == [4, 8, 12]
    # StepLR(step_size=3, gamma=0.7) stepped per optimizer step: the recorded lr is the one each step used.
    assert [round(s.lr, 6) for s in m.steps[::3]] == [0.02, 0.014, 0.0098, 0.00686]
    assert all(s.tokens == 8 for s in m.steps) and len({s.batch for s in m.steps[:5]}) == 5
    assert m.data.source.kind == "generated" and m.data.source.name == "tinylit:TinyData"
    assert (m.data.train_tokens, m.data.val_tokens) == (40, 16) and m.data.extra["shuffle"] is True
    tensors = m.checkpoints[0].tensors
    for name in ("model.net.0.weight", "optim.state.0.exp_avg", "optim.__meta__", "sched.__meta__",
                 "data.order", "data.generator", "loop.counters", "repro.rng.torch_cpu"):
        assert name in tensors
    assert main(["verify", str(out)]) == 0

    # Killed after step 4 (mid-epoch: 5 batches per epoch), resumed: every later step, validation
    # and checkpoint is bit-identical to the uninterrupted run (dropout draws on the global RNG).
    resumed = copy_run(out, tmp_path / "resumed")
    interrupt_after(resumed, 4)
    assert main(["run", *LIT, "--out", str(resumed), "--resume"]) == 0
    r = load_manifest(resumed).manifest
    assert r.timing.resumed_from_step == 4
    assert r.steps == m.steps and r.validation == m.validation
    assert ([(c.step, c.sha256, c.tensors) for c in r.checkpoints]
            == [(c.step, c.sha256, c.tensors) for c in m.checkpoints])

    capsys.readouterr()
    report = tmp_path / "audit.json"
    # The config names modules to import: signed by this user's own key, that is their say; a
    # stranger's manifest needs a trust list or --allow-imports (exit 4 without, as for a trainer).
    resign(out, lambda raw: None, tmp_path / "stranger.pem")
    assert main(["audit", str(out), "--json", str(report)]) == 4
    assert "names modules to import (module 'tinylit:TinyRegressor'" in capsys.readouterr().err
    assert main(["audit", str(out), "--allow-imports", "--json", str(report)]) == 0, capsys.readouterr().err
    audit = json.loads(report.read_text(encoding="utf-8"))
    assert audit["verdict"] == "bitwise" and audit["steps_compared"] == 12
    assert all(c["verdict"] == "bitwise" for c in audit["checkpoints"])


# -- the adapter in this process ----------------------------------------------------------------
@pytest.fixture
def own_rng() -> Iterator[None]:
    """Training in-process draws on the global torch RNG: give it back untouched."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


def _adapter(tmp_path: Path, **config: object):
    from repro.trainer.lightning.adapter import LightningConfig, LightningTrainer

    values = {"module": "tinylit:TinyRegressor", "datamodule": "tinylit:TinyData", "steps": 7, **config}
    context = TrainerContext(settings=RunSettings(), device=torch.device("cpu"), cache_dir=tmp_path,
                             artifact_dir=tmp_path)
    trainer = LightningTrainer(LightningConfig.model_validate(values), context)
    trainer.prepare_data()
    trainer.build()
    return trainer


def test_the_module_sees_the_loop_through_a_stand_in_trainer(
    lightning_installed: None, plugin_path: Path, tmp_path: Path, own_rng: None
) -> None:
    trainer = _adapter(tmp_path)
    for step in range(1, 8):
        trainer.train_step(step)
    module = trainer.module
    assert module.seen_steps == list(range(7))  # global_step as Lightning counts it
    assert (module.global_step, module.current_epoch, trainer.position) == (7, 1, 2)
    assert module.trainer.max_steps == 7 and module.trainer.is_global_zero
    with pytest.raises(AttributeError, match=r"repro's Lightning adapter .* trainer.strategy is not available"):
        _ = module.trainer.strategy
    loss = trainer.validate()
    assert loss > 0 and module.training  # back in training mode after validation


def test_data_files_are_hashed_and_handed_to_the_datamodule(
    lightning_installed: None, plugin_path: Path, tmp_path: Path, own_rng: None
) -> None:
    from repro.trainer.lightning.adapter import LightningConfig, LightningTrainer

    config = LightningConfig(module="tinylit:TinyRegressor", datamodule="tinylit:TinyData", data=str(REGRESSION_CSV))
    context = TrainerContext(settings=RunSettings(), device=torch.device("cpu"), cache_dir=tmp_path,
                             artifact_dir=tmp_path)
    summary = LightningTrainer(config, context).prepare_data()
    assert summary.source.kind == "path" and [f.path for f in summary.files] == ["regression.csv"]
    assert summary.files[0].sha256 == sha256_file(REGRESSION_CSV)
    assert (summary.train_tokens, summary.val_tokens) == (40, 8)  # TinyData read the 48 CSV rows


def test_a_validation_step_without_a_loss_is_explained(
    lightning_installed: None, plugin_path: Path, tmp_path: Path, own_rng: None
) -> None:
    trainer = _adapter(tmp_path, val_metric="val_mse")
    with pytest.raises(InputError, match="validation_step neither returned a loss nor logged 'val_mse'"):
        trainer.validate()


def test_configure_optimizers_forms(lightning_installed: None) -> None:
    from repro.trainer.lightning.loop import UnsupportedModuleError, optimizer_setup

    params = [torch.nn.Parameter(torch.ones(2))]
    opt = torch.optim.SGD(params, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2)
    assert optimizer_setup(opt).scheduler is None
    assert optimizer_setup([opt]).optimizer is opt
    assert optimizer_setup(([opt], [sched])).interval == "epoch"
    setup = optimizer_setup({"optimizer": opt,
                             "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 2}})
    assert (setup.scheduler, setup.interval, setup.frequency) == (sched, "step", 2)
    with pytest.raises(UnsupportedModuleError, match="only one optimizer is supported"):
        optimizer_setup([opt, torch.optim.SGD(params, lr=0.2)])
    with pytest.raises(UnsupportedModuleError, match="ReduceLROnPlateau"):
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
        optimizer_setup({"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss"}})


def test_loaders_are_replayed_only_when_they_can_be(lightning_installed: None) -> None:
    from torch.utils.data import DataLoader, IterableDataset, TensorDataset, WeightedRandomSampler

    from repro.trainer.lightning.data import BatchSource, UnsupportedLoaderError

    data = TensorDataset(torch.arange(10.0))
    source = BatchSource.from_loader(DataLoader(data, batch_size=4, shuffle=True, num_workers=2), "train")
    assert (source.shuffle, source.batches_per_epoch, source.ignored) == (True, 3, ("num_workers=2",))
    assert BatchSource.from_loader(DataLoader(data, batch_size=4, drop_last=True), "train").batches_per_epoch == 2
    one, two = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(source.epoch_order(one), source.epoch_order(two))
    batch, size = source.batch(torch.arange(10), 2)
    assert size == 2 and torch.equal(batch[0], torch.tensor([8.0, 9.0]))

    class Stream(IterableDataset):
        def __iter__(self):
            yield from range(3)

    with pytest.raises(UnsupportedLoaderError, match="iterable datasets are not supported"):
        BatchSource.from_loader(DataLoader(Stream(), batch_size=2), "train_dataloader()")
    with pytest.raises(UnsupportedLoaderError, match="sampler WeightedRandomSampler is not supported"):
        BatchSource.from_loader(DataLoader(data, batch_size=2, sampler=WeightedRandomSampler([1.0] * 10, 10)), "t")


# -- Lightning stays optional ----------------------------------------------------------------------
def test_repro_and_the_gpt_trainer_do_not_import_lightning() -> None:
    # Resolving the adapter without Lightning installed is an error the adapter explains (tested
    # below); either way nothing of Lightning may have been imported by repro itself.
    code = ("import sys, repro.cli.app, repro.running.registry, repro.trainer.gpt.trainer, "
            "repro.trainer.lightning.adapter\n"
            "from repro.errors import TrainerNotFoundError\n"
            "from repro.running.registry import resolve_trainer\n"
            "try:\n    resolve_trainer('lightning')\nexcept TrainerNotFoundError:\n    pass\n"
            "print(sorted(m for m in sys.modules if 'lightning' in m and not m.startswith('repro.trainer.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_without_lightning_the_adapter_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    for name in ("lightning", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # import and find_spec now fail: "not installed"
    for name in ("repro.trainer.lightning", "repro.trainer.lightning.adapter"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert main(["run", *LIT, "--out", str(tmp_path / "lit.json")]) == 4
    err = capsys.readouterr().err
    assert "the lightning trainer needs PyTorch Lightning, which is not installed here" in err
    assert "pip install 'repro-audit[lightning]'" in err and "Traceback" not in err
    assert main(["trainers"]) == 0  # the others are still listed; an extra the user lacks is left out quietly
    out = capsys.readouterr().out
    assert "smoke" in out and "lightning" not in out and "unavailable" not in out
