"""Record your own training with a few lines: ``repro run [options] -- python train.py``.

::

    import repro.record as record

    seed = record.seed()                      # seeds Python, NumPy and torch; returns the run's seed
    record.data(["data/train.bin"])           # the input files (hashed; verify and audit check them)
    start = record.resume({"model": model, "optim": opt})   # None, or the step to continue after
    for step in range(start or 0, steps):
        ...
        record.step(loss, lr=lr, grad_norm=norm, batch=x)   # once per optimizer step
        if step % 100 == 0:
            record.validation(val_loss)
            record.checkpoint({"model": model, "optim": opt})

Run outside ``repro run`` every call is a cheap no-op (``seed()`` still seeds, with ``$REPRO_SEED``
or 1337), so the script runs as before. Inside, the training process repro started runs the script
and these calls report to it: steps, validation and checkpoints go into the signed manifest
exactly as a plugin's do. Importing this module does not import torch. See docs/record.md.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DEFAULT_SEED = 1337
"""The seed outside ``repro run`` when ``$REPRO_SEED`` is not set (repro's default seed)."""

SEED_ENV = "REPRO_SEED"


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed script continues: after ``step``, from ``tensors`` (the checkpoint's state,
    by name, without repro's RNG states, which :func:`resume` has already restored)."""

    step: int
    tensors: dict[str, Any]


class _Session(Protocol):
    """What the training process repro started provides (:mod:`repro.record.session`)."""

    def seed(self) -> int: ...
    def data(self, paths: list[Path]) -> None: ...
    def step(self, loss: Any, lr: Any, grad_norm: Any, tokens: Any, batch: Any) -> None: ...
    def validation(self, loss: Any) -> None: ...
    def checkpoint(self, state: Mapping[str, Any]) -> None: ...
    def resume(self, state: Mapping[str, Any] | None) -> ResumePoint | None: ...
    def stopping(self) -> bool: ...
    @property
    def active_step(self) -> int: ...


class _Holder:
    session: _Session | None = None


_holder = _Holder()


def active() -> bool:
    """Whether this process is recording (it runs under ``repro run``)."""
    return _holder.session is not None


def seed() -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and CUDA) and return the seed: the run's
    (``--seed``) under ``repro run``, else ``$REPRO_SEED`` or :data:`DEFAULT_SEED`."""
    if (session := _holder.session) is not None:
        return session.seed()
    value = int(os.environ.get(SEED_ENV) or DEFAULT_SEED)
    seed_everything(value)
    return value


def seed_everything(value: int) -> None:
    """Seed Python, NumPy (if installed) and torch (if installed) with ``value``."""
    random.seed(value)
    numpy = sys.modules.get("numpy")
    if numpy is None:
        try:
            import numpy
        except ImportError:
            numpy = None
    if numpy is not None:
        numpy.random.seed(value % 2**32)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(value)  # every device's default generator, CUDA included


def data(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> None:
    """Declare the files the training reads. They are hashed into the manifest; ``repro verify``
    and ``repro audit`` check every byte before any compute (a changed file: exit 3). Repeatable."""
    session = _holder.session
    if session is None:
        return
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    session.data([Path(p) for p in items])


def step(loss: Any, *, lr: Any = None, grad_norm: Any = None, tokens: Any = None, batch: Any = None) -> None:
    """Report one optimizer step: its exact loss (a tensor or a float; before the update), and if
    known the learning rate, the gradient norm, the items consumed and the batch itself
    (fingerprinted, so an audit tells data-order drift from numeric drift). Call it once per step,
    on every rank of a data-parallel run."""
    if (session := _holder.session) is not None:
        session.step(loss, lr, grad_norm, tokens, batch)


def validation(loss: Any) -> None:
    """Report a validation loss, after the last reported step."""
    if (session := _holder.session) is not None:
        session.validation(loss)


def checkpoint(state: Mapping[str, Any]) -> None:
    """Save a checkpoint after the last reported step, on every rank (replicas are compared).

    ``state`` maps names to what makes the run continue exactly: tensors, ``torch.nn.Module``\\ s,
    optimizers and schedulers (anything with ``state_dict()``), ``torch.Generator``\\ s. repro adds
    the global RNG states and writes safetensors with per-tensor digests, as for any run."""
    if (session := _holder.session) is not None:
        session.checkpoint(state)


def resume(state: Mapping[str, Any] | None = None) -> ResumePoint | None:
    """The checkpoint to continue from, when ``repro run --resume`` or an audit's spot-check asks;
    else None. With ``state`` (the mapping given to :func:`checkpoint`) it is loaded into those
    objects in place. The global RNGs are restored either way; continue with step ``step + 1``."""
    session = _holder.session
    return None if session is None else session.resume(state)


def stopping() -> bool:
    """Whether repro wants no more steps (an audit replays a part of the run). A loop that checks
    it stops cleanly; one that does not is stopped at its next :func:`step` call."""
    session = _holder.session
    return session is not None and session.stopping()


def current_step() -> int:
    """The last reported step (0 before the first; the resume step after :func:`resume`)."""
    session = _holder.session
    return session.active_step if session is not None else 0


def _activate(session: _Session | None) -> None:
    """Install (or, with None, remove) the recording session; called by repro's training process."""
    _holder.session = session


__all__ = ["DEFAULT_SEED", "ResumePoint", "active", "checkpoint", "current_step", "data", "resume", "seed",
           "seed_everything", "step", "stopping", "validation"]
