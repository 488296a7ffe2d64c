"""Data-parallel training inside a training process: ranks, the process group, the replica check.

A distributed run is started by torch.distributed's elastic launcher (``torch.distributed.run``,
see :mod:`repro.running.launcher`), which gives every process ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT``. :func:`join` reads them, initialises the default process
group (gloo on the CPU, NCCL on CUDA) and finds the *leader*: local rank 0 on node rank 0, the
only process that reports progress and writes checkpoints and the result.

The replica check (:func:`check_replicas`) is what makes a data-parallel run trustworthy: DDP
keeps replicas identical only if every rank computes the same update, so at every checkpoint all
ranks hash their state and compare; a rank that drifted ends the run (exit 4).

Two test-only fault hooks live here, like :mod:`repro.running.crashpoint`'s: ``REPRO_TEST_DRIFT=R:N``
makes rank R's replica drift after step N; ``REPRO_TEST_KILL_RANK=R:N`` SIGKILLs rank R after
step N (only that process: the launcher must take the job down).
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from repro.errors import ReplicaDriftError, UsageError
from repro.records.canonical import canonical_bytes
from repro.records.hashing import sha256_bytes, sha256_tensor
from repro.records.manifest import DistributedRecord, EnvironmentRecord, NodeRecord, RunSettings

NODE_RANK_ENV = "REPRO_NODE_RANK"
"""The node rank the user gave (``--node-rank``); the launcher passes it to every rank."""

DRIFT_ENV = "REPRO_TEST_DRIFT"
KILL_ENV = "REPRO_TEST_KILL_RANK"

COLLECTIVE_ENV_VARS = (
    "NCCL_ALGO", "NCCL_PROTO", "NCCL_MIN_NCHANNELS", "NCCL_MAX_NCHANNELS", "NCCL_NTHREADS",
    "NCCL_IB_DISABLE", "NCCL_P2P_DISABLE", "NCCL_SHM_DISABLE", "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME",
    "TORCH_NCCL_USE_TENSOR_REGISTER_ALLOCATOR_HOOK",
)
"""Variables that change how collectives reduce (and so the bits); recorded for distributed runs."""

DETERMINISTIC_NCCL_ALGO = "Ring"
"""Ring's reduction order is fixed by the topology (Megatron-Core's deterministic mode sets it too)."""


def backend_for(device: str) -> str:
    """The process-group backend repro uses: gloo on the CPU, NCCL on CUDA."""
    return "nccl" if device == "cuda" else "gloo"


def collective_environment(settings: RunSettings, base: Mapping[str, str]) -> dict[str, str]:
    """Variables to add for a distributed run: ``NCCL_ALGO=Ring`` on CUDA unless the user set one."""
    if settings.device == "cuda" and "NCCL_ALGO" not in base:
        return {"NCCL_ALGO": DETERMINISTIC_NCCL_ALGO}
    return {}


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the job."""

    rank: int
    local_rank: int
    world_size: int
    node_rank: int
    leader_rank: int
    backend: str

    @property
    def leader(self) -> bool:
        """Whether this process reports progress and writes checkpoints and the result."""
        return self.rank == self.leader_rank


def launched_distributed() -> bool:
    """Whether this process was started by the elastic launcher for a distributed run."""
    return NODE_RANK_ENV in os.environ and "WORLD_SIZE" in os.environ


def join(settings: RunSettings) -> RankInfo:
    """Initialise the default process group from the launcher's variables; find the leader."""
    import torch
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world_size, node_rank = int(os.environ["WORLD_SIZE"]), int(os.environ[NODE_RANK_ENV])
    if world_size != settings.world_size:
        raise UsageError(
            f"the launcher started {world_size} ranks but the run asks for {settings.world_size} "
            f"(--nproc {settings.nproc} x --nnodes {settings.nnodes}); give every node the same --nproc and --nnodes"
        )
    backend = backend_for(settings.device)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    places: list[Any] = [None] * world_size
    dist.all_gather_object(places, (node_rank, local_rank))
    leaders = [r for r, place in enumerate(places) if tuple(place) == (0, 0)]
    if len(leaders) != 1:
        raise UsageError(
            f"{len(leaders)} processes claim node rank 0, local rank 0; give each node its own --node-rank "
            f"from 0 to {settings.nnodes - 1}"
        )
    return RankInfo(rank, local_rank, world_size, node_rank, leaders[0], backend)


