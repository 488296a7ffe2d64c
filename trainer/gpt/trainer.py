"""The GPT baseline as a repro trainer plugin (entry point ``gpt`` in ``repro.trainers``).

Batches are drawn with a dedicated generator (``context.generator("batches")``), so nothing else
that touches the global RNG can change the data order; validation uses fixed, evenly spaced
windows of the validation split and no randomness at all.

Data-parallel (``repro run --nproc N``): the configured ``batch_size`` stays the global batch. Every
rank draws the same global batch from the same generator and trains on its contiguous shard of
``batch_size / N`` windows through DistributedDataParallel, so N processes and one process train
on the same examples; the reported loss is the all-reduced mean over the global batch and the
fingerprint covers the whole global batch. Validation runs on the unwrapped model, identically on
every rank (no collectives); repro records rank 0's value.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from repro.records.hashing import sha256_bytes
from repro.torch_state import (
    generator_state_tensor,
    load_optimizer_state_tensors,
    optimizer_state_tensors,
)
from repro.trainer.gpt import data as gpt_data
from repro.trainer.gpt.model import GPT, GPTShape
from repro.trainer_api import DataSummary, StepOutput, TrainerConfig, TrainerContext


class GPTConfig(TrainerConfig):
    """Config of the GPT baseline. Defaults are the seed report's run."""

    data: str | None = Field(None, description="Text file or folder; None: built-in Shakespeare.")
    max_files: int | None = Field(None, ge=1, description="Use only the first N corpus files.")
    vocab_size: int = Field(16000, ge=300, le=65535, description="SentencePiece BPE vocabulary.")
    val_fraction: float = Field(0.05, gt=0.0, lt=0.5, description="Tail of the token stream for validation.")
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    n_embd: int = Field(256, ge=8)
    init: Literal["gpt2", "neox"] = Field(
        "gpt2", description="Weight init: nanoGPT's std 0.02, or litgpt pretrain's GPT-NeoX small init."
    )
    block_size: int = Field(128, ge=8, description="Sequence length.")
    batch_size: int = Field(16, ge=1, description="Sequences per optimizer step (the global batch).")
    grad_accum_steps: int = Field(
        1, ge=1, description="Micro-batches per optimizer step; batch_size must divide by it."
    )
    lr: float = Field(3e-4, gt=0.0)
    min_lr: float = Field(3e-5, ge=0.0, description="Floor of the cosine decay.")
    warmup_steps: int = Field(50, ge=0)
    # torch.optim.AdamW's own defaults (betas 0.9/0.999, decay 0.01), as a Lightning module that
    # says only "AdamW 3e-4" gets; measured on H100: val 5.926 at step 300 vs 5.973 with 0.95/0.1.
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW decay on matrices (not biases, norms).")
    beta1: float = Field(0.9, gt=0.0, lt=1.0)
    beta2: float = Field(0.999, gt=0.0, lt=1.0)
    grad_clip: float = Field(1.0, gt=0.0)
    eval_batches: int = Field(20, ge=1, description="Fixed validation batches per evaluation.")
    adamw: Literal["default", "for-loop", "foreach", "fused"] = Field(
        "default", description="torch AdamW kernels; default: torch's choice (for-loop on CPU, foreach on CUDA)."
    )
    loss_chunk_rows: int | None = Field(
        None, ge=1, description=(
            "LM head and cross-entropy this many rows at a time, gradients in the forward pass (never "
            "holds the whole logits); None: the whole logits, then F.cross_entropy (as runs recorded "
            "before this setting)."
        ),
    )
    steps: int = Field(300, ge=1)

    later_fields: ClassVar[tuple[str, ...]] = ("grad_accum_steps", "adamw", "init", "loss_chunk_rows")
    """Fields newer than the first manifests, omitted from the recorded config at their defaults."""

    @model_serializer(mode="wrap")
    def _omit_later_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Fields added after the first manifests are left out at their defaults, so the recorded
        # config (and config_sha256) of a default run is what it was before they existed: older
        # manifests audit and resume without a spurious config difference.
        data: dict[str, Any] = handler(self)
        for name in self.later_fields:
            if name in data and data[name] == type(self).model_fields[name].default:
                del data[name]
        return data

    @model_validator(mode="after")
    def _micro_batches_divide(self) -> GPTConfig:
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"batch_size {self.batch_size} does not divide into {self.grad_accum_steps} micro-batches"
            )
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # The LM head and loss in chunks of 512 rows: 0.91 x the step time of whole logits on the
    # 2-core CPU, a third less memory (docs/results.md); the same arithmetic up to float32 rounding.
    "baseline": {"loss_chunk_rows": 512},
    "baseline-full": {
        "n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "batch_size": 32,
        "steps": 3000, "warmup_steps": 100, "loss_chunk_rows": 512,
        "checkpoint_every": 500, "eval_every": 500,
    },
    "smoke": {
        "max_files": 2, "vocab_size": 1000, "n_layer": 2, "n_head": 2, "n_embd": 64,
        "block_size": 32, "batch_size": 4, "steps": 20, "warmup_steps": 5, "lr": 1e-3,
        "eval_batches": 2, "checkpoint_every": 10, "eval_every": 10,
    },
}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a run's ``precision`` setting ('32': none; 'bf16-mixed': bfloat16)."""
    if precision == "bf16-mixed":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def adamw(groups: list[dict[str, Any]], cfg: GPTConfig) -> torch.optim.AdamW:
    """AdamW with the configured implementation (for-loop, foreach or fused kernels)."""
    impl: dict[str, bool] = {
        "default": {}, "for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}
    }[cfg.adamw]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, **impl)


