"""The GPT baseline's shape and schedule match the seed report's configuration."""

from __future__ import annotations

import itertools

import pytest

from repro.running.config import resolve_run
from repro.trainer.gpt.model import GPT, GPTShape
from repro.trainer.gpt.trainer import GPTConfig, learning_rate


def test_baseline_preset_is_the_seed_configuration() -> None:
    resolved = resolve_run("baseline")
    cfg = resolved.config
    assert isinstance(cfg, GPTConfig)
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size) == (4, 4, 256, 16000)
    assert (cfg.block_size, cfg.batch_size, cfg.steps, cfg.warmup_steps) == (128, 16, 300, 50)
    assert cfg.lr == 3e-4 and cfg.val_fraction == 0.05
    assert resolved.settings.pythonhashseed == 1337
    assert resolved.settings.checkpoint_every == 100


def test_baseline_has_about_11_4M_parameters() -> None:
    model = GPT(GPTShape(16000, 128, 4, 4, 256))
    assert round(model.num_parameters() / 1e6, 1) == 11.4


def test_baseline_full_has_about_23M_parameters() -> None:
    cfg = resolve_run("baseline-full").config
    assert isinstance(cfg, GPTConfig)
    model = GPT(GPTShape(cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd))
    assert 22e6 < model.num_parameters() < 24e6


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    cfg = GPTConfig()
    assert learning_rate(cfg, 1) == pytest.approx(3e-4 / 50)
    assert learning_rate(cfg, 50) == pytest.approx(3e-4)
    assert learning_rate(cfg, 175) == pytest.approx((3e-4 + 3e-5) / 2)
    assert learning_rate(cfg, 300) == pytest.approx(3e-5)
    lrs = [learning_rate(cfg, s) for s in range(50, 301)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_overrides_reach_the_config_and_settings() -> None:
    resolved = resolve_run("smoke", settings_overrides={"seed": 5}, config_overrides={"steps": 7},
                           assignments=["lr=0.01", "threads=1"])
    assert isinstance(resolved.config, GPTConfig)
    assert resolved.config.steps == 7 and resolved.config.lr == 0.01
    assert resolved.settings.seed == 5 and resolved.settings.threads == 1
    assert resolved.config_sha256 != resolve_run("smoke").config_sha256
