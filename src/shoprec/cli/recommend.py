"""`shoprec recommend`: top-k from a saved model, for a known user or a raw history."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    p = sub.add_parser("recommend", help="recommend from a saved model")
    p.add_argument("--model-path", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--user")
    group.add_argument("--history", help="comma-separated item ids, oldest first")
    p.add_argument("--k", type=int, default=10)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from shoprec.errors import ConfigError, UnknownIdError
    from shoprec.models.base import Recommender

    model = Recommender.load(args.model_path)
    if args.user is not None:
        recs = model.recommend(args.user, k=args.k)
    else:
        history = [h.strip() for h in (args.history or "").split(",") if h.strip()]
        if not history:
            raise ConfigError("--history names no item id; give comma-separated item ids, oldest first.")
        known = model.items_.index(np.asarray(history, dtype=str), missing="drop")
        unknown = sorted(set(history) - set(model.items_.id_of(np.asarray(known, dtype=np.int64))))
        if len(known) == 0:
            # Recommending from nothing would print arbitrary zero-scored items as if they were answers.
            raise UnknownIdError(f"The model knows none of the --history item ids ({', '.join(unknown[:10])}); "
                                 f"it was trained on {len(model.items_)} items. Check the ids, or pass --user.")
        if unknown:
            print(f"note: the model does not know these item ids and ignores them: {', '.join(unknown[:10])}",
                  file=sys.stderr)
        recs = model.recommend_history(history, k=args.k)
    for item, score in recs:
        print(f"{item}\t{score:.6g}")
    return 0
