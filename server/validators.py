"""Validation rules shared by several contexts (phones, usernames, passwords)."""

from __future__ import annotations

import re

from marshmallow import ValidationError

MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,63}$")


def validate_mobile(value: str) -> None:
    """Mainland mobile number: 11 digits starting 13–19 (^1[3-9]\\d{9}$)."""
    if not MOBILE_RE.match(value or ""):
        raise ValidationError("Not a valid mainland mobile number (11 digits, 13x–19x).")


def validate_username(value: str) -> None:
    if not USERNAME_RE.match(value or ""):
        raise ValidationError(
            "3–64 characters: lower-case letters, digits, '.', '_' or '-', starting with a "
            "letter or digit."
        )
    # The login field reads a mobile-shaped name as a phone number: such a username could
    # never log in, and would look like someone else's phone.
    if MOBILE_RE.match(value):
        raise ValidationError("A username must not look like a mobile number.")


def password_problems(password: str, *personal: str | None) -> list[str]:
    """Why a password is too weak (empty list when it is acceptable)."""
    problems = []
    if len(password) < 10:
        problems.append("Use at least 10 characters.")
    if len(password) > 128:
        problems.append("Use at most 128 characters.")
    if not re.search(r"[A-Za-z]", password) or not re.search(r"\d", password):
        problems.append("Mix letters and digits.")
    lowered = password.lower()
    for item in personal:
        if item and len(item) >= 3 and item.lower() in lowered:
            problems.append("Do not include your username or phone number.")
            break
    if len(set(password)) < 4:
        problems.append("Use more different characters.")
    return problems
