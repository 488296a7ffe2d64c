"""A user's own training command as a run: ``repro run [options] -- python train.py --lr 3e-4``.

The command is recorded as the config of a trainer of kind ``command`` (:class:`CommandConfig`),
so the config digest covers it and a manifest keeps the schema every run has. The training
process (:mod:`repro.running.command_job`) runs the script in itself, in the controlled
environment, under ``torch.distributed.run`` for ``--nproc``/``--nnodes``; the script reports
through :mod:`repro.record`.

Only Python commands can run this way: ``python [-u] SCRIPT.py ARGS``, ``python [-u] -m MODULE
ARGS``, or ``SCRIPT.py ARGS``; ``python`` may be any name of a Python interpreter, and the one
that runs the script is always the interpreter repro runs in (its packages are the recorded ones).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError

from repro import __version__
from repro.errors import UsageError
from repro.records.manifest import RunSettings, TrainerRef
from repro.records.validation import first_problem
from repro.running.job import COMMAND_ENTRY
from repro.trainer_api import TrainerConfig

COMMAND_TRAINER = "command"
"""The trainer name a command run records (its ``entry`` is :data:`~repro.running.job.COMMAND_ENTRY`)."""

_PYTHON = re.compile(r"python(3(\.\d+)?)?(\.exe)?")


class CommandConfig(TrainerConfig):
    """The recorded config of a command run: the command line, as typed after ``--``."""

    command: list[str] = Field(min_length=1, description="The command line after `--` (argv).")
    steps: int = Field(1, ge=1, description=(
        "Optimizer steps the command made (it reports them; filled in when it finishes, so not in the "
        "config digest)."))

    digest_excludes: ClassVar[frozenset[str]] = frozenset({"steps"})
    """Fields left out of the config digest: the length of a command run is known only at its end."""


class CommandTrainer:
    """The trainer class of a command run. repro never calls a plugin's methods for it: the
    training process runs the command (:mod:`repro.running.command_job`)."""

    config_model: ClassVar[type[TrainerConfig]] = CommandConfig
    supports_distributed: ClassVar[bool] = True
    """The script runs under torchrun's variables; DDP is its own (docs/record.md)."""

    @classmethod
    def presets(cls) -> Mapping[str, Mapping[str, Any]]:
        """A command has no presets."""
        return {}


@dataclass(frozen=True)
class ParsedCommand:
    """What the training process runs: a script file or a module, with its ``sys.argv[1:]``."""

    kind: Literal["script", "module"]
    target: str
    args: list[str]


def parse_command(command: list[str]) -> ParsedCommand:
    """Read ``command`` as a Python command line; :class:`UsageError` (exit 2) for anything else."""
    if not command:
        raise UsageError("repro run -- needs a command after `--`, e.g. repro run -- python train.py")
    words = list(command)
    if _PYTHON.fullmatch(PurePath(words[0]).name):
        words = words[1:]
        while words and words[0] == "-u":  # unbuffered output: the log is written as it comes anyway
            words = words[1:]
        if words[:1] == ["-m"]:
            if len(words) < 2:
                raise UsageError("`python -m` needs a module name after it")
            return ParsedCommand("module", words[1], words[2:])
        if not words or words[0].startswith("-"):
            raise UsageError(
                f"repro runs `python SCRIPT.py ARGS` or `python -m MODULE ARGS`; python option "
                f"{words[0] if words else ''!r} is not supported (put it in the script, or in PYTHON* variables)"
            )
        return ParsedCommand("script", words[0], words[1:])
    if words[0].endswith(".py"):
        return ParsedCommand("script", words[0], words[1:])
    if words[0] in {"torchrun"} or PurePath(words[0]).name == "torchrun":
        raise UsageError("do not start torchrun yourself: repro run --nproc N -- python train.py starts it "
                         "(in the controlled environment) and records the world size")
    raise UsageError(
        f"repro can record a Python command (python train.py ..., python -m pkg ..., or train.py ...), "
        f"not {words[0]!r}: the training must run in a Python process repro starts (docs/record.md)"
    )


def command_ref() -> TrainerRef:
    """The manifest's trainer record of a command run."""
    return TrainerRef(name=COMMAND_TRAINER, version=__version__, distribution="repro", entry=COMMAND_ENTRY)


def resolve_command(command: list[str], settings_overrides: Mapping[str, Any],
                    assignments: list[str] | None = None) -> Any:
    """The :class:`~repro.running.config.ResolvedRun` of a command, validated before any compute."""
    from repro.running.config import ResolvedRun, parse_assignment

    parsed = parse_command(command)
    if parsed.kind == "script" and not Path(parsed.target).is_file():  # before any process starts
        raise UsageError(f"the command's script {parsed.target} is not a file here (in {Path.cwd()})")
    values = {k: v for k, v in settings_overrides.items() if v is not None}
    for text in assignments or []:
        key, value = parse_assignment(text)
        if key not in RunSettings.model_fields:
            known = ", ".join(sorted(RunSettings.model_fields))
            raise UsageError(f"--set {key}: a command run takes only run settings (known: {known}); "
                             "pass options to the script itself")
        values[key] = value
    try:
        settings = RunSettings.model_validate(values)
    except ValidationError as exc:
        loc, message = first_problem(exc)
        raise UsageError(f"invalid setting value for {loc!r}: {message}") from exc
    return ResolvedRun(trainer=command_ref(), trainer_class=CommandTrainer, preset=None, settings=settings,
                       config=CommandConfig(command=list(command)))


def is_command(trainer: TrainerRef) -> bool:
    """Whether a recorded trainer is a command run."""
    return trainer.name == COMMAND_TRAINER and trainer.entry == COMMAND_ENTRY
