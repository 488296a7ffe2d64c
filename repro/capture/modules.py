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
  (``mymod.py``, ``repro/running/worker.py``) with its SHA-256.

Shared libraries an extension loads (``libtorch_cpu.so``) are not modules and are not hashed;
the distribution's version and its extension modules stand for them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import platform
import sys
import sysconfig
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from repro.records.hashing import sha256_file
from repro.records.manifest import DistributionCode, ExecutedCode, FileDigest

STDLIB = "python-stdlib"
"""Pseudo-distribution name of the standard library's loaded modules."""

_SUFFIXES = (".py", ".pyc", ".so", ".pyd")


def _module_file(module: ModuleType) -> str | None:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(_SUFFIXES):
        return None  # built-in, frozen, namespace package, or a module made in memory
    return file


def _import_root(name: str, path: str) -> str:
    """The folder the module was imported from: ``path`` minus one folder per dotted part."""
    depth = name.count(".") + (1 if os.path.basename(path).startswith("__init__.") else 0)
    parts = path.rsplit(os.sep, depth + 1)
    if len(parts) < depth + 2 or not parts[0]:
        return os.path.dirname(path)  # the layout does not match the name: the file's folder
    return parts[0]


@cache
def _stdlib_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple({os.path.realpath(paths[k]) + os.sep for k in ("stdlib", "platstdlib") if k in paths})


_realpath = cache(os.path.realpath)


@cache
def _is_stdlib(root: str) -> bool:
    real = os.path.realpath(root) + os.sep
    return real.startswith(_stdlib_roots()) and "site-packages" not in real.split(os.sep)


class _Dist:
    """A ``*.dist-info`` folder, read directly (``importlib.metadata`` parses far more than needed)."""

    def __init__(self, info: str) -> None:
        self.info = info
        self._record: dict[str, str] | None = None
        self._meta: tuple[str, str] | None = None

    def text(self, name: str) -> str:
        try:
            with open(os.path.join(self.info, name), encoding="utf-8") as handle:
                return handle.read()
        except OSError:
            return ""

    @property
    def name_version(self) -> tuple[str, str]:
        """``Name`` and ``Version`` from the METADATA headers."""
        if self._meta is None:
            fields: dict[str, str] = {}
            for line in self.text("METADATA").splitlines():
                if not line:
                    break
                key, _, value = line.partition(":")
                if key in ("Name", "Version") and key not in fields:
                    fields[key] = value.strip()
            base = os.path.basename(self.info).removesuffix(".dist-info")
            self._meta = (fields.get("Name", base.split("-")[0]), fields.get("Version", base.partition("-")[2]))
        return self._meta

    @property
    def record(self) -> dict[str, str]:
        """RECORD: path relative to the install root -> its hash field (``sha256=<urlsafe b64>`` or '')."""
        if self._record is None:
            self._record = {}
            for line in self.text("RECORD").splitlines():
                rest = line.rsplit(",", 2)  # path (may hold commas), hash, size
                if len(rest) == 3:
                    self._record[rest[0]] = rest[1]  # already a relative POSIX path
        return self._record

    def top_level(self) -> set[str]:
        top = self.text("top_level.txt").split()
        if top:
            return set(top)
        return {line.split("/", 1)[0].split(",", 1)[0].split(".")[0] for line in self.text("RECORD").splitlines()}


@cache
def _distributions_in(root: str) -> dict[str, list[_Dist]]:
    """Top-level import name -> the distributions installed in ``root`` that provide it (cached)."""
    out: dict[str, list[_Dist]] = {}
    try:
        entries = sorted(e.path for e in os.scandir(root) if e.name.endswith(".dist-info") and e.is_dir())
    except OSError:
        return out
    for info in entries:
        dist = _Dist(info)
        for name in dist.top_level():
            out.setdefault(name, []).append(dist)
    return out


def _record_hash(sha_hex: str) -> str:
    """A hex SHA-256 in RECORD's form."""
    return "sha256=" + base64.urlsafe_b64encode(bytes.fromhex(sha_hex)).rstrip(b"=").decode()


def _owner(root: str, relative: str) -> tuple[_Dist, str] | None:
    """The distribution whose RECORD lists ``relative`` under ``root``, with the recorded hash field."""
    top = relative.split("/", 1)[0].split(".", 1)[0]
    candidates = _distributions_in(root).get(top, [])
    if not candidates and "/" not in relative:
        # A module file at the top of site-packages that no top_level.txt names (an editable
        # install's finder, for one): ask every distribution's RECORD there.
        candidates = [d for ds in _distributions_in(root).values() for d in ds]
    for dist in candidates:
        recorded = dist.record.get(relative)
        if recorded is not None:
            return dist, recorded
    return None


