"""The training child holds trainers to their contract and names the trainer when one breaks it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from repro.cli import main
from repro.errors import TrainerError
from repro.records.manifest_file import incomplete_marker
from repro.running.worker import _step_record, _trainer_state
from repro.trainer_api import StepOutput
from tests.plugin_site import interrupt_after


def _out(**changes: object) -> StepOutput:
    values: dict[str, object] = {"loss": 1.0, "lr": 0.1, "grad_norm": 2.0, "tokens": 8, "batch": "0123456789abcdef"}
    values.update(changes)
    return StepOutput(**values)  # type: ignore[arg-type]


def test_a_step_output_becomes_an_exact_record() -> None:
    record = _step_record("t", 3, _out(loss=torch.tensor(0.25).item()))
    recorded = (record.step, record.loss, record.lr, record.grad_norm, record.tokens, record.batch)
    assert recorded == (3, 0.25, 0.1, 2.0, 8, "0123456789abcdef")


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (_out(loss=float("nan")), r"trainer t returned a non-finite loss \(nan\) at step 3"),
        (_out(grad_norm=float("inf")), r"trainer t returned a non-finite grad norm \(inf\) at step 3"),
        (_out(lr=float("-inf")), r"trainer t returned a non-finite lr \(-inf\) at step 3"),
        (_out(loss="x"), r"trainer t: train_step\(3\) returned a non-numeric value"),
        ({"loss": 1.0}, r"trainer t: train_step\(3\) returned dict, not a repro.trainer_api.StepOutput"),
    ],
)
def test_step_outputs_that_break_the_contract_name_the_trainer(out: object, message: str) -> None:
    with pytest.raises(TrainerError, match=message):
        _step_record("t", 3, out)


class _State:
    def __init__(self, state: object) -> None:
        self.state = state

    def state_tensors(self) -> object:
        return self.state


def test_state_tensors_must_map_names_to_tensors_outside_repro_namespace() -> None:
    assert _trainer_state("t", _State({"w": torch.ones(1)})).keys() == {"w"}
    not_a_tensor = "trainer t: state_tensors entry 'step' is of type int; it must map names to tensors"
    with pytest.raises(TrainerError, match=not_a_tensor):
        _trainer_state("t", _State({"step": 3}))
    with pytest.raises(TrainerError, match=r"trainer t: state_tensors name 'repro.rng.mine' is reserved"):
        _trainer_state("t", _State({"repro.rng.mine": torch.ones(1)}))
    with pytest.raises(TrainerError, match="trainer t: state_tensors returned list, not a dict"):
        _trainer_state("t", _State([]))


def test_a_non_finite_loss_stops_the_run_with_exit_4_naming_the_trainer(
    plugin_path: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "nan.json"
    assert main(["run", "mlp-tiny", "--trainer", "tinymlp:NaNLossTrainer", "--out", str(out)]) == 4
    err = capsys.readouterr().err
    assert "trainer tinymlp:NaNLossTrainer returned a non-finite loss (nan) at step 3" in err
    assert "Traceback" not in err
    # No manifest for a failed run, and no marker: it failed before its first checkpoint, so there
    # is nothing to resume (a marker would make verify say "resume it").
    assert not out.exists() and not incomplete_marker(out).exists()


def test_forgetting_to_restore_a_generator_is_caught_on_a_real_resume(
    plugin_path: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "forgetful.json"
    run = ["run", "mlp-tiny", "--trainer", "tinymlp:ForgetfulTrainer", "--out", str(out)]
    assert main(run) == 0
    interrupt_after(out, 8)
    capsys.readouterr()
    assert main([*run, "--resume"]) == 4
    err = capsys.readouterr().err
    assert ("trainer tinymlp:ForgetfulTrainer did not restore its state on resume: 'gen.batches' differs from "
            "the checkpoint after load_state_tensors") in err
    assert not out.exists()
