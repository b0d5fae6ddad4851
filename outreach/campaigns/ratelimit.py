"""A token bucket in Redis, shared by every worker: per sender, charged per SMS segment.

Twilio queues what a sender cannot send at once (about 10 hours of it) and then fails it; pacing
ourselves at the sender's rate keeps the queue short, so pause and cancel act at once and quiet
hours hold. The bucket refills continuously at ``rate`` tokens/s and holds at most ``burst``.
One Lua script takes tokens atomically or says how long to wait; the clock is Redis's own, so
workers on different machines agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

# KEYS[1] bucket key; ARGV: rate (tokens/s), burst (max tokens), tokens wanted.
# Returns the seconds to wait before asking again (as a string); "0" means taken.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local ttl = math.ceil(burst / rate) + 60
if tokens >= wanted then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - wanted), 'at', tostring(now))
  redis.call('EXPIRE', KEYS[1], ttl)
  return '0'
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], ttl)
return tostring((wanted - tokens) / rate)
"""

DEFAULT_LONG_CODE_RATE = 1.0  # segments/s for a US long code (PROVIDERS-AND-RULES.md)
UNLIMITED = 0.0  # a rate of 0 means "no limit" (benchmarks, the sandbox if asked)


class RateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "outreach:rate:",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._sleep = sleep
        self._script = client.register_script(_TAKE)

    def try_take(
        self, key: str, tokens: float, *, rate: float, burst: float | None = None
    ) -> float:
        """Take ``tokens`` now if the bucket has them; else the seconds to wait (none taken)."""
        if rate <= UNLIMITED:
            return 0.0
        burst = max(burst if burst is not None else rate, tokens)
        wait = float(self._script(keys=[self._prefix + key], args=[rate, burst, tokens]))
        return max(0.0, wait)

    def take(
        self,
        key: str,
        tokens: float,
        *,
        rate: float,
        burst: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Block until ``tokens`` are taken. Returns False if ``should_stop`` said to give up."""
        while True:
            wait = self.try_take(key, tokens, rate=rate, burst=burst)
            if wait <= 0:
                return True
            if should_stop is not None and should_stop():
                return False
            self._sleep(min(wait, 1.0))
