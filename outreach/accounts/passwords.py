"""Passwords, hashed with argon2id (argon2-cffi's defaults, the RFC 9106 low-memory profile)."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 10
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Checked when the email is unknown, so a wrong email costs what a wrong password does.

    Made on first use: an argon2 hash takes 64 MiB and a tenth of a second, which no command
    that never signs anybody in should pay.
    """
    return _hasher.hash("not anybody's password")


class WeakPassword(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
    return _hasher.hash(password)


def verify(stored: str | None, password: str, hasher: PasswordHasher | None = None) -> bool:
    """True if ``password`` matches; with no stored hash, the same work for a False."""
    try:
        return (hasher or _hasher).verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)
