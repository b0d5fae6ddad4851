"""Every API endpoint, from the app's URL map: a token reaches exactly what its user's role gives.

The list of endpoints is not written here: a new endpoint is checked the day it is added, for a
stranger (401), for each role in the huddle it belongs to, and for an organizer of another
huddle (404, as if it did not exist).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from flask import Flask

from outreach.accounts import access
from outreach.app.services import Services
from outreach.campaigns import create_campaign
from outreach.campaigns.segments import save_segment
from outreach.models import accounts as a
from outreach.people import imports
from outreach.people import members as people
from outreach.people.huddles import get_huddle
from tests.web.api.conftest import Caller
from web.access import PUBLIC, SIGNED_IN, scope_of
from web.api.core import PREFIX

ROLES = {"admin": a.ADMIN, "lee": a.ORGANIZER, "rae": a.RESPONDER}


def api_routes(app: Flask) -> list[tuple[str, str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(PREFIX + "/"):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, rule.rule, method))
    return found


def _objects(services: Services) -> dict[str, str]:
    """One of everything in huddle logan, for the URLs' variables."""
    with services.sessions.begin() as session:
        logan = get_huddle(session, "logan")
        member, _ = people.add_member(
            session, logan, people.Changes(phone="6175550101"), consent_channels=["sms"], actor="t"
        )
        campaign = create_campaign(
            session, huddle_slug="logan", channel="sms", segment_filter="", body="Hi", name="c"
        )
        save_segment(session, huddle_id=logan.id, name="everyone", filter_text="")
        session.flush()
        ids = {"member_id": member.id, "campaign_id": campaign.id}
    import_id = imports.store(
        services.sessions,
        huddle_slug="logan",
        upload=io.BytesIO(b"phone\n6175550102\n"),
        source_name="a.csv",
    )
    return {"slug": "logan", "import_id": str(import_id), "name": "everyone"} | {
        k: str(v) for k, v in ids.items()
    }


def _path(rule: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).rpartition(":")[2]
        return values.get(name, "1")

    return re.sub(r"<([^>]+)>", value, rule).removeprefix(PREFIX)


def test_every_endpoint_says_what_it_needs(app: Flask) -> None:
    scopes = {
        endpoint: scope_of(app.view_functions[endpoint]) for endpoint, _, _ in api_routes(app)
    }
    assert scopes, "the API has endpoints"
    assert {e for e, s in scopes.items() if s is None} == set()
    assert set(scopes.values()) <= {PUBLIC, SIGNED_IN, *access.CAPABILITIES}


def test_a_stranger_gets_401_from_every_endpoint_but_the_document(
    app: Flask, tokens_by_user: dict[str, str]
) -> None:
    client = app.test_client()
    for endpoint, rule, method in api_routes(app):
        response = client.open(re.sub(r"<[^>]+>", "1", rule), method=method, json={})
        if scope_of(app.view_functions[endpoint]) == PUBLIC:
            assert response.status_code == 200, endpoint
        else:
            assert response.status_code == 401, (endpoint, method, response.status_code)
            assert response.json["error"]["code"] == "unauthorized"


def test_each_role_reaches_exactly_its_capabilities_and_another_huddle_sees_nothing(
    app: Flask, api_as: Callable[[str], Caller], services: Services
) -> None:
    values = _objects(services)
    routes = [r for r in api_routes(app) if scope_of(app.view_functions[r[0]]) != PUBLIC]
    checked = 0
    for endpoint, rule, method in routes:
        scope = scope_of(app.view_functions[endpoint])
        in_huddle = "<slug>" in rule
        for name, role in ROLES.items():
            allowed = scope == SIGNED_IN or scope in access.ROLE_CAPABILITIES[role]
            status = api_as(name)(method, _path(rule, values), json={}).status_code
            if allowed:
                assert status not in (401, 403, 404, 500), (name, endpoint, method, status)
            else:
                assert status == 404, (name, endpoint, method, status)
            checked += 1
        if in_huddle:  # mo organizes moab: logan's objects do not exist for mo
            status = api_as("mo")(method, _path(rule, values), json={}).status_code
            assert status == 404, ("mo", endpoint, method, status)
    assert checked >= 3 * len(routes)
