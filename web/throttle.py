"""Per-client limits on what strangers may do (the join form), with ``limits`` over Redis.

A fixed window shared by every web process. If Redis is down the request goes through: the
form is worth more than the limit, and the join's own rules (one text a day per number) hold.
"""

from __future__ import annotations

import logging
import time

import redis
from limits import RateLimitItem
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter

log = logging.getLogger(__name__)


class Throttle:
    def __init__(self, client: redis.Redis) -> None:
        storage = RedisStorage("redis://", connection_pool=client.connection_pool)
        self._limiter = FixedWindowRateLimiter(storage)

    def hit(self, limit: RateLimitItem, *identifiers: str) -> bool:
        """Count one more; False once ``limit`` is spent in the current window."""
        try:
            return bool(self._limiter.hit(limit, *identifiers))
        except redis.RedisError:
            log.exception("rate limit unavailable; letting the request through")
            return True

    def retry_after(self, limit: RateLimitItem, *identifiers: str) -> int:
        """Seconds until the window that ``limit`` was spent in ends."""
        try:
            reset_at = self._limiter.get_window_stats(limit, *identifiers).reset_time
        except redis.RedisError:
            return limit.get_expiry()
        return max(1, int(reset_at - time.time()) + 1)

    def allows(self, limit: RateLimitItem, *identifiers: str) -> bool:
        """Whether one more would be within ``limit``, without counting it."""
        try:
            return bool(self._limiter.test(limit, *identifiers))
        except redis.RedisError:
            log.exception("rate limit unavailable; letting the request through")
            return True
