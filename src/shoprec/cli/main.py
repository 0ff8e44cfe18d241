"""The parser of every command, and the one place errors become exit codes and messages.

Each command module exposes `add_parser(subparsers)`, which registers its options and sets
`func`, the function that runs it (returning the exit status). Expected errors (a ShoprecError:
bad data, a bad parameter, an unknown id or model, a missing extra; or a missing file) print one
line, `shoprec: error: ...`, and exit with status 2, like argparse's own usage errors.
"""

from __future__ import annotations

import argparse
import sys

from shoprec.cli import (
    data,
    demo,
    evaluate,
    models,
    ope,
    privacy,
    recommend,
    retrain,
    serve,
    simulate,
    train,
)
from shoprec.errors import ShoprecError

__all__ = ["build_parser", "main"]

COMMANDS = (evaluate, train, retrain, recommend, data, models, demo, serve, privacy, simulate, ope)
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The `shoprec` parser with every command registered."""
    import shoprec

    parser = argparse.ArgumentParser(
        prog="shoprec", description="E-commerce recommendation: evaluate, train, serve, explore, keep private."
    )
    parser.add_argument("--version", action="version", version=f"shoprec {shoprec.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (0 on success, 2 on an expected error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = " ".join(["shoprec", *argv])
    try:
        return int(args.func(args) or 0)
    except (ShoprecError, FileNotFoundError) as exc:
        print(f"shoprec: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("shoprec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`shoprec models | head`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
