"""A budgeted spot-check of a long run: its cost against the run's, and how often it catches a forgery.

In one sitting (the same machine load for both):

1. records ``baseline`` (300 steps) with a checkpoint every 30 steps (``--every``), timing its wall;
2. audits it with ``repro audit --budget 10%`` in a fresh process, timing its wall: the ratio of
   the two wall times is the audit's real cost;
3. forges a copy: the losses of the last third of the steps (201-300) edited and the manifest
   re-signed with another key, then, on the forged manifest's own signed timing and checkpoints,
   replays the segment choice of ``--budget 10%`` for 200 seeds (0..199): the share of seeds whose
   choice includes a fabricated segment, against the stated lower bound for a third fabricated;
   the same with the forger steering the recorded update norms away from the fabricated segments;
4. validates that on the real forged manifest: ``repro audit --budget 10% --seed S`` exits 1 for a
   seed that picks a fabricated segment, and 0 (the blind spot) for one that does not;
5. the fixed cost per replayed segment: three segments replayed one training process each (as
   before) and all in one process (as now), each minus its training, validation and checkpoint time;
6. storage: bytes per checkpoint; how many tensors are unchanged between consecutive checkpoints
   (what content-addressed storage would not store twice); what zlib saves on one checkpoint;
   what writing one checkpoint and computing its update norm cost.

    python benchmarks/budget_audit.py [--preset baseline] [--every 30] [--budget 10%] [--json FILE]

Timings vary 15-40% run to run on shared machines; the results are recorded in docs/results.md
with the machine and its load.
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
import zlib
from pathlib import Path
from typing import Any

from repro.capture.environment import cpu_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.audits.forgery: the re-signing helpers


def _record(preset: str, every: int, folder: Path) -> tuple[Path, float]:
    from repro.running.config import resolve_run
    from repro.running.run import execute_run

    resolved = resolve_run(preset, settings_overrides={"checkpoint_every": every})
    began = time.perf_counter()
    outcome = execute_run(resolved, folder / "run.json", key_path=folder / "key.pem", code_path=folder)
    return outcome.path, time.perf_counter() - began


def _audit(manifest: Path, folder: Path, name: str, *extra: str,
           refusal: bool = False) -> tuple[int, float, dict[str, Any]]:
    """``repro audit`` in a fresh process (run from ``folder``): exit code, wall time, JSON report
    (with ``refusal``, an exit 2 gives ``{"refused": its message}`` instead)."""
    report = folder / f"{name}.json"
    command = [sys.executable, "-m", "repro", "audit", str(manifest), "--json", str(report), *extra]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    wall = time.perf_counter() - began
    if refusal and done.returncode == 2:
        return 2, wall, {"refused": done.stderr.strip()}
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return done.returncode, wall, json.loads(report.read_text(encoding="utf-8"))


def _smallest_budget(manifest: Path) -> str:
    """The smallest whole percentage of the run's wall time that fits one segment drawn at random."""
    import math

    from repro.audits import selection, spotcheck
    from repro.records.manifest_file import load_manifest

    m = load_manifest(manifest).manifest
    total = int(m.run.config["steps"])
    cost = selection.cost_model(m, total)
    costliest = max(spotcheck.segments_of(m, total), key=cost.segment)
    return f"{math.ceil(100 * cost.total([costliest]) / m.timing.wall_seconds)}%"




def _forge(manifest: Path, folder: Path, first: int, last: int) -> Path:
    """A copy of the run with the losses of steps ``first``..``last`` edited, re-signed by another key."""
    from tests.audits.forgery import resign, scale_losses
    from tests.conftest import copy_run

    target = copy_run(manifest, folder / "forged")
    resign(target, scale_losses(first, last, 0.98), folder / "forger.pem")
    return target


def _choices(manifest: Path, budget: str, seeds: range, steer: bool,
             fabricated: set[Any]) -> list[tuple[int, list[Any]]]:
    """The segments ``--budget`` picks for each seed (``steer``: the forger records update norms that
    rank every fabricated segment last)."""
    from repro.audits import selection, spotcheck
    from repro.records.manifest_file import load_manifest

    m = load_manifest(manifest).manifest
    total = int(m.run.config["steps"])
    cut = spotcheck.segments_of(m, total)
    cost = selection.cost_model(m, total)
    seconds = selection.parse_budget(budget).in_seconds(m.timing.wall_seconds)
    norms = selection.update_norms(m, cut)
    if steer:
        norms = {s: (0.0 if s in fabricated else n) for s, n in norms.items()}
    return [(seed, selection.select_within(cut, cost, seconds, seed, norms).segments) for seed in seeds]


