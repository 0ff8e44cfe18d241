"""Shared test data for the privacy tests (imported by conftest.py and test modules)."""

from __future__ import annotations

import pandas as pd

SECRET = "privacy-tests-secret-0123456789abcdef"  # >= 32 bytes; a test key, never a real one


def raw_events() -> pd.DataFrame:
    """A shop export with raw customer ids, names and e-mails: what must never be stored."""
    rows = []
    people = [
        ("alice.smith@example.com", "Alice Smith"),
        ("bob.jones@example.com", "Bob Jones"),
        ("carol.white@example.com", "Carol White"),
        ("dave.brown@example.com", "Dave Brown"),
        ("erin.green@example.com", "Erin Green"),
        ("frank.black@example.com", "Frank Black"),
    ]
    for u, (email, name) in enumerate(people):
        items = [f"i{(u * 3 + j) % 8 + 1}" for j in range(5)]
        for t, item in enumerate(items):
            rows.append(
                {"customer_id": f"CUST-{1000 + u}", "email": email, "reviewerName": name,
                 "item": item, "timestamp": 1_700_000_000 + 3600 * t + 17 * u, "event": "purchase"}
            )
    return pd.DataFrame(rows)
