"""Signing keys: stored like ssh stores them, never leaked, and trust lists enforced."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from repro.cli import main
from repro.errors import SigningKeyError
from repro.files import atomic
from repro.records.manifest_file import incomplete_marker
from repro.trust.keys import generate_key, load_key, public_key_path
from tests.helpers import REAL_WRITE_ALL


def secret_forms(key_path: Path) -> list[str]:
    """Every form the private key could leak in: PEM lines, raw bytes as base64, hex, urlsafe."""
    key = load_key(key_path)
    raw = key.private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem_lines = [line for line in key_path.read_text().splitlines() if not line.startswith("-----")]
    # Characters 22-50 of the PEM body encode key bytes only (after the fixed PKCS#8 header), so
    # an echo of a damaged or truncated copy of the key is caught too.
    return pem_lines + [line[22:50] for line in pem_lines if len(line) >= 50] + [
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
        raw.hex().upper(),
        str(list(raw)),
    ]


def assert_no_secret(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"private key material in {where}"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o602, 0o700 | 0o004])
def test_a_key_others_can_access_is_refused(
    mode: int, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    key = tmp_path / "key.pem"
    generate_key(key)
    key.chmod(mode)
    with pytest.raises(SigningKeyError, match=f"mode {mode:o}"):
        load_key(key)
    out = tmp_path / "run.json"
    assert main(["run", "smoke", "--key", str(key), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"chmod 600 {key}" in " ".join(err.split())
    assert not incomplete_marker(out).exists()  # refused before anything was written
    key.chmod(0o600)
    assert load_key(key).key_id


def test_keygen_writes_0600_from_the_first_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The temporary file is 0600 before the key is in it, whatever the umask; its new folder 0700."""
    modes: list[int] = []

    def spy(fd: int, data: bytes) -> None:
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        REAL_WRITE_ALL(fd, data)

    monkeypatch.setattr(atomic, "write_all", spy)
    key = tmp_path / "new" / "dir" / "signing-key.pem"
    old = os.umask(0)
    try:
        assert main(["keygen", "--key", str(key)]) == 0
    finally:
        os.umask(old)
    assert modes == [0o600, 0o644]  # the private key, then the public one
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(public_key_path(key).stat().st_mode) == 0o644
    assert sorted(p.name for p in key.parent.iterdir()) == ["signing-key.pem", "signing-key.pem.pub"]
    assert_no_secret(capsys.readouterr().out, secret_forms(key), "keygen output")
    assert main(["keygen", "--key", str(key)]) == 2  # never overwritten by accident
    assert "already exists" in capsys.readouterr().err


def test_the_private_key_never_appears_in_outputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """keygen, run, verify and their error paths: console output, every file written, messages."""
    key = tmp_path / "keys" / "ci.pem"
    texts: list[tuple[str, str]] = []

    def call(*args: str) -> int:
        code = main(list(args))
        captured = capsys.readouterr()
        texts.append((" ".join(args), captured.out + captured.err))
        return code

    assert call("keygen", "--key", str(key)) == 0
    secrets = secret_forms(key)
    out = tmp_path / "out" / "run.json"
    assert call("run", "smoke", "--key", str(key), "--out", str(out)) == 0
    assert call("verify", str(out), "--trusted-keys", str(public_key_path(key))) == 0
    # Error paths that handle the key: unsafe mode, damaged file, another kind of key.
    key.chmod(0o644)
    assert call("run", "smoke", "--key", str(key), "--out", str(out)) == 2
    key.chmod(0o600)
    damaged = tmp_path / "damaged.pem"
    atomic.write_bytes(damaged, key.read_bytes()[:-40], mode=0o600)
    assert call("run", "smoke", "--key", str(damaged), "--out", str(out)) == 2
    other = tmp_path / "ec.pem"
    atomic.write_bytes(other, ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ), mode=0o600)
    assert call("run", "smoke", "--key", str(other), "--out", str(out)) == 2
    assert call("verify", str(out), "--trusted-keys", str(key)) == 2  # a private key as trust list
    for what, text in texts:
        assert_no_secret(text, secrets, f"the output of `repro {what}`")
    for path in tmp_path.rglob("*"):
        if path.is_file() and path not in (key, damaged):
            assert_no_secret(path.read_bytes().decode("latin-1"), secrets, str(path))
    key.chmod(0o644)
    for path in (key, damaged, other):
        with pytest.raises(SigningKeyError) as info:
            load_key(path)
        exc = info.value
        message = f"{exc!r} {exc} {exc.__cause__!r} {exc.__context__!r}"
        assert_no_secret(message, secrets, f"the error loading {path.name}")
    key.chmod(0o600)
    assert_no_secret(repr(load_key(key)) + str(load_key(key)), secrets, "repr(SigningKey)")


@pytest.fixture
def stranger_trust_list(tmp_path: Path) -> Path:
    stranger = generate_key(tmp_path / "stranger.pem")
    trust = tmp_path / "trusted.pub"
    trust.write_text("# the only key we trust\n" + stranger.public_line("stranger"))
    return trust


def test_a_trust_list_rejects_a_valid_signature_from_another_key(
    smoke_run: Path, repro_home: Path, stranger_trust_list: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["verify", str(smoke_run)]) == 0
    assert main(["verify", str(smoke_run), "--trusted-keys", str(stranger_trust_list)]) == 3
    err = capsys.readouterr().err
    assert "not in the trust list" in err and "add the key if you trust its owner" in err
    ours = (repro_home / "key.pem.pub").read_text()
    stranger_trust_list.write_text(stranger_trust_list.read_text() + ours)
    assert main(["verify", str(smoke_run), "--trusted-keys", str(stranger_trust_list)]) == 0
    assert "a trusted key" in capsys.readouterr().out


def test_an_unusable_trust_list_is_an_input_error(smoke_run: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.pub"
    empty.write_text("# nobody\n")
    assert main(["verify", str(smoke_run), "--trusted-keys", str(empty)]) == 2
    assert "names no keys" in capsys.readouterr().err
    assert main(["verify", str(smoke_run), "--trusted-keys", str(tmp_path / "absent.pub")]) == 2
