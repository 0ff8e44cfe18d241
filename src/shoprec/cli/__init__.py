"""The `shoprec` command: one `main`, one `--param` parser (`params`), one error handler, and a
module per command.

    shoprec evaluate --data PATH --format FORMAT --model NAME [--protocol loo] [--k 10] [--json F] [--export F]
    shoprec train    --data PATH --format FORMAT --model NAME --out DIR      (data-parallel under torchrun)
    shoprec retrain  --db URL --model FILE                                   (online learning, for cron)
    shoprec recommend --model-path FILE (--user ID | --history ID,ID,...) [--k 10]
    shoprec data report --data PATH --format FORMAT [--json F]   |   shoprec data formats
    shoprec models [--params NAME]
    shoprec demo
    shoprec serve [--demo] [--db URL] [--model FILE]
    shoprec privacy-report --data PATH --format FORMAT [--epsilons ...]
    shoprec simulate [--policies ...] [--rounds N] [--seeds N]
    shoprec ope --db URL --policy greedy,fixed:0.05,logged [--since T] [--until T] [--json F]  (read-only)

`python -m shoprec.cli ...` runs the same (torchrun needs that form).
"""

from __future__ import annotations

from shoprec.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
