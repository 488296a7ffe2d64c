"""``repro init``'s work: decide every file it would write, refuse conflicts, then write them.

Nothing is written until every file has been checked: a file that exists with other content is a
conflict (:class:`InitConflictError`, exit 2, naming the files) unless ``force``. Files are
written atomically; ``pyproject.toml`` is edited with tomlkit so the user's comments and layout
stay as they were; ``.gitignore`` only ever gains the lines it lacks; an existing
``.gitlab-ci.yml`` is never edited (the job goes to a file to ``include:`` instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from repro.errors import InputError, UsageError
from repro.files import atomic
from repro.project import ci_files

Action = Literal["create", "replace", "update", "unchanged"]

GITLAB_SNIPPET = ".gitlab/repro-gate.gitlab-ci.yml"
WORKFLOW = ".github/workflows/repro-gate.yml"


class InitConflictError(UsageError):
    """``repro init`` would overwrite a file that has other content (exit 2); ``--force`` allows it."""


@dataclass(frozen=True)
class Planned:
    """One file ``repro init`` writes: its path, new content, and what happens to it."""

    path: Path
    text: str
    action: Action
    note: str = ""


def _plain(path: Path, text: str, force: bool, conflicts: list[Path]) -> Planned:
    if not path.exists():
        return Planned(path, text, "create")
    try:
        current = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}; fix or remove it") from None
    if current == text:
        return Planned(path, text, "unchanged")
    if not force:
        conflicts.append(path)
    return Planned(path, text, "replace")


def _pyproject(path: Path, table: dict[str, object], force: bool, conflicts: list[Path]) -> Planned:
    import tomlkit

    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise InputError(f"{path} is not readable TOML ({exc}); fix it, then run repro init again") from None
    tool: Any = document.setdefault("tool", tomlkit.table(is_super_table=True))
    repro: Any = tool.setdefault("repro", tomlkit.table(is_super_table=True))
    existing = repro.get("gate")
    if existing is not None and existing.unwrap() == table:
        return Planned(path, tomlkit.dumps(document), "unchanged", "[tool.repro.gate]")
    if existing is not None and not force:
        conflicts.append(path)
    gate = tomlkit.table()
    gate.add(tomlkit.comment(ci_files.policy_comment()))
    for key, value in table.items():
        gate.add(key, value)
    repro["gate"] = gate
    text = tomlkit.dumps(document)
    action: Action = "create" if not path.exists() else ("replace" if existing is not None else "update")
    return Planned(path, text, action, "[tool.repro.gate]")


def _gitignore(path: Path) -> Planned:
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    have = {line.strip() for line in current.splitlines()}
    missing = [line for line in ci_files.GITIGNORE_LINES if line not in have]
    if not missing or missing == [ci_files.GITIGNORE_LINES[0]]:
        return Planned(path, current, "unchanged")
    prefix = current if not current or current.endswith("\n") else current + "\n"
    text = prefix + ("\n" if prefix else "") + "\n".join(missing) + "\n"
    return Planned(path, text, "update" if current else "create", f"{len(missing)} line(s) added")


def _gitlab(root: Path, project: ci_files.Project, force: bool, conflicts: list[Path]) -> Planned:
    job = ci_files.gitlab_job(project)
    main = root / ".gitlab-ci.yml"
    if not main.exists() or "\nrepro-gate:" in "\n" + main.read_text(encoding="utf-8", errors="replace"):
        return _plain(main, job, force, conflicts)  # none yet, or the one repro init wrote
    snippet = _plain(root / GITLAB_SNIPPET, job, force, conflicts)
    return Planned(snippet.path, snippet.text, snippet.action,
                   f"add `include: '/{GITLAB_SNIPPET}'` to your .gitlab-ci.yml")


def plan(root: Path, project: ci_files.Project, public_line: str, *, force: bool) -> list[Planned]:
    """Every file ``repro init`` writes under ``root``; raise :class:`InitConflictError` first
    (naming every file) if any would be overwritten and ``force`` is not set."""
    root = Path(root)
    conflicts: list[Path] = []
    trust = root / project.trusted_keys
    planned = [
        _pyproject(root / "pyproject.toml", ci_files.policy(project), force, conflicts),
        _trust_list(trust, public_line, force, conflicts),
        _plain(root / WORKFLOW, ci_files.github_workflow(project), force, conflicts),
        _gitlab(root, project, force, conflicts),
        _gitignore(root / ".gitignore"),
    ]
    if conflicts:
        names = ", ".join(str(p) for p in conflicts)
        raise InitConflictError(
            f"repro init would overwrite {names} (already there, with other content); keep "
            f"{'it' if len(conflicts) == 1 else 'them'} and set up the rest by hand (docs/ci.md), or pass --force "
            "to replace"
        )
    return planned


def _trust_list(path: Path, public_line: str, force: bool, conflicts: list[Path]) -> Planned:
    if path.exists():
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {path}: {exc}; fix or remove it") from None
        if public_line.split()[1] in current:
            return Planned(path, current, "unchanged", "already lists your key")
    text = "# Keys whose signatures the gate accepts (repro init): one 'ed25519 <base64> [comment]' per line.\n"
    return _plain(path, text + public_line, force, conflicts)


def write(planned: list[Planned]) -> None:
    """Write every planned file that changes (atomically, parents created)."""
    for item in planned:
        if item.action == "unchanged":
            continue
        item.path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(item.path, item.text)
