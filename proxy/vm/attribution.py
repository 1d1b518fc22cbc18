"""Who said a message and when: what a page carries besides its text.

A question about a conversation names people ("What instrument does Maya play?") and times
("When did Jon adopt his dog?"), while a message holds only its words. So each message page
keeps:
- its speaker: the message's `name` (OpenAI's field for multi-party chats) when the client
  sends one, else nothing (the role alone says little: every turn has one);
- when it was said: the date a message states at its very start ("[Session date: 8 May
  2023]", "It's March 13, 2022 and ...", "2023/05/07 (Sun) 06:52"), carried to every later
  message until another date is stated that way. Chat logs state a session's date once, at
  its start; the messages after it were said that day too.
Both are indexed with the text and shown with it in the context.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_NAME = 64
# A date at the very start of a message ("[Session date: ...", "8 May 2023: ...") names its
# session, and so does one a little later that is said to be now ("Can you believe it's 8
# May already?", "Writing this on Tuesday, May 9, 2023"); any other is a date the message
# talks about ("the flight is on 12 May 2023").
DATE_AT_START = 24
DATE_SAID_NOW_WITHIN = 100
_NOW = re.compile(r"\b(?:it'?s|it is|today(?:'s| is)?|date:?|this on(?: \w+,)?|now)\W*$", re.I)
_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_DATE = re.compile(
    r"\b(?:"
    r"\d{4}[/-]\d{1,2}[/-]\d{1,2}(?:\s*\([A-Za-z]{3}\))?(?:\s+\d{1,2}:\d{2})?"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTHS},?\s+\d{{4}}"
    rf"|{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
    r")(?:,?\s+(?:at\s+)?\d{1,2}(?::\d{2})?\s*[ap]\.?m\.?)?",
    re.IGNORECASE,
)
_NAME_CHARS = re.compile(r"[\x00-\x1f<>\[\]]")
# What every _DATE match holds: a year, and either a dash or slash after it or a month's
# first three letters. Most messages have neither near their start, and checking for them
# costs a fraction of _DATE's search, which tries its alternatives at every position.
_YEAR = re.compile(r"\d{4}")
_YEAR_DASHED = re.compile(r"\d{4}[/-]")
_MONTH_STARTS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                 "dec")  # fmt: skip


def speaker_of(message: Mapping[str, Any]) -> str:
    """The message's `name`, cleaned for showing in the context; "" when it has none."""
    name = message.get("name")
    if not isinstance(name, str):
        return ""
    return _NAME_CHARS.sub("", name).strip()[:MAX_NAME]


def without_dates(text: str) -> str:
    """`text` with the dates it states taken out (a summary names them apart)."""
    return _DATE.sub(" ", text)


def stated_date(text: str) -> str:
    """The date a message states at its start, as written there; "" when it states none."""
    window = DATE_SAID_NOW_WITHIN + 40
    if not _may_hold_date(text, window):
        return ""
    match = _DATE.search(text, 0, window)
    if match is None or match.start() > DATE_SAID_NOW_WITHIN:
        return ""
    if match.start() > DATE_AT_START and not _NOW.search(text, 0, match.start()):
        return ""
    return match.group(0).strip()


def _may_hold_date(text: str, end: int) -> bool:
    """Whether `text[:end]` may hold a _DATE match (False: it cannot). casefold, not lower:
    IGNORECASE also matches the letters whose case folds to a month's (the long s of
    "\u017fep")."""
    if _YEAR.search(text, 0, end) is None:
        return False
    if _YEAR_DASHED.search(text, 0, end) is not None:
        return True
    head = text[:end].casefold()
    return any(month in head for month in _MONTH_STARTS)
