"""The code's git state: commit, branch, remotes, dirty flag, diff hash, untracked files.

Outside a repository, or without a git binary, the state is recorded as unknown with the reason;
capture never fails a run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from repro.records.hashing import sha256_bytes
from repro.records.manifest import CodeRecord

if TYPE_CHECKING:  # at run time imported in capture_code, which reports a missing GitPython
    import git

# Without a git binary, `import git` raises at import time unless told to stay quiet.
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def capture_code(path: Path, exclude: Iterable[Path] = ()) -> CodeRecord:
    """Record the git state of the repository containing ``path``.

    Untracked files at or under ``exclude`` (the run's own outputs, e.g. its in-flight marker
    and staging folder) are left out, so a run does not record itself as a code change.
    """
    try:
        import git
    except ImportError as exc:  # pragma: no cover - GitPython is a dependency
        return CodeRecord(available=False, reason=f"GitPython unavailable: {exc}")
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return CodeRecord(available=False, reason=f"{path} is not inside a git repository")
    except git.GitCommandNotFound:
        return CodeRecord(available=False, reason="the git program is not installed")
    try:
        return _record(repo, [Path(p).resolve() for p in exclude])
    except git.GitCommandNotFound:
        return CodeRecord(available=False, reason="the git program is not installed")
    except (git.GitCommandError, ValueError) as exc:
        # ValueError: a repository with no commits has no HEAD to describe.
        return CodeRecord(available=False, reason=f"git state unreadable: {str(exc).splitlines()[0]}")


def _is_excluded(path: Path, exclude: list[Path]) -> bool:
    return any(path == e or e in path.parents for e in exclude)


def _record(repo: git.Repo, exclude: list[Path]) -> CodeRecord:
    commit = repo.head.commit.hexsha
    branch = None if repo.head.is_detached else repo.active_branch.name
    remotes = {remote.name: next(iter(remote.urls), "") for remote in repo.remotes}
    # Exact bytes of `git diff HEAD`: GitPython strips the trailing newline unless told not to.
    diff = repo.git.diff("HEAD", "--binary", stdout_as_string=False, strip_newline_in_stdout=False)
    root = Path(repo.working_tree_dir or ".").resolve()
    untracked = sorted(f for f in repo.untracked_files if not _is_excluded(root / f, exclude))
    return CodeRecord(
        available=True,
        commit=commit,
        branch=branch,
        remotes=remotes,
        dirty=bool(diff) or bool(untracked),
        diff_sha256=sha256_bytes(diff) if diff else None,
        untracked=untracked,
    )
