"""Why an item is in a slate: the explanation each recommended item carries.

- exploit slots of a sequence model (the Transformer) are explained by the model itself: each
  of the latest `LOO_WINDOW` history events is removed in turn, the history rescored (one batch),
  and the event whose removal lowers the item's score the most is cited ("Because you bought X").
  The explanation says what the model's score depends on, not what merely looks alike;
- exploit slots of other models (and the cheap embedding path) cite the history item whose
  vector is most similar to the recommended item's;
- exploratory slots say which pool they came from; a cold start says "popular"; a new item
  placed by rule says "new in a category you like".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shoprec.serve.views import CatalogueView, Explanation, ModelView, Recommendation

__all__ = [
    "ANCHOR_WINDOW",
    "EXPLORING",
    "LOO_WINDOW",
    "VERBS",
    "anchor_by_removal",
    "anchor_by_similarity",
    "catalogue_fields",
    "describe",
    "describe_new",
    "model_summary",
    "removal_histories",
]

ANCHOR_WINDOW = 50  # the latest history items considered as the "because" of a similarity explanation
LOO_WINDOW = 10  # the latest history events removed one at a time for a model-grounded explanation
VERBS = {
    "view": "you viewed",
    "cart": "you put {} in your cart",
    "favourite": "you saved",
    "purchase": "you bought",
    "rating": "you rated",
}
EXPLORING = {
    "exploring: uncertain": "Exploring: something you have not seen from us yet",
    "interest": "Exploring: a less-known pick close to what you looked at",
    "new item": "Exploring: new in the shop, picked for you from its description",
    "trending": "Exploring: popular with other shoppers right now",
}
"""What an exploratory slot says, by the candidate pool it came from."""


def removal_histories(hist_idx: np.ndarray, codes: np.ndarray | None):
    """The history (known items only) and its variants with one of the latest `LOO_WINDOW` events
    removed: (window positions, histories, event codes or None), the full history first; None
    when there are fewer than two known events (nothing to compare)."""
    known = np.flatnonzero(hist_idx >= 0)
    window = known[-LOO_WINDOW:]
    if len(window) < 2:
        return None
    keep = [known[known != p] for p in window]
    histories = [hist_idx[known]] + [hist_idx[k] for k in keep]
    events = None if codes is None else [codes[known]] + [codes[k] for k in keep]
    return window, histories, events


def anchor_by_removal(view: ModelView, hist_idx: np.ndarray, codes: np.ndarray | None,
                      chosen: np.ndarray, encoded=None) -> tuple[np.ndarray, np.ndarray]:
    """For each chosen item, the history position whose removal lowers its score most, and that
    drop (<= 0 where no removal lowers it). hist_idx: model indices of the history (-1 unknown);
    codes: their event codes or None. One batch of up to LOO_WINDOW rescored histories.
    encoded: the model's `encode_histories` of `removal_histories(...)`, when the caller has
    encoded them already (with the scoring pass): only the chosen items are scored then."""
    variants = removal_histories(hist_idx, codes)
    if variants is None or not len(chosen):
        return np.full(len(chosen), -1, np.int64), np.zeros(len(chosen))
    window, histories, events = variants
    model = view.model
    chosen = np.asarray(chosen, np.int64)
    if encoded is not None:
        scores = model.score_encoded(encoded, chosen)
    elif hasattr(model, "score_histories_on"):  # rescore only the chosen items
        scores = model.score_histories_on(histories, events, chosen)
    else:
        scores = model.score_histories(histories, events)[:, chosen]
    drop = scores[0][None, :] - scores[1:]  # (window, chosen)
    best = np.argmax(drop, axis=0)
    return window[best], drop[best, np.arange(len(chosen))]


def anchor_by_similarity(view: ModelView, hist_idx: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each chosen item, the latest history position whose item vector is the most similar
    to it (ties: the most recent), and that cosine."""
    positions = np.flatnonzero(hist_idx >= 0)[-ANCHOR_WINDOW:]
    if not len(positions) or not len(chosen):
        return np.full(len(chosen), -1, np.int64), np.zeros(len(chosen))
    sims = view.vectors[hist_idx[positions]] @ view.vectors[chosen].T  # (positions, chosen)
    # The last of the best: reverse, take the first argmax, map back.
    best = len(positions) - 1 - np.argmax(sims[::-1] >= sims.max(axis=0)[None, :] - 1e-9, axis=0)
    return positions[best], sims[best, np.arange(len(chosen))]


