"""Small helpers the framework callbacks share: how many items a batch holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def batch_items(batch: Any) -> int:
    """Items in a batch: the element count of its inputs (``input_ids``, or the first tensor found)."""
    if isinstance(batch, Mapping):
        first = batch.get("input_ids", next(iter(batch.values()), None))
        return batch_items(first)
    if isinstance(batch, (list, tuple)):
        return batch_items(batch[0]) if batch else 0
    numel = getattr(batch, "numel", None)
    return int(numel()) if callable(numel) else 0


def grad_norm(parameters: Any) -> float:
    """Total L2 norm of the gradients (before clipping), as :func:`repro.torch_state.grad_norm`."""
    from repro.torch_state import grad_norm as norm

    return norm(parameters)
