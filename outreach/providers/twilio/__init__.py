"""Twilio: the SMS transport over the official SDK, webhook signatures, the error-code policy."""
