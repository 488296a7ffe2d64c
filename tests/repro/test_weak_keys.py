"""Signatures mean something: no weak public key, no silent "no trust list".

An Ed25519 public key of small order (e.g. the identity point) lets one constant "signature"
verify over any content, and ``cryptography`` accepts it; repro refuses such keys wherever it reads
a public key: in a manifest's signature block, in a trust list, in an attestation's trusted keys.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from repro.cli import main
from repro.errors import InputError, SignatureError
from repro.trust.attest import PAYLOAD_TYPE, verify_envelope
from repro.trust.keys import generate_key, key_id, load_trusted_keys, public_key_problem

P = 2**255 - 19
SMALL_ORDER = [bytes.fromhex(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity (order 1)
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
)]
NON_CANONICAL = [(P + 1).to_bytes(32, "little"), P.to_bytes(32, "little")]  # the identity and (0, 0) as y + p
IDENTITY = SMALL_ORDER[0]
FORGED = IDENTITY + bytes(32)
"""R = identity, S = 0: verifies under the identity key for every message."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_the_forgery_is_real_without_the_check() -> None:
    # If cryptography ever starts refusing these keys, this test says so instead of passing vacuously.
    Ed25519PublicKey.from_public_bytes(IDENTITY).verify(FORGED, b"any content at all")


@pytest.mark.parametrize("raw", SMALL_ORDER + NON_CANONICAL, ids=lambda raw: raw.hex()[:8] + raw.hex()[-2:])
def test_every_small_order_or_non_canonical_key_is_refused(raw: bytes) -> None:
    assert public_key_problem(raw) is not None


def test_generated_keys_are_accepted() -> None:
    for _ in range(50):
        public = Ed25519PrivateKey.generate().public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert public_key_problem(raw) is None


def _forge(manifest: Path, public: bytes) -> None:
    raw = json.loads(manifest.read_text())
    raw["run"]["settings"]["seed"] = 4242  # any content: the forged signature "verifies" all of it
    raw["signature"].update(key_id=key_id(public), public_key=_b64(public), value=_b64(FORGED))
    manifest.write_text(json.dumps(raw))


def test_a_manifest_signed_by_a_small_order_key_is_an_integrity_failure(
    smoke_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _forge(smoke_copy, IDENTITY)
    assert main(["verify", str(smoke_copy)]) == 3
    assert "small order" in capsys.readouterr().err
    assert main(["attest", str(smoke_copy), "--out", str(tmp_path / "a.jsonl")]) == 3
    assert not (tmp_path / "a.jsonl").exists()
    assert main(["audit", str(smoke_copy)]) == 3
    assert "small order" in capsys.readouterr().err


@pytest.mark.parametrize("raw", SMALL_ORDER[:3], ids=["identity", "order2", "order4"])
def test_a_trust_list_naming_a_small_order_key_is_refused(
    raw: bytes, smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = tmp_path / "trusted.txt"
    trust.write_text(f"# team keys\n{generate_key(tmp_path / 'k.pem').public_line()}ed25519 {_b64(raw)} evil\n")
    with pytest.raises(InputError, match=r"trusted.txt:3: .*small order"):
        load_trusted_keys(trust)
    assert main(["verify", str(smoke_run), "--trusted-keys", str(trust)]) == 2
    assert "trusted.txt:3" in capsys.readouterr().err


def test_an_attestation_with_a_small_order_trusted_key_is_refused() -> None:
    envelope = {"payloadType": PAYLOAD_TYPE, "payload": _b64(b"{}"),
                "signatures": [{"keyid": key_id(IDENTITY), "sig": _b64(FORGED)}]}
    with pytest.raises(SignatureError, match="small order"):
        verify_envelope(json.dumps(envelope).encode(), {key_id(IDENTITY): IDENTITY})


@pytest.mark.parametrize("text", ["", "\n", "   \n\t\n", "# only comments\n\n"])
@pytest.mark.parametrize("command", ["verify", "audit", "attest"])
def test_an_empty_trust_list_is_an_error_never_no_trust_list(
    text: str, command: str, smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = tmp_path / "trusted.txt"
    trust.write_text(text)
    assert main([command, str(smoke_run), "--trusted-keys", str(trust)]) == 2
    assert "names no keys" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["verify", "audit", "attest"])
def test_an_empty_trusted_keys_argument_is_an_error(
    command: str, smoke_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, str(smoke_run), "--trusted-keys", ""]) == 2
    assert "trust list" in capsys.readouterr().err


def test_every_key_line_counts_and_a_bad_line_is_named(tmp_path: Path) -> None:
    one, two = generate_key(tmp_path / "one.pem"), generate_key(tmp_path / "two.pem")
    pem = serialization.load_pem_private_key((tmp_path / "two.pem").read_bytes(), None).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    trust = tmp_path / "trusted.txt"
    # A PEM block and one-line keys in one file: before, the PEM block hid every other line.
    trust.write_text(f"{one.public_line()}\n{pem}")
    assert set(load_trusted_keys(trust)) == {one.key_id, two.key_id}
    for bad, line in ((f"{one.public_line()}ssh-ed25519 {_b64(two.public_raw)} me\n", 2),
                      (f"{one.public_line()}{pem}ed25519 not-base64!\n", 5),
                      (f"# x\n{pem.splitlines()[0]}\n{pem.splitlines()[1]}\n", 2)):
        trust.write_text(bad)
        with pytest.raises(InputError, match=rf"trusted.txt:{line}: "):
            load_trusted_keys(trust)
