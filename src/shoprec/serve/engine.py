"""What the service computes per request: candidates, filters, diversity, slate, explanations.

The engine holds the served model and an in-memory view of the catalogue aligned to the model's
item space. Recommendations are computed from the shopper's *stored* history on every request
(`Recommender.score_history`), so an event changes the next recommendations at once, without
retraining; a sequence model re-reads the history with its event types.

State is replaced, never mutated: a model reload builds a new `ModelView` off the request path
and swaps one attribute, so a request sees either the old model or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from shoprec.data.schema import EVENT_TYPES
from shoprec.errors import NotFittedError, UnknownIdError
from shoprec.explore.serving import GreedyPolicy, SlatePolicy
from shoprec.explore.slate import mmr_rerank
from shoprec.serve.ann import ItemIndex, item_vectors
from shoprec.serve.views import Alignment, CatalogueView, Explanation, ModelView, Recommendation

__all__ = ["ServingEngine"]

EVENT_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}
VERBS = {
    "view": "you viewed",
    "cart": "you put {} in your cart",
    "favourite": "you saved",
    "purchase": "you bought",
    "rating": "you rated",
}
_ANCHOR_WINDOW = 50  # the latest history items considered as the "because" of an explanation


class ServingEngine:
    """Recommendations, similar items and explanations over one model and one catalogue.

    ann_threshold: catalogue size from which similar items use HNSW instead of exact search.
    new_item_days: a catalogue item created this recently, unknown to the model, is "new".
    new_item_slots: how many new items in a category the shopper likes may join a slate.
    """

    def __init__(
        self,
        ann_threshold: int = 100_000,
        new_item_days: int = 30,
        new_item_slots: int = 1,
        policy: SlatePolicy | None = None,
    ) -> None:
        self.ann_threshold = ann_threshold
        self.new_item_days = new_item_days
        self.new_item_slots = new_item_slots
        self.policy: SlatePolicy = policy or GreedyPolicy()
        self._model: ModelView | None = None
        self._catalogue = CatalogueView.from_rows([], 0)
        self._aligned: Alignment | None = None
        self._lock = threading.Lock()

    # ---- state -----------------------------------------------------------------------------
    @property
    def model_view(self) -> ModelView | None:
        return self._model

    @property
    def catalogue(self) -> CatalogueView:
        return self._catalogue

    def set_catalogue(self, rows: list[tuple]) -> None:
        """Replace the catalogue view (rows as `Store.all_items` returns them)."""
        self._catalogue = CatalogueView.from_rows(rows, self._catalogue.version + 1)

    def load_model(self, path: str | Path) -> ModelView:
        """Load a saved model (and its optional JSON sidecar) and serve it from now on."""
        from shoprec.models.base import Recommender

        path = Path(path)
        t0 = time.perf_counter()
        model = Recommender.load(path)
        sidecar = path.with_suffix(".json")
        info: dict[str, Any] = {}
        if sidecar.is_file():
            try:
                info = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                info = {}
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return self.set_model(model, path=str(path), info=info, version=digest.hexdigest()[:12], t0=t0)

    def set_model(self, model, path: str | None = None, info: dict | None = None,
                  version: str | None = None, t0: float | None = None) -> ModelView:
        """Serve an in-memory fitted model (tests, the demo)."""
        t0 = time.perf_counter() if t0 is None else t0
        if not model.is_fitted:
            raise NotFittedError("The model to serve is not fitted; call fit(train) first.")
        vectors = item_vectors(model)
        pop = np.asarray(model.seen_.sum(axis=0), dtype=np.float64).ravel()
        view = ModelView(
            model=model,
            name=model.name,
            version=version or f"mem-{id(model):x}"[:12],
            path=path,
            loaded_at=time.time(),
            info=dict(info or {}),
            vectors=vectors,
            index=ItemIndex(vectors, threshold=self.ann_threshold),
            popularity=pop / pop.max() if pop.size and pop.max() > 0 else pop,
            load_seconds=time.perf_counter() - t0,
            position={item: i for i, item in enumerate(model.items_.ids.tolist())},
        )
        self._model = view  # one assignment: requests see the old model or the new one
        return view

    def _require_model(self) -> ModelView:
        view = self._model
        if view is None:
            raise NotFittedError(
                "No model is loaded yet; train one (`shoprec train ... --full`) and "
                "POST /v1/model/reload, or start the service with --model."
            )
        return view

    def _align(self, view: ModelView, cat: CatalogueView) -> Alignment:
        key = (view.version + str(id(view)), cat.version)
        aligned = self._aligned
        if aligned is not None and aligned.key == key:
            return aligned
        with self._lock:
            aligned = self._aligned
            if aligned is not None and aligned.key == key:
                return aligned
            ids = view.model.items_.ids
            n = len(ids)
            m2c = np.fromiter((cat.row.get(i, -1) for i in ids), dtype=np.int64, count=n)
            known = m2c >= 0
            if len(cat):
                eligible = known.copy()
                eligible[known] = cat.active[m2c[known]]
            else:  # no catalogue yet: every model item may be shown (without a title)
                eligible = np.ones(n, dtype=bool)
            category = np.full(n, "", dtype=object)
            codes = np.full(n, -1, dtype=np.int64)
            price = np.full(n, np.nan)
            category[known] = cat.categories[m2c[known]]
            codes[known] = cat.cat_codes[m2c[known]]
            price[known] = cat.price[m2c[known]]
            in_model = np.zeros(len(cat), dtype=bool)
            in_model[m2c[known]] = True
            # A catalogued item the model never saw in training is cold, whatever its vector.
            cold_known = known & (view.popularity <= 0)
            in_model[m2c[cold_known]] = False
            cold_rows = np.flatnonzero(~in_model & cat.active)
            aligned = Alignment(key, m2c, eligible, category, codes, price, cold_rows)
            self._aligned = aligned
            return aligned

    # ---- recommending ----------------------------------------------------------------------
    def recommend(
        self,
        items: list[str],
        events: list[str],
        k: int,
        categories: list[str] | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        exploration: float = 0.0,
        diversity: float = 0.0,
        rng: np.random.Generator | None = None,
        now: float | None = None,
    ) -> list[Recommendation]:
        """Top-k for a history (item ids and event types, oldest first), filtered and explained."""
        view = self._require_model()
        cat = self._catalogue
        al = self._align(view, cat)
        model = view.model
        rng = rng or np.random.default_rng()
        now = time.time() if now is None else now

        position = view.position
        hist_idx = np.fromiter((position.get(i, -1) for i in items), dtype=np.int64, count=len(items))
        known = hist_idx >= 0
        cold_start = not known.any()
        if cold_start:
            scores = view.popularity.astype(np.float64, copy=True)
        else:
            codes = (np.fromiter((EVENT_CODE.get(e, 0) for e in events), dtype=np.int8, count=len(events))
                     if events and len(events) == len(items) else None)
            # The batch scoring hook on indices: `score_history` would look the ids up again
            # and build a pandas Categorical of the events on every request (~1.5 ms).
            scores = np.array(model.score_histories(
                [hist_idx[known]], None if codes is None else [codes[known]])[0], dtype=np.float64)
            spread = max(float(scores.max()), -float(scores.min())) if scores.size else 0.0
            # Popularity breaks ties (many items score exactly 0 for neighbourhood models).
            scores += view.popularity * (1e-9 * max(spread, 1.0))

        allowed = al.eligible.copy()
        if known.any():
            allowed[hist_idx[known]] = False
        wanted = self._codes(cat, categories)
        if wanted is not None or min_price is not None or max_price is not None:
            allowed &= self._filter_mask(al.cat_codes, al.price, wanted, min_price, max_price)
        n_allowed = int(allowed.sum())
        pool_size = min(n_allowed, max(5 * k, 50))
        if pool_size:
            masked = np.where(allowed, scores, -np.inf)
            pool = np.argpartition(masked, len(masked) - pool_size)[-pool_size:]
            pool = pool[np.lexsort((pool, -masked[pool]))]
        else:
            pool = np.empty(0, np.int64)
        pool_scores = scores[pool]

        liked = self._liked_categories(items, cat)
        new_rows = self._new_in_liked(al, cat, liked, items, wanted, min_price, max_price, now)

        if diversity > 0 and len(pool):
            order = _diversify_by_category(pool_scores, al.cat_codes[pool], k, diversity)
            pool, pool_scores = pool[order], pool_scores[order]

        chosen: list[tuple[int, float, bool, float]] = []
        if len(pool):
            ids = model.items_.ids[pool].tolist()
            slate = self.policy.choose(pool, ids, pool_scores, k, exploration, rng)
            chosen = [(int(m), float(s), bool(e), float(q))
                      for m, s, e, q in zip(slate.items, slate.scores, slate.explored, slate.propensities)]

        # One product for all "because" explanations: latest history items x chosen items.
        anchor_pos = np.flatnonzero(known)[-_ANCHOR_WINDOW:]
        sims = (view.vectors[hist_idx[anchor_pos]] @ view.vectors[[c[0] for c in chosen]].T
                if chosen and anchor_pos.size else None)
        recs = [self._describe(view, cat, al, m, s, e, q, hist_idx, anchor_pos, events, cold_start,
                               None if sims is None else sims[:, j])
                for j, (m, s, e, q) in enumerate(chosen)]
        if new_rows.size:
            # Rule, not exploration: a new item in a liked category takes the last slot(s). It
            # has no score of its own yet, so it gets the score of the item before it.
            shown = {r.item_id for r in recs}
            head = new_rows[: self.new_item_slots + len(recs)]  # enough, even if all were shown
            new_rows = np.array([r for r in head if str(cat.ids[r]) not in shown], dtype=np.int64)
            slots = min(self.new_item_slots, len(new_rows), k)
            if slots:
                recs = recs[: k - slots]
                floor = recs[-1].score if recs else 0.0
                recs += [self._describe_new(cat, int(r), floor) for r in new_rows[:slots]]
        return recs

    @staticmethod
    def _codes(cat: CatalogueView, categories: list[str] | None) -> np.ndarray | None:
        """Codes of the requested categories (None: no category filter)."""
        if not categories:
            return None
        return np.array([cat.cat_code[c] for c in categories if c in cat.cat_code], dtype=np.int64)

    @staticmethod
    def _filter_mask(codes, price, wanted, min_price, max_price) -> np.ndarray:
        mask = np.ones(len(codes), dtype=bool)
        if wanted is not None:
            mask &= np.isin(codes, wanted)
        if min_price is not None:
            mask &= price >= min_price  # NaN prices fail every comparison: unknown is excluded
        if max_price is not None:
            mask &= price <= max_price
        return mask

    @staticmethod
    def _liked_categories(items: list[str], cat: CatalogueView) -> np.ndarray:
        """Codes of the (non-empty) categories of the latest history items."""
        rows = [cat.row[i] for i in items[-_ANCHOR_WINDOW:] if i in cat.row]
        rows = [r for r in rows if cat.categories[r]]
        return np.unique(cat.cat_codes[rows]) if rows else np.empty(0, np.int64)

    def _new_in_liked(self, al, cat, liked, seen, categories, min_price, max_price, now) -> np.ndarray:
        if not liked.size or not self.new_item_slots or not al.cold_rows.size:
            return np.empty(0, np.int64)
        minute = int(now // 60)  # which cold items are still "new" is worked out once a minute
        cached = al.extras.get("new_rows")
        if cached is None or cached[0] != minute:
            rows = al.cold_rows[cat.created_at[al.cold_rows] >= now - self.new_item_days * 86_400]
            rows = rows[np.argsort(-cat.created_at[rows], kind="stable")]  # newest first
            by_code: dict[int, np.ndarray] = {}
            for code in np.unique(cat.cat_codes[rows]):
                by_code[int(code)] = rows[cat.cat_codes[rows] == code]
            al.extras["new_rows"] = cached = (minute, by_code)
        parts = [cached[1][c] for c in liked.tolist() if c in cached[1]]
        if not parts:
            return np.empty(0, np.int64)
        rows = np.concatenate(parts)
        mask = self._filter_mask(cat.cat_codes[rows], cat.price[rows], categories, min_price, max_price)
        seen_rows = [cat.row[i] for i in seen if i in cat.row]
        if seen_rows:
            mask &= ~np.isin(rows, np.asarray(seen_rows, dtype=np.int64))
        rows = rows[mask]
        return rows[np.argsort(-cat.created_at[rows], kind="stable")]  # newest first across categories

    def _describe(self, view, cat, al, m, score, explored, propensity, hist_idx, anchor_pos, events,
                  cold_start, sims) -> Recommendation:
        item_id = str(view.model.items_.ids[m])
        row = int(al.m2c[m])
        title, category, price = self._fields(cat, row)
        if explored:
            why = Explanation("exploring", "Exploring: something you have not seen from us yet")
        elif cold_start:
            where = f" in {category}" if category else ""
            why = Explanation("popular", f"Popular{where} in the shop right now")
        else:
            why = self._because(view, cat, hist_idx, anchor_pos, events, sims)
        return Recommendation(item_id, title, category, price, score, explored, propensity, why)

    def _describe_new(self, cat: CatalogueView, row: int, score: float) -> Recommendation:
        title, category, price = self._fields(cat, row)
        why = Explanation("new_in_category", f"New in {category}, a category you like")
        return Recommendation(str(cat.ids[row]), title, category, price, float(score), False, 1.0, why)

    @staticmethod
    def _fields(cat: CatalogueView, row: int) -> tuple[str, str, float | None]:
        if row < 0:
            return "", "", None
        price = float(cat.price[row])
        return str(cat.titles[row]), str(cat.categories[row]), None if np.isnan(price) else price

    def _because(self, view, cat, hist_idx, positions, events, sims) -> Explanation:
        """The history item most similar to the recommended one (sims: per anchor position)."""
        anchors = hist_idx[positions]
        best = int(np.flatnonzero(sims >= sims.max() - 1e-9)[-1])  # ties: the most recent
        if sims[best] <= 0:
            return Explanation("history", "Based on your recent activity")
        anchor = str(view.model.items_.ids[anchors[best]])
        event = events[positions[best]] if events else "view"
        row = cat.row.get(anchor, -1)
        name = f"“{cat.titles[row]}”" if row >= 0 and cat.titles[row] else f"item {anchor}"
        verb = VERBS.get(event, "you viewed")
        text = "Because " + (verb.format(name) if "{}" in verb else f"{verb} {name}")
        return Explanation("history", text, anchor)

    # ---- similar items ---------------------------------------------------------------------
    def similar(self, item_id: str, k: int) -> list[Recommendation]:
        """Items most similar to one item (by the served model's item vectors), best first."""
        view = self._require_model()
        cat = self._catalogue
        al = self._align(view, cat)
        idx = view.model.items_.index([item_id], missing="-1")[0]
        title = cat.titles[cat.row[item_id]] if item_id in cat.row else ""
        name = f"“{title}”" if title else f"item {item_id}"
        if idx < 0 or not np.any(view.vectors[idx]):
            if item_id not in cat.row:
                raise UnknownIdError(f"Unknown item id {item_id!r}: neither catalogued nor known to the model.")
            return self._popular_in_category(view, cat, al, item_id, k)
        out: list[Recommendation] = []
        fetch = min(view.n_items, 2 * k + 10)
        while True:
            found, sims = view.index.search(view.vectors[idx], fetch)
            out = []
            for j, s in zip(found, sims):
                if j == idx or not al.eligible[j] or s <= 0:
                    continue
                t, c, p = self._fields(cat, int(al.m2c[j]))
                why = Explanation("similar", f"Similar to {name}", item_id)
                out.append(Recommendation(str(view.model.items_.ids[j]), t, c, p, float(s), False, 1.0, why))
                if len(out) == k:
                    return out
            if fetch >= view.n_items or (len(sims) and sims[-1] <= 0):
                return out
            fetch = min(view.n_items, fetch * 4)

    def _popular_in_category(self, view, cat, al, item_id, k) -> list[Recommendation]:
        category = cat.categories[cat.row[item_id]]
        mask = al.eligible & (al.cat_codes == cat.cat_code[category]) if category else al.eligible.copy()
        ids = view.model.items_.ids
        mask &= ids != item_id
        cand = np.flatnonzero(mask)
        cand = cand[np.lexsort((cand, -view.popularity[cand]))][:k]
        where = f" in {category}" if category else ""
        return [
            Recommendation(str(ids[j]), *self._fields(cat, int(al.m2c[j])), float(view.popularity[j]),
                           False, 1.0, Explanation("popular", f"Popular{where}"))
            for j in cand
        ]

    # ---- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        view = self._model
        if view is None:
            return {"loaded": False, "policy": self.policy.name, "catalogue_items": len(self._catalogue)}
        params = view.model.get_params()
        return {
            "loaded": True,
            "name": view.name,
            "version": view.version,
            "path": Path(view.path).name if view.path else None,
            "loaded_at": view.loaded_at,
            "load_seconds": round(view.load_seconds, 3),
            "params": json.loads(json.dumps(params, default=str)),
            "n_items": view.n_items,
            "n_users": len(view.model.users_),
            "similar_index": view.index.kind,
            "policy": self.policy.name,
            "catalogue_items": len(self._catalogue),
            "offline_metrics": view.info.get("metrics", {}),
            "privacy": view.info.get("privacy", {}),
            "trained_at": view.info.get("trained_at"),
        }


def _diversify_by_category(scores: np.ndarray, categories: np.ndarray, k: int, weight: float) -> np.ndarray:
    """A permutation of the candidates whose first k trade score against repeating a category:
    maximal marginal relevance (`shoprec.explore.slate.mmr_rerank`) over one-hot categories,
    with lambda = 1 - weight (0 keeps the score order; 1 takes a new category while one is left)."""
    n = len(scores)
    _, codes = np.unique(categories, return_inverse=True)
    onehot = np.eye(codes.max() + 1 if n else 1)[codes]
    first = mmr_rerank(scores[None, :], onehot[None], np.ones((1, n), bool), min(k, n), 1.0 - weight)[0]
    first = first[first >= 0]
    rest = np.setdiff1d(np.arange(n), first, assume_unique=False)
    return np.concatenate([first, rest[np.argsort(-scores[rest], kind="stable")]]).astype(np.int64)
