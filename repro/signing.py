"""Signing and verifying manifests with Ed25519.

What is signed is ``DOMAIN + canonical_bytes(body)``, where ``body`` is the manifest's JSON object
without its ``signature`` field, taken from the JSON *as parsed from disk* (not re-serialised from
the model). So any change to a value, a key, a list element, an added or removed field changes the
signed bytes; only insignificant whitespace and key order do not.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from repro.canonical import canonical_bytes
from repro.errors import SignatureError, UntrustedKeyError
from repro.keys import SigningKey, key_id
from repro.manifest import LoadedManifest, Signature

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


def _decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"the manifest's {what} is not valid base64; it was altered") from exc


def verify_signature(loaded: LoadedManifest, trusted: dict[str, bytes] | None) -> str:
    """Verify a loaded manifest's signature; return the signer's key id.

    With a trust list, the signing key must be in it. Raises :class:`SignatureError` or
    :class:`UntrustedKeyError`.
    """
    sig = loaded.manifest.signature
    public = _decode(sig.public_key, "public key")
    if len(public) != 32:
        raise SignatureError("the manifest's public key is not 32 bytes; it was altered")
    if key_id(public) != sig.key_id:
        raise SignatureError("the manifest's key id does not match its public key; it was altered")
    body = {k: v for k, v in loaded.raw.items() if k != "signature"}
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            _decode(sig.value, "signature"), signed_bytes(body)
        )
    except InvalidSignature as exc:
        raise SignatureError(
            f"signature of {loaded.path} does not match its contents: the manifest was changed "
            "after it was signed"
        ) from exc
    if trusted is not None and sig.key_id not in trusted:
        known = ", ".join(sorted(trusted))
        raise UntrustedKeyError(
            f"{loaded.path} is signed by key {sig.key_id}, which is not in the trust list "
            f"(trusted: {known}); add the key if you trust its owner"
        )
    if trusted is not None and trusted[sig.key_id] != public:
        raise UntrustedKeyError(f"key {sig.key_id} in {loaded.path} differs from the trusted key")
    return sig.key_id
