"""The LM head and its cross-entropy in row chunks, gradients computed in the forward pass.

``F.cross_entropy(x @ W.T, targets)`` holds the whole ``(rows, vocabulary)`` logits, their
log-softmax and, in the backward pass, two gradients of that size: 131 MB each for the baseline
(2048 rows x 16000 tokens, float32). On the CPU every allocation over glibc's 32 MiB ceiling is a
fresh ``mmap`` that the kernel faults in and zeroes page by page, every step (measured: ~145,000
page faults a step, docs/results.md). Here the logits of ``chunk_rows`` rows at a time are made,
turned into the loss and, while they are at hand, into the gradients of ``x`` and ``W`` (the
softmax minus the one-hot target, over the row count); the backward pass only scales those
gradients. Nothing of the full logits' size is ever allocated. The same technique as Liger
Kernel's fused linear cross-entropy, written here for the CPU and CUDA alike.

The arithmetic matches ``F.cross_entropy`` (mean over rows, log-softmax in float32; under
bfloat16 autocast the three matrix products run in bfloat16 as autocast would run them) but not
its bits: sums are taken chunk by chunk. The chunk size is part of the recorded configuration
(``loss_chunk_rows``), so a rerun makes the same sums in the same order.
"""

from __future__ import annotations

from typing import Any

import torch


class Workspace:
    """The two (rows, vocabulary) buffers the chunks are computed in, kept from call to call.

    Allocated once and reused every step: a fresh buffer this size costs the kernel's page faults
    every step on the CPU (measured, docs/results.md); on CUDA the caching allocator would reuse
    the memory anyway. Not part of the model's state.
    """

    def __init__(self) -> None:
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def buffers(
        self, rows: int, vocab: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits in ``dtype`` and log-probabilities in float32, at least ``rows`` x ``vocab``."""
        held = self._buffers
        if held is None or held[0].shape[0] < rows or held[0].shape[1] != vocab or held[0].dtype != dtype \
                or held[0].device != device:
            self._buffers = None  # free the old pair before making the new one
            held = self._buffers = (torch.empty(rows, vocab, dtype=dtype, device=device),
                                    torch.empty(rows, vocab, dtype=torch.float32, device=device))
        return held


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run ``x @ W.T`` in here (x's own dtype without autocast)."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def _log_probs(x: torch.Tensor, weight: torch.Tensor, rows: slice, *, chunk_rows: int,
               workspace: Workspace | None) -> torch.Tensor:
    """log_softmax(x[rows] @ weight.T) in float32, in the workspace when there is one."""
    if workspace is None:
        return torch.log_softmax(x[rows] @ weight.t(), dim=-1, dtype=torch.float32)
    logits, log_probs = workspace.buffers(min(chunk_rows, x.shape[0]), weight.shape[0], weight.dtype, weight.device)
    n = rows.stop - rows.start
    torch.mm(x[rows], weight.t(), out=logits[:n])
    return torch.log_softmax(logits[:n], dim=-1, dtype=torch.float32, out=log_probs[:n])


def _chunks(rows: int, chunk_rows: int) -> list[slice]:
    return [slice(start, min(start + chunk_rows, rows)) for start in range(0, rows, chunk_rows)]


def _chunked(
    x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, chunk_rows: int, dtype: torch.dtype,
    workspace: Workspace | None, gradients: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The summed loss and, with ``gradients``, the gradients of the summed loss for ``x`` and ``weight``.

    Training and validation run this one loop, so their losses are the same sums in the same order.
    """
    rows = x.shape[0]
    xs, w = x.to(dtype), weight.to(dtype)
    grad_x = torch.empty_like(x) if gradients else None
    grad_w = torch.zeros_like(weight) if gradients else None
    loss = torch.zeros((), dtype=torch.float32, device=x.device)
    for part in _chunks(rows, chunk_rows):
        tc = targets[part]
        log_probs = _log_probs(xs, w, part, chunk_rows=chunk_rows, workspace=workspace)
        loss -= log_probs.gather(1, tc.unsqueeze(1)).sum()
        if grad_x is None or grad_w is None:
            continue
        # d(summed loss)/d(logits) = softmax - one_hot(target), made in the log-probabilities' memory.
        # (Indexed assignment, not scatter_add_: deterministic on CUDA under torch's flag too.)
        grad = log_probs.exp_()
        grad[torch.arange(len(tc), device=grad.device), tc] -= 1.0
        grad = grad.to(dtype)
        if dtype == grad_x.dtype:
            torch.mm(grad, w, out=grad_x[part])
        else:
            grad_x[part] = grad @ w
        if dtype == grad_w.dtype:
            grad_w.addmm_(grad.t(), xs[part])
        else:  # bfloat16 products, summed over chunks in the weight's float32
            grad_w += (grad.t() @ xs[part]).to(grad_w.dtype)
    return loss, grad_x, grad_w


class _LinearCrossEntropy(torch.autograd.Function):
    """Loss and both gradients in the forward pass; the backward pass scales the gradients."""

    @staticmethod
    def forward(  # noqa: PLR0917 - autograd passes apply()'s arguments positionally
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_rows: int,
        dtype: torch.dtype, workspace: Workspace | None,
    ) -> torch.Tensor:
        loss, grad_x, grad_w = _chunked(x, weight, targets, chunk_rows=chunk_rows, dtype=dtype,
                                        workspace=workspace, gradients=True)
        rows = x.shape[0]
        ctx.save_for_backward(grad_x, grad_w)
        ctx.rows = rows
        return loss / rows

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_x, grad_w = ctx.saved_tensors
        scale = grad_output / ctx.rows  # the mean's 1/rows, applied once to the small gradients
        return grad_x * scale, grad_w * scale, None, None, None, None


@torch.compiler.disable  # type: ignore[untyped-decorator]
def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_rows: int,
                         workspace: Workspace | None = None) -> torch.Tensor:
    """Mean cross-entropy of ``x @ weight.T`` (rows, vocabulary) against ``targets`` (rows,).

    ``x`` is (rows, width), ``weight`` (vocabulary, width). Computed ``chunk_rows`` rows at a time,
    in ``workspace``'s buffers when given; with gradients wanted, they are computed here and the
    backward pass scales them. Left out of ``torch.compile``'s graphs (a graph break): the loop is
    plain eager kernels either way.
    """
    dtype = _compute_dtype(x)
    with torch.autocast(x.device.type, enabled=False):
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
            loss: torch.Tensor = _LinearCrossEntropy.apply(  # type: ignore[no-untyped-call]
                x, weight, targets, chunk_rows, dtype, workspace
            )
            return loss
        loss, _, _ = _chunked(x, weight, targets, chunk_rows=chunk_rows, dtype=dtype, workspace=workspace,
                              gradients=False)
        return loss / x.shape[0]
