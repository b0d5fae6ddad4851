from __future__ import annotations

from flask.testing import FlaskClient

from outreach.app.services import Services
from outreach.sms import spool
from outreach.sms.inbound import InboundSms
from web import create_app


def test_healthz_reports_database_and_redis(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok"},
        "twilio_spool": {"waiting": 0, "set_aside": 0},
    }


def test_healthz_counts_the_twilio_spool_without_failing_for_it(
    client: FlaskClient, services: Services
) -> None:
    """Spooled webhooks are safe, not an outage: a load balancer keeps sending traffic."""
    sms = InboundSms("SM" + "1" * 32, "+16175550111", "+16175550100", "hello")
    spool.spool_text(services.redis, sms)
    services.redis.rpush(spool.DEAD, "{}")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["twilio_spool"] == {"waiting": 1, "set_aside": 1}


def test_healthz_says_which_part_is_down(services: Services) -> None:
    import redis

    broken = Services(
        services.settings,
        services.engine,
        services.sessions,
        redis.Redis(unix_socket_path="/nonexistent/redis.sock"),
    )
    response = create_app(services.settings, broken).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "ok"
    assert response.json["checks"]["redis"].startswith("error")
