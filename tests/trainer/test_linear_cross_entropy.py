"""The chunked LM head and cross-entropy (``loss_chunk_rows``): the same loss and gradients as
``F.cross_entropy`` on whole logits, never a tensor of the whole logits' size, deterministic."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from repro.trainer.gpt.linear_cross_entropy import Workspace, linear_cross_entropy

ROWS, WIDTH, VOCAB = 37, 16, 50


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(ROWS, WIDTH, generator=g, requires_grad=True)
    w = (torch.randn(VOCAB, WIDTH, generator=g) * 0.5).requires_grad_()
    return x, w, torch.randint(0, VOCAB, (ROWS,), generator=g)


def _reference(x: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    loss = F.cross_entropy(x @ w.t(), t)
    return (loss, *torch.autograd.grad(loss, (x, w)))


@pytest.mark.parametrize("chunk_rows", [1, 5, 36, 37, 64])
@pytest.mark.parametrize("with_workspace", [False, True])
def test_loss_and_gradients_match_cross_entropy_on_whole_logits(chunk_rows: int, with_workspace: bool) -> None:
    x, w, t = _inputs()
    ref_loss, ref_gx, ref_gw = _reference(x, w, t)
    loss = linear_cross_entropy(x, w, t, chunk_rows, Workspace() if with_workspace else None)
    gx, gw = torch.autograd.grad(loss, (x, w))
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(gx, ref_gx, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gw, ref_gw, rtol=1e-5, atol=1e-7)


def test_the_upstream_gradient_scales_both_gradients() -> None:
    x, w, t = _inputs()
    once = torch.autograd.grad(linear_cross_entropy(x, w, t, 8), (x, w))
    thrice = torch.autograd.grad(linear_cross_entropy(x, w, t, 8) * 3.0, (x, w))
    for a, b in zip(once, thrice, strict=True):
        torch.testing.assert_close(b, a * 3.0)


def test_the_loss_has_the_same_bits_with_or_without_gradients_and_workspace() -> None:
    """Validation (no gradients) and training compute the loss by the same sums in the same order."""
    x, w, t = _inputs()
    workspace = Workspace()
    with_grad = linear_cross_entropy(x, w, t, 8, workspace)
    with torch.no_grad():
        without = linear_cross_entropy(x, w, t, 8, workspace)
        fresh = linear_cross_entropy(x, w, t, 8)
    assert with_grad.item().hex() == without.item().hex() == fresh.item().hex()


def test_a_workspace_is_reused_across_calls_and_grows_when_needed() -> None:
    x, w, t = _inputs()
    workspace = Workspace()
    linear_cross_entropy(x, w, t, 8, workspace)
    first = workspace.buffers(8, VOCAB, torch.float32, torch.device("cpu"))
    linear_cross_entropy(x[:20], w, t[:20], 8, workspace)  # a smaller batch: the same memory
    assert workspace.buffers(8, VOCAB, torch.float32, torch.device("cpu"))[0].data_ptr() == first[0].data_ptr()
    linear_cross_entropy(x, w, t, 16, workspace)  # larger chunks: new, larger buffers
    assert workspace.buffers(16, VOCAB, torch.float32, torch.device("cpu"))[0].shape == (16, VOCAB)


def test_bf16_autocast_multiplies_in_bfloat16_and_keeps_float32_gradients() -> None:
    x, w, t = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_loss = F.cross_entropy(F.linear(x, w), t)
        loss = linear_cross_entropy(x, w, t, 8, Workspace())
    ref_gx, ref_gw = torch.autograd.grad(ref_loss, (x, w))
    gx, gw = torch.autograd.grad(loss, (x, w))
    assert gx.dtype == gw.dtype == torch.float32
    # Autocast's own path rounds the same products to bfloat16: close, at bfloat16's precision.
    torch.testing.assert_close(loss, ref_loss, rtol=1e-3, atol=0)
    torch.testing.assert_close(gx, ref_gx, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(gw, ref_gw, rtol=2e-2, atol=2e-3)
    fp32 = linear_cross_entropy(x, w, t, 8)
    assert loss.item() != fp32.item()  # the products really ran in bfloat16


def _largest_allocation(fn: object) -> int:
    from torch.profiler import ProfilerActivity, profile

    assert callable(fn)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(e.cpu_memory_usage for e in prof.events())


def test_no_tensor_of_the_whole_logits_size_is_made() -> None:
    g = torch.Generator().manual_seed(0)
    rows, vocab = 512, 4000
    x = torch.randn(rows, 64, generator=g, requires_grad=True)
    w = (torch.randn(vocab, 64, generator=g) * 0.1).requires_grad_()
    t = torch.randint(0, vocab, (rows,), generator=g)
    whole = rows * vocab * 4

    def standard() -> None:
        F.cross_entropy(x @ w.t(), t).backward()

    def chunked() -> None:
        linear_cross_entropy(x, w, t, 64).backward()

    assert _largest_allocation(standard) >= whole  # the measurement sees the whole logits
    assert _largest_allocation(chunked) <= whole // 4  # chunks of 64 rows: an eighth, and small tensors
