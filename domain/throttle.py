"""Per-account and per-address throttling of the auth flows (the per-IP limits are the api's).

The api's Redis rate limiter is the ``Throttle`` here (structurally): ``check`` refuses (429 with Retry-After)
while a subject is over its bucket's limit, ``record`` counts one failure. Counting failures, not requests,
lets the owner in while nobody attacks the account, and refuses even the right password or code once someone
has (across IPs: the subject is the account or address, not the caller).
"""

from __future__ import annotations

import unicodedata
from typing import Protocol

from domain import rules

# Bucket names (RATE_LIMITS, storage/config.py DEFAULT_RATE_LIMITS).
MAIL_PER_EMAIL = "auth_email"  # code and notice mails per address
LOGIN_PER_ACCOUNT = "login_account"  # failed logins per account
CODE_PER_EMAIL = "code_email"  # wrong codes per address, across every flow (signup and reset)


class Throttle(Protocol):
    async def check(self, bucket: str, subject: str) -> None: ...

    async def record(self, bucket: str, subject: str) -> None: ...


def address_key(normalized_email: str) -> str:
    """The subject a per-address limit counts: the address as mail goes to it (``rules.normalize_email``:
    IDNA/UTS-46 domain, lower case), then NFKC and case-folded, so that fullwidth letters, an ideographic full
    stop (``example。com``) or a fullwidth local part never earn a fresh quota for the same mailbox."""
    return unicodedata.normalize("NFKC", normalized_email).casefold()


def login_key(login_raw: str) -> str:
    """The subject for failed logins of a login that names no account (an account's is its user id)."""
    value = unicodedata.normalize("NFKC", login_raw.strip()).casefold()
    if "@" in value:
        try:
            return "email:" + address_key(rules.normalize_email(value))
        except rules.RuleError:
            pass
    return "login:" + value[:320]
