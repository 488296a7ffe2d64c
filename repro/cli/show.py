"""``repro show MANIFEST``: what a run recorded, and whether it verifies (registered in ``repro.cli.app``).

It verifies the manifest through :func:`repro.trust.verify.verify_manifest`, the function ``repro verify``
uses, and exits as ``verify`` would (0 verified, 2 malformed or unreadable, 3 integrity failure,
4 could not check). A manifest that fails verification is still shown when it can be read,
under the failure, so a reader sees what was claimed and why it is not to be trusted.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from repro.cli.parsing import Subparsers

if TYPE_CHECKING:
    from repro.errors import ReproError
    from repro.records.manifest_file import LoadedManifest
    from repro.rendering.pages import Banner


def add_parser(sub: Subparsers) -> None:
    """Register ``repro show``."""
    p = sub.add_parser("show", help="summarise a manifest (facts, loss curve) and verify it like `repro verify`")
    p.add_argument("manifest")
    p.add_argument("--trusted-keys", metavar="FILE", help="trust list: a valid signature by another key fails (exit 3)")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page (facts, curves, verification)")
    p.set_defaults(func=cmd_show)


def _unverified(path: Path) -> LoadedManifest | None:
    """The manifest as written, for display under a failure; None when it (or its step table) cannot
    be read as one."""
    from repro.errors import ReproError
    from repro.records.manifest_file import LoadedManifest, load_step_table, manifest_from_json, read_manifest_json

    try:
        raw = read_manifest_json(path)
        loaded = LoadedManifest(manifest=manifest_from_json(raw, f"manifest {path}"), raw=raw, path=path)
        load_step_table(loaded)  # a table that is missing or not the recorded one: nothing to show
        return loaded
    except ReproError:
        return None


def _failure_banner(exc: ReproError) -> Banner:
    from repro.errors import CouldNotCheckError, IntegrityError
    from repro.rendering.pages import Banner

    if isinstance(exc, IntegrityError):
        return Banner("INTEGRITY FAILURE", "bad", str(exc),
                      [("what this means", "the run below is what the file claims; it does not verify, "
                                           "so none of it can be relied on")])
    if isinstance(exc, CouldNotCheckError):
        return Banner("COULD NOT CHECK", "unknown", str(exc),
                      [("what this means", "the signature may be fine, but not every file the manifest names "
                                           "could be checked")])
    return Banner("NOT A VALID MANIFEST", "bad", str(exc))


def cmd_show(args: argparse.Namespace) -> int:
    """Verify, print the summary and loss curve, optionally write the HTML page; exit as verify would."""
    from repro.errors import ArtifactMismatchError, ExitCode, MissingArtifactError, ReproError
    from repro.records.manifest_file import incomplete_marker
    from repro.rendering.console import loss_curve_lines, out_console, run_summary, say
    from repro.rendering.pages import Banner, Verification, show_page, write_html
    from repro.trust.artifacts import check_data, check_run_files
    from repro.trust.keys import load_trusted_keys
    from repro.trust.verify import verify_manifest

    path = Path(args.manifest)
    trusted = load_trusted_keys(Path(args.trusted_keys)) if args.trusted_keys else None
    failure: ReproError | None = None
    try:
        result = verify_manifest(path, trusted)
        loaded: LoadedManifest | None = result.loaded
        trust = "a trusted key" if result.trusted else "a key not checked against a trust list (--trusted-keys)"
        checks = [(c.kind, c.path, c.status) for c in result.checks]
        # Green only for a key on the trust list: without one, anyone could have signed it.
        banner = Banner("VERIFIED" if result.trusted else "SIGNED BY AN UNCHECKED KEY",
                        "good" if result.trusted else "warn",
                        f"the signature is valid and all {len(checks)} files the manifest names match their hashes",
                        [("signed by", f"{result.key_id}: {trust}")])
    except ReproError as exc:
        failure, loaded = exc, _unverified(path)
        banner = _failure_banner(exc)
        checks = []
        if loaded is not None and isinstance(exc, ArtifactMismatchError | MissingArtifactError):
            found = check_data(loaded.manifest.data, loaded.path) + check_run_files(loaded.manifest, loaded.folder)
            checks = [(c.kind, c.path, c.status) for c in found]

    if loaded is not None:
        out_console.print(run_summary(loaded.manifest, str(path), title=f"run: {path}"))
        for line in loss_curve_lines(loaded.manifest):
            say(line)
    if incomplete_marker(path).exists():
        say(f"note: {incomplete_marker(path)} is present: a run writing this manifest did not finish "
            "(continue it with --resume)", err=True)
    if args.html:
        page = show_page(loaded.manifest if loaded else None, str(path), Verification(banner, checks))
        write_html(Path(args.html), page)
        say(f"wrote {args.html}", err=True)
    if failure is not None:
        raise failure  # the CLI prints it and maps it to verify's exit code
    say(("verified", "bold green" if banner.tone == "good" else "bold yellow"),
        f": {banner.summary}; signed by {banner.details[0][1]}")
    return ExitCode.OK
