"""The inbound classifier on its own: the corpus's verdicts and the time per text.

    .venv/bin/python bench/classify_texts.py                  # corpus counts + timings
    .venv/bin/python bench/classify_texts.py --rounds 20 --misses

Times ``classify`` over three sets, each text with the keywords of a number carrying three
huddles: the corpus's revocations, its ordinary replies, and a day of inbox chatter (short
replies drawn from the words organizers see). Prints the mean and the slowest text per set,
and the counts the README reports (revocations honoured, ordinary replies left alone) for the
public-source corpus and the blind set.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from outreach.sms.inbound.classify import Intent, classify

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "outreach" / "sms" / "corpus"
KEYWORDS = ("LOGAN", "PROVO", "BOSTON")  # as the corpus test reads it
OPT_OUT = {Intent.OPT_OUT, Intent.OPT_OUT_ALL}
CHATTER = (
    "yes I can make it see you there thanks what time is the rally on saturday can I bring my "
    "kids where do we park I will be a few minutes late love this count me in sorry I have work "
    "is there a zoom link who is driving great job everyone my address changed call me later"
)


def texts(name: str) -> list[str]:
    lines = (CORPUS / f"{name}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0] for line in lines if line.strip()]


def chatter(count: int) -> list[str]:
    rng = random.Random(7)
    return [" ".join(rng.choices(CHATTER.split(), k=rng.randint(1, 14))) for _ in range(count)]


def timed(bodies: list[str], rounds: int) -> tuple[float, float, str]:
    """Mean seconds per text over ``rounds``, and the slowest text's best time."""
    for body in bodies:
        classify(body, KEYWORDS)
    started = time.perf_counter()
    for _ in range(rounds):
        for body in bodies:
            classify(body, KEYWORDS)
    mean = (time.perf_counter() - started) / (rounds * len(bodies))
    slowest, worst = 0.0, ""
    for body in bodies:
        best = min(_once(body) for _ in range(3))
        if best > slowest:
            slowest, worst = best, body
    return mean, slowest, worst


def _once(body: str) -> float:
    started = time.perf_counter()
    classify(body, KEYWORDS)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--misses", action="store_true", help="list the texts classified wrong")
    args = parser.parse_args()

    revocations, replies = texts("revocations"), texts("replies")
    for label, (revoking, replying) in (
        ("public-source corpus", (revocations, replies)),
        ("blind set", (texts("blind/revocations"), texts("blind/replies"))),
    ):
        honoured = [body for body in revoking if classify(body, KEYWORDS).intent in OPT_OUT]
        left_alone = [body for body in replying if classify(body, KEYWORDS).intent not in OPT_OUT]
        print(
            f"{label}: revocations honoured: {len(honoured)} / {len(revoking)}; "
            f"ordinary replies left alone: {len(left_alone)} / {len(replying)}"
        )
        if args.misses:
            for body in sorted(set(revoking) - set(honoured)):
                print(f"  missed revocation: {body}")
            for body in sorted(set(replying) - set(left_alone)):
                print(f"  reply opted out: {body}")
    print(f"{'set':<14}{'texts':>7}{'mean µs':>10}{'slowest µs':>12}  slowest text")
    for name, bodies in (
        ("revocations", revocations),
        ("replies", replies),
        ("chatter", chatter(2000)),
    ):
        mean, slowest, worst = timed(bodies, args.rounds)
        print(f"{name:<14}{len(bodies):>7}{mean * 1e6:>10.1f}{slowest * 1e6:>12.1f}  {worst[:60]}")


if __name__ == "__main__":
    main()
