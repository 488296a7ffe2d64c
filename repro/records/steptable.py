"""The step table: a run's per-step records as columns, in memory and in ``steps.safetensors``.

A manifest of schema version 2 keeps its per-step records (step, loss, learning rate, gradient
norm, tokens, batch fingerprint, seconds) out of the JSON, in a sidecar file in the run folder
whose SHA-256, size and row count the signed manifest records (``step_table``). The file is a
plain safetensors file, one 1-D column per field (see :data:`COLUMNS` and ``docs/manifest.md``),
so any tool with safetensors or a JSON parser and 8 lines of code can read it; its header's JSON
Schema is published as ``docs/step-table.schema.json``.

:class:`~repro.records.steps.StepColumns` (the columns in memory, no I/O) and
:class:`~repro.records.steps.StepView` live in :mod:`repro.records.steps`; this module is the file:
writing it, reading and checking it against the signed record, parsing it, and its published schema.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from repro.errors import ArtifactMismatchError, InputError, ManifestFormatError, MissingArtifactError
from repro.files import atomic
from repro.records.steps import Array, StepColumns, StepRecord, StepView

__all__ = ["COLUMNS", "FILE_NAME", "StepColumns", "StepRecord", "StepView", "inline_columns", "parse_table",
           "read_table", "step_table_schema", "table_bytes", "write_table"]

FORMAT = "repro.step-table"
"""``__metadata__["format"]`` of a step table file."""

FORMAT_VERSION = "1"
"""``__metadata__["version"]`` of the layout this release writes and reads."""

FILE_NAME = "steps.safetensors"
"""The step table's name in the run folder."""

COLUMNS: dict[str, tuple[str, str]] = {
    "step": ("I64", "1-based optimizer step; exactly 1, 2, ..., N"),
    "loss": ("F64", "training loss, the exact value the trainer reported (a float32 loss is exact in float64)"),
    "lr": ("F64", "learning rate the optimizer step used"),
    "grad_norm": ("F64", "total L2 norm of the gradients before clipping"),
    "tokens": ("I64", "tokens (or examples) the step consumed"),
    "batch": ("U8", "batch fingerprint: the 8 bytes whose lowercase hex is the 16-digit fingerprint; shape [N, 8]"),
    "seconds": ("F64", "wall-clock seconds of the step (timing: never compared)"),
}
"""Column name -> (safetensors dtype, meaning). Every column has N rows; ``batch`` is [N, 8]."""

_NUMPY: dict[str, np.dtype[Any]] = {"I64": np.dtype("<i8"), "F64": np.dtype("<f8"), "U8": np.dtype("u1")}

def _hex_batches(batch: Array, where: str) -> Array:
    """Fingerprints as uint8 [N, 8]; each must be 16 lowercase hex digits."""
    n = batch.shape[0]
    if n == 0:
        return np.zeros((0, 8), dtype=np.uint8)
    text = batch.astype("S16").tobytes() if batch.dtype.itemsize <= 16 else b""
    try:
        raw = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raw = b""
    packed = np.frombuffer(raw, dtype=np.uint8)
    if packed.size != 8 * n or not np.array_equal(_batch_strings(packed.reshape(n, 8)), batch):
        raise InputError(
            f"cannot write {where}: a batch fingerprint is not 16 lowercase hex digits; "
            "trainers must report repro.trainer_api.batch_fingerprint(batch)"
        )
    return packed.reshape(n, 8)


def _batch_strings(packed: Array) -> Array:
    """uint8 [N, 8] -> the N 16-hex-digit fingerprints as ``S16``."""
    return np.frombuffer(np.ascontiguousarray(packed).tobytes().hex().encode("ascii"), dtype="S16")


