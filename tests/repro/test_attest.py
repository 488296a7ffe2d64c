"""`repro attest`: an in-toto Statement v1 in a DSSE envelope, checked by an independent verifier.

securesystemslib (the in-toto/TUF project's crypto library) checks the envelopes here with its
own DSSE and Ed25519 code, so a bug shared by repro's signer and verifier cannot hide.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]  # exported at runtime, not in its stubs

from repro.cli import main
from repro.errors import SignatureError, UntrustedKeyError
from repro.records.hashing import sha256_file
from repro.records.manifest_file import load_manifest
from repro.trust.attest import PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE, pae, verify_envelope
from repro.trust.keys import default_key_path, key_id, load_key, parse_public_key, public_key_path


def _independent_key() -> SSlibKey:
    """The run key's public half, read from its .pub file, as securesystemslib's key."""
    raw = parse_public_key(public_key_path(default_key_path()).read_text(), "pub")
    return SSlibKey(key_id(raw), "ed25519", "ed25519", {"public": raw.hex()})


@pytest.fixture
def attested(smoke_copy: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run.intoto.jsonl"
    assert main(["attest", str(smoke_copy), "--out", str(out), "--public-key-out", str(tmp_path / "key.pem")]) == 0
    return out


def test_pae_matches_the_dsse_spec_example() -> None:
    expected = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert pae("http://example.com/HelloWorld", b"hello world") == expected


def test_envelope_verifies_with_securesystemslib(attested: Path, smoke_copy: Path) -> None:
    envelope = SslibEnvelope.from_dict(json.loads(attested.read_text()))
    key = _independent_key()
    assert envelope.payload_type == PAYLOAD_TYPE
    assert set(envelope.verify([key], 1)) == {key.keyid}

    statement = json.loads(envelope.payload)
    assert statement["_type"] == STATEMENT_TYPE and statement["predicateType"] == PREDICATE_TYPE
    loaded = load_manifest(smoke_copy)
    expected = {smoke_copy.name: sha256_file(smoke_copy)}
    expected |= {c.path: c.sha256 for c in loaded.manifest.checkpoints}
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == expected
    for name, digest in expected.items():  # subject names resolve from the manifest's folder
        assert sha256_file(smoke_copy.parent / name) == digest
    assert statement["predicate"]["record"] == loaded.raw


def test_changed_payload_fails_both_verifiers(attested: Path) -> None:
    data = json.loads(attested.read_text())
    statement = json.loads(base64.b64decode(data["payload"]))
    statement["subject"][1]["digest"]["sha256"] = "0" * 64
    data["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(VerificationError):
        SslibEnvelope.from_dict(copy.deepcopy(data)).verify([_independent_key()], 1)  # from_dict consumes its input
    signer = load_key(default_key_path())
    with pytest.raises(SignatureError):
        verify_envelope(json.dumps(data).encode(), {signer.key_id: signer.public_raw})


def test_repro_verifier_accepts_the_envelope_only_for_a_trusted_key(attested: Path) -> None:
    signer = load_key(default_key_path())
    statement = verify_envelope(attested.read_bytes(), {signer.key_id: signer.public_raw})
    assert statement.predicate["manifestSigner"] == signer.key_id
    with pytest.raises(UntrustedKeyError):
        verify_envelope(attested.read_bytes(), {"0" * 16: b"\0" * 32})


def test_public_key_pem_is_the_signing_key(attested: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    public = load_pem_public_key((tmp_path / "key.pem").read_bytes())
    assert public.public_bytes(Encoding.Raw, PublicFormat.Raw) == load_key(default_key_path()).public_raw


def test_a_changed_checkpoint_is_not_attested(smoke_copy: Path, tmp_path: Path, capsys) -> None:
    checkpoint = smoke_copy.parent / load_manifest(smoke_copy).manifest.checkpoints[-1].path
    data = bytearray(checkpoint.read_bytes())
    data[-1] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    out = tmp_path / "never.intoto.jsonl"
    assert main(["attest", str(smoke_copy), "--out", str(out)]) == 3
    assert not out.exists()
    assert "changed" in capsys.readouterr().err


def test_an_untrusted_manifest_is_not_attested(smoke_copy: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    assert main(["keygen", "--key", str(other)]) == 0
    out = tmp_path / "never.intoto.jsonl"
    assert main(["attest", str(smoke_copy), "--out", str(out), "--trusted-keys", str(public_key_path(other))]) == 3
    assert not out.exists()
