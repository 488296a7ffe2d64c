"""The software and hardware environment of the process that trains.

Called inside the training child process, after determinism settings are applied, so the record
shows what was actually in force there, not what the parent intended.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Literal

from repro.records.manifest import EnvironmentRecord


def distribution_name(name: str) -> str:
    """A distribution's name in the one form repro records and matches: PEP 503's (lowercase, each
    run of ``-``, ``_`` and ``.`` as one ``-``), so ``Zope.Interface`` and ``zope_interface`` are one."""
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


NUMERIC_ENV_VARS: dict[str, tuple[str, Literal["certain", "high", "medium", "low"]]] = {
    "PYTHONHASHSEED": ("hashseed", "medium"),
    "OMP_NUM_THREADS": ("threads", "high"),
    "MKL_NUM_THREADS": ("threads", "high"),
    "OPENBLAS_NUM_THREADS": ("threads", "high"),
    "OPENBLAS_CORETYPE": ("blas", "high"),
    "OPENBLAS_L2_SIZE": ("blas", "medium"),
    "MKL_CBWR": ("blas", "high"),
    "KMP_DETERMINISTIC_REDUCTION": ("blas", "high"),
    "ATEN_CPU_CAPABILITY": ("cpu", "high"),
    "CUBLAS_WORKSPACE_CONFIG": ("determinism", "high"),
    "NVIDIA_TF32_OVERRIDE": ("determinism", "high"),
    "CUDA_VISIBLE_DEVICES": ("device", "high"),
    "TORCH_CUDNN_V8_API_DISABLED": ("cuda", "medium"),
    "NCCL_ALGO": ("world", "high"),
    "NCCL_PROTO": ("world", "high"),
    "GLIBC_TUNABLES": ("allocator", "low"),  # speed only: torch aligns every tensor to 64 bytes
}
"""Environment variables that can change numerics, thread use or speed, recorded whether set or not;
for each, what it influences and how likely a change of it is to change the numbers (the audit
ranks differences by this). The one list: capture and audit both read it."""


def _cpuinfo() -> tuple[str | None, list[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or None, []
    model: str | None = None
    flags: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = sorted(set(value.split()))
    return model, flags


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform says: for benchmarks' records."""
    return _cpuinfo()[0] or platform.processor() or platform.machine()


def installed_distributions() -> dict[str, str]:
    """Every installed distribution, name (normalised, lower case) -> version."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(distribution_name(name), dist.version)
    return dict(sorted(found.items()))


def determinism_flags() -> dict[str, bool | str | int | None]:
    """The torch settings that decide whether results are bit-reproducible."""
    import torch
    import torch._inductor.config as inductor

    return {
        "use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "hash_randomization": bool(sys.flags.hash_randomization),
        "cuda_matmul_allow_bf16_reduced_precision_reduction":
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
        "inductor_deterministic": inductor.deterministic,
        "inductor_fallback_random": inductor.fallback_random,
        "inductor_fx_graph_cache": inductor.fx_graph_cache,
        "inductor_fresh_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR", "").startswith(
            os.path.join(tempfile.gettempdir(), "repro-inductor-")
        ),
    }


def capture_environment() -> EnvironmentRecord:
    """Record this process's environment (call after determinism settings are applied)."""
    import torch

    cpu_model, cpu_flags = _cpuinfo()
    cuda = torch.cuda.is_available()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # pragma: no cover - older torch
        capability = None
    return EnvironmentRecord(
        python=platform.python_version(),
        python_implementation=platform.python_implementation(),
        os=platform.platform(),
        kernel=platform.release(),
        machine=platform.machine(),
        cpu_model=cpu_model,
        cpu_flags=cpu_flags,
        cpu_capability=capability,
        cpu_count=os.cpu_count(),
        torch_version=torch.__version__,
        torch_build=torch.__config__.show(),
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        cuda_version=torch.version.cuda,
        # torch leaves torch.backends.cudnn.version unannotated
        cudnn_version=torch.backends.cudnn.version() if cuda else None,  # type: ignore[no-untyped-call]
        devices=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        distributions=installed_distributions(),
        env_vars={name: os.environ.get(name) for name in NUMERIC_ENV_VARS},
        determinism=determinism_flags(),
    )
