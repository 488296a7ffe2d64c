"""A manifest's own consistency: the rules a record of a finished run cannot break.

A signature says who wrote a manifest, not that it makes sense. A manifest whose steps skip a
number, whose checkpoint claims a step that never ran, or that records two checkpoints for one
step is not a valid record of a run, however it is signed: it is an integrity failure
(:class:`~repro.errors.InconsistentManifestError`, exit 3), raised before any file is read.

Only finished runs have manifests (an unfinished one has only its ``.incomplete`` marker), so:

- steps are numbered exactly 1..N, where N is the config's ``steps`` (when the config has one);
- ``timing.step_seconds`` has one entry per step;
- checkpoints and validation passes are at recorded steps (or step 0, before training), in
  order, at most one per step; a resumed run resumed from one of its checkpoints;
- no two recorded files (tokenizer, checkpoints, artifacts; data files) share a path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from repro.errors import InconsistentManifestError
from repro.records.manifest import RunManifest


def _first_duplicate(values: Iterable[object]) -> object | None:
    counts = Counter(values)
    return next((v for v, n in counts.items() if n > 1), None)


def _problems(m: RunManifest) -> Iterable[str]:
    import numpy as np

    columns = m.step_columns()  # NumPy columns: a million steps are checked without a record each
    numbers = columns.step
    count = len(numbers)
    planned = m.run.config.get("steps")
    wrong = np.flatnonzero(numbers != np.arange(1, count + 1))
    if wrong.size:
        bad = int(wrong[0]) + 1
        yield f"steps are not numbered 1..{count} (record {bad} is step {int(numbers[bad - 1])})"
    if isinstance(planned, int) and not isinstance(planned, bool) and count != planned:
        yield f"it records {count} steps but its config says the run has {planned}"
    seconds = len(m.timing.step_seconds)
    if seconds != count:
        yield f"timing.step_seconds has {seconds} entries for {count} steps"

    def is_recorded(step: int) -> bool:  # numbered 1..count when the checks above pass
        return step == 0 or (not wrong.size and 1 <= step <= count) or bool(np.isin(step, numbers))

    for what, steps in (("checkpoint", [c.step for c in m.checkpoints]),
                        ("validation", [v.step for v in m.validation])):
        if (odd := next((s for s in steps if not is_recorded(s)), None)) is not None:
            yield f"a {what} is at step {odd}, which the run did not record"
        if (twice := _first_duplicate(steps)) is not None:
            yield f"two {what}s are at step {twice}"
        if steps != sorted(steps):
            yield f"{what}s are not in step order"
    resumed = m.timing.resumed_from_step
    if resumed is not None and resumed not in {c.step for c in m.checkpoints if 0 < c.step <= count}:
        yield f"it was resumed from step {resumed}, where it records no checkpoint"
    paths = [c.path for c in m.checkpoints] + [a.path for a in m.artifacts]
    paths += [m.data.tokenizer.path] if m.data.tokenizer is not None else []
    if (same := _first_duplicate(paths)) is not None:
        yield f"two recorded files share the path {same}"
    if (same := _first_duplicate(f.path for f in m.data.files)) is not None:
        yield f"two data files share the path {same}"


def check_consistency(m: RunManifest, what: str) -> None:
    """Raise :class:`InconsistentManifestError` if ``m`` is not a self-consistent finished run."""
    problems = list(_problems(m))
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise InconsistentManifestError(
            f"{what} is signed but is not a valid record of a finished run: {problems[0]}{more}; "
            "do not trust it, ask its signer for a correct one"
        )
