"""A run's per-step records in memory: one record (:class:`StepRecord`), the columns
(:class:`StepColumns`, NumPy arrays the hot paths use) and a read-only ``Sequence[StepRecord]`` over
them (:class:`StepView`). No file is read or written here: the file format is
:mod:`repro.records.steptable`, and loading a manifest's table is an explicit step of reading or
verifying it (:func:`repro.records.manifest_file.load_step_table`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import numpy.typing as npt
from pydantic import Field

from repro.records.base import FrozenRecord


class StepRecord(FrozenRecord):
    """One optimizer step. ``loss`` is the exact float32 value (float64 repr round-trips it).

    Since schema version 2 a manifest keeps these in its step table (:mod:`repro.records.steptable`);
    :attr:`repro.records.manifest.RunManifest.steps` makes them on demand.
    """

    step: int = Field(ge=1)
    loss: float
    lr: float
    grad_norm: float
    tokens: int
    batch: str = Field(description="Fingerprint of the step's input batch (data-order check).")


Array = npt.NDArray[Any]


@dataclass(frozen=True, eq=False)
class StepColumns:
    """Per-step records as parallel NumPy arrays (one row per step, in step order).

    ``batch`` holds the fingerprints as fixed-width byte strings (dtype ``S<width>``), so they
    compare in bulk; ``seconds`` is None where step times are not known (a rerun's steps).
    """

    step: Array
    loss: Array
    lr: Array
    grad_norm: Array
    tokens: Array
    batch: Array
    seconds: Array | None = None

    def __len__(self) -> int:
        return int(self.step.shape[0])

    @classmethod
    def from_records(cls, records: Iterable[StepRecord], seconds: Sequence[float] | None = None) -> StepColumns:
        """Columns of ``records`` (and, if given, the per-step seconds, one per record)."""
        rows = list(records)
        batch = np.array([r.batch.encode("utf-8") for r in rows], dtype=bytes) if rows else np.zeros(0, "S16")
        columns = cls(
            step=np.array([r.step for r in rows], dtype=np.int64),
            loss=np.array([r.loss for r in rows], dtype=np.float64),
            lr=np.array([r.lr for r in rows], dtype=np.float64),
            grad_norm=np.array([r.grad_norm for r in rows], dtype=np.float64),
            tokens=np.array([r.tokens for r in rows], dtype=np.int64),
            batch=batch,
            seconds=None if seconds is None else np.array(list(seconds), dtype=np.float64),
        )
        if columns.seconds is not None and len(columns.seconds) != len(rows):
            raise ValueError(f"{len(columns.seconds)} step times for {len(rows)} steps")
        return columns

    def record(self, index: int) -> StepRecord:
        """The record of row ``index``."""
        return StepRecord.model_construct(
            step=int(self.step[index]), loss=float(self.loss[index]), lr=float(self.lr[index]),
            grad_norm=float(self.grad_norm[index]), tokens=int(self.tokens[index]),
            batch=bytes(self.batch[index]).decode("utf-8"),
        )

    def take(self, rows: slice | Array) -> StepColumns:
        """The rows selected by a slice, index array or boolean mask."""
        return StepColumns(
            step=self.step[rows], loss=self.loss[rows], lr=self.lr[rows], grad_norm=self.grad_norm[rows],
            tokens=self.tokens[rows], batch=self.batch[rows],
            seconds=None if self.seconds is None else self.seconds[rows],
        )


class StepView(Sequence[StepRecord]):
    """A read-only ``Sequence[StepRecord]`` over :class:`StepColumns`; records are made on demand."""

    __slots__ = ("columns",)

    def __init__(self, columns: StepColumns) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns)

    @overload
    def __getitem__(self, index: int) -> StepRecord: ...

    @overload
    def __getitem__(self, index: slice) -> StepView: ...

    def __getitem__(self, index: int | slice) -> StepRecord | StepView:
        if isinstance(index, slice):
            return StepView(self.columns.take(index))
        n = len(self)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError("step index out of range")
        return self.columns.record(i)

    def __iter__(self) -> Iterator[StepRecord]:
        for i in range(len(self)):
            yield self.columns.record(i)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # equal to lists, so not hashable

    def __repr__(self) -> str:
        return f"StepView({len(self)} steps)"


