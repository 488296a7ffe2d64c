"""Training processes die with the process that started them.

``repro run`` holds the run folder's lock; a training process that outlived it would keep
writing checkpoints into a folder another run may now own. So every child is tied to its parent:

- on Linux, ``prctl(PR_SET_PDEATHSIG)``: the kernel signals the child when its parent dies
  (:func:`tie_to_parent`, the first thing the child does; the elastic agent asks for SIGTERM, on
  which it stops its ranks, a training process for SIGKILL);
- everywhere, the child compares ``os.getppid()`` with the parent's pid it was given
  (``REPRO_PARENT_PID``) at start and before every training step and checkpoint
  (:func:`check_parent`): once the parent is gone it kills itself, before writing anything more.

The chain is ``repro run`` → elastic agent → ranks for a distributed run (the agent gives the
ranks its own pid), ``repro run`` → worker otherwise.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_ENV = "REPRO_PARENT_PID"
"""The pid of the process a training process must not outlive."""

_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux; no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the getppid check below still holds
        pass


def expected_parent() -> int | None:
    """The parent pid this process was started with, if it was started by repro."""
    value = os.environ.get(PARENT_ENV, "")
    return int(value) if value.isdigit() else None


def check_parent() -> None:
    """SIGKILL this process if the parent it was started by is gone (it was re-parented)."""
    parent = expected_parent()
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def tie_to_parent(signum: int = signal.SIGKILL) -> None:
    """First thing in a child repro starts: die with the parent (by ``signum``), and at once if it
    is already gone (it died between the fork and this call)."""
    die_with_parent(signum)
    check_parent()
