"""``repro keygen``: create an Ed25519 signing key pair."""

from __future__ import annotations

import argparse
from pathlib import Path

from repro.cli.parsing import Subparsers
from repro.errors import ExitCode


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("keygen", help="create an Ed25519 signing key pair")
    p.add_argument("--key", help="where to write the private key (default ~/.config/repro/signing-key.pem)")
    p.add_argument("--force", action="store_true", help="overwrite an existing key")
    p.set_defaults(func=cmd_keygen)


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create a key pair."""
    from repro.rendering.console import say
    from repro.trust.keys import default_key_path, generate_key, public_key_path

    path = Path(args.key) if args.key else default_key_path()
    key = generate_key(path, overwrite=args.force)
    say(f"private key: {path} (mode 600)")
    say(f"public key:  {public_key_path(path)}")
    say(f"key id:      {key.key_id}")
    return ExitCode.OK
