"""Signing and verifying manifests with Ed25519.

What is signed is ``DOMAIN + canonical_bytes(body)``, where ``body`` is the manifest's JSON object
without its ``signature`` field, taken from the JSON *as parsed from disk* (not re-serialised from
the model). So any change to a value, a key, a list element, an added or removed field changes the
signed bytes; only what does not change the parsed value does not (whitespace, key order, the
spelling of a number or string escape: ``2.5`` and ``2.50`` are the same value). The signature
block itself is checked field by field (:func:`signature_block`).
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from repro.errors import SignatureError, UntrustedKeyError
from repro.records.canonical import canonical_bytes, decode_base64
from repro.records.manifest import ManifestBody, RunManifest, Signature
from repro.records.validation import describe
from repro.trust.keys import SigningKey, key_id, public_key_problem

DOMAIN = b"repro.run-manifest.v1\n"
"""Prefix that binds a signature to its purpose, so it cannot be replayed as another document's."""


def signed_bytes(body: dict[str, Any]) -> bytes:
    """The exact bytes a signature covers for a manifest body."""
    return DOMAIN + canonical_bytes(body)


def sign_body(body: dict[str, Any], key: SigningKey) -> Signature:
    """Sign a manifest body (a dict without ``signature``) and return the signature record."""
    value = key.private.sign(signed_bytes(body))
    return Signature(
        key_id=key.key_id,
        public_key=base64.b64encode(key.public_raw).decode(),
        value=base64.b64encode(value).decode(),
    )


def sign_manifest(body: ManifestBody, key: SigningKey) -> RunManifest:
    """Sign a manifest body; return the complete manifest."""
    unsigned = body.model_dump(mode="json")
    signature = sign_body(unsigned, key)
    return RunManifest.model_validate({**unsigned, "signature": signature.model_dump(mode="json")})


def _decode(value: str, what: str, where: str) -> bytes:
    try:
        return decode_base64(value)
    except ValueError as exc:
        raise SignatureError(f"the {what} in {where} is {exc}; it was altered") from exc


def signature_block(raw: dict[str, Any], where: str) -> Signature:
    """The signature block of a parsed manifest, exactly as written (no field may be missing).

    The block is not covered by the signature itself, so it is checked field by field: a
    missing, added, renamed or retyped field is an integrity failure, not a default.
    """
    if "signature" not in raw:
        raise SignatureError(f"{where} has no signature: it was removed, or the file was never signed")
    block = raw["signature"]
    if not isinstance(block, dict):
        raise SignatureError(f"the signature in {where} is not a JSON object; it was altered")
    expected = set(Signature.model_fields)
    if set(block) != expected:
        odd = sorted(set(block) ^ expected)
        raise SignatureError(f"the signature block in {where} has unexpected or missing fields {odd}; it was altered")
    try:
        return Signature.model_validate(block, strict=True)
    except ValidationError as exc:
        raise SignatureError(
            f"the signature block in {where} is malformed ({describe(exc)}); it was altered"
        ) from exc


def verify_document(raw: dict[str, Any], where: str, trusted: dict[str, bytes] | None) -> str:
    """Verify the signature of a parsed manifest ``raw`` (as read from disk); return the key id.

    This is one step of :func:`repro.trust.verify.verify_manifest`, the only verification commands
    use; call that, not this (a signature alone says nothing about the files a manifest names).

    Works on the JSON as written, before any schema validation or migration, so a change to any
    field is reported as what it is, an integrity failure, even where it also breaks the schema.
    With a trust list, the signing key must be in it. Raises :class:`SignatureError` or
    :class:`UntrustedKeyError`; ``where`` names the manifest in messages.
    """
    sig = signature_block(raw, where)
    public = _decode(sig.public_key, "public key", where)
    if problem := public_key_problem(public):
        raise SignatureError(f"the public key in {where} is refused: {problem}; it was altered or forged")
    if key_id(public) != sig.key_id:
        raise SignatureError(f"the key id in {where} does not match its public key; it was altered")
    signature = _decode(sig.value, "signature", where)
    body = {k: v for k, v in raw.items() if k != "signature"}
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, signed_bytes(body))
    except InvalidSignature as exc:
        raise SignatureError(
            f"signature of {where} does not match its contents: the manifest was changed "
            "after it was signed"
        ) from exc
    if trusted is not None and sig.key_id not in trusted:
        known = ", ".join(sorted(trusted))
        raise UntrustedKeyError(
            f"{where} is signed by key {sig.key_id}, which is not in the trust list "
            f"(trusted: {known}); add the key if you trust its owner"
        )
    if trusted is not None and trusted[sig.key_id] != public:
        raise UntrustedKeyError(f"key {sig.key_id} in {where} differs from the trusted key")
    return sig.key_id

