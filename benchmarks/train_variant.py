"""Train one variant of the GPT (or LitGPT) trainer in-process and print what it measured, as JSON.

For side-by-side recipe and numerics measurements without repro's run machinery (no manifest,
checkpoints or capture): the trainer's own ``prepare_data``/``build``/``train_step``/``validate``,
with repro's determinism flags, on the corpus and validation windows a ``repro run`` would use.

    python benchmarks/train_variant.py --preset baseline --steps 100 --eval-every 50 \\
        [--trainer litgpt] [--set key=value ...] [--threads 2] [--precision bf16-mixed] [--compile]

Prints per-step losses (float hex, for bitwise comparison), validation losses, a SHA-256 over the
final model and optimizer tensors, and the median step time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainer", default="gpt")
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--steps", type=int, help="stop after N steps (the schedule keeps the preset's length)")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="variant-inductor-"))
    import torch

    from repro.files.paths import cache_dir
    from repro.running.config import resolve_run
    from repro.trainer_api import TrainerContext

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    if args.compile:
        import torch._inductor.config as inductor

        inductor.fallback_random = True
    # Trainers other than gpt name the same presets with their own prefix (litgpt-baseline).
    own = args.trainer == "gpt" or args.preset.startswith(f"{args.trainer}-")
    preset = args.preset if own else f"{args.trainer}-{args.preset}"
    resolved = resolve_run(
        preset, trainer=args.trainer, assignments=[*args.set, f"precision={args.precision}",
                                                        f"compile={json.dumps(args.compile)}", f"seed={args.seed}"])
    torch.manual_seed(resolved.settings.seed)
    with tempfile.TemporaryDirectory() as out:
        ctx = TrainerContext(settings=resolved.settings, device=torch.device("cpu"),
                             cache_dir=cache_dir(), artifact_dir=Path(out))
        trainer = resolved.trainer_class(resolved.config, ctx)
        summary = trainer.prepare_data()
        trainer.build()
        steps = args.steps or resolved.config.steps
        losses, vals, times = [], {}, []
        for step in range(1, steps + 1):
            t = time.perf_counter()
            out_ = trainer.train_step(step)
            times.append(time.perf_counter() - t)
            losses.append(out_.loss)
            print(f"step {step} loss {out_.loss:.4f} {times[-1]:.2f} s", file=sys.stderr, flush=True)
            if step % args.eval_every == 0 or step == steps:
                vals[step] = trainer.validate()
        digest = hashlib.sha256()
        for name, tensor in sorted(trainer.state_tensors().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    print(json.dumps({
        "trainer": args.trainer, "preset": args.preset, "set": args.set, "threads": args.threads,
        "precision": args.precision, "compile": args.compile, "steps": steps,
        "val": vals, "last_loss": losses[-1], "losses_hex": [float(x).hex() for x in losses],
        "state_sha256": digest.hexdigest(), "median_s_per_step": statistics.median(times[3:] or times),
        "first_step_s": times[0], "val_tokens": summary.val_tokens,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
    }))


if __name__ == "__main__":
    main()
