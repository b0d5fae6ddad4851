"""Test fixtures: a real Redis (embedded, flushed around each test) and a real database.

The database is SQLite by default (a migrated template file copied per test) or PostgreSQL when
``TEST_DATABASE_URL`` is set (a schema of its own per run, migrated once, truncated per test).
"""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from outreach.app import migrate
from outreach.app.db import make_engine
from outreach.app.embedded_redis import EmbeddedRedis
from outreach.app.services import Services
from outreach.app.settings import Settings
from outreach.models import Base, HuddleDirectoryStamp
from workers import context as worker_context

TEST_AUTH_TOKEN = "test-auth-token-0123456789abcdef"
TEST_ACCOUNT_SID = "AC" + "0" * 32


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis") / "redis.sock").start()
    yield server.url
    server.stop()


def _postgres_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    return url or None


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database: a SQLite file to copy, or a PostgreSQL schema to truncate."""
    pg = _postgres_url()
    if pg is None:
        path = tmp_path_factory.mktemp("db") / "template.db"
        engine = make_engine(f"sqlite:///{path}")
        migrate.upgrade(engine)
        engine.dispose()
        yield str(path)
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(Settings.from_env({"DATABASE_URL": pg}, dotenv=False).database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg else "?"
    url = f"{pg}{sep}options=-csearch_path%3D{schema}"
    engine = make_engine(Settings.from_env({"DATABASE_URL": url}, dotenv=False).database_url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> str:
    if _postgres_url() is None:
        path = tmp_path / "outreach.db"
        shutil.copyfile(database_template, path)
        return f"sqlite:///{path}"
    engine = make_engine(
        Settings.from_env({"DATABASE_URL": database_template}, dotenv=False).database_url
    )
    # DELETE with triggers off (the ledger refuses DELETE otherwise) is far quicker than
    # TRUNCATE for the few rows a test leaves; ids keep counting, and no test relies on them.
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(text(f'DELETE FROM "{table.name}"'))
        # The database's one stamp row, as migrated (a test may delete it), and a new stamp:
        # the huddles went with the triggers off.
        stamp = HuddleDirectoryStamp.__tablename__
        conn.execute(text(f"INSERT INTO {stamp} (id, stamp) VALUES (1, {secrets.randbits(62)})"))
    engine.dispose()
    return database_template


@pytest.fixture
def test_env(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment a test process (or a child process it starts) runs with."""
    return {
        "OUTREACH_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "PUBLIC_BASE_URL": "https://outreach.test",
        "SMS_BACKEND": "sandbox",
        "EMAIL_BACKEND": "sandbox",
        "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
        "OUTREACH_INSTANCE_PATH": str(tmp_path / "instance"),
        "SANDBOX_FAILURE_RATE": "0",
    }


@pytest.fixture
def settings(test_env: dict[str, str]) -> Settings:
    return Settings.from_env(test_env, dotenv=False)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    svc = Services.build(settings)
    svc.redis.flushall()
    worker_context.install(svc)
    yield svc
    worker_context.install(None)
    svc.redis.flushall()
    svc.close()


@pytest.fixture
def redis_client(services: Services) -> redis.Redis:
    return services.redis


@pytest.fixture
def app(services: Services) -> Flask:
    from web import create_app

    flask_app = create_app(services.settings, services)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def cli(test_env: dict[str, str], services: Services) -> CliRunner:
    """A CliRunner whose commands see the test environment (and the test's services)."""
    return CliRunner(env=test_env)