def leave() -> None:
    """Destroy the default process group if there is one (end of a distributed job)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_same_start(info: RankInfo, start: int) -> None:
    """Every rank must start at the same step (a resume on several nodes needs node 0's
    checkpoints on every node); raise on every rank otherwise."""
    import torch.distributed as dist

    starts: list[Any] = [None] * info.world_size
    dist.all_gather_object(starts, start)
    if len(set(starts)) > 1:
        raise UsageError(
            f"the ranks would start at different steps ({', '.join(f'rank {r}: {s}' for r, s in enumerate(starts))}); "
            "resuming on several nodes needs node 0's checkpoints at the same --out path on every node (shared storage)"
        )


def state_digests(state: Mapping[str, Any]) -> dict[str, str]:
    """SHA-256 of every tensor, by name: what the replica check compares."""
    return {name: sha256_tensor(tensor) for name, tensor in sorted(state.items())}


def check_replicas(info: RankInfo, step: int, digests: dict[str, str]) -> None:
    """Gather every rank's state digests; raise :class:`ReplicaDriftError` on every rank if any
    rank's differ from the leader's, naming the rank and the first differing tensor."""
    import torch.distributed as dist

    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, digests)
    reference = gathered[info.leader_rank]
    for rank, theirs in enumerate(gathered):
        if rank == info.leader_rank or theirs == reference:
            continue
        names = sorted(set(reference) | set(theirs))
        first = next(n for n in names if reference.get(n) != theirs.get(n))
        raise ReplicaDriftError(
            f"replica check at step {step}: rank {rank}'s state differs from rank {info.leader_rank}'s, "
            f"first in tensor {first!r}; data-parallel replicas must be bit-identical (a rank computed "
            "another update: check the trainer's DDP wrapping and per-rank randomness)"
        )


def drift_point(info: RankInfo, step: int, state: Mapping[str, Any]) -> None:
    """Test hook: if ``REPRO_TEST_DRIFT`` is ``R:N`` and this is rank R after step N, nudge the
    first floating-point tensor of the trainer's state in place (a drifted replica)."""
    if os.environ.get(DRIFT_ENV) != f"{info.rank}:{step}":
        return
    import torch

    for name in sorted(state):
        tensor = state[name]
        if tensor.is_floating_point():
            with torch.no_grad():
                tensor.view(-1)[0] += 1e-3
            return


def kill_point(info: RankInfo, step: int) -> None:
    """Test hook: if ``REPRO_TEST_KILL_RANK`` is ``R:N`` and this is rank R after step N, SIGKILL
    this one process (not its group), as an OOM kill of one rank would."""
    if os.environ.get(KILL_ENV) == f"{info.rank}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def _gather_nodes(info: RankInfo, environment: EnvironmentRecord | None) -> list[Any]:
    import torch.distributed as dist

    mine = (info.node_rank, info.rank, socket.gethostname(),
            environment.model_dump(mode="json") if environment is not None else None)
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, mine)
    return gathered


def _node(node_rank: int, ranks: list[int], hostname: str, env: EnvironmentRecord) -> NodeRecord:
    return NodeRecord(
        node_rank=node_rank, ranks=ranks, hostname=hostname, os=env.os, kernel=env.kernel, machine=env.machine,
        cpu_model=env.cpu_model, cpu_count=env.cpu_count, torch_version=env.torch_version, devices=env.devices,
        distributions_sha256=sha256_bytes(canonical_bytes(env.distributions)),
    )


def _node_differences(first: EnvironmentRecord, other: EnvironmentRecord) -> list[str]:
    fields = ("python", "os", "kernel", "machine", "cpu_model", "cpu_capability", "cpu_count", "torch_version",
              "cuda_version", "cudnn_version", "devices", "torch_threads", "env_vars", "determinism")
    out = [f"{f}: {getattr(first, f)!r} on node 0, {getattr(other, f)!r} here"
           for f in fields if getattr(first, f) != getattr(other, f)]
    if first.torch_build != other.torch_build:
        out.append("torch_build: a different torch build configuration")
    for name in sorted(set(first.distributions) | set(other.distributions)):
        a, b = first.distributions.get(name), other.distributions.get(name)
        if a != b:
            out.append(f"package {name}: {a or '(absent)'} on node 0, {b or '(absent)'} here")
    return out


def describe(info: RankInfo, settings: RunSettings, environment: EnvironmentRecord | None,
             launcher: str) -> tuple[DistributedRecord, list[str]] | None:
    """Collective: every rank calls it; local ranks 0 pass their node's environment. The leader
    gets the run's :class:`DistributedRecord` and the node differences; other ranks get None."""
    gathered = _gather_nodes(info, environment)
    if not info.leader:
        return None
    envs: dict[int, EnvironmentRecord] = {}
    hosts: dict[int, str] = {}
    ranks: dict[int, list[int]] = {}
    for node_rank, rank, hostname, env in gathered:
        ranks.setdefault(node_rank, []).append(rank)
        if env is not None:
            envs[node_rank] = EnvironmentRecord.model_validate(env)
            hosts[node_rank] = hostname
    nodes: list[NodeRecord] = []
    notes: list[str] = []
    for node_rank in sorted(envs):
        node = _node(node_rank, sorted(ranks[node_rank]), hosts[node_rank], envs[node_rank])
        differences = _node_differences(envs[0], envs[node_rank]) if node_rank else []
        notes.extend(f"node {node_rank} differs from node 0: {d}" for d in differences)
        nodes.append(node.model_copy(update={"differences": differences}))
    nccl = None
    if info.backend == "nccl":
        import torch

        version = torch.cuda.nccl.version()  # type: ignore[no-untyped-call]
        nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    record = DistributedRecord(
        world_size=info.world_size, nnodes=settings.nnodes, nproc_per_node=settings.nproc,
        backend="nccl" if info.backend == "nccl" else "gloo", launcher=launcher,
        threads_per_process=settings.threads, nccl_version=nccl,
        env_vars={name: os.environ.get(name) for name in COLLECTIVE_ENV_VARS}, nodes=nodes,
    )
    return record, notes
