"""What repro adds to a training run: `repro run PRESET` against the same training in a plain loop.

The peer runs the same trainer (data preparation, model, every step and validation pass) in a
child process with the same controlled environment, but without anything repro adds: no
environment or git capture, no checkpoints or hashing, no SBOM, no signing, no manifest. Both are
timed as whole processes, alternating order across repeats; the result is the ratio
(repro - plain) / plain, and the overhead repro itself records in the manifest.

    python benchmarks/run_overhead.py [--preset baseline] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def plain_loop(preset: str) -> None:
    """The peer: the trainer's own work only (runs in a child with the controlled environment)."""
    from repro.files.paths import cache_dir
    from repro.running.config import resolve_run
    from repro.running.determinism import apply_determinism
    from repro.trainer_api import TrainerContext

    resolved = resolve_run(preset)
    device = apply_determinism(resolved.settings)
    with tempfile.TemporaryDirectory() as tmp:
        context = TrainerContext(settings=resolved.settings, device=device, cache_dir=cache_dir(),
                                 artifact_dir=Path(tmp))
        trainer = resolved.trainer_class(resolved.config, context)
        trainer.prepare_data()
        trainer.build()
        total, every = resolved.config.steps, resolved.settings.eval_every
        for step in range(1, total + 1):
            trainer.train_step(step)
            if step % every == 0 or step == total:
                trainer.validate()


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        plain_loop(args.preset)
        return

    from repro.running.config import resolve_run
    from repro.running.determinism import controlled_environment

    env = controlled_environment(resolve_run(args.preset).settings)
    times: dict[str, list[float]] = {"repro": [], "plain": []}
    recorded: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = ["plain", "repro"] if r % 2 == 0 else ["repro", "plain"]
            for name in order:
                if name == "plain":
                    cmd = [sys.executable, __file__, "--plain", "--preset", args.preset]
                else:
                    out = Path(tmp) / f"run{r}.json"
                    cmd = [sys.executable, "-m", "repro", "run", args.preset, "--out", str(out)]
                times[name].append(_timed(cmd, {**os.environ, **env} if name == "plain" else dict(os.environ)))
            timing = json.loads(out.read_text())["timing"]
            recorded.append({k: v for k, v in timing.items() if k != "step_seconds"})
    repro_s, plain_s = min(times["repro"]), min(times["plain"])
    print(json.dumps({
        "preset": args.preset,
        "wall_seconds": times,
        "added_fraction": (repro_s - plain_s) / plain_s,
        "recorded_timing": recorded,
        "recorded_overhead_fraction": [t["overhead_seconds"] / t["wall_seconds"] for t in recorded],
    }, indent=2))


if __name__ == "__main__":
    main()
