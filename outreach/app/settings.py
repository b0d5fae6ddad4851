"""Configuration, read once from the environment into a frozen object.

Nothing in the project reads ``os.environ`` at import time: the app factory, the worker and the
CLI each call :meth:`Settings.from_env` once and pass the result along.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

DEV_SECRET_KEY = "dev-secret-key-change-me"  # noqa: S105 - a known placeholder production refuses

SmsBackend = Literal["sandbox", "twilio"]
EmailBackend = Literal["sandbox", "sendgrid"]


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable and what is expected."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None  # None: start the embedded Redis under instance/
    secret_key: str
    public_base_url: str | None
    sms_backend: SmsBackend = "sandbox"
    email_backend: EmailBackend = "sandbox"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_api_base_url: str | None = None
    sendgrid_api_key: str | None = None
    sendgrid_api_host: str | None = None
    sendgrid_event_public_key: str | None = None
    default_region: str = "US"
    default_timezone: str = "America/New_York"
    environment: Literal["development", "production", "test"] = "development"
    instance_path: Path = field(default_factory=lambda: Path.cwd() / "instance")
    sandbox_failure_rate: float = 0.05
    twilio_error_policy: str | None = None  # "30003=suppress,30008=none" over the defaults
    default_sms_rate: float = 1.0  # segments/s per sender unless the huddle or campaign says
    send_concurrency: int = 64  # provider requests in flight per worker process
    # seconds without renewing its lease before a worker counts as dead (outreach.campaigns.leases)
    worker_lease_timeout: float = 15.0
    metrics_token: str | None = None  # /metrics needs "Authorization: Bearer <it>" when set

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def webhook_auth_token(self) -> str:
        """The token Twilio-style signatures are made with.

        The sandbox signs its simulated callbacks with the same algorithm as Twilio, using a
        token derived from the secret key when no Twilio token is configured.
        """
        if self.twilio_auth_token:
            return self.twilio_auth_token
        return "sandbox-" + self.secret_key

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``, plus ``.env`` if present)."""
        env: dict[str, str] = {}
        if dotenv and environ is None:
            env.update(_read_dotenv(Path.cwd() / ".env"))
        env.update(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        environment = (get("OUTREACH_ENV") or "development").lower()
        if environment not in ("development", "production", "test"):
            raise ConfigError(
                f"OUTREACH_ENV must be development, production or test, not {environment!r}"
            )
        instance_path = Path(get("OUTREACH_INSTANCE_PATH") or Path.cwd() / "instance")

        database_url = get("DATABASE_URL") or f"sqlite:///{instance_path / 'outreach.db'}"
        database_url = _normalize_database_url(database_url)

        redis_url = get("REDIS_URL")
        if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")

        secret_key = get("SECRET_KEY")
        weak = not secret_key or secret_key == DEV_SECRET_KEY or len(secret_key) < 32
        if environment == "production" and weak:
            raise ConfigError(
                "SECRET_KEY must be set to a random value of at least 32 characters in "
                "production (python -c 'import secrets; print(secrets.token_hex(32))')"
            )
        secret_key = secret_key or (
            DEV_SECRET_KEY if environment != "test" else secrets.token_hex(16)
        )

        public_base_url = get("PUBLIC_BASE_URL")
        if public_base_url:
            if not public_base_url.startswith(("http://", "https://")):
                raise ConfigError("PUBLIC_BASE_URL must be an absolute http(s) URL")
            public_base_url = public_base_url.rstrip("/")

        sms_backend = (get("SMS_BACKEND") or "sandbox").lower()
        if sms_backend not in ("sandbox", "twilio"):
            raise ConfigError(f"SMS_BACKEND must be sandbox or twilio, not {sms_backend!r}")
        email_backend = (get("EMAIL_BACKEND") or "sandbox").lower()
        if email_backend not in ("sandbox", "sendgrid"):
            raise ConfigError(f"EMAIL_BACKEND must be sandbox or sendgrid, not {email_backend!r}")

        twilio_sid = get("TWILIO_ACCOUNT_SID")
        twilio_token = get("TWILIO_AUTH_TOKEN")
        if sms_backend == "twilio" and not (twilio_sid and twilio_token):
            raise ConfigError("SMS_BACKEND=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        if twilio_sid and not (twilio_sid.startswith("AC") and len(twilio_sid) == 34):
            raise ConfigError("TWILIO_ACCOUNT_SID must look like AC followed by 32 hex digits")
        if environment == "production" and sms_backend == "twilio" and not public_base_url:
            raise ConfigError(
                "PUBLIC_BASE_URL is required in production: Twilio signs the public URL"
            )

        sendgrid_key = get("SENDGRID_API_KEY")
        if email_backend == "sendgrid" and not sendgrid_key:
            raise ConfigError("EMAIL_BACKEND=sendgrid needs SENDGRID_API_KEY")

        region = (get("DEFAULT_REGION") or "US").upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(f"DEFAULT_REGION {region!r} is not a region phonenumbers knows")

        timezone = get("DEFAULT_TIMEZONE") or "America/New_York"
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"DEFAULT_TIMEZONE {timezone!r} is not an IANA time zone") from exc

        failure_rate_text = get("SANDBOX_FAILURE_RATE") or "0.05"
        try:
            failure_rate = float(failure_rate_text)
        except ValueError as exc:
            raise ConfigError("SANDBOX_FAILURE_RATE must be a number between 0 and 1") from exc
        if not 0 <= failure_rate <= 1:
            raise ConfigError("SANDBOX_FAILURE_RATE must be a number between 0 and 1")

        error_policy = get("TWILIO_ERROR_POLICY")
        if error_policy:
            from outreach.providers.twilio.error_policy import parse_error_policy  # noqa: PLC0415

            try:
                parse_error_policy(error_policy)
            except ValueError as exc:
                raise ConfigError(f"TWILIO_ERROR_POLICY: {exc}") from None

        default_sms_rate = _number(get("DEFAULT_SMS_RATE"), "DEFAULT_SMS_RATE", 1.0, 0, 2000)
        send_concurrency = int(_number(get("SEND_CONCURRENCY"), "SEND_CONCURRENCY", 64, 1, 256))
        lease_timeout = _number(get("WORKER_LEASE_TIMEOUT"), "WORKER_LEASE_TIMEOUT", 15.0, 1, 600)

        return cls(
            database_url=database_url,
            redis_url=redis_url,
            secret_key=secret_key,
            public_base_url=public_base_url,
            sms_backend=sms_backend,  # type: ignore[arg-type]
            email_backend=email_backend,  # type: ignore[arg-type]
            twilio_account_sid=twilio_sid,
            twilio_auth_token=twilio_token,
            twilio_api_base_url=(get("TWILIO_API_BASE_URL") or "").rstrip("/") or None,
            sendgrid_api_key=sendgrid_key,
            sendgrid_api_host=get("SENDGRID_API_HOST"),
            sendgrid_event_public_key=get("SENDGRID_EVENT_PUBLIC_KEY"),
            default_region=region,
            default_timezone=timezone,
            environment=environment,  # type: ignore[arg-type]
            instance_path=instance_path,
            sandbox_failure_rate=failure_rate,
            twilio_error_policy=error_policy,
            default_sms_rate=default_sms_rate,
            send_concurrency=send_concurrency,
            worker_lease_timeout=lease_timeout,
            metrics_token=get("METRICS_TOKEN") or None,
        )


def _number(text: str | None, name: str, default: float, low: float, high: float) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number between {low:g} and {high:g}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be a number between {low:g} and {high:g}")
    return value


def _normalize_database_url(url: str) -> str:
    """Accept the ``postgres://`` spelling hosting platforms hand out, and use psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if not url.startswith(("sqlite:", "postgresql+psycopg:")):
        raise ConfigError("DATABASE_URL must be a sqlite:/// or postgresql:// URL")
    return url


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values  # noqa: PLC0415 - only needed when a .env exists

    return {k: v for k, v in dotenv_values(path).items() if v is not None}
