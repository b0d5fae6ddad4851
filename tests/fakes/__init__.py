"""Local servers that answer like Twilio and SendGrid, for driving the real SDKs over loopback.

``FakeTwilio`` (``twilio_server``) and ``FakeSendGrid`` (``sendgrid_server``) are context managers
that start on ``127.0.0.1`` on an ephemeral port; ``fake.client()`` returns the official SDK client
pointed at them. The module docstrings say how the SDKs are pointed and what is validated.
"""

from tests.fakes.sendgrid_server import FakeSendGrid, SentEmail
from tests.fakes.twilio_server import FakeTwilio, LoopbackTwilioHttpClient, RecordedRequest

__all__ = ["FakeSendGrid", "FakeTwilio", "LoopbackTwilioHttpClient", "RecordedRequest", "SentEmail"]