def catalogue_fields(cat: CatalogueView, row: int) -> tuple[str, str, float | None]:
    """(title, category, price) of a catalogue row ('' and None when the item is not catalogued)."""
    if row < 0:
        return "", "", None
    price = float(cat.price[row])
    return str(cat.titles[row]), str(cat.categories[row]), None if np.isnan(price) else price


def describe(view: ModelView, cat: CatalogueView, m: int, catalogue_row: int, score: float, explored: bool,
             propensity: float, reason: str, anchor_item: int, strength: float, event: str | None,
             cold_start: bool, by_model: bool) -> Recommendation:
    """One recommended model item with its explanation. anchor_item: the model index of the
    history item cited (-1: none), strength: its score drop or cosine (cited only when > 0)."""
    item_id = str(view.model.items_.ids[m])
    title, category, price = catalogue_fields(cat, catalogue_row)
    if explored:
        pool = "interest" if "interest" in reason else reason
        why = Explanation("exploring", EXPLORING.get(pool, EXPLORING["exploring: uncertain"]))
    elif cold_start:
        where = f" in {category}" if category else ""
        why = Explanation("popular", f"Popular{where} in the shop right now")
    elif anchor_item < 0 or strength <= 0:
        why = Explanation("history", "Based on your recent activity")
    else:
        anchor = str(view.model.items_.ids[anchor_item])
        row = cat.row.get(anchor, -1)
        name = f"“{cat.titles[row]}”" if row >= 0 and cat.titles[row] else f"item {anchor}"
        verb = VERBS.get(event or "view", "you viewed")
        text = "Because " + (verb.format(name) if "{}" in verb else f"{verb} {name}")
        why = Explanation("history", text, anchor, "model" if by_model else "similarity")
    return Recommendation(item_id, title, category, price, score, explored, propensity, why)


def describe_new(cat: CatalogueView, row: int, score: float) -> Recommendation:
    """A catalogue item the model has not learned yet, placed by the new-in-a-liked-category rule."""
    title, category, price = catalogue_fields(cat, row)
    why = Explanation("new_in_category", f"New in {category}, a category you like")
    return Recommendation(str(cat.ids[row]), title, category, price, float(score), False, 1.0, why)


MODEL_WORDS = {
    "transformer": "the behaviour Transformer, which reads the order of what each shopper viewed, carted and bought",
    "item-knn": "item-to-item similarity: shoppers who bought this also bought that",
    "user-knn": "similar shoppers: what shoppers with a history like yours went on to buy",
    "ease": "an item-to-item model fitted to every co-purchase at once (EASE)",
    "als": "taste factors learned from who bought what (matrix factorisation)",
    "bpr": "taste factors learned from who bought what (matrix factorisation, BPR)",
    "pop": "what sells most",
    "text": "product descriptions: items whose titles resemble what you looked at",
    "dp-mf": "taste factors learned with differential privacy",
    "dp-transformer": "the behaviour Transformer, trained with differential privacy",
    "dp-ease": "an item-to-item model (EASE) fitted to co-purchase counts released with differential privacy",
    "dp-item-knn": "item-to-item similarity from co-purchase counts released with differential privacy",
    "dp-pop": "what sells most, counted with differential privacy",
    "dp-als": "taste factors whose product side is learned with differential privacy, yours from your own history",
}


def model_summary(name: str, info: dict[str, Any]) -> str:
    """The served model in a sentence a shop owner reads."""
    words = MODEL_WORDS.get(name, f"the {name} model")
    parts = [f"Recommendations come from {words}"]
    if info.get("n_events"):
        parts.append(f"trained on {int(info['n_events']):,} events of {int(info.get('n_users') or 0):,} shoppers")
    if info.get("trained_at"):
        parts.append(f"on {str(info['trained_at'])[:10]}")
    privacy = info.get("privacy") or {}
    if privacy.get("dp"):
        parts.append(f"with user-level differential privacy (epsilon {privacy.get('epsilon')})")
    return ", ".join(parts) + "."
