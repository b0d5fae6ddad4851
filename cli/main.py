"""``outreach``: run the service, manage huddles and members, migrate the database."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TextIO

import click
from redis.exceptions import RedisError

from cli import runner
from cli.campaigns import campaign
from cli.context import Context, pass_ctx
from cli.inbox import inbox
from cli.segments import segment
from cli.users import user
from outreach.addresses.phones import InvalidPhoneNumber, normalize_phone
from outreach.app import migrate
from outreach.consent import history
from outreach.models import Member
from outreach.models import imports as import_states
from outreach.people import imports
from outreach.people.huddles import HuddleError, create_huddle, get_huddle, list_huddles
from outreach.people.importer import (
    ImportFileError,
    ImportReport,
    ImportStopped,
    Progress,
    export_members,
    import_members,
    parse_consent_option,
)
from outreach.sms import spool as twilio_spool


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
@click.pass_context
def main(click_ctx: click.Context, verbose: bool) -> None:
    """Huddle Outreach: SMS and email outreach for local groups."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    click_ctx.ensure_object(Context)


@main.command()
@click.option("--port", type=int, envvar="PORT", default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--workers", "web_processes", type=int, default=2, show_default=True, help="Web processes."
)
@pass_ctx
def run(ctx: Context, port: int, host: str, web_processes: int) -> None:
    """Run everything on this machine: embedded Redis, migrations, web, one worker."""
    sys.exit(runner.run_all(ctx.settings, host=host, port=port, web_processes=web_processes))


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
def worker(burst: bool) -> None:
    """Run one worker with its ticker (SIGTERM finishes the current group, then stops)."""
    from workers.main import run_worker  # noqa: PLC0415 - rq is only needed here

    run_worker(burst=burst)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_ctx
