"""Spot-check audits: replay a few checkpoint-to-checkpoint segments chosen at random.

In the spirit of Proof-of-Learning: whoever made a manifest cannot know in advance which segments
an auditor will replay, so fabricating or editing any stretch of the records is caught with
probability K/n per audit (n segments, K replayed), at the cost of K segments of training. Each
segment starts from the recorded checkpoint at its start (hash-verified before loading; a segment
starting at step 0 starts afresh) and is compared with the records and the checkpoint at its end.
The seed is drawn at random unless given, and recorded in the report, so the choice can be
repeated.
"""

from __future__ import annotations

import random
import secrets

from repro.audits.report import Segment
from repro.errors import UsageError
from repro.records.manifest import CheckpointRecord, RunManifest


def segments_of(manifest: RunManifest, total_steps: int) -> list[Segment]:
    """The run cut at its recorded checkpoints: (0, c1], (c1, c2], ..., up to ``total_steps``."""
    bounds = sorted({c.step for c in manifest.checkpoints if 0 < c.step < total_steps})
    starts = [0, *bounds]
    ends = [*bounds, total_steps]
    return [Segment(start=a, end=b) for a, b in zip(starts, ends, strict=True)]


def draw_seed() -> int:
    """A fresh, unpredictable seed for choosing segments."""
    return secrets.randbelow(2**32)


def choose_segments(segments: list[Segment], count: int, seed: int) -> list[Segment]:
    """``count`` distinct segments chosen with ``random.Random(seed)``, in run order."""
    if count > len(segments):
        listed = ", ".join(f"{s.start}-{s.end}" for s in segments)
        raise UsageError(
            f"--segments {count}: the run has only {len(segments)} checkpoint-to-checkpoint "
            f"segment(s) ({listed}); ask for at most {len(segments)}"
        )
    # S311: the choice is seeded so that it is reproducible; nothing here needs to be unpredictable.
    picked = random.Random(seed).sample(range(len(segments)), count)  # noqa: S311
    return [segments[i] for i in sorted(picked)]


def start_checkpoint(manifest: RunManifest, segment: Segment) -> CheckpointRecord | None:
    """The recorded checkpoint a segment starts from (None for a segment that starts at step 0)."""
    if segment.start == 0:
        return None
    found = next((c for c in manifest.checkpoints if c.step == segment.start), None)
    if found is None:  # segments_of only cuts at recorded checkpoints
        raise UsageError(f"no recorded checkpoint at step {segment.start}")
    return found