def learning_rate(cfg: GPTConfig, step: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``steps``."""
    if step <= cfg.warmup_steps:
        return cfg.lr * step / max(cfg.warmup_steps, 1)
    progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class GPTTrainer:
    """Trains :class:`~repro.trainer.gpt.model.GPT` on a SentencePiece-tokenized corpus."""

    config_model = GPTConfig
    supports_distributed = True

    @classmethod
    def presets(cls) -> Mapping[str, Mapping[str, Any]]:
        """``baseline`` (the seed run), ``baseline-full`` (~23M parameters), ``smoke`` (seconds)."""
        return PRESETS

    def __init__(self, config: GPTConfig, context: TrainerContext) -> None:
        self.cfg = config
        self.ctx = context
        self.device = context.device
        self.batches = context.generator("batches")
        if config.batch_size % context.world_size:
            from repro.errors import UsageError

            raise UsageError(
                f"batch_size {config.batch_size} does not split over {context.world_size} processes; "
                f"use a batch_size divisible by {context.world_size} (--set batch_size=N) or another --nproc"
            )
        self.shard = config.batch_size // context.world_size

    def prepare_data(self) -> DataSummary:
        """Load the corpus, train or reuse the tokenizer, encode and split the token stream."""
        cfg, cache = self.cfg, self.ctx.cache_dir
        if self.ctx.data is not None:  # an audit's rerun: the verified files, not the config's path
            corpus = gpt_data.load_verified(self.ctx.data, cfg.data)
        else:
            corpus = gpt_data.load_corpus(cfg.data, cfg.max_files)
        text = corpus.text()
        cut = gpt_data.split_point(text, 1.0 - cfg.val_fraction)
        model_bytes = gpt_data.train_tokenizer(text[:cut], cfg.vocab_size, cache)
        tokenizer_file = self.ctx.artifact_dir / "tokenizer.model"
        from repro.files import atomic

        atomic.write_bytes(tokenizer_file, model_bytes)
        ids = gpt_data.encode(model_bytes, text, cache)
        n_train = int(len(ids) * (1.0 - cfg.val_fraction))
        if n_train <= cfg.block_size + 1 or len(ids) - n_train <= cfg.block_size + 1:
            from repro.errors import InputError

            raise InputError(
                f"the corpus gives {len(ids)} tokens, too few for block_size {cfg.block_size} in both "
                "splits; use a larger corpus or --set block_size=N"
            )
        val_bytes = gpt_data.tail_bytes(model_bytes, text, n_train, cache)
        tokens = torch.from_numpy(ids.astype("int64"))
        self.train_tokens, self.val_tokens = tokens[:n_train], tokens[n_train:]
        return DataSummary(
            source=corpus.source,
            files=corpus.digests,
            corpus_sha256=corpus.sha256,
            tokenizer_file=tokenizer_file,
            token_stream_sha256=gpt_data.token_stream_sha256(ids),
            train_tokens=n_train,
            val_tokens=len(ids) - n_train,
            extra={
                "tokenizer": "sentencepiece-bpe", "vocab_size": cfg.vocab_size, "total_tokens": len(ids),
                # bits per byte = val loss (nats/token) * val_tokens / val_bytes / ln 2
                "val_bytes": val_bytes, "val_tokens_per_byte": round((len(ids) - n_train) / val_bytes, 6),
            },
        )

    def build(self) -> None:
        """Build the model on the CPU (same init on every device), then move it; set up AdamW."""
        cfg = self.cfg
        shape = GPTShape(
            cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.init, cfg.loss_chunk_rows
        )
        self.model: torch.nn.Module = GPT(shape).to(self.device)
        self._setup_training()

    def _setup_training(self) -> None:
        """AdamW over ``self.model`` (decay on matrices only), the forward (DDP-wrapped under data
        parallelism, compiled when asked), validation windows."""
        cfg = self.cfg
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = adamw(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], cfg
        )
        module: torch.nn.Module = self.model
        if self.ctx.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            module = DistributedDataParallel(self.model, process_group=self.ctx.process_group)
        # The compiled module shares the parameters; checkpoints use the plain module's names.
        self.forward = torch.compile(module) if self.ctx.settings.compile else module
        # Fixed validation windows, evenly spaced over the validation split.
        count = cfg.eval_batches * cfg.batch_size
        last = len(self.val_tokens) - cfg.block_size - 1
        self.val_starts = torch.linspace(0, last, count).long().tolist()

    def _windows(self, source: torch.Tensor, starts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        block = self.cfg.block_size
        x = torch.stack([source[i : i + block] for i in starts])
        y = torch.stack([source[i + 1 : i + 1 + block] for i in starts])
        return x, y

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.ctx.settings.precision):
            loss: torch.Tensor | None = self.forward(x, y)[1]
        assert loss is not None
        return loss

    def train_step(self, step: int) -> StepOutput:
        """One AdamW step on a batch drawn with the dedicated batch generator.

        The whole batch is drawn first (one draw of ``batch_size`` starts, so the data order does
        not depend on ``grad_accum_steps``) and fingerprinted as one; with accumulation it is cut
        into equal micro-batches whose mean losses are averaged, which is the full batch's mean.
        """
        cfg = self.cfg
        high = len(self.train_tokens) - cfg.block_size - 1
        starts = torch.randint(high, (cfg.batch_size,), generator=self.batches).tolist()
        x, y = self._windows(self.train_tokens, starts)
        fingerprint = sha256_bytes(x.numpy().astype("<i4").tobytes())[:16]
        tokens = x.numel()
        if self.ctx.world_size > 1:  # this rank's contiguous shard of the global batch
            part = slice(self.ctx.rank * self.shard, (self.ctx.rank + 1) * self.shard)
            x, y = x[part], y[part]
        x, y = x.to(self.device), y.to(self.device)
        lr = learning_rate(cfg, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        accum = cfg.grad_accum_steps
        if accum == 1:
            loss = self._loss(x, y)
            loss.backward()  # type: ignore[no-untyped-call]
            total = loss.detach()
        else:
            total = torch.zeros((), device=self.device)
            for xm, ym in zip(x.chunk(accum), y.chunk(accum), strict=True):
                micro = self._loss(xm, ym) / accum
                micro.backward()  # type: ignore[no-untyped-call]
                total += micro.detach().float()
        # DDP averaged the gradients over ranks: the norm is the global batch's, the same on every rank.
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        reported = total
        if self.ctx.world_size > 1:  # equal shards: the global mean is the mean of the rank means
            import torch.distributed as dist

            dist.all_reduce(reported, group=self.ctx.process_group)
            reported = reported / self.ctx.world_size
        return StepOutput(
            loss=reported.item(), lr=lr, grad_norm=grad_norm.item(), tokens=tokens, batch=fingerprint
        )

    @torch.no_grad()
    def validate(self) -> float:
        """Mean loss over the fixed validation batches."""
        self.model.eval()
        total = 0.0
        size = self.cfg.batch_size
        for b in range(self.cfg.eval_batches):
            x, y = self._windows(self.val_tokens, self.val_starts[b * size : (b + 1) * size])
            total += self._loss(x.to(self.device), y.to(self.device)).float().item()
        return total / self.cfg.eval_batches

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Model weights, AdamW moments and step counts, and the batch generator's state."""
        named = list(self.model.named_parameters())
        state = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        state.update(optimizer_state_tensors(self.optimizer, named))
        state["gen.batches"] = generator_state_tensor(self.batches)
        return state

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore model, optimizer and batch generator from :meth:`state_tensors`."""
        model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model)
        load_optimizer_state_tensors(self.optimizer, list(self.model.named_parameters()), tensors)
        self.batches.set_state(tensors["gen.batches"])
