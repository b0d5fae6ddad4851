"""The long-lived things a process needs, built once from Settings: engine, sessions, Redis."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from outreach.app.db import make_engine, make_read_session_factory, make_session_factory
from outreach.app.settings import Settings


def embedded_redis_url(settings: Settings) -> str:
    return f"unix://{settings.instance_path / 'redis.sock'}"


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: redis.Redis
    # for reads only: on SQLite they take no write lock (see make_read_session_factory)
    read_sessions: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.read_sessions = make_read_session_factory(self.engine)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        engine = make_engine(settings.database_url)
        client = redis.Redis.from_url(
            settings.redis_url or embedded_redis_url(settings),
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        return cls(settings, engine, make_session_factory(engine), client)

    def close(self) -> None:
        self.redis.close()
        self.engine.dispose()
