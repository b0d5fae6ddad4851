"""``outreach user``: organizer accounts, their huddles and roles, API tokens."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from cli.context import Context, pass_ctx
from outreach.accounts import tokens, users
from outreach.models import accounts as a

ROLE = click.Choice(a.HUDDLE_ROLES)


@click.group()
def user() -> None:
    """Organizer accounts (admins, organizers, responders) and their API tokens."""


@contextmanager
def _changing(ctx: Context) -> Iterator[Session]:
    try:
        with ctx.services.sessions.begin() as session:
            yield session
    except users.AccountError as exc:
        raise click.ClickException(str(exc)) from None


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    entered: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return entered


@user.command("create")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option("--admin", is_flag=True, help="Every huddle, settings and users.")
@click.option("--huddle", "huddles", multiple=True, help="A huddle slug (repeatable).")
@click.option("--role", type=ROLE, default=a.ORGANIZER, show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_ctx
def user_create(
    ctx: Context,
    email: str,
    name: str,
    admin: bool,
    huddles: tuple[str, ...],
    role: str,
    password_stdin: bool,
) -> None:
    """Make an account that can sign in at /login."""
    if not admin and not huddles:
        raise click.UsageError("give --admin, or the huddles with --huddle SLUG")
    password = _password(password_stdin)
    with _changing(ctx) as session:
        made = users.create_user(
            session,
            email=email,
            password=password,
            name=name,
            admin=admin,
            huddles=huddles,
            role=role,
        )
        what = "admin" if admin else f"{role} of {', '.join(huddles)}"
        click.echo(f"created {made.email} ({what})")


@user.command("list")
@pass_ctx
def user_list(ctx: Context) -> None:
    """Every account: email, name, what it may do."""
    with ctx.services.read_sessions() as session:
        everyone = users.list_users(session)
    if not everyone:
        click.echo("no users yet: outreach user create --email you@example.org --admin")
    for person in everyone:
        access = (
            "admin"
            if person.is_admin
            else ", ".join(f"{role} of {slug}" for slug, role in sorted(person.roles.items()))
            or "no huddles"
        )
        state = "  (disabled)" if person.disabled else ""
        click.echo(f"{person.email}\t{person.name}\t{access}{state}")


@user.command("grant")
@click.option("--email", required=True)
@click.option("--huddle", "huddles", multiple=True, required=True)
@click.option("--role", type=ROLE, default=a.ORGANIZER, show_default=True)
@pass_ctx
def user_grant(ctx: Context, email: str, huddles: tuple[str, ...], role: str) -> None:
    """Give a user a role in huddles (or change the one they have)."""
    with _changing(ctx) as session:
        users.grant(session, email=email, huddles=huddles, role=role)
    click.echo(f"{email}: {role} of {', '.join(huddles)}")


@user.command("revoke")
@click.option("--email", required=True)
@click.option("--huddle", "huddles", multiple=True, required=True)
@pass_ctx
def user_revoke(ctx: Context, email: str, huddles: tuple[str, ...]) -> None:
    """Take huddles away from a user."""
    with _changing(ctx) as session:
        users.revoke(session, email=email, huddles=huddles)
    click.echo(f"{email}: no longer in {', '.join(huddles)}")


@user.command("token")
@click.option("--email", required=True)
@click.option("--name", "label", default="", help="What the token is for (shown in lists).")
@pass_ctx
def user_token(ctx: Context, email: str, label: str) -> None:
    """Make an API token for a user; it is printed once and kept nowhere."""
    with _changing(ctx) as session:
        token = tokens.issue(session, users.get_user(session, email), label=label)
    click.echo(token)
    click.echo("Keep it now: it cannot be shown again.", err=True)


@user.command("revoke-token")
@click.option("--email", required=True)
@click.argument("token_id", type=int)
@pass_ctx
def user_revoke_token(ctx: Context, email: str, token_id: int) -> None:
    """Stop an API token working (ids in `outreach user tokens`)."""
    with _changing(ctx) as session:
        if not tokens.revoke(session, users.get_user(session, email), token_id):
            raise click.ClickException(f"{email} has no live token {token_id}")
    click.echo(f"token {token_id} revoked")


@user.command("tokens")
@click.option("--email", required=True)
@pass_ctx
def user_tokens(ctx: Context, email: str) -> None:
    """A user's tokens: id, name, when made and last used, revoked or not."""
    with _changing(ctx) as session:
        for row in tokens.list_tokens(session, users.get_user(session, email)):
            used = row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "never"
            state = "revoked" if row.revoked_at else "live"
            click.echo(f"{row.id}\t{row.label or '-'}\t{row.created_at:%Y-%m-%d}\t{used}\t{state}")


@user.command("disable")
@click.option("--email", required=True)
@pass_ctx
def user_disable(ctx: Context, email: str) -> None:
    """No more sign-ins: every session and every token of the user ends now."""
    with _changing(ctx) as session:
        users.disable(session, email=email)
    click.echo(f"{email} disabled")
