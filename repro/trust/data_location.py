"""Where a manifest's data is on this machine: recorded sources resolved to a folder here.

A ``path`` data source is recorded in one of two forms:

- **inside the git work tree that holds the manifest** (``root: "repository"``): ``name`` is the
  POSIX path relative to the repository root, e.g. ``data/train.csv``. It is found against the
  work tree that holds the manifest when it is read, so a fresh clone at another path finds its
  own copy (the manifest and its data travel together);
- **anywhere else** (and every manifest made before): ``name`` is the absolute path.

Either can be pointed elsewhere with ``--data PATH`` (``repro verify``, ``repro audit``, the gate
policy's ``data``). Nothing here trusts the location: the caller hashes every recorded file under
the folder returned (through :mod:`repro.files.confine`) and uses the data only if every size and
SHA-256 matches the signed record; nothing outside the recorded files is read.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path, PurePosixPath

from repro.errors import UsageError
from repro.records.manifest import REPOSITORY_ROOT, DataSource

__all__ = ["as_verified", "data_source_root", "describe_location", "portable_source", "repository_root"]


def repository_root(start: Path) -> Path | None:
    """The git work tree holding ``start`` (the folder with ``.git``), or None outside one."""
    here = Path(start).expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _inside(name: str) -> bool:
    """Whether a recorded repository-relative name stays inside the repository."""
    path = PurePosixPath(name)
    return bool(path.parts) and not path.is_absolute() and ".." not in path.parts and "\\" not in name


def portable_source(source: DataSource, repository: Path | None) -> DataSource:
    """``source`` as a manifest records it: a ``path`` inside ``repository`` relative to its root."""
    if source.kind != "path" or source.root is not None or repository is None:
        return source
    try:
        relative = Path(source.name).resolve().relative_to(repository.resolve())
    except ValueError:
        return source  # outside the work tree: the absolute path (point elsewhere with --data)
    if not relative.parts:
        return source  # the repository itself as the data folder: keep it absolute, as before
    return source.model_copy(update={"name": relative.as_posix(), "root": REPOSITORY_ROOT})


def as_verified(source: DataSource, verified_source: DataSource | None, verified_root: str | None) -> DataSource:
    """The source a rerun's trainer reported, as the record names it when the trainer read the
    verified data (its ``path`` source is the verified folder, or the one file in it, here)."""
    if verified_source is None or verified_root is None or source.kind != "path" or source.root is not None:
        return source
    root = Path(verified_root).resolve()
    here = Path(source.name).resolve()
    return verified_source if root in (here, here.parent) else source


def _override_root(source: DataSource, files: list[str], override: Path) -> Path:
    path = Path(override).expanduser().resolve()
    if source.kind != "path":
        raise UsageError(
            f"--data {override}: this run's data is {source.kind} {source.name!r}, not files on a path; "
            "--data only points at a run's data files"
        )
    if path.is_dir():
        return path
    if not path.exists():
        raise UsageError(f"--data {override}: no such file or folder ({path})")
    if len(files) == 1 and PurePosixPath(files[0]).name == path.name and "/" not in files[0]:
        return path.parent
    recorded = ", ".join(files[:3]) + (" …" if len(files) > 3 else "")
    raise UsageError(
        f"--data {override} is a file, but the run read {recorded}; name the folder that holds the "
        "recorded file(s), or a file of the recorded name"
    )


def _folder(path: Path) -> Path | None:
    if path.is_file():
        return path.parent
    return path if path.is_dir() else None


def data_source_root(source: DataSource, manifest_path: Path | None = None, *,
                     files: list[str] | None = None, override: Path | None = None) -> Path | None:
    """The folder a data source's file paths are relative to here, or None if it is not here.

    ``manifest_path`` locates the repository of a repository-relative source; ``override`` (the
    user's ``--data``) replaces the recorded location. Raises :class:`UsageError` for an override
    that cannot be this data (a distribution's data, a file of another name).
    """
    if source.kind == "generated":
        return None
    if override is not None:
        return _override_root(source, files or [], override)
    if source.kind == "distribution":
        try:
            return Path(str(importlib.metadata.distribution(source.name).locate_file("")))
        except importlib.metadata.PackageNotFoundError:
            return None
    if source.root == REPOSITORY_ROOT:
        if not _inside(source.name):
            return None  # not a path inside a repository: nothing is read
        repository = repository_root(manifest_path.parent if manifest_path is not None else Path.cwd())
        return None if repository is None else _folder(repository / source.name)
    return _folder(Path(source.name))


def describe_location(source: DataSource, manifest_path: Path | None = None) -> str:
    """Where the data was looked for, absolute, for a 'missing' message."""
    if source.kind == "distribution":
        return f"the installed distribution {source.name}"
    if source.root == REPOSITORY_ROOT:
        base = manifest_path.parent if manifest_path is not None else Path.cwd()
        repository = repository_root(base)
        if repository is None:
            return (f"{source.name} relative to the root of the git repository holding the manifest, but "
                    f"{base.resolve()} is in none; point at the data with --data PATH")
        return str(repository / source.name)
    return source.name
