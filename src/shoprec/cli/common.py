"""What several commands share: the data options, loading and splitting, progress messages on
stderr, fitting a named model, and plain-text tables."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

__all__ = ["add_data_args", "check_model_params", "fit_named", "load_data", "prepare", "say", "table"]


def say(args: argparse.Namespace, message: str) -> None:
    """A progress message on stderr, unless --quiet."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def add_data_args(p: argparse.ArgumentParser, split: bool = True, extra_protocols: tuple[str, ...] = (),
                  required: bool = True) -> None:
    """--data/--format/--catalogue/--mapping (and --protocol/--kcore/--seed with split)."""
    from shoprec.data.split import PROTOCOLS

    p.add_argument("--data", required=required, help="path to the log, or 'demo' for the bundled shop")
    p.add_argument("--format", default="shoprec", help="reader format (see `shoprec data formats`)")
    p.add_argument("--catalogue", default=None, help="optional catalogue file for the format")
    p.add_argument("--mapping", default=None,
                   help="csv/parquet column mapping, e.g. user=customer_id,item=sku,timestamp=ts")
    if split:
        p.add_argument("--protocol", default="loo", choices=(*PROTOCOLS, *extra_protocols))
        p.add_argument("--kcore", type=int, default=0, help="k-core filter users and items first")
        p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")


def load_data(args: argparse.Namespace):
    """The log named by --data (and --format, --catalogue, --mapping) as a loaded log."""
    from shoprec.data.readers import load, load_demo

    if args.data == "demo":
        return load_demo()
    mapping = None
    if getattr(args, "mapping", None):
        mapping = dict(pair.split("=", 1) for pair in args.mapping.split(",") if "=" in pair)
    return load(args.data, args.format, catalogue=getattr(args, "catalogue", None), mapping=mapping)


def prepare(args: argparse.Namespace):
    """Load, optionally k-core filter, and split the data named on the command line.

    Returns (loaded, dataset, split); split is None for --protocol none (train on every event).
    """
    from shoprec.data.split import k_core, split

    t0 = time.perf_counter()
    loaded = load_data(args)
    data = loaded.dataset()
    if getattr(args, "kcore", 0):
        data = k_core(data, args.kcore, args.kcore)
    parts = None if args.protocol == "none" else split(data, args.protocol, seed=args.seed)
    say(args, f"loaded {args.data}: {data.n_users:,} users, {data.n_items:,} items, "
              f"{len(data):,} events in {time.perf_counter() - t0:.1f}s")
    return loaded, data, parts


def check_model_params(name: str, params: dict[str, Any]) -> None:
    """Refuse an unknown model or parameter name before any data is read."""
    from shoprec.errors import check_param_names
    from shoprec.models.registry import model_class

    check_param_names(f"Model {name!r}", params, model_class(name).param_defaults())


def fit_named(args: argparse.Namespace, name: str, train, valid, params: dict[str, Any]):
    """Build the model `name` with `params` (a progress bar unless --quiet), fit it; returns
    (model, seconds)."""
    from shoprec.models.registry import make_model, model_class

    if "verbose" in model_class(name).param_defaults() and not getattr(args, "quiet", False):
        params = {"verbose": True, **params}
    model = make_model(name, **params)
    t0 = time.perf_counter()
    model.fit(train, valid)
    return model, time.perf_counter() - t0


def table(rows: list[dict[str, Any]], title: str = "") -> str:
    """A plain-text table; floats with 4 decimals."""
    if not rows:
        return title
    cols = list(rows[0])
    for row in rows[1:]:
        cols += [c for c in row if c not in cols]
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = [title] if title else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
