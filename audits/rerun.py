"""Rerunning a recorded configuration through the same launcher and trainer plugin as ``repro run``.

The trainer is looked up by the name the manifest records and given the recorded config,
unchanged: in particular ``steps`` stays as recorded so that schedules (warm-up, cosine decay)
are the same, and a shorter audit stops the loop early (``Job.stop_after``). Only the run
settings an auditor may choose (device, threads) can differ; the config digest then differs from
the recorded one, which is expected and reported, not an error.

A manifest is someone else's input, so nothing in it decides on its own what code runs or what
is read (docs/security.md, "Auditing a stranger's manifest"): the trainer is an installed entry
point of the recorded name, the one the user names (``--trainer``), or, only for a manifest
signed by a key on the user's trust list, the recorded ``package.module:Class``; and the rerun
is handed the verified data location (:class:`~repro.running.job.VerifiedDataSpec`), never a path from
the config.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from pydantic import ValidationError

from repro.errors import (
    ArtifactMismatchError,
    DeviceUnavailableError,
    ReproError,
    TrainerError,
    TrainerNotFoundError,
    UnverifiedCodeError,
    UsageError,
)
from repro.files import atomic
from repro.records.checkpoint import CheckpointRecords
from repro.records.manifest import CheckpointRecord, RunManifest, TrainerRef
from repro.records.manifest_file import LoadedManifest
from repro.records.validation import first_problem
from repro.running.command import CommandConfig, CommandTrainer, command_ref, is_command, parse_command
from repro.running.config import ResolvedRun
from repro.running.job import JobResult, VerifiedDataSpec
from repro.running.launcher import EventHandler, launch
from repro.running.registry import installed_trainers, resolve_trainer
from repro.running.run import build_job, check_distributed
from repro.trainer_api import Trainer, import_reference_fields
from repro.trust.data_location import data_source_root


@dataclass(frozen=True)
class Rerun:
    """One finished training child: its result, where it wrote, and how long it took."""

    result: JobResult
    folder: Path
    seconds: float

    def checkpoint(self, step: int) -> tuple[Path, dict[str, str]] | None:
        """The state file and tensor digests of the rerun's checkpoint after ``step``, if made."""
        saved = next((c for c in self.result.checkpoints if c.step == step), None)
        return (Path(saved.path), saved.tensors) if saved is not None else None


def _provider(trainer: TrainerRef, trusted: bool = True) -> str:
    """What to install for a recorded trainer, in words. For an unverified signer the recorded
    distribution name is not advice (it could name a typo-squatted package): it is quoted as the
    manifest's claim, to be checked before anything is installed."""
    if not trusted:
        claim = f"distribution {trainer.distribution[:100]!r} {trainer.version[:40]!r}" if trainer.distribution \
            else f"no distribution (entry {trainer.entry[:100]!r})"
        return (f"the trainer's code (the manifest, from a signer not on a trust list, claims {claim}; "
                "check what that is before installing anything)")
    if trainer.distribution:
        return f"{trainer.distribution} {trainer.version}"
    return f"the code that provides {trainer.entry} (version {trainer.version})"


def _recorded_trainer(manifest: RunManifest, trusted: bool) -> tuple[TrainerRef, type[Trainer]]:
    """The recorded trainer, found without importing anything the manifest alone names."""
    recorded = manifest.run.trainer
    name = recorded.name
    if name in installed_trainers():
        return resolve_trainer(name)
    if not trusted:
        raise UnverifiedCodeError(
            f"the run was made with trainer {name!r} ({recorded.entry}), which is not installed here as a "
            f"repro.trainers entry point, and repro does not import a module that an unverified signer's "
            f"manifest names; install {_provider(recorded, trusted=False)}, or pass --trainer "
            f"{recorded.entry} (or --allow-imports) if you trust that code, or --trusted-keys listing the signer"
        )
    try:  # a trusted signer's recorded import reference may work where no entry point is installed
        return resolve_trainer(recorded.entry)
    except TrainerNotFoundError as exc:
        raise TrainerNotFoundError(
            f"the run was made with trainer {name!r} ({recorded.entry}), which is not installed here; "
            f"install {_provider(recorded)} to audit the run ({exc})"
        ) from exc


def check_command_consent(command: list[str], signer_trusted: bool, allow_command: str | None) -> None:
    """Refuse to rerun a recorded command unless its signer is trusted or the user named it.

    A manifest is someone else's input: its command line runs whatever it says. The rule is the
    one for imports (docs/security.md): a signer on the trust list (or the local key), or an
    explicit ``--allow-command`` naming exactly the recorded command.
    """
    if signer_trusted:
        return
    recorded = shlex.join(command)
    if allow_command is None:
        raise UnverifiedCodeError(
            f"the run is a recorded command ({recorded}), and repro does not run a command that an unverified "
            f"signer's manifest names; pass --allow-command {shlex.quote(recorded)} if you trust it, or "
            "--trusted-keys listing the signer"
        )
    try:
        given = shlex.split(allow_command)
    except ValueError as exc:
        raise UsageError(f"--allow-command {allow_command!r} is not a command line ({exc})") from exc
    if given != command:
        raise UsageError(
            f"--allow-command names {shlex.join(given)}, but the manifest records {recorded}; name exactly the "
            "recorded command to run it"
        )


