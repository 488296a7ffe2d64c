"""What an audit is asked to do: which steps to rerun, where, and how close counts as reproduced.

The default tolerances come from measurements on this project's machines (``docs/audit.md``,
"Tolerances"): they sit well above the spread that legitimate, known sources of float
nondeterminism produce (1 vs 2 threads on the CPU) and far below what editing a recorded number
by hand produces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from repro.records.base import FrozenRecord
from repro.trust.limits import Limits

DEFAULT_LOSS_ATOL = 1e-5
"""Absolute per-step tolerance on losses, gradient norms, learning rates and validation losses."""

DEFAULT_LOSS_RTOL = 1e-4
"""Relative per-step tolerance (of the recorded value) on the same scalars."""

DEFAULT_GRAD_RTOL = 1e-2
"""Relative per-step tolerance on gradient norms: a norm over millions of gradient entries moves
far more than the loss under a different summation order (CPU vs CUDA: up to 1.3e-3 in 100 steps)."""

DEFAULT_MAX_STEPS = 10_000
"""Most training steps an audit replays unless the user allows more (``--max-steps``): a
manifest is someone else's input, and its ``steps`` must not decide alone how long this machine
computes. Ten thousand covers every preset here (``baseline-full`` has 3,000)."""

DEFAULT_TENSOR_RTOL = 5e-2
"""Largest relative L2 difference ``||rerun - recorded|| / ||recorded||`` of a checkpoint tensor."""


class Tolerance(FrozenRecord):
    """When a difference still counts as reproduced.

    A scalar ``rerun`` matches ``recorded`` when ``|rerun - recorded| <= atol + rtol * |recorded|``
    (the rule of ``numpy.isclose``). A floating-point tensor matches when its relative L2
    difference is at most ``tensor_rtol``. Integer tensors (counters, RNG states) and batch
    fingerprints must match exactly: no tolerance makes a different batch the same batch.
    """

    atol: float = Field(DEFAULT_LOSS_ATOL, ge=0.0, description="Absolute tolerance on per-step scalars.")
    rtol: float = Field(DEFAULT_LOSS_RTOL, ge=0.0, description="Relative tolerance on per-step scalars.")
    grad_rtol: float = Field(
        DEFAULT_GRAD_RTOL, ge=0.0, description="Relative tolerance on per-step gradient norms."
    )
    tensor_rtol: float = Field(
        DEFAULT_TENSOR_RTOL, ge=0.0, description="Relative L2 tolerance on floating-point checkpoint tensors."
    )

    def allows(self, recorded: float, rerun: float) -> bool:
        """Whether ``rerun`` is within tolerance of ``recorded``."""
        return abs(rerun - recorded) <= self.atol + self.rtol * abs(recorded)

    def for_field(self, field: str) -> Tolerance:
        """The tolerance that applies to a per-step field (gradient norms get ``grad_rtol``)."""
        return self.model_copy(update={"rtol": self.grad_rtol}) if field == "grad_norm" else self


BF16_TOLERANCE = Tolerance(atol=1e-4, rtol=5e-4, grad_rtol=5e-2, tensor_rtol=1e-1)
"""Defaults when the recorded run or the rerun is in ``bf16-mixed`` precision (docs/audit.md,
"bf16-mixed and torch.compile"): bf16-mixed vs float32 moved losses by up to 3.8e-5 relative and
gradient norms by 1.2e-3 (13x and 40x margins); a 0.1% edit of a recorded loss is still caught."""


def default_tolerance(*precisions: str) -> Tolerance:
    """The default tolerance for a comparison of runs in these precisions (the loosest applies)."""
    return BF16_TOLERANCE if "bf16-mixed" in precisions else Tolerance()


def effective_tolerance(given: Tolerance, *precisions: str) -> Tolerance:
    """``given``'s explicitly set values over the defaults for ``precisions``."""
    base = default_tolerance(*precisions)
    return base.model_copy(update={name: getattr(given, name) for name in given.model_fields_set})


class AuditOptions(FrozenRecord):
    """Everything an audit can be told; recorded verbatim in its report.

    ``steps`` (audit the first N steps), ``segments`` (spot-check K random
    checkpoint-to-checkpoint segments) and ``budget`` (spot-check what fits a budget) exclude each
    other; with none, the whole run is rerun.
    """

    trusted_keys: Path | None = Field(None, description="Trust list; a signature by another key fails.")
    steps: int | None = Field(None, ge=1, description="Audit only the first N steps.")
    segments: int | None = Field(None, ge=1, description="Spot-check K checkpoint-to-checkpoint segments.")
    seed: int | None = Field(
        None, ge=0, description="Seed of the spot-check's segment choice; drawn at random (and reported) if unset."
    )
    budget: str | None = Field(
        None, description="Spot-check the segments whose replay fits this budget: a share of the recorded wall time "
        "('10%') or a time ('90s', '5m', '2h').",
    )
    device: Literal["cpu", "cuda"] | None = Field(None, description="Rerun device; default: as recorded.")
    threads: int | None = Field(None, ge=1, le=512, description="Rerun thread count; default: as recorded.")
    nproc: int | None = Field(
        None, ge=1, le=1024, description="Rerun processes (on this node); default: the recorded world size."
    )
    precision: Literal["32", "bf16-mixed"] | None = Field(None, description="Rerun precision; default: as recorded.")
    compile: bool | None = Field(None, description="Rerun through torch.compile or not; default: as recorded.")
    tolerance: Tolerance = Field(
        default_factory=Tolerance,
        description="Values set explicitly override the defaults for the runs' precision (see docs/audit.md).",
    )
    allow_data_change: bool = Field(
        False, description="Rerun even though data files differ from the recorded ones (and attribute)."
    )
    work_dir: Path | None = Field(
        None, description="Keep the rerun's checkpoints and log here; default: a temporary folder, removed."
    )
    data: Path | None = Field(
        None, description="Where the recorded data is here, instead of the recorded location; accepted only "
        "if every file hashes as recorded (`--data`).",
    )
    code_path: Path | None = Field(None, description="Where to read the code's git state; default: the working folder.")
    trainer: str | None = Field(
        None, description="Trainer for the rerun (entry-point name or package.module:Class), chosen by the user; "
        "default: the installed entry point of the recorded name.",
    )
    allow_imports: bool = Field(
        False, description="Import modules the manifest names (trainer, Lightning module/datamodule) although its "
        "signer is not on the trust list.",
    )
    allow_command: str | None = Field(
        None, description="Rerun a command run's recorded command although its signer is not trusted: the "
        "command line, exactly as recorded (docs/security.md).",
    )
    max_steps: int = Field(
        DEFAULT_MAX_STEPS, ge=1, description="Refuse (before compute) an audit that would replay more training steps.",
    )
    limits: Limits = Field(default_factory=Limits, description="Bounds on every count the manifest controls.")
    limits_from: Literal["flag", "policy"] = Field("flag", description="Where the user allows more (for messages).")
