"""How the offline model understands a request: plain English about tasks, read with a handful of
regular expressions, into an intent (add, list, complete, delete, update, or just chat).

Deterministic by design: the same words and the same date give the same intent. Dates are relative
to `today` ("tomorrow", "friday", "in 3 days", "2026-12-01") and become midnight UTC of that day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

_FLAGS = re.IGNORECASE
_POLITE = r"^(?:(?:please|hey|ok|okay)[,\s]+)?(?:(?:can|could|would|will)\s+you\s+)?(?:please\s+)?"
_LIST_WORDS = r"(?:list|tasks?|todos?|to-?dos?|to\s+do\s+list|agenda|plate)"
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "ten": 10,
}
_DUE_LEAD = r"(?:\s*,?\s*(?:due|by|on|for|before|until)\s+)?"
MAX_TITLE = 200


@dataclass(frozen=True, slots=True)
class AddTask:
    """Add a task."""

    title: str
    due_at: str | None = None
    priority: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListTasks:
    """Show tasks; `completed` None means all of them."""

    completed: bool | None = False
    priority: str | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class CompleteTask:
    """Mark the task matching `query` done."""

    query: str


@dataclass(frozen=True, slots=True)
class DeleteTask:
    """Delete the task matching `query`."""

    query: str


@dataclass(frozen=True, slots=True)
class UpdateTask:
    """Change the task matching `query` (title, priority or due date)."""

    query: str
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SmallTalk:
    """Anything else: the offline model explains itself."""


Intent = AddTask | ListTasks | CompleteTask | DeleteTask | UpdateTask | SmallTalk


def _at_midnight(day: date) -> str:
    return datetime.combine(day, time(0, 0), tzinfo=UTC).isoformat().replace("+00:00", "Z")


def _relative_day(match: re.Match[str], today: date) -> date | None:
    word = match.group("rel").lower()
    if word in ("today", "tonight", "this evening"):
        return today
    if word == "tomorrow":
        return today + timedelta(days=1)
    if word.startswith("the day after") or word.startswith("day after"):
        return today + timedelta(days=2)
    return today + timedelta(days=7)  # next week


def _in_days(match: re.Match[str], today: date) -> date | None:
    amount = match.group("n").lower()
    count = int(amount) if amount.isdigit() else _NUMBERS[amount]
    unit = 7 if match.group("unit").lower().startswith("week") else 1
    return today + timedelta(days=min(count * unit, 3660))


def _weekday(match: re.Match[str], today: date) -> date | None:
    target = _WEEKDAYS.index(match.group("day").lower())
    ahead = (target - today.weekday()) % 7 or 7
    return today + timedelta(days=ahead)


def _iso(match: re.Match[str], today: date) -> date | None:
    try:
        return date.fromisoformat(match.group("iso"))
    except ValueError:
        return None


_DUE_PATTERNS = (
    (
        re.compile(
            _DUE_LEAD
            + r"\b(?P<rel>(?:the\s+)?day\s+after\s+tomorrow|tomorrow|today|tonight|this\s+evening"
            r"|next\s+week)\b",
            _FLAGS,
        ),
        _relative_day,
    ),
    (
        re.compile(
            _DUE_LEAD + r"\bin\s+(?P<n>\d{1,3}|an?|one|two|three|four|five|six|seven|ten)\s+"
            r"(?P<unit>days?|weeks?)\b",
            _FLAGS,
        ),
        _in_days,
    ),
    (
        re.compile(
            _DUE_LEAD + r"\b(?:(?:next|this)\s+)?(?P<day>" + "|".join(_WEEKDAYS) + r")\b", _FLAGS
        ),
        _weekday,
    ),
    (re.compile(_DUE_LEAD + r"\b(?P<iso>\d{4}-\d{2}-\d{2})\b", _FLAGS), _iso),
)
_PRIORITY_PATTERNS = (
    re.compile(
        r"\s*,?\s*\b(?:with\s+|at\s+|as\s+)?(?:a\s+)?(?P<p>high|medium|low|normal)[\s-]+priority\b",
        _FLAGS,
    ),
    re.compile(r"\s*,?\s*\bpriority\s*[:=]?\s*(?P<p>high|medium|low|normal)\b", _FLAGS),
    re.compile(r"\b(?P<p>urgent(?:ly)?|asap|important)\b\s*", _FLAGS),
)
_PRIORITY_WORDS = {"high": "high", "medium": "medium", "normal": "medium", "low": "low"}
_TAG_PATTERN = re.compile(r"\s*#(?P<tag>[\w-]+)", _FLAGS)
_TAGGED_PATTERN = re.compile(r"\s*,?\s*\btagged\s+(?:as\s+|with\s+)?(?P<tag>[\w-]+)", _FLAGS)

_ADD_START = re.compile(
    _POLITE + r"(?:add|create|put|remind\s+me|new\s+(?:task|todo|to-do)|todo\s*:|to-do\s*:)\b",
    _FLAGS,
)
_ADD_PATTERNS = (
    re.compile(
        _POLITE + r"(?:add|create|put)\s+(?:me\s+)?(?:a|an|another|one\s+more|one)?\s*(?:new\s+)?"
        r"(?:task|todo|to-do|reminder|item)s?\s*(?:to\s+|for\s+|:\s*|called\s+|named\s+|titled\s+"
        r"|saying\s+)?(?P<title>.+)$",
        _FLAGS,
    ),
    re.compile(_POLITE + r"remind\s+me\s+(?:to\s+)?(?P<title>.+)$", _FLAGS),
    re.compile(
        _POLITE + r"(?:add|put)\s+(?P<title>.+?)\s+(?:to|on)\s+(?:my\s+)?" + _LIST_WORDS + r"$",
        _FLAGS,
    ),
    re.compile(r"^(?:new\s+(?:task|todo|to-do)|todo|to-do)\s*:?\s*(?P<title>.+)$", _FLAGS),
)
_LIST_PATTERNS = (
    re.compile(r"\b(?:what'?s|what\s+is|what\s+are|whats)\b.*\b" + _LIST_WORDS + r"\b", _FLAGS),
    re.compile(
        r"\b(?:show|list|display|see|view|give|tell|read)\b.*\b" + _LIST_WORDS + r"\b", _FLAGS
    ),
    re.compile(r"^(?:my\s+)?" + _LIST_WORDS + r"$", _FLAGS),
    re.compile(r"\bwhat\s+(?:do|should|must)\s+i\s+(?:have|need)?\s*(?:to\s+)?do\b", _FLAGS),
)
_COMPLETE_PATTERNS = (
    re.compile(
        _POLITE
        + r"(?:mark|set|flag)\s+(?P<q>.+?)\s+(?:as\s+)?(?:done|complete|completed|finished)$",
        _FLAGS,
    ),
    re.compile(
        _POLITE + r"(?:complete|finish|check\s+off|tick\s+off|cross\s+off)\s+(?P<q>.+)$", _FLAGS
    ),
    re.compile(r"^(?P<q>.+?)\s+is\s+(?:done|complete|completed|finished)$", _FLAGS),
    re.compile(r"^i(?:'ve|\s+have)?\s+(?:done|finished|completed)\s+(?P<q>.+)$", _FLAGS),
)
_DELETE_PATTERN = re.compile(
    _POLITE + r"(?:delete|remove|drop|erase|get\s+rid\s+of)\s+(?P<q>.+?)"
    r"(?:\s+from\s+(?:my\s+)?" + _LIST_WORDS + r")?$",
    _FLAGS,
)
_RENAME_PATTERN = re.compile(
    _POLITE + r"(?:rename|retitle)\s+(?P<q>.+?)\s+(?:to|as)\s+(?P<new>.+)$", _FLAGS
)
_PRIORITY_UPDATE_PATTERNS = (
    re.compile(
        _POLITE + r"(?:set|change|make)\s+(?:the\s+)?priority\s+of\s+(?P<q>.+?)\s+to\s+"
        r"(?P<p>high|medium|low)$",
        _FLAGS,
    ),
    re.compile(_POLITE + r"make\s+(?P<q>.+?)\s+(?P<p>high|medium|low)[\s-]+priority$", _FLAGS),
)
_MOVE_PATTERN = re.compile(
    _POLITE + r"(?:move|reschedule|postpone|push)\s+(?P<q>.+?)\s+(?:to|until|till)\s+(?P<when>.+)$",
    _FLAGS,
)
_QUERY_PREFIX = re.compile(r"^(?:the|my|a|an|that|this)\s+", _FLAGS)
_QUERY_SUFFIX = re.compile(r"\s+(?:task|todo|to-do|item|one|reminder)s?$", _FLAGS)


def _normalise(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    return re.sub(r"\s+", " ", text).strip().rstrip(".!?").strip()


def _strip_quotes(text: str) -> str:
    return text.strip().strip("\"'`").strip()


def extract_due(text: str, today: date) -> tuple[str, str | None]:
    """Take the first due-date phrase out of `text`; returns the rest and the RFC 3339 time."""
    for pattern, resolve in _DUE_PATTERNS:
        match = pattern.search(text)
        if match is None:
            continue
        day = resolve(match, today)
        if day is not None:
            rest = (text[: match.start()] + " " + text[match.end() :]).strip()
            return re.sub(r"\s+", " ", rest), _at_midnight(day)
    return text, None


def _extract_priority(text: str) -> tuple[str, str | None]:
    for pattern in _PRIORITY_PATTERNS:
        match = pattern.search(text)
        if match is None:
            continue
        # "urgent", "asap" and "important" mean high; "normal" means medium.
        priority = _PRIORITY_WORDS.get(match.group("p").lower(), "high")
        rest = (text[: match.start()] + " " + text[match.end() :]).strip()
        return re.sub(r"\s+", " ", rest), priority
    return text, None


def _extract_tags(text: str) -> tuple[str, tuple[str, ...]]:
    tags: list[str] = []
    for pattern in (_TAGGED_PATTERN, _TAG_PATTERN):
        tags.extend(match.group("tag").lower() for match in pattern.finditer(text))
        text = pattern.sub("", text)
    return text.strip(), tuple(dict.fromkeys(tags))


def clean_title(text: str) -> str:
    """A task title from free text: no quotes or dangling punctuation, capitalised, bounded."""
    title = _strip_quotes(re.sub(r"\s+", " ", text)).strip(" ,;:-").rstrip(".!?")
    title = re.sub(r"^(?:to|that i need to|that i have to)\s+", "", title, flags=_FLAGS)
    title = _strip_quotes(title)
    if title[:1].islower():
        title = title[0].upper() + title[1:]
    return title[:MAX_TITLE]


def clean_query(text: str) -> str:
    """What to look a task up by: "the milk task" -> "milk"."""
    query = _strip_quotes(text)
    query = _QUERY_PREFIX.sub("", query)
    query = _QUERY_SUFFIX.sub("", query)
    return _strip_quotes(query)[:MAX_TITLE]


def _parse_add(text: str, today: date) -> AddTask | None:
    if not _ADD_START.match(text):
        return None
    rest, due_at = extract_due(text, today)
    rest, priority = _extract_priority(rest)
    rest, tags = _extract_tags(rest)
    for pattern in _ADD_PATTERNS:
        match = pattern.match(rest)
        if match is not None:
            title = clean_title(match.group("title"))
            if title:
                return AddTask(title=title, due_at=due_at, priority=priority, tags=tags)
    return None


def _parse_update(text: str, today: date) -> UpdateTask | None:
    if (match := _RENAME_PATTERN.match(text)) is not None:
        return UpdateTask(clean_query(match["q"]), {"title": clean_title(match["new"])})
    for pattern in _PRIORITY_UPDATE_PATTERNS:
        if (match := pattern.match(text)) is not None:
            return UpdateTask(clean_query(match["q"]), {"priority": match["p"].lower()})
    if (match := _MOVE_PATTERN.match(text)) is not None:
        rest, due_at = extract_due(match["when"], today)
        if due_at is not None and not rest.strip():
            return UpdateTask(clean_query(match["q"]), {"due_at": due_at})
    return None


def _parse_list(text: str) -> ListTasks | None:
    if not any(pattern.search(text) for pattern in _LIST_PATTERNS):
        return None
    lowered = text.lower()
    completed: bool | None = False
    if re.search(r"\b(?:completed|done|finished)\b", lowered):
        completed = True
    elif re.search(r"\ball\b", lowered):
        completed = None
    priority = re.search(r"\b(high|medium|low)[\s-]+priority\b", lowered)
    tag = re.search(r"#([\w-]+)|\btagged\s+([\w-]+)", lowered)
    return ListTasks(
        completed=completed,
        priority=priority.group(1) if priority else None,
        tag=(tag.group(1) or tag.group(2)) if tag else None,
    )


def parse_intent(text: str, today: date) -> Intent:
    """What the user asks for, by the first rule that fits (add, update, complete, delete, list)."""
    text = _normalise(text)
    if not text:
        return SmallTalk()
    if (add := _parse_add(text, today)) is not None:
        return add
    if (update := _parse_update(text, today)) is not None and update.query:
        return update
    for pattern in _COMPLETE_PATTERNS:
        if (match := pattern.match(text)) is not None and (query := clean_query(match["q"])):
            return CompleteTask(query)
    if (match := _DELETE_PATTERN.match(text)) is not None and (query := clean_query(match["q"])):
        return DeleteTask(query)
    if (listing := _parse_list(text)) is not None:
        return listing
    return SmallTalk()