def _command_plan(manifest: RunManifest, signer_trusted: bool, allow_command: str | None
                  ) -> tuple[TrainerRef, type[Trainer]]:
    """The command trainer, for a recorded command the user consented to."""
    config = CommandConfig.model_validate(manifest.run.config)
    check_command_consent(config.command, signer_trusted, allow_command)
    parse_command(config.command)
    return command_ref(), cast("type[Trainer]", CommandTrainer)


def plan(manifest: RunManifest, device: str | None, threads: int | None, *, nproc: int | None = None,
         trainer: str | None = None, trusted: bool = False, precision: str | None = None,
         compile: bool | None = None, signer_trusted: bool | None = None,
         allow_command: str | None = None) -> ResolvedRun:
    """The recorded run as the installed trainer reads it, with the auditor's device and threads.

    A rerun happens on this one node: by default with as many processes as the recorded world
    size (2 nodes x 4 processes rerun as 8 processes here), or ``nproc`` if given.
    ``trainer`` is the user's choice (``--trainer``); otherwise the recorded name must be an
    installed entry point, or, when ``trusted`` (the signer is on the user's trust list, or
    ``--allow-imports``), the recorded import reference is imported. Config fields that name
    modules to import (:data:`~repro.trainer_api.IMPORT_REFERENCE`) need ``trusted`` too.
    Raises :class:`UnverifiedCodeError` (exit 4) when the manifest names code the user did not allow,
    :class:`TrainerNotFoundError` when no allowed trainer is found, :class:`TrainerError`
    when it cannot read the recorded config, and :class:`DeviceUnavailableError` when the device
    is not here.
    """
    recorded = manifest.run
    if trainer is None and is_command(recorded.trainer):
        # A command's consent is the signer's trust or --allow-command, not --allow-imports.
        ref, cls = _command_plan(manifest, trusted if signer_trusted is None else signer_trusted, allow_command)
    else:
        ref, cls = resolve_trainer(trainer) if trainer is not None else _recorded_trainer(manifest, trusted)
    try:
        config = cls.config_model.model_validate(recorded.config)
    except ValidationError as exc:
        loc, message = first_problem(exc)
        raise TrainerError(
            f"trainer {ref.name} {ref.version} cannot read the recorded config "
            f"({loc}: {message}); install the recorded version "
            f"{recorded.trainer.version}"
        ) from exc
    named = import_reference_fields(config)
    if named and not trusted:
        listed = ", ".join(f"{k} {v!r}" for k, v in named.items())
        raise UnverifiedCodeError(
            f"the recorded config names modules to import ({listed}), and repro does not import modules that "
            "an unverified signer's manifest names; pass --allow-imports if you trust that code, or "
            "--trusted-keys listing the signer"
        )
    settings = recorded.settings.model_copy(update={
        k: v for k, v in {"device": device, "threads": threads, "precision": precision, "compile": compile}.items()
        if v is not None
    })
    settings = settings.model_copy(update={"nproc": nproc or settings.world_size, "nnodes": 1})
    if settings.world_size > 1:
        check_distributed(ResolvedRun(trainer=ref, trainer_class=cls, preset=recorded.preset,
                                      settings=settings, config=config))
    if settings.device == "cuda":
        check_cuda()
    return ResolvedRun(trainer=ref, trainer_class=cls, preset=recorded.preset, settings=settings, config=config)


def check_cuda() -> None:
    """Raise :class:`DeviceUnavailableError` unless a CUDA device is usable here (before compute)."""
    import torch

    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            "the audit needs a CUDA device (recorded on cuda, or --device cuda) but none is "
            "available here; audit on the CPU with --device cpu (a tolerance verdict is expected)"
        )


@contextmanager
def work_folder(keep: Path | None, failure_log: Path | None = None) -> Iterator[Path]:
    """Where reruns write: ``keep`` (left in place) or a temporary folder that is always removed.

    A failed rerun's error names its training log; when that log is in the temporary folder it is
    copied to ``failure_log`` (if given) and the message is pointed there, else the message says
    how to keep it (``--work-dir``). The folder and the cache under it are private (0700).
    """
    if keep is not None:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
        return
    folder = Path(tempfile.mkdtemp(prefix="repro-audit-"))  # mkdtemp: mode 0700
    try:
        yield folder
    except ReproError as exc:
        message = _relocate_log(str(exc), folder, failure_log)
        shutil.rmtree(folder, ignore_errors=True)
        if message == str(exc):
            raise
        raise type(exc)(message) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _relocate_log(message: str, folder: Path, failure_log: Path | None) -> str:
    """``message`` with a training log inside ``folder`` replaced by where it is kept now."""
    match = re.search(re.escape(str(folder)) + r"/\S*train\.log", message)
    if match is None:
        return message
    log = Path(match.group(0))
    if failure_log is not None and log.is_file():
        try:
            atomic.write_bytes(failure_log, log.read_bytes(), mode=0o600)
            return message.replace(match.group(0), str(failure_log))
        except (OSError, ReproError):
            pass  # the failure is what gets reported; say the log is gone
    return message.replace(match.group(0), "the training log was removed with the temporary folder; "
                                           "repro audit --work-dir DIR keeps it")


