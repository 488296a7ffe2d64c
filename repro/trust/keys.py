"""Ed25519 signing keys: create, store safely, load, and read trust lists.

The private key lives in a PEM file created with mode 0600 (atomically); a key file readable by
group or others is refused, as ssh refuses one. The public key is kept beside it as ``<key>.pub``
in the one-line form trust lists use: ``ed25519 <base64 raw key> <comment>``. The private key is
never printed, logged or put in an exception message.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from repro.errors import InputError, ReproError, SigningKeyError
from repro.files import atomic
from repro.files.confine import open_regular
from repro.records.canonical import decode_base64

KEY_ENV_VAR = "REPRO_SIGNING_KEY"


def default_key_path() -> Path:
    """Where the signing key lives unless ``--key`` or ``REPRO_SIGNING_KEY`` says otherwise."""
    if env := os.environ.get(KEY_ENV_VAR):
        return Path(env).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config_home) / "repro" / "signing-key.pem"


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    """Raw 32-byte encoding of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: bytes) -> str:
    """Short, stable identifier of a raw public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    """A loaded private key with its public half and id; ``repr`` never shows the secret."""

    private: Ed25519PrivateKey
    path: Path

    @property
    def public_raw(self) -> bytes:
        """The raw public key bytes."""
        return public_key_bytes(self.private.public_key())

    @property
    def key_id(self) -> str:
        """The key id recorded in signatures."""
        return key_id(self.public_raw)

    def public_line(self, comment: str = "") -> str:
        """The ``.pub`` / trust-list line for this key."""
        encoded = base64.b64encode(self.public_raw).decode()
        return f"ed25519 {encoded} {comment or self.key_id}".rstrip() + "\n"

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r}, path={str(self.path)!r})"


def generate_key(path: Path, overwrite: bool = False) -> SigningKey:
    """Create a new key pair at ``path`` (mode 0600) and ``path.pub``; refuse to overwrite."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise SigningKeyError(
            f"{path} already exists; keep it, choose another --key, or replace it with --force "
            "(manifests signed with the old key then no longer match a trust list naming only the new one)"
        )
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
    atomic.write_bytes(path, pem, mode=0o600)
    key = SigningKey(private=private, path=path)
    atomic.write_text(public_key_path(path), key.public_line(), mode=0o644)
    return key


def public_key_path(path: Path) -> Path:
    """The public-key file that accompanies a private key file."""
    return Path(str(path) + ".pub")


