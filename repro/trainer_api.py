"""The trainer plugin interface: what a trainer provides, and what repro gives it.

A trainer is a class registered under the ``repro.trainers`` entry-point group (or named as
``package.module:Class``). repro owns the loop: it seeds every global random source, applies the
determinism settings, calls :meth:`Trainer.train_step` once per step, :meth:`Trainer.validate` at
intervals, and saves and restores :meth:`Trainer.state_tensors` as checkpoints (adding the global
RNG states itself). The trainer owns its model, optimizer, data and any dedicated generators.
See ``docs/plugins.md`` for a worked example.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from repro.manifest import DataSource, FileDigest, RunSettings

if TYPE_CHECKING:
    import torch


class TrainerConfig(BaseModel):
    """Base of every trainer's config model. ``steps`` is the planned length of the run.

    An audit of the first N steps still builds the config with the recorded ``steps`` so that
    schedules (e.g. cosine decay) are identical; repro stops the loop early instead.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(ge=1, description="Optimizer steps in the full run.")


@dataclass(frozen=True)
class StepOutput:
    """What one training step reports. ``loss`` must be finite."""

    loss: float
    lr: float
    grad_norm: float
    tokens: int
    batch: str
    """Fingerprint of the input batch, e.g. the first 16 hex digits of its SHA-256."""


@dataclass(frozen=True)
class DataSummary:
    """Identity of the data a trainer prepared; recorded in the manifest's ``data`` section."""

    source: DataSource
    files: list[FileDigest]
    corpus_sha256: str
    tokenizer_file: Path | None
    """A tokenizer written under :attr:`TrainerContext.artifact_dir` (hashed by repro), or None."""
    token_stream_sha256: str | None
    train_tokens: int
    val_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainerContext:
    """What repro hands a trainer: settings, device, and where it may cache and write files."""

    settings: RunSettings
    device: "torch.device"
    cache_dir: Path
    """Cross-run cache (e.g. tokenizers keyed by content hash)."""
    artifact_dir: Path
    """This run's folder; files written here can be recorded as artifacts."""

    def generator(self, purpose: str) -> "torch.Generator":
        """A CPU generator seeded from the run seed and ``purpose``, independent of global RNG."""
        import torch

        digest = hashlib.sha256(f"{self.settings.seed}:{purpose}".encode()).digest()
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int.from_bytes(digest[:8], "little"))
        return gen


@runtime_checkable
class Trainer(Protocol):
    """The contract a trainer plugin implements."""

    config_model: ClassVar[type[TrainerConfig]]
    """The pydantic model of this trainer's config."""

    @classmethod
    def presets(cls) -> Mapping[str, Mapping[str, Any]]:
        """Named configs (``repro run NAME``); each a mapping validated by ``config_model``."""

    def __init__(self, config: TrainerConfig, context: TrainerContext) -> None:
        """Store config and context; do no heavy work yet."""

    def prepare_data(self) -> DataSummary:
        """Load and tokenize data; return its identity. Called before :meth:`build`."""

    def build(self) -> None:
        """Build model and optimizer on ``context.device``. Global RNGs are already seeded."""

    def train_step(self, step: int) -> StepOutput:
        """Run optimizer step ``step`` (1-based) and report it."""

    def validate(self) -> float:
        """Loss on a fixed validation set; must not consume training randomness."""

    def state_tensors(self) -> dict[str, "torch.Tensor"]:
        """Everything needed to resume: model, optimizer, own generators, counters."""

    def load_state_tensors(self, tensors: dict[str, "torch.Tensor"]) -> None:
        """Restore what :meth:`state_tensors` returned."""


REQUIRED_METHODS = (
    "presets",
    "prepare_data",
    "build",
    "train_step",
    "validate",
    "state_tensors",
    "load_state_tensors",
)
