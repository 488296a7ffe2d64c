"""repro.record outside `repro run` (no-ops), the command line it accepts, and its checkpoint state."""

from __future__ import annotations

import pytest
import torch

from repro import record
from repro.errors import TrainerError, UsageError
from repro.record.session import load_state, state_tensors
from repro.records.manifest import RunSettings
from repro.running.command import CommandConfig, CommandTrainer, command_ref, parse_command, resolve_command
from repro.running.config import ResolvedRun


def test_outside_repro_run_every_call_is_a_no_op_and_seed_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(record.SEED_ENV, raising=False)
    assert not record.active()
    assert record.seed() == record.DEFAULT_SEED
    drawn = torch.rand(3)
    torch.manual_seed(record.DEFAULT_SEED)
    assert torch.equal(drawn, torch.rand(3))
    monkeypatch.setenv(record.SEED_ENV, "7")
    assert record.seed() == 7
    record.data("does/not/exist.txt")  # not even looked at
    record.step(float("nan"), batch=object())
    record.validation("not a number")
    record.checkpoint({"x": object()})
    assert record.resume({"x": object()}) is None
    assert not record.stopping() and record.current_step() == 0


@pytest.mark.parametrize(("command", "kind", "target", "args"), [
    (["python", "train.py", "--lr", "3e-4"], "script", "train.py", ["--lr", "3e-4"]),
    (["/usr/bin/python3.11", "-u", "-m", "pkg.train", "-x"], "module", "pkg.train", ["-x"]),
    (["scripts/train.py"], "script", "scripts/train.py", []),
])
def test_python_commands_are_read(command: list[str], kind: str, target: str, args: list[str]) -> None:
    parsed = parse_command(command)
    assert (parsed.kind, parsed.target, parsed.args) == (kind, target, args)


@pytest.mark.parametrize("command", [[], ["bash", "run.sh"], ["torchrun", "train.py"], ["python", "-c", "x"],
                                     ["python"], ["python", "-m"]])
def test_other_commands_are_refused(command: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_command(command)


def test_the_config_digest_covers_the_command_but_not_the_steps(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    def digest(command: list[str], steps: int = 1) -> str:
        return ResolvedRun(trainer=command_ref(), trainer_class=CommandTrainer, preset=None, settings=RunSettings(),
                           config=CommandConfig(command=command, steps=steps)).config_sha256

    assert digest(["python", "t.py"]) == digest(["python", "t.py"], steps=40)
    assert digest(["python", "t.py"]) != digest(["python", "t.py", "--lr", "1"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="not a file"):  # before any process starts
        resolve_command(["python", "t.py"], {})
    (tmp_path / "t.py").write_text("")
    assert resolve_command(["python", "t.py"], {"seed": 3}).settings.seed == 3
    with pytest.raises(UsageError, match="run settings"):
        resolve_command(["python", "t.py"], {}, ["lr=3"])


def test_checkpoint_state_round_trips_modules_optimizers_schedulers_generators_and_tensors() -> None:
    def make() -> dict[str, object]:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        model(torch.ones(1, 3)).sum().backward()
        optimizer.step()
        return {"model": model, "optimizer": optimizer,
                "schedule": torch.optim.lr_scheduler.StepLR(optimizer, 2), "gen": torch.Generator().manual_seed(5),
                "count": torch.tensor([4])}

    saved = state_tensors(make())
    fresh = make()
    with torch.no_grad():
        fresh["model"].weight.add_(1)  # type: ignore[attr-defined]
    fresh["count"].fill_(0)  # type: ignore[attr-defined]
    load_state(fresh, saved)
    again = state_tensors(fresh)
    assert saved.keys() == again.keys()
    assert all(torch.equal(saved[k], again[k]) for k in saved)
    with pytest.raises(TrainerError, match="not allowed"):
        state_tensors({"repro.rng": torch.zeros(1)})
    with pytest.raises(TrainerError, match="give tensors"):
        state_tensors({"x": 3})
