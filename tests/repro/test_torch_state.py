"""Packing optimizer, scheduler and generator state into checkpoint tensors, and back."""

from __future__ import annotations

import pytest
import torch

from repro.records.hashing import sha256_tensor
from repro.torch_state import (
    generator_state_tensor,
    grad_norm,
    load_generator_state_tensor,
    load_state_dict_tensors,
    state_dict_tensors,
)


def _trained() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    for _ in range(3):
        model(torch.randn(5, 3)).square().mean().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def test_optimizer_and_scheduler_state_round_trip_exactly() -> None:
    _model, optimizer, scheduler = _trained()
    packed = {**state_dict_tensors(optimizer.state_dict(), "optim."),
              **state_dict_tensors(scheduler.state_dict(), "sched.")}
    assert "optim.state.0.exp_avg" in packed and packed["optim.__meta__"].dtype == torch.uint8

    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1.0)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=7)
    opt2.load_state_dict(load_state_dict_tensors(packed, "optim."))
    sched2.load_state_dict(load_state_dict_tensors(packed, "sched."))
    assert opt2.param_groups[0]["betas"] == (0.8, 0.9)  # tuples stay tuples
    assert opt2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert sched2.state_dict() == scheduler.state_dict()
    again = {**state_dict_tensors(opt2.state_dict(), "optim."), **state_dict_tensors(sched2.state_dict(), "sched.")}
    assert {k: sha256_tensor(v) for k, v in again.items()} == {k: sha256_tensor(v) for k, v in packed.items()}


def test_packing_keeps_integer_keys_and_non_finite_floats() -> None:
    state = {"state": {0: {"m": torch.ones(2)}}, "x": float("inf"), "n": None, "flag": True}
    assert load_state_dict_tensors(state_dict_tensors(state, "p."), "p.").keys() == state.keys()
    back = load_state_dict_tensors(state_dict_tensors(state, "p."), "p.")
    assert list(back["state"]) == [0] and back["x"] == float("inf") and back["n"] is None and back["flag"] is True


def test_packing_rejects_what_it_cannot_store() -> None:
    with pytest.raises(TypeError, match=r"type 'object' at p\.thing"):
        state_dict_tensors({"thing": object()}, "p.")


def test_generator_state_round_trip() -> None:
    gen = torch.Generator().manual_seed(3)
    torch.rand(4, generator=gen)
    saved = generator_state_tensor(gen)
    expected = torch.rand(4, generator=gen)
    other = torch.Generator().manual_seed(99)
    load_generator_state_tensor(other, saved)
    assert torch.equal(torch.rand(4, generator=other), expected)


def test_grad_norm_is_the_total_norm_and_leaves_gradients_alone() -> None:
    model, _, _ = _trained()
    model.zero_grad()
    model(torch.ones(2, 3)).sum().backward()
    grads = [torch.as_tensor(p.grad).clone() for p in model.parameters()]
    norm = grad_norm(model.parameters())
    assert all(p.grad is not None and torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
    assert norm == pytest.approx(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)), rel=1e-6)
    assert grad_norm([torch.nn.Parameter(torch.ones(1))]) == 0.0
