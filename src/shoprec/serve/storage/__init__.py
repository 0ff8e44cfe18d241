"""Transactional storage of events, catalogue, impressions, exploration states and API keys
(SQLAlchemy 2 Core).

SQLite (WAL mode) is the embedded default; PostgreSQL is selected by a `postgresql+psycopg://`
URL. Every write is one transaction: a batch is stored whole or not at all, so a rejected or
crashed batch never leaves half of itself behind, and what was committed before stays.
Event ingestion is idempotent on the client's event id (`INSERT ... ON CONFLICT DO NOTHING`), so
a retried batch is not counted twice, even when two retries race.

The store is one class (`Store`) assembled from one part per kind of data: `events` (events,
impressions, exploration states, a shopper's export), `catalogue`, `keys`, `privacy` (choices,
tombstones, erasure), `experiments` (A/B tests) and `reports` (the dashboard), over the shared connection of `core`.
"""

from __future__ import annotations

from shoprec.serve.storage.catalogue import CatalogueStore
from shoprec.serve.storage.core import MIGRATIONS, StoreCore
from shoprec.serve.storage.events import CLICK_EVENTS, EventStore, FeedbackHook
from shoprec.serve.storage.experiments import ExperimentStore
from shoprec.serve.storage.keys import KeyStore, StoredKey
from shoprec.serve.storage.privacy import PRIVACY_CHOICES, PrivacyStore
from shoprec.serve.storage.reports import ReportStore

__all__ = ["CLICK_EVENTS", "MIGRATIONS", "PRIVACY_CHOICES", "FeedbackHook", "Store", "StoreCore", "StoredKey"]


class Store(EventStore, CatalogueStore, KeyStore, PrivacyStore, ExperimentStore, ReportStore):
    """The database behind one service. `migrate()` before first use."""
