"""The GPT trainer's numeric settings: precision, compilation, gradient accumulation and
the AdamW implementation, trained for real in this process on a tiny config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from repro.cli import main
from repro.errors import UsageError
from repro.records.manifest import RunSettings
from repro.records.manifest_file import load_manifest
from repro.running.config import config_digest, resolve_run
from repro.trainer_api import TrainerContext
from tests.helpers import float_bits, read_report

REFERENCE = Path(__file__).parents[2] / "manifests" / "reference" / "smoke.json"


@pytest.fixture(autouse=True)
def own_rng() -> Iterator[None]:
    """Training in-process draws on the global torch RNG (model init): give it back untouched."""
    with torch.random.fork_rng():
        yield


def train(tmp_path: Path, *assignments: str, steps: int = 4, trainer: str = "gpt") -> tuple[list, list[float], dict]:
    """Train the smoke config for ``steps`` steps; return step outputs, [validation loss], state."""
    preset = "smoke" if trainer == "gpt" else f"{trainer}-smoke"
    resolved = resolve_run(preset, trainer=trainer, assignments=[f"steps={steps}", *assignments])
    torch.manual_seed(resolved.settings.seed)
    context = TrainerContext(settings=resolved.settings, device=torch.device("cpu"),
                             cache_dir=tmp_path / "cache", artifact_dir=tmp_path)
    t = resolved.trainer_class(resolved.config, context)
    t.prepare_data()
    t.build()
    outs = [t.train_step(step) for step in range(1, steps + 1)]
    return outs, [t.validate()], t.state_tensors()


def test_accumulation_keeps_the_global_batch_one_record_per_optimizer_step(tmp_path: Path) -> None:
    one, val_one, state_one = train(tmp_path, "grad_accum_steps=1")
    two, val_two, state_two = train(tmp_path, "grad_accum_steps=2")
    # The same whole batches (one fingerprint over all micro-batches), the same token counts.
    assert [o.batch for o in one] == [o.batch for o in two] and len(two) == 4
    assert all(o.tokens == 4 * 32 for o in two)
    # The mean over two micro-batches is the batch mean, up to float32 summation order.
    for a, b in zip(one, two, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=1e-5) and b.grad_norm == pytest.approx(a.grad_norm, rel=1e-4)
    assert val_two[0] == pytest.approx(val_one[0], rel=1e-5)
    assert state_one.keys() == state_two.keys()


def test_a_batch_that_does_not_divide_into_micro_batches_is_refused() -> None:
    with pytest.raises(UsageError, match="batch_size 4 does not divide into 3 micro-batches"):
        resolve_run("smoke", assignments=["grad_accum_steps=3"])


def test_bf16_mixed_is_bitwise_run_to_run_and_close_to_float32(tmp_path: Path) -> None:
    first, val_first, state_first = train(tmp_path, "precision=bf16-mixed")
    again, val_again, state_again = train(tmp_path, "precision=bf16-mixed")
    assert [o.loss for o in first] == [o.loss for o in again] and val_first == val_again
    assert all(torch.equal(state_first[k], state_again[k]) for k in state_first)
    fp32, val_fp32, _ = train(tmp_path, "precision=32")
    assert [o.loss for o in first] != [o.loss for o in fp32]  # autocast really ran in bfloat16
    assert val_first[0] == pytest.approx(val_fp32[0], abs=5e-2)
    assert all(v.dtype == torch.float32 for k, v in state_first.items() if k.startswith("model."))


@pytest.mark.parametrize("impl", ["foreach", "fused"])
def test_other_adamw_kernels_are_deterministic_and_agree_with_the_for_loop(tmp_path: Path, impl: str) -> None:
    loop, _, state_loop = train(tmp_path, "adamw=for-loop")
    other, _, state_other = train(tmp_path, f"adamw={impl}")
    again, _, state_again = train(tmp_path, f"adamw={impl}")
    assert [o.loss for o in other] == [o.loss for o in again]
    assert all(torch.equal(state_other[k], state_again[k]) for k in state_other)
    weights = [k for k in state_loop if k.startswith("model.")]
    if impl == "foreach":  # on the CPU the same arithmetic, batched: bit-identical
        assert all(torch.equal(state_loop[k], state_other[k]) for k in weights)
    for a, b in zip(loop, other, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=1e-5)
    # fused: measured 2.4e-4 largest relative L2 after 4 steps (other rounding of the update)
    worst = max(float((state_other[k] - state_loop[k]).norm() / state_loop[k].norm())
                for k in weights if state_loop[k].norm() > 0)
    assert worst < 5e-3


@pytest.mark.slow
def test_compiled_training_is_bitwise_run_to_run_and_close_to_eager(tmp_path: Path) -> None:
    """Through the product's path: ``repro run`` trains in a child process with repro's determinism
    flags and an empty inductor cache of its own. (In one process, a second compile after
    ``torch._dynamo.reset()`` without those flags gave a validation loss 1 ulp off: measured.)"""
    short = ["--steps", "6", "--set", "checkpoint_every=3", "--set", "eval_every=3"]
    runs = {}
    for name, extra in (("eager", []), ("compiled", ["--set", "compile=true"]), ("again", ["--set", "compile=true"])):
        out = tmp_path / name / "run.json"
        assert main(["run", "smoke", *short, *extra, "--out", str(out)]) == 0
        runs[name] = load_manifest(out).manifest
    compiled, again, eager = runs["compiled"], runs["again"], runs["eager"]
    assert compiled.run.settings.compile and not eager.run.settings.compile
    assert [float_bits(s.loss) for s in compiled.steps] == [float_bits(s.loss) for s in again.steps]
    assert [float_bits(s.grad_norm) for s in compiled.steps] == [float_bits(s.grad_norm) for s in again.steps]
    assert [float_bits(v.loss) for v in compiled.validation] == [float_bits(v.loss) for v in again.validation]
    assert [c.sha256 for c in compiled.checkpoints] == [c.sha256 for c in again.checkpoints]
    assert compiled.checkpoints[-1].tensors.keys() == eager.checkpoints[-1].tensors.keys()  # names as in eager runs
    for a, b in zip(eager.steps, compiled.steps, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=1e-4)
    for va, vb in zip(eager.validation, compiled.validation, strict=True):
        assert vb.loss == pytest.approx(va.loss, rel=1e-4)


def test_new_settings_at_their_defaults_leave_recorded_digests_valid() -> None:
    # The reference run was recorded before precision and compile existed.
    m = load_manifest(REFERENCE).manifest
    assert '"precision"' not in REFERENCE.read_text(encoding="utf-8")
    assert config_digest(m.run.settings, m.run.config) == m.run.config_sha256
    # ... and a smoke run resolved today records the same config and digest as the reference.
    today = resolve_run("smoke")
    assert today.config.model_dump(mode="json") == m.run.config and today.config_sha256 == m.run.config_sha256
    assert "grad_accum_steps" in resolve_run("smoke", assignments=["grad_accum_steps=2"]).config.model_dump()
    changed = m.run.settings.model_copy(update={"precision": "bf16-mixed"})
    assert config_digest(changed, m.run.config) != m.run.config_sha256


def test_precision_reads_the_number_32_and_refuses_others() -> None:
    assert resolve_run("smoke", assignments=["precision=32"]).settings.precision == "32"
    assert RunSettings.model_validate({"precision": "bf16-mixed", "compile": True}).compile is True
    with pytest.raises(UsageError, match="invalid setting value for 'precision'"):
        resolve_run("smoke", assignments=["precision=16"])


def test_the_chunked_loss_is_bitwise_run_to_run_and_close_to_whole_logits(tmp_path: Path) -> None:
    whole, val_whole, state_whole = train(tmp_path)
    chunked, val_chunked, state_chunked = train(tmp_path, "loss_chunk_rows=48")  # 128 rows: 48 + 48 + 32
    again, val_again, state_again = train(tmp_path, "loss_chunk_rows=48")
    assert [o.loss for o in chunked] == [o.loss for o in again] and val_chunked == val_again
    assert all(torch.equal(state_chunked[k], state_again[k]) for k in state_chunked)
    assert state_chunked.keys() == state_whole.keys()  # the workspace is not state
    for a, b in zip(whole, chunked, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=1e-5) and b.grad_norm == pytest.approx(a.grad_norm, rel=1e-4)
    assert val_chunked[0] == pytest.approx(val_whole[0], rel=1e-5)


def test_a_chunked_loss_run_is_recorded_and_audits_bitwise_in_full_and_from_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run" / "run.json"
    assert main(["run", "smoke", "--set", "loss_chunk_rows=48", "--out", str(out)]) == 0
    assert load_manifest(out).manifest.run.config["loss_chunk_rows"] == 48
    for mode in ([], ["--segments", "1", "--seed", "0"]):  # a segment resumes from a checkpoint
        report = tmp_path / "audit.json"
        assert main(["audit", str(out), *mode, "--json", str(report)]) == 0
        assert read_report(report).verdict == "bitwise"


@pytest.mark.slow
def test_compiled_training_with_the_chunked_loss_is_bitwise_run_to_run(tmp_path: Path) -> None:
    """The chunked loss stays out of the compiled graph (a graph break); the rest compiles."""
    short = ["--steps", "4", "--set", "checkpoint_every=2", "--set", "eval_every=2",
             "--set", "compile=true", "--set", "loss_chunk_rows=48"]
    runs = []
    for name in ("first", "again"):
        out = tmp_path / name / "run.json"
        assert main(["run", "smoke", *short, "--out", str(out)]) == 0
        runs.append(load_manifest(out).manifest)
    first, again = runs
    assert [float_bits(s.loss) for s in first.steps] == [float_bits(s.loss) for s in again.steps]
    assert [float_bits(v.loss) for v in first.validation] == [float_bits(v.loss) for v in again.validation]
    assert [c.sha256 for c in first.checkpoints] == [c.sha256 for c in again.checkpoints]


def test_the_baselines_chunk_the_loss_and_null_restores_whole_logits() -> None:
    assert resolve_run("baseline").config.model_dump()["loss_chunk_rows"] == 512
    assert resolve_run("baseline-full").config.model_dump()["loss_chunk_rows"] == 512
    whole = resolve_run("baseline", assignments=["loss_chunk_rows=null"])
    assert "loss_chunk_rows" not in whole.config.model_dump()  # recorded as runs before the setting were
    with pytest.raises(UsageError, match="loss_chunk_rows"):
        resolve_run("baseline", assignments=["loss_chunk_rows=0"])
