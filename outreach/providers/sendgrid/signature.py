"""SendGrid's signed event webhook: ECDSA P-256/SHA-256 over ``timestamp + raw body``.

Unsigned, forged, stale or future-dated posts are refused before anything parses the body.
"""

from __future__ import annotations

import base64
import binascii
import functools
from datetime import datetime

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from outreach.app.settings import Settings

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
DEFAULT_MAX_AGE = 600  # seconds a signed timestamp stays acceptable (replay window)
DEFAULT_MAX_SKEW = 60  # seconds a timestamp may be ahead of our clock


def event_public_key(settings: Settings) -> str | None:
    """The key SendGrid's signatures are checked with: the setting, else the sandbox's own."""
    if settings.sendgrid_event_public_key:
        return settings.sendgrid_event_public_key
    if settings.email_backend != "sandbox":
        return None
    from outreach.providers.sandbox.email import sandbox_event_keys  # noqa: PLC0415 - a cycle

    _private_key, public_key_b64 = sandbox_event_keys(settings)
    return str(public_key_b64) if public_key_b64 else None


@functools.lru_cache(maxsize=8)
def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key: base64 DER (as its settings page shows it) or PEM."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            der = base64.b64decode("".join(text.split()), validate=True)
            key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:  # binascii.Error is a ValueError
        raise ValueError(f"the SendGrid event public key cannot be read: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the SendGrid event public key is not an ECDSA P-256 key")
    return key


def signature_problem(
    public_key: str,
    *,
    payload: bytes,
    signature: str,
    timestamp: str,
    now: datetime,
    max_age: int = DEFAULT_MAX_AGE,
    max_skew: int = DEFAULT_MAX_SKEW,
) -> str | None:
    """Why a signed POST is refused, or None when the signature and its timestamp are good.

    Verifies exactly what SendGrid signs, ``timestamp + payload`` as bytes (the SDK helper,
    ``EventWebhook.verify_signature``, checks the same thing but takes the body as ``str``).
    Raises ValueError when the key itself is unusable (a configuration error, not a forgery).
    """
    key = load_public_key(public_key)
    timestamp = timestamp.strip()
    if not signature or not timestamp:
        return "missing signature or timestamp"
    if not timestamp.isascii() or not timestamp.isdigit():
        return "timestamp is not a number of seconds"
    try:
        decoded = base64.b64decode(signature.strip(), validate=True)
    except binascii.Error:
        return "signature is not base64"
    try:
        key.verify(decoded, timestamp.encode("ascii") + payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "bad signature"
    age = now.timestamp() - int(timestamp)
    if age > max_age:
        return f"stale timestamp ({int(age)} s old)"
    if -age > max_skew:
        return f"timestamp {int(-age)} s in the future"
    return None