def load_key(path: Path) -> SigningKey:
    """Load a private key, refusing one that group or others can read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise SigningKeyError(f"signing key {path} does not exist; create one with `repro keygen`") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(
            f"signing key {path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        with open_regular(path, "signing key") as handle:
            data = handle.read(1 << 16)
    except InputError as exc:  # a FIFO, device or folder: refused, never waited on
        raise SigningKeyError(str(exc)) from exc
    except OSError as exc:
        raise SigningKeyError(f"cannot read signing key {path}: {exc.strerror}") from exc
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The library's message can quote key material; never pass it on.
        raise SigningKeyError(
            f"{path} is not an unencrypted Ed25519 private key in PEM form; create one with "
            "`repro keygen`"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a non-Ed25519 key; create one with `repro keygen`")
    return SigningKey(private=private, path=path)


def load_or_create_key(path: Path | None) -> tuple[SigningKey, bool]:
    """Load the key at ``path`` (default location if None), creating it if absent.

    Returns the key and whether it was created now.
    """
    path = Path(path) if path else default_key_path()
    if path.exists():
        return load_key(path), False
    return generate_key(path), True


def local_key_id() -> str | None:
    """The key id of this user's own signing key (:func:`default_key_path`), or None if there is none.

    Never creates a key. A key file repro would refuse to sign with (readable by others, not an
    Ed25519 key) counts as none.
    """
    path = default_key_path()
    if not path.is_file():
        return None
    try:
        return load_key(path).key_id
    except ReproError:
        return None


_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P


def _decode_point(raw: bytes) -> tuple[int, int] | None:
    """The affine point a 32-byte Ed25519 encoding names (RFC 8032 5.1.3), or None if none."""
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    sign = raw[31] >> 7
    if y >= _P:  # non-canonical: refused, as RFC 8032 says
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    if (v * x * x - u) % _P != 0:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
        if (v * x * x - u) % _P != 0:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _double(point: tuple[int, int]) -> tuple[int, int]:
    x, y = point
    t = _D * x * x * y * y % _P
    return ((2 * x * y) * pow(1 + t, _P - 2, _P) % _P, (y * y + x * x) * pow(1 - t, _P - 2, _P) % _P)


def public_key_problem(raw: bytes) -> str | None:
    """Why ``raw`` cannot be an honest Ed25519 public key, or None if it can.

    OpenSSL (through ``cryptography``) accepts keys of small order, e.g. the identity point, with
    which a constant "signature" verifies over any content. Such a key (8P is the identity) is never
    produced by key generation, so it is refused wherever a public key is read.
    """
    if len(raw) != 32:
        return f"an Ed25519 public key is 32 bytes, this one is {len(raw)}"
    point = _decode_point(raw)
    if point is None:
        return "it is not a valid Ed25519 public key (not a point on the curve)"
    for _ in range(3):
        point = _double(point)
    if point == (0, 1):
        return "it is a weak Ed25519 public key of small order, with which forged signatures verify"
    return None


def parse_public_key(text: str, where: str) -> bytes:
    """Parse one trust-list entry: ``ed25519 <base64> [comment]``, a bare base64 key, or a PEM public key."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            public = serialization.load_pem_public_key(text.encode())
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise InputError(f"{where}: not a PEM public key") from exc
        if not isinstance(public, Ed25519PublicKey):
            raise InputError(f"{where}: not an Ed25519 public key")
        raw = public_key_bytes(public)
    else:
        fields = text.split()
        if fields[0] == "ed25519" and len(fields) > 1:
            encoded = fields[1]
        elif len(fields) == 1:
            encoded = fields[0]
        else:
            # The line is not quoted: --trusted-keys may name a file that is not a trust list (a secret).
            raise InputError(f"{where}: not a trust-list line; expected 'ed25519 <base64 key> [comment]'")
        try:
            raw = decode_base64(encoded)
        except ValueError as exc:
            raise InputError(f"{where}: the key is not valid base64 ({exc})") from exc
    if problem := public_key_problem(raw):
        raise InputError(f"{where}: {problem}; remove or replace this key")
    return raw


def _entries(text: str, path: Path) -> list[tuple[str, str]]:
    """Every key entry of a trust list with where it is; a line that is not one is an error."""
    entries: list[tuple[str, str]] = []
    block: list[str] = []
    start = 0
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if block:
            block.append(stripped)
            if stripped.startswith("-----END"):
                entries.append((f"{path}:{start}", "\n".join(block)))
                block = []
        elif stripped.startswith("-----BEGIN"):
            block, start = [stripped], n
        elif stripped and not stripped.startswith("#"):
            entries.append((f"{path}:{n}", stripped))
    if block:
        raise InputError(f"{path}:{start}: a PEM block that never ends; complete or remove it")
    return entries


MAX_TRUST_LIST_BYTES = 1 << 20
"""Largest trust list read (thousands of keys)."""


def load_trusted_keys(path: Path) -> dict[str, bytes]:
    """Read a trust list: one public key per line (``#`` comments) and/or PEM public-key blocks.

    Returns key id -> raw public key. Every entry must parse (an error names its line); a list
    with no key, a folder, or an empty path is an error, never "no trust list".
    """
    path = Path(path)
    if str(path) in ("", ".") or path.is_dir():
        raise InputError(f"trust list {path} is a folder; name the trust-list file")
    try:
        with open_regular(path, "trust list") as handle:  # a FIFO or device is refused, never waited on
            data = handle.read(MAX_TRUST_LIST_BYTES + 1)
        if len(data) > MAX_TRUST_LIST_BYTES:
            raise InputError(f"trust list {path} is larger than {MAX_TRUST_LIST_BYTES} bytes; name the trust-list file")
        text = data.decode("utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"trust list {path} does not exist; check --trusted-keys") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read trust list {path}; check the file") from exc
    keys: dict[str, bytes] = {}
    for where, entry in _entries(text, path):
        raw = parse_public_key(entry, where)
        keys[key_id(raw)] = raw
    if not keys:
        raise InputError(f"trust list {path} names no keys; add a line 'ed25519 <base64 key>'")
    return keys
