"""The base of every model repro writes to disk or passes between processes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FrozenRecord(BaseModel):
    """Immutable, and unknown fields are rejected: a file that gained or lost a field does not load.

    Subclasses may add settings (``model_config = ConfigDict(populate_by_name=True)``); pydantic
    merges them with these.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
