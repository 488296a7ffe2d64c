"""The one judgment core: does an observed run agree with a recorded one, how closely, and why not.

Every command that judges two runs calls :func:`judge`, and only it: ``repro audit`` (the record
against its rerun), ``repro diff`` (run A against run B), ``repro audit --vary`` (the record against
the control rerun, and the control against each variation) and the CI gate (through the audit). The
callers gather the two sides (verified manifests, reruns) and render the :class:`Judgment`; the
judgment itself reads nothing but the checkpoint tensors it compares, and writes nothing.

The steps, in order:

1. **Tolerance.** The defaults for the precision of *both* runs (bf16-mixed is looser), with what
   the user set explicitly on top (:func:`~repro.audits.options.effective_tolerance`).
2. **Steps.** Per-step loss, gradient norm and learning rate (bits, ulps, tolerance) and batch
   fingerprints (exact), matched by step number (:func:`~repro.audits.comparison.compare_steps`).
   No step on either side is not a judgment: :class:`~repro.errors.CouldNotCheckError`.
3. **Validation** losses, by step.
4. **Checkpoints**, tensor by tensor, at the steps both sides saved (digests first; only tensors
   whose digests differ are read).
5. **Verdict**: the most severe of every comparison, in the one order of :data:`SEVERITY`
   (different batches are always ``diverged``).
6. **Differences** between the two sides' settings, environment, code and data, weighed by the code
   the training processes executed (:func:`~repro.audits.executed.refine`) and ranked.
7. **Attribution** (the likely cause) and the one-line summary, cause first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from repro.audits import attribution, comparison, differences, executed, tensors
from repro.audits.options import Tolerance, effective_tolerance
from repro.audits.report import (
    Attribution,
    BatchComparison,
    CheckpointComparison,
    Difference,
    SeriesComparison,
    StepDetail,
    ValidationDetail,
    Verdict,
)
from repro.errors import CouldNotCheckError
from repro.records.manifest import ExecutedCode, StepRecord, ValidationRecord
from repro.records.steps import StepColumns

SEVERITY: dict[str, int] = {"bitwise": 0, "within_tolerance": 1, "diverged": 2}
"""The verdict order: the judgment of several comparisons is the most severe of them."""


def most_severe(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe verdict (``bitwise`` for none)."""
    return max(verdicts, key=SEVERITY.__getitem__, default="bitwise")


@dataclass(frozen=True)
class Side:
    """One run as the judgment sees it: its per-step records, validation losses and precision."""

    steps: StepColumns | Sequence[StepRecord]
    validation: Sequence[ValidationRecord]
    precision: str


@dataclass(frozen=True)
class CheckpointPair:
    """A checkpoint both sides saved after ``step``: each side's file and per-tensor digests.

    With ``recorded_root``, ``recorded_file`` is a manifest-relative path, read through the
    confinement layer and checked against ``recorded_sha256`` (a verified run's checkpoint); the
    same for ``observed_root``/``observed_sha256`` (the second manifest of a diff).
    """

    step: int
    recorded_file: Path | str
    recorded_tensors: dict[str, str]
    observed_file: Path | str
    observed_tensors: dict[str, str]
    recorded_root: Path | None = None
    recorded_sha256: str | None = None
    observed_root: Path | None = None
    observed_sha256: str | None = None


@dataclass(frozen=True)
class Evidence:
    """What the two sides say about how they ran, for step 6: their differences (settings,
    environment, code, data; unranked) and the code each training process executed."""

    differences: list[Difference] = field(default_factory=list)
    recorded_executed: ExecutedCode | None = None
    observed_executed: ExecutedCode | None = None
    trainer_entry: str = ""


@dataclass(frozen=True)
class FirstDifference:
    """Where the two runs first differ at all: the step, in which quantity, by how many ulps."""

    step: int
    quantity: str
    ulps: int | None


