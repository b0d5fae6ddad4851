"""Texts coming in: inbound messages (STOP, joins, replies), delivery receipts, the spool.

``inbound/`` decides what a text means and applies it; ``receipts`` moves deliveries forward;
``error_actions`` says what a Twilio error code means for the number; ``spool`` keeps what the
database could not take.
"""
