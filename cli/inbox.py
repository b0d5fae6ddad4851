"""``outreach inbox``: the texts received, newest first, each with its pictures under it."""

from __future__ import annotations

import click
from sqlalchemy import select

from cli.context import Context, pass_ctx
from outreach.models import InboundMessage
from outreach.people.huddles import HuddleError, get_huddle


@click.command()
@click.option("--huddle", "huddle_slug", default=None, help="Only the texts filed under it.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@pass_ctx
def inbox(ctx: Context, huddle_slug: str | None, limit: int) -> None:
    """Print the latest inbound texts: when, from whom, what we made of it, and its media."""
    with ctx.services.read_sessions() as session:
        query = select(InboundMessage).order_by(
            InboundMessage.received_at.desc(), InboundMessage.id.desc()
        )
        if huddle_slug is not None:
            try:
                huddle_id = get_huddle(session, huddle_slug).id
            except HuddleError as exc:
                raise click.ClickException(str(exc)) from None
            query = query.where(InboundMessage.huddle_id == huddle_id)
        texts = session.scalars(query.limit(limit)).all()
        if not texts:
            click.echo("no texts received")
        for row in texts:
            flag = " (flagged)" if row.flagged else ""
            click.echo(
                f"{row.received_at.isoformat(timespec='seconds')}  "
                f"{row.from_e164 or _printable(row.from_raw):16} {row.intent:13} "
                f"{_printable(row.body) or '(no text)'}{flag}"
            )
            for attachment in row.media or ():
                content_type = _printable(str(attachment.get("content_type") or "")) or "?"
                click.echo(f"    [{content_type}] {_printable(str(attachment.get('url', '')))}")


def _printable(text: str) -> str:
    """One line, without what a terminal would act on (a text's newlines, escape sequences)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())