def _catch_rate(manifest: Path, budget: str, first: int, last: int, trials: int) -> dict[str, Any]:
    from repro.audits import assurance, selection, spotcheck
    from repro.records.manifest_file import load_manifest

    m = load_manifest(manifest).manifest
    total = int(m.run.config["steps"])
    cut = spotcheck.segments_of(m, total)
    fabricated = {s for s in cut if s.start < last and s.end >= first}
    out: dict[str, Any] = {"segments": len(cut),
                           "fabricated_segments": sorted(f"{s.start + 1}-{s.end}" for s in fabricated)}
    for label, steer in (("recorded_norms", False), ("steered_norms", True)):
        picks = _choices(manifest, budget, range(trials), steer, fabricated)
        caught = [seed for seed, chosen in picks if fabricated.intersection(chosen)]
        seed0 = picks[0][1]
        sel = selection.select_within(
            cut, selection.cost_model(m, total),
            selection.parse_budget(budget).in_seconds(m.timing.wall_seconds), 0,
            {s: (0.0 if steer and s in fabricated else n) for s, n in selection.update_norms(m, cut).items()})
        stated = assurance.assess(cut, sel.largest, sel.drawn, 0)
        bound = next(c.probability for c in stated.catch if abs(c.fraction - 1 / 3) < 1e-9)
        out[label] = {"trials": trials, "caught": len(caught), "rate": len(caught) / trials,
                      "stated_lower_bound_third": bound, "segments_per_audit": len(seed0),
                      "largest_update_picks": len(sel.largest), "random_picks": len(sel.drawn),
                      "first_catching_seed": caught[0] if caught else None,
                      "first_missing_seed": next((s for s, _ in picks if s not in set(caught)), None)}
    return out


