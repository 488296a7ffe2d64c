"""Checkpoints compared tensor by tensor.

The manifest records a SHA-256 per tensor and the rerun's worker reports the same digests, so
identical tensors are recognised without loading them; only tensors whose digests differ are read
(read through :mod:`repro.files.confine`, the one reader of run files) and measured: largest absolute
difference and relative L2 difference ``||rerun - recorded|| / ||recorded||``, in float64.
Integer tensors (step counters, RNG states) have no tolerance: they match exactly or differ.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from repro.audits.options import Tolerance
from repro.audits.report import CheckpointComparison, TensorDifference, Verdict
from repro.errors import ArtifactMismatchError, InputError, MissingArtifactError, ReproError, TrainingProcessError
from repro.files.confine import open_recorded, open_regular
from repro.records.hashing import sha256_bytes

if TYPE_CHECKING:
    import torch

DEVICE_RNG_PREFIX = "repro.rng.cuda"
"""RNG states that exist only in processes that used CUDA; on one side only when devices differ."""


def _measure(name: str, recorded: torch.Tensor, rerun: torch.Tensor, tolerance: Tolerance) -> TensorDifference:
    import torch

    dtype, shape = str(recorded.dtype).removeprefix("torch."), list(recorded.shape)
    if recorded.dtype != rerun.dtype or recorded.shape != rerun.shape:
        return TensorDifference(
            name=name, status="differs", dtype=f"{dtype} vs {str(rerun.dtype).removeprefix('torch.')}",
            shape=shape, max_abs_diff=None, rel_l2=None, differing_elements=None, elements=recorded.numel(),
        )
    if not recorded.is_floating_point():
        return TensorDifference(
            name=name, status="differs", dtype=dtype, shape=shape, max_abs_diff=None, rel_l2=None,
            differing_elements=int(torch.count_nonzero(recorded != rerun).item()), elements=recorded.numel(),
        )
    a, b = recorded.to(torch.float64), rerun.to(torch.float64)
    delta = b - a  # exact in float64 for float32/16 inputs
    differing = int(torch.count_nonzero(delta).item())
    max_abs = float(delta.abs().max().item()) if delta.numel() else 0.0
    norm, dnorm = float(torch.linalg.vector_norm(a).item()), float(torch.linalg.vector_norm(delta).item())
    rel = dnorm / norm if norm > 0 else dnorm  # an all-zero recorded tensor: absolute L2 instead
    finite = math.isfinite(rel) and math.isfinite(max_abs)
    within = finite and rel <= tolerance.tensor_rtol
    return TensorDifference(
        name=name, status="within_tolerance" if within else "differs", dtype=dtype, shape=shape,
        max_abs_diff=max_abs if math.isfinite(max_abs) else None, rel_l2=rel if math.isfinite(rel) else None,
        differing_elements=differing, elements=recorded.numel(),
    )


def _one_side(name: str, status: Literal["missing_in_rerun", "only_in_rerun", "device_only"]) -> TensorDifference:
    return TensorDifference(name=name, status=status, dtype=None, shape=None, max_abs_diff=None, rel_l2=None,
                            differing_elements=None, elements=None)


def _unreadable(path: Path, step: int, recorded: bool, why: str) -> ReproError:
    # The recorded file matched its signed SHA-256, so it is what the signer shipped: a file that
    # is not the tensors the manifest lists is an integrity failure. The rerun's own file: a crash.
    if recorded:
        return ArtifactMismatchError(
            f"checkpoint {path} (step {step}) is not the tensors its manifest records ({why}); "
            "do not trust this run's checkpoints"
        )
    return TrainingProcessError(f"the rerun's checkpoint {path} (step {step}) cannot be read ({why})")


def _read_tensors(file: Path | str, root: Path | None, sha256: str | None, names: list[str], *, step: int,
                  recorded: bool) -> dict[str, Any]:
    """The tensors ``names`` of a checkpoint, read through :mod:`repro.files.confine` (the one reader).

    With ``root``, ``file`` is a manifest's relative path, confined to ``root`` (no symlink out, no
    FIFO or device); else it is a file repro made (a rerun's), opened as a regular file without
    blocking. The bytes are checked against ``sha256`` when given, then parsed.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    what = "checkpoint" if recorded else "the rerun's checkpoint"
    if root is None:
        try:
            with open_regular(Path(file), what) as handle:
                data = handle.read()
        except FileNotFoundError as exc:
            raise _unreadable(Path(file), step, recorded, "it disappeared during the audit") from exc
        except (InputError, OSError) as exc:
            raise _unreadable(Path(file), step, recorded, "it is not a regular file") from exc
    else:
        with open_recorded(root, str(file), what) as handle:
            if handle is None:
                raise MissingArtifactError(f"checkpoint {file} disappeared during the audit; restore it")
            data = handle.read()
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise ArtifactMismatchError(f"checkpoint {file} changed during the audit, after it was verified")
    try:
        loaded = load(data)
        return {name: loaded[name] for name in names}
    except (SafetensorError, ValueError, KeyError) as exc:
        raise _unreadable(Path(file), step, recorded, f"not the recorded tensors: {type(exc).__name__}") from exc


def compare_checkpoint(  # noqa: PLR0917 - one checkpoint, both sides: the order reads as the call
    step: int, recorded_file: Path | str, recorded_digests: dict[str, str], rerun_file: Path | str,
    rerun_digests: dict[str, str], tolerance: Tolerance, device_changed: bool, *,
    recorded_root: Path | None = None, recorded_sha256: str | None = None,
    rerun_root: Path | None = None, rerun_sha256: str | None = None,
) -> CheckpointComparison:
    """Compare one checkpoint; tensors whose digests match are identical without being read.

    With ``recorded_root``, ``recorded_file`` is the manifest's relative path, read through
    :mod:`repro.files.confine` and checked against ``recorded_sha256`` before use; the same for
    ``rerun_root``/``rerun_sha256`` (the second manifest of a diff).
    """
    names = sorted(set(recorded_digests) | set(rerun_digests))
    identical = [n for n in names if recorded_digests.get(n) == rerun_digests.get(n)]
    differences: list[TensorDifference] = []
    changed = [n for n in names if n in recorded_digests and n in rerun_digests and n not in identical]
    for name in names:
        if name in identical or name in changed:
            continue
        if device_changed and name.startswith(DEVICE_RNG_PREFIX):
            differences.append(_one_side(name, "device_only"))
        else:
            differences.append(_one_side(name, "only_in_rerun" if name in rerun_digests else "missing_in_rerun"))
    if changed:
        recorded = _read_tensors(recorded_file, recorded_root, recorded_sha256, changed, step=step, recorded=True)
        new = _read_tensors(rerun_file, rerun_root, rerun_sha256, changed, step=step,
                            recorded=rerun_root is not None)
        for name in changed:
            differences.append(_measure(name, recorded[name], new[name], tolerance))
    differences.sort(key=lambda d: (d.status == "device_only", d.status == "within_tolerance",
                                    -(d.rel_l2 or 0.0), d.name))
    verdict: Verdict
    if any(d.status in ("differs", "missing_in_rerun", "only_in_rerun") for d in differences):
        verdict = "diverged"
    elif differences:
        verdict = "within_tolerance"
    else:
        verdict = "bitwise"
    return CheckpointComparison(step=step, verdict=verdict, tensors=len(names), identical=len(identical),
                                differences=differences)
