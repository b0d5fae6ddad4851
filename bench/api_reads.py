"""The API's reads at a million members: member list and search, consent history, campaign status.

    .venv/bin/python bench/api_reads.py --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/api_reads.py --members 100000            # SQLite, smaller

Builds a huddle of ``--members`` SMS members inside the database (bench/_common.build_audience),
every one held by the huddle, one in ten with an email and a last name, two ledger rows each
(opt-in, and an opt-out for the 3% opted out), a second huddle of every tenth member, and a sent
campaign to everyone with a delivery per member in a spread of states. Then, in-process through
Flask's test client with an organizer's API token (the whole request: token check, scoping,
query, serialization), it times each request 40 times after a warm-up and prints p50 and p95.

Target (issue 18): p95 ≤ 150 ms at 1,000,000 members on PostgreSQL.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchInstance, build_audience, create_campaign, print_table, run_build

RUNS = 40
TARGET_MS = 150.0


def build(instance: BenchInstance, n: int) -> tuple[int, str]:
    """The data, and an organizer's token for huddle ``bench``; returns (campaign id, token)."""
    engine = instance.engine()
    huddle_id = build_audience(engine, n, slug="bench")
    from outreach.accounts import tokens, users
    from outreach.app.db import make_session_factory
    from outreach.people.huddles import create_huddle

    with make_session_factory(engine).begin() as session:
        other = create_huddle(session, slug="other", name="Other", keywords=["OTHER"]).id
        user = users.create_user(
            session,
            email="org@example.org",
            password="bench password 1",  # noqa: S106 - a throwaway schema's account
            huddles=["bench"],
        )
        token = tokens.issue(session, user, label="bench")
    campaign_id = create_campaign(engine, slug="bench")
    ts = (
        "'2026-01-05 12:00:00.000000'"
        if instance.backend == "sqlite"
        else "TIMESTAMPTZ '2026-01-05 12:00:00+00'"
    )
    states = (
        "CASE WHEN id % 20 = 0 THEN 'failed' WHEN id % 20 = 1 THEN 'skipped'"
        " WHEN id % 20 < 5 THEN 'sent' ELSE 'delivered' END"
    )
    run_build(
        engine,
        [
            "UPDATE members SET email = 'p' || id || '@example.org',"
            " last_name = 'Lee' || (id % 997) WHERE id % 10 = 0",
            "INSERT INTO huddle_members (huddle_id, member_id, source, created_at)"
            f" SELECT {huddle_id}, id, 'import', {ts} FROM members",
            "INSERT INTO huddle_members (huddle_id, member_id, source, created_at)"
            f" SELECT {other}, id, 'import', {ts} FROM members WHERE id % 10 = 3",
            "INSERT INTO consent_events (member_id, huddle_id, channel, address, action, source,"
            " detail, created_at)"
            f" SELECT id, {huddle_id}, 'sms', phone, 'opt_in', 'import', 'list.csv', {ts}"
            " FROM members",
            "INSERT INTO consent_events (member_id, huddle_id, channel, address, action, source,"
            " detail, created_at)"
            f" SELECT s.member_id, {huddle_id}, 'sms', m.phone, 'opt_out', 'keyword', 'STOP', {ts}"
            " FROM subscriptions s JOIN members m ON m.id = s.member_id"
            " WHERE s.state = 'opted_out'",
            "INSERT INTO deliveries (campaign_id, member_id, channel, address, state, skip_reason,"
            " error_code, attempts, lookups, sent_at, updated_at)"
            f" SELECT {campaign_id}, id, 'sms', phone, {states},"
            " CASE WHEN id % 20 = 1 THEN 'opted-out' END,"
            f" CASE WHEN id % 20 = 0 THEN '30003' END, 1, 0, {ts}, {ts} FROM members",
            f"UPDATE campaigns SET state = 'completed', audience_size = {n}"
            f" WHERE id = {campaign_id}",
        ],
        analyze=instance.backend == "postgresql",
        verbose=True,
    )
    engine.dispose()
    return campaign_id, token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", help="a PostgreSQL URL (a schema of its own is made)")
    parser.add_argument("--members", type=int, default=1_000_000)
    args = parser.parse_args()
    with BenchInstance(args.postgres) as instance:
        print(f"building {args.members:,} members on {instance.backend}…", flush=True)
        campaign_id, token = build(instance, args.members)
        from outreach.app.services import Services
        from web import create_app

        services = Services.build(instance.settings())
        app = create_app(services.settings, services)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        middle = args.members // 2
        phone = f"+1617{2000000 + middle}"
        cursor = _cursor(middle)
        requests = [
            ("member list, first page", "/huddles/bench/members?limit=50"),
            ("member list, a page halfway", f"/huddles/bench/members?limit=50&cursor={cursor}"),
            ("search: a common first name", "/huddles/bench/members?q=mar&limit=50"),
            ("search: a rare last name", "/huddles/bench/members?q=lee996&limit=50"),
            ("search: no one by that name", "/huddles/bench/members?q=zzz&limit=50"),
            ("search: a phone number", f"/huddles/bench/members?q={phone}"),
            ("search: an email", f"/huddles/bench/members?q=p{middle // 10 * 10}@example.org"),
            ("a member", f"/huddles/bench/members/{middle}"),
            ("consent history", f"/huddles/bench/members/{middle}/consent"),
            ("campaign status", f"/huddles/bench/campaigns/{campaign_id}/status"),
        ]
        rows = []
        for label, path in requests:
            url = "/api/v1" + path
            first = client.get(url, headers=headers)
            if first.status_code != 200:
                print(f"{label}: {first.status_code} {first.get_data(as_text=True)[:300]}")
                continue
            times = []
            for _ in range(RUNS):
                started = time.perf_counter()
                client.get(url, headers=headers)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            p95 = times[int(len(times) * 0.95) - 1]
            found = first.json.get("data") if isinstance(first.json, dict) else None
            rows.append(
                (
                    label,
                    f"{statistics.median(times):.1f}",
                    f"{p95:.1f}",
                    "-" if found is None else len(found),
                    "yes" if p95 <= TARGET_MS else "NO",
                )
            )
        services.close()
    print()
    print(f"{instance.backend}, {args.members:,} members, {RUNS} runs each, in-process:")
    print_table(["request", "p50 ms", "p95 ms", "items", "≤ 150 ms"], rows)


def _cursor(after: int) -> str:
    from web.api.core import encode_cursor

    return encode_cursor(after)


if __name__ == "__main__":
    main()
