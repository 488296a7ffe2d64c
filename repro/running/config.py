"""Resolving what to run: preset + command-line overrides -> validated settings and config.

Two models are filled: :class:`~repro.records.manifest.RunSettings` (what repro controls for every
trainer) and the trainer's own config model. ``--set key=value`` goes to whichever one has the
field; values are read as JSON when they parse (``--set lr=1e-3``), else as strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from repro.errors import UsageError
from repro.records.canonical import canonical_bytes
from repro.records.hashing import sha256_bytes
from repro.records.manifest import RunSettings, TrainerRef
from repro.records.validation import first_problem
from repro.running.registry import closest, find_preset, resolve_trainer, trainer_presets
from repro.trainer_api import TrainerConfig

DEFAULT_TRAINER = "gpt"


@dataclass(frozen=True)
class ResolvedRun:
    """Everything needed to launch a run, validated."""

    trainer: TrainerRef
    trainer_class: type
    preset: str | None
    settings: RunSettings
    config: TrainerConfig

    @property
    def config_sha256(self) -> str:
        """Digest of the canonical settings + config: what must match for a faithful rerun.

        A config model may leave fields out (``digest_excludes``: a command run's ``steps``, known
        only when it ends)."""
        excluded = set(getattr(type(self.config), "digest_excludes", ()))
        return config_digest(self.settings, self.config.model_dump(mode="json", exclude=excluded))


# Settings added after the first manifests: left out of the digest at their defaults, so the
# digests (and resumable checkpoints) of runs recorded before they existed stay valid.
_LATER_SETTINGS = {"precision": "32", "compile": False}


def config_digest(settings: RunSettings, config: Mapping[str, Any]) -> str:
    """SHA-256 of ``{"settings": ..., "config": ...}`` in canonical JSON.

    The layout of the ranks counts only as the world size (2 nodes x 1 process train exactly as
    1 node x 2 processes), and a single-process run digests as it did before distributed
    training existed; settings added later are left out at their defaults. So digests recorded
    by earlier releases still match.
    """
    dumped = settings.model_dump(mode="json", exclude={"nproc", "nnodes"})
    if settings.world_size != 1:
        dumped["world_size"] = settings.world_size
    for name, default in _LATER_SETTINGS.items():
        if dumped.get(name) == default:
            del dumped[name]
    return sha256_bytes(canonical_bytes({"settings": dumped, "config": dict(config)}))


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse ``key=value``; the value as JSON when it parses, else as a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--set {text!r} must look like key=value")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _one_line(exc: ValidationError, what: str) -> str:
    loc, message = first_problem(exc)
    return f"invalid {what} value for {loc!r}: {message}"


def resolve_run(
    preset: str | None,
    trainer: str | None = None,
    settings_overrides: Mapping[str, Any] | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    assignments: Iterable[str] = (),
) -> ResolvedRun:
    """Resolve a preset (or a trainer's defaults) with overrides into a validated run."""
    preset_config: Mapping[str, Any] = {}
    if preset is not None and trainer is None:
        trainer, preset_config = find_preset(preset)
    ref, cls = resolve_trainer(trainer or DEFAULT_TRAINER)
    if preset is not None and not preset_config:
        presets = trainer_presets(cls)
        if preset not in presets:
            known = ", ".join(sorted(presets)) or "none"
            raise UsageError(f"trainer {ref.name} has no preset {preset!r}{closest(preset, presets)} "
                             f"(its presets: {known})")
        preset_config = presets[preset]

    config_model: type[TrainerConfig] = cls.config_model
    # A preset may also carry run settings (e.g. checkpoint cadence); explicit overrides win.
    settings_values: dict[str, Any] = {k: v for k, v in preset_config.items() if k in RunSettings.model_fields}
    config_values: dict[str, Any] = {k: v for k, v in preset_config.items() if k not in RunSettings.model_fields}
    settings_values.update({k: v for k, v in (settings_overrides or {}).items() if v is not None})
    for key, value in (config_overrides or {}).items():
        if value is None:
            continue
        if key not in config_model.model_fields:
            raise UsageError(f"trainer {ref.name} has no option {key!r}; it cannot take --{key}"
                             + (f" (its config fields: {', '.join(sorted(config_model.model_fields))})"))
        config_values[key] = value
    for text in assignments:
        key, value = parse_assignment(text)
        if key in RunSettings.model_fields:
            settings_values[key] = value
        elif key in config_model.model_fields:
            config_values[key] = value
        else:
            fields = sorted(set(RunSettings.model_fields) | set(config_model.model_fields))
            raise UsageError(f"--set {key}: unknown key{closest(key, fields)} (known: {', '.join(fields)})")
    try:
        settings = RunSettings.model_validate(settings_values)
    except ValidationError as exc:
        raise UsageError(_one_line(exc, "setting")) from exc
    try:
        config = config_model.model_validate(config_values)
    except ValidationError as exc:
        raise UsageError(_one_line(exc, f"{ref.name} config")) from exc
    return ResolvedRun(trainer=ref, trainer_class=cls, preset=preset, settings=settings, config=config)
