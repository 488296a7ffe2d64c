"""Rerunning a recorded configuration through the same launcher and trainer plugin as ``repro run``.

The trainer is looked up by the name the manifest records and given the recorded config,
unchanged: in particular ``steps`` stays as recorded so that schedules (warm-up, cosine decay)
are the same, and a shorter audit stops the loop early (``Job.stop_after``). Only the run
settings an auditor may choose (device, threads) can differ; the config digest then differs from
the recorded one, which is expected and reported, not an error.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from repro.config import ResolvedRun
from repro.errors import ArtifactMismatchError, DeviceUnavailableError, TrainerError, TrainerNotFoundError
from repro.job import JobResult
from repro.launcher import EventHandler, launch
from repro.manifest import CheckpointRecord, LoadedManifest, RunManifest
from repro.registry import resolve_trainer
from repro.run import build_job


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


def plan(manifest: RunManifest, device: str | None, threads: int | None, precision: str | None = None,
         compile: bool | None = None) -> ResolvedRun:
    """The recorded run as the installed trainer reads it, with the auditor's device and threads.

    Raises :class:`TrainerNotFoundError` when the trainer is not installed,
    :class:`TrainerError` when it cannot read the recorded config, and
    :class:`DeviceUnavailableError` when the device is not here.
    """
    recorded = manifest.run
    name = recorded.trainer.name
    try:
        ref, cls = resolve_trainer(name)
    except TrainerNotFoundError as first:
        if name == recorded.trainer.entry:
            raise
        try:  # the recorded import reference may still work where the entry point is not installed
            ref, cls = resolve_trainer(recorded.trainer.entry)
        except TrainerNotFoundError as exc:
            raise TrainerNotFoundError(
                f"the run was made with trainer {name!r} ({recorded.trainer.entry}), which is not "
                f"installed here; install {recorded.trainer.distribution or 'it'} "
                f"{recorded.trainer.version} to audit the run ({first})"
            ) from exc
    try:
        config = cls.config_model.model_validate(recorded.config)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TrainerError(
            f"trainer {ref.name} {ref.version} cannot read the recorded config "
            f"({'.'.join(map(str, first['loc']))}: {first['msg']}); install the recorded version "
            f"{recorded.trainer.version}"
        ) from exc
    settings = recorded.settings.model_copy(update={
        k: v for k, v in {"device": device, "threads": threads, "precision": precision, "compile": compile}.items()
        if v is not None
    })
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
def work_folder(keep: Path | None) -> Iterator[Path]:
    """Where reruns write: ``keep`` (left in place) or a temporary folder removed afterwards."""
    if keep is not None:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
        return
    folder = Path(tempfile.mkdtemp(prefix="repro-audit-"))
    try:
        yield folder
    except TrainerError:
        # The error names the training log inside this folder: leave the log for the user.
        for ckpt in folder.glob("*/checkpoints"):
            shutil.rmtree(ckpt, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)


def rerun(
    resolved: ResolvedRun, loaded: LoadedManifest, folder: Path, start: CheckpointRecord | None,
    stop: int, on_event: EventHandler | None = None,
) -> Rerun:
    """Train from ``start`` (a recorded checkpoint, hash-verified; None: from scratch) to ``stop``."""
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / ".job"
    scratch.mkdir(exist_ok=True)
    overrides: dict[str, object] = {"stop_after": stop}
    if start is not None:
        overrides["start_checkpoint"] = str(loaded.folder / start.path)
        overrides["start_checkpoint_sha256"] = start.sha256
    job = build_job(resolved, folder, scratch, **overrides)
    began = time.perf_counter()
    result = launch(job, scratch / "job.json", folder / "train.log", on_event)
    seconds = time.perf_counter() - began
    expected_start = start.step if start is not None else 0
    if result.start_step != expected_start:
        raise ArtifactMismatchError(
            f"the rerun started at step {result.start_step}, not at the checkpoint's step {expected_start}: "
            f"the records beside {start.path if start else 'the checkpoint'} do not match the manifest"
        )
    return Rerun(result=result, folder=folder, seconds=seconds)
