"""Model names -> classes, imported lazily so that `import shoprec` stays cheap.

The models of this package are listed here. Models that live in packages above this one (the
private models of `shoprec.privacy`) or in other distributions register through the
`shoprec.models` entry-point group (pyproject.toml), so this package never imports upwards:

    [project.entry-points."shoprec.models"]
    dp-mf = "shoprec.privacy.dpmf:DPMF"
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from shoprec.errors import ConfigError, check_param_names

__all__ = ["ENTRY_POINT_GROUP", "make_model", "model_class", "model_names", "register"]

ENTRY_POINT_GROUP = "shoprec.models"

# name -> "module:Class"; modules are imported only when a model is asked for.
_MODELS: dict[str, str] = {
    "pop": "shoprec.models.popularity:Popularity",
    "recent-pop": "shoprec.models.popularity:RecentPopularity",
    "random": "shoprec.models.popularity:RandomRecommender",
    "text": "shoprec.models.content:TextContentRecommender",
    "item-knn": "shoprec.models.knn:ItemKNN",
    "user-knn": "shoprec.models.knn:UserKNN",
    "ease": "shoprec.models.ease:EASE",
    "sparse-ease": "shoprec.models.ease:SparseEASE",
    "als": "shoprec.models.mf:ALS",
    "bpr": "shoprec.models.mf:BPR",
    "transformer": "shoprec.models.transformer:TransformerRecommender",
    "ncf": "shoprec.models.ncf:NCF",
    "caser": "shoprec.models.caser:Caser",
}


@cache
def _plugins() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _targets() -> dict[str, str]:
    return {**_plugins(), **_MODELS}


def register(name: str, target: str) -> None:
    """Register a model class under `name` as 'package.module:ClassName' (for this process)."""
    _MODELS[name] = target


def model_names() -> list[str]:
    """Every registered model name, sorted."""
    return sorted(_targets())


def model_class(name: str) -> type:
    """The class registered under `name`."""
    targets = _targets()
    if name not in targets:
        raise ConfigError(f"Unknown model {name!r}; available models are {sorted(targets)}.")
    module, cls = targets[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_model(name: str, **params: Any):
    """Instantiate the model registered under `name` with hyperparameters.

    An unknown parameter name is a ConfigError that names it, suggests the closest name and
    lists the model's parameters; values are validated by `fit`.
    """
    klass = model_class(name)
    check_param_names(f"Model {name!r}", params, klass.param_defaults())
    return klass(**params)
