"""The code each run executed, compared: which file changed, and which differences cannot matter.

Both sides are :class:`~repro.records.manifest.ExecutedCode` records (the recording's manifest, and the
rerun's training process or a second manifest). A changed module file in no distribution is named
("trainer code changed: mymod.py"); an edited file of an installed distribution is named against
that distribution ("torch/optim/adamw.py differs from the installed torch 2.13.0 as recorded"),
and so is a copy of one placed first on the path. Installed packages that neither process
imported are marked ``none``: listed, but irrelevant to numerics and never offered as causes.
"""

from __future__ import annotations

from collections.abc import Iterable

from repro.audits.report import Difference
from repro.capture.environment import distribution_name
from repro.records.manifest import DistributionCode, ExecutedCode, FileDigest

STDLIB = "python-stdlib"
UNIMPORTED_NOTE = "not imported by the training process: irrelevant to numerics"


_norm = distribution_name


def imported(executed: ExecutedCode | None) -> set[str] | None:
    """Normalised names of the distributions a run imported from; None when not recorded."""
    return None if executed is None else {_norm(d.name) for d in executed.distributions}


def _top(path: str) -> str:
    return path.split("/", 1)[0].removesuffix(".py").split(".")[0]


def trainer_files(entry: str) -> tuple[str, ...]:
    """Path prefixes of the trainer's own code: its module (``mymod:Cls`` -> ``mymod.py``,
    ``mymod/``) and, for a plugin package, the whole top-level package (not repro's own)."""
    module = entry.split(":", 1)[0]
    base = module.replace(".", "/")
    top = module.split(".", 1)[0]
    return (f"{base}.py", f"{base}/") + ((f"{top}/",) if top != "repro" and "." in module else ())


def _file_label(path: str, trainer: tuple[str, ...]) -> str:
    owner = "trainer code" if path.startswith(trainer) else "code"
    return f"{owner} changed: {path}"


def _short(sha: str | None) -> str:
    return "(not imported)" if sha is None else sha[:12]


def _diff(field: str, recorded: str, here: str, likelihood: str, note: str) -> Difference:
    return Difference(category="code", field=field, recorded=recorded, here=here,
                      likelihood=likelihood, note=note)  # type: ignore[arg-type]


def _loose(recorded: list[FileDigest], here: list[FileDigest], trainer: tuple[str, ...],
           owners: dict[str, DistributionCode]) -> list[Difference]:
    """Files in no distribution: changed, or imported on one side only."""
    out = []
    a, b = {f.path: f.sha256 for f in recorded}, {f.path: f.sha256 for f in here}
    for path in sorted(set(a) | set(b)):
        if a.get(path) == b.get(path):
            continue
        dist = owners.get(_top(path))
        if dist is not None and (path not in a or path not in b):
            # A file of an installed distribution, imported from outside it on one side.
            note = (f"{path} differs from the installed {dist.name} {dist.version} as recorded "
                    f"(imported from a copy outside the distribution)")
            out.append(_diff(f"file {path}", _short(a.get(path)) if path in a else f"{dist.name} {dist.version}",
                             _short(b.get(path)) if path in b else f"{dist.name} {dist.version}", "high", note))
        elif path in a and path in b:
            out.append(_diff(f"file {path}", _short(a[path]), _short(b[path]), "high", _file_label(path, trainer)))
        else:
            # Usually a lazy import on a path only one side took (a prefix audit stops before
            # validation); a changed file shows as a change, not here.
            side = "the recording" if path in a else "the rerun"
            out.append(_diff(f"file {path}", _short(a.get(path)), _short(b.get(path)), "low",
                             f"code imported only by {side}: {path}"))
    return out


