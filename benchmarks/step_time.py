"""Baseline step time: repro's GPT against LitGPT's GPT at the same dimensions, interleaved.

Both models train on the same random token batches with AdamW, in deterministic mode, with the
same thread count, in one process. Rounds alternate between them so machine noise hits both alike;
the result is the ratio of median step times (repro / LitGPT; below 1 means repro is faster).

    python benchmarks/step_time.py [--rounds 5] [--steps 10] [--threads 2] [--compile] [--adamw fused]
        [--precision bf16-mixed]

With ``--compile`` four peers run interleaved (each model eager and through ``torch.compile``) and
every ratio is against the fastest LitGPT peer. ``--adamw`` picks repro's AdamW kernels (LitGPT's
peer keeps torch's default); ``--precision bf16-mixed`` runs both under CPU bfloat16 autocast.

Needs the benchmark extra: ``pip install -c .venv/torch-constraint.txt litgpt==0.5.13``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch


def repro_model() -> torch.nn.Module:
    from repro.trainer.gpt.model import GPT, GPTShape

    return GPT(GPTShape(vocab_size=16000, block_size=128, n_layer=4, n_head=4, n_embd=256))


def litgpt_model() -> torch.nn.Module:
    from litgpt.config import Config
    from litgpt.model import GPT

    config = Config(
        name="bench", block_size=128, vocab_size=16000, padded_vocab_size=16000, n_layer=4, n_head=4,
        n_embd=256, bias=True, norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP",
        intermediate_size=1024, parallel_residual=False, rotary_percentage=0.25,
    )
    return GPT(config)


def make_step(model: torch.nn.Module, litgpt: bool, compiled: bool = False, adamw: str = "default",
              precision: str = "32"):
    impl = {"default": {}, "for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                  **impl[adamw if not litgpt else "default"])
    forward = torch.compile(model) if compiled else model

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            if litgpt:
                logits = forward(x)
                loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
            else:
                _, loss = forward(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per model per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time both models through torch.compile")
    parser.add_argument("--adamw", default="default", choices=["default", "for-loop", "foreach", "fused"])
    parser.add_argument("--precision", default="32", choices=["32", "bf16-mixed"])
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    peers = {"repro": make_step(repro_model(), False, adamw=args.adamw, precision=args.precision),
             "litgpt": make_step(litgpt_model(), True, precision=args.precision)}
    if args.compile:
        peers["repro compiled"] = make_step(repro_model(), False, True, args.adamw, args.precision)
        peers["litgpt compiled"] = make_step(litgpt_model(), True, True, precision=args.precision)
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, 16000, (16, 129), generator=gen)
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    for step in peers.values():  # warm-up: allocator, kernels, optimizer state
        for _ in range(3):
            step(x, y)
    times: dict[str, list[float]] = {name: [] for name in peers}
    for r in range(args.rounds):
        order = list(peers)[r % len(peers):] + list(peers)[:r % len(peers)]  # rotate who goes first
        for name in order:
            for _ in range(args.steps):
                t = time.perf_counter()
                peers[name](x, y)
                times[name].append(time.perf_counter() - t)
    medians = {name: statistics.median(v) for name, v in times.items()}
    fastest_litgpt = min(v for k, v in medians.items() if k.startswith("litgpt"))
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.processor() or 'cpu'}",
        "torch": torch.__version__,
        "steps_per_model": len(times["repro"]),
        "median_s_per_step": medians,
        "compile": args.compile, "adamw": args.adamw, "precision": args.precision,
        "ratio_repro_over_litgpt": medians["repro"] / medians["litgpt"],
        "ratios_over_fastest_litgpt": {k: v / fastest_litgpt for k, v in medians.items()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
