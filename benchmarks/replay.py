"""Replay the bundled shop through the serving engine in time order: how well the live system
predicts each next purchase, with and without online learning.

    python benchmarks/replay.py [--train-share 0.8] [--eval-events 4000] [--updates 8] [--json FILE]

The bundled Online Retail shop is cut in time: models are trained on the events before the cut
as the service trains them (leave-one-out split, the Transformer text-initialised and stopped
early on each shopper's newest event; item-kNN),
then every later event is replayed in time order through `ServingEngine`, exactly as the service
would see it: before a sampled event, the shopper's history so far is scored and the true next
item is ranked against every item outside that history (full ranking, NDCG@10 and HR@10); after
it, the event joins the history. "Online" variants update the model as the service's online
learning job does: the Transformer is fine-tuned (`partial_fit`, one epoch) on the replayed
events every 1/`updates` of the replay window, item-kNN is refitted on every event so far.

Three figures per model: the model path's NDCG@10; the cheaper embedding path's (what a request
gets when the latency budget is exceeded), whose gap is the accuracy cost of degrading; and
the NDCG@10 of the slate actually served with per-shopper dynamic exploration (the target's
position in the 10 items shown, states updated with each outcome), whose gap to the model path
is what exploring costs in accuracy today.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_json

from shoprec.serve.settings import ServeSettings

# The service's Transformer settings (serve/training.py choose_model), with a time cap generous
# enough that early stopping, not the clock, ends training: the replay is then repeatable on a
# busy machine, where a 90-second budget would buy a varying number of epochs.
TRANSFORMER = {"max_seconds": 900.0, "epochs": 200, "eval_every": 2, "patience": 3, "text_init": True}


HISTORY_LIMIT = ServeSettings.history_limit


def _ndcg(rank: int, k: int = 10) -> float:
    return 1.0 / np.log2(rank + 2.0) if rank < k else 0.0


def replay(model_name: str, online: bool, train, later, eval_rows: np.ndarray, updates: int, catalogue_rows,
           log) -> dict:
    from shoprec.data.split import leave_one_out
    from shoprec.explore.online import OnlineConfig
    from shoprec.models.registry import make_model
    from shoprec.serve.engine import ServingEngine

    t0 = time.perf_counter()
    params = TRANSFORMER if model_name == "transformer" else {}
    # As the service trains (train_from_store): on a leave-one-out split of what it holds, each
    # shopper's newest event for early stopping.
    parts = leave_one_out(train.dataset)
    model = make_model(model_name, **params).fit(parts.train, parts.valid)
    fit_s = time.perf_counter() - t0
    engine = ServingEngine(exploration=OnlineConfig())
    engine.set_model(model)
    engine.set_catalogue(catalogue_rows)
    items, events = later.items.ids, np.asarray(later.event_names)
    users, order = later.user_ids, later.order
    histories: dict[str, tuple[list[str], list[str]]] = {}
    for u, h_items, h_events in train.histories():
        histories[u] = (h_items, h_events)
    states: dict[str, tuple] = {}
    rng = np.random.default_rng(0)
    sums = {"model": [0.0, 0.0], "embedding": [0.0, 0.0], "served": [0.0, 0.0]}
    n_eval = 0
    eval_set = set(eval_rows.tolist())
    boundaries = set(np.linspace(0, len(order), updates + 1, dtype=int)[1:-1].tolist()) if online else set()
    last_update = 0
    for j, row in enumerate(order):
        if j in boundaries:
            model = _update(model, model_name, train, later, order[last_update:j], order[:j])
            engine.set_model(model)
            last_update = j
        user, item, event = users[row], items[later.item_idx[row]], events[row]
        hist_items, hist_events = histories.get(user, ([], []))
        if j in eval_set and hist_items:
            # What the service reads: the shopper's latest `history_limit` events.
            hist_items, hist_events = hist_items[-HISTORY_LIMIT:], hist_events[-HISTORY_LIMIT:]
            view = engine.model_view
            target = view.position.get(item, -1)
            hist_idx = np.fromiter((view.position.get(i, -1) for i in hist_items), np.int64, len(hist_items))
            seen = hist_idx[hist_idx >= 0]
            if target >= 0 and target not in set(seen.tolist()):
                n_eval += 1
                for path in ("model", "embedding"):
                    scores, _ = engine.scores(view, hist_idx, hist_events, degrade=path == "embedding")
                    scores[seen] = -np.inf
                    rank = int((scores > scores[target]).sum() + (scores[:target] == scores[target]).sum())
                    sums[path][0] += _ndcg(rank)
                    sums[path][1] += rank < 10
                state, space = states.get(user, (None, None))
                served = engine.recommend(hist_items, hist_events, 10, state=state, space=space, rng=rng)
                shown = [r.item_id for r in served.items]
                pos = shown.index(item) if item in shown else 10
                sums["served"][0] += _ndcg(pos)
                sums["served"][1] += pos < 10
                rows = [{"item_id": r.item_id, "position": p, "explored": r.explored, "z": z}
                        for p, (r, z) in enumerate(zip(served.items, served.z)) if z is not None]
                clicked = [r for r in rows if r["item_id"] == item]
                skipped = [r for r in rows if r["item_id"] != item]
                state, space = engine.learn(served.state, served.space, hist_items, skipped, 0.0)
                if clicked:
                    state, space = engine.learn(state, space, hist_items, clicked, 1.0)
                states[user] = (state, space)
        full_items, full_events = histories.get(user, ([], []))
        histories[user] = (full_items + [item], full_events + [event])
    seconds = time.perf_counter() - t0
    out = {"model": model_name, "online": online, "fit_seconds": round(fit_s, 1), "events_evaluated": n_eval,
           "seconds": round(seconds, 1)}
    for path, (ndcg, hr) in sums.items():
        out[f"{path}_NDCG@10"] = ndcg / max(n_eval, 1)
        out[f"{path}_HR@10"] = hr / max(n_eval, 1)
    log(f"{model_name:>11} online={online!s:<5} model NDCG@10 {out['model_NDCG@10']:.4f}  "
        f"embedding {out['embedding_NDCG@10']:.4f}  served {out['served_NDCG@10']:.4f}  "
        f"({n_eval} events, {seconds:.0f}s)")
    return out


def _update(model, name: str, train, later, new_rows: np.ndarray, all_rows: np.ndarray):
    """What the online learning job does between two points of the replay."""
    if name == "transformer":
        new = later.dataset(new_rows, extend_items_of=model)
        model.partial_fit(new, epochs=1)
        return model
    from shoprec.models.registry import make_model

    return make_model(name, **model.get_params()).fit(later.dataset(all_rows, base=train.mask))


class Later:
    """The events after the cut, in time order, with what the replay needs from them."""

    def __init__(self, data, mask: np.ndarray) -> None:
        from shoprec.data.schema import EVENT_TYPES

        self.full = data
        rows = np.flatnonzero(mask)
        self.rows = rows[np.lexsort((rows, data.timestamp[rows]))]  # time order, file order on ties
        self.items = data.items
        self.item_idx = data.item_idx[self.rows]
        self.user_ids = data.users.ids[data.user_idx[self.rows]]
        self.event_names = np.asarray(EVENT_TYPES, dtype=object)[data.event[self.rows]]
        self.order = np.arange(len(self.rows))

    def dataset(self, positions: np.ndarray, extend_items_of=None, base=None):
        mask = np.zeros(len(self.full), bool)
        mask[self.rows[positions]] = True
        if base is not None:
            mask |= base
        sub = self.full.subset(mask, "replayed")
        if extend_items_of is None:
            return sub
        from shoprec.data.dataset import Dataset

        items = extend_items_of.items_.extend(sub.items.ids)
        remap = items.index(sub.items.ids)
        return Dataset.from_arrays(sub.users, items, sub.user_idx, remap[sub.item_idx], sub.event, sub.timestamp,
                                   sub.value, sub.catalogue, sub.name)


class Train:
    """The events before the cut."""

    def __init__(self, data, mask: np.ndarray) -> None:
        self.mask = mask
        self.dataset = data.subset(mask, "before the cut")

    def histories(self):
        from shoprec.data.schema import EVENT_TYPES

        d = self.dataset
        names = np.asarray(EVENT_TYPES, dtype=object)
        for u in np.flatnonzero(np.diff(d.indptr) > 0):
            sl = slice(d.indptr[u], d.indptr[u + 1])
            yield d.users.ids[u], d.items.ids[d.item_idx[sl]].tolist(), names[d.event[sl]].tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-share", type=float, default=0.8, help="share of the time span before the cut")
    parser.add_argument("--eval-events", type=int, default=4000, help="replayed events scored (a seeded sample)")
    parser.add_argument("--updates", type=int, default=8, help="online updates over the replay window")
    parser.add_argument("--models", default="item-knn,transformer")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the results as JSON")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from shoprec.data.readers import load_demo

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    loaded = load_demo()
    data = loaded.dataset()
    t_min, t_max = int(data.timestamp.min()), int(data.timestamp.max())
    cut = t_min + args.train_share * (t_max - t_min)
    before = data.timestamp < cut
    train = Train(data, before)
    later = Later(data, ~before)
    rng = np.random.default_rng(0)
    eval_rows = np.sort(rng.choice(len(later.order), size=min(args.eval_events, len(later.order)), replace=False))
    cat = loaded.catalogue.frame
    catalogue_rows = [(str(i), str(t), str(c), None if np.isnan(p) else float(p), True, 0)
                      for i, t, c, p in zip(cat["item"], cat["title"], cat["category"], cat["price"])]
    log(f"cut at {time.strftime('%Y-%m-%d', time.gmtime(cut))}: {int(before.sum()):,} events before, "
        f"{len(later.order):,} replayed, {len(eval_rows):,} scored")
    rows = []
    for name in args.models.split(","):
        for online in (False, True):
            rows.append(replay(name, online, train, later, eval_rows, args.updates, catalogue_rows, log))
    print("| model | online updates | NDCG@10 (model path) | HR@10 | NDCG@10 (embedding path) | "
          "NDCG@10 (served, dynamic exploration) | events scored |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {'yes' if r['online'] else 'no'} | {r['model_NDCG@10']:.4f} | {r['model_HR@10']:.4f} | "
              f"{r['embedding_NDCG@10']:.4f} | {r['served_NDCG@10']:.4f} | {r['events_evaluated']:,} |")
    if args.json:
        write_json(args.json, {"protocol": __doc__.split("\n\n")[2], "train_share": args.train_share,
                               "updates": args.updates, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
