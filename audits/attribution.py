"""Naming the likely cause of a difference, from what differs and how the numbers drifted.

The evidence, in the order it is weighed:

1. **Data** differs here: every later difference follows from it.
2. **Batches** differ without a data difference: the trainer drew other data (data-order drift);
   code, trainer or package changes are the candidates, else the batch order is nondeterministic.
3. **Records inconsistent**: the losses differ beyond tolerance but the checkpoints at and after
   that step are bit-identical. Numeric nondeterminism does not leave weights untouched: the
   recorded numbers were most likely edited.
4. **Environment or code** differences ranked by :mod:`audits.differences`: the top ones.
5. Nothing differs and the rerun still differs: nondeterminism in the trainer, a bug, but only
   when the code both processes executed is known to be identical (the executed-code
   fingerprint); a manifest without one cannot rule out a code change outside git. When the
   losses jump from bit-identical to far apart in one step (float drift starts at an ulp and
   grows), edited records are named as the other candidate. Differences of likelihood ``none``
   (packages the training never imported) are never offered as causes.
"""

from __future__ import annotations

from typing import Literal

from repro.audits.report import Attribution, BatchComparison, CheckpointComparison, Difference, SeriesComparison
from repro.text import plural

SUDDEN_ULPS = 1 << 16
"""A first difference this large (in ulps) after bit-identical steps is a jump, not float drift."""

_LABELS = {
    "environment.torch_threads": "threads", "environment.torch_version": "torch",
    "settings.device": "device", "settings.world_size": "world size",
    "environment.cuda_version": "CUDA", "environment.cudnn_version": "cuDNN",
    "environment.cpu_capability": "CPU capability", "env.PYTHONHASHSEED": "PYTHONHASHSEED",
}


def label(difference: Difference) -> str:
    """A difference in a few words: ``torch 2.13.0 → 2.14.1``."""
    if difference.category == "code" and difference.note and not difference.field.startswith("code."):
        return difference.note  # executed-code differences say it in words: "trainer code changed: x.py"
    name = _LABELS.get(difference.field) or difference.field.split(".", 1)[-1]
    if difference.field.startswith(("package ", "data file ")):
        name = difference.field
    return f"{name} {difference.recorded} → {difference.here}"


def _first(losses: SeriesComparison, series: list[SeriesComparison], checkpoints: list[CheckpointComparison]) -> str:
    if losses.first_difference_step is not None:
        u = losses.first_difference_ulps or 0
        return f"first loss difference at step {losses.first_difference_step}, {plural(u, 'ulp')}"
    for s in series:
        if s.first_difference_step is not None or s.unmatched:
            where = s.first_difference_step if s.first_difference_step is not None else s.unmatched[0]
            return f"losses bit-identical; first {s.name} difference at step {where}"
    ckpt = next((c for c in checkpoints if c.verdict != "bitwise"), None)
    if ckpt is not None:
        return f"per-step numbers bit-identical; checkpoint at step {ckpt.step} differs"
    return "no per-step difference"


def _abrupt(losses: SeriesComparison) -> bool:
    return (
        losses.first_difference_step is not None
        and losses.first_difference_step == losses.first_beyond_tolerance_step
        and (losses.first_difference_ulps or 0) >= SUDDEN_ULPS
    )


def _weights_untouched(losses: SeriesComparison, checkpoints: list[CheckpointComparison]) -> bool:
    """Losses differ, yet every checkpoint at or after the first difference is bit-identical."""
    step = losses.first_beyond_tolerance_step
    later = [c for c in checkpoints if step is not None and c.step >= step]
    return bool(later) and all(c.verdict == "bitwise" for c in later)


def attribute(  # noqa: PLR0917 - the comparisons in the order the judgment makes them
    verdict: str, losses: SeriesComparison, series: list[SeriesComparison], batches: BatchComparison,
    checkpoints: list[CheckpointComparison], differences: list[Difference], *, code_known: bool = True,
) -> Attribution:
    """The likely cause of the comparison's result; ``differences`` must be ranked already.

    ``code_known``: both sides recorded the code they executed, so "nothing differs" includes code.
    """
    relevant = [d for d in differences if d.likelihood in ("certain", "high", "medium")]
    if verdict == "bitwise":
        if relevant:
            return Attribution(kind="none",
                               summary="bit-identical despite: " + "; ".join(label(d) for d in relevant[:3]),
                               causes=[])
        return Attribution(kind="none", summary="bit-identical; nothing to attribute", causes=[])

    first = _first(losses, series, checkpoints)
    data = [d for d in differences if d.category == "data"]
    if data:
        return Attribution(kind="data", summary=f"{first}; the data differs: {label(data[0])}",
                           causes=[label(d) for d in data[:5]])
    numeric = [d for d in relevant if d.category != "data"]
    if not batches.identical:
        causes = [label(d) for d in numeric if d.category in ("code", "trainer", "packages", "hashseed", "torch")]
        drift = f"batches differ from step {batches.first_difference_step}: data-order drift, not numeric drift"
        if not causes:
            causes = ["nondeterministic batch order in the trainer (a bug): nothing that chooses batches differs"]
        return Attribution(kind="data_order", summary=f"{first}; {drift}; likely {causes[0]}", causes=causes)
    if losses.verdict == "diverged" and _weights_untouched(losses, checkpoints):
        return Attribution(
            kind="records",
            summary=(f"{first}; the checkpoints after it are bit-identical to the recorded ones: the recorded "
                     "numbers were most likely edited, not produced by this computation"),
            causes=["edited or fabricated records", "otherwise: nondeterminism in the trainer (a bug)"],
        )
    if numeric:
        kind: Literal["code", "environment"] = "code" if numeric[0].category in ("code", "trainer") else "environment"
        return Attribution(kind=kind, summary=f"{first}; " + "; ".join(label(d) for d in numeric[:3]),
                           causes=[label(d) for d in numeric])
    low = [label(d) for d in differences if d.likelihood == "low"]
    if not code_known:
        summary = (f"{first}; no recorded difference, but the code the training process executed was not "
                   "recorded on both sides: an unrecorded code change (outside git) or nondeterminism in the "
                   "trainer")
        causes = ["an unrecorded code change", "nondeterminism in the trainer (a bug)"]
    elif low:
        summary = (f"{first}; code, data and config identical; only differences unlikely to change numbers "
                   f"({'; '.join(low[:2])}): rule them out, else nondeterminism in the trainer (a bug)")
        causes = [*low, "nondeterminism in the trainer (a bug)"]
    else:
        summary = (f"{first}; the code executed, data, config and environment are identical and the rerun "
                   "still differs: nondeterminism in the trainer, a bug")
        causes = ["nondeterminism in the trainer (a bug)"]
    if _abrupt(losses):
        summary += (f" (or edited records: the losses jump from bit-identical to {losses.first_difference_ulps} "
                    "ulps apart in one step, which float drift does not do)")
        causes.append("edited or fabricated records")
    return Attribution(kind="nondeterminism" if code_known else "unknown", summary=summary, causes=causes)
