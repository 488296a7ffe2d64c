"""Data-parallel training inside a training process: ranks, the process group, the replica check.

A distributed run is started by torch.distributed's elastic launcher (``torch.distributed.run``,
see :mod:`repro.running.launcher`), which gives every process ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT``. :func:`join` reads them, initialises the default process
group (gloo on the CPU, NCCL on CUDA) and finds the *leader*: local rank 0 on node rank 0, the
only process that reports progress and writes checkpoints and the result.

The replica check (:func:`check_replicas`) is what makes a data-parallel run trustworthy: DDP
keeps replicas identical only if every rank computes the same update, so at every checkpoint all
ranks hash their state and compare; a rank that drifted ends the run (exit 4).

Nothing a rank receives is unpickled: every exchange is a fixed-layout integer tensor or
length-checked JSON parsed by a strict model (:mod:`repro.running.exchange`), because any process
that reaches the rendezvous can join the process group.

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

from pydantic import Field

from repro.errors import PeerProtocolError, ReplicaDriftError, UsageError
from repro.records.base import FrozenRecord
from repro.records.canonical import canonical_bytes
from repro.records.hashing import sha256_bytes, sha256_tensor
from repro.records.manifest import DistributedRecord, EnvironmentRecord, NodeRecord, RunSettings
from repro.running import exchange

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

MAX_NODE_REPORT_BYTES = 1 << 20
"""Largest description one rank may send (its node's environment: packages, variables; about
7 KB on the development machine). Every rank receives one from every rank, once per run."""

MAX_DIGESTS_BYTES = 32 << 20
"""Largest set of per-tensor digests one rank may send when replicas differ."""

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
    places = exchange.gather_ints([node_rank, local_rank], world_size, backend)
    leaders = [r for r, place in enumerate(places) if place == [0, 0]]
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

    starts = [values[0] for values in exchange.gather_ints([start], info.world_size, info.backend)]
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

    mine = bytes.fromhex(sha256_bytes(canonical_bytes(digests)))
    combined = exchange.gather_ints(list(mine), info.world_size, info.backend)
    if all(theirs == combined[info.leader_rank] for theirs in combined):
        return
    # Rare path: some rank differs; exchange the per-tensor digests (as checked JSON) to name it.
    gathered = [m.tensors for m in exchange.gather_json(
        _Digests(tensors=digests), _Digests, info.world_size, info.backend, MAX_DIGESTS_BYTES)]
    reference = gathered[info.leader_rank]
    for rank, theirs in enumerate(gathered):
        if rank == info.leader_rank or theirs == reference:
            continue
        names = sorted(set(reference) | set(theirs))
        first = next(n for n in names if reference.get(n) != theirs.get(n))
        raise ReplicaDriftError(
            f"replica check at step {step}: rank {rank}'s state differs from rank {info.leader_rank}'s, "
            f"first in tensor {first[:200]!r}; data-parallel replicas must be bit-identical (a rank computed "
            "another update: check the trainer's DDP wrapping and per-rank randomness)"
        )
    raise ReplicaDriftError(
        f"replica check at step {step}: the ranks' state digests differ; data-parallel replicas must be bit-identical"
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


class _Digests(FrozenRecord):
    """One rank's per-tensor SHA-256 digests (the replica check's rare path)."""

    tensors: dict[str, str]


class _NodeReport(FrozenRecord):
    """What each rank tells the leader about itself: where it runs and (local rank 0) its node."""

    node_rank: int = Field(ge=0)
    rank: int = Field(ge=0)
    hostname: str = Field(max_length=255)
    environment: EnvironmentRecord | None
    data: list[str] = Field(default_factory=list, max_length=2,
                            description="This rank's corpus and token-stream SHA-256 (every rank must agree).")


def _gather_nodes(info: RankInfo, environment: EnvironmentRecord | None, data: list[str]) -> list[_NodeReport]:
    mine = _NodeReport(node_rank=info.node_rank, rank=info.rank, hostname=socket.gethostname()[:255],
                       environment=environment, data=data)
    return exchange.gather_json(mine, _NodeReport, info.world_size, info.backend, MAX_NODE_REPORT_BYTES)


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
             launcher: str, *, data: list[str] | None = None) -> tuple[DistributedRecord, list[str]] | None:
    """Collective: every rank calls it; local ranks 0 pass their node's environment, every rank
    its data digests. Every rank refuses data that differs between ranks (the run would not be
    one run); the leader gets the run's :class:`DistributedRecord` and the node differences
    (recorded per node, shown by ``repro show``); other ranks get None."""
    gathered = _gather_nodes(info, environment, data or [])
    mismatched = [r.rank for r in gathered if r.data != gathered[info.leader_rank].data]
    if mismatched:
        raise UsageError(
            f"rank(s) {', '.join(map(str, mismatched[:10]))} prepared different data than rank {info.leader_rank} "
            "(corpus or token stream SHA-256); every node must read the same data files"
        )
    if not info.leader:
        return None
    envs: dict[int, EnvironmentRecord] = {}
    hosts: dict[int, str] = {}
    ranks: dict[int, list[int]] = {}
    for sender, report in enumerate(gathered):
        if report.rank != sender or report.node_rank >= settings.nnodes:
            raise PeerProtocolError(
                f"rank {sender} describes itself as rank {report.rank} on node {report.node_rank} of "
                f"{settings.nnodes}; a process that is not a repro rank joined the rendezvous"
            )
        ranks.setdefault(report.node_rank, []).append(report.rank)
        if report.environment is not None:
            envs[report.node_rank] = report.environment
            hosts[report.node_rank] = report.hostname
    if 0 not in envs:
        raise PeerProtocolError("no rank described node 0; a process that is not a repro rank joined the rendezvous")
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
