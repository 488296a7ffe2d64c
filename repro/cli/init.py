"""``repro init``: set up the release gate in the user's repository in one step (docs/ci.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from repro.cli.parsing import Subparsers
from repro.errors import ExitCode

OPTIONAL_EXTRAS = {"lightning": "lightning", "litgpt": "litgpt"}
"""Built-in trainers whose dependencies are an extra of the distribution."""


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("init", help="set up the CI release gate in this repository (policy, trust list, CI files)")
    p.add_argument("--reference", default="manifests/reference/run.json", metavar="FILE",
                   help="the reference manifest the gate checks, relative to the repository root "
                   "(default manifests/reference/run.json)")
    p.add_argument("--trusted-keys", default="manifests/trusted-keys.txt", metavar="FILE",
                   help="the trust list to write, relative to the repository root (default manifests/trusted-keys.txt)")
    p.add_argument("--key", help="the signing key whose public key the trust list holds "
                   "(default $REPRO_SIGNING_KEY or ~/.config/repro/signing-key.pem; created if absent)")
    p.add_argument("--trainer", metavar="NAME_OR_REF",
                   help="the trainer of the reference run (decides the extra to install, and whether the "
                   "repository root goes on PYTHONPATH for a module:Class at the root)")
    p.add_argument("--force", action="store_true", help="replace files that exist with other content")
    p.set_defaults(func=cmd_init)


def _relative(root: Path, given: str, flag: str) -> str:
    from repro.errors import UsageError

    path = Path(given)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(root)
        except ValueError:
            raise UsageError(f"{flag} {given}: not inside the repository {root}; name a path inside it") from None
    if ".." in path.parts or not path.parts:
        raise UsageError(f"{flag} {given}: name a file inside the repository, relative to its root")
    return path.as_posix()


def _is_python_project(pyproject: Path) -> bool:
    """Whether ``pyproject.toml`` declares a ``[project]`` (then CI installs it, with its plugin)."""
    import tomllib

    try:
        return "project" in tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False


def cmd_init(args: argparse.Namespace) -> int:
    """Write the policy, the trust list, the CI files and the .gitignore lines; print the next steps."""
    import importlib.metadata
    import sys

    from repro import __version__
    from repro.project import ci_files, setup
    from repro.rendering.console import err_console, out_console
    from repro.trust.data_location import repository_root
    from repro.trust.keys import load_or_create_key

    root = repository_root(Path.cwd()) or Path.cwd().resolve()
    reference = _relative(root, args.reference, "--reference")
    trusted = _relative(root, args.trusted_keys, "--trusted-keys")
    trainer = args.trainer or ""
    extra = OPTIONAL_EXTRAS.get(trainer)
    torch_version = importlib.metadata.version("torch").split("+")[0]
    pyproject = root / "pyproject.toml"
    installable = _is_python_project(pyproject)
    project = ci_files.Project(
        manifest=reference, trusted_keys=trusted, torch_version=torch_version,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        requirement=f"repro-audit{f'[{extra}]' if extra else ''}=={__version__}",
        installable=installable, on_path=":" in trainer and "." not in trainer.split(":", 1)[0],
    )
    key, created = load_or_create_key(Path(args.key) if args.key else None)
    planned = setup.plan(root, project, key.public_line(), force=args.force)
    setup.write(planned)
    if created:
        err_console.print(f"created signing key {key.path} (public: {key.path}.pub)", highlight=False, markup=False)
    for item in planned:
        where = item.path.relative_to(root) if item.path.is_relative_to(root) else item.path
        note = f" ({item.note})" if item.note else ""
        out_console.print(f"{item.action:>9}  {where}{note}", highlight=False, markup=False)
    if repository_root(Path.cwd()) is None:
        err_console.print(f"note: {root} is not a git repository; the gate checks the code's git state",
                          highlight=False, markup=False)
    flag = f" --trainer {trainer}" if trainer else ""
    out_console.print(
        "\nnext: make the reference run and commit it with these files:\n"
        f"  repro run PRESET{flag} --out {reference}\n"
        f"  git add pyproject.toml {trusted} {reference} {Path(reference).with_suffix('').as_posix()}/ "
        f"{setup.WORKFLOW} .gitignore\n"
        f"then the gate (what CI runs): {ci_files.GATE_COMMAND}",
        highlight=False, markup=False, soft_wrap=True,
    )
    return ExitCode.OK
