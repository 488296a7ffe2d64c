"""The conditions ``repro audit --vary`` changes on purpose, one registry entry each.

Like reprotest for builds: each :class:`Variation` turns the recorded run into a
:class:`Condition` — other run settings, extra environment variables for the training process,
another working directory — or says why it is not available here. Adding a condition (world size,
precision) is one entry in :data:`VARIATIONS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from repro.records.manifest import RunManifest

ELSEWHERE = "elsewhere/with a/deeper path"
"""Where the ``cwd`` variation runs, below its own rerun folder: another directory and absolute
paths of another length (with a space)."""


@dataclass(frozen=True)
class Condition:
    """How one rerun departs from the recorded run."""

    description: str = ""
    settings: dict[str, object] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    move: bool = False

    def rerun_folder(self, folder: Path) -> Path:
        """Where the rerun writes (its checkpoints, log, tokenizer): deeper when paths are varied."""
        where = folder / ELSEWHERE if self.move else folder
        where.mkdir(parents=True, exist_ok=True)
        return where

    def working_dir(self, folder: Path) -> Path | None:
        """The training process's working directory for a rerun writing to ``folder``."""
        return folder if self.move else None


@dataclass(frozen=True)
class Variation:
    """A named condition: what it changes, and how, for a given recorded run."""

    name: str
    help: str
    make: Callable[[RunManifest], Condition | str]


def _threads(m: RunManifest) -> Condition:
    recorded = m.run.settings.threads
    other = 1 if recorded != 1 else 2
    return Condition(f"threads {recorded} → {other}", settings={"threads": other})


def _hashseed(m: RunManifest) -> Condition:
    recorded = m.run.settings.pythonhashseed
    other = (recorded + 1) % 4294967296
    return Condition(f"PYTHONHASHSEED {recorded} → {other}", settings={"pythonhashseed": other})


def _cwd(m: RunManifest) -> Condition:
    return Condition(f"working directory and absolute paths → …/{ELSEWHERE}", move=True)


def _locale(m: RunManifest) -> Condition:
    current = os.environ.get("LC_ALL") or os.environ.get("LANG") or "C"
    other = "C" if current != "C" else "C.UTF-8"
    return Condition(f"locale {current} → {other}", env={"LC_ALL": other, "LANG": other, "LANGUAGE": other})


def _timezone(m: RunManifest) -> Condition:
    current = os.environ.get("TZ") or "(unset)"
    other = "Pacific/Kiritimati" if current != "Pacific/Kiritimati" else "America/Adak"
    return Condition(f"time zone {current} → {other}", env={"TZ": other})


def _device(m: RunManifest) -> Condition | str:
    recorded = m.run.settings.device
    if recorded == "cuda":
        return Condition("device cuda → cpu", settings={"device": "cpu"})
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device here"
    return Condition("device cpu → cuda", settings={"device": "cuda"})


VARIATIONS: dict[str, Variation] = {v.name: v for v in (
    Variation("threads", "torch/OpenMP thread count (1 ↔ the recorded count)", _threads),
    Variation("hashseed", "PYTHONHASHSEED (recorded + 1)", _hashseed),
    Variation("cwd", "working directory and the absolute paths of the run's files", _cwd),
    Variation("locale", "LC_ALL/LANG (C ↔ C.UTF-8)", _locale),
    Variation("timezone", "TZ (UTC+14)", _timezone),
    Variation("device", "cpu ↔ cuda, when a CUDA device is here", _device),
)}
"""Every variation by name; ``--vary all`` means all of them, in this order."""
