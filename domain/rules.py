"""Field rules shared by every write path (HTTP and actors). Pure functions, unit-tested."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from email_validator import EmailNotValidError, validate_email

from domain.errors import ValidationFailed

USERNAME_RE = re.compile(r"^[a-z0-9_.]{3,30}$")
NAME_MAX = 50
BIO_MAX = 300
PASSWORD_MIN = 8
PASSWORD_MAX = 128
MIN_AGE_YEARS = 13
MAX_AGE_YEARS = 130

# A short list of the most common passwords; a real deployment may add a breached-password check.
COMMON_PASSWORDS = frozenset(
    """password password1 password123 12345678 123456789 1234567890 qwertyui qwerty123 iloveyou
    11111111 00000000 abc12345 abcdefgh letmein1 welcome1 admin123 sunshine princess football
    baseball dragon12 monkey12 passw0rd trustno1 qwertyuiop 1q2w3e4r 87654321 asdfghjk""".split()
)


class RuleError(ValueError):
    """A field broke a rule; the message is the client-facing reason."""


def normalize_email(value: str) -> str:
    value = value.strip()
    if len(value) > 254:
        raise RuleError("must be at most 254 characters")
    try:
        info = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise RuleError("must be a valid email address") from exc
    return info.normalized.lower()


def normalize_username(value: str) -> str:
    value = value.strip().lower()
    if not USERNAME_RE.match(value):
        raise RuleError("must be 3-30 characters of a-z, 0-9, _ and .")
    return value


def clean_text(value: str, *, field_max: int, allow_empty: bool, single_line: bool = False) -> str:
    value = unicodedata.normalize("NFC", value).strip()
    if single_line and any(ch in value for ch in "\r\n"):
        raise RuleError("must be a single line")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in value):
        raise RuleError("must not contain control characters")
    if not value and not allow_empty:
        raise RuleError("must not be empty")
    if len(value) > field_max:
        raise RuleError(f"must be at most {field_max} characters")
    return value


def check_name(value: str) -> str:
    return clean_text(value, field_max=NAME_MAX, allow_empty=False, single_line=True)


def check_bio(value: str) -> str:
    return clean_text(value, field_max=BIO_MAX, allow_empty=True)


def check_birthday(value: dt.date, today: dt.date | None = None) -> dt.date:
    today = today or dt.datetime.now(dt.UTC).date()
    if value > today:
        raise RuleError("must not be in the future")
    if _years_between(value, today) < MIN_AGE_YEARS:
        raise RuleError(f"you must be at least {MIN_AGE_YEARS} years old")
    if _years_between(value, today) > MAX_AGE_YEARS:
        raise RuleError("is not a plausible birthday")
    return value


def _years_between(born: dt.date, today: dt.date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def check_password(value: str, *, username: str = "", email: str = "") -> str:
    if len(value) < PASSWORD_MIN:
        raise RuleError(f"must be at least {PASSWORD_MIN} characters")
    if len(value) > PASSWORD_MAX:
        raise RuleError(f"must be at most {PASSWORD_MAX} characters")
    lowered = value.lower()
    if lowered in COMMON_PASSWORDS:
        raise RuleError("is too common")
    if len(set(value)) < 4:
        raise RuleError("is too simple")
    local = email.split("@", 1)[0].lower()
    if (username and username.lower() in lowered) or (len(local) >= 4 and local in lowered):
        raise RuleError("must not contain your username or email")
    classes = sum(
        [
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        ]
    )
    if classes < 2 and len(value) < 16:
        raise RuleError("must mix letters with digits or symbols (or be at least 16 characters)")
    return value


def check_profile_changes(raw: dict[str, Any]) -> dict[str, Any]:
    """A PATCH /me body's fields (already restricted to known keys), checked: column -> value, or
    ``ValidationFailed`` naming each bad field."""
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    checks: dict[str, Callable[[Any], Any]] = {
        "name": check_name,
        "bio": lambda v: check_bio(v or ""),
        "username": normalize_username,
        "birthday": check_birthday,
    }
    for key, value in raw.items():
        if value is None and key != "bio":
            errors[key] = "must not be null"
            continue
        try:
            changes[key] = checks[key](value)
        except RuleError as exc:
            errors[key] = str(exc)
        except KeyError:
            errors[key] = "is not a known field"
    if errors:
        raise ValidationFailed(errors)
    return changes
