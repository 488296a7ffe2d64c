"""The code a training process executed: every module it imported, fingerprinted.

Called at the end of training, inside the training process, so it sees exactly what was imported
(lazily imported modules included). Each module's file (``.py`` source, or the ``.so``/``.pyd``
of a native extension) is hashed and sorted into one of three groups:

- **a distribution's file**: listed in an installed distribution's ``RECORD``. One digest per
  distribution covers its loaded files; files whose bytes no longer match the ``RECORD`` hash
  (edited in site-packages) are listed by name, so an audit can name them.
- **the standard library**: one digest, under the pseudo-distribution ``python-stdlib``.
- **no distribution**: a plugin on ``PYTHONPATH``, a vendored copy placed first on the path, or
  the project's own code installed editable. Each file by its path relative to its import root
  (``mymod.py``, ``repro/worker.py``) with its SHA-256.

Shared libraries an extension loads (``libtorch_cpu.so``) are not modules and are not hashed;
the distribution's version and its extension modules stand for them.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import os
import platform
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from repro.hashing import sha256_file
from repro.manifest import DistributionCode, ExecutedCode, FileDigest

STDLIB = "python-stdlib"
"""Pseudo-distribution name of the standard library's loaded modules."""

_SUFFIXES = (".py", ".pyc", ".so", ".pyd")


def _module_file(module: ModuleType) -> str | None:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(_SUFFIXES):
        return None  # built-in, frozen, namespace package, or a module made in memory
    return file if os.path.isfile(file) else None


def _import_root(name: str, path: str) -> str:
    """The folder the module was imported from: ``path`` minus one folder per dotted part."""
    depth = name.count(".") + (1 if os.path.basename(path).startswith("__init__.") else 0)
    root = os.path.dirname(path)
    for _ in range(depth):
        parent = os.path.dirname(root)
        if parent == root:
            return os.path.dirname(path)  # the layout does not match the name: the file's folder
        root = parent
    return root


@lru_cache(maxsize=None)
def _stdlib_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple({os.path.realpath(paths[k]) + os.sep for k in ("stdlib", "platstdlib") if k in paths})


_realpath = lru_cache(maxsize=None)(os.path.realpath)


@lru_cache(maxsize=None)
def _is_stdlib(root: str) -> bool:
    real = os.path.realpath(root) + os.sep
    return real.startswith(_stdlib_roots()) and "site-packages" not in real.split(os.sep)


@lru_cache(maxsize=None)
def _distributions_in(root: str) -> dict[str, list[importlib.metadata.Distribution]]:
    """Top-level import name -> the distributions installed in ``root`` that provide it (cached)."""
    out: dict[str, list[importlib.metadata.Distribution]] = {}
    for dist in importlib.metadata.distributions(path=[root]):
        top = dist.read_text("top_level.txt")
        names = top.split() if top else sorted({Path(f).parts[0].split(".")[0] for f in dist.files or []})
        for name in names:
            out.setdefault(name, []).append(dist)
    return out


@lru_cache(maxsize=None)
def _record(dist: importlib.metadata.Distribution) -> dict[str, str | None]:
    """A distribution's RECORD: path relative to its root -> recorded SHA-256 (hex), if any."""
    text = dist.read_text("RECORD") or ""
    out: dict[str, str | None] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        digest = None
        if len(row) > 1 and row[1].startswith("sha256="):
            raw = row[1].removeprefix("sha256=")
            digest = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).hex()
        out[os.path.normpath(row[0]).replace(os.sep, "/")] = digest
    return out


@lru_cache(maxsize=None)
def _name_version(dist: importlib.metadata.Distribution) -> tuple[str, str]:
    """Parsing METADATA is the slow part of importlib.metadata: once per distribution."""
    meta = dist.metadata
    return meta["Name"], meta["Version"]


def _owner(root: str, relative: str) -> tuple[importlib.metadata.Distribution, str | None] | None:
    """The distribution whose RECORD lists ``relative`` under ``root``, with the recorded hash."""
    top = relative.split("/", 1)[0].split(".")[0]
    for dist in _distributions_in(root).get(top, []):
        record = _record(dist)
        if relative in record:
            return dist, record[relative]
    return None


def _digest(items: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for path, sha in sorted(items):
        h.update(f"{path}\0{sha}\n".encode())
    return h.hexdigest()


def capture_executed(modules: dict[str, ModuleType] | None = None) -> ExecutedCode:
    """Fingerprint every module in ``modules`` (default: ``sys.modules``) that has a file."""
    modules = dict(sys.modules if modules is None else modules)
    by_dist: dict[str, tuple[importlib.metadata.Distribution, list[tuple[str, str]], list[FileDigest]]] = {}
    std: list[tuple[str, str]] = []
    loose: dict[str, FileDigest] = {}
    seen: set[str] = set()
    for key, module in sorted(modules.items()):
        path = _module_file(module)
        if path is None or path in seen:
            continue
        seen.add(path)
        spec = getattr(module, "__spec__", None)
        name = spec.name if spec is not None and spec.name else key
        root = _import_root(name, path)
        relative = os.path.relpath(path, root).replace(os.sep, "/")
        sha = sha256_file(Path(path))
        if _is_stdlib(root):
            std.append((relative, sha))
            continue
        owner = _owner(_realpath(root), relative)
        if owner is None:
            loose[relative] = FileDigest(path=relative, sha256=sha, size=os.path.getsize(path))
            continue
        dist, recorded = owner
        entry = by_dist.setdefault(_name_version(dist)[0], (dist, [], []))
        entry[1].append((relative, sha))
        if recorded is not None and recorded != sha:
            entry[2].append(FileDigest(path=relative, sha256=sha, size=os.path.getsize(path)))
    distributions = [
        DistributionCode(name=STDLIB, version=platform.python_version(), files=len(std), sha256=_digest(std))
    ] if std else []
    for name, (dist, items, modified) in sorted(by_dist.items(), key=lambda kv: kv[0].lower()):
        distributions.append(DistributionCode(
            name=name, version=_name_version(dist)[1], files=len(items), sha256=_digest(items),
            packages=sorted({p.split("/", 1)[0].split(".")[0] for p, _ in items}),
            modified=sorted(modified, key=lambda f: f.path),
        ))
    return ExecutedCode(distributions=distributions, files=sorted(loose.values(), key=lambda f: f.path))
