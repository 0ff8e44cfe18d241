"""The next-item loss of the sequence models: full softmax, or sampled softmax with logQ."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["LOSSES", "SAMPLERS", "negative_sampler", "sequence_loss"]

LOSSES = ("full", "sampled")
SAMPLERS = ("uniform", "popularity")


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
        logits = net.score(h, None)
        return nn.functional.cross_entropy(logits, y, reduction="sum")
    pos = net.score_pairs(h, y)
    neg = net.score(h, negatives)
    if log_q is not None:
        pos = pos - log_q[y]
        neg = neg - log_q[negatives]
    neg = neg.masked_fill(negatives[None, :] == y[:, None], float("-inf"))
    logits = torch.cat([pos[:, None], neg], dim=1)
    return nn.functional.cross_entropy(logits, torch.zeros_like(y), reduction="sum")
