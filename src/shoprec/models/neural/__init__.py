"""The shared torch training core of shoprec's neural models.

- `config`: `TrainingConfig`, the frozen, validated training hyperparameters every torch model
  shares (each model's config subclasses it with the network's fields).
- `recommender`: `NeuralSequenceRecommender`, the base class (history store, scoring, growth).
- `loop`: the training loop with early stopping on validation NDCG@10.
- `sequences`: left-padded item / event / time matrices and the per-user history store.
- `losses`: full and sampled softmax (logQ) next-item losses.
- `early_stopping`, `checkpoints`: best-weights tracking and resumable checkpoints.
- `device`, `distributed`: devices and seeds; DDP helpers under torchrun (no-ops otherwise).
"""

from shoprec.models.neural.config import TrainingConfig
from shoprec.models.neural.recommender import NeuralSequenceRecommender

__all__ = ["NeuralSequenceRecommender", "TrainingConfig"]
