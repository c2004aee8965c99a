"""Patterns that say in the schema what the text rules enforce (domain/rules.py), so that a schema-valid value is
accepted and a schema-invalid one refused (schemathesis checks both ways). They document the rules; they are not
a second implementation: the rules run after a body is decoded, and give the reasons in ``details.fields``.
Surrounding whitespace is allowed where the rule trims it. Patterns use only syntax that ECMA-262, Python and Rust
regexes read alike.
"""

from __future__ import annotations

from domain import rules

# What Python's str.strip() removes that is not already a control character excluded below.
_WS = r"[\s\x1c-\x1f\x85]"
# Control characters (Unicode Cc): never allowed, except the tab (and the newline in multi-line text).
_CC_LINE = r"\x00-\x08\x0a-\x1f\x7f-\x9f"
_CC_TEXT = r"\x00-\x08\x0b-\x1f\x7f-\x9f"


def _trimmed(inner: str) -> str:
    return f"^{_WS}*{inner}{_WS}*$"


USERNAME_PATTERN = _trimmed(r"[A-Za-z0-9_.]{3,30}")
NAME_PATTERN = _trimmed(rf"[^\s{_CC_LINE}](?:[^{_CC_LINE}]{{0,{rules.NAME_MAX - 2}}}[^\s{_CC_LINE}])?")
BIO_PATTERN = _trimmed(rf"[^{_CC_TEXT}]{{0,{rules.BIO_MAX}}}")


def text_pattern(max_len: int, *, allow_empty: bool = False) -> str:
    """Text as ``rules.clean_text`` takes it: no control characters but newline and tab, at most ``max_len``
    characters once trimmed, and (unless ``allow_empty``) at least one that is not a space."""
    if allow_empty:
        return _trimmed(rf"[^{_CC_TEXT}]{{0,{max_len}}}")
    return _trimmed(rf"[^\s{_CC_TEXT}](?:[^{_CC_TEXT}]{{0,{max_len - 2}}}[^\s{_CC_TEXT}])?")


# Birthdays: YYYY-MM-DD, at least MIN_AGE_YEARS and at most MAX_AGE_YEARS old on the day of the request. A
# schema cannot move with the calendar, so the pattern admits a fixed range of years that meets both rules
# every day until 2050 (1920-2009); the server also accepts the other dates that meet them.
BIRTHDAY_PATTERN = r"^(19[2-9][0-9]|200[0-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"


def _letters(excluded: str = "") -> str:
    """A character class of the ASCII letters, either case, but ``excluded`` (as ranges: ``[B-SU-Zb-su-z]``)."""
    runs: list[str] = []
    kept = [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in excluded]
    start = prev = kept[0]
    for c in [*kept[1:], None]:
        if c is not None and ord(c) == ord(prev) + 1:
            prev = c
            continue
        runs.append(start if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    return "[" + "".join(r.upper() for r in runs) + "".join(runs) + "]"


def _letters_but(words: set[str], n: int) -> str | None:
    """A regex (no lookaround) for the strings of ``n`` ASCII letters, any case, that are none of ``words``."""
    if not words:
        return f"{_letters()}{{{n}}}" if n else ""
    if n == 0:
        return None
    firsts = sorted({w[0] for w in words})
    alternatives = [_letters("".join(firsts)) + (f"{_letters()}{{{n - 1}}}" if n > 1 else "")]
    for c in firsts:
        rest = _letters_but({w[1:] for w in words if w[0] == c}, n - 1)
        if rest is not None:
            alternatives.append(f"[{c.upper()}{c}]{rest}")
    return "(?:" + "|".join(alternatives) + ")"


def _top_level_domain(special: tuple[str, ...]) -> str:
    by_length = {len(w) for w in special}
    parts = [f"{_letters()}{{1,{min(by_length) - 1}}}"]
    for n in range(min(by_length), max(by_length) + 1):
        parts.append(_letters_but({w for w in special if len(w) == n}, n) or "")
    parts.append(f"{_letters()}{{{max(by_length) + 1},63}}")
    return "(?:" + "|".join(parts) + ")"


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9]{1,20}(?:-[A-Za-z0-9]{1,20}){0,2}"
# What the email rule (email-validator) accepts, narrowed to plain ASCII so that a regex with no lookaround can
# say it: a dot-atom local part of at most 64 characters, then at least two labels, the last one letters only and
# not a special-use name (RFC 6761: .arpa, .invalid, .local, .localhost, .onion, .test).
EMAIL_PATTERN = (
    rf"^{_ATEXT}{{1,30}}(?:\.{_ATEXT}{{1,16}}){{0,2}}@(?:{_LABEL}\.){{1,4}}"
    + _top_level_domain(("arpa", "invalid", "local", "localhost", "onion", "test"))
    + "$"
)
NO_NUL_PATTERN = r"^[^\x00]*$"  # every string field: PostgreSQL text cannot hold a NUL (api/schemas/common.py)
FLOW_ID_PATTERN = r"^[0-9]{1,19}$"
CODE_PATTERN = r"^[0-9]{6}$"
