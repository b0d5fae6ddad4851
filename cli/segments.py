"""``outreach segment …``: count and sample any filter, save it under a name, list saved ones."""

from __future__ import annotations

import time

import click
from sqlalchemy import select

from cli.context import Context, pass_ctx
from outreach.app.clock import utcnow
from outreach.campaigns import segments
from outreach.models import Segment
from outreach.people.huddles import HuddleError, get_huddle


@click.group()
def segment() -> None:
    """Audiences: filters over a huddle's members (the language: docs/segments.md)."""


def _huddle_id(ctx: Context, slug: str) -> int:
    with ctx.services.read_sessions() as session:
        try:
            return get_huddle(session, slug).id
        except HuddleError as exc:
            raise click.ClickException(str(exc)) from None


@segment.command("count")
@click.option("--huddle", "huddle_slug", required=True)
@click.option("--channel", type=click.Choice(["sms", "email"]), default="sms", show_default=True)
@click.option("--sample", "sample_size", type=int, default=5, show_default=True)
@click.argument("filter_text", default="")
@pass_ctx
def count(ctx: Context, huddle_slug: str, channel: str, sample_size: int, filter_text: str) -> None:
    """How many active subscribers match FILTER, and a few of them."""
    huddle_id = _huddle_id(ctx, huddle_slug)
    with ctx.services.read_sessions() as session:
        now = utcnow()
        try:
            started = time.perf_counter()
            total = segments.count(
                session, huddle_id=huddle_id, channel=channel, filter_text=filter_text, now=now
            )
            took = (time.perf_counter() - started) * 1000
            people = segments.sample(
                session,
                huddle_id=huddle_id,
                channel=channel,
                filter_text=filter_text,
                now=now,
                limit=sample_size,
            )
        except segments.SegmentError as exc:
            raise click.ClickException(f"{exc}\n  {filter_text}\n  {' ' * exc.position}^") from None
        click.echo(f"{total} members ({took:.0f} ms)")
        for person in people:
            click.echo(f"  {person.display_name}\t{person.zip or '-'}")


@segment.command("save")
@click.option("--huddle", "huddle_slug", required=True)
@click.option("--name", required=True)
@click.argument("filter_text")
@pass_ctx
def save(ctx: Context, huddle_slug: str, name: str, filter_text: str) -> None:
    """Save FILTER as NAME; campaigns can then use --segment @NAME."""
    huddle_id = _huddle_id(ctx, huddle_slug)
    try:
        with ctx.services.sessions.begin() as session:
            saved = segments.save_segment(
                session, huddle_id=huddle_id, name=name, filter_text=filter_text
            )
            click.echo(f"saved segment @{saved.name}")
    except (segments.SegmentError, segments.SegmentNameError) as exc:
        raise click.ClickException(str(exc)) from None


@segment.command("list")
@click.option("--huddle", "huddle_slug", required=True)
@pass_ctx
def list_saved(ctx: Context, huddle_slug: str) -> None:
    """The huddle's saved segments."""
    huddle_id = _huddle_id(ctx, huddle_slug)
    with ctx.services.read_sessions() as session:
        rows = session.scalars(
            select(Segment).where(Segment.huddle_id == huddle_id).order_by(Segment.name)
        ).all()
        if not rows:
            click.echo("no saved segments")
        for row in rows:
            click.echo(f"@{row.name}\t{row.filter}")
