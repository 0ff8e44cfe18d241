"""Model names -> classes, imported lazily so that `import shoprec` stays cheap."""

from __future__ import annotations

import importlib

from shoprec.errors import ConfigError

# name -> "module:Class"; modules are imported only when a model is asked for.
_MODELS: dict[str, str] = {
    "pop": "shoprec.models.popularity:Popularity",
    "recent-pop": "shoprec.models.popularity:RecentPopularity",
    "random": "shoprec.models.popularity:RandomRecommender",
    "text": "shoprec.models.content:TextContentRecommender",
    "item-knn": "shoprec.models.knn:ItemKNN",
    "user-knn": "shoprec.models.knn:UserKNN",
    "ease": "shoprec.models.ease:EASE",
    "als": "shoprec.models.mf:ALS",
    "bpr": "shoprec.models.mf:BPR",
    "transformer": "shoprec.models.sasrec:TransformerRecommender",
    "ncf": "shoprec.models.neural:NCF",
    "caser": "shoprec.models.neural:Caser",
    # Privacy (shoprec.privacy): user-level DP models, DP popularity, SISA shards for erasure.
    "dp-mf": "shoprec.privacy.dpmf:DPMF",
    "dp-transformer": "shoprec.privacy.dptransformer:DPTransformer",
    "dp-pop": "shoprec.privacy.dp_counts:DPPopularity",
    "sisa": "shoprec.privacy.sharded:ShardedRecommender",
}


def register(name: str, target: str) -> None:
    """Register a model class under `name` as 'package.module:ClassName'."""
    _MODELS[name] = target


def model_names() -> list[str]:
    return sorted(_MODELS)


def model_class(name: str):
    """The class registered under `name`."""
    if name not in _MODELS:
        raise ConfigError(f"Unknown model {name!r}; available models are {model_names()}.")
    module, cls = _MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_model(name: str, **params):
    """Instantiate the model registered under `name` with hyperparameters."""
    return model_class(name)(**params)
