"""How much an audit costs besides its rerun, and what a K-segment spot-check costs.

Records one run (default: the ``baseline`` preset cut to 30 steps with a checkpoint and a
validation pass every 10, so it has 3 segments), then audits it with ``repro audit`` in a fresh
process, as a user would:

1. in full, writing every report (console, ``--json``, ``--junit``, ``--plot``): everything but
   the rerun (interpreter start and imports, integrity and artifact hashing, loading the trainer,
   git state, comparing steps and checkpoints, differences, attribution, reports) must cost at
   most 5% of the rerun's wall time;
2. as spot-checks with K = 1..n-1 segments: the cost should be about K segment-lengths of
   training (optimizer steps and the validation pass that ends each segment) plus a fixed cost
   per segment (a training process starts, prepares data, loads and verifies the checkpoint,
   saves the end checkpoint) and per audit.

    python benchmarks/audit_overhead.py [--preset baseline] [--steps 30] [--every 10] [--json FILE]

Timings vary 15-40% run to run on shared machines: read ratios, and rerun before drawing
conclusions from a single number. Results are recorded in docs/audit.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from repro.capture.environment import cpu_model


def _record(preset: str, steps: int, every: int, folder: Path) -> tuple[Path, float]:
    from repro.running.config import resolve_run
    from repro.running.run import execute_run

    resolved = resolve_run(preset, settings_overrides={"checkpoint_every": every, "eval_every": every},
                           config_overrides={"steps": steps})
    began = time.perf_counter()
    outcome = execute_run(resolved, folder / "run.json", key_path=folder / "key.pem", code_path=folder)
    return outcome.path, time.perf_counter() - began


def _audit(manifest: Path, folder: Path, name: str, *extra: str) -> tuple[float, dict]:
    """``repro audit`` in a fresh process (run from ``folder``); its wall time and JSON report."""
    report = folder / f"{name}.json"
    command = [sys.executable, "-m", "repro", "audit", str(manifest), "--json", str(report), *extra]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return wall, json.loads(report.read_text(encoding="utf-8"))




def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the results; exit 1 if the 5% budget is exceeded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--every", type=int, default=10, help="checkpoint and validate every N steps")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    results: dict = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "preset": args.preset, "steps": args.steps, "checkpoint_every": args.every,
    }
    with tempfile.TemporaryDirectory(prefix="repro-bench-audit-") as tmp:
        folder = Path(tmp)
        manifest, results["record_seconds"] = _record(args.preset, args.steps, args.every, folder)

        wall, full = _audit(manifest, folder, "full", "--junit", str(folder / "full.xml"),
                            "--plot", str(folder / "full.png"))
        t = full["timing"]
        besides = wall - t["rerun_seconds"]
        results["full"] = {"wall_seconds": wall, **t, "besides_rerun_seconds": besides,
                           "besides_rerun_share": besides / t["rerun_seconds"], "verdict": full["verdict"]}
        n = len(full["checkpoints"])
        per_segment = (t["training_seconds"] + t["validation_seconds"]) / n
        spots = []
        for k in range(1, n):
            spot_wall, spot = _audit(manifest, folder, f"spot{k}", "--segments", str(k), "--seed", "0")
            s = spot["timing"]
            work = s["training_seconds"] + s["validation_seconds"]
            spots.append({
                "segments": k, "wall_seconds": spot_wall, "training_and_validation_seconds": work,
                "k_segment_lengths_seconds": k * per_segment, "fixed_seconds": spot_wall - work,
                "fixed_per_segment_seconds": (s["rerun_seconds"] - work) / k,
                "share_of_full_audit": spot_wall / wall, "ideal_share": k / n,
            })
        results["spot_checks"] = spots

    print(json.dumps(results, indent=1))
    share = results["full"]["besides_rerun_share"]
    print(f"\nfull audit: {wall:.1f} s, rerun {t['rerun_seconds']:.1f} s (of which {t['training_seconds']:.1f} s "
          f"steps, {t['validation_seconds']:.1f} s validation); everything besides the rerun {besides:.2f} s = "
          f"{share:.1%}: {'within' if share <= 0.05 else 'OVER'} the 5% budget", file=sys.stderr)
    for s in spots:
        print(f"spot-check K={s['segments']}/{n}: {s['wall_seconds']:.1f} s = "
              f"{s['training_and_validation_seconds']:.1f} s training+validation "
              f"(K segment-lengths: {s['k_segment_lengths_seconds']:.1f} s) + "
              f"{s['fixed_seconds']:.1f} s fixed ({s['fixed_per_segment_seconds']:.1f} s per segment); "
              f"{s['share_of_full_audit']:.0%} of a full audit (ideal {s['ideal_share']:.0%})", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0 if share <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
