"""SHA-256 helpers for files, bytes and tensors; every digest repro records comes from here."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

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


def sha256_tensor(tensor: "torch.Tensor") -> str:  # noqa: F821 - torch imported lazily
    """Hex SHA-256 of a tensor's dtype, shape and raw little-endian bytes.

    dtype and shape are part of the digest so that a reshaped or re-typed tensor with the same
    bytes does not hash the same.
    """
    import torch

    contiguous = tensor.detach().to("cpu").contiguous()
    header = f"{contiguous.dtype}|{tuple(contiguous.shape)}|".encode()
    raw = contiguous.reshape(-1).view(torch.uint8).numpy().tobytes() if contiguous.numel() else b""
    return hashlib.sha256(header + raw).hexdigest()
