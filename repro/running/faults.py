"""Test-only fault injection at the fixed points of a training process, in one place.

The training loops (:mod:`repro.running.worker` for plugins, :mod:`repro.running.command` for a
user's own script) call these two hooks and nothing else; what each hook may do is decided here
from the test variables (all unset in real use, where a hook costs a dictionary lookup or two):

- ``REPRO_TEST_CRASH_AT=step:N`` (:mod:`repro.running.crashpoint`): SIGKILL the process group
  after step N;
- ``REPRO_TEST_KILL_RANK=R:N`` (:mod:`repro.running.distributed`): SIGKILL rank R after step N;
- ``REPRO_TEST_DRIFT=R:N``: rank R's replica drifts after step N, before the replica check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from repro.running import distributed as dist
from repro.running.crashpoint import crash_point


def after_step(info: dist.RankInfo | None, step: int) -> None:
    """Called once step ``step`` (and its validation) is recorded, before its checkpoint."""
    crash_point("step", step)
    if info is not None:
        dist.kill_point(info, step)


def before_replica_check(info: dist.RankInfo, step: int, state: Mapping[str, Any]) -> None:
    """Called with a rank's checkpoint state just before the replicas are compared."""
    dist.drift_point(info, step, state)