def _fixed_cost(manifest: Path, folder: Path, count: int) -> dict[str, Any]:
    """Fixed seconds per segment: ``count`` segments as one process each, then all in one process."""
    from repro.audits import rerun, spotcheck
    from repro.records.manifest_file import load_manifest

    loaded = load_manifest(manifest)
    m = loaded.manifest
    resolved = rerun.plan(m, None, None)
    cut = spotcheck.segments_of(m, resolved.config.steps)
    chosen = [cut[i] for i in sorted({1, len(cut) // 2, len(cut) - 2})][:count]  # distinct, not from step 0

    def busy(r: rerun.Rerun) -> float:
        t = r.result.timing
        assert t is not None
        return t.train_seconds + t.eval_seconds + t.checkpoint_seconds

    separate = [rerun.rerun(resolved, loaded, folder / f"sep-{s.start}", spotcheck.start_checkpoint(m, s), s.end)
                for s in chosen]
    one = rerun.rerun_segments(resolved, loaded, folder / "one",
                               [(spotcheck.start_checkpoint(m, s), s.end) for s in chosen])
    sep_fixed = sum(r.seconds - busy(r) for r in separate) / len(chosen)
    one_fixed = (one.seconds - busy(one)) / len(chosen)
    same = [s for r in separate for s in r.result.steps] == one.result.steps
    return {"segments": [f"{s.start + 1}-{s.end}" for s in chosen],
            "separate_processes": {"seconds": sum(r.seconds for r in separate), "fixed_per_segment": sep_fixed},
            "one_process": {"seconds": one.seconds, "fixed_per_segment": one_fixed},
            "steps_bit_identical": same}


def _storage(manifest: Path) -> dict[str, Any]:
    from safetensors.torch import load_file, save

    from repro.records.checkpoint import CheckpointRecords, save_checkpoint
    from repro.records.manifest_file import load_manifest
    from repro.running.recording import update_norm

    loaded = load_manifest(manifest)
    m = loaded.manifest
    sizes = [c.size for c in m.checkpoints]
    unchanged, tensors = [], len(m.checkpoints[0].tensors)
    for a, b in zip(m.checkpoints, m.checkpoints[1:], strict=False):
        unchanged.append(sum(1 for k, v in b.tensors.items() if a.tensors.get(k) == v))
    unchanged_bytes = 0
    first, second = m.checkpoints[0], m.checkpoints[1]
    state_a, state_b = load_file(loaded.folder / first.path), load_file(loaded.folder / second.path)
    for k, v in second.tensors.items():
        if first.tensors.get(k) == v:
            unchanged_bytes += state_b[k].numel() * state_b[k].element_size()
    data = save(state_b)
    began = time.perf_counter()
    packed = zlib.compress(data, 6)
    zlib_seconds = time.perf_counter() - began
    with tempfile.TemporaryDirectory() as tmp:
        records = CheckpointRecords(step=second.step, config_sha256="0" * 64, steps=[], validation=[])
        began = time.perf_counter()
        save_checkpoint(Path(tmp), second.step, state_b, records)
        write_seconds = time.perf_counter() - began
    began = time.perf_counter()
    floating_a = {k: v.clone() for k, v in state_a.items() if v.is_floating_point() and not k.startswith("repro.")}
    update_norm(floating_a, state_b)
    norm_seconds = time.perf_counter() - began
    return {"checkpoints": len(sizes), "bytes_per_checkpoint": sizes[0], "bytes_all": sum(sizes),
            "tensors_per_checkpoint": tensors, "unchanged_tensors_between_consecutive": unchanged,
            "unchanged_bytes_first_pair": unchanged_bytes,
            "zlib6_ratio": len(packed) / len(data), "zlib6_seconds": zlib_seconds,
            "write_checkpoint_seconds": write_seconds, "copy_and_update_norm_seconds": norm_seconds,
            "run_overhead_seconds": m.timing.overhead_seconds}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the results; exit 1 if the audit took more than the budget's share."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--every", type=int, default=30, help="checkpoint every N steps")
    parser.add_argument("--budget", default="10%")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--keep", help="keep the run and the forged copy in this folder")
    parser.add_argument("--manifest",
                        help="audit this recorded run instead of recording one (its wall: the manifest's)")
    parser.add_argument("--skip-fixed-cost", action="store_true", help="leave out step 5 (it replays 6 segments)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="in step 4, audit only a seed that catches the forgery, not one that misses it")
    args = parser.parse_args(argv)

    import torch

    results: dict[str, Any] = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average_before": os.getloadavg()},
        "preset": args.preset, "checkpoint_every": args.every, "budget": args.budget,
    }
    with tempfile.TemporaryDirectory(prefix="repro-bench-budget-") as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if args.manifest:
            from repro.records.manifest_file import load_manifest

            manifest = Path(args.manifest).resolve()
            run_wall = load_manifest(manifest).manifest.timing.wall_seconds
            results["run_recorded_earlier"] = str(manifest)
        else:
            manifest, run_wall = _record(args.preset, args.every, folder)
        results["run_wall_seconds"] = run_wall
        budget = args.budget
        code, audit_wall, report = _audit(manifest, folder, "budget", "--budget", budget, refusal=True)
        if code == 2:  # the honest estimate says no segment fits: say so, then audit at the smallest that does
            budget = _smallest_budget(manifest)
            results["refused"] = {"budget": args.budget, "wall_seconds": audit_wall, "message": report["refused"],
                                  "smallest_budget_that_fits": budget}
            code, audit_wall, report = _audit(manifest, folder, "budget", "--budget", budget)
        results["audit"] = {"budget": budget, "exit": code, "wall_seconds": audit_wall, "ratio": audit_wall / run_wall,
                            "verdict": report["verdict"], "segments": report["segments"],
                            "fraction_replayed": report["fraction_replayed"], "assurance": report["assurance"],
                            "timing": report["timing"]}
        steps = int(report["steps_total"])
        first, last = steps - steps // 3 + 1, steps
        forged = _forge(manifest, folder, first, last)
        rates = _catch_rate(forged, budget, first, last, args.trials)
        results["forgery"] = {"fabricated_steps": f"{first}-{last}", **rates}
        real = {}
        for label, seed in (("catching", rates["recorded_norms"]["first_catching_seed"]),
                            ("missing", rates["recorded_norms"]["first_missing_seed"])):
            if seed is None or (label == "missing" and args.skip_missing):
                continue
            code, wall, forged_report = _audit(forged, folder, f"forged-{label}", "--budget", budget,
                                               "--seed", str(seed))
            real[label] = {"seed": seed, "exit": code, "verdict": forged_report["verdict"], "wall_seconds": wall,
                           "segments": forged_report["segments"]}
        results["forgery"]["real_audits"] = real
        if not args.skip_fixed_cost:
            results["fixed_cost"] = _fixed_cost(manifest, folder / "fixed", 3)
        results["storage"] = _storage(manifest)
        results["machine"]["load_average_after"] = os.getloadavg()

    print(json.dumps(results, indent=1))
    ratio = results["audit"]["ratio"]
    print(f"\nrun {run_wall:.1f} s; audit --budget {budget} {audit_wall:.1f} s = {ratio:.1%} of the run",
          file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    share = float(budget[:-1]) / 100 if budget.endswith("%") else None
    return 0 if share is None or ratio <= share else 1


if __name__ == "__main__":
    sys.exit(main())
