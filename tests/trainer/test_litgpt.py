"""The LitGPT trainer plugin (``repro-audit[litgpt]``): LitGPT's own GPT, built from a ``litgpt.Config``,
run, verified, resumed and audited through repro on a tiny config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from repro.cli import main
from repro.errors import InputError
from repro.records.manifest_file import load_manifest
from repro.running.config import resolve_run
from tests.conftest import copy_run
from tests.plugin_site import interrupt_after

litgpt = pytest.importorskip("litgpt", reason="the LitGPT trainer tests need `pip install repro-audit[litgpt]`")

TINY = ["litgpt-smoke", "--steps", "8", "--set", "checkpoint_every=4", "--set", "eval_every=4",
        "--set", "n_layer=1", "--set", "n_embd=32", "--set", "block_size=16"]


def test_litgpt_runs_verifies_resumes_bit_identically_and_audits_bitwise(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run" / "lit.json"
    assert main(["run", *TINY, "--out", str(out)]) == 0
    m = load_manifest(out).manifest
    assert (m.run.trainer.name, m.run.trainer.distribution) == ("litgpt", "repro-audit")
    assert m.run.config["init"] == "neox" and m.run.config["model"] is None
    assert [s.step for s in m.steps] == list(range(1, 9)) and [v.step for v in m.validation] == [4, 8]
    assert "model.gpt.transformer.h.0.attn.qkv.weight" in m.checkpoints[0].tensors
    assert main(["verify", str(out)]) == 0

    resumed = copy_run(out, tmp_path / "resumed")
    interrupt_after(resumed, 4)
    assert main(["run", *TINY, "--out", str(resumed), "--resume"]) == 0
    r = load_manifest(resumed).manifest
    assert r.timing.resumed_from_step == 4
    assert r.steps == m.steps and r.validation == m.validation
    assert [(c.step, c.sha256) for c in r.checkpoints] == [(c.step, c.sha256) for c in m.checkpoints]

    capsys.readouterr()
    report = tmp_path / "audit.json"
    assert main(["audit", str(out), "--json", str(report)]) == 0, capsys.readouterr().err
    audit = json.loads(report.read_text(encoding="utf-8"))
    assert audit["verdict"] == "bitwise" and audit["steps_compared"] == 8
    assert all(c["verdict"] == "bitwise" for c in audit["checkpoints"])


def test_a_named_litgpt_config_is_built_at_the_runs_vocabulary_and_length() -> None:
    from repro.trainer.litgpt.trainer import LitGPTConfig, litgpt_config

    cfg = resolve_run("litgpt-smoke", trainer="litgpt", assignments=["model=pythia-14m"]).config
    assert isinstance(cfg, LitGPTConfig)
    config = litgpt_config(cfg)
    assert (config.n_layer, config.n_embd, config.n_head) == (6, 128, 4)
    assert (config.padded_vocab_size, config.block_size) == (1000, 32)
    baseline = resolve_run("litgpt-baseline", trainer="litgpt").config
    assert isinstance(baseline, LitGPTConfig)
    seed = litgpt_config(baseline)
    assert (seed.n_layer, seed.n_head, seed.n_embd, seed.rotary_percentage, seed.mlp_class_name) == (
        4, 4, 256, 0.25, "GptNeoxMLP")
    with pytest.raises(InputError, match="LitGPT has no model config 'no-such-model'"):
        litgpt_config(cfg.model_copy(update={"model": "no-such-model"}))


def test_without_litgpt_the_trainer_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           capsys) -> None:
    monkeypatch.setitem(sys.modules, "litgpt", None)
    for name in ("repro.trainer.litgpt", "repro.trainer.litgpt.trainer"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert main(["run", "--trainer", "litgpt", *TINY, "--out", str(tmp_path / "lit.json")]) == 4
    err = capsys.readouterr().err
    assert "the litgpt trainer needs LitGPT, which is not installed here" in err and "Traceback" not in err
    assert "'repro-audit[litgpt]'" in err


def test_the_gpt_trainer_does_not_import_litgpt() -> None:
    code = ("import sys, repro.cli.app, repro.trainer.gpt.trainer; "
            "print(sorted(m for m in sys.modules if m.startswith('litgpt')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_litgpt_trainer_records_no_option_it_ignores() -> None:
    from repro.trainer.litgpt.trainer import PRESETS, LitGPTConfig

    assert all("loss_chunk_rows" not in values for values in PRESETS.values())
    assert "loss_chunk_rows" not in LitGPTConfig(**PRESETS["litgpt-baseline"]).model_dump(mode="json")
    with pytest.raises(ValueError, match="loss_chunk_rows does not apply"):
        LitGPTConfig(loss_chunk_rows=512)
