from __future__ import annotations

import pytest

from outreach.app.settings import DEV_SECRET_KEY, ConfigError, Settings


def test_defaults_give_a_runnable_development_service() -> None:
    settings = Settings.from_env({}, dotenv=False)
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("instance/outreach.db")
    assert settings.redis_url is None  # the embedded Redis
    assert settings.sms_backend == "sandbox"
    assert settings.email_backend == "sandbox"
    assert settings.default_region == "US"
    assert settings.secret_key == DEV_SECRET_KEY


def test_postgres_urls_are_normalized_to_psycopg3() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgres://u:p@db:5432/x"}, dotenv=False)
    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/x"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OUTREACH_ENV": "production"}, "SECRET_KEY"),
        ({"OUTREACH_ENV": "production", "SECRET_KEY": DEV_SECRET_KEY}, "SECRET_KEY"),
        ({"OUTREACH_ENV": "staging"}, "OUTREACH_ENV"),
        ({"SMS_BACKEND": "carrier-pigeon"}, "SMS_BACKEND"),
        ({"EMAIL_BACKEND": "smtp"}, "EMAIL_BACKEND"),
        ({"SMS_BACKEND": "twilio"}, "TWILIO_ACCOUNT_SID"),
        ({"EMAIL_BACKEND": "sendgrid"}, "SENDGRID_API_KEY"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"PUBLIC_BASE_URL": "outreach.example.org"}, "PUBLIC_BASE_URL"),
        ({"DEFAULT_REGION": "XX"}, "DEFAULT_REGION"),
        ({"DEFAULT_TIMEZONE": "Mars/Olympus"}, "DEFAULT_TIMEZONE"),
        ({"TWILIO_ACCOUNT_SID": "nope"}, "TWILIO_ACCOUNT_SID"),
        ({"SANDBOX_FAILURE_RATE": "2"}, "SANDBOX_FAILURE_RATE"),
        (
            {
                "OUTREACH_ENV": "production",
                "SECRET_KEY": "k" * 40,
                "SMS_BACKEND": "twilio",
                "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
                "TWILIO_AUTH_TOKEN": "t",
            },
            "PUBLIC_BASE_URL",
        ),
    ],
)
def test_bad_settings_fail_with_a_message_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env, dotenv=False)


def test_production_accepts_a_real_secret() -> None:
    settings = Settings.from_env(
        {"OUTREACH_ENV": "production", "SECRET_KEY": "s" * 64, "PUBLIC_BASE_URL": "https://o.org/"},
        dotenv=False,
    )
    assert settings.is_production
    assert settings.public_base_url == "https://o.org"


def test_dotenv_file_is_read_and_environment_wins(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("DEFAULT_REGION=GB\nSMS_BACKEND=sandbox\n")  # type: ignore[operator]
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    monkeypatch.delenv("DEFAULT_REGION", raising=False)
    assert Settings.from_env().default_region == "GB"
    monkeypatch.setenv("DEFAULT_REGION", "CA")
    assert Settings.from_env().default_region == "CA"
