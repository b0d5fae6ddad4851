"""A token bucket in Redis, shared by every worker: per sender, charged per SMS segment.

Twilio queues what a sender cannot send at once (about 10 hours of it) and then fails it; pacing
ourselves at the sender's rate keeps the queue short, so pause and cancel act at once and quiet
hours hold. The bucket refills continuously at ``rate`` tokens/s and holds at most ``burst``.
One Lua script takes tokens atomically or says how long to wait; the clock is Redis's own, so
workers on different machines agree.

A provider that answers 429 is asked for less: :meth:`RateLimiter.slow_down` halves the sender's
rate for a minute (again on each 429, down to a sixteenth), read by the same script, so every
worker slows at once. Waits are added up per sender in Redis for ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

# KEYS[1] bucket key, KEYS[2] slow-down factor key; ARGV: rate (tokens/s), burst (max tokens),
# tokens wanted. Returns the seconds to wait before asking again (as a string); "0": taken.
_TAKE = """
local factor = tonumber(redis.call('GET', KEYS[2]) or '1')
local rate = tonumber(ARGV[1]) * factor
local burst = math.max(tonumber(ARGV[2]) * factor, tonumber(ARGV[3]))
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

# KEYS[1] factor key; ARGV: factor to multiply by, floor, seconds it lasts.
_SLOW_DOWN = """
local factor = tonumber(redis.call('GET', KEYS[1]) or '1') * tonumber(ARGV[1])
factor = math.max(factor, tonumber(ARGV[2]))
redis.call('SET', KEYS[1], tostring(factor), 'EX', tonumber(ARGV[3]))
return tostring(factor)
"""

WAIT_METRIC = "outreach:metrics:rate-wait-seconds"  # hash: sender key -> seconds waited
SLOW_DOWN_FACTOR = 0.5
SLOW_DOWN_FLOOR = 1 / 16
SLOW_DOWN_SECONDS = 60

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
        self._slow_down = client.register_script(_SLOW_DOWN)

    def try_take(
        self, key: str, tokens: float, *, rate: float, burst: float | None = None
    ) -> float:
        """Take ``tokens`` now if the bucket has them; else the seconds to wait (none taken)."""
        if rate <= UNLIMITED:
            return 0.0
        burst = max(burst if burst is not None else rate, tokens)
        keys = [self._prefix + key, self._slow_key(key)]
        wait = float(self._script(keys=keys, args=[rate, burst, tokens]))
        return max(0.0, wait)

    def slow_down(self, key: str, *, seconds: int = SLOW_DOWN_SECONDS) -> float:
        """The provider said 429: halve this sender's rate for ``seconds``; the new factor."""
        args = [SLOW_DOWN_FACTOR, SLOW_DOWN_FLOOR, seconds]
        return float(self._slow_down(keys=[self._slow_key(key)], args=args))

    def slowed(self, key: str) -> tuple[float, float] | None:
        """(factor, seconds left) while this sender is slowed down after 429s, else None."""
        with self._client.pipeline() as pipe:
            pipe.get(self._slow_key(key))
            pipe.ttl(self._slow_key(key))
            factor, ttl = pipe.execute()
        if factor is None:
            return None
        return float(factor), float(max(ttl, 0))

    def _slow_key(self, key: str) -> str:
        return f"{self._prefix}slow:{key}"

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
            pause = min(wait, 1.0)
            self._client.hincrbyfloat(WAIT_METRIC, key, pause)
            self._sleep(pause)
