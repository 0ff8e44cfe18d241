"""The optimizer of the training loop: Adam, or Adam beside a lazy Adam for the item tables.

With a sampled softmax a step touches a few thousand of a catalogue's rows, yet a dense item
table gets a dense gradient (zeroed, filled and read back in full) and a dense Adam step over
every row and both moment buffers. With `sparse_item_grads` the network emits sparse gradients
for its item tables (`nn.Embedding(sparse=True)`, `F.embedding(..., sparse=True)`) and
`torch.optim.SparseAdam` updates only the rows that have one; the rest of the network keeps Adam.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from shoprec.errors import ConfigError
from shoprec.models.neural.config import TrainingConfig

__all__ = ["ItemSparseAdam", "make_optimizer"]


class ItemSparseAdam:
    """SparseAdam over the item tables and Adam over every other parameter, stepped as one."""

    def __init__(self, item_params: list[nn.Parameter], other_params: list[nn.Parameter], lr: float) -> None:
        self.items = torch.optim.SparseAdam(item_params, lr=lr)
        self.others = torch.optim.Adam(other_params, lr=lr) if other_params else None

    def _parts(self) -> list[torch.optim.Optimizer]:
        return [self.items] + ([self.others] if self.others is not None else [])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self._parts():
            part.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for part in self._parts():
            part.step()

    def state_dict(self) -> dict[str, Any]:
        return {"items": self.items.state_dict(),
                "others": None if self.others is None else self.others.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.items.load_state_dict(state["items"])
        if self.others is not None:
            self.others.load_state_dict(state["others"])


def make_optimizer(net: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer | ItemSparseAdam:
    """Adam over the network, or `ItemSparseAdam` when config.sparse_item_grads (the network
    must declare `sparse_item_grads = True`, i.e. emit sparse gradients for its item tables)."""
    if not config.sparse_item_grads:
        return torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if not getattr(net, "sparse_item_grads", False):
        raise ConfigError(
            f"The 'sparse_item_grads' parameter is not supported by {type(net).__name__}: its item "
            "tables do not emit sparse gradients. Set sparse_item_grads=False."
        )
    item_params = [param for param, _ in net.item_tables()]
    ids = {id(p) for p in item_params}
    others = [p for p in net.parameters() if id(p) not in ids]
    return ItemSparseAdam(item_params, others, config.lr)
