"""SHA-256 helpers for files, bytes and tensors; every digest repro records comes from here."""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily: start-up stays fast for commands that never hash tensors
    import torch

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_concat(parts: Iterable[bytes]) -> str:
    """Hex SHA-256 of the concatenation of ``parts``, without building it in memory."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def sha256_tensor(tensor: torch.Tensor) -> str:
    """Hex SHA-256 of a tensor's dtype, shape and raw little-endian bytes.

    dtype and shape are part of the digest so that a reshaped or re-typed tensor with the same
    bytes does not hash the same.
    """
    import torch

    contiguous = tensor.detach().to("cpu").contiguous()
    header = f"{contiguous.dtype}|{tuple(contiguous.shape)}|".encode()
    raw = contiguous.reshape(-1).view(torch.uint8).numpy().tobytes() if contiguous.numel() else b""
    return hashlib.sha256(header + raw).hexdigest()


def sha256_structure(obj: Any) -> str:
    """Hex SHA-256 of a nested structure: tensors, NumPy arrays, numbers, strings, bytes, None,
    and tuples, lists and dicts of them (dict keys in sorted order).

    Each value is hashed with its type (and a tensor's dtype and shape), so ``1`` and ``1.0``, or
    the same bytes in another dtype, give different digests. Used for batch fingerprints and for
    the identity of data a trainer generates.
    """
    digest = hashlib.sha256()
    _update_structure(digest, obj)
    return digest.hexdigest()


def _update_structure(digest: hashlib._Hash, obj: Any) -> None:
    torch = sys.modules.get("torch")  # a tensor can only exist once torch is imported
    numpy = sys.modules.get("numpy")
    if torch is not None and isinstance(obj, torch.Tensor):
        cpu = obj.detach().to("cpu").contiguous()
        digest.update(f"T{cpu.dtype}{tuple(cpu.shape)}|".encode())
        if cpu.numel():
            digest.update(cpu.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif numpy is not None and isinstance(obj, (numpy.ndarray, numpy.generic)):
        array = numpy.ascontiguousarray(obj)
        digest.update(f"A{array.dtype.str}{array.shape}|".encode())
        digest.update(array.tobytes())
    elif obj is None or isinstance(obj, (bool, int, str)):
        digest.update(f"{type(obj).__name__}:{obj!r}|".encode())
    elif isinstance(obj, float):
        digest.update(f"float:{obj.hex()}|".encode())
    elif isinstance(obj, (bytes, bytearray)):
        digest.update(f"bytes{len(obj)}|".encode() + bytes(obj))
    elif isinstance(obj, Mapping):
        digest.update(f"dict{len(obj)}|".encode())
        for key in sorted(obj, key=str):
            _update_structure(digest, key)
            _update_structure(digest, obj[key])
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__}{len(obj)}|".encode())
        for item in obj:
            _update_structure(digest, item)
    else:
        raise TypeError(
            f"cannot fingerprint a value of type {type(obj).__name__!r}; use tensors, arrays, numbers or strings"
        )


_DIGEST = re.compile(r"\b[0-9a-f]{64}\b")


def short_digest(value: str | None, keep: int = 12) -> str:
    """Text with every 64-hex digest cut to its first ``keep`` digits and "…" (for tables; JSON has all)."""
    if value is None:
        return "-"
    return _DIGEST.sub(lambda m: m.group(0)[:keep] + "…", value)
