"""Does the shared Redis token bucket hold its rate with two workers? (60 s, or 10 s --quick.)

    .venv/bin/python bench/campaign_ratelimit.py              # 60 s at 20 segments/s
    .venv/bin/python bench/campaign_ratelimit.py --quick      # 10 s
    .venv/bin/python bench/campaign_ratelimit.py --rate 50 --seconds 30 --processes 3

Two processes (each its own Redis connection, as two worker machines would have) call
``outreach.campaigns.ratelimit.RateLimiter.take`` in a loop on the same sender key, each
asking for 1 or 2 segments at random (70% / 30%: one- and two-segment texts mixed), against an
embedded Redis of our own. Each records when every take returned and for how many segments.
Afterwards:

- achieved rate over the run, counted from the first take to the end, with and without the
  initial burst (the bucket starts full: ``burst`` = one second of the rate);
- segments taken in each whole second (min, max, the share of seconds within ±5% and ±10%),
- each process's share (both must get some: no starvation).

Target: the achieved rate within ±5% of the configured rate over 60 s.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PYTHON,
    BenchInstance,
    Children,
    child_env,
    install_signal_handlers,
    print_table,
)

KEY = "+16175550100"


def child_taker(redis_url: str, rate: float, seconds: float, seed: int) -> None:
    """Say "ready", read the start time, take 1 or 2 tokens in a loop until start + seconds."""
    import redis

    from outreach.campaigns.ratelimit import RateLimiter

    client = redis.Redis.from_url(redis_url)
    client.ping()
    limiter = RateLimiter(client)
    rng = random.Random(seed)
    takes: list[tuple[float, int]] = []
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    while True:
        tokens = 1 if rng.random() < 0.7 else 2
        # The bounded loop: give up (taking nothing) once the run is over.
        ok = limiter.take(KEY, tokens, rate=rate, should_stop=lambda: time.time() >= end)
        now = time.time()
        if not ok or now >= end:
            break
        takes.append((now, tokens))
    client.close()
    print(json.dumps({"takes": takes}), flush=True)


def analyse(
    takes: list[tuple[float, int, int]], rate: float, start: float, seconds: float
) -> dict[str, Any]:
    total = sum(t for _, t, _ in takes)
    burst = rate  # RateLimiter's default: one second's worth, full at the start
    per_second: Counter[int] = Counter()
    for at, tokens, _ in takes:
        second = int(at - start)
        if 0 <= second < int(seconds):
            per_second[second] += tokens
    counts = [per_second.get(s, 0) for s in range(int(seconds))]
    steady = counts[1:]  # the first second includes the initial burst
    by_process: Counter[int] = Counter()
    for _, tokens, process in takes:
        by_process[process] += tokens

    def within(values: list[int], tolerance: float) -> float:
        ok = sum(1 for v in values if abs(v - rate) <= rate * tolerance)
        return ok / max(len(values), 1)

    return {
        "total": total,
        "achieved": total / seconds,
        "achieved_after_burst": (total - burst) / seconds,
        "min_second": min(steady) if steady else 0,
        "max_second": max(steady) if steady else 0,
        "within_5": within(steady, 0.05),
        "within_10": within(steady, 0.10),
        "by_process": dict(sorted(by_process.items())),
        "counts": counts,
        "first_take": takes[0][0] - start if takes else None,
    }


def run(children: Children, rate: float, seconds: float, processes: int) -> dict[str, Any]:
    with BenchInstance(None) as instance:
        procs = [
            children.start(
                [PYTHON, __file__, "--child", instance.redis_url, str(rate), str(seconds), str(i)],
                env=child_env({}),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for i in range(processes)
        ]
        for proc in procs:  # every process imported and connected before the clock starts
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a taker did not start")
        start_at = time.time() + 0.5
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start_at}\n")
            proc.stdin.flush()
        takes: list[tuple[float, int, int]] = []
        for index, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=seconds + 60)
            if proc.returncode != 0:
                raise RuntimeError(f"taker {index} failed ({proc.returncode})")
            data = json.loads(out.strip().splitlines()[-1])
            takes.extend((at, tokens, index) for at, tokens in data["takes"])
    takes.sort()
    return analyse(takes, rate, start_at, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="segments per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="10 s instead of 60 s")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, rate, seconds, seed = args.child
        child_taker(url, float(rate), float(seconds), int(seed))
        return
    install_signal_handlers()
    seconds = 10.0 if args.quick else args.seconds
    children = Children()
    try:
        result = run(children, args.rate, seconds, args.processes)
    finally:
        children.stop_all()
    deviation = result["achieved"] / args.rate - 1
    deviation_steady = result["achieved_after_burst"] / args.rate - 1
    print(
        f"\n## Rate limiter: {args.processes} processes, one sender key, "
        f"{args.rate:g} segments/s, {seconds:g} s, 1- and 2-segment takes mixed\n"
    )
    print(
        "(The bucket starts full, one second of the rate: over a short run that burst alone is "
        f"+{1 / seconds:.0%} of the total.)\n"
    )
    print_table(
        [
            "configured /s",
            "seconds",
            "segments taken",
            "achieved /s",
            "deviation",
            "achieved /s without the initial burst",
            "deviation",
            "per-second min–max (s ≥ 1)",
            "seconds within ±5% / ±10%",
            "segments per process",
            "±5%, whole run",
            "±5%, after the burst",
        ],
        [
            [
                f"{args.rate:g}",
                f"{seconds:g}",
                f"{result['total']:,}",
                f"{result['achieved']:.2f}",
                f"{deviation:+.1%}",
                f"{result['achieved_after_burst']:.2f}",
                f"{deviation_steady:+.1%}",
                f"{result['min_second']}–{result['max_second']}",
                f"{result['within_5']:.0%} / {result['within_10']:.0%}",
                " / ".join(str(v) for v in result["by_process"].values()),
                "pass" if abs(deviation) <= 0.05 else "FAIL",
                "pass" if abs(deviation_steady) <= 0.05 else "FAIL",
            ]
        ],
    )


if __name__ == "__main__":
    main()
