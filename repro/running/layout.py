"""Where a run's files go while it runs, and how it replaces the previous run at the same path.

::

    manifests/run.json                  the finished manifest
    manifests/run/                      its files: tokenizer, checkpoints/, SBOM, train.log
    manifests/run.json.incomplete       marker: a run writing run.json has not finished
    manifests/run.incomplete/           that run's files, while it runs
    manifests/run.replaced/             only while a finished run replaces the previous one

A run writes only into ``run.incomplete/``, so the manifest already at ``run.json`` and its
folder stay valid, and verify, for as long as the new run trains, and whether it finishes,
fails or is killed. When it has finished, :meth:`RunLayout.commit` writes the new manifest to a
temporary file, records that file's SHA-256 in the marker, renames ``run/`` to ``run.replaced/``
and ``run.incomplete/`` to ``run/``, renames the manifest into place, and removes the old folder
and the marker. The manifest therefore names ``run/...`` paths, the same for every run.

Killed between those renames, a run leaves ``run.replaced/`` beside the marker; ``verify`` and
``audit`` refuse that state (exit 4) and the next ``repro run`` with the same ``--out`` settles it
first (:meth:`RunLayout.settle`): if the manifest in place is the one the marker names, the
replacement is finished, otherwise undone.

One run per manifest path at a time: :meth:`RunLayout.locked` holds an exclusive ``flock`` on
``manifests/.run.json.lock`` for the whole run (the OS releases it if the process dies), and a
second ``repro run`` with the same ``--out`` is refused at start.

repro deletes and renames only folders it made: every run folder holds a marker file,
``.repro-run`` (:data:`RUN_FOLDER_MARKER`), written before the folder gets its name. A ``run/``,
``run.incomplete/`` or ``run.replaced/`` beside the manifest without it is someone else's,
whatever else is there (an incomplete marker, a manifest naming files inside it: both can be
left over or planted): the run refuses to start (:meth:`RunLayout.check_owned`) and leaves it
alone. (Run folders made before the marker existed are refused too; move them away once.)
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from repro.errors import InputError, OutputError, UsageError
from repro.files import atomic
from repro.files.confine import open_regular
from repro.records.base import FrozenRecord
from repro.records.hashing import sha256_bytes, sha256_file
from repro.records.manifest_file import incomplete_marker, replaced_folder, run_folder
from repro.running.crashpoint import crash_point

RUN_FOLDER_MARKER = ".repro-run"
"""File in every run folder repro makes; only folders holding it are ever deleted or replaced."""


class InFlightRun(FrozenRecord):
    """The content of the incomplete marker: which run is writing the manifest."""

    started_at: str
    config_sha256: str
    committing: str | None = None
    """SHA-256 of the manifest being renamed into place, once the run has finished."""


def is_run_folder(folder: Path) -> bool:
    """Whether repro made ``folder``: a real folder (not a link) holding the marker as a regular file.

    Nothing else counts: not an incomplete marker beside it, not a manifest naming files inside
    it (either can be left over or planted), so a folder without the marker is never removed.
    """
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        return stat.S_ISREG(os.lstat(folder / RUN_FOLDER_MARKER).st_mode)
    except OSError:
        return False


@dataclass(frozen=True)
class RunLayout:
    """The paths that belong to one manifest path, and the steps that change them."""

    manifest: Path

    @property
    def marker(self) -> Path:
        """The incomplete marker beside the manifest."""
        return incomplete_marker(self.manifest)

    @property
    def root(self) -> Path:
        """The folder of the finished run's files."""
        return run_folder(self.manifest)

    @property
    def staging(self) -> Path:
        """The folder of the running (or unfinished) run's files."""
        return self.root.with_name(self.root.name + ".incomplete")

    @property
    def replaced(self) -> Path:
        """The previous run's folder, only while it is being replaced."""
        return replaced_folder(self.manifest)

    @property
    def lock_path(self) -> Path:
        """The lock file beside the manifest, held by the one run writing it."""
        return self.manifest.with_name(f".{self.manifest.name}.lock")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the manifest's run lock, or refuse at once if another run holds it.

        The lock file is removed on release. A run that opened the file just before it was
        removed would lock a file nobody else can find, so after locking, the file on disk must
        still be the one locked; otherwise it tries again.
        """
        try:
            self.manifest.parent.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    os.close(fd)
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise UsageError(
                            f"another repro run is writing {self.manifest} (it holds {self.lock_path}); wait "
                            "for it to finish or choose another --out"
                        ) from exc
                    raise
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
        except OSError as exc:  # the lock is the first file a run writes: name what the user asked for
            atomic.check_writable(self.manifest, "--out")  # its probe explains e.g. /proc best
            raise OutputError(atomic.describe_os_error(exc, self.manifest)) from exc
        try:
            yield
        finally:
            try:
                self.lock_path.unlink(missing_ok=True)
            finally:
                os.close(fd)

    def mark(self, folder: Path) -> None:
        """Make sure ``folder`` holds :data:`RUN_FOLDER_MARKER`; a folder repro makes here is built
        under a temporary name with its marker and renamed, so it is never seen unmarked."""
        if not folder.exists():
            temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=atomic.TMP_SUFFIX, dir=folder.parent))
            atomic.write_text(temporary / RUN_FOLDER_MARKER, f"a repro run folder of {self.manifest.name}\n")
            os.rename(temporary, folder)
            return
        atomic.write_text(folder / RUN_FOLDER_MARKER, f"a repro run folder of {self.manifest.name}\n")

    def check_owned(self) -> None:
        """Refuse (exit 2) to start if a folder this run would delete or rename is not repro's."""
        for folder in (self.root, self.staging, self.replaced):
            if os.path.lexists(folder) and not is_run_folder(folder):
                kind = "a symbolic link" if folder.is_symlink() else "a folder" if folder.is_dir() else "a file"
                raise UsageError(
                    f"{folder} is in the way: a run writing {self.manifest} keeps its files there, but it is "
                    f"{kind} that repro did not make (no {RUN_FOLDER_MARKER} inside); it was left alone. Move "
                    "it away or choose another --out"
                )

    def read_marker(self) -> InFlightRun | None:
        """The unfinished run, or None if there is none or its marker cannot be read."""
        try:
            with open_regular(self.marker, "incomplete marker") as handle:  # never blocks on a planted FIFO
                data = handle.read(1 << 16)
            return InFlightRun.model_validate_json(data)
        except (OSError, ValidationError, InputError):
            return None

    def write_marker(self, run: InFlightRun) -> None:
        """Mark ``run`` as writing the manifest (atomically; fails early if the folder is unwritable)."""
        atomic.write_text(self.marker, run.model_dump_json() + "\n")

    def resumable(self) -> InFlightRun:
        """The unfinished run to resume; a usage error if there is none."""
        if not self.marker.exists():
            raise UsageError(f"nothing to resume: {self.marker} is absent (the run finished or never started)")
        run = self.read_marker()
        if run is None:
            raise UsageError(f"cannot resume: {self.marker} is unreadable; start afresh without --resume")
        return run

    def final_path(self, relative: str) -> str:
        """A manifest-relative path under the staging folder, as it will be once committed."""
        head, sep, rest = relative.partition("/")
        return f"{self.root.name}/{rest}" if sep and head == self.staging.name else relative

    def discard_leftovers(self) -> None:
        """Remove temporary files a killed ``repro run`` left beside the manifest."""
        for tmp in self.manifest.parent.glob(f".{self.manifest.name}.*{atomic.TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)

    def settle(self) -> None:
        """Finish or undo a replacement that a killed run left halfway (see the module docstring)."""
        run = self.read_marker()
        if run is None:
            if self.replaced.exists():
                raise UsageError(
                    f"{self.replaced} is left from an interrupted run, but {self.marker} is missing or "
                    f"unreadable, so it is not known which run {self.manifest} belongs to; remove one "
                    "of the two folders"
                )
            return
        if run.committing is None:
            return
        if self.manifest.is_file() and sha256_file(self.manifest) == run.committing:
            shutil.rmtree(self.replaced, ignore_errors=True)  # replaced; only tidying up was left
            self.marker.unlink(missing_ok=True)
            return
        # Not replaced: undo whichever renames happened, newest first.
        try:
            if not self.staging.exists() and self.root.exists():
                os.rename(self.root, self.staging)
            if self.replaced.exists():
                os.rename(self.replaced, self.root)
        except OSError as exc:
            raise OutputError(atomic.describe_os_error(exc, self.root)) from exc
        self.write_marker(run.model_copy(update={"committing": None}))

    def commit(self, data: bytes, run: InFlightRun) -> None:
        """Make the staged run the finished one, with ``data`` as its manifest."""
        self.write_marker(run.model_copy(update={"committing": sha256_bytes(data)}))
        with atomic.atomic_writer(self.manifest) as out:
            out.write(data[: len(data) // 2])
            crash_point("manifest")
            out.write(data[len(data) // 2 :])
            self._swap_folders()
            crash_point("swap")
        # Committed: the manifest in place names the files in place. The rest is tidying up.
        shutil.rmtree(self.replaced, ignore_errors=True)
        self.marker.unlink(missing_ok=True)

    def _swap_folders(self) -> None:
        moved = False
        try:
            if self.root.exists():
                os.rename(self.root, self.replaced)
                moved = True
            os.rename(self.staging, self.root)
        except OSError as exc:
            if moved and not self.root.exists():
                os.rename(self.replaced, self.root)
            raise OutputError(atomic.describe_os_error(exc, self.root)) from exc
