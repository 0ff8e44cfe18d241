"""What the service computes per request: scores, filters, diversity, the explored slate,
explanations.

The engine holds the served model, its exploration learner (`shoprec.explore.online`) and an
in-memory view of the catalogue aligned to the model's item space. Recommendations are computed
from the shopper's *stored* history on every request (`Recommender.score_histories`), so an event
changes the next recommendations at once, without retraining; a sequence model re-reads the
history with its event types. The slate is chosen by the per-shopper explorer from candidate
pools around those scores, with the shopper's stored state passed in and handed back.

When the model path would overrun the request's latency budget under the current load, the
request is served from the cheaper embedding path (the mean of the recent items' vectors against
every item) and says so.

State is replaced, never mutated: a model reload builds a new `ModelView` off the request path
and swaps one attribute, so a request sees either the old model or the new one, never a mix.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from shoprec.data.schema import EVENT_TYPES
from shoprec.errors import NotFittedError, UnknownIdError
from shoprec.explore.online import OnlineConfig, OnlineExplorer
from shoprec.explore.slate import diversify_by_category
from shoprec.explore.state import ShopperState
from shoprec.serve.ann import ItemIndex, item_vectors
from shoprec.serve.explain import (
    ANCHOR_WINDOW,
    anchor_by_removal,
    anchor_by_similarity,
    catalogue_fields,
    describe,
    describe_new,
    model_summary,
    removal_histories,
)
from shoprec.serve.load import LoadGauge
from shoprec.serve.views import (
    Alignment,
    CatalogueView,
    Explanation,
    ModelView,
    Recommendation,
    Served,
    file_version,
)

__all__ = ["ServingEngine"]

EVENT_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}

class ServingEngine:
    """Recommendations, similar items and explanations over one model and one catalogue.

    ann_threshold: catalogue size from which similar items use HNSW instead of exact search.
    new_item_days: a catalogue item created this recently, unknown to the model, is "new".
    new_item_slots: how many new items in a category the shopper likes may join a slate.
    exploration: how slates explore (weight rule, budget); None: `OnlineConfig()`.
    latency_budget_ms: serve the cheaper embedding path when the model path's expected time
        under the current load would exceed this (0: never degrade).
    explain_by_model: explain a sequence model's exploit slots by removing history events and
        rescoring (`shoprec.serve.explain`), instead of by item similarity.
    """

    def __init__(
        self,
        ann_threshold: int = 100_000,
        new_item_days: int = 30,
        new_item_slots: int = 1,
        exploration: OnlineConfig | None = None,
        latency_budget_ms: float = 0.0,
        explain_by_model: bool = True,
    ) -> None:
        self.ann_threshold = ann_threshold
        self.new_item_days = new_item_days
        self.new_item_slots = new_item_slots
        self.exploration = exploration or OnlineConfig()
        self.latency_budget_ms = latency_budget_ms
        self.explain_by_model = explain_by_model
        self._model: ModelView | None = None
        self._catalogue = CatalogueView.from_rows([], 0)
        self._aligned: Alignment | None = None
        self._lock = threading.Lock()
        self.load = LoadGauge()

    @property
    def policy_name(self) -> str:
        return self.exploration.name

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

    def load_model(self, path: str | Path, check=None) -> ModelView:
        """Load a saved model (and its optional JSON sidecar) and serve it from now on.
        check: called with the loaded model before it is served; raising keeps the old one."""
        from shoprec.models.base import Recommender

        path = Path(path)
        t0 = time.perf_counter()
        model = Recommender.load(path)
        if check is not None:
            check(model)
        sidecar = path.with_suffix(".json")
        info: dict[str, Any] = {}
        if sidecar.is_file():
            try:
                info = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                info = {}
        return self.set_model(model, path=str(path), info=info, version=file_version(path), t0=t0)

    def set_model(self, model, path: str | None = None, info: dict | None = None,
                  version: str | None = None, t0: float | None = None) -> ModelView:
        """Serve an in-memory fitted model (tests, the demo)."""
        t0 = time.perf_counter() if t0 is None else t0
        if not model.is_fitted:
            raise NotFittedError("The model to serve is not fitted; call fit(train) first.")
        vectors = item_vectors(model)
        pop = np.asarray(model.seen_.sum(axis=0), dtype=np.float64).ravel()
        previous = self._model
        # A fine-tuned model keeps the explorer's feature space, so stored shopper states stay valid.
        space = previous.explorer.space if previous is not None and previous.name == model.name else None
        explorer = OnlineExplorer(self.exploration, vectors, pop, space=space)
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
            explorer=explorer,
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
    def scores(self, view: ModelView, hist_idx: np.ndarray, events: list[str] | None,
               degrade: bool = False) -> tuple[np.ndarray, str]:
        """The model's scores over every item for a history of model indices (unknown ones -1),
        and the path that computed them: "model", "embedding" (the cheap path) or "popularity"."""
        scores, path, _ = self._scored(view, hist_idx, events, degrade, explain=False)
        return scores, path

    def _scored(self, view: ModelView, hist_idx: np.ndarray, events: list[str] | None, degrade: bool,
                explain: bool):
        """`scores`, and with explain (a sequence model on the model path) the encoded history
        variants that the explanation rescores: one forward pass for both, the history scored
        over the whole catalogue, its variants later over the chosen items only."""
        known = hist_idx >= 0
        encoded = None
        if not known.any():
            return view.popularity.astype(np.float64, copy=True), "popularity", None
        if degrade:
            recent = view.vectors[hist_idx[known][-5:]]
            scores = (view.vectors @ recent.mean(axis=0)).astype(np.float64)
            path = "embedding"
        else:
            codes = self._event_codes(events, len(hist_idx))
            model = view.model
            variants = removal_histories(hist_idx, codes) if explain and hasattr(model, "encode_histories") else None
            # The batch scoring hook on indices: `score_history` would look the ids up again
            # and build a pandas Categorical of the events on every request (~1.5 ms).
            t0 = time.perf_counter()
            if variants is not None:
                encoded = model.encode_histories(variants[1], variants[2])
                scores = np.array(model.score_encoded(encoded[:1])[0], dtype=np.float64)
            else:
                scores = np.array(model.score_histories(
                    [hist_idx[known]], None if codes is None else [codes[known]])[0], dtype=np.float64)
            self.load.record_model_seconds(time.perf_counter() - t0)
            path = "model"
        spread = max(float(scores.max()), -float(scores.min())) if scores.size else 0.0
        # Popularity breaks ties (many items score exactly 0 for neighbourhood models).
        scores += view.popularity * (1e-9 * max(spread, 1.0))
        return scores, path, encoded

    @staticmethod
    def _event_codes(events: list[str] | None, n: int) -> np.ndarray | None:
        if not events or len(events) != n:
            return None
        return np.fromiter((EVENT_CODE.get(e, 0) for e in events), dtype=np.int8, count=n)

    def recommend(
        self,
        items: list[str],
        events: list[str],
        k: int,
        categories: list[str] | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        exploration: float | None = None,
        diversity: float = 0.0,
        state: ShopperState | None = None,
        space: str | None = None,
        rng: np.random.Generator | None = None,
        now: float | None = None,
        arrived: float | None = None,
    ) -> Served:
        """A slate of up to k for a history (item ids and event types, oldest first), filtered,
        explored and explained.

        exploration: an override of the exploration weight in [0, 1] (None: the weight rule's).
        state, space: the shopper's stored exploration state and the feature space it lives in
        (None: a prior from the history; a state from another space restarts from its prior).
        arrived: when the request arrived on `self.load`'s clock (the latency budget counts the
        time since).
        """
        view = self._require_model()
        cat = self._catalogue
        al = self._align(view, cat)
        rng = rng or np.random.default_rng()
        now = time.time() if now is None else now

        with self.load.request(self.latency_budget_ms, arrived=arrived) as ticket:
            position = view.position
            hist_idx = np.fromiter((position.get(i, -1) for i in items), dtype=np.int64, count=len(items))
            known = hist_idx >= 0
            cold_start = not known.any()
            explain = view.model.sequential and self.explain_by_model
            scores, path, encoded = self._scored(view, hist_idx, events, ticket.degrade, explain)
            self.load.served_by(path, ticket)

            allowed = al.eligible.copy()
            if known.any():
                allowed[hist_idx[known]] = False
            wanted = self._codes(cat, categories)
            if wanted is not None or min_price is not None or max_price is not None:
                allowed &= self._filter_mask(al.cat_codes, al.price, wanted, min_price, max_price)
            if diversity > 0 and allowed.any():
                scores = self._diversified(scores, allowed, al.cat_codes, k, diversity)

            liked = self._liked_categories(items, cat)
            new_rows = self._new_in_liked(al, cat, liked, items, wanted, min_price, max_price, now)

            explorer = view.explorer
            state = explorer.state_in_space(state, space, hist_idx[known])
            slate, z = explorer.choose(state, hist_idx[known], scores, allowed, k, rng, override=exploration)

            chosen = slate.items
            by_model = path == "model" and view.model.sequential and self.explain_by_model
            if by_model:
                anchors, strength = anchor_by_removal(view, hist_idx, self._event_codes(events, len(hist_idx)),
                                                      chosen, encoded=encoded)
            else:
                anchors, strength = anchor_by_similarity(view, hist_idx, chosen)
            recs = [describe(view, cat, int(m), int(al.m2c[m]), float(scores[m]), bool(e), float(q), reason,
                             int(hist_idx[a]) if a >= 0 else -1, float(st), events[a] if events and a >= 0 else None,
                             cold_start, by_model)
                    for m, e, q, reason, a, st in zip(chosen, slate.explored, slate.propensities, slate.reasons,
                                                      anchors, strength)]
            zs = [float(v) for v in z]
            if new_rows.size:
                # Rule, not exploration: a new item in a liked category takes the last slot(s). It
                # has no score of its own yet, so it gets the score of the item before it.
                shown = {r.item_id for r in recs}
                head = new_rows[: self.new_item_slots + len(recs)]  # enough, even if all were shown
                new_rows = np.array([r for r in head if str(cat.ids[r]) not in shown], dtype=np.int64)
                slots = min(self.new_item_slots, len(new_rows), k)
                if slots:
                    recs, zs = recs[: k - slots], zs[: k - slots]
                    floor = recs[-1].score if recs else 0.0
                    recs += [describe_new(cat, int(r), floor) for r in new_rows[:slots]]
                    zs += [None] * slots
        return Served(recs, zs, slate.weight, dict(slate.weight_signals), slate.policy, path, state,
                      explorer.space.id)

    def learn(self, state: ShopperState | None, space: str | None, history: list[str],
              shown: list[dict[str, Any]], reward: float) -> tuple[ShopperState, str]:
        """The shopper's state after feedback on shown items (impression rows with item_id,
        position, explored, z): reward 1 for a click, 0 for a skip. Items the served model does
        not know (new catalogue items shown by rule) teach nothing. Returns (state, space)."""
        view = self._require_model()
        explorer = view.explorer
        hist = np.fromiter((view.position.get(i, -1) for i in history), dtype=np.int64, count=len(history))
        state = explorer.state_in_space(state, space, hist[hist >= 0])
        known = [(view.position.get(r["item_id"], -1), r) for r in shown if r.get("z") is not None]
        known = [(m, r) for m, r in known if m >= 0]
        if known:
            state = explorer.learn_many(state, [m for m, _ in known], [int(r["position"]) for _, r in known],
                                        [reward] * len(known), [bool(r["explored"]) for _, r in known],
                                        [float(r["z"]) for _, r in known])
        return state, explorer.space.id

    def replay_feedback(self, log: list[tuple[str, int, float, bool]]) -> int:
        """Rebuild the explorer's shared statistics from logged feedback (item_id, position, z,
        clicked), as after a restart; returns how many rows the served model knew."""
        view = self._require_model()
        rows = [(view.position.get(i, -1), p, z, c) for i, p, z, c in log]
        rows = [r for r in rows if r[0] >= 0]
        if rows:
            items, slots, z, clicked = map(np.array, zip(*rows))
            view.explorer.learn_shared(items, slots, clicked.astype(np.float64), z)
        return len(rows)

    @staticmethod
    def _diversified(scores: np.ndarray, allowed: np.ndarray, cat_codes: np.ndarray, k: int,
                     diversity: float) -> np.ndarray:
        """Scores whose top order trades score against repeating a category: the pool of the
        best max(5k, 50) allowed items is re-ordered by MMR over categories and lifted above
        every other item, keeping its new order."""
        pool_size = min(int(allowed.sum()), max(5 * k, 50))
        masked = np.where(allowed, scores, -np.inf)
        pool = np.argpartition(masked, len(masked) - pool_size)[-pool_size:]
        pool = pool[np.lexsort((pool, -masked[pool]))]
        order = pool[diversify_by_category(scores[pool], cat_codes[pool], k, diversity)]
        out = scores.copy()
        top = float(np.max(scores[np.isfinite(scores)])) if np.isfinite(scores).any() else 0.0
        out[order] = top + 1.0 + np.arange(len(order), 0, -1, dtype=np.float64)
        return out

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
        rows = [cat.row[i] for i in items[-ANCHOR_WINDOW:] if i in cat.row]
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
                t, c, p = catalogue_fields(cat, int(al.m2c[j]))
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
            Recommendation(str(ids[j]), *catalogue_fields(cat, int(al.m2c[j])), float(view.popularity[j]),
                           False, 1.0, Explanation("popular", f"Popular{where}"))
            for j in cand
        ]

    # ---- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        view = self._model
        if view is None:
            return {"loaded": False, "policy": self.policy_name, "catalogue_items": len(self._catalogue)}
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
            "policy": self.policy_name,
            "exploration": {"weight_rule": self.exploration.weight_rule, "explorer": self.exploration.explorer,
                            "explore_budget": self.exploration.explore_budget,
                            "feature_space": view.explorer.space.id},
            "latency_budget_ms": self.latency_budget_ms,
            "catalogue_items": len(self._catalogue),
            "offline_metrics": view.info.get("metrics", {}),
            "privacy": view.info.get("privacy", {}),
            "trained_at": view.info.get("trained_at"),
            "choice": view.info.get("choice", {"name": view.name, "reason": "given to the service"}),
            "summary": model_summary(view.name, view.info),
            "n_events": view.info.get("n_events"),
            "data_window": view.info.get("data_window", {}),
        }
