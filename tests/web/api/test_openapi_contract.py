"""schemathesis against the app with an admin's token: every operation of the OpenAPI document,
with generated inputs; no 500s, and every response matches the document.

The checks are schemathesis's own (server errors, status codes, content types, response schemas,
headers, invalid input accepted); a failure names the request, reproducible with ``curl``. Left
out: "schema-valid input accepted", since a cursor or a segment filter can be a well-formed
string the API still refuses (400, 422) — that is what the language and the cursors are for.
"""

from __future__ import annotations

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from outreach.app.services import Services
from outreach.people import members as people
from outreach.people.huddles import get_huddle

EXAMPLES = 12  # per operation: enough to reach every validation branch of a request schema


@pytest.fixture
def api_schema(app: Flask, tokens_by_user: dict[str, str], services: Services) -> OpenApiSchema:
    with services.sessions.begin() as session:  # someone to find, so reads get past the 404
        view, _ = people.add_member(
            session,
            get_huddle(session, "logan"),
            people.Changes(phone="6175550101", email="a@example.org", first_name="Ann"),
            consent_channels=["sms"],
            actor="test",
        )
    ids["member_id"] = view.id
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


ids: dict[str, object] = {}


def _ours(case: schemathesis.Case) -> schemathesis.Case:
    """Random slugs and ids only ever find nothing: pin them to a huddle and a member we have,
    so the generated queries and bodies reach the endpoints' own code."""
    if case.path_parameters:
        case.path_parameters = {
            name: {"slug": "logan", **ids}.get(name, value)
            for name, value in case.path_parameters.items()
        }
    return case


def test_every_operation_answers_as_documented(
    api_schema: OpenApiSchema, tokens_by_user: dict[str, str]
) -> None:
    """(schemathesis's pytest plugin needs a pytest older than ours: the operations are looped
    here, each one a hypothesis run of its own.)"""
    headers = {"Authorization": f"Bearer {tokens_by_user['admin']}"}
    labels = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)

        @given(case=operation.as_strategy().map(_ours))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_as_documented(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        answers_as_documented()
    assert "POST /api/v1/huddles/{slug}/members" in labels
