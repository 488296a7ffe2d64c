"""The trainer plugin interface: what a trainer provides, and what repro gives it.

A trainer is a class registered under the ``repro.trainers`` entry-point group (or named as
``package.module:Class``). repro owns the loop: it seeds every global random source, applies the
determinism settings, calls :meth:`Trainer.train_step` once per step, :meth:`Trainer.validate` at
intervals, and saves and restores :meth:`Trainer.state_tensors` as checkpoints (adding the global
RNG states itself). The trainer owns its model, optimizer, data and any dedicated generators.

This module and :mod:`repro.torch_state` (flattening optimizer, scheduler and generator state into
tensors) are the public plugin API; importing this one does not import torch. See
``docs/plugins.md`` for a worked example.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import Field

from repro.errors import DataConfigMismatchError, InputError
from repro.files.confine import open_regular
from repro.records.base import FrozenRecord
from repro.records.hashing import sha256_structure
from repro.records.manifest import DataSource, FileDigest, RunSettings

if TYPE_CHECKING:
    import torch


class TrainerConfig(FrozenRecord):
    """Base of every trainer's config model. ``steps`` is the planned length of the run.

    An audit of the first N steps still builds the config with the recorded ``steps`` so that
    schedules (e.g. cosine decay) are identical; repro stops the loop early instead.
    """

    steps: int = Field(ge=1, description="Optimizer steps in the full run.")


@dataclass(frozen=True)
class StepOutput:
    """What one training step reports. Every number must be finite (repro checks)."""

    loss: float
    """The training loss of this step's batch, before the optimizer step."""
    lr: float
    """The learning rate the optimizer step used."""
    grad_norm: float
    """Total L2 norm of the gradients (before clipping); :func:`repro.torch_state.grad_norm`."""
    tokens: int
    """Items this step consumed: tokens for a language model, examples otherwise."""
    batch: str
    """Fingerprint of the input batch (:func:`batch_fingerprint`); an audit uses it to tell
    data-order drift from numeric drift."""


def batch_fingerprint(batch: Any) -> str:
    """A short fingerprint (16 hex digits) of a batch: tensors, arrays, numbers, and nested
    tuples, lists and dicts of them. dtype and shape count, so equal bytes of another type differ."""
    return sha256_structure(batch)[:16]