def table_bytes(columns: StepColumns, where: str = "the step table") -> bytes:
    """The bytes of a step table file for ``columns`` (``seconds`` required)."""
    from safetensors.numpy import save

    if columns.seconds is None:
        raise ValueError("a step table records the seconds of every step")
    arrays = {
        "step": columns.step, "loss": columns.loss, "lr": columns.lr, "grad_norm": columns.grad_norm,
        "tokens": columns.tokens, "batch": _hex_batches(columns.batch, where), "seconds": columns.seconds,
    }
    arrays = {name: np.ascontiguousarray(a, dtype=_NUMPY[COLUMNS[name][0]]) for name, a in arrays.items()}
    return save(arrays, metadata={"format": FORMAT, "version": FORMAT_VERSION})


def write_table(path: Path, columns: StepColumns) -> tuple[str, int]:
    """Write the step table atomically; return its SHA-256 and size."""
    data = table_bytes(columns, str(path))
    atomic.write_bytes(path, data)
    return hashlib.sha256(data).hexdigest(), len(data)


def _header(data: bytes, where: str) -> tuple[dict[str, Any], int]:
    """The safetensors header (a JSON object) and where the column bytes start."""
    if len(data) < 8:
        raise ManifestFormatError(f"{where} is not a step table (too short)")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ManifestFormatError(f"{where} is not a step table (header runs past the end)")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ManifestFormatError(f"{where} is not a step table (header is not JSON)") from exc
    if not isinstance(header, dict):
        raise ManifestFormatError(f"{where} is not a step table (header is not a JSON object)")
    return header, 8 + size


def parse_table(data: bytes, rows: int, where: str) -> StepColumns:
    """Parse and check a step table's bytes: exactly the documented columns and dtypes, ``rows``
    rows each, laid out back to back over the whole data section (as the safetensors format
    requires), steps 1..N, finite numbers. Raises :class:`ManifestFormatError` for anything else.

    The columns are read-only views of ``data`` (no copy), so a million steps cost their bytes once.
    """
    header, base = _header(data, where)
    meta = header.pop("__metadata__", None)
    if meta != {"format": FORMAT, "version": FORMAT_VERSION}:
        raise ManifestFormatError(f"{where} is not a {FORMAT} version {FORMAT_VERSION} file (metadata {meta!r})")
    if set(header) != set(COLUMNS):
        raise ManifestFormatError(f"{where} has columns {sorted(header)}, expected {sorted(COLUMNS)}")
    spans = []
    for name, (dtype, _) in COLUMNS.items():
        shape = [rows, 8] if name == "batch" else [rows]
        info = header[name] if isinstance(header[name], dict) else {}
        if info.get("dtype") != dtype or info.get("shape") != shape:
            raise ManifestFormatError(
                f"{where}: column {name} should be {dtype} {shape}, not {info.get('dtype')} {info.get('shape')}; "
                f"the manifest records {rows} steps"
            )
        offsets = info.get("data_offsets")
        width = 8 * rows
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or offsets[1] - offsets[0] != width):
            raise ManifestFormatError(f"{where}: column {name} has data_offsets {offsets!r}, not {width} bytes")
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    ends = [0] + [end for _, end, _ in spans]
    if [start for start, _, _ in spans] != ends[:-1] or base + ends[-1] != len(data):
        raise ManifestFormatError(f"{where}: the columns do not cover the file's data exactly; it is not a valid table")
    arrays: dict[str, Array] = {}
    for start, end, name in spans:
        numpy_dtype = _NUMPY[COLUMNS[name][0]]
        count = (end - start) // numpy_dtype.itemsize
        arrays[name] = np.frombuffer(data, dtype=numpy_dtype, count=count, offset=base + start)
    # Whether the steps are numbered 1..N is the manifest's consistency (repro.trust.consistency, exit 3),
    # checked there for the inline steps of a version 1 as for a table.
    for name in ("loss", "lr", "grad_norm", "seconds"):
        if not np.isfinite(arrays[name]).all():
            raise ManifestFormatError(f"{where}: column {name} holds a non-finite number")
    return StepColumns(
        step=arrays["step"], loss=arrays["loss"], lr=arrays["lr"], grad_norm=arrays["grad_norm"],
        tokens=arrays["tokens"], batch=_batch_strings(arrays["batch"].reshape(rows, 8)), seconds=arrays["seconds"],
    )


