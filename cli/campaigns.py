"""``outreach campaign …``: draft, preview, test, launch, pause, resume, cancel, status."""

from __future__ import annotations

import json
import time
from datetime import datetime

import click
import redis

from cli.context import Context, pass_ctx
from outreach import campaigns
from outreach.app.clock import utcnow
from outreach.campaigns import CampaignError, previews
from outreach.campaigns.ratelimit import RateLimiter
from outreach.models import Huddle
from outreach.models import campaigns as k
from outreach.people.huddles import HuddleError
from outreach.providers import sms_transport
from outreach.providers.sms import SendError
from workers import jobs


@click.group()
def campaign() -> None:
    """SMS and email campaigns."""


@campaign.command("create")
@click.option("--huddle", "huddle_slug", required=True)
@click.option("--channel", type=click.Choice(["sms", "email"]), default="sms", show_default=True)
@click.option(
    "--segment", "segment_filter", default="", help='Filter, e.g. "tag:volunteer zip:021*".'
)
@click.option("--body", required=True, help="Message text; merge fields like {{ first_name }}.")
@click.option("--subject", help="Email subject.")
@click.option("--name", help="A name for reports.")
@click.option("--send-at", help="ISO time with offset, e.g. 2026-12-01T18:00:00-05:00.")
@click.option("--rate", type=float, help="Segments per second for this campaign's sender.")
@click.option("--window", help="Narrow the local sending window, e.g. 10:00-19:00.")
@click.option("--quiet-hours", is_flag=True, help="Email only: keep recipients' quiet hours too.")
@pass_ctx
def create(
    ctx: Context,
    huddle_slug: str,
    channel: str,
    segment_filter: str,
    body: str,
    subject: str | None,
    name: str | None,
    send_at: str | None,
    rate: float | None,
    window: str | None,
    quiet_hours: bool,
) -> None:
    """Draft a campaign and print its id. Every fixable error is reported now.

    --segment takes a filter ("tag:volunteer zip:021*") or a saved segment ("@volunteers").
    """
    svc = ctx.services
    when = None
    if send_at:
        try:
            when = datetime.fromisoformat(send_at)
        except ValueError:
            raise click.BadParameter("not an ISO date-time", param_hint="--send-at") from None
    quiet_start = quiet_end = None
    if window:
        quiet_start, _, quiet_end = window.partition("-")
    try:
        with svc.sessions.begin() as session:
            created = campaigns.create_campaign(
                session,
                huddle_slug=huddle_slug,
                channel=channel,
                segment_filter=segment_filter,
                body=body,
                subject=subject,
                name=name,
                send_at=when,
                rate=rate,
                quiet_start=quiet_start,
                quiet_end=quiet_end,
                respect_quiet_hours=quiet_hours,
                created_by="cli",
            )
            click.echo(created.id)
    except (CampaignError, HuddleError) as exc:
        raise click.ClickException(str(exc)) from None


@campaign.command("preview")
@click.argument("campaign_id", type=int)
@pass_ctx
def preview(ctx: Context, campaign_id: int) -> None:
    """Show the audience size and what a few members would get (SMS: its segment cost)."""
    with ctx.services.read_sessions() as session:
        try:
            found = campaigns.get_campaign(session, campaign_id)
        except CampaignError as exc:
            raise click.ClickException(str(exc)) from None
        huddle = session.get_one(Huddle, found.huddle_id)
        shown = previews.preview(session, found, huddle, now=utcnow())
    click.echo(f"campaign {found.id} ({found.state}): {found.name}")
    click.echo(
        f"audience: {shown.audience} active {found.channel} subscribers in {huddle.slug}"
        f" matching {found.segment_filter or '(everyone)'!r}"
    )
    for sample in shown.samples:
        click.echo("---")
        if sample.subject is not None:
            click.echo(f"Subject: {sample.subject}")
        click.echo(sample.text)
        if sample.encoding is not None:
            click.echo(
                f"[{sample.encoding}, {sample.characters} chars, {sample.segments} segment(s)]"
            )
        for warning in sample.warnings:
            click.echo(f"warning: {warning}")


@campaign.command("test")
@click.argument("campaign_id", type=int)
@click.option("--to", "to", required=True, help="Your own number (an SMS campaign).")
@pass_ctx
def test_send(ctx: Context, campaign_id: int, to: str) -> None:
    """Send the campaign's text once to a number, now: a member of the huddle with that
    number gets their own values, anyone else the sample ones."""
    svc = ctx.services
    with svc.read_sessions() as session:
        try:
            found = campaigns.get_campaign(session, campaign_id)
            huddle = session.get_one(Huddle, found.huddle_id)
            message = previews.sms_test_message(
                session, found, huddle, to, default_region=svc.settings.default_region
            )
        except CampaignError as exc:
            raise click.ClickException(str(exc)) from None
    transport = sms_transport(svc.settings, sessions=svc.sessions)
    try:
        result = transport.send(message)
    except SendError as exc:
        raise click.ClickException(f"not sent: {exc}") from None
    finally:
        transport.close()
    click.echo(f"sent test {result.provider_message_id} to {message.to}")


