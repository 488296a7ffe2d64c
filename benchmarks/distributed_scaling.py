"""Data-parallel step time and the 1-vs-2-process numeric spread, measured interleaved.

Three layouts of the same run, on the same global batches: 1 process x 1 thread, 2 processes x
1 thread (gloo, DDP), and 1 process x 2 threads (the same total threads). Each repeat runs the
three in rotated order through repro's own launcher; the step time is the median per-step wall
time after the first two steps. The replica check's cost is the time the ranks spent hashing and
comparing their state at checkpoints, against the training time. The spread is the difference
between the 1-process and the 2-process run of the first repeat (same threads per process):
losses, gradient norms and every checkpoint tensor. Timings on a shared machine are noisy: read
the ratios, not the seconds.

    python benchmarks/distributed_scaling.py [--preset baseline] [--steps 30] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import struct
import tempfile
from pathlib import Path
from typing import Any

LAYOUTS = [("1 proc x 1 thread", 1, 1), ("2 procs x 1 thread", 2, 1), ("1 proc x 2 threads", 1, 2)]


def _run(preset: str, steps: int, nproc: int, threads: int, folder: Path) -> Any:
    from repro.running.config import resolve_run
    from repro.running.launcher import launch
    from repro.running.run import build_job

    resolved = resolve_run(preset, settings_overrides={"nproc": nproc, "threads": threads},
                           config_overrides={"steps": steps},
                           assignments=[f"checkpoint_every={max(steps // 2, 1)}", f"eval_every={steps}"])
    scratch = folder / ".job"
    scratch.mkdir(parents=True, exist_ok=True)
    job = build_job(resolved, folder, scratch)
    return launch(job, scratch / "job.json", folder / "train.log")


def _ulps(a: float, b: float) -> int:
    ia, ib = (struct.unpack("<i", struct.pack("<f", x))[0] for x in (a, b))
    return abs(ia - ib)


def _spread(one: Any, two: Any) -> dict[str, Any]:
    from safetensors.torch import load_file

    loss = [abs(a.loss - b.loss) for a, b in zip(one.steps, two.steps, strict=True)]
    ulps = [_ulps(a.loss, b.loss) for a, b in zip(one.steps, two.steps, strict=True)]
    grad = [abs(a.grad_norm - b.grad_norm) / abs(a.grad_norm) for a, b in zip(one.steps, two.steps, strict=True)]
    same_batches = [a.batch for a in one.steps] == [b.batch for b in two.steps]
    ta, tb = load_file(one.checkpoints[-1].path), load_file(two.checkpoints[-1].path)
    rel = {}
    for name, x in ta.items():
        if x.is_floating_point() and not name.startswith("repro.rng"):
            norm = float(x.double().norm())
            rel[name] = float((x.double() - tb[name].double()).norm()) / norm if norm else 0.0
    worst = max(rel, key=rel.__getitem__)
    others = max(v for k, v in rel.items() if "c_attn.bias" not in k)
    return {"max_loss_diff": max(loss), "max_loss_ulps": max(ulps), "first_loss_diff_step":
            next((i + 1 for i, d in enumerate(loss) if d), None), "max_grad_rel": max(grad),
            "same_batches": same_batches, "worst_tensor": worst, "worst_tensor_rel_l2": rel[worst],
            "other_tensors_rel_l2": others}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name, _, _ in LAYOUTS}
    replica: list[float] = []
    with tempfile.TemporaryDirectory(prefix="repro-scaling-") as tmp:
        first: dict[str, Any] = {}
        for repeat in range(args.repeats):
            order = LAYOUTS[repeat % 3:] + LAYOUTS[:repeat % 3]
            for name, nproc, threads in order:
                result = _run(args.preset, args.steps, nproc, threads, Path(tmp) / f"r{repeat}-{nproc}-{threads}")
                step = statistics.median(result.timing.step_seconds[2:])
                times[name].append(step)
                print(f"repeat {repeat + 1} {name}: {step:.3f} s/step", flush=True)
                if nproc > 1:
                    replica.append(result.timing.replica_check_seconds / result.timing.train_seconds)
                first.setdefault(name, result)
        spread = _spread(first["1 proc x 1 thread"], first["2 procs x 1 thread"])
    base = statistics.median(times["1 proc x 1 thread"])
    print(f"\n{args.preset}, {args.steps} steps, {args.repeats} interleaved repeats (median step time):")
    for name, values in times.items():
        mid = statistics.median(values)
        print(f"  {name:20s} {mid:.3f} s/step  speed-up vs 1x1: {base / mid:.2f}")
    two = statistics.median(times["2 procs x 1 thread"])
    threads2 = statistics.median(times["1 proc x 2 threads"])
    print(f"  2 procs vs 1 proc x 2 threads: {threads2 / two:.2f} (>1: processes faster)")
    print(f"  scaling efficiency of 2 procs: {base / two / 2:.0%}")
    print(f"  replica check: {statistics.median(replica):.2%} of training time (2 checkpoints)")
    print(f"1 vs 2 processes (1 thread each): {spread}")


if __name__ == "__main__":
    main()