def read_table(root: Path, relative: str, sha256: str, size: int, rows: int) -> StepColumns:
    """Read the step table a manifest records as ``relative`` to ``root`` (the manifest's folder),
    check it is the recorded file, and parse it.

    The file is read once, through :mod:`repro.files.confine` (a path that leaves ``root`` or is not a
    regular file is :class:`~repro.errors.UnsafePathError`, exit 3); its bytes are hashed and
    parsed from memory, so what is checked is what is used. Missing:
    :class:`MissingArtifactError` (exit 4). Not the recorded bytes: :class:`ArtifactMismatchError`
    (exit 3). The recorded bytes but not a valid table (only a signer can make that):
    :class:`ManifestFormatError`.
    """
    from repro.files.confine import open_recorded

    path = Path(root) / relative
    try:
        with open_recorded(Path(root), relative, "steps") as handle:
            if handle is None:
                raise MissingArtifactError(f"1 file(s) missing: steps {relative}; restore it to verify")
            data = handle.read(size + 1)  # never more than the recorded size (+1 to see a longer file)
    except OSError as exc:
        raise InputError(f"cannot read step table {path}: {exc.strerror}; check its permissions") from exc
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise ArtifactMismatchError(
            f"1 file(s) changed since the run: steps {relative}; the manifest no longer describes these files"
        )
    return parse_table(data, rows, f"step table {path}")


def step_table_schema() -> dict[str, Any]:
    """JSON Schema of a step table file's safetensors header (the JSON after the 8-byte length)."""
    columns = {
        name: {
            "type": "object", "additionalProperties": False, "required": ["dtype", "shape", "data_offsets"],
            "description": meaning,
            "properties": {
                "dtype": {"const": dtype},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0},
                          "prefixItems": [{"type": "integer"}] + ([{"const": 8}] if name == "batch" else []),
                          "minItems": 2 if name == "batch" else 1, "maxItems": 2 if name == "batch" else 1},
                "data_offsets": {"type": "array", "items": {"type": "integer", "minimum": 0},
                                 "minItems": 2, "maxItems": 2},
            },
        }
        for name, (dtype, meaning) in COLUMNS.items()
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "repro step table (steps.safetensors) header",
        "description": (
            "A safetensors file: 8-byte little-endian header length, this JSON header, then the raw "
            "little-endian column bytes. Every column has N rows, N = step_table.rows of the signed "
            "manifest; the file's SHA-256 and size are step_table.sha256 and step_table.size."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": ["__metadata__", *COLUMNS],
        "properties": {
            "__metadata__": {
                "type": "object", "additionalProperties": False, "required": ["format", "version"],
                "properties": {"format": {"const": FORMAT}, "version": {"const": FORMAT_VERSION}},
            },
            **columns,
        },
    }


_INLINE_ADAPTER = TypeAdapter(tuple[list[StepRecord], list[float]])


def inline_columns(inline: Any, what: str) -> StepColumns:
    """A version-1 manifest's inline steps and step times, validated, as columns."""
    try:
        steps, seconds = _INLINE_ADAPTER.validate_python(inline, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        where = ".".join(str(p) for p in ["steps" if loc[0] == 0 else "timing.step_seconds", *loc[1:]])
        raise ManifestFormatError(f"{what} is not a valid manifest: field {where}: {first['msg']}") from exc
    if len(seconds) != len(steps):
        raise ManifestFormatError(
            f"{what} is not a valid manifest: timing.step_seconds has {len(seconds)} entries for {len(steps)} steps"
        )
    return StepColumns.from_records(steps, seconds)
