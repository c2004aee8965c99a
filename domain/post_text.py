"""Mentions and hashtags in a caption or comment.

* ``@username``: 3-30 of ``a-z 0-9 _ .`` after a character that is not a word character, ``@`` or ``.`` (so an
  e-mail address such as ``x@gmail.com`` is no mention); trailing dots are punctuation, not part of the name.
  Matched case-insensitively; only existing users count (the caller looks them up).
* ``#tag``: unicode letters, digits and underscore (1-100), after a non-word character; stored lower-case (NFKC),
  and a tag of digits only is no tag (``#1`` is a number).
"""

from __future__ import annotations

import re
import unicodedata

MAX_MENTIONS = 20
MAX_TAGS = 30
_MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9_.]{3,30})(?![A-Za-z0-9_])")
_TAG = re.compile(r"(?<![\w#&])#(\w{1,100})(?!\w)")
_WORD = re.compile(r"[^\W_]+")
MAX_WORDS = 300


def mentions(text: str) -> list[str]:
    """Lower-case usernames mentioned, first occurrence order, at most MAX_MENTIONS."""
    found: list[str] = []
    for match in _MENTION.finditer(text):
        name = match.group(1).rstrip(".").lower()
        if len(name) >= 3 and name not in found:
            found.append(name)
        if len(found) == MAX_MENTIONS:
            break
    return found


def hashtags(text: str) -> list[str]:
    """Lower-case hashtags, first occurrence order, at most MAX_TAGS."""
    found: list[str] = []
    for match in _TAG.finditer(unicodedata.normalize("NFKC", text)):
        tag = match.group(1).lower()
        if tag.isdigit() or tag in found:
            continue
        found.append(tag)
        if len(found) == MAX_TAGS:
            break
    return found


def normalize_tag(value: str) -> str | None:
    """A hashtag from a URL path (with or without ``#``), or None when it cannot be one."""
    tag = unicodedata.normalize("NFKC", value).removeprefix("#").lower()
    if not tag or len(tag) > 100 or tag.isdigit() or not re.fullmatch(r"\w+", tag):
        return None
    return tag


def words(text: str) -> list[str]:
    """The distinct plain words of a caption, lower-case with accents folded (what interest keywords match),
    first occurrence order, at most MAX_WORDS. A #hashtag's word counts too (``#travel`` holds ``travel``)."""
    folded = "".join(
        c for c in unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text)) if not unicodedata.combining(c)
    )
    found: dict[str, None] = {}
    for match in _WORD.finditer(folded.lower()):
        found.setdefault(match.group(0))
        if len(found) == MAX_WORDS:
            break
    return list(found)
