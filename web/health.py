"""``/healthz``: is the database reachable, is Redis reachable. For load balancers and humans.

With Redis up it also counts the Twilio webhooks spooled while the database was away
(``outreach.sms.spool``): for monitoring, not for the status, since they are kept safe.
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from outreach.sms import spool
from web.access import public
from web.extensions import services

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
@public("the platform's health check: up or down, nothing more")
def healthz() -> ResponseReturnValue:
    svc = services()
    checks: dict[str, str] = {}
    try:
        with svc.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - a health check reports any failure
        log.warning("healthz: database unreachable: %s", exc)
        checks["database"] = f"error: {type(exc).__name__}"
    spooled: dict[str, int] | None = None
    try:
        svc.redis.ping()
        checks["redis"] = "ok"
        spooled = {
            "waiting": spool.waiting(svc.redis),
            "set_aside": int(svc.redis.llen(spool.DEAD)),
        }
    except Exception as exc:  # noqa: BLE001
        log.warning("healthz: redis unreachable: %s", exc)
        checks["redis"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    body: dict[str, object] = {"status": "ok" if healthy else "error", "checks": checks}
    if spooled is not None:
        body["twilio_spool"] = spooled
    return jsonify(body), 200 if healthy else 503
