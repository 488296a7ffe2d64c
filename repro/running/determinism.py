"""Determinism, enforced: the controlled environment of a training process, seeding, RNG state.

``PYTHONHASHSEED`` and thread counts only take effect at interpreter start, so the launcher
starts training in a child process with :func:`controlled_environment`; the child then calls
:func:`apply_determinism` before anything else touches torch.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING

from repro.errors import DeviceUnavailableError, ProcessEnvironmentError
from repro.records.manifest import RunSettings

if TYPE_CHECKING:  # torch is imported lazily, inside the functions that use it
    import torch

CUBLAS_WORKSPACE_CONFIG = ":4096:8"
"""cuBLAS needs a fixed workspace for deterministic results (CUDA docs, 'Results reproducibility')."""

def controlled_environment(settings: RunSettings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables a training child runs with."""
    env = dict(os.environ if base is None else base)
    threads = str(settings.threads)
    env.update(
        PYTHONHASHSEED=str(settings.pythonhashseed),
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        OPENBLAS_NUM_THREADS=threads,
        CUBLAS_WORKSPACE_CONFIG=CUBLAS_WORKSPACE_CONFIG,
        # Inductor skips on-device benchmarking that can pick kernels with other numerics.
        TORCHINDUCTOR_DETERMINISTIC="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def require_device(device: str) -> None:
    """Raise :class:`DeviceUnavailableError` unless ``device`` is usable here; called before
    anything is written or computed (torch is imported only for ``cuda``)."""
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            "--device cuda was asked for but no CUDA device is available here; use --device cpu"
        )
def _fresh_inductor_cache() -> None:
    """Point inductor (and Triton beneath it) at an empty cache for this process, removed at exit.

    A compiled run then compiles everything itself, as its first run did; a warm shared cache
    could hand it kernels compiled under other settings or by another torch build.
    """
    folder = tempfile.mkdtemp(prefix="repro-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    os.environ["TRITON_CACHE_DIR"] = os.path.join(folder, "triton")
    atexit.register(shutil.rmtree, folder, True)


def apply_determinism(settings: RunSettings) -> torch.device:
    """Set torch's determinism flags and thread counts, seed every global RNG; return the device.

    Must run in a process started with :func:`controlled_environment`.
    """
    expected = str(settings.pythonhashseed)
    if os.environ.get("PYTHONHASHSEED") != expected:
        raise ProcessEnvironmentError(
            f"training process started with PYTHONHASHSEED={os.environ.get('PYTHONHASHSEED')!r}, "
            f"expected {expected}; start runs through the repro launcher"
        )
    import numpy as np
    import torch

    torch.set_num_threads(settings.threads)
    with contextlib.suppress(RuntimeError):  # already fixed for this process; it is recorded either way
        torch.set_num_interop_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    # bf16 matmuls accumulate in float32 (cuBLAS may otherwise reduce in bf16 on some shapes).
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    import torch._inductor.config as inductor

    inductor.fallback_random = True  # compiled random ops draw as eager ones do
    inductor.deterministic = True
    if settings.compile:
        _fresh_inductor_cache()

    if settings.device == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                "--device cuda was asked for but no CUDA device is available here; use --device cpu"
            )
        device = torch.device("cuda", 0)
    else:
        device = torch.device("cpu")

    random.seed(settings.seed)
    np.random.seed(settings.seed % 2**32)
    torch.manual_seed(settings.seed)  # also seeds every CUDA device
    return device


def rng_state_tensors() -> dict[str, torch.Tensor]:
    """The global RNG states (Python, NumPy, torch CPU and CUDA) as tensors for a checkpoint."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    _np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "repro.rng.torch_cpu": torch.get_rng_state(),
        "repro.rng.python": torch.tensor([version, *internal], dtype=torch.int64),
        "repro.rng.python_gauss": torch.tensor([gauss is not None, gauss or 0.0], dtype=torch.float64),
        "repro.rng.numpy": torch.from_numpy(np.asarray(np_keys, dtype=np.uint32).astype(np.int64)),
        "repro.rng.numpy_extra": torch.tensor([np_pos, np_has_gauss, np_gauss], dtype=torch.float64),
    }
    # torch leaves torch.cuda.is_initialized unannotated
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            state[f"repro.rng.cuda{index}"] = cuda_state
    return state


def load_rng_state_tensors(tensors: Mapping[str, torch.Tensor]) -> None:
    """Restore the global RNG states saved by :func:`rng_state_tensors`."""
    import numpy as np
    import torch

    torch.set_rng_state(tensors["repro.rng.torch_cpu"])
    python = tensors["repro.rng.python"].tolist()
    has_gauss, gauss = tensors["repro.rng.python_gauss"].tolist()
    random.setstate((int(python[0]), tuple(int(x) for x in python[1:]), gauss if has_gauss else None))
    pos, np_has_gauss, np_gauss = tensors["repro.rng.numpy_extra"].tolist()
    keys = tensors["repro.rng.numpy"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(pos), int(np_has_gauss), float(np_gauss)))
    cuda_states = sorted(k for k in tensors if k.startswith("repro.rng.cuda"))
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda_states])
