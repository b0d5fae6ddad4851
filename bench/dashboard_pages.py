"""Every dashboard page at a million members and a million-delivery campaign.

    .venv/bin/python bench/dashboard_pages.py --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/dashboard_pages.py --members 100000            # SQLite, smaller

The data of bench/api_reads.py (a huddle of ``--members`` SMS members, a sent campaign with a
delivery each), plus 1% tagged ``volunteer``, 20,000 inbound replies (one in fifty flagged) and
a saved segment. An admin signs in through the sign-in form of Flask's test client; then every
GET page of the dashboard found in the URL map (ids filled with a member, the campaign, the
latest import) and the live fragments are requested 30 times after a warm-up. Prints p50, p95.

Targets (issue 19): every page p95 ≤ 300 ms; the live audience count ≤ 300 ms for selective
filters.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchInstance, print_table, run_build
from api_reads import build as build_reads

RUNS = 30
TARGET_MS = 300.0
INBOUND = 20_000
PASSWORD = "bench password 1"  # noqa: S105 - a throwaway schema's account
SELECTIVE = ["tag:volunteer zip:021*", "tag:volunteer first_name:Maria"]
BROAD = [""]


def build(instance: BenchInstance, n: int) -> int:
    campaign_id, _token = build_reads(instance, n)
    engine = instance.engine()
    from outreach.accounts import users
    from outreach.app.db import make_session_factory
    from outreach.models import Segment
    from outreach.people.huddles import get_huddle

    with make_session_factory(engine).begin() as session:
        users.create_user(session, email="admin@example.org", password=PASSWORD, admin=True)
        huddle = get_huddle(session, "bench")
        huddle_id = huddle.id
        session.add(Segment(huddle_id=huddle_id, name="volunteers", filter="tag:volunteer"))
    ts = (
        "'2026-01-06 12:00:00.000000'"
        if instance.backend == "sqlite"
        else "TIMESTAMPTZ '2026-01-06 12:00:00+00'"
    )
    run_build(
        engine,
        [
            "INSERT INTO member_tags (huddle_id, member_id, tag)"
            f" SELECT {huddle_id}, id, 'volunteer' FROM members WHERE id % 100 = 7",
            "INSERT INTO inbound_messages (message_sid, from_raw, from_e164, to_number, body,"
            " member_id, huddle_id, intent, flagged, handled, received_at)"
            " SELECT 'SMbench' || id, phone, phone, '+16175550100', 'Count me in for Saturday',"
            f" id, {huddle_id}, 'message', id % 50 = 0, id % 3 = 0, {ts}"
            f" FROM members WHERE id % {max(1, n // INBOUND)} = 0",
        ],
        analyze=instance.backend == "postgresql",
        verbose=True,
    )
    engine.dispose()
    return campaign_id


def sign_in(client, email: str) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, page
    form = {"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/login", data=form).status_code == 302


def pages(app, ids: dict[str, int]) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(label, path) of every GET page of the dashboard whose parameters we can fill."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/h/") or "GET" not in (rule.methods or ()):
            continue
        if any(arg not in ids for arg in rule.arguments):
            print(f"  not measured (no value for {sorted(rule.arguments - ids.keys())}): {rule}")
            continue
        path = rule.rule
        for arg in rule.arguments:
            path = re.sub(rf"<(?:[a-z]+:)?{arg}>", str(ids[arg]), path)
        found.append((rule.endpoint, path))
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", help="a PostgreSQL URL (a schema of its own is made)")
    parser.add_argument("--members", type=int, default=1_000_000)
    args = parser.parse_args()
    with BenchInstance(args.postgres) as instance:
        print(f"building {args.members:,} members on {instance.backend}…", flush=True)
        campaign_id = build(instance, args.members)
        from outreach.app.services import Services
        from web import create_app

        services = Services.build(instance.settings())
        app = create_app(services.settings, services)
        client = app.test_client()
        sign_in(client, "admin@example.org")
        middle = args.members // 2 + 50  # a member with an inbound reply
        ids = {"slug": "bench", "member_id": middle, "campaign_id": campaign_id}
        requests = [("home", "/"), *pages(app, ids)]
        requests += [
            ("members: search a name", "/h/bench/members/?q=mar"),
            ("members: search a phone", f"/h/bench/members/?q=%2B1617{2000000 + middle}"),
            (
                "members: filter by segment",
                "/h/bench/members/?" + urlencode({"segment": SELECTIVE[0]}),
            ),
        ]
        for definition in SELECTIVE + BROAD:
            for endpoint in ("audience", "preview"):
                query = urlencode({"definition": definition, "channel": "sms"})
                label = f"segments.{endpoint}: {definition or '(everyone)'}"
                requests.append((label, f"/h/bench/segments/{endpoint}?{query}"))
        rows = []
        for label, path in requests:
            first = client.get(path)
            if first.status_code != 200:
                rows.append((label, "-", "-", str(first.status_code), "?"))
                continue
            times = []
            for _ in range(RUNS):
                started = time.perf_counter()
                client.get(path)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            p95 = times[int(len(times) * 0.95) - 1]
            rows.append(
                (
                    label,
                    f"{statistics.median(times):.1f}",
                    f"{p95:.1f}",
                    "200",
                    "yes" if p95 <= TARGET_MS else "NO",
                )
            )
        services.close()
    print()
    print(
        f"{instance.backend}, {args.members:,} members, {RUNS} runs each, in-process, as an admin:"
    )
    print_table(["page", "p50 ms", "p95 ms", "status", "≤ 300 ms"], rows)


if __name__ == "__main__":
    main()
