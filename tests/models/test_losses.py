"""The chunked full-softmax loss is the plain cross-entropy over the whole catalogue, in value and
in every gradient, whatever the chunking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shoprec.models.neural.losses import linear_cross_entropy


def _case(seed: int, n: int = 37, d: int = 8, v: int = 50, bias: bool = True):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, d, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(v, generator=gen, dtype=torch.float64, requires_grad=True) if bias else None
    y = torch.randint(0, v, (n,), generator=gen)
    return h, weight, b, y


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk_rows", [1, 5, 37, 1000])
def test_value_and_gradients_equal_the_plain_cross_entropy(bias, chunk_rows):
    h, weight, b, y = _case(0, bias=bias)
    logits = h @ weight.T + (b if b is not None else 0.0)
    expected = nn.functional.cross_entropy(logits, y, reduction="sum")
    inputs = [t for t in (h, weight, b) if t is not None]
    expected_grads = torch.autograd.grad(2.5 * expected, inputs)
    loss = linear_cross_entropy(h, weight, b, y, chunk_rows=chunk_rows)
    grads = torch.autograd.grad(2.5 * loss, inputs)  # an upstream factor reaches every gradient
    torch.testing.assert_close(loss, expected)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


def test_large_logits_do_not_overflow():
    h, weight, b, y = _case(1)
    with torch.no_grad():
        weight *= 200.0  # logits in the thousands: exp would overflow without the max shift
    expected = nn.functional.cross_entropy(h @ weight.T + b, y, reduction="sum")
    torch.testing.assert_close(linear_cross_entropy(h, weight, b, y, chunk_rows=4), expected)


def test_without_gradients_it_only_computes_the_value():
    h, weight, b, y = _case(2)
    with torch.no_grad():
        loss = linear_cross_entropy(h, weight, b, y)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, nn.functional.cross_entropy(h @ weight.T + b, y, reduction="sum"))


def test_only_the_inputs_that_need_a_gradient_get_one():
    h, weight, b, y = _case(3)
    frozen = weight.detach()
    linear_cross_entropy(h, frozen, b, y).backward()
    assert h.grad is not None and b.grad is not None and frozen.grad is None
