"""Data-parallel runs: torch.distributed.run with gloo, 2 processes x 1 thread.

The fast tests check what needs no processes: the config digest of a single-process run is what
it was before distributed training existed, refusals happen before any process starts, the launch
command is torchrun's. The slow ones start real ranks: two 2-process runs are bit-identical, a
2-node run on localhost gives one manifest that audits bitwise, a killed rank leaves a resumable
run, a drifted replica ends the run, and an audit with 1 process is judged and attributed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from repro.cli import main
from repro.errors import UsageError
from repro.records.manifest_file import load_manifest, run_folder
from repro.running.config import resolve_run
from repro.running.distributed import DRIFT_ENV, KILL_ENV
from repro.running.job import Job
from repro.running.launcher import distributed_command
from repro.trainer_api import TrainerContext
from tests.helpers import float_bits
from tests.repro.test_resume import assert_same_run

STEPS = ["--threads", "1", "--set", "steps=8", "--set", "checkpoint_every=4", "--set", "eval_every=4"]
TWO = ["smoke", *STEPS, "--nproc", "2"]
REFERENCE = Path(__file__).parents[2] / "manifests" / "reference" / "smoke.json"


def test_single_process_config_digest_is_unchanged() -> None:
    """nproc/nnodes default to 1 and leave the digest as earlier releases recorded it."""
    recorded = load_manifest(REFERENCE).manifest
    resolved = resolve_run("smoke")
    assert resolved.settings.nproc == resolved.settings.nnodes == 1
    assert resolved.config_sha256 == recorded.run.config_sha256
    assert recorded.distributed is None  # a v1 manifest without the new fields still loads


def test_world_size_not_layout_enters_the_digest() -> None:
    one_node = resolve_run("smoke", settings_overrides={"nproc": 2})
    two_nodes = resolve_run("smoke", settings_overrides={"nnodes": 2})
    assert one_node.config_sha256 == two_nodes.config_sha256 != resolve_run("smoke").config_sha256


def test_trainer_without_distributed_support_is_refused_before_launch(plugin_path: Path, tmp_path: Path,
                                                                       capsys) -> None:
    out = tmp_path / "mlp.json"
    assert main(["run", "--trainer", "tinymlp:TinyMLPTrainer", "--nproc", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not support data-parallel training" in err and "--nproc 1" in err
    assert not run_folder(out).exists()


def test_lightning_adapter_refuses_nproc(tmp_path: Path, capsys) -> None:
    pytest.importorskip("lightning")
    assert main(["run", "--trainer", "lightning", "--set", "module=x:Y", "--set", "datamodule=x:Z", "--nproc", "2",
                 "--out", str(tmp_path / "lit.json")]) == 2
    assert "trainer lightning does not support data-parallel training" in capsys.readouterr().err


def test_gpt_batch_must_split_over_ranks(tmp_path: Path) -> None:
    from repro.trainer.gpt.trainer import GPTConfig, GPTTrainer

    resolved = resolve_run("smoke")
    ctx = TrainerContext(settings=resolved.settings, device=torch.device("cpu"), cache_dir=tmp_path,
                         artifact_dir=tmp_path, rank=0, world_size=3)
    with pytest.raises(UsageError, match="batch_size 4 does not split over 3 processes"):
        GPTTrainer(GPTConfig(batch_size=4), ctx)


def test_bad_node_rank_and_missing_endpoint(tmp_path: Path, capsys) -> None:
    assert main(["run", *TWO, "--nnodes", "2", "--node-rank", "2", "--out", str(tmp_path / "r.json")]) == 2
    assert "--node-rank 2 must be from 0 to 1" in capsys.readouterr().err
    resolved = resolve_run("smoke", settings_overrides={"nnodes": 2})
    job = Job(trainer_name="gpt", trainer_entry="x:Y", settings=resolved.settings, config={}, config_sha256="0" * 64,
              artifact_dir="a", cache_dir="c", checkpoint_root="k", result_path="r")
    with pytest.raises(UsageError, match="needs --rdzv-endpoint"):
        distributed_command(job, Path("job.json"))


@pytest.mark.parametrize("endpoint", ["localhost", "host:port", ":29400", "127.0.0.1:0", "127.0.0.1:70000",
                                      "a b:1", "[zz]:1", "no-such-host.invalid:29400"])
def test_a_malformed_endpoint_is_a_usage_error_before_launch(endpoint: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    assert main(["run", *TWO, "--nnodes", "2", "--rdzv-endpoint", endpoint, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--rdzv-endpoint" in err and "Traceback" not in err
    assert not out.exists() and not run_folder(out).exists() and not out.with_name("r.json.incomplete").exists()


def test_launch_command_is_torchrun() -> None:
    resolved = resolve_run("smoke", settings_overrides={"nproc": 2, "nnodes": 2})
    job = Job(trainer_name="gpt", trainer_entry="x:Y", settings=resolved.settings, config={},
              config_sha256="ab" * 32, artifact_dir="a", cache_dir="c", checkpoint_root="k", result_path="r",
              node_rank=1, rdzv_endpoint="10.0.0.1:29400")
    command = distributed_command(job, Path("job.json"))
    assert command[1:3] == ["-m", "repro.running.agent"]  # torch.distributed.run with repro's rendezvous
    assert {"--nproc-per-node=2", "--nnodes=2", "--max-restarts=0", "--rdzv-backend=repro-c10d",
            "--rdzv-endpoint=10.0.0.1:29400", "--rdzv-conf=is_host=0,join_timeout=600"} <= set(command)
    assert command[-3:] == ["-m", "repro.running.worker", "job.json"]


# -- real ranks --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory, repro_home: Path) -> Path:
    """One uninterrupted `--nproc 2` smoke run (8 steps, checkpoints at 4 and 8)."""
    out = tmp_path_factory.mktemp("dist") / "run.json"
    assert main(["run", *TWO, "--out", str(out)]) == 0
    return out


def _repro(args: list[str], cwd: Path, **env_extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, DRIFT_ENV)}
    env.update(env_extra)
    return subprocess.Popen([sys.executable, "-m", "repro", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _finish(proc: subprocess.Popen[str], timeout: int = 400) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc.returncode, out + err


@pytest.mark.slow
def test_two_process_runs_are_bit_identical_and_the_seed_matters(two_process_run: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    again = tmp_path / "again.json"
    temporary = tmp_path / "tmp"  # what the agent would inherit as its temporary folder
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert main(["run", *TWO, "--out", str(again)]) == 0
    assert not list(temporary.glob("torchelastic_*"))  # it went to the job's own folder, removed with it
    assert_same_run(again, two_process_run)  # losses, fingerprints, every checkpoint tensor, bit for bit
    m = load_manifest(two_process_run).manifest
    assert m.distributed is not None and m.distributed.world_size == 2 and m.distributed.backend == "gloo"
    assert m.distributed.replica_checks == [4, 8] and m.distributed.threads_per_process == 1
    assert [n.ranks for n in m.distributed.nodes] == [[0, 1]]
    assert m.run.settings.nproc == 2 and m.steps[0].tokens == 4 * 32  # the global batch
    assert (run_folder(two_process_run) / "logs" / "rank-1.log").exists()
    other = tmp_path / "seed.json"
    assert main(["run", *TWO, "--seed", "7", "--out", str(other)]) == 0
    o = load_manifest(other).manifest
    assert [s.batch for s in o.steps] != [s.batch for s in m.steps]
    assert [float_bits(s.loss) for s in o.steps] != [float_bits(s.loss) for s in m.steps]


@pytest.mark.slow
def test_two_nodes_on_localhost_give_one_manifest_audited_bitwise(two_process_run: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = ["run", "smoke", *STEPS, "--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"]
    nodes = [_repro([*common, "--node-rank", str(r), "--out", str(tmp_path / f"node{r}.json")], tmp_path)
             for r in (0, 1)]
    (code0, out0), (code1, out1) = _finish(nodes[0]), _finish(nodes[1])
    assert (code0, code1) == (0, 0), out0 + out1
    assert "node rank 0 writes the manifest" in out1
    assert (tmp_path / "node0.json").exists() and not (tmp_path / "node1.json").exists()
    assert not run_folder(tmp_path / "node1.json").exists()
    m = load_manifest(tmp_path / "node0.json").manifest
    assert m.distributed is not None and m.distributed.nnodes == 2 and len(m.distributed.nodes) == 2
    assert all(not n.differences for n in m.distributed.nodes)
    # 2 nodes x 1 process train exactly as 1 node x 2 processes.
    two_process = load_manifest(two_process_run).manifest
    assert [float_bits(s.loss) for s in m.steps] == [float_bits(s.loss) for s in two_process.steps]
    report = tmp_path / "audit.json"
    assert main(["audit", str(tmp_path / "node0.json"), "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["verdict"] == "bitwise" and data["rerun"]["world_size"] == 2 and data["rerun"]["config_matches"]


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_resume_is_bit_identical(two_process_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    code, output = _finish(_repro(["run", *TWO, "--out", str(out)], tmp_path, **{KILL_ENV: "1:6"}))
    assert code != 0, output
    assert "rank 1 of the distributed job was killed by signal 9 (SIGKILL)" in " ".join(output.split())
    assert not out.exists()
    assert main(["verify", str(out)]) == 4
    assert main(["run", *TWO, "--out", str(out), "--resume", "--nproc", "1"]) == 2  # another world size
    assert main(["run", *TWO, "--out", str(out), "--resume"]) == 0
    assert load_manifest(out).manifest.timing.resumed_from_step == 4
    assert_same_run(out, two_process_run)


@pytest.mark.slow
def test_a_drifted_replica_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv(DRIFT_ENV, "1:4")
    out = tmp_path / "run.json"
    assert main(["run", *TWO, "--out", str(out)]) == 4
    err = " ".join(capsys.readouterr().err.split())
    assert "replica check at step 4: rank 1's state differs from rank 0's, first in tensor" in err
    assert "'model." in err
    assert not out.exists() and not (run_folder(out) / "checkpoints" / "step-000004").exists()


@pytest.mark.slow
def test_audit_with_one_process_is_within_tolerance_and_attributed(two_process_run: Path, tmp_path: Path) -> None:
    report = tmp_path / "audit.json"
    assert main(["audit", str(two_process_run), "--nproc", "1", "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["verdict"] in ("within_tolerance", "bitwise") and data["rerun"]["world_size"] == 1
    assert data["batches"]["identical"]
    world = [d for d in data["differences"] if d["field"] == "settings.world_size"]
    assert world and world[0]["recorded"] == "2" and world[0]["here"] == "1"
    if data["verdict"] == "within_tolerance":
        assert "world size 2 → 1" in data["attribution"]["summary"]


@pytest.mark.slow
def test_a_spot_check_replays_a_segment_with_the_recorded_world_size(two_process_run: Path, tmp_path: Path) -> None:
    report = tmp_path / "audit.json"
    assert main(["audit", str(two_process_run), "--segments", "1", "--seed", "0", "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["mode"] == "spot-check" and data["rerun"]["world_size"] == 2
    assert data["verdict"] == "bitwise" and data["segments"][0]["start"] == 4  # resumed from the step-4 checkpoint


def test_diff_reports_the_world_size_of_each_run(two_process_run: Path) -> None:
    """Every report describes a manifest one way: a 2-process run is 2 processes in diff too."""
    from repro.audits.diff import run_diff

    report = run_diff(two_process_run, two_process_run)
    assert (report.a.recorded_world_size, report.b.recorded_world_size) == (2, 2)
    assert report.verdict == "bitwise" and not [d for d in report.differences if d.category == "world"]
