"""Sandbox providers: texts land in the outbox table, emails as .eml files, receipts simulated."""
