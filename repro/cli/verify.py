"""``repro verify``: check a manifest's signature and every file it names, without rerunning."""

from __future__ import annotations

import argparse
from pathlib import Path

from repro.cli.parsing import Subparsers
from repro.errors import ExitCode


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("verify", help="check a manifest's signature and artifacts without rerunning")
    p.add_argument("manifest")
    p.add_argument("--trusted-keys", help="trust list: a valid signature from another key fails")
    p.add_argument("--data", metavar="PATH",
                   help="where the run's data is here, if not where it was recorded (data outside the git "
                   "work tree); accepted only if every file hashes as recorded")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify signature and artifact hashes."""
    from repro.records.manifest_file import incomplete_marker
    from repro.rendering.console import say
    from repro.text import plural
    from repro.trust.keys import load_trusted_keys
    from repro.trust.verify import verify_manifest

    trusted = load_trusted_keys(Path(args.trusted_keys)) if args.trusted_keys is not None else None
    result = verify_manifest(Path(args.manifest), trusted, data_path=Path(args.data) if args.data else None)
    if incomplete_marker(Path(args.manifest)).exists():
        say(f"note: {incomplete_marker(Path(args.manifest))} is present: a run writing this manifest "
            "did not finish (continue it with --resume); what was verified is the last run that did", err=True)
    trust = "a trusted key" if result.trusted else "a key not checked against a trust list"
    say(("verified", "bold green"), f" {args.manifest}: signature by {result.key_id} ({trust}); "
        f"{plural(len(result.checks), 'artifact')} match")
    return ExitCode.OK
