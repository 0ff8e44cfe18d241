"""Fixtures of the service tests: one app per test, on SQLite and (when available) PostgreSQL.

PostgreSQL runs when SHOPREC_TEST_POSTGRES_URL names a server (CI starts one with
scripts/ci_services.sh); otherwise the postgresql variants skip with that reason. Every test gets
its own database: a fresh SQLite file, or a PostgreSQL database created for the test session
whose schema is emptied before each test.
"""

from __future__ import annotations

import os
import uuid

import pytest

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
pytest.importorskip("sqlalchemy", reason="the 'serve' extra is not installed")

from serve_helpers import ADMIN, ADMIN_KEY, BACKENDS, PG_ENV, SECRET, ASGIClient, catalogue_rows

from shoprec.models.knn import ItemKNN
from shoprec.privacy.pseudonym import Pseudonymizer
from shoprec.serve.app import create_app
from shoprec.serve.settings import ServeSettings


@pytest.fixture(scope="session")
def _pg_database():
    """A database of its own on the CI server for this test session; dropped at the end."""
    url = os.environ.get(PG_ENV)
    if not url:
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"shoprec_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - a configured but unreachable server is a failure
        pytest.fail(f"{PG_ENV} is set but PostgreSQL does not answer: {exc}")
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path, _pg_database) -> str:
    """A fresh, empty database URL of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    if _pg_database is None:
        pytest.skip(f"PostgreSQL not configured: set {PG_ENV} (scripts/ci_services.sh does)")
    from sqlalchemy import create_engine, text

    engine = create_engine(_pg_database)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return _pg_database


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer.from_secret(SECRET, key_id="test")


@pytest.fixture
def knn(tiny_shop) -> ItemKNN:
    return ItemKNN(neighbors=10, shrink=0.0).fit(tiny_shop)


@pytest.fixture
def settings(database_url) -> ServeSettings:
    return ServeSettings(database_url=database_url, admin_key=ADMIN_KEY, exploration=0.0)


@pytest.fixture
def make_client(settings, pseudonymizer, knn, tiny_shop):
    """Build a client for an app; keyword arguments change settings. Closed after the test."""
    clients: list[ASGIClient] = []

    def build(with_catalogue: bool = True, model=knn, pseudonymizer=pseudonymizer, **changes) -> ASGIClient:
        app = create_app(settings.with_(**changes) if changes else settings,
                         pseudonymizer=pseudonymizer, model=model)
        client = ASGIClient(app)
        clients.append(client)
        if with_catalogue:
            r = client.post("/v1/items/batch", json={"items": catalogue_rows(tiny_shop)}, headers=ADMIN)
            assert r.status_code == 200, r.text
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client) -> ASGIClient:
    """An app serving ItemKNN on the tiny shop, with its catalogue imported."""
    return make_client()
