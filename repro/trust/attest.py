"""In-toto attestations of verified runs: a Statement v1 in a DSSE envelope, signed with Ed25519.

``repro attest MANIFEST`` first verifies the manifest (signature, trust, every artifact hash), then
states, under the signer's key, "these checkpoints and this manifest, with these SHA-256
digests, are the products of this run record". The envelope is standard, so tools that know
nothing of repro can check it offline with the public key (securesystemslib's DSSE ``Envelope``,
``cosign verify-blob-attestation``; see ``docs/attestation.md``).

The wire format (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md and
https://github.com/secure-systems-lab/dsse/blob/master/protocol.md)::

    envelope  = {"payloadType": "application/vnd.in-toto+json",
                 "payload": base64(statement), "signatures": [{"keyid": ID, "sig": base64(sig)}]}
    statement = {"_type": "https://in-toto.io/Statement/v1", "subject": [...],
                 "predicateType": PREDICATE_TYPE, "predicate": {...}}
    sig       = Ed25519(PAE(payloadType, statement bytes))
    PAE(t, b) = "DSSEv1" SP len(t) SP t SP len(b) SP b    (lengths: ASCII decimal byte counts)

The signature covers the payload bytes exactly as they are in the envelope; verification decodes
and checks those bytes and never re-serialises the statement.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ConfigDict, Field, ValidationError

from repro.errors import InputError, SignatureError, UntrustedKeyError
from repro.records.base import FrozenRecord
from repro.records.canonical import canonical_bytes, decode_base64, parse_json
from repro.records.hashing import sha256_bytes
from repro.records.validation import describe
from repro.trust.keys import SigningKey, key_id, public_key_problem
from repro.trust.verify import VerifyResult

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://repro.dev/attestation/run-record/v1"
"""Names this predicate's schema (a URI used as an identifier; see docs/attestation.md)."""


class _Wire(FrozenRecord):
    """Frozen and strict, as every record (repro.records.base)."""


class Subject(_Wire):
    """An artifact the statement is about: its name and digests."""

    name: str
    digest: dict[str, str]


class Statement(_Wire):
    """An in-toto Statement v1."""

    type_: Literal["https://in-toto.io/Statement/v1"] = Field(STATEMENT_TYPE, alias="_type")
    subject: list[Subject] = Field(min_length=1)
    predicateType: str
    predicate: dict[str, Any]

    model_config = ConfigDict(populate_by_name=True)


class EnvelopeSignature(_Wire):
    """One DSSE signature."""

    keyid: str
    sig: str


class Envelope(_Wire):
    """A DSSE envelope."""

    payloadType: str
    payload: str
    signatures: list[EnvelopeSignature] = Field(min_length=1)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding of a payload and its type."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def build_statement(verified: VerifyResult) -> Statement:
    """The statement for a verified manifest: its checkpoints and itself as subjects.

    Subject names are paths relative to the manifest's folder (the manifest by its file name), so
    ``cosign verify-blob-attestation`` can be run from that folder on any of them.
    """
    loaded = verified.loaded
    # The manifest's digest is of the bytes that were verified, not of the file as it is now.
    subjects = [Subject(name=loaded.path.name, digest={"sha256": sha256_bytes(verified.document)})]
    subjects += [Subject(name=c.path, digest={"sha256": c.sha256}) for c in loaded.manifest.checkpoints]
    return Statement(
        subject=subjects,
        predicateType=PREDICATE_TYPE,
        predicate={
            "manifest": loaded.path.name,
            "manifestSigner": verified.key_id,
            "manifestSignerTrusted": verified.trusted,
            "record": loaded.raw,
        },
    )


def sign_statement(statement: Statement, key: SigningKey) -> Envelope:
    """Wrap ``statement`` in a DSSE envelope signed by ``key``."""
    payload = canonical_bytes(statement.model_dump(mode="json", by_alias=True))
    signature = key.private.sign(pae(PAYLOAD_TYPE, payload))
    return Envelope(
        payloadType=PAYLOAD_TYPE,
        payload=base64.b64encode(payload).decode(),
        signatures=[EnvelopeSignature(keyid=key.key_id, sig=base64.b64encode(signature).decode())],
    )


def envelope_bytes(envelope: Envelope) -> bytes:
    """The bytes written for an envelope: one line of JSON (the ``.intoto.jsonl`` convention)."""
    return json.dumps(envelope.model_dump(mode="json"), separators=(",", ":")).encode() + b"\n"


def _b64(value: str, what: str) -> bytes:
    try:
        return decode_base64(value)
    except ValueError as exc:
        raise SignatureError(f"the envelope's {what} is {exc}; it was altered") from exc


def verify_envelope(data: bytes, trusted: dict[str, bytes]) -> Statement:
    """Check an envelope against trusted keys (key id -> raw Ed25519 key); return its statement.

    Raises :class:`InputError` for a malformed envelope, :class:`UntrustedKeyError` when no
    signature is by a trusted key, :class:`SignatureError` when a trusted key's signature fails.
    """
    try:
        envelope = Envelope.model_validate(parse_json(data, "attestation envelope"))
    except ValidationError as exc:
        raise InputError(f"not a DSSE envelope: {describe(exc)}") from exc
    if envelope.payloadType != PAYLOAD_TYPE:
        raise InputError(f"envelope payload type is {envelope.payloadType!r}, not {PAYLOAD_TYPE!r}")
    payload = _b64(envelope.payload, "payload")
    known = [s for s in envelope.signatures if s.keyid in trusted]
    if not known:
        ids = ", ".join(s.keyid for s in envelope.signatures)
        raise UntrustedKeyError(f"the attestation is signed by {ids}, none of which is trusted")
    for sig in known:
        public = trusted[sig.keyid]
        if key_id(public) != sig.keyid:
            raise UntrustedKeyError(f"trusted key {sig.keyid} does not match its id")
        if problem := public_key_problem(public):
            raise SignatureError(f"trusted key {sig.keyid} is refused: {problem}")
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(_b64(sig.sig, "signature"),
                                                              pae(envelope.payloadType, payload))
        except InvalidSignature as exc:
            raise SignatureError(f"the attestation's signature by {sig.keyid} does not match its payload") from exc
    try:
        return Statement.model_validate(parse_json(payload, "attestation payload"))
    except ValidationError as exc:
        raise InputError(f"the payload is not an in-toto Statement v1: {describe(exc)}") from exc


def public_key_pem(public: bytes) -> bytes:
    """A raw Ed25519 public key as a PEM SubjectPublicKeyInfo block (what cosign's --key reads)."""
    return Ed25519PublicKey.from_public_bytes(public).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def default_output(manifest: Path) -> Path:
    """Where ``repro attest`` writes by default: ``<manifest stem>.intoto.jsonl`` beside it."""
    manifest = Path(manifest)
    return manifest.with_name(manifest.stem + ".intoto.jsonl")
