"""The token bucket, against the real Redis, shared by two worker processes."""

from __future__ import annotations

import subprocess
import sys
import time

import redis

from outreach.campaigns.ratelimit import WAIT_METRIC, RateLimiter


def test_bucket_gives_its_burst_then_asks_to_wait(redis_client: redis.Redis) -> None:
    # A slow refill (one token in 100 s) keeps the test exact however slow the machine is.
    limiter = RateLimiter(redis_client)
    taken = sum(1 for _ in range(30) if limiter.try_take("sender", 1, rate=0.01, burst=10) == 0)
    assert taken == 10
    wait = limiter.try_take("sender", 1, rate=0.01, burst=10)
    assert 99 <= wait <= 100


def test_segments_are_charged_and_a_big_message_waits_for_enough_tokens(
    redis_client: redis.Redis,
) -> None:
    limiter = RateLimiter(redis_client)
    assert limiter.try_take("s", 3, rate=0.04, burst=4) == 0  # 4 tokens, take 3
    wait = limiter.try_take("s", 3, rate=0.04, burst=4)  # 1 left, need 3: 2 tokens at 0.04/s
    assert 49 <= wait <= 50


def test_senders_have_separate_buckets_and_zero_means_unlimited(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client)
    assert limiter.try_take("a", 1, rate=1) == 0
    assert limiter.try_take("a", 1, rate=1) > 0
    assert limiter.try_take("b", 1, rate=1) == 0
    assert all(limiter.try_take("c", 5, rate=0) == 0 for _ in range(100))


def test_take_gives_up_when_told_to_stop(redis_client: redis.Redis) -> None:
    slept: list[float] = []
    limiter = RateLimiter(redis_client, sleep=slept.append)
    assert limiter.take("x", 1, rate=1) is True
    assert limiter.take("x", 1, rate=1, should_stop=lambda: True) is False
    assert slept == []


TAKER = """
import sys, time, redis
from outreach.campaigns.ratelimit import WAIT_METRIC, RateLimiter
url, seconds = sys.argv[1], float(sys.argv[2])
limiter = RateLimiter(redis.Redis.from_url(url))
deadline = time.monotonic() + seconds
n = 0
while time.monotonic() < deadline:
    segments = 1 + n % 2
    if limiter.take("shared", segments, rate=20, should_stop=lambda: time.monotonic() >= deadline):
        n += segments
print(n)
"""


def test_two_processes_together_keep_to_the_rate(redis_url: str, redis_client: redis.Redis) -> None:
    seconds = 3.0
    start = time.monotonic()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", TAKER, redis_url, str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    counts = [int(w.communicate(timeout=30)[0]) for w in workers]
    elapsed = time.monotonic() - start
    total = sum(counts)
    # The bucket starts full (20) and refills at 20/s: never more than that, whoever asks.
    assert total <= 20 + 20 * elapsed
    assert total >= 20 * seconds * 0.8
    assert min(counts) > 0  # both workers got a share


def test_a_429_halves_the_senders_rate_for_a_while_and_each_one_halves_it_again(
    redis_client: redis.Redis,
) -> None:
    limiter = RateLimiter(redis_client)
    assert limiter.slowed("s") is None
    assert limiter.try_take("s", 1, rate=0.02, burst=1) == 0
    assert 49 <= limiter.try_take("s", 1, rate=0.02, burst=1) <= 50  # 1 token at 0.02/s
    assert limiter.slow_down("s", seconds=60) == 0.5
    assert 99 <= limiter.try_take("s", 1, rate=0.02, burst=1) <= 100  # now at 0.01/s
    assert limiter.slow_down("s", seconds=60) == 0.25
    slowed = limiter.slowed("s")
    assert slowed is not None
    assert slowed[0] == 0.25
    assert 0 < slowed[1] <= 60
    for _ in range(10):
        limiter.slow_down("s")
    assert limiter.slowed("s") == (1 / 16, 60.0)  # a floor: a sender never stops entirely
    assert limiter.slowed("other") is None


def test_waits_are_added_up_per_sender_for_the_metrics(redis_client: redis.Redis) -> None:
    slept: list[float] = []
    limiter = RateLimiter(redis_client, sleep=slept.append)
    assert limiter.take("w", 1, rate=0.01) is True
    stops = iter([False, False, True])
    assert limiter.take("w", 1, rate=0.01, should_stop=lambda: next(stops)) is False
    assert slept == [1.0, 1.0]
    assert float(redis_client.hget(WAIT_METRIC, "w") or 0) == 2.0
