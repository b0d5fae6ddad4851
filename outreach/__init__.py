"""Huddle Outreach: the domain. Imports neither Flask nor RQ, nor the adapters around it.

Packages, lowest first (import-linter keeps the order: see ``pyproject.toml``):

- ``app``: process wiring: settings, services, database, clock, embedded Redis, resources
- ``models`` and ``migrations``: the schema
- ``addresses``: phone numbers and email addresses: normalize, validate, mask
- ``consent``, ``messages``: the ledger and every subscription and suppression write; what we say
- ``providers``, ``people``: Twilio, SendGrid and the sandbox; huddles and member lists
- ``sms``, ``email``: what comes in: texts (STOP lives here), receipts, email events
- ``campaigns``, ``join``: sending campaigns; the public join flow
"""