def db_upgrade(ctx: Context, revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    migrate.upgrade(ctx.services.engine, revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
@pass_ctx
def db_downgrade(ctx: Context, revision: str) -> None:
    """Revert migrations down to REVISION ("base" for an empty database)."""
    migrate.downgrade(ctx.services.engine, revision)
    click.echo(f"database at {revision}")


@main.group()
def huddle() -> None:
    """Huddles (local groups)."""


@huddle.command("create")
@click.option("--slug", required=True)
@click.option("--name", required=True)
@click.option("--keyword", "keywords", multiple=True, required=True, help="Join keyword (repeat).")
@click.option("--sender", help="Sender number, any format (normalized to E.164).")
@click.option("--messaging-service", help="Twilio messaging service SID (MG…).")
@click.option("--timezone", default=None, help="IANA zone used when a member's is unknown.")
@click.option("--single-opt-in", is_flag=True, help="Activate on the keyword (no YES needed).")
@click.option("--postal-address", help="Postal address for email footers (CAN-SPAM).")
@click.option("--email-from", help="From address for email campaigns.")
@pass_ctx
def huddle_create(
    ctx: Context,
    slug: str,
    name: str,
    keywords: tuple[str, ...],
    sender: str | None,
    messaging_service: str | None,
    timezone: str | None,
    single_opt_in: bool,
    postal_address: str | None,
    email_from: str | None,
) -> None:
    """Create a huddle."""
    try:
        with ctx.services.sessions.begin() as session:
            created = create_huddle(
                session,
                slug=slug,
                name=name,
                keywords=list(keywords),
                sender=sender,
                messaging_service_sid=messaging_service,
                timezone=timezone or ctx.settings.default_timezone,
                default_region=ctx.settings.default_region,
                opt_in_mode="single" if single_opt_in else "double",
                postal_address=postal_address,
                email_from_address=email_from,
            )
            click.echo(
                f"created huddle {created.slug} (keywords: "
                f"{', '.join(k.keyword for k in created.keywords)}; "
                f"sender: {created.sender_number or created.messaging_service_sid or 'none'})"
            )
    except HuddleError as exc:
        raise click.ClickException(str(exc)) from None


@huddle.command("list")
@pass_ctx
def huddle_list(ctx: Context) -> None:
    """List huddles."""
    with ctx.services.read_sessions() as session:
        huddles = list_huddles(session)
        if not huddles:
            click.echo("no huddles yet")
        for h in huddles:
            keywords = ",".join(k.keyword for k in h.keywords)
            click.echo(f"{h.slug}\t{h.name}\t{keywords}\t{h.sender_number or '-'}\t{h.timezone}")


@main.group()
def members() -> None:
    """Members of a huddle."""


@members.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--huddle", "huddle_slug", required=True)
@click.option(
    "--consent",
    "consent_text",
    default="",
    help="Channels the organizer has consent for: sms, email or sms,email.",
)
@click.option(
    "--background",
    is_flag=True,
    help="Store the file and let a worker import it; follow it with `members import-status`.",
)
@pass_ctx
def members_import(
    ctx: Context, path: Path, huddle_slug: str, consent_text: str, background: bool
) -> None:
    """Import members from a CSV.

    Columns: phone, email, first_name, last_name, zip, tags; optional sms_consent and
    email_consent (yes/no); any other column becomes a custom field.
    """
    try:
        channels = parse_consent_option(consent_text)
    except ImportFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--consent") from None
    if background:
        _queue_import(ctx, path, huddle_slug, channels)
        return
    show_progress = sys.stderr.isatty()
    with click.progressbar(
        length=path.stat().st_size,
        label="importing",
        file=sys.stderr,
        hidden=not show_progress,
        show_pos=False,
    ) as bar:

        def progress(done: Progress) -> None:
            if done.bytes_read is not None:
                bar.update(done.bytes_read - bar.pos)

        try:
            report = import_members(
                ctx.services.engine,
                huddle_slug=huddle_slug,
                source=path,
                consent_channels=channels,
                default_region=ctx.settings.default_region,
                actor="cli",
                progress=progress,
            )
        except (ImportFileError, HuddleError) as exc:
            raise click.ClickException(str(exc)) from None
        except UnicodeDecodeError:
            raise click.ClickException(f"{path} is not UTF-8 text") from None
        except ImportStopped as stopped:
            _print_import_report(stopped.report)
            raise click.ClickException(
                f"the database stopped the import at line {stopped.report.stopped_at}: "
                f"{stopped.reason}\nThe lines before it are imported. Running the same file "
                "again imports the rest and leaves what is already in as it is."
            ) from None
    _print_import_report(report)
    if report.errors:
        sys.exit(1 if report.imported == 0 else 2)


def _print_import_report(report: ImportReport) -> None:
    click.echo(
        f"{report.rows} rows: {report.imported} imported ({report.created} new, "
        f"{report.merged} merged into existing), {len(report.errors)} rejected"
    )
    click.echo(
        f"subscribed: sms {report.subscribed['sms']}, email {report.subscribed['email']}; "
        f"left opted out: {report.kept_opted_out}; suppressed: {report.suppressed}"
    )
    for error in report.errors:
        click.echo(f"line {error.line}: {error.reason}", err=True)


def _queue_import(ctx: Context, path: Path, huddle_slug: str, channels: frozenset[str]) -> None:
    from workers.jobs import enqueue_import  # noqa: PLC0415 - only this command needs the queue

    try:
        with path.open("rb") as upload:
            import_id = imports.store(
                ctx.services.sessions,
                huddle_slug=huddle_slug,
                upload=upload,
                source_name=path.name,
                consent_channels=channels,
                default_region=ctx.settings.default_region,
                actor="cli",
            )
    except (ImportFileError, HuddleError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        enqueue_import(import_id)
    except RedisError:
        click.echo("Redis is not answering: a worker's sweep will pick the import up.", err=True)
    click.echo(
        f"import {import_id} queued; follow it: outreach members import-status {import_id} --wait"
    )


@members.command("import-status")
@click.argument("import_id", type=int, required=False)
@click.option("--errors", "show_errors", is_flag=True, help="Print the row-error report.")
@click.option("--wait", is_flag=True, help="Show progress until the import ends.")
@pass_ctx
def members_import_status(
    ctx: Context, import_id: int | None, show_errors: bool, wait: bool
) -> None:
    """Where a background import stands (the recent ones, without an id)."""
    if import_id is None:
        with ctx.services.read_sessions() as session:
            for item in imports.recent(session):
                click.echo(
                    f"{item.id}\t{item.state}\t{item.huddle_slug}\t{item.source_name}\t"
                    f"{item.rows} rows\t{item.created_at:%Y-%m-%d %H:%M}"
                )
        return
    current = _import_status(ctx, import_id)
    if wait:
        with click.progressbar(
            length=100, label=f"import {import_id}", file=sys.stderr, show_pos=False
        ) as bar:
            while current.state in (import_states.QUEUED, import_states.RUNNING):
                bar.update(current.percent - bar.pos)
                time.sleep(1)
                current = _import_status(ctx, import_id)
            bar.update(100 - bar.pos)
    click.echo(
        f"import {current.id} ({current.source_name} into {current.huddle_slug}): "
        f"{current.state}, {current.percent}%"
    )
    if current.reason:
        click.echo(f"reason: {current.reason}")
    click.echo(
        f"{current.rows} rows: {current.imported} imported ({current.created} new, "
        f"{current.merged} merged into existing), {current.error_count} rejected"
    )
    click.echo(
        f"subscribed: sms {current.subscribed['sms']}, email {current.subscribed['email']}; "
        f"left opted out: {current.kept_opted_out}; suppressed: {current.suppressed}"
    )
    if show_errors:
        with ctx.services.read_sessions() as session:
            for error in imports.errors(session, import_id):
                click.echo(f"line {error.line}: {error.reason}")
    if current.state == import_states.FAILED:
        sys.exit(1)


def _import_status(ctx: Context, import_id: int) -> imports.ImportStatus:
    with ctx.services.read_sessions() as session:
        try:
            return imports.status(session, import_id)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None


@members.command("export")
@click.option("--huddle", "huddle_slug", required=True)
@click.option("--output", "-o", type=click.File("w"), default="-")
@pass_ctx
def members_export(ctx: Context, huddle_slug: str, output: TextIO) -> None:
    """Export a huddle's members as CSV (to stdout by default)."""
    with ctx.services.read_sessions() as session:
        try:
            target = get_huddle(session, huddle_slug)
        except HuddleError as exc:
            raise click.ClickException(str(exc)) from None
        count = export_members(session, target, output)
    click.echo(f"exported {count} members", err=True)


@main.group()
def consent() -> None:
    """The consent ledger."""


@consent.command("history")
@click.argument("address")
@pass_ctx
def consent_history(ctx: Context, address: str) -> None:
    """Print every consent change for a phone number or email address, oldest first."""
    from sqlalchemy import select  # noqa: PLC0415

    with ctx.services.read_sessions() as session:
        if "@" in address:
            member = session.scalars(select(Member).where(Member.email == address.lower())).first()
        else:
            try:
                phone = normalize_phone(address, ctx.settings.default_region)
            except InvalidPhoneNumber as exc:
                raise click.ClickException(f"{address}: {exc.reason}") from None
            member = session.scalars(select(Member).where(Member.phone == phone)).first()
        if member is None:
            raise click.ClickException(f"no member with {address}")
        events = history(session, member)
        if not events:
            click.echo("no consent changes on record")
        for e in events:
            extra = " ".join(
                part
                for part in (
                    f"huddle={e.huddle_id}" if e.huddle_id else "",
                    f"sid={e.provider_message_id}" if e.provider_message_id else "",
                    f"ip={e.ip}" if e.ip else "",
                    f"detail={e.detail!r}" if e.detail else "",
                )
                if part
            )
            click.echo(
                f"{e.created_at.isoformat(timespec='seconds')}  {e.channel:5} {e.action:16} "
                f"{e.source:9} {extra}"
            )


@main.group()
def spool() -> None:
    """Twilio webhooks the database could not take, applied by the worker when it can."""


@spool.command("status")
@pass_ctx
def spool_status(ctx: Context) -> None:
    """How many wait, and each one set aside after failing too often."""
    redis = ctx.services.redis
    aside = twilio_spool.set_aside(redis)
    click.echo(f"waiting: {twilio_spool.waiting(redis)}")
    click.echo(f"set aside: {len(aside)}")
    for entry in aside:
        click.echo(
            f"  {entry.spooled_at}  {entry.kind:6} {entry.message_sid}  "
            f"{entry.attempts} attempts, last {entry.error}"
        )


@spool.command("retry")
@pass_ctx
def spool_retry(ctx: Context) -> None:
    """Put the requests set aside back in the spool (after the fix for what failed them)."""
    moved = twilio_spool.retry_set_aside(ctx.services.redis)
    click.echo(f"{moved} back in the spool; the worker applies them within 15 s")


main.add_command(campaign)
main.add_command(inbox)
main.add_command(segment)
main.add_command(user)


@main.command("seed-demo")
@click.option("--members", "count", default=300, show_default=True)
@pass_ctx
def seed_demo(ctx: Context, count: int) -> None:
    """Create a demo huddle with a few hundred fake members."""
    from outreach.people.demo import seed  # noqa: PLC0415

    huddle_slug, created = seed(ctx.services.sessions, count=count)
    click.echo(f"demo huddle {huddle_slug}: {created} members")
