"""The next-item loss of the sequence models: full softmax, or sampled softmax with logQ.

The full softmax is computed by `linear_cross_entropy`, chunk by chunk, never holding the
(targets x catalogue) logits: on CPU that tensor's log-softmax, its backward and the one-hot
gradient of the loss were a quarter of an epoch (memory traffic, not arithmetic), while a chunk
of logits stays in cache from the matrix product through the softmax to the gradient products.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["LOSSES", "SAMPLERS", "linear_cross_entropy", "negative_sampler", "sequence_loss"]

LOSSES = ("full", "sampled")
SAMPLERS = ("uniform", "popularity")
_CHUNK_ELEMENTS = 1 << 20  # logits per chunk: 4 MB of float32, about what stays in cache


def _chunked_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, y: torch.Tensor,
                           with_grads: bool, chunk_rows: int):
    """(summed loss, grad h, grad weight, grad bias) of softmax(h @ weight.T + bias) against y,
    chunk_rows rows at a time; the gradients are None unless with_grads."""
    n = h.shape[0]
    total = torch.zeros((), dtype=torch.float64, device=h.device)
    grad_h = torch.empty_like(h) if with_grads else None
    grad_w = torch.zeros_like(weight) if with_grads else None
    grad_b = torch.zeros_like(bias) if with_grads and bias is not None else None
    for start in range(0, n, chunk_rows):
        hc, yc = h[start:start + chunk_rows], y[start:start + chunk_rows]
        logits = hc @ weight.T if bias is None else torch.addmm(bias, hc, weight.T)
        target = logits.gather(1, yc[:, None]).squeeze(1)
        top = logits.amax(dim=1)
        probs = logits.sub_(top[:, None]).exp_()  # in place: the chunk is reused as softmax
        norm = probs.sum(dim=1)
        total += (top + norm.log() - target).sum(dtype=torch.float64)
        if with_grads:
            probs.div_(norm[:, None])
            probs[torch.arange(len(yc), device=h.device), yc] -= 1.0  # softmax - one-hot
            torch.mm(probs, weight, out=grad_h[start:start + chunk_rows])
            grad_w.addmm_(probs.T, hc)
            if grad_b is not None:
                grad_b += probs.sum(dim=0)
    return total.to(h.dtype), grad_h, grad_w, grad_b


class _LinearCrossEntropy(torch.autograd.Function):
    """The loss's value and gradients come from one chunked pass in forward (the loss is a
    scalar, so backward only scales them), which saves recomputing the logits."""

    @staticmethod
    def forward(ctx, h, weight, bias, y, chunk_rows):
        loss, grad_h, grad_w, grad_b = _chunked_cross_entropy(h, weight, bias, y, True, chunk_rows)
        ctx.grads = (grad_h, grad_w, grad_b)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_w, grad_b = ctx.grads
        del ctx.grads
        need = ctx.needs_input_grad
        return (grad_h * grad_loss if need[0] else None, grad_w * grad_loss if need[1] else None,
                grad_b * grad_loss if grad_b is not None and need[2] else None, None, None)


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         y: torch.Tensor, chunk_rows: int | None = None) -> torch.Tensor:
    """Summed softmax cross-entropy of the logits h @ weight.T (+ bias) against targets y, the
    value and gradients of `cross_entropy(h @ weight.T + bias, y, reduction="sum")`.

    h (N, d); weight (V, d); bias (V,) or None; y (N,) indices in [0, V). chunk_rows: rows per
    chunk (default: about a million logits per chunk). Not twice differentiable.
    """
    rows = chunk_rows or max(32, _CHUNK_ELEMENTS // max(int(weight.shape[0]), 1))
    wants_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (h, weight, bias))
    if not wants_grad:
        return _chunked_cross_entropy(h, weight, bias, y, False, rows)[0]
    return _LinearCrossEntropy.apply(h, weight, bias, y, rows)


def negative_sampler(counts: np.ndarray, by: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(sampling probabilities, their logs) over the catalogue for the sampled softmax.

    by: "uniform", or "popularity" (training counts ** 0.75, smoothed so that no item has zero
    probability).
    """
    popular = by == "popularity"
    p = np.asarray(counts if popular else np.ones(len(counts)), np.float64) + (1e-3 if popular else 0.0)
    p = p ** (0.75 if popular else 1.0)
    p /= p.sum()
    probabilities = torch.as_tensor(p, dtype=torch.float32, device=device)
    return probabilities, torch.log(probabilities)


def sequence_loss(
    net: nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor | None,
    log_q: torch.Tensor | None,
) -> torch.Tensor:
    """Summed cross-entropy of the next item at every non-padded position.

    hidden: (B, L, h) network outputs; targets: (B, L) item index + 1, 0 where nothing is
    predicted. Full softmax over the catalogue when negatives is None; otherwise a sampled
    softmax over [the target, the shared negatives], with the logQ correction (each logit minus
    the log of its item's sampling probability) and accidental hits masked out.
    """
    mask = targets > 0
    h = hidden[mask]
    y = targets[mask] - 1
    if negatives is None:
        output_layer = getattr(net, "output_layer", None)
        if output_layer is None:
            return nn.functional.cross_entropy(net.score(h, None), y, reduction="sum")
        weight, bias = output_layer()
        return linear_cross_entropy(h, weight, bias, y)
    pos = net.score_pairs(h, y)
    neg = net.score(h, negatives)
    if log_q is not None:
        pos = pos - log_q[y]
        neg = neg - log_q[negatives]
    neg = neg.masked_fill(negatives[None, :] == y[:, None], float("-inf"))
    logits = torch.cat([pos[:, None], neg], dim=1)
    return nn.functional.cross_entropy(logits, torch.zeros_like(y), reduction="sum")