@dataclass(frozen=True, kw_only=True)
class DataSummary:
    """Identity of the data a trainer prepared; recorded in the manifest's ``data`` section.

    Build it with :meth:`from_files` when the data comes from files (repro's ``verify`` and
    ``audit`` then check every file before any compute), or with :meth:`generated` when the
    trainer makes its data from the seed. ``train_tokens`` and ``val_tokens`` count whatever the
    trainer's unit is: tokens for a language model, examples otherwise.
    """

    source: DataSource
    files: list[FileDigest]
    """Input files relative to the source's root (a ``path`` source's folder, or a distribution's
    install root), in the order their bytes make up ``corpus_sha256``."""
    corpus_sha256: str
    """SHA-256 of the files' bytes concatenated in ``files`` order (a generated source: of the data)."""
    train_tokens: int
    val_tokens: int
    tokenizer_file: Path | None = None
    """A tokenizer written under :attr:`TrainerContext.artifact_dir` (hashed by repro), or None."""
    token_stream_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else that identifies the data (JSON values): shapes, vocabulary, preprocessing."""

    @classmethod
    def from_files(
        cls,
        root: Path,
        paths: Iterable[str | Path],
        *,
        train_tokens: int,
        val_tokens: int,
        source: DataSource | None = None,
        **fields: Any,
    ) -> DataSummary:
        """Hash input files the way ``repro verify`` checks them.

        ``paths`` are relative to ``root`` (or absolute inside it), hashed in the order given.
        ``source`` defaults to ``DataSource(kind="path", name=<root, absolute>)``; pass a
        ``distribution`` source for files shipped in an installed package.
        """
        root = Path(root).expanduser().resolve()
        names = [_relative_name(root, Path(p)) for p in paths]
        corpus = hashlib.sha256()
        digests = []
        for name in names:  # one pass over each file feeds both its digest and the corpus digest
            path, own, size = root / name, hashlib.sha256(), 0
            try:
                with open_regular(path, "data file") as handle:  # a FIFO or device: refused, never waited on
                    while chunk := handle.read(1 << 20):
                        own.update(chunk)
                        corpus.update(chunk)
                        size += len(chunk)
            except OSError as exc:
                raise InputError(f"cannot read data file {path}: {exc.strerror}; check the path") from exc
            digests.append(FileDigest(path=name, sha256=own.hexdigest(), size=size))
        return cls(
            source=source or DataSource(kind="path", name=str(root)), files=digests,
            corpus_sha256=corpus.hexdigest(), train_tokens=train_tokens, val_tokens=val_tokens, **fields,
        )

    @classmethod
    def generated(
        cls, name: str, data: Any, *, train_tokens: int, val_tokens: int, **fields: Any
    ) -> DataSummary:
        """Data the trainer makes itself (e.g. from the seed): its identity is a digest of ``data``.

        ``name`` says what made it (e.g. ``"mypkg:make_blobs"``); ``data`` is the generated
        tensors (anything :func:`batch_fingerprint` accepts). Nothing can be checked on disk; an
        audit's rerun regenerates the data and compares the digest.
        """
        return cls(
            source=DataSource(kind="generated", name=name), files=[],
            corpus_sha256=sha256_structure(data), train_tokens=train_tokens, val_tokens=val_tokens,
            **fields,
        )


def _relative_name(root: Path, path: Path) -> str:
    """``path`` (relative to ``root``, or absolute inside it) as the POSIX name a manifest records."""
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError as exc:
        raise InputError(f"data file {path} is not inside {root}; name files relative to one root") from exc


IMPORT_REFERENCE: dict[str, Any] = {"repro_import": True}
"""``json_schema_extra`` of a config field whose value is a ``package.module:Class`` the trainer
imports (e.g. the Lightning adapter's ``module``). An audit imports such a recorded value only
with the user's say (``--allow-imports``, or a trust list naming the signer)."""


def import_reference_fields(config: TrainerConfig) -> dict[str, str]:
    """The config's fields marked :data:`IMPORT_REFERENCE` that are set, with their values."""
    found = {}
    for name, info in type(config).model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        value = getattr(config, name, None)
        if extra.get("repro_import") and value:
            found[name] = str(value)
    return found


@dataclass(frozen=True)
class VerifiedData:
    """The data an audit verified before its rerun (:attr:`TrainerContext.data`).

    A manifest is someone else's input: its config may name any path on the auditor's machine.
    So in an audit's rerun a trainer that reads files must read exactly :meth:`paths` (the files
    the integrity check hashed, in the recorded order, from the source's folder *here*) and call
    :meth:`check_config_path` with the path its config names, which refuses a config that
    disagrees with the record before anything is read.
    """

    source: DataSource
    root: Path | None
    """The source's folder on this machine; None for generated data."""
    files: tuple[str, ...]
    """Recorded file names relative to ``root``, in the order their bytes make up the corpus."""

    def paths(self) -> list[Path]:
        """``root / name`` for every recorded file; a name that leaves ``root`` is refused."""
        if self.files and self.root is None:
            raise DataConfigMismatchError(
                f"the data record names files but its source ({self.source.kind} {self.source.name}) has no "
                "folder here; the manifest is inconsistent"
            )
        out = []
        for name in self.files:
            parts = PurePosixPath(name).parts
            if not parts or PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name:
                raise DataConfigMismatchError(
                    f"the data record names {name!r}, which is not a path inside its source folder; "
                    "refusing to read it"
                )
            assert self.root is not None
            out.append(self.root / name)
        return out

    def _config_names(self, recorded: str) -> list[tuple[PurePosixPath, Path]]:
        """Paths a config may name for this source, each with where that data is here: the source
        (a folder, or the one file given) and each recorded file, under the recorded name and under
        the folder it was found in here (``--data`` or a clone may have moved it)."""
        source = PurePosixPath(recorded)
        if self.root is None:
            return [(source, Path(recorded))]
        one_file = len(self.files) == 1 and source.name == PurePosixPath(self.files[0]).name
        pairs = [(source, self.root / self.files[0] if one_file else self.root)]
        for name in self.files:
            pairs.append((PurePosixPath(self.root) / name, self.root / name))
            if not one_file:
                pairs.append((source / name, self.root / name))
        return pairs

    def check_config_path(self, configured: str | None, option: str = "data") -> Path | None:
        """Refuse (:class:`DataConfigMismatchError`, exit 3) a config path that is not this source.

        Returns where the configured path's data is on this machine (the source folder, or one of
        its files, as recorded), or None when the config names no path.

        ``configured`` is the path the recorded config names (None: none, e.g. built-in data).
        A path must name the recorded ``path`` source or one of its recorded files: absolute and
        equal to it (for a repository-relative record: ending in it), or relative (as typed at
        ``repro run``, e.g. ``corpus``) without ``..`` and equal to its last parts.
        """
        recorded = self.source.name if self.source.kind == "path" else None
        if configured is None and recorded is None:
            return None
        if configured is not None and recorded is not None:
            typed = PurePosixPath(str(configured))
            if typed.parts[:1] == ("~",):
                typed = PurePosixPath(*typed.parts[1:]) if len(typed.parts) > 1 else PurePosixPath(".")
            for name, here in self._config_names(recorded):
                if typed.is_absolute() and name.is_absolute():
                    match = Path(str(typed)).resolve(strict=False) == Path(name) or typed == name
                elif typed.is_absolute():
                    # A repository-relative record: the config keeps the absolute path the data had
                    # in the recording's checkout, which ends in the recorded relative name.
                    match = typed.parts[-len(name.parts):] == name.parts
                else:
                    tail = [p for p in typed.parts if p != "."]
                    match = ".." not in typed.parts and bool(tail) and list(name.parts[-len(tail):]) == tail
                if match:
                    return here
        where = f"{self.source.kind} {self.source.name}"
        raise DataConfigMismatchError(
            f"the manifest's config names {option} {configured!r}, but its verified data record is {where}: "
            "the two disagree, so the audit refuses to read any data (repro never writes such a manifest)"
        )


@dataclass(frozen=True)
class TrainerContext:
    """What repro hands a trainer: settings, device, and where it may cache and write files."""

    settings: RunSettings
    device: torch.device
    cache_dir: Path
    """Cross-run cache (e.g. tokenizers keyed by content hash)."""
    artifact_dir: Path
    """This run's folder; files written here can be recorded as artifacts."""
    data: VerifiedData | None = None
    """Set in an audit's rerun: the verified data, which a file-reading trainer must read instead
    of any path in its config (see :class:`VerifiedData`). None in ``repro run``."""
    rank: int = 0
    """This process's global rank in a data-parallel run (0 in a single-process run)."""
    local_rank: int = 0
    """This process's rank on its node (selects the GPU on CUDA)."""
    world_size: int = 1
    """Data-parallel processes in all (1 in a single-process run)."""

    @property
    def process_group(self) -> Any:
        """The default ``torch.distributed`` process group repro initialised (``group.WORLD``), or
        None in a single-process run. Pass it to ``DistributedDataParallel`` and collectives."""
        if self.world_size == 1:
            return None
        import torch.distributed as dist

        return dist.group.WORLD

    def generator(self, purpose: str) -> torch.Generator:
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

    # Optional: ``supports_distributed: ClassVar[bool] = True`` when the trainer shards its batches
    # by rank and wraps its model in DistributedDataParallel (docs/plugins.md); without it repro
    # refuses --nproc/--nnodes > 1 before starting any process.
    # Optional: ``version: ClassVar[str]``. The manifest records the version of the distribution
    # that provides the trainer; a class-level ``version`` is used only when no installed
    # distribution does (code on PYTHONPATH run as ``--trainer package.module:Class``).

    @classmethod
    def presets(cls) -> Mapping[str, Mapping[str, Any]]:
        """Named configs (``repro run NAME``); each a mapping validated by ``config_model``. Optional: a
        trainer without it has no presets (``repro run --trainer X`` trains its default config)."""

    def __init__(self, config: TrainerConfig, context: TrainerContext) -> None:
        """Store config and context; do no heavy work yet."""

    def prepare_data(self) -> DataSummary:
        """Load (or generate) the data and return its identity. Called in every training process
        (a run, a resume, an audit's rerun) before :meth:`build`; global RNGs are already seeded."""

    def build(self) -> None:
        """Build model and optimizer on ``context.device``. Global RNGs are already seeded."""

    def train_step(self, step: int) -> StepOutput:
        """Run optimizer step ``step`` (1-based) and report it. Draw batches with a dedicated
        generator (:meth:`TrainerContext.generator`) so that nothing else can change the order."""

    def validate(self) -> float:
        """Loss on a fixed validation set; must not consume training randomness."""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume: model, optimizer, own generators, counters. repro adds
        the global RNG states (Python, NumPy, torch) itself, under ``repro.rng.*``."""

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned (after :meth:`build`, on resume). repro
        then calls :meth:`state_tensors` and fails the run if any tensor differs from the checkpoint."""


REQUIRED_METHODS = (
    "prepare_data",
    "build",
    "train_step",
    "validate",
    "state_tensors",
    "load_state_tensors",
)
