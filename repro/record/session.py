""":mod:`repro.record` inside ``repro run``: the calls of the user's script, turned into records.

The training process (:mod:`repro.running.command_job`) installs a :class:`Session` and runs the
script; each call lands here and goes to the same :class:`~repro.running.recording.RunRecorder` a
plugin's loop reports to, so a command run's steps, checkpoints and result are a plugin run's.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repro.errors import InputError, TrainerError
from repro.record import ResumePoint, seed_everything
from repro.records.hashing import sha256_tensor
from repro.records.manifest import DataSource, StepRecord
from repro.running import distributed as dist
from repro.running import faults
from repro.running.job import Job
from repro.running.recording import RunRecorder
from repro.trainer_api import DataSummary, VerifiedData, batch_fingerprint

NO_BATCH = batch_fingerprint("repro.record: no batch reported")
"""The fingerprint recorded for a step whose batch was not given (the same every step)."""


class StopRun(BaseException):
    """Raised by :func:`repro.record.step` past the last step an audit asked for; the training
    process ends the script there (a BaseException, so a script's ``except Exception`` passes it)."""


def _number(what: str, value: Any, step: int, default: float | None = None) -> float:
    if value is None:
        if default is None:
            raise TrainerError(f"repro.record.step: {what} is required (step {step})")
        return default
    try:
        number = float(value.detach().float().item() if hasattr(value, "detach") else value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TrainerError(f"repro.record: {what} at step {step} is not a number ({exc})") from exc
    if not math.isfinite(number):
        raise TrainerError(f"repro.record: the command reported a non-finite {what} ({number}) at step {step}")
    return number


def state_tensors(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` (names to tensors, modules, optimizers, schedulers, generators) as named tensors."""
    import torch

    from repro.torch_state import generator_state_tensor, state_dict_tensors

    out: dict[str, Any] = {}
    for name, value in state.items():
        if not isinstance(name, str) or not name or name.startswith("repro."):
            raise TrainerError(f"repro.record.checkpoint: name {name!r} is not allowed (a non-empty string, "
                               "not starting with repro.)")
        if isinstance(value, torch.Tensor):
            out[name] = value.detach().clone()
        elif isinstance(value, torch.Generator):
            out[name] = generator_state_tensor(value)
        elif isinstance(value, torch.nn.Module):
            out.update({f"{name}.{k}": v.detach().clone() for k, v in value.state_dict().items()
                        if isinstance(v, torch.Tensor)})
        elif callable(getattr(value, "state_dict", None)):
            try:
                out.update(state_dict_tensors(value.state_dict(), f"{name}."))
            except TypeError as exc:
                raise TrainerError(f"repro.record.checkpoint: {name!r}: {exc}") from exc
        else:
            raise TrainerError(
                f"repro.record.checkpoint: {name!r} is a {type(value).__name__}; give tensors, modules, "
                "optimizers, schedulers (anything with state_dict()) or torch.Generators"
            )
    return out


def load_state(state: Mapping[str, Any], tensors: Mapping[str, Any]) -> None:
    """Load ``tensors`` (from :func:`state_tensors`) back into the objects of ``state``, in place."""
    import torch

    from repro.torch_state import load_generator_state_tensor, load_state_dict_tensors

    for name, value in state.items():
        try:
            if isinstance(value, torch.Tensor):
                with torch.no_grad():
                    value.copy_(tensors[name])
            elif isinstance(value, torch.Generator):
                load_generator_state_tensor(value, tensors[name])
            elif isinstance(value, torch.nn.Module):
                head = f"{name}."
                value.load_state_dict({k[len(head):]: v for k, v in tensors.items() if k.startswith(head)})
            else:
                value.load_state_dict(load_state_dict_tensors(tensors, f"{name}."))
        except (KeyError, RuntimeError, ValueError) as exc:
            raise TrainerError(
                f"repro.record.resume: cannot load {name!r} from the checkpoint ({type(exc).__name__}: {exc}); "
                "give resume() the same mapping as checkpoint()"
            ) from exc


class Session:
    """One command's recording in its training process."""

    def __init__(self, job: Job, recorder: RunRecorder, info: dist.RankInfo | None) -> None:
        self.job, self.recorder, self.info = job, recorder, info
        self.count = 0
        self.resumed = False
        self.last_checkpoint = 0
        self.files: list[Path] = []
        self.typed: list[str] = []
        self.timer = time.perf_counter()
        self.inside = 0.0  # seconds spent in repro's own calls since the last step

    @property
    def active_step(self) -> int:
        return self.count

    def seed(self) -> int:
        seed_everything(self.job.settings.seed)
        return self.job.settings.seed

    def data(self, paths: list[Path]) -> None:
        verified = self.job.verified_data
        for path in paths:
            if verified is not None:  # an audit: the script must read the files the audit verified
                VerifiedData(source=verified.source, root=Path(verified.root) if verified.root else None,
                             files=tuple(verified.files)).check_config_path(str(path), "repro.record.data file")
            resolved = path.expanduser().resolve()
            if not resolved.is_file():
                raise InputError(f"repro.record.data: {path} is not a file (the command runs in {Path.cwd()})")
            if resolved not in self.files:
                self.files.append(resolved)
                self.typed.append(str(path))

    def summary(self) -> DataSummary:
        """The data identity: the declared files (relative to their common folder), or none."""
        if not self.files:
            return DataSummary(source=DataSource(kind="generated", name="command (no files declared)"), files=[],
                               corpus_sha256=batch_fingerprint(b"") * 4, train_tokens=0, val_tokens=0)
        root = Path(os.path.commonpath([str(f.parent) for f in self.files]))
        return DataSummary.from_files(root, [f.relative_to(root) for f in self.files], train_tokens=0, val_tokens=0)

    def step(self, loss: Any, lr: Any, grad_norm: Any, tokens: Any, batch: Any) -> None:
        if self.job.start_checkpoint and not self.resumed:
            raise TrainerError(
                "the run was asked to continue from a checkpoint (--resume, or an audit's spot-check), but the "
                "command reported a step without calling repro.record.resume() first; call it before the loop "
                "and continue after the step it returns (docs/record.md)"
            )
        n = self.count + 1
        if self.job.stop_after is not None and n > self.job.stop_after:
            raise StopRun
        now = time.perf_counter()
        seconds = max(now - self.timer - self.inside, 0.0)
        self.timer, self.inside = now, 0.0
        try:
            count = 0 if tokens is None else int(tokens)
        except (TypeError, ValueError) as exc:
            raise TrainerError(f"repro.record: tokens at step {n} is not an integer ({exc})") from exc
        record = StepRecord(
            step=n, loss=_number("loss", loss, n), lr=_number("lr", lr, n, 0.0),
            grad_norm=_number("grad_norm", grad_norm, n, 0.0), tokens=count,
            batch=NO_BATCH if batch is None else batch_fingerprint(batch),
        )
        self.recorder.step(record, seconds)
        self.count = n
        faults.after_step(self.info, n)

    def validation(self, loss: Any) -> None:
        if self.count == 0:
            raise TrainerError("repro.record.validation was called before the first step() (or resume())")
        began = time.perf_counter()
        value = _number("validation loss", loss, self.count)
        if any(v.step == self.count for v in self.recorder.validation):
            raise TrainerError(f"repro.record.validation: step {self.count} already has a validation loss")
        self.recorder.validate(self.count, value, 0.0)
        self.inside += time.perf_counter() - began

    def checkpoint(self, state: Mapping[str, Any]) -> None:
        if self.count == 0 or self.count <= self.last_checkpoint or not self.job.write_checkpoints:
            return  # nothing new since the last one (or the start): nothing to save
        began = time.perf_counter()
        self.recorder.checkpoint(self.count, state_tensors(state))
        self.last_checkpoint = self.count
        self.inside += time.perf_counter() - began

    def resume(self, state: Mapping[str, Any] | None) -> ResumePoint | None:
        from repro.running.determinism import load_rng_state_tensors

        start = self.recorder.start
        if not self.job.start_checkpoint:
            return None
        own = {k: v for k, v in start.state.items() if not k.startswith("repro.rng.")}
        if not self.resumed and state is not None:
            load_state(state, own)
            restored = state_tensors(state)
            for name in sorted(own):
                if name not in restored or sha256_tensor(restored[name]) != sha256_tensor(own[name]):
                    raise TrainerError(
                        f"repro.record.resume: {name!r} differs from the checkpoint after loading it; "
                        "give resume() the same mapping as checkpoint()"
                    )
        if not self.resumed:
            load_rng_state_tensors(start.state)
            self.count = self.last_checkpoint = start.step
            self.resumed = True
            self.timer, self.inside = time.perf_counter(), 0.0
        return ResumePoint(step=start.step, tensors=own)

    def stopping(self) -> bool:
        return self.job.stop_after is not None and self.count >= self.job.stop_after