@campaign.command("launch")
@click.argument("campaign_id", type=int)
@pass_ctx
def launch(ctx: Context, campaign_id: int) -> None:
    """Snapshot the audience and queue the sends (or schedule, with --send-at)."""
    svc = ctx.services
    try:
        state = jobs.launch_campaign(campaign_id)
    except CampaignError as exc:
        raise click.ClickException(str(exc)) from None
    with svc.read_sessions() as session:
        report = campaigns.status(session, campaign_id)
    if state == k.SCHEDULED:
        click.echo(f"campaign {campaign_id} scheduled")
    else:
        queued = report.by_state.get(k.QUEUED, 0)
        click.echo(
            f"campaign {campaign_id} launched: {report.audience} recipients, "
            f"{queued} queued, {sum(report.skipped.values())} skipped"
        )


def _transition(ctx: Context, campaign_id: int, action: str) -> None:
    svc = ctx.services
    try:
        with svc.sessions.begin() as session:
            if action == "pause":
                campaigns.pause(session, campaign_id)
            elif action == "cancel":
                campaigns.cancel(session, campaign_id)
            else:
                found = campaigns.get_campaign(session, campaign_id, for_update=True)
                campaigns.move(found, k.SENDING)
    except CampaignError as exc:
        raise click.ClickException(str(exc)) from None
    if action == "resume":
        jobs.resume_campaign(campaign_id)
    click.echo(
        f"campaign {campaign_id}: {action}d"
        if action != "cancel"
        else f"campaign {campaign_id}: cancelled"
    )


@campaign.command("pause")
@click.argument("campaign_id", type=int)
@pass_ctx
def pause(ctx: Context, campaign_id: int) -> None:
    """Stop sending after the current group; resume picks up where it stopped."""
    _transition(ctx, campaign_id, "pause")


@campaign.command("resume")
@click.argument("campaign_id", type=int)
@pass_ctx
def resume(ctx: Context, campaign_id: int) -> None:
    """Continue a paused campaign."""
    _transition(ctx, campaign_id, "resume")


@campaign.command("cancel")
@click.argument("campaign_id", type=int)
@pass_ctx
def cancel(ctx: Context, campaign_id: int) -> None:
    """Stop for good; what was not sent is skipped as cancelled."""
    _transition(ctx, campaign_id, "cancel")


@campaign.command("status")
@click.argument("campaign_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
@click.option("--watch", is_flag=True, help="Show a progress bar until the campaign finishes.")
@pass_ctx
def show_status(ctx: Context, campaign_id: int, as_json: bool, watch: bool) -> None:
    """Counts by delivery state, skip reason and error code."""
    svc = ctx.services

    def load() -> campaigns.CampaignStatus:
        with svc.read_sessions() as session:
            try:
                return campaigns.status(session, campaign_id)
            except CampaignError as exc:
                raise click.ClickException(str(exc)) from None

    report = load()
    if watch and report.state in (k.SENDING, k.PAUSED, k.SCHEDULED) and report.audience:
        with click.progressbar(length=report.audience, label=f"campaign {campaign_id}") as bar:
            shown = 0
            while True:
                report = load()
                bar.update(report.done - shown)
                shown = report.done
                if report.state not in (k.SENDING, k.SCHEDULED):
                    break
                time.sleep(1)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, sort_keys=True))
        return
    click.echo(f"campaign {report.id} {report.name!r} ({report.channel}, huddle {report.huddle})")
    click.echo(f"state: {report.state}; audience {report.audience}; done {report.done}")
    for state, count in sorted(report.by_state.items()):
        click.echo(f"  {state:12} {count}")
    for reason, count in sorted(report.skipped.items()):
        click.echo(f"  skipped: {reason:20} {count}")
    for code, count in sorted(report.errors.items()):
        click.echo(f"  error {code:8} {count}")
    if report.last_progress_at is not None:
        ago = (utcnow() - report.last_progress_at).total_seconds()
        when = report.last_progress_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        click.echo(f"last progress: {when} ({ago:.0f} s ago)")
    try:
        slowed = RateLimiter(svc.redis).slowed(report.sender_key)
    except redis.RedisError:
        slowed = None  # the counts above come from the database alone
    if slowed is not None and report.channel == "sms":
        factor, left = slowed
        click.echo(f"sender slowed to {factor:.0%} after provider 429s, for {left:.0f} s more")
    if report.flag:
        click.echo(f"flag: {report.flag}")
