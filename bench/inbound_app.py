"""The app ``bench/inbound_webhook.py`` serves under gunicorn: the real app plus one empty route.

``create_bench_app()`` is ``web.create_app()`` (settings from the environment, as in production)
with ``POST /bench/empty`` added in the same process: a minimal Flask view that answers the
empty TwiML ``<Response />`` the real webhook returns for a reply that needs no answer. The
difference between the two is the cost of the inbound hot path itself (form parsing, signature,
database transaction), measured on the same server, workers and connections.
"""

from __future__ import annotations

from flask import Flask, Response
from twilio.twiml.messaging_response import MessagingResponse

from web import create_app
from web.extensions import csrf


def create_bench_app() -> Flask:
    app = create_app()
    empty = str(MessagingResponse())  # byte for byte what the webhook answers with no reply

    @app.post("/bench/empty")
    @csrf.exempt
    def bench_empty() -> Response:
        return Response(empty, mimetype="text/xml")

    return app
