"""A small GPT, readable top to bottom (after nanoGPT's model.py).

Shapes: B batch, T sequence (<= block_size), C embedding width, H heads, V vocabulary.
No dropout (0 keeps training free of extra randomness), untied LM head as in the seed run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from repro.trainer.gpt.linear_cross_entropy import Workspace, linear_cross_entropy


@dataclass(frozen=True)
class GPTShape:
    """Model dimensions."""

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    init: str = "gpt2"
    """``gpt2``: normal(0.02), residual projections 0.02 / sqrt(2 n_layer) (nanoGPT). ``neox``: what
    ``litgpt pretrain`` uses, normal(sqrt(2 / 5 n_embd)), residual projections 1 / (sqrt(n_embd) n_layer)."""
    loss_chunk_rows: int | None = None
    """Given targets, compute the LM head and loss this many rows at a time, never holding all the
    logits (:mod:`~repro.trainer.gpt.linear_cross_entropy`); None: logits, then ``F.cross_entropy``."""


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with a causal mask."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        assert shape.n_embd % shape.n_head == 0, "n_embd must divide into n_head heads"
        self.n_head = shape.n_head
        self.c_attn = nn.Linear(shape.n_embd, 3 * shape.n_embd)  # q, k, v in one matmul
        self.c_proj = nn.Linear(shape.n_embd, shape.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, C/H)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out: torch.Tensor = self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return out


class MLP(nn.Module):
    """Position-wise feed-forward block, 4x wide, GELU."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.c_fc = nn.Linear(shape.n_embd, 4 * shape.n_embd)
        self.c_proj = nn.Linear(4 * shape.n_embd, shape.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.c_proj(F.gelu(self.c_fc(x)))
        return out


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(shape.n_embd)
        self.attn = CausalSelfAttention(shape)
        self.ln_2 = nn.LayerNorm(shape.n_embd)
        self.mlp = MLP(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        out: torch.Tensor = x + self.mlp(self.ln_2(x))
        return out


class GPT(nn.Module):
    """Token + position embeddings, ``n_layer`` blocks, final norm, untied LM head."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.shape = shape
        self.wte = nn.Embedding(shape.vocab_size, shape.n_embd)
        self.wpe = nn.Embedding(shape.block_size, shape.n_embd)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layer))
        self.ln_f = nn.LayerNorm(shape.n_embd)
        self.lm_head = nn.Linear(shape.n_embd, shape.vocab_size, bias=False)
        self.loss_workspace = Workspace()  # used with loss_chunk_rows; holds nothing until then
        if shape.init == "neox":
            std, proj_std = math.sqrt(2.0 / 5 / shape.n_embd), 1 / math.sqrt(shape.n_embd) / shape.n_layer
        else:
            std, proj_std = 0.02, 0.02 / math.sqrt(2 * shape.n_layer)
        self.apply(lambda module: self._init_weights(module, std))
        # Scale residual projections down so the residual stream's variance does not grow with depth.
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=proj_std)

    @staticmethod
    def _init_weights(module: nn.Module, std: float = 0.02) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Logits (B, T, V) and, given targets (B, T), the mean cross-entropy loss. With
        ``loss_chunk_rows`` set and targets given, the logits are never made whole: (None, loss)."""
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        if targets is not None and self.shape.loss_chunk_rows is not None:
            rows = self.shape.loss_chunk_rows
            loss = linear_cross_entropy(x.view(B * T, -1), self.lm_head.weight, targets.view(B * T), rows,
                                        self.loss_workspace)
            return None, loss
        logits = self.lm_head(x)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))

    def num_parameters(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())
