"""Email send throughput through the SendGrid adapter, and a worker's memory over a big campaign.

    .venv/bin/python bench/email_send.py                          # SQLite: everything below
    .venv/bin/python bench/email_send.py --memory-size 0          # throughput only
    .venv/bin/python bench/email_send.py --breakdown              # + a batched job, part by part
    .venv/bin/python bench/email_send.py --postgres postgresql://postgres@127.0.0.1:5432/test

FakeSendGrid (tests/fakes, ``record=False``) runs in a process of its own, so it never shares the
bench's GIL; every request goes through the official ``sendgrid`` SDK over loopback.

1. **Batched**: an email campaign with no per-recipient merge field (only ``{{ huddle_name }}``
   and the unsubscribe link, a SendGrid substitution), ``--batched`` members (3% opted out, 0.5%
   suppressed: skipped at launch). ``workers.jobs.launch_campaign`` snapshots and enqueues it;
   then this process takes the jobs off the send queue and runs ``workers.jobs.send_batch`` for
   each, with ``workers.context.install(services)``, ``EMAIL_BACKEND=sendgrid`` and
   ``SENDGRID_API_HOST`` the fake. Recipients/s over the send phase only.
2. **Per recipient**: the same letter starting ``Hi {{ first_name }}``, ``--personal`` members:
   one request per recipient, ``SEND_CONCURRENCY`` (16) in flight.
3. **Plain SDK loops**, the ceilings: ``SendGridAPIClient(...).client.mail.send.post`` with a
   prebuilt body of 1,000 personalizations and of 500 (what one send job holds: jobs are id ranges
   of 500 deliveries, fanout.BATCH_SIZE), one request at a time as the batched sender does; and
   with one-recipient bodies from 16 threads, as the per-recipient sender does.
4. **Memory**: a ``--memory-size`` (1,000,000) batched campaign, built and launched by one child
   process, sent by a fresh worker process (``workers.main.run_worker(burst=True)``, the
   production worker: RQ SimpleWorker, jobs in-process). Its RSS is read from /proc every second:
   the peak (VmHWM) and the RSS when 10%, 50%, 90% and 100% of the send jobs were taken. A run
   longer than ``--memory-timeout`` is stopped and what it measured is extrapolated.

Targets (the issue): ≥ 5,000 recipients/s per worker on the batched path; worker memory under
150 MiB and flat over a 1,000,000-recipient campaign.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import pstats
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PYTHON,
    BenchInstance,
    Children,
    child_env,
    fmt_int,
    install_signal_handlers,
    print_table,
)
from email_common import (
    API_KEY,
    BATCH_SLUG,
    NEWSLETTER,
    PERSONAL,
    PERSONAL_SLUG,
    FakeSendGridProcess,
    build_email_audience,
    create_email_campaign,
    deliveries_by_state,
    rss_kib,
    sendgrid_env,
    serve_fake,
)

BUILD_TIMEOUT = 1800.0  # seconds the builder child may take (1M: about a minute)
PROFILE_JOBS = 10  # send jobs (of 500) under cProfile
MILESTONES = (0.10, 0.50, 0.90, 1.00)


# --------------------------------------------------------------------------------------------
# Throughput, in this process
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    path: str
    recipients: int
    requests: int
    concurrency: int
    seconds: float
    bench_cpu: float
    fake_cpu: float
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.recipients / self.seconds if self.seconds else 0.0


def _take_jobs(svc: Any) -> list[tuple[int, int, int]]:
    """The send jobs launch_campaign enqueued, as send_batch arguments; the queue is emptied."""
    from rq import Queue
    from rq.job import Job

    from workers.queues import SEND_QUEUE

    queue = Queue(SEND_QUEUE, connection=svc.redis)
    found = Job.fetch_many(queue.get_job_ids(), connection=svc.redis)
    queue.empty()
    return [tuple(job.args) for job in found if job is not None]  # type: ignore[misc]


def run_campaign(
    label: str, svc: Any, campaign_id: int, fake: FakeSendGridProcess, concurrency: int
) -> Row:
    """Launch ``campaign_id`` and send every batch in this process; time the send phase."""
    from workers import jobs

    started = time.perf_counter()
    jobs.launch_campaign(campaign_id)
    launch_s = time.perf_counter() - started
    batches = _take_jobs(svc)
    before = fake.stats()
    cpu = time.process_time()
    started = time.perf_counter()
    totals: Counter[str] = Counter()
    for args in batches:
        totals.update(jobs.send_batch(*args))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    after = fake.stats()
    states = deliveries_by_state(svc.engine, campaign_id)
    fake_sent = after["sent"] - before["sent"]
    requests = after["requests"] - before["requests"]
    if totals["sent"] != fake_sent or states.get("sent", 0) != totals["sent"]:
        raise RuntimeError(f"{label}: sent {dict(totals)}, fake got {fake_sent}, rows {states}")
    print(
        f"    {label}: launch {launch_s:.1f} s, {len(batches)} jobs, {dict(totals)}, rows {states}",
        flush=True,
    )
    return Row(
        path=label,
        recipients=totals["sent"],
        requests=requests,
        concurrency=concurrency,
        seconds=seconds,
        bench_cpu=cpu,
        fake_cpu=after["cpu_s"] - before["cpu_s"],
        notes=f"{len(batches)} jobs; skipped at launch: {states.get('skipped', 0)}",
    )


def sdk_bodies(svc: Any, batched_id: int, personal_id: int) -> dict[str, dict[str, Any]]:
    """Request bodies shaped exactly like ours (our mail_body): 1,000, 500 and 1 recipient(s)."""
    from outreach.consent import unsubscribe
    from outreach.email import render as email_render
    from outreach.messages import templating
    from outreach.models import Campaign, Huddle
    from outreach.providers.email import EmailRecipient, OutboundEmail
    from outreach.providers.sendgrid.client import mail_body

    settings = svc.settings

    def recipient(campaign: Any, huddle: Any, i: int) -> EmailRecipient:
        token = unsubscribe.make_token(settings, i, huddle.id, "email")
        url = unsubscribe.unsubscribe_url(settings, token)
        return EmailRecipient(
            to=f"member{i}@example.org",
            reference=f"delivery:{i}",
            custom_args={"campaign_id": str(campaign.id)},
            headers={
                "List-Unsubscribe": (
                    f"<{url}>, <mailto:unsubscribe@example.org?subject=unsubscribe-{token}>"
                ),
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            substitutions={email_render.UNSUBSCRIBE_SUBSTITUTION: url},
        )

    bodies = {}
    with svc.sessions() as session:
        for key, campaign_id, sizes in (
            ("batched", batched_id, (1000, 500)),
            ("personal", personal_id, (1,)),
        ):
            campaign = session.get_one(Campaign, campaign_id)
            huddle = session.get_one(Huddle, campaign.huddle_id)
            prepared = email_render.prepare(campaign, huddle)
            for size in sizes:
                people = [recipient(campaign, huddle, i) for i in range(1, size + 1)]
                unsub = people[0].substitutions[email_render.UNSUBSCRIBE_SUBSTITUTION]
                merge = templating.MergeContext(
                    "Maria" if size == 1 else None,
                    None,
                    "02128" if size == 1 else None,
                    huddle.name,
                    {},
                    unsub if size == 1 else email_render.UNSUBSCRIBE_SUBSTITUTION,
                )
                email = OutboundEmail(
                    from_email=huddle.email_from_address or "",
                    from_name=huddle.name,
                    subject=prepared.subject.render(merge),
                    html=prepared.html.render_html(merge),
                    text=prepared.text.render(merge),
                    recipients=people,
                    categories=[f"campaign-{campaign.id}", f"huddle-{huddle.slug}"],
                )
                bodies[f"{key}-{size}"] = mail_body(email)
    return bodies


def sdk_loop(
    label: str, fake: FakeSendGridProcess, body: dict[str, Any], requests: int, threads: int
) -> Row:
    """The plain SDK: one client, ``requests`` posts of a prebuilt body, ``threads`` at a time."""
    from sendgrid import SendGridAPIClient

    sg = SendGridAPIClient(API_KEY, host=fake.url)
    sg.client.timeout = 15

    def post(_: int) -> int:
        return int(sg.client.mail.send.post(request_body=body).status_code)

    before = fake.stats()
    cpu = time.process_time()
    started = time.perf_counter()
    if threads == 1:
        statuses = [post(i) for i in range(requests)]
    else:
        with ThreadPoolExecutor(threads) as pool:
            statuses = list(pool.map(post, range(requests)))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    after = fake.stats()
    if set(statuses) != {202}:
        raise RuntimeError(f"{label}: statuses {Counter(statuses)}")
    size = len(body["personalizations"])
    payload = len(json.dumps(body))
    return Row(
        path=label,
        recipients=size * requests,
        requests=requests,
        concurrency=threads,
        seconds=seconds,
        bench_cpu=cpu,
        fake_cpu=after["cpu_s"] - before["cpu_s"],
        notes=f"{payload / 1024:,.0f} KiB per request",
    )


class Timers:
    """Wall and CPU time per wrapped function, summed; ``undo()`` puts the originals back."""

    def __init__(self) -> None:
        self.wall: Counter[str] = Counter()
        self.cpu: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.order: list[str] = []
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)  # a renamed step fails here, not silently
        wall, cpu, calls = self.wall, self.cpu, self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            w, c = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                wall[label] += time.perf_counter() - w
                cpu[label] += time.thread_time() - c
                calls[label] += 1

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))
        self.order.append(label)

    def undo(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def breakdown_jobs(
    svc: Any, campaign_id: int, fake: FakeSendGridProcess, jobs_to_run: int, *, profile: bool
) -> list[list[str]]:
    """Time the parts of ``jobs_to_run`` batched send jobs; with ``profile``, cProfile them too.

    The parts are the sender's own steps, wrapped in place for the run (no profiler overhead in
    these figures); indented rows are inside the row above them.
    """
    from outreach.campaigns import claims, email_sender
    from outreach.consent import unsubscribe
    from outreach.providers.sendgrid import client as sendgrid_client
    from workers import jobs

    jobs.launch_campaign(campaign_id)
    batches = _take_jobs(svc)[:jobs_to_run]
    timers = Timers()
    timers.wrap(jobs, "send_batch", "send_batch (whole job)")
    timers.wrap(email_sender, "claimed_groups", "claims (SELECT + UPDATE … RETURNING)")
    timers.wrap(claims, "campaign_state", "  campaign state checks")
    timers.wrap(claims, "_maybe_complete", "  completion check")
    timers.wrap(email_sender, "blocked_deliveries", "consent/suppression re-check")
    timers.wrap(email_sender, "_letters", "build the request (recipients, render)")
    timers.wrap(email_sender, "_recipient", "  recipients (link, headers)")
    timers.wrap(unsubscribe, "make_token", "    unsubscribe.make_token")
    timers.wrap(email_sender, "_send", "send")
    timers.wrap(sendgrid_client, "mail_body", "  mail_body (dict)")
    timers.wrap(email_sender, "_store", "store results")
    before = fake.stats()
    profiler = cProfile.Profile() if profile else None
    try:
        if profiler is not None:
            profiler.enable()
        for args in batches:
            jobs.send_batch(*args)
    finally:
        if profiler is not None:
            profiler.disable()
        timers.undo()
    fake_cpu = fake.stats()["cpu_s"] - before["cpu_s"]
    if profiler is not None:
        print(f"\n### cProfile of {len(batches)} batched jobs (with the timers above)\n")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    n = len(batches) or 1
    whole = timers.wall["send_batch (whole job)"] or 1.0
    rows = [
        [label, fmt_int(timers.calls[label]), f"{timers.wall[label] * 1000 / n:.1f}",
         f"{timers.cpu[label] * 1000 / n:.1f}", f"{timers.wall[label] / whole:.0%}"]
        for label in timers.order
    ]  # fmt: skip
    rows.append(["  (the fake's CPU, other process)", "", "", f"{fake_cpu * 1000 / n:.1f}", ""])
    return rows


def throughput(args: argparse.Namespace, fake: FakeSendGridProcess) -> tuple[list[Row], Any]:
    from outreach.app.services import Services
    from workers import context, jobs

    rows: list[Row] = []
    breakdown = None
    with BenchInstance(args.postgres) as instance:
        print(f"\n== throughput, {instance.backend}: {args.batched:,} members", flush=True)
        engine = instance.engine()
        build_email_audience(engine, args.batched, personal_n=args.personal)
        batched_ids = [
            create_email_campaign(engine, slug=BATCH_SLUG, body=NEWSLETTER)
            for _ in range(args.repeat)
        ]
        personal_id = create_email_campaign(engine, slug=PERSONAL_SLUG, body=PERSONAL)
        profiled_id = create_email_campaign(engine, slug=BATCH_SLUG, body=NEWSLETTER)
        engine.dispose()
        svc = Services.build(instance.settings(**sendgrid_env(fake.url)))
        context.install(svc)
        jobs._send_context = None
        concurrency = svc.settings.send_concurrency
        try:
            runs = [run_campaign("batched (ours)", svc, i, fake, 1) for i in batched_ids]
            runs.sort(key=lambda r: r.rate)
            median = runs[len(runs) // 2]
            if len(runs) > 1:
                median.path = f"batched (ours), median of {len(runs)}"
                median.notes += f"; runs {', '.join(fmt_int(r.rate) for r in runs)}/s"
            rows.append(median)
            rows.append(run_campaign("per-recipient (ours)", svc, personal_id, fake, concurrency))
            bodies = sdk_bodies(svc, batched_ids[0], personal_id)
            per_job = max(10, args.batched // 1000)
            rows.append(
                sdk_loop("plain SDK, 1,000/request", fake, bodies["batched-1000"], per_job, 1)
            )
            rows.append(
                sdk_loop("plain SDK, 500/request", fake, bodies["batched-500"], per_job * 2, 1)
            )
            rows.append(
                sdk_loop(
                    "plain SDK, 1/request", fake, bodies["personal-1"], args.personal, concurrency
                )
            )
            if args.breakdown or args.profile:
                breakdown = breakdown_jobs(
                    svc, profiled_id, fake, PROFILE_JOBS, profile=args.profile
                )
        finally:
            ctx = jobs._send_context
            if ctx is not None and ctx._pool is not None:
                ctx._pool.shutdown(wait=True)
            jobs._send_context = None
            context.install(None)
            svc.close()
    return rows, breakdown


# --------------------------------------------------------------------------------------------
# Memory: a builder child, then a fresh worker child
# --------------------------------------------------------------------------------------------


def _rss_mib() -> float:
    return rss_kib_self()[0] / 1024


def rss_kib_self() -> tuple[int, int]:
    import os

    return rss_kib(os.getpid())


def child_build(size: int) -> None:
    """Build ``size`` members and a batched campaign, launch it (snapshot + enqueue)."""
    from rq import Queue

    from outreach.app.services import Services
    from outreach.app.settings import Settings
    from workers import context, jobs
    from workers.queues import SEND_QUEUE

    settings = Settings.from_env(dotenv=False)
    svc = Services.build(settings)
    context.install(svc)
    started = time.perf_counter()
    build_email_audience(svc.engine, size, verbose=False)
    campaign_id = create_email_campaign(svc.engine, slug=BATCH_SLUG, body=NEWSLETTER)
    built = time.perf_counter()
    jobs.launch_campaign(campaign_id)
    launched = time.perf_counter()
    states = deliveries_by_state(svc.engine, campaign_id)
    batches = Queue(SEND_QUEUE, connection=svc.redis).count
    svc.close()
    print(
        json.dumps(
            {
                "campaign_id": campaign_id,
                "batches": batches,
                "states": states,
                "build_s": built - started,
                "launch_s": launched - built,
            }
        ),
        flush=True,
    )


def child_worker() -> None:
    """The worker: the production entry point, in burst mode (stops when the queues are empty)."""
    logging.basicConfig(level=logging.WARNING)
    from workers import context
    from workers.main import run_worker

    context.services()  # what a worker holds before its first job: settings, engine, Redis
    print(json.dumps({"ready_rss_mib": _rss_mib()}), flush=True)
    started = time.perf_counter()
    run_worker(burst=True)
    print(
        json.dumps(
            {
                "work_s": time.perf_counter() - started,
                # VmHWM, not getrusage's ru_maxrss: Linux carries the spawning process's peak
                # across exec into ru_maxrss (this bench's own ~170 MiB after the throughput
                # runs), so it overstates a fresh child; VmHWM is this process's own.
                "hwm_mib": rss_kib_self()[1] / 1024,
                "cpu_s": time.process_time(),
            }
        ),
        flush=True,
    )


@dataclass
class Sample:
    t: float
    rss_kib: int
    hwm_kib: int
    done: float  # share of send jobs taken off the queue


def memory_run(
    args: argparse.Namespace, children: Children, fake: FakeSendGridProcess
) -> dict[str, Any]:
    import redis
    from rq import Queue

    from workers.queues import SEND_QUEUE

    size = args.memory_size
    with BenchInstance(args.postgres) as instance:
        print(f"\n== memory on {instance.backend}: {size:,} members (builder child)", flush=True)
        env = child_env(instance.env(**sendgrid_env(fake.url)))
        built = children.run_json(
            [PYTHON, __file__, "--child-build", str(size)], env=env, timeout=BUILD_TIMEOUT
        )
        print(f"    {json.dumps(built)}", flush=True)
        total_jobs = int(built["batches"])
        queued = int(built["states"].get("queued", 0))
        client = redis.Redis.from_url(instance.redis_url)
        queue = Queue(SEND_QUEUE, connection=client)
        before = fake.stats()
        fake_rss_start = rss_kib(fake.pid)[0]
        out_path, err_path = instance.tmp / "worker.out", instance.tmp / "worker.err"
        samples: list[Sample] = []
        with out_path.open("w") as out, err_path.open("w") as err:
            started = time.perf_counter()
            proc = children.start(
                [PYTHON, __file__, "--child-worker"], env=env, stdout=out, stderr=err
            )
            timed_out = False
            try:
                tick = started
                while proc.poll() is None:
                    now = time.perf_counter()
                    if now - started > args.memory_timeout:
                        timed_out = True
                        break
                    rss, hwm = rss_kib(proc.pid)
                    left = queue.count
                    if rss:
                        if samples and hwm - samples[-1].hwm_kib > 2048:
                            print(
                                f"    {now - started:5.0f} s  peak RSS rose "
                                f"{samples[-1].hwm_kib / 1024:.1f} → {hwm / 1024:.1f} MiB "
                                f"within the last second (RSS now {rss / 1024:.1f} MiB)",
                                flush=True,
                            )
                        samples.append(
                            Sample(now - started, rss, hwm, (total_jobs - left) / total_jobs)
                        )
                    if samples and int(samples[-1].t) % 30 == 0 and samples[-1].t >= 1:
                        s = samples[-1]
                        print(
                            f"    {s.t:5.0f} s  RSS {s.rss_kib / 1024:6.1f} MiB  "
                            f"jobs taken {s.done:6.1%}",
                            flush=True,
                        )
                    tick += 1.0
                    time.sleep(max(0.0, tick - time.perf_counter()))
            finally:
                children.stop(proc, timeout=30)
            wall = time.perf_counter() - started
        after = fake.stats()
        fake_rss_end = rss_kib(fake.pid)[0]
        client.close()
        lines = [json.loads(x) for x in out_path.read_text().splitlines() if x.startswith("{")]
        noted = [
            line
            for line in err_path.read_text(errors="replace").splitlines()
            if "WARNING" in line or "ERROR" in line or "Traceback" in line
        ]
        if noted:
            print(f"    worker log: {len(noted)} warnings/errors, last: {noted[-3:]}", flush=True)
        report: dict[str, Any] = {}
        for line in lines:
            report.update(line)
        if not timed_out and proc.returncode != 0:
            tail = err_path.read_text()[-4000:]
            raise RuntimeError(f"worker failed ({proc.returncode}):\n{tail}")
        engine = instance.engine()
        states = deliveries_by_state(engine, int(built["campaign_id"]))
        engine.dispose()
    sent = states.get("sent", 0)
    fake_sent = after["sent"] - before["sent"]
    return {
        "size": size,
        "queued": queued,
        "jobs": total_jobs,
        "build_s": built["build_s"],
        "launch_s": built["launch_s"],
        "wall_s": wall,
        "timed_out": timed_out,
        "sent": sent,
        "fake_sent": fake_sent,
        "states": states,
        "samples": samples,
        "worker": report,
        "fake_cpu_s": after["cpu_s"] - before["cpu_s"],
        "fake_rss_mib": (fake_rss_start / 1024, fake_rss_end / 1024),
    }


def _at(samples: list[Sample], share: float) -> Sample | None:
    for s in samples:
        if s.done >= share - 1e-9:
            return s
    return None


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def report(rows: list[Row], breakdown: Any, memory: dict[str, Any] | None, backend: str) -> None:
    import os

    print(f"\n## Email send throughput ({backend}, fake SendGrid in its own process, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})\n")  # fmt: skip
    print_table(
        ["path", "recipients", "requests", "in flight", "send s", "recipients/s",
         "sender CPU s", "fake CPU s", "CPU µs/recipient sender / fake", "notes"],
        [
            [r.path, fmt_int(r.recipients), fmt_int(r.requests), r.concurrency,
             f"{r.seconds:.2f}", fmt_int(r.rate), f"{r.bench_cpu:.1f}", f"{r.fake_cpu:.1f}",
             f"{r.bench_cpu / r.recipients * 1e6:.0f} / {r.fake_cpu / r.recipients * 1e6:.0f}",
             r.notes]
            for r in rows
        ],
    )  # fmt: skip
    database = (
        "our code, the SDK and SQLite"
        if backend == "sqlite"
        else "our code and the SDK; PostgreSQL's server is not counted"
    )
    print(
        f"\nsender CPU: this process ({database}); fake CPU: the FakeSendGrid process. With "
        "one request in flight the two add up: on an idle machine "
        "the batched path would run at about recipients / (sender CPU + fake CPU)."
    )
    if breakdown:
        print(f"\n## Where a batched job's time goes ({PROFILE_JOBS} jobs of 500, timed)\n")
        print_table(["part", "calls", "wall ms/job", "CPU ms/job", "share of job"], breakdown)
    checks = []
    batched = next((r for r in rows if r.path.startswith("batched")), None)
    if batched is not None:
        serial = batched.recipients / (batched.bench_cpu + batched.fake_cpu)
        checks.append(
            ["batched ≥ 5,000 recipients/s per worker (in-process jobs)",
             f"{batched.rate:,.0f}/s", _verdict(batched.rate >= 5000)]
        )  # fmt: skip
        checks.append(
            ["  the same, estimated for an idle machine (sender + fake CPU, serial)",
             f"{serial:,.0f}/s", _verdict(serial >= 5000) + " (estimate)"]
        )  # fmt: skip
    if memory is not None:
        samples: list[Sample] = memory["samples"]
        worker = memory["worker"]
        at = {p: _at(samples, p) for p in MILESTONES}
        last = samples[-1] if samples else None
        if at[1.00] is None and last is not None and not memory["timed_out"]:
            at[1.00] = last
        peak = max([s.hwm_kib / 1024 for s in samples] + [float(worker.get("hwm_mib", 0.0))])
        rate = memory["sent"] / memory["wall_s"] if memory["wall_s"] else 0.0
        print(f"\n## Worker memory over a {memory['size']:,}-recipient batched campaign "
              f"(fresh worker process, run_worker(burst=True))\n")  # fmt: skip

        def mib(s: Sample | None) -> str:
            return f"{s.rss_kib / 1024:.1f}" if s else "-"

        print_table(
            ["members", "queued", "jobs", "build s", "launch s", "worker s", "sent",
             "recipients/s", "RSS ready MiB", "RSS @10%", "@50%", "@90%", "@100%",
             "peak MiB"],
            [[fmt_int(memory["size"]), fmt_int(memory["queued"]), fmt_int(memory["jobs"]),
              f"{memory['build_s']:.0f}", f"{memory['launch_s']:.0f}",
              f"{memory['wall_s']:.0f}" + (" (stopped)" if memory["timed_out"] else ""),
              fmt_int(memory["sent"]), fmt_int(rate),
              f"{float(worker.get('ready_rss_mib', 0.0)):.1f}",
              mib(at[0.10]), mib(at[0.50]), mib(at[0.90]), mib(at[1.00]), f"{peak:.1f}"]],
        )  # fmt: skip
        print(
            f"\nfake SendGrid: {memory['fake_sent']:,} personalizations accepted, "
            f"{memory['fake_cpu_s']:.0f} s CPU, RSS {memory['fake_rss_mib'][0]:.0f} → "
            f"{memory['fake_rss_mib'][1]:.0f} MiB; worker CPU "
            f"{float(worker.get('cpu_s', 0.0)):.0f} s; rows {memory['states']}"
        )
        if memory["timed_out"] and samples:
            done = samples[-1].done
            projected = memory["wall_s"] / max(done, 1e-9)
            print(
                f"stopped after {memory['wall_s']:.0f} s at {done:.1%} of the jobs: "
                f"{memory['size']:,} would take about {projected:.0f} s at this rate"
            )
        checks.append(
            [f"batched ≥ 5,000 recipients/s (rq worker, {memory['size']:,})",
             f"{rate:,.0f}/s", _verdict(rate >= 5000)]
        )  # fmt: skip
        checks.append(["worker peak RSS < 150 MiB", f"{peak:.1f} MiB", _verdict(peak < 150)])
        first, final = at[0.10], at[1.00] or last
        if first and final:
            growth = (final.rss_kib - first.rss_kib) / 1024
            flat = growth <= max(5.0, 0.05 * first.rss_kib / 1024)
            checks.append(
                ["worker RSS flat (10% → 100% grows ≤ max(5 MiB, 5%))",
                 f"{growth:+.1f} MiB", _verdict(flat)]
            )  # fmt: skip
    print("\n## Targets\n")
    print_table(["target", "measured", "verdict"], checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batched", type=int, default=50_000, help="members, batched campaign")
    parser.add_argument("--personal", type=int, default=2_000, help="members, per-recipient")
    parser.add_argument(
        "--repeat", type=int, default=3, help="batched campaigns sent; the median is reported"
    )
    parser.add_argument(
        "--memory-size", type=int, default=1_000_000, help="members of the memory run; 0: skip"
    )
    parser.add_argument(
        "--memory-timeout", type=float, default=900.0, help="seconds before the worker is stopped"
    )
    parser.add_argument("--postgres", metavar="URL", help="PostgreSQL instead of SQLite")
    parser.add_argument(
        "--breakdown", action="store_true", help="time the parts of batched send jobs"
    )
    parser.add_argument(
        "--profile", action="store_true", help="--breakdown, and cProfile the same jobs"
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--serve-fake", metavar="KEY", help=argparse.SUPPRESS)
    parser.add_argument("--child-build", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake(args.serve_fake)
        return
    if args.child_build is not None:
        child_build(args.child_build)
        return
    if args.child_worker:
        child_worker()
        return
    install_signal_handlers()
    logging.basicConfig(level=logging.WARNING)
    children = Children()
    rows: list[Row] = []
    breakdown = None
    memory = None
    try:
        fake = FakeSendGridProcess(children, __file__)
        print(f"fake SendGrid at {fake.url} (pid {fake.pid})", flush=True)
        if not args.skip_throughput:
            rows, breakdown = throughput(args, fake)
        if args.memory_size:
            memory = memory_run(args, children, fake)
        fake.stop()
    finally:
        children.stop_all()
    report(rows, breakdown, memory, "sqlite" if args.postgres is None else "postgresql")


if __name__ == "__main__":
    main()