def verified_data(loaded: LoadedManifest) -> VerifiedDataSpec:
    """The data the integrity check verified, as the rerun must read it: the source's folder here
    and the recorded file names, in the recorded order (nothing from the config)."""
    data = loaded.manifest.data
    root = data_source_root(data.source, loaded.path, files=[f.path for f in data.files], override=loaded.data_path)
    return VerifiedDataSpec(source=data.source, root=str(root) if root is not None else None,
                            files=[f.path for f in data.files])


def signed_records(manifest: RunManifest, step: int) -> CheckpointRecords:
    """The records up to ``step`` as a checkpoint's records.json would hold them, from signed data."""
    seconds = manifest.timing.step_seconds
    return CheckpointRecords(
        step=step, config_sha256=manifest.run.config_sha256, steps=list(manifest.steps[:step]),
        validation=[v for v in manifest.validation if v.step <= step], step_seconds=seconds[:step],
        world_size=manifest.run.settings.world_size,
    )


def rerun(
    resolved: ResolvedRun, loaded: LoadedManifest, folder: Path, start: CheckpointRecord | None,
    stop: int, *, on_event: EventHandler | None = None, extra_env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Rerun:
    """Train from ``start`` (a recorded checkpoint, hash-verified; None: from scratch) to ``stop``."""
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / ".job"
    scratch.mkdir(exist_ok=True)
    overrides: dict[str, object] = {"stop_after": stop, "verified_data": verified_data(loaded)}
    if start is not None:
        overrides["start_checkpoint"] = str(loaded.folder / start.path)
        overrides["start_checkpoint_sha256"] = start.sha256
        # The records up to the checkpoint come from the verified manifest: the records.json
        # beside it is not signed and is never read in an audit.
        overrides["start_records"] = signed_records(loaded.manifest, start.step)
    job = build_job(resolved, folder, scratch, **overrides)
    began = time.perf_counter()
    result = launch(job, scratch / "job.json", folder / "train.log", on_event, extra_env=extra_env, cwd=cwd)
    seconds = time.perf_counter() - began
    expected_start = start.step if start is not None else 0
    if result.start_step != expected_start:
        raise ArtifactMismatchError(
            f"the rerun started at step {result.start_step}, not at the checkpoint's step {expected_start}: "
            f"the records beside {start.path if start else 'the checkpoint'} do not match the manifest"
        )
    return Rerun(result=result, folder=folder, seconds=seconds)


def rerun_segments(
    resolved: ResolvedRun, loaded: LoadedManifest, folder: Path,
    segments: list[tuple[CheckpointRecord | None, int]], *, on_event: EventHandler | None = None,
) -> Rerun:
    """Replay several segments in ONE training process (one start-up, one data preparation).

    Each ``(start, stop)`` resumes the recorded checkpoint ``start`` (hash-verified; None: from
    scratch, only for the first) and trains to ``stop``, saving the checkpoint there; then the
    next segment's start is loaded into the same trainer. The result holds every segment's
    steps, validation and checkpoints, which are compared like a single rerun's.
    """
    from repro.running.job import SpanJob

    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / ".job"
    scratch.mkdir(exist_ok=True)
    # The records up to each checkpoint come from the verified manifest, as for a single segment.
    spans = [SpanJob(start_checkpoint=str(loaded.folder / start.path) if start is not None else None,
                     start_checkpoint_sha256=start.sha256 if start is not None else None,
                     start_records=signed_records(loaded.manifest, start.step) if start is not None else None,
                     stop=stop)
             for start, stop in segments]
    job = build_job(resolved, folder, scratch, spans=spans, verified_data=verified_data(loaded))
    began = time.perf_counter()
    result = launch(job, scratch / "job.json", folder / "train.log", on_event)
    seconds = time.perf_counter() - began
    expected = [start.step if start is not None else 0 for start, _ in segments]
    if result.span_starts != expected:
        raise ArtifactMismatchError(
            f"the rerun's segments started at steps {result.span_starts}, not at their checkpoints' steps "
            f"{expected}: the records beside a checkpoint do not match the manifest"
        )
    return Rerun(result=result, folder=folder, seconds=seconds)
