"""Finding trainers: the ``repro.trainers`` entry-point group, or ``package.module:Class``.

The built-in GPT trainer is registered by this distribution's own entry point and found through
the same door as any third-party trainer.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from repro.errors import ReproError, TrainerError, TrainerNotFoundError, UsageError
from repro.records.manifest import TrainerRef
from repro.trainer_api import REQUIRED_METHODS, Trainer, TrainerConfig

GROUP = "repro.trainers"


@dataclass(frozen=True)
class TrainerEntry:
    """An installed trainer as its entry point declares it."""

    name: str
    entry: str
    distribution: str | None
    version: str | None


def installed_trainers() -> dict[str, TrainerEntry]:
    """All trainers registered in the ``repro.trainers`` group, by name."""
    found: dict[str, TrainerEntry] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        found[ep.name] = TrainerEntry(
            name=ep.name,
            entry=ep.value,
            distribution=dist.metadata["Name"] if dist else None,
            version=dist.version if dist else None,
        )
    return dict(sorted(found.items()))


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def import_reference(entry: str) -> type[Trainer]:
    """Import ``package.module:Class`` and return the class, checked against the contract."""
    module_name, sep, attr = entry.partition(":")
    # Dotted identifiers only: no relative import (".x"), no empty part, nothing importlib rejects.
    if not sep or not _DOTTED.fullmatch(module_name) or not _DOTTED.fullmatch(attr):
        raise UsageError(f"trainer reference {entry!r} must look like 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrainerNotFoundError(
            f"cannot import trainer module {module_name!r} ({exc}); install it or fix PYTHONPATH"
        ) from exc
    except ReproError:
        raise  # the module itself says what is wrong (e.g. an optional dependency is missing)
    except Exception as exc:  # third-party code failed while being imported
        raise TrainerError(
            f"importing trainer module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise TrainerNotFoundError(f"module {module_name!r} has no attribute {attr!r}")
    check_trainer_class(obj, entry)
    trainer_class: type[Trainer] = obj  # what check_trainer_class accepts fits the Trainer protocol
    return trainer_class


def check_trainer_class(cls: Any, entry: str) -> None:
    """Raise :class:`TrainerError` naming the trainer if ``cls`` does not fit the contract."""
    if not isinstance(cls, type):
        raise TrainerError(f"trainer {entry} is not a class")
    missing = [name for name in REQUIRED_METHODS if not callable(getattr(cls, name, None))]
    if missing:
        raise TrainerError(f"trainer {entry} does not implement {', '.join(missing)}")
    config_model = getattr(cls, "config_model", None)
    if not (isinstance(config_model, type) and issubclass(config_model, TrainerConfig)):
        raise TrainerError(f"trainer {entry}: config_model must subclass repro.trainer_api.TrainerConfig")


def resolve_trainer(name_or_entry: str) -> tuple[TrainerRef, type[Trainer]]:
    """Find a trainer by registry name or import reference; return its record and class."""
    installed = installed_trainers()
    if ":" in name_or_entry:
        cls = import_reference(name_or_entry)
        match = next((t for t in installed.values() if t.entry == name_or_entry), None)
        name = match.name if match else name_or_entry
        dist, version = (match.distribution, match.version) if match else _owning_distribution(name_or_entry)
        return _ref(cls, name, name_or_entry, dist, version), cls
    entry = installed.get(name_or_entry)
    if entry is None:
        known = ", ".join(installed) or "none"
        raise TrainerNotFoundError(
            f"no trainer named {name_or_entry!r} is installed (installed: {known}); install it or "
            "pass --trainer package.module:Class"
        )
    cls = import_reference(entry.entry)
    return _ref(cls, entry.name, entry.entry, entry.distribution, entry.version), cls


def _owning_distribution(entry: str) -> tuple[str | None, str | None]:
    """The installed distribution (name, version) whose files include ``entry``'s top package."""
    top = entry.partition(":")[0].split(".")[0]
    names = sorted(set(importlib.metadata.packages_distributions().get(top, [])))
    if len(names) != 1:  # not installed, or ambiguous (namespace package): claim nothing
        return None, None
    dist = importlib.metadata.distribution(names[0])
    return dist.metadata["Name"], dist.version


def _ref(cls: type, name: str, entry: str, dist: str | None, version: str | None) -> TrainerRef:
    """The manifest's record of a trainer. The providing distribution's version is what pip can
    reinstall, so it wins; a class-level ``version`` covers code that no distribution provides."""
    declared = getattr(cls, "version", None)
    return TrainerRef(
        name=name,
        version=str(version or declared or "unknown"),
        distribution=dist,
        entry=entry,
    )


def trainer_presets(cls: Any) -> Mapping[str, Mapping[str, Any]]:
    """A trainer's named configs; a trainer without ``presets()`` has none (it is optional)."""
    presets = getattr(cls, "presets", None)
    return presets() if callable(presets) else {}


def closest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to a mistyped one, or ``""``."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def find_preset(preset: str) -> tuple[str, Mapping[str, Any]]:
    """Find which installed trainer defines ``preset``; return (trainer name, preset config)."""
    owners: list[tuple[str, Mapping[str, Any]]] = []
    all_presets: list[str] = []
    for name, entry in installed_trainers().items():
        try:
            presets = trainer_presets(import_reference(entry.entry))
        except Exception:  # noqa: BLE001, S112 - a broken third-party trainer must not hide the others' presets
            continue
        all_presets.extend(presets)
        if preset in presets:
            owners.append((name, presets[preset]))
    if not owners:
        known = ", ".join(sorted(all_presets)) or "none"
        raise UsageError(f"unknown preset {preset!r}{closest(preset, all_presets)} (known presets: {known})")
    if len(owners) > 1:
        names = ", ".join(o[0] for o in owners)
        raise UsageError(f"preset {preset!r} is defined by several trainers ({names}); pass --trainer")
    return owners[0]
