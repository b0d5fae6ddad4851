"""Organizer accounts: passwords, roles and what each may see, API tokens, the audit log."""
