"""The service's tables (SQLAlchemy 2 declarative models).

Shopper columns hold pseudonyms (`privacy.pseudonym`), never raw ids. Times are integer seconds
since the Unix epoch (UTC), which both SQLite and PostgreSQL bucket with plain arithmetic.
The Alembic migrations in `migrations/versions` create exactly these tables; a test checks that
the two never drift apart.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID_LEN = 64  # item ids, client event ids, pseudonyms
TITLE_LEN = 300
CATEGORY_LEN = 100

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the service's tables."""


class Item(Base):
    """A catalogue entry. Inactive items stay for history and titles but are never recommended."""

    __tablename__ = "items"

    item_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_LEN), default="")
    category: Mapped[str] = mapped_column(String(CATEGORY_LEN), default="")
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_items_category", "category"),)


class Event(Base):
    """One behaviour event. `event_id` is the client's id, unique per `source`: a retried batch
    is not counted twice."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The API key that sent it: a client's event ids are unique within its own source.
    source: Mapped[str] = mapped_column(String(32), server_default="")
    event_id: Mapped[str] = mapped_column(String(ID_LEN))
    shopper: Mapped[str] = mapped_column(String(ID_LEN))
    item_id: Mapped[str] = mapped_column(String(ID_LEN))
    event: Mapped[str] = mapped_column(String(16))
    ts: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    impression_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    received_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_events_source_event_id"),
        Index("ix_events_shopper_ts", "shopper", "ts", "id"),
        Index("ix_events_impression", "impression_id"),
        Index("ix_events_received", "received_at"),
    )


class Impression(Base):
    """One recommended item as shown: its position, the policy's propensity, and why."""

    __tablename__ = "impressions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    impression_id: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)
    shopper: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True)
    item_id: Mapped[str] = mapped_column(String(ID_LEN))
    score: Mapped[float] = mapped_column(Float)
    propensity: Mapped[float] = mapped_column(Float)
    explored: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(32))
    policy: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(ID_LEN))
    created_at: Mapped[int] = mapped_column(BigInteger)
    # What the exploration learner needs back with the feedback, and what it decided.
    z: Mapped[float | None] = mapped_column(Float, nullable=True)  # the score feature of the item here
    weight: Mapped[float | None] = mapped_column(Float, nullable=True)  # the slate's exploration weight
    # True once the learner has seen this item's outcome: a click on it, or a skip (the shopper's
    # next slate was asked for and this item was not clicked).
    feedback_applied: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The A/B experiment running when the slate was served, and the shopper's variant in it.
    experiment: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True)
    variant: Mapped[str | None] = mapped_column(String(32), nullable=True)

    __table_args__ = (
        UniqueConstraint("impression_id", "position", name="uq_impressions_slot"),
        Index("ix_impressions_shopper", "shopper"),
        Index("ix_impressions_created", "created_at"),
        Index("ix_impressions_open", "shopper", "feedback_applied"),
        Index("ix_impressions_experiment", "experiment", "variant"),
    )


class ShopperStateRow(Base):
    """A shopper's exploration state: their posterior and counters (`shoprec.explore.online`),
    packed as float64 bytes, in the item-feature space `space` of dimension `dim`. Written in the
    transaction that stores the feedback that changed it."""

    __tablename__ = "shopper_states"

    shopper: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    space: Mapped[str] = mapped_column(String(16))
    dim: Mapped[int] = mapped_column(Integer)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    n_feedback: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class Retrain(Base):
    """One run of the online learning job: what it trained on, how the candidate scored on the
    newest events against the served model, and whether it was swapped in."""

    __tablename__ = "retrains"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    started_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # running | swapped | kept | failed
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | api | cli
    n_events: Mapped[int] = mapped_column(Integer, default=0)
    metric_before: Mapped[float | None] = mapped_column(Float, nullable=True)
    metric_after: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True)
    # The file a swapped run wrote: worker processes that did not run it load it from here.
    model_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_retrains_started", "started_at"),)


class ApiKey(Base):
    """An API key: a public id, a SHA-256 of the secret (never the secret), and its roles."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    roles: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (UniqueConstraint("name", name="uq_api_keys_name"),)



class PrivacyChoice(Base):
    """A shopper's privacy choice (no row: personalised). "private": their events train only
    differentially private models; "none": their events are not stored beyond the request."""

    __tablename__ = "privacy_choices"

    shopper: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    choice: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[int] = mapped_column(BigInteger)


class Erasure(Base):
    """A tombstone: a keyed digest of an erased pseudonym (never the pseudonym itself), so that
    a request naming the shopper after the erasure logs nothing under them. A new event of the
    shopper (they came back) removes it."""

    __tablename__ = "erasures"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[int] = mapped_column(BigInteger)


class Experiment(Base):
    """An online A/B experiment: its variants (JSON: name, share, exploration), when it ran. At
    most one runs at a time; shoppers are assigned by a hash of experiment id and pseudonym."""

    __tablename__ = "experiments"

    experiment_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    variants: Mapped[str] = mapped_column(Text)
    started_at: Mapped[int] = mapped_column(BigInteger)
    stopped_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
