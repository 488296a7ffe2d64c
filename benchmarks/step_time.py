"""Baseline step time: repro's GPT against LitGPT's GPT at the same dimensions, interleaved.

Each peer trains in a process of its own, started the way it is started for real: repro's peers
with the environment ``repro run`` gives its training process (:func:`repro.running.determinism.controlled_environment`;
with ``--heap-reuse``, plus :data:`HEAP_REUSE`), LitGPT's with the plain environment
``litgpt pretrain`` gets. A control peer runs LitGPT in repro's environment, so the report separates
what the environment buys from what the model code buys. Every peer pins the same thread count,
runs deterministic algorithms, and trains on the same random token batches with AdamW. The peers
stay alive and take turns, a round of steps each, the first in each round rotating, so machine
noise hits them alike; the result is the ratio of median step times (below 1: faster than LitGPT).

    python benchmarks/step_time.py [--rounds 6] [--steps 10] [--threads 2] [--compile]
        [--adamw default foreach fused] [--precision bf16-mixed] [--heap-reuse]

With ``--compile`` each model also runs through ``torch.compile`` (three more peers). ``--adamw``
names AdamW kernels for repro's peers, one peer each (LitGPT keeps torch's default);
``--precision bf16-mixed`` runs every peer under CPU bfloat16 autocast. Each peer's last loss is
reported as bits, so the pair that differs only in environment shows whether it changed a number.

Needs the benchmark extra: ``pip install -c .venv/torch-constraint.txt litgpt==0.5.13``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import IO, Any

HEAP_REUSE = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776"
"""An experiment, not what repro ships: glibc keeps freed memory instead of unmapping allocations
over 32 MiB (11-14% faster steps on the 2-core CPU), but a loop allocating and freeing one 128 MiB
tensor grows the heap by 128 MiB a turn under it (docs/results.md), so repro does not set it."""


@dataclass(frozen=True)
class Peer:
    """One training process: which model, eager or compiled, in whose environment."""

    model: str  # "repro" or "litgpt"
    compiled: bool
    environment: str  # "repro": repro run's training environment; "plain": what litgpt pretrain gets
    adamw: str = "default"  # AdamW kernels: torch's default, for-loop, foreach or fused
    loss_chunk_rows: int | None = None  # repro's LM head and loss in chunks of rows; None: whole logits

    @property
    def name(self) -> str:
        text = self.model + (" compiled" if self.compiled else "")
        text += f", adamw={self.adamw}" if self.adamw != "default" else ""
        if self.model == "repro":
            text += f", loss in chunks of {self.loss_chunk_rows} rows" if self.loss_chunk_rows else ", whole logits"
        return text + (", repro's environment" if self.model == "litgpt" and self.environment == "repro" else "")


def _baseline_loss_chunk_rows() -> int | None:
    """What ``repro run baseline`` uses."""
    from repro.trainer.gpt.trainer import PRESETS, GPTConfig

    return GPTConfig(**PRESETS["baseline"]).loss_chunk_rows


def _repro_model(loss_chunk_rows: int | None) -> Any:
    from repro.trainer.gpt.model import GPT, GPTShape

    return GPT(GPTShape(vocab_size=16000, block_size=128, n_layer=4, n_head=4, n_embd=256,
                        loss_chunk_rows=loss_chunk_rows))


def _litgpt_model() -> Any:
    from litgpt.config import Config
    from litgpt.model import GPT

    config = Config(
        name="bench", block_size=128, vocab_size=16000, padded_vocab_size=16000, n_layer=4, n_head=4,
        n_embd=256, bias=True, norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP",
        intermediate_size=1024, parallel_residual=False, rotary_percentage=0.25,
    )
    return GPT(config)


def _worker(spec: dict[str, Any]) -> None:
    """Train one peer on command: read a step count per line from stdin, answer with the times."""
    import torch

    torch.set_num_threads(spec["threads"])
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    litgpt = spec["model"] == "litgpt"
    model = _litgpt_model() if litgpt else _repro_model(spec["loss_chunk_rows"])
    impl = {"default": {}, "for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                  **impl[spec["adamw"]])
    forward = torch.compile(model) if spec["compiled"] else model
    data = torch.randint(0, 16000, (16, 129), generator=torch.Generator().manual_seed(0))
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()

    def step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec["precision"] == "bf16-mixed"):
            if litgpt:
                logits = forward(x)
                loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
            else:
                _, loss = forward(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return float(loss.item())

    loss = 0.0
    for _ in range(3):  # warm-up: allocator, kernels, compilation, optimizer state
        loss = step()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        times = []
        for _ in range(int(line)):
            start = time.perf_counter()
            loss = step()
            times.append(time.perf_counter() - start)
        print(json.dumps({"times": times}), flush=True)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    print(json.dumps({"last_loss": loss.hex(), "peak_rss_mib": peak_kib / 1024, "minor_faults": faults}), flush=True)


def _environment(kind: str, threads: int, heap_reuse: bool) -> dict[str, str]:
    from repro.records.manifest import RunSettings
    from repro.running.determinism import controlled_environment

    plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if kind == "repro":
        env = controlled_environment(RunSettings(threads=threads), base=plain)
        return {**env, "GLIBC_TUNABLES": HEAP_REUSE} if heap_reuse else env
    return {**plain, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _answer(stream: IO[str]) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise SystemExit("a peer process ended early; run its spec alone to see why")
    answer: dict[str, Any] = json.loads(line)
    return answer


def _chunk_rows(text: str) -> int | None:
    return None if text == "none" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10, help="steps per peer per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time both models through torch.compile")
    parser.add_argument("--adamw", nargs="+", default=["default"], choices=["default", "for-loop", "foreach", "fused"],
                        help="AdamW kernels for repro's peers, a peer each")
    parser.add_argument("--precision", default="32", choices=["32", "bf16-mixed"])
    parser.add_argument("--heap-reuse", action="store_true", help="add HEAP_REUSE to repro's environment")
    parser.add_argument("--loss-chunk-rows", nargs="+", type=_chunk_rows, default=None, metavar="N|none",
                        help="repro's loss in chunks of N rows, or whole logits, a peer each (default: the baseline's)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(json.loads(args.worker))
        return

    chunkings = args.loss_chunk_rows or [_baseline_loss_chunk_rows()]
    peers = []
    for compiled in (False, True) if args.compile else (False,):
        peers += [Peer("repro", compiled, "repro", adamw, rows) for adamw in args.adamw for rows in chunkings]
        peers += [Peer("litgpt", compiled, "plain"), Peer("litgpt", compiled, "repro")]
    procs: dict[Peer, subprocess.Popen[str]] = {}
    for peer in peers:  # started one after another: warm-ups (and compilations) do not overlap
        spec = {**asdict(peer), "threads": args.threads, "precision": args.precision}
        proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)],
                                env=_environment(peer.environment, args.threads, args.heap_reuse), text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        _answer(proc.stdout)
        procs[peer] = proc
    times: dict[Peer, list[float]] = {peer: [] for peer in peers}
    for r in range(args.rounds):
        for peer in peers[r % len(peers):] + peers[:r % len(peers)]:  # rotate who goes first
            proc = procs[peer]
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(f"{args.steps}\n")
            proc.stdin.flush()
            times[peer].extend(_answer(proc.stdout)["times"])
    ends = {}
    for peer, proc in procs.items():
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        ends[peer] = _answer(proc.stdout)
        proc.wait()

    import torch

    medians = {peer: statistics.median(v) for peer, v in times.items()}
    shipped = min(v for p, v in medians.items() if p.model == "litgpt" and p.environment == "plain")
    same_env = min(v for p, v in medians.items() if p.model == "litgpt" and p.environment == "repro")
    result = {
        "machine": f"{platform.machine()}, {args.threads} threads, {platform.processor() or 'cpu'}",
        "torch": torch.__version__,
        "steps_per_peer": args.rounds * args.steps,
        "compile": args.compile, "adamw": args.adamw, "loss_chunk_rows": chunkings,
        "precision": args.precision, "heap_reuse": args.heap_reuse,
        "median_s_per_step": {p.name: round(v, 4) for p, v in medians.items()},
        "ratio_to_fastest_litgpt_as_shipped": {p.name: round(v / shipped, 3) for p, v in medians.items()},
        "ratio_to_fastest_litgpt_in_repros_environment": {p.name: round(v / same_env, 3) for p, v in medians.items()},
        "last_loss_bits": {p.name: e["last_loss"] for p, e in ends.items()},
        "peak_rss_mib": {p.name: round(e["peak_rss_mib"]) for p, e in ends.items()},
        "minor_page_faults": {p.name: e["minor_faults"] for p, e in ends.items()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