@dataclass(frozen=True)
class Judgment:
    """The result of :func:`judge`; the report models of audit, diff and vary are built from it."""

    tolerance: Tolerance
    verdict: Verdict
    summary: str
    losses: SeriesComparison
    series: list[SeriesComparison]
    """Gradient norm, learning rate, then validation loss."""
    batches: BatchComparison
    steps: list[StepDetail]
    validation: list[ValidationDetail]
    checkpoints: list[CheckpointComparison]
    differences: list[Difference]
    attribution: Attribution

    @property
    def reproduced(self) -> bool:
        """Bitwise or within tolerance."""
        return self.verdict != "diverged"

    @property
    def first_checkpoint_difference(self) -> int | None:
        """Step of the first checkpoint that is not bit-identical."""
        return next((c.step for c in self.checkpoints if c.verdict != "bitwise"), None)

    @property
    def first_beyond_tolerance_step(self) -> int | None:
        """First step at which any per-step quantity is beyond tolerance."""
        steps = [s.first_beyond_tolerance_step for s in [self.losses, *self.series]
                 if s.first_beyond_tolerance_step is not None]
        return min(steps) if steps else None

    @property
    def max_ulps(self) -> int:
        """Largest difference in ulps over every per-step quantity."""
        return max(s.max_ulps for s in [self.losses, *self.series])

    def first_difference(self) -> FirstDifference | None:
        """Where the runs first differ in any quantity (a step only one side has counts, and so do
        batches); a checkpoint's tensors when every per-step quantity is bit-identical."""
        firsts = [FirstDifference(s.first_difference_step, s.name, s.first_difference_ulps)
                  for s in [self.losses, *self.series] if s.first_difference_step is not None]
        firsts += [FirstDifference(s.unmatched[0], f"{s.name} (step on one side only)", None)
                   for s in [self.losses, *self.series] if s.unmatched]
        if not self.batches.identical and self.batches.first_difference_step is not None:
            firsts.append(FirstDifference(self.batches.first_difference_step, "batch", None))
        if firsts:
            return min(firsts, key=lambda f: f.step)
        step = self.first_checkpoint_difference
        return FirstDifference(step, "checkpoint tensors", None) if step is not None else None


def judge(recorded: Side, observed: Side, *, checkpoints: Sequence[CheckpointPair] = (),
          device_changed: bool = False, evidence: Evidence | None = None,
          tolerance: Tolerance | None = None, against: str = "",
          checkpoint_noun: str = "checkpoint") -> Judgment:
    """Judge ``observed`` against ``recorded`` (the steps are the module docstring's).

    ``tolerance`` is what the user set (explicit fields override the precision's defaults);
    ``device_changed`` excuses device-only RNG state in checkpoints; ``against`` and
    ``checkpoint_noun`` word the summary ("... bit-identical to the record", "shared checkpoint").
    """
    evidence = evidence or Evidence()
    # 1. Tolerance for both precisions.
    tol = effective_tolerance(tolerance or Tolerance(), recorded.precision, observed.precision)
    # 2. Steps.
    losses, others, batches, details = comparison.compare_steps(recorded.steps, observed.steps, tol)
    if losses.compared == 0 and not losses.unmatched:
        raise CouldNotCheckError("no training steps on either side to compare; nothing was checked")
    # 3. Validation.
    validation, val_details = comparison.compare_validation(recorded.validation, observed.validation, tol)
    # 4. Checkpoints.
    compared = [
        tensors.compare_checkpoint(p.step, p.recorded_file, p.recorded_tensors, p.observed_file,
                                   p.observed_tensors, tol, device_changed, recorded_root=p.recorded_root,
                                   recorded_sha256=p.recorded_sha256, rerun_root=p.observed_root,
                                   rerun_sha256=p.observed_sha256)
        for p in checkpoints
    ]
    # 5. Verdict.
    series = [*others, validation]
    batch_verdict: list[Verdict] = [] if batches.identical else ["diverged"]  # another batch is another run
    verdict = most_severe([losses.verdict, *(s.verdict for s in series), *(c.verdict for c in compared),
                           *batch_verdict])
    # 6. Differences, weighed by the code that ran, ranked.
    weighed, code_known = executed.refine(evidence.differences, evidence.recorded_executed,
                                          evidence.observed_executed, evidence.trainer_entry)
    found = differences.rank(weighed)
    # 7. Attribution and summary.
    cause = attribution.attribute(verdict, losses, series, batches, compared, found, code_known=code_known)
    summary = comparison.verdict_summary(verdict, losses, compared, cause.summary, against=against,
                                         checkpoint_noun=checkpoint_noun)
    return Judgment(tolerance=tol, verdict=verdict, summary=summary, losses=losses, series=series,
                    batches=batches, steps=details, validation=val_details, checkpoints=compared,
                    differences=found, attribution=cause)
