"""Accounts on the wire: what /auth takes (the signup and reset flows, login, refresh) and answers (flows, tokens),
what /me takes (PATCH /me, the avatar), and the field types of what a client types about itself (email,
username, name, bio, password, birthday).

A field's real constraints (``msgspec.Meta`` limits) are the ones the body decoder enforces: a type and a length
that bounds the work. Its pattern documents the rule (domain/rules.py) that runs after decoding and gives its own
reason in ``details.fields`` (domain/wire/text.py): so a well-formed but wrong value is refused by the rule.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

import msgspec

from domain import rules
from domain.wire.base import Id, Inbound, Timestamp, Wire
from domain.wire.text import (
    BIO_PATTERN,
    BIRTHDAY_PATTERN,
    CODE_PATTERN,
    EMAIL_PATTERN,
    FLOW_ID_PATTERN,
    NAME_PATTERN,
    NO_NUL_PATTERN,
    USERNAME_PATTERN,
)
from domain.wire.users import Me

# ------------------------------------------------------------ field types of request bodies

Email = Annotated[
    str,
    msgspec.Meta(
        max_length=254,
        description="An email address (surrounding spaces are trimmed; compared case-insensitively); not at a "
        "special-use domain (.test, .invalid, .local, .localhost, .onion, .arpa).",
        extra_json_schema={"format": "email", "pattern": EMAIL_PATTERN},
    ),
]
FlowId = Annotated[
    str,
    msgspec.Meta(
        max_length=32,
        description="The `flow_id` the flow was started with.",
        extra_json_schema={"pattern": FLOW_ID_PATTERN},
    ),
]
Code = Annotated[
    str,
    msgspec.Meta(
        max_length=16,
        description="The 6-digit code from the mail. Anything else counts as a wrong attempt (422 `invalid_code`).",
        extra_json_schema={"pattern": CODE_PATTERN},
    ),
]
# A username as a client types it (any case, surrounding spaces trimmed); the answers carry it normalized
# (domain/wire/base.py ``Username``).
UsernameText = Annotated[
    str,
    msgspec.Meta(
        max_length=100,
        description="3-30 characters of a-z, 0-9, `_` and `.`; case-insensitive (stored lower-case); "
        "surrounding spaces are trimmed.",
        extra_json_schema={"pattern": USERNAME_PATTERN},
    ),
]
Name = Annotated[
    str,
    msgspec.Meta(
        max_length=200,
        description=f"1-{rules.NAME_MAX} characters on one line, no control characters; "
        "surrounding spaces are trimmed.",
        extra_json_schema={"pattern": NAME_PATTERN},
    ),
]
Bio = Annotated[
    str,
    msgspec.Meta(
        max_length=2000,
        description=f"Up to {rules.BIO_MAX} characters, newlines and tabs allowed, no other control characters; "
        "surrounding whitespace is trimmed.",
        extra_json_schema={"pattern": BIO_PATTERN},
    ),
]
Password = Annotated[
    str,
    msgspec.Meta(
        max_length=1024,
        description=f"{rules.PASSWORD_MIN}-{rules.PASSWORD_MAX} characters with at least 4 different ones, mixing "
        "letters with digits or symbols unless at least 16 long; not a common password; not containing the "
        "username or the email's local part (422 with the reason in `details.fields`).",
        extra_json_schema={"minLength": rules.PASSWORD_MIN, "maxLength": rules.PASSWORD_MAX, "pattern": NO_NUL_PATTERN},
    ),
]
LoginText = Annotated[
    str, msgspec.Meta(max_length=320, description="Email or username.", extra_json_schema={"pattern": NO_NUL_PATTERN})
]
LoginPassword = Annotated[str, msgspec.Meta(max_length=1024, extra_json_schema={"pattern": NO_NUL_PATTERN})]
RefreshToken = Annotated[str, msgspec.Meta(max_length=512, extra_json_schema={"pattern": NO_NUL_PATTERN})]
Birthday = Annotated[
    str,
    msgspec.Meta(
        description=f"YYYY-MM-DD. You must be at least {rules.MIN_AGE_YEARS} and at most {rules.MAX_AGE_YEARS} "
        "years old; the pattern lists the years that meet both rules until 2050, and the server also accepts "
        "any other date that meets them.",
        extra_json_schema={"format": "date", "pattern": BIRTHDAY_PATTERN},
    ),
]

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def day(value: str) -> dt.date:
    """A date on the wire ("YYYY-MM-DD": not a timestamp, not another format) as a date; ``rules.RuleError``
    (the field's reason) for anything else."""
    if not _ISO_DATE.fullmatch(value):
        raise rules.RuleError("must be a date as YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise rules.RuleError("is not a valid date") from None


# ------------------------------------------------------------ bodies


class SignupStart(Inbound, frozen=True, kw_only=True):
    email: Email


class CodeCheck(Inbound, frozen=True, kw_only=True):
    flow_id: FlowId
    code: Code


class SignupComplete(Inbound, frozen=True, kw_only=True):
    flow_id: FlowId
    username: UsernameText
    name: Name
    password: Password
    birthday: Birthday
    bio: Bio | None = None


class Login(Inbound, frozen=True, kw_only=True):
    login: LoginText
    password: LoginPassword


class RefreshBody(Inbound, frozen=True, kw_only=True):
    refresh_token: RefreshToken


class ResetStart(Inbound, frozen=True, kw_only=True):
    email: Email


class ResetComplete(Inbound, frozen=True, kw_only=True):
    flow_id: FlowId
    new_password: Password


class PatchMe(Inbound, frozen=True, kw_only=True):
    """Only the fields sent change. `name`, `username` and `birthday` may not be null; a null `bio` clears it."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    bio: Bio | msgspec.UnsetType | None = msgspec.UNSET
    birthday: Birthday | msgspec.UnsetType = msgspec.UNSET
    username: UsernameText | msgspec.UnsetType = msgspec.UNSET


class SetAvatar(Inbound, frozen=True, kw_only=True):
    media_id: Annotated[Id, msgspec.Meta(description="A media id from POST /media")]


# ------------------------------------------------------------ answers


class FlowStarted(Wire, frozen=True, kw_only=True):
    """A flow was started: a code is on its way (or, where no code can complete it, nothing that says so)."""

    flow_id: Id
    expires_at: Timestamp


class FlowVerified(Wire, frozen=True, kw_only=True):
    flow_id: Id
    email: str


BEARER: Literal["Bearer"] = "Bearer"  # the token scheme


class Tokens(Wire, frozen=True, kw_only=True):
    """`expires_in`: seconds until the access token expires. The refresh token is single-use: each refresh
    answers a new one."""

    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: Annotated[int, msgspec.Meta(ge=1)]


class UserWithTokens(Wire, frozen=True, kw_only=True):
    user: Me
    tokens: Tokens


class TokensOnly(Wire, frozen=True, kw_only=True):
    tokens: Tokens


class ResetDone(Wire, frozen=True, kw_only=True):
    password_changed: bool
