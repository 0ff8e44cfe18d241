"""`make demo`'s main job on the bundled shop: a leaderboard and recommendations by title."""

from __future__ import annotations

import io

from shoprec.cli.demo import run_demo


def test_demo_prints_a_leaderboard_and_recommendations_by_title():
    out = io.StringIO()
    assert run_demo(models=("pop", "item-knn"), quiet=True, out=out) == 0
    text = out.getvalue()
    board = text.split("\n\n")[0].splitlines()
    assert board[0].startswith("Leaderboard: bundled Online Retail shop, leave-one-out, full ranking")
    # Best model first; the personalised model must beat popularity on a real shop.
    assert board[3].startswith("item-knn") and board[4].startswith("pop")
    assert text.count("recently bought") == 3
    assert text.count("recommended:") == 3
