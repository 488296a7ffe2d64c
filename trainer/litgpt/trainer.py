"""LitGPT's ``litgpt.model.GPT`` as a repro trainer plugin (entry point ``litgpt``).

The model is built from scratch from a ``litgpt.Config`` (a named config such as ``pythia-14m``,
or the seed's architecture at the configured dimensions) — nothing is downloaded. Data, tokenizer,
batches, validation windows, schedule, AdamW, precision, compilation and accumulation are the GPT
trainer's (:mod:`repro.trainer.gpt.trainer`), so a LitGPT run and a ``gpt`` run differ only in the
model and its initialisation. The weights are initialised as ``litgpt pretrain`` does (GPT-NeoX:
normal with std sqrt(2 / 5d), output projections 1 / (sqrt(d) · n_layer)).

Needs the ``litgpt`` extra; install it with the torch constraint so pip keeps the installed torch:
``pip install -c .venv/torch-constraint.txt 'repro-audit[litgpt]'``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator
from torch import nn
from torch.nn import functional as F

from repro.errors import InputError
from repro.trainer.gpt.trainer import PRESETS as GPT_PRESETS
from repro.trainer.gpt.trainer import GPTConfig, GPTTrainer

# The seed report's system: LitGPT with LayerNorm, a GPT-NeoX MLP (4x, GELU), biases, sequential
# residual, rotary embeddings on a quarter of each head (LitGPT's GPT-NeoX/pythia defaults).
SEED_ARCHITECTURE: dict[str, Any] = {
    "bias": True, "norm_class_name": "LayerNorm", "mlp_class_name": "GptNeoxMLP",
    "parallel_residual": False, "rotary_percentage": 0.25,
}


class LitGPTConfig(GPTConfig):
    """The GPT trainer's config plus which LitGPT model to build."""

    model: str | None = Field(
        None,
        description="A litgpt.Config name (e.g. pythia-14m); None: the seed architecture at n_layer/n_head/n_embd.",
    )
    later_fields: ClassVar[tuple[str, ...]] = ()  # no LitGPT run predates a field: record them all
    loss_chunk_rows: int | None = Field(  # LitGPT's model makes whole logits: the GPT trainer's option does not apply
        None, exclude=True, description="Not used by LitGPT (its loss is over whole logits); not recorded.",
    )

    @field_validator("loss_chunk_rows")
    @classmethod
    def _not_chunked(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("the litgpt trainer computes the loss over whole logits; loss_chunk_rows does not apply")
        return value
    init: Literal["gpt2", "neox"] = Field(
        "neox", description="litgpt pretrain's GPT-NeoX small init, or nanoGPT's std 0.02 (the gpt trainer's)."
    )


# The GPT trainer's presets under their own names (preset names are global across trainers):
# ``litgpt-baseline`` is the seed's configuration on LitGPT's model.
PRESETS: dict[str, dict[str, Any]] = {
    f"litgpt-{name}": {key: value for key, value in values.items() if key != "loss_chunk_rows"}
    for name, values in GPT_PRESETS.items()
}
"""The GPT trainer's presets, without what this trainer does not use (``loss_chunk_rows``)."""


def litgpt_config(cfg: LitGPTConfig) -> Any:
    """The ``litgpt.Config`` of ``cfg``: its vocabulary and block size, a named or the seed architecture."""
    from litgpt.config import Config, name_to_config

    sizes = {"block_size": cfg.block_size, "vocab_size": cfg.vocab_size, "padded_vocab_size": cfg.vocab_size}
    if cfg.model is None:
        return Config(
            name="repro-seed", n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
            intermediate_size=4 * cfg.n_embd, **SEED_ARCHITECTURE, **sizes,
        )
    if cfg.model not in name_to_config:
        raise InputError(
            f"LitGPT has no model config {cfg.model!r}; name one of litgpt.config.name_to_config "
            "(e.g. pythia-14m) or leave model unset to use n_layer/n_head/n_embd"
        )
    return Config.from_name(cfg.model, **sizes)


def init_weights(model: nn.Module, n_layer: int, n_embd: int, init: str) -> None:
    """``neox``: ``litgpt pretrain``'s ``initialize_weights`` without Fabric (GPT-NeoX small init);
    ``gpt2``: the same pattern with nanoGPT's stds (0.02; projections 0.02 / sqrt(2 n_layer))."""
    from litgpt.model import CausalSelfAttention, LLaMAMLP

    if init == "neox":
        std, proj_std = math.sqrt(2.0 / 5 / n_embd), 1 / math.sqrt(n_embd) / n_layer
    else:
        std, proj_std = 0.02, 0.02 / math.sqrt(2 * n_layer)
    for module in model.modules():  # modules() order is fixed, so the draws are too
        if isinstance(module, nn.Embedding | nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            bias = getattr(module, "bias", None)
            if bias is not None:
                nn.init.zeros_(bias)
    for module in model.modules():
        if isinstance(module, LLaMAMLP | CausalSelfAttention):
            nn.init.normal_(module.proj.weight, mean=0.0, std=proj_std)


class WithLoss(nn.Module):
    """LitGPT's GPT returning ``(logits, mean cross-entropy)`` like repro's GPT."""

    def __init__(self, gpt: nn.Module) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.gpt(idx)
        return logits, F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


class LitGPTTrainer(GPTTrainer):
    """Trains ``litgpt.model.GPT`` with the GPT trainer's data, loop pieces and checkpoints."""

    config_model = LitGPTConfig

    @classmethod
    def presets(cls) -> Mapping[str, Mapping[str, Any]]:
        """``litgpt-baseline`` (the seed's configuration), ``litgpt-baseline-full``, ``litgpt-smoke``."""
        return PRESETS

    def build(self) -> None:
        """Build LitGPT's GPT on the CPU (same init on every device), move it; set up AdamW."""
        from litgpt.model import GPT

        cfg = self.cfg
        assert isinstance(cfg, LitGPTConfig)
        config = litgpt_config(cfg)
        gpt = GPT(config)
        init_weights(gpt, config.n_layer, config.n_embd, cfg.init)
        self.model = WithLoss(gpt).to(self.device)
        self._setup_training()