def _distribution(a: DistributionCode, b: DistributionCode, explained: set[str]) -> list[Difference]:
    """One distribution imported on both sides: edited files, or another set of loaded files."""
    if a.sha256 == b.sha256 and a.version == b.version:
        return []
    if a.version != b.version:
        return []  # a version change is listed with the packages; that explains any file difference
    out = []
    ma, mb = {f.path: f.sha256 for f in a.modified}, {f.path: f.sha256 for f in b.modified}
    for path in sorted(set(ma) | set(mb)):
        if ma.get(path) != mb.get(path):
            what = "the standard library" if a.name == STDLIB else f"the installed {a.name} {a.version}"
            out.append(_diff(f"file {path}", _short(ma.get(path)) if path in ma else "as installed",
                             _short(mb.get(path)) if path in mb else "as installed", "high",
                             f"{path} differs from {what} as recorded"))
    if not out and _norm(a.name) not in explained:
        what = ("Python standard library" if a.name == STDLIB else a.name) + f" {a.version}"
        # No loaded file differs from its RECORD hash: another set of modules was imported.
        out.append(_diff(f"files of {a.name}", f"{a.files} files", f"{b.files} files", "low",
                         f"{what}: another set of its modules was imported"))
    return out


def executed_differences(recorded: ExecutedCode | None, here: ExecutedCode | None, trainer_entry: str
                         ) -> list[Difference]:
    """Every difference between the code two training processes executed (category ``code``)."""
    if recorded is None or here is None:
        side = "the recorded run" if recorded is None else "the rerun"
        return [_diff("executed code", "not recorded" if recorded is None else "recorded",
                      "not recorded" if here is None else "recorded", "low",
                      f"{side} did not record the code it imported (made by an older repro), so a code "
                      "change outside git cannot be ruled out")]
    trainer = trainer_files(trainer_entry)
    dist_a = {_norm(d.name): d for d in recorded.distributions}
    dist_b = {_norm(d.name): d for d in here.distributions}
    owners = {pkg: d for d in [*dist_b.values(), *dist_a.values()] for pkg in d.packages if d.name != STDLIB}
    loose = _loose(recorded.files, here.files, trainer, owners)
    explained = {_norm(owners[_top(d.field.removeprefix("file "))].name)
                 for d in loose if _top(d.field.removeprefix("file ")) in owners}
    out = list(loose)
    for name in sorted(set(dist_a) | set(dist_b)):
        a, b = dist_a.get(name), dist_b.get(name)
        if a is not None and b is not None:
            out.extend(_distribution(a, b, explained))
        elif name not in explained:
            d = a or b
            assert d is not None
            side = "the recording" if a is not None else "the rerun"
            out.append(_diff(f"package {d.name} imported", f"{a.version}" if a else "(not imported)",
                             f"{b.version}" if b else "(not imported)", "low",
                             f"{d.name} was imported only by {side}"))
    return out


def mark_unimported(differences: Iterable[Difference], recorded: ExecutedCode | None,
                    here: ExecutedCode | None) -> list[Difference]:
    """Package differences of distributions neither process imported: likelihood ``none``."""
    a, b = imported(recorded), imported(here)
    if a is None or b is None:
        return list(differences)
    out = []
    for d in differences:
        name = _norm(d.field.removeprefix("package "))
        unused = d.field.startswith("package ") and d.category == "packages" and name not in a and name not in b
        out.append(d.model_copy(update={"likelihood": "none", "note": UNIMPORTED_NOTE}) if unused else d)
    return out


def demote_git(differences: Iterable[Difference], executed_same: bool) -> list[Difference]:
    """Git differences when the executed code is identical: files the training never imported."""
    if not executed_same:
        return list(differences)
    return [
        d.model_copy(update={"likelihood": "low", "note": "not in the code the training process executed, "
                             "which is identical (" + (d.note or "git state differs") + ")"})
        if d.field.startswith("code.") and d.likelihood != "none" else d
        for d in differences
    ]


def refine(found: Iterable[Difference], recorded: ExecutedCode | None, here: ExecutedCode | None,
           trainer_entry: str) -> tuple[list[Difference], bool]:
    """Add the executed-code differences to ``found`` and re-weigh the rest in their light.

    Returns the differences (unranked) and whether the executed code is known on both sides.
    """
    executed = executed_differences(recorded, here, trainer_entry)
    known = recorded is not None and here is not None
    weighed = mark_unimported(demote_git(found, known and not executed), recorded, here)
    return [*weighed, *executed], known