def _digest(items: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for path, sha in sorted(items):
        h.update(f"{path}\0{sha}\n".encode())
    return h.hexdigest()


@cache
def _dist_at(info: str) -> _Dist:
    return _Dist(info)


@cache
def _record_key(info: str) -> list[int]:
    """Stat signature of a RECORD: a reinstall or upgrade changes it."""
    try:
        st = os.stat(os.path.join(info, "RECORD"))
    except OSError:
        return []
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class _FileCache:
    """What is known about each module file, by its stat signature (size, mtime, ctime, inode),
    kept between processes as git's index does: its SHA-256, where it belongs (standard library,
    a distribution, none) and whether it still matches the distribution's RECORD. Re-hashing ~2,000
    unchanged files and re-reading torch's 19,000-line RECORD on every run would cost more than
    the overhead budget. An edit changes ``ctime`` (no user call can set it back), a reinstall
    changes the RECORD's signature: either makes the entry stale."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.changed = False
        if path is not None:
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                self.entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self.entries = {}

    def lookup(self, path: str, root: str, relative: str) -> dict[str, Any]:
        """``{"sha", "size", "kind": std|dist|loose, "info", "ok"}`` for one module file."""
        st = os.stat(path)
        key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        hit = self.entries.get(path)
        if (isinstance(hit, dict) and hit.get("k") == key and hit.get("root") == root
                and (hit.get("kind") != "dist" or hit.get("rk") == _record_key(hit.get("info", "")))):
            return hit
        sha = hit["sha"] if isinstance(hit, dict) and hit.get("k") == key else sha256_file(Path(path))
        entry: dict[str, Any] = {"k": key, "root": root, "sha": sha, "size": st.st_size, "kind": "loose"}
        if _is_stdlib(root):
            entry["kind"] = "std"
        elif (owner := _owner(_realpath(root), relative)) is not None:
            dist, recorded = owner
            entry.update(kind="dist", info=dist.info, rk=_record_key(dist.info),
                         ok=not recorded.startswith("sha256=") or recorded == _record_hash(sha))
        self.entries[path] = entry
        self.changed = True
        return entry

    def save(self) -> None:
        if self.path is not None and self.changed:
            from repro.files import atomic

            with contextlib.suppress(OSError):  # a cache that cannot be written only costs time next run
                atomic.write_text(self.path, json.dumps(self.entries, separators=(",", ":")), mode=0o600)


def capture_executed(modules: dict[str, ModuleType] | None = None, cache_file: Path | None = None) -> ExecutedCode:
    """Fingerprint every module in ``modules`` (default: ``sys.modules``) that has a file.

    ``cache_file``: a JSON file of what is known about each file by its stat signature, reused between
    runs (see :class:`_FileCache`); None hashes and classifies every file afresh.
    """
    modules = dict(sys.modules if modules is None else modules)
    files = _FileCache(cache_file)
    by_dist: dict[str, tuple[_Dist, list[tuple[str, str]], list[FileDigest]]] = {}
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
        relative = path[len(root):].lstrip(os.sep).replace(os.sep, "/")  # root is a prefix of path
        try:
            found = files.lookup(path, root, relative)
        except OSError:
            continue  # the file is gone (e.g. a module made from a temporary file)
        sha = found["sha"]
        if found["kind"] == "std":
            std.append((relative, sha))
        elif found["kind"] == "loose":
            loose[relative] = FileDigest(path=relative, sha256=sha, size=found["size"])
        else:
            dist = _dist_at(found["info"])
            entry = by_dist.setdefault(dist.name_version[0], (dist, [], []))
            entry[1].append((relative, sha))
            if not found["ok"]:
                entry[2].append(FileDigest(path=relative, sha256=sha, size=found["size"]))
    distributions = [
        DistributionCode(name=STDLIB, version=platform.python_version(), files=len(std), sha256=_digest(std))
    ] if std else []
    for name, (dist, items, modified) in sorted(by_dist.items(), key=lambda kv: kv[0].lower()):
        distributions.append(DistributionCode(
            name=name, version=dist.name_version[1], files=len(items), sha256=_digest(items),
            packages=sorted({p.split("/", 1)[0].split(".")[0] for p, _ in items}),
            modified=sorted(modified, key=lambda f: f.path),
        ))
    files.save()
    return ExecutedCode(distributions=distributions, files=sorted(loose.values(), key=lambda f: f.path))
