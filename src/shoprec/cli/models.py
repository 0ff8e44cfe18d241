"""`shoprec models [--params NAME]`: the model names, or one model's parameters and defaults."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the model names, or a model's parameters (--params NAME)")
    p.add_argument("--params", metavar="NAME", help="list this model's parameters with defaults")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shoprec.models.registry import model_class, model_names

    if not args.params:
        print("\n".join(model_names()))
        return 0
    klass = model_class(args.params)
    docs = klass.param_docs()
    defaults = klass.param_defaults()
    if not defaults:
        print(f"{args.params} has no parameters.")
        return 0
    shown = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in defaults.items()}
    name_w = max(len(k) for k in shown)
    value_w = max(len(v) for v in shown.values())
    print(f"Parameters of {args.params} ({klass.__module__}.{klass.__qualname__}); "
          "set them with --param KEY=VALUE:")
    for key, value in shown.items():
        print(f"  {key:<{name_w}}  {value:<{value_w}}  {docs[key]}")
    return 0
