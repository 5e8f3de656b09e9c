"""RFC 5545 recurrence rules, read by python-dateutil: checking one (`normalize_recurrence`)
and finding when a recurring task's next occurrence is due (`next_due`; see
`parley.tasks.recurrence` for when that is). Rules are evaluated in UTC, and each search for an
occurrence is bounded (ten years ahead), whatever the rule.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta

from dateutil.rrule import rrule, rrulestr

from parley.core.db import utcnow
from parley.tasks.models import RECURRENCE_MAX_CHARS, Task

logger = logging.getLogger(__name__)

FREQUENCIES = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY")
MAX_INTERVAL = 1000
# How far ahead a rule's next occurrence is looked for (a rule with none is refused).
HORIZON = timedelta(days=366 * 10)
SHIFTED_LAST_YEAR = 9989
_PART = re.compile(r"^([A-Z]+)=([A-Z0-9,+\-:TZ]+)$")
_DAY_FILTERS = {"BYMONTH", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO"}
_KNOWN = {
    "FREQ",
    "INTERVAL",
    "UNTIL",
    "WKST",
    "BYSETPOS",
    "BYMONTH",
    "BYMONTHDAY",
    "BYYEARDAY",
    "BYWEEKNO",
    "BYDAY",
    "BYHOUR",
    "BYMINUTE",
    "BYSECOND",
}


def normalize_recurrence(value: str) -> str:
    """The rule in its stored form (upper case, no `RRULE:` prefix), checked.

    Raises:
        ValueError: not an RRULE Parley can follow (with what is wrong, for a 422).
    """
    text = value.strip().upper()
    if text.startswith("RRULE:"):
        text = text[len("RRULE:") :]
    if not text or len(text) > RECURRENCE_MAX_CHARS:
        raise ValueError(f"a recurrence has 1 to {RECURRENCE_MAX_CHARS} characters")
    parts: dict[str, str] = {}
    for part in text.split(";"):
        match = _PART.match(part.strip())
        if match is None:
            raise ValueError(f"not an RRULE part: {part.strip()[:40]!r} (write NAME=VALUE)")
        name, setting = match.groups()
        if name == "COUNT":
            raise ValueError("COUNT is not supported: end a recurrence with UNTIL")
        if name not in _KNOWN:
            raise ValueError(f"unknown RRULE part {name}")
        if name in parts:
            raise ValueError(f"{name} is given twice")
        parts[name] = setting
    if parts.get("FREQ") not in FREQUENCIES:
        raise ValueError(f"FREQ must be one of {', '.join(FREQUENCIES)}")
    if parts["FREQ"] == "HOURLY" and _DAY_FILTERS & parts.keys():
        # Searched hour by hour, an hourly rule of rare days would cost a second or more.
        raise ValueError("an HOURLY rule may not use BYMONTH, BYMONTHDAY, BYYEARDAY or BYWEEKNO")
    interval = parts.get("INTERVAL", "1")
    if not interval.isdigit() or not 1 <= int(interval) <= MAX_INTERVAL:
        raise ValueError(f"INTERVAL must be 1 to {MAX_INTERVAL}")
    rule = ";".join(f"{name}={setting}" for name, setting in parts.items())
    now = utcnow()
    try:
        _rule(rule, now)
    except (ValueError, OverflowError, TypeError) as exc:
        raise ValueError(f"not an RFC 5545 RRULE: {exc}") from exc
    if "UNTIL" not in parts and first_after(rule, now, now) is None:
        raise ValueError("this rule has no occurrence in the next ten years")
    return rule


def _rule(rule: str, dtstart: datetime) -> rrule:
    parsed = rrulestr(rule, dtstart=dtstart.replace(microsecond=0))
    if not isinstance(parsed, rrule):  # a set comes only from several lines, refused above
        raise ValueError("one RRULE only")
    return parsed


def _shift(moment: datetime) -> timedelta:
    """How far to move `moment` so that it falls on the same weekday, in a year of the same
    place in the leap cycle, between 9950 and 9989.

    dateutil looks for a rule's next occurrence until one matches or the year passes 9999 (its
    UNTIL is only checked against occurrences): a rule whose filters match nothing (the 30th of
    February) would be searched for seconds. Searched in the shifted calendar, which repeats the
    current one day for day (weekdays and leap years alike, with no century year in between), the
    search ends by itself within 50 years, at most milliseconds."""
    start = date(moment.year, 1, 1)
    for year in range(SHIFTED_LAST_YEAR, SHIFTED_LAST_YEAR - 40, -1):
        days = (date(year, 1, 1) - start).days
        if year % 4 == moment.year % 4 and days % 7 == 0:
            return timedelta(days=days)
    raise ValueError(f"no calendar like {moment.year}'s")  # every phase has ten such years


def first_after(rule: str, anchor: datetime, after: datetime) -> datetime | None:
    """The first occurrence, after `after`, of `rule` anchored at `anchor` (its DTSTART), looked
    for within `HORIZON`; None when there is none, or the rule cannot be read."""
    if anchor.year < 1000 or after.year > SHIFTED_LAST_YEAR - 40:
        return None
    try:
        shift = _shift(after)
        parsed = _rule(rule, anchor + shift)
        until: datetime | None = getattr(parsed, "_until", None)  # where dateutil keeps UNTIL
        horizon = after + shift + HORIZON
        bounded = parsed.replace(until=min(until + shift, horizon) if until else horizon)
        found = bounded.after(after + shift)
    except (ValueError, OverflowError, TypeError):
        return None
    return found - shift if found is not None else None


def next_due(task: Task) -> datetime | None:
    """When the occurrence after `task` is due (None: the rule has ended)."""
    if task.recurrence is None:
        return None
    completed_at = task.completed_at or utcnow()
    anchor = task.due_at or completed_at
    found = first_after(task.recurrence, anchor, max(anchor, completed_at))
    if found is None:
        logger.info("task %s: its recurrence has no next occurrence", task.id)
    return found
