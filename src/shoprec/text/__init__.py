"""Product text: MiniLM embeddings with an on-disk cache, and multi-interest shoppers.

- `encoder`: `TextEncoder` (cached, lazily loaded MiniLM; needs the 'text' extra only on a
  cache miss), `item_text` ("title. category" per item) and `item_text_matrix`.
- `interests`: `user_interests` (a Gaussian mixture over a history's embeddings, k by BIC) and
  `retrieve_per_interest` (the items nearest each interest).

Importing this package loads neither torch nor sentence-transformers nor scikit-learn.
The content-based model that uses them is `shoprec.models.content.TextContentRecommender`.
"""

from shoprec.text.encoder import (
    DEFAULT_MODEL,
    MINILM_DIM,
    TextEncoder,
    default_cache_dir,
    hashed_bag_of_words,
    item_text,
    item_text_matrix,
)
from shoprec.text.interests import Interests, retrieve_per_interest, user_interests

__all__ = [
    "DEFAULT_MODEL",
    "MINILM_DIM",
    "Interests",
    "TextEncoder",
    "default_cache_dir",
    "hashed_bag_of_words",
    "item_text",
    "item_text_matrix",
    "retrieve_per_interest",
    "user_interests",
]
