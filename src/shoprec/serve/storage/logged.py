"""The service's logged slates and their rewards, read for off-policy evaluation, read-only.

A slate is the impression rows that share an `impression_id`, one per slot. Its reward in a slot
is 1 when an event of the reward kind carries the slate's impression id, names the item shown in
that slot and comes from the shopper it was shown to (the attribution the learner and the A/B
reports use: `EventStore.add_events`, `ExperimentStore.experiment_outcomes`), else 0; several
such events still count 1. Slates of anonymous sessions are left out: their events name no
shopper the slate was logged for, so their clicks cannot be attributed.

The database is opened read-only (SQLite `mode=ro`; PostgreSQL `default_transaction_read_only`)
and never migrated, so evaluating a live service's log cannot change it; a SQLite path that does
not exist is an error, not a new empty file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
from sqlalchemy import Engine, and_, create_engine, exists, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from shoprec.errors import ConfigError, EmptyDataError
from shoprec.explore.offpolicy import LoggedSlates
from shoprec.serve.storage.events import CLICK_EVENTS
from shoprec.serve.tables import Event, Impression

__all__ = ["REWARDS", "LogFilter", "read_logged_slates", "read_only_engine"]

REWARDS: dict[str, tuple[str, ...]] = {"click": CLICK_EVENTS, "purchase": ("purchase",)}
"""What counts as a reward: "click", any event the learner counts as a click (view, cart,
favourite, purchase); "purchase", a purchase only."""


@dataclass(frozen=True)
class LogFilter:
    """Which logged slates to read: served in [since, until) (Unix seconds), in an experiment
    (and one of its variants), by a model version, by a logging policy (its label)."""

    since: int | None = None
    until: int | None = None
    experiment: str | None = None
    variant: str | None = None
    model: str | None = None
    policy: str | None = None
    reward: str = "click"

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise ConfigError(f"The reward must be one of {list(REWARDS)}. Got {self.reward!r} instead.")
        if self.variant is not None and self.experiment is None:
            raise ConfigError("A variant filter needs the experiment it belongs to (--experiment ID).")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ConfigError(f"The window is empty: until ({self.until}) must be after since ({self.since}).")

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.__dict__.items() if v is not None and k != "reward"]
        return ", ".join(parts) or "every slate"


def read_only_engine(url: str) -> Engine:
    """An engine on the service's database that cannot write, checked to answer and to hold the
    service's impressions table; ConfigError naming the problem otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{url!r} is not a database URL; give e.g. sqlite:///path/to/shoprec.db or "
                          "postgresql+psycopg://user@host/db.") from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError(f"{shown} is an in-memory database, which holds no service log; give the file's URL.")
        path = Path(parsed.database).expanduser()
        if not path.is_file():
            raise ConfigError(f"No SQLite database at {path} (from {shown}); nothing was created.")
        engine = create_engine(f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true")
    elif backend == "postgresql":
        try:
            engine = create_engine(parsed, pool_pre_ping=True,
                                   connect_args={"options": "-c default_transaction_read_only=on"})
        except (NoSuchModuleError, ModuleNotFoundError) as exc:
            raise ConfigError(f"Cannot open {shown}: {exc}; install the driver (pip install 'psycopg[binary]').") from None
    else:
        raise ConfigError(f"{shown}: the service's database is SQLite or PostgreSQL, not {backend!r}.")
    try:
        with engine.connect() as conn:
            has_table = inspect(conn).has_table(Impression.__tablename__)
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"Cannot read the database at {shown}: {reason}") from None
    if not has_table:
        engine.dispose()
        raise ConfigError(f"{shown} has no impressions table: is it the service's database? "
                          "(`shoprec serve --db URL` creates it.)")
    return engine


def read_logged_slates(url: str, where: LogFilter | None = None) -> LoggedSlates:
    """The slates matching `where` as padded arrays, oldest impression first within each slate's
    slots; EmptyDataError when none match."""
    where = where or LogFilter()
    i, e = Impression.__table__, Event.__table__
    rewarded = exists().where(and_(e.c.impression_id == i.c.impression_id, e.c.item_id == i.c.item_id,
                                   e.c.shopper == i.c.shopper, e.c.event.in_(REWARDS[where.reward])))
    conditions = [i.c.shopper.is_not(None)]
    for column, value in ((i.c.experiment, where.experiment), (i.c.variant, where.variant),
                          (i.c.model, where.model), (i.c.policy, where.policy)):
        if value is not None:
            conditions.append(column == value)
    if where.since is not None:
        conditions.append(i.c.created_at >= where.since)
    if where.until is not None:
        conditions.append(i.c.created_at < where.until)
    stmt = (select(i.c.impression_id, i.c.position, i.c.propensity, i.c.explored, i.c.score, i.c.z, i.c.weight,
                   i.c.policy, rewarded.label("rewarded"), i.c.shopper)
            .where(*conditions).order_by(i.c.impression_id, i.c.position))
    engine = read_only_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"Cannot read the impressions of {make_url(url).render_as_string(hide_password=True)}: "
                          f"{reason}") from None
    finally:
        engine.dispose()
    if not rows:
        raise EmptyDataError(f"No logged slates of known shoppers match ({where.describe()}); nothing to evaluate.")
    return _slates(rows)


def _slates(rows) -> LoggedSlates:
    columns = list(zip(*rows))
    _, first, slate = np.unique(np.asarray(columns[0], dtype=object), return_index=True, return_inverse=True)
    position = np.asarray(columns[1], np.int64)
    n, k = len(first), int(position.max()) + 1
    shown = np.zeros((n, k), bool)
    shown[slate, position] = True

    def grid(values, fill, dtype=np.float64):
        out = np.full((n, k), fill, dtype=dtype)
        out[slate, position] = np.asarray(values, dtype=dtype)
        return out

    # numpy reads SQL NULLs (None) as NaN in float arrays: a NULL `z` marks an item placed by rule.
    as_float = [np.asarray(c, np.float64) for c in (columns[2], columns[4], columns[5], columns[6], columns[8])]
    propensity, score, z, weight, rewarded = as_float
    return LoggedSlates(
        shown=shown, propensity=grid(propensity, 1.0), explored=grid(np.asarray(columns[3], bool), False, bool),
        rule=grid(np.isnan(z), False, bool), score=grid(score, np.nan), reward=grid(rewarded > 0, 0.0),
        weight=weight[first], policy=np.asarray(columns[7], dtype=object)[first],
        shopper=np.asarray(columns[9], dtype=object)[first],
    )
