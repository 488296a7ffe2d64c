"""Digests of a safetensors checkpoint in one pass: the file's SHA-256 and each tensor's.

A checkpoint record holds both a digest of the file and a digest per tensor. They are two claims
about the same bytes, and an audit trusts the per-tensor ones (identical digests mean identical
tensors, unread), so both must be checked against the content: this module reads the file once,
feeding every byte to the file digest and, in step, each tensor's bytes to that tensor's digest,
computed exactly as :func:`repro.records.hashing.sha256_tensor` computes it (``"<torch dtype>|<shape
tuple>|"`` followed by the raw little-endian bytes), without torch and without holding the file
in memory.

The header is validated as strictly as the safetensors library does: tensors must cover the data
area exactly, without gaps, overlaps or trailing bytes, so no byte of a checkpoint is outside
every tensor digest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

_CHUNK = 1 << 20
MAX_HEADER = 100 * 1024 * 1024
"""The largest header accepted (the safetensors library's own limit)."""

DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("torch.bool", 1), "U8": ("torch.uint8", 1), "I8": ("torch.int8", 1),
    "F8_E5M2": ("torch.float8_e5m2", 1), "F8_E4M3": ("torch.float8_e4m3fn", 1),
    "I16": ("torch.int16", 2), "U16": ("torch.uint16", 2), "F16": ("torch.float16", 2),
    "BF16": ("torch.bfloat16", 2), "I32": ("torch.int32", 4), "U32": ("torch.uint32", 4),
    "F32": ("torch.float32", 4), "I64": ("torch.int64", 8), "U64": ("torch.uint64", 8),
    "F64": ("torch.float64", 8),
}
"""safetensors dtype -> (torch's name for it, bytes per element)."""


class MalformedCheckpoint(ValueError):
    """The file is not a well-formed safetensors file; the message says why."""


@dataclass(frozen=True)
class CheckpointDigest:
    """What one pass over a checkpoint file found."""

    sha256: str
    size: int
    tensors: dict[str, str]


@dataclass
class _Span:
    name: str
    begin: int
    end: int
    digest: Any


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise MalformedCheckpoint("the header names a tensor twice")
    return dict(pairs)


def _span(name: str, entry: Any) -> _Span:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise MalformedCheckpoint(f"tensor {name!r} has no valid dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPES:
        raise MalformedCheckpoint(f"tensor {name!r} has unknown dtype {dtype!r}")
    ints = (isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in [*shape, *offsets]) \
        if isinstance(shape, list) and isinstance(offsets, list) else iter([False])
    if not all(ints) or len(offsets) != 2:
        raise MalformedCheckpoint(f"tensor {name!r} has a malformed shape or data_offsets")
    torch_dtype, width = DTYPES[dtype]
    begin, end = offsets
    if end - begin != math.prod(shape) * width:
        raise MalformedCheckpoint(f"tensor {name!r}: data_offsets do not match its dtype and shape")
    digest = hashlib.sha256(f"{torch_dtype}|{tuple(shape)}|".encode())
    return _Span(name, begin, end, digest)


def _read(handle: BinaryIO, count: int, file_digest: Any) -> bytes:
    data = handle.read(count)
    if len(data) != count:
        raise MalformedCheckpoint("the file ended early (truncated)")
    file_digest.update(data)
    return data


def digest_checkpoint(handle: BinaryIO) -> CheckpointDigest:
    """Read an open safetensors file once; its SHA-256, size and per-tensor digests.

    Raises :class:`MalformedCheckpoint` when the file is not well-formed safetensors.
    """
    size = os.fstat(handle.fileno()).st_size
    file_digest = hashlib.sha256()
    length = int.from_bytes(_read(handle, 8, file_digest), "little") if size >= 8 else -1
    if length < 2 or length > min(MAX_HEADER, size - 8):
        raise MalformedCheckpoint("its header length is impossible (truncated or not safetensors)")
    try:
        header = json.loads(_read(handle, length, file_digest), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MalformedCheckpoint("its header is not JSON") from exc
    if not isinstance(header, dict):
        raise MalformedCheckpoint("its header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise MalformedCheckpoint("its __metadata__ is not a string map")
    spans = sorted((_span(name, entry) for name, entry in header.items()), key=lambda s: (s.begin, s.end))
    position = 0
    for span in spans:
        if span.begin != position:
            raise MalformedCheckpoint("its tensors overlap or leave gaps in the data")
        position = span.end
    if position != size - 8 - length:
        raise MalformedCheckpoint("its tensors do not cover the data exactly (truncated or extra bytes)")
    for span in spans:
        remaining = span.end - span.begin
        while remaining:
            chunk = _read(handle, min(remaining, _CHUNK), file_digest)
            span.digest.update(chunk)
            remaining -= len(chunk)
    if handle.read(1):
        raise MalformedCheckpoint("the file grew while it was read")
    return CheckpointDigest(sha256=file_digest.hexdigest(), size=size,
                            tensors={s.name: s.digest.hexdigest() for s in spans})
