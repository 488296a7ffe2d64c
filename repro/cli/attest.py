"""``repro attest``: the command-line wiring of :mod:`repro.trust.attest` (registered in ``repro.cli.app``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from repro.cli.parsing import Subparsers


def add_parser(sub: Subparsers) -> None:
    """Register ``repro attest``."""
    p = sub.add_parser("attest", help="verify a manifest, then write a signed in-toto attestation of it")
    p.add_argument("manifest")
    p.add_argument("--out", help="envelope file (default: <manifest stem>.intoto.jsonl beside the manifest)")
    p.add_argument("--key", help="signing key (default $REPRO_SIGNING_KEY or ~/.config/repro/signing-key.pem)")
    p.add_argument("--trusted-keys", help="trust list the manifest's signer must be in")
    p.add_argument("--public-key-out", metavar="FILE",
                   help="also write the signing key's public half as PEM (for cosign --key)")
    p.set_defaults(func=cmd_attest)


def cmd_attest(args: argparse.Namespace) -> int:
    """Verify, then attest."""
    from repro.errors import ExitCode
    from repro.files import atomic
    from repro.rendering.console import say
    from repro.text import plural
    from repro.trust.attest import build_statement, default_output, envelope_bytes, public_key_pem, sign_statement
    from repro.trust.keys import default_key_path, load_key, load_trusted_keys
    from repro.trust.verify import verify_manifest

    trusted = load_trusted_keys(Path(args.trusted_keys)) if args.trusted_keys is not None else None
    key = load_key(Path(args.key) if args.key else default_key_path())
    # Integrity first: an attestation must never vouch for a changed or untrusted run.
    verified = verify_manifest(Path(args.manifest), trusted)
    statement = build_statement(verified)
    out = Path(args.out) if args.out else default_output(Path(args.manifest))
    atomic.write_bytes(out, envelope_bytes(sign_statement(statement, key)))
    if args.public_key_out:
        atomic.write_bytes(Path(args.public_key_out), public_key_pem(key.public_raw))
    signer = "" if key.key_id == verified.key_id else f" (the manifest itself is signed by {verified.key_id})"
    say(("attested", "bold green"), f" {args.manifest}: {plural(len(statement.subject), 'subject')}, "
        f"signed by {key.key_id}{signer} -> {out}")
    return ExitCode.OK
