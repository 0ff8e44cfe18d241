"""Recommendation models: one interface (`Recommender`), one module per model family.

- `base`: the `Recommender` contract; `registry`: names -> classes (`make_model`).
- `popularity`, `knn`, `ease`, `mf` (ALS, BPR), `content` (product text): the baselines.
- `transformer`: the behaviour Transformer; `ncf`, `caser`: neural baselines.
- `neural/`: the shared torch training core (config, loop, early stopping, checkpoints, DDP).

Model classes are imported on first use (``from shoprec.models import EASE`` or
``make_model("ease")``), so that importing shoprec does not load implicit or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from shoprec.models.base import PerUserState, Recommender
from shoprec.models.registry import make_model, model_class, model_names, register

# public class name -> module that defines it
_LAZY = {
    "Popularity": "shoprec.models.popularity",
    "RecentPopularity": "shoprec.models.popularity",
    "RandomRecommender": "shoprec.models.popularity",
    "ItemKNN": "shoprec.models.knn",
    "UserKNN": "shoprec.models.knn",
    "EASE": "shoprec.models.ease",
    "ALS": "shoprec.models.mf",
    "BPR": "shoprec.models.mf",
    "TextContentRecommender": "shoprec.models.content",
    "TransformerRecommender": "shoprec.models.transformer",
    "NCF": "shoprec.models.ncf",
    "Caser": "shoprec.models.caser",
}

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "NCF",
    "Caser",
    "ItemKNN",
    "PerUserState",
    "Popularity",
    "RandomRecommender",
    "RecentPopularity",
    "Recommender",
    "TextContentRecommender",
    "TransformerRecommender",
    "UserKNN",
    "make_model",
    "model_class",
    "model_names",
    "register",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shoprec.models' has no attribute {name!r}")
