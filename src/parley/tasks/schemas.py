"""Request and response models of the tasks API (CONTRACT.md section 4), and the field types the
task tools reuse.

Text fields refuse NUL characters (PostgreSQL cannot store them, so they are a 422 here rather
than a failure later). Times must carry a zone and are turned into UTC.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, TypedDict

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from parley.core.validation import RequestModel, UtcDatetime, reject_unstorable_text
from parley.tasks.models import (
    DESCRIPTION_MAX_CHARS,
    MAX_TAGS,
    RECURRENCE_MAX_CHARS,
    TAG_MAX_CHARS,
    TITLE_MAX_CHARS,
    Priority,
)
from parley.tasks.rules import normalize_recurrence

SEARCH_MAX_CHARS = 200


def _distinct(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX_CHARS),
    AfterValidator(reject_unstorable_text),
]
Description = Annotated[
    str, StringConstraints(max_length=DESCRIPTION_MAX_CHARS), AfterValidator(reject_unstorable_text)
]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TAG_MAX_CHARS),
    AfterValidator(reject_unstorable_text),
]
Tags = Annotated[
    list[Tag],
    Field(max_length=MAX_TAGS, description=f"Up to {MAX_TAGS} tags; duplicates are dropped."),
    AfterValidator(_distinct),
]
Recurrence = Annotated[
    str,
    StringConstraints(max_length=RECURRENCE_MAX_CHARS),
    AfterValidator(normalize_recurrence),
    Field(
        description=(
            "An RFC 5545 RRULE, e.g. `FREQ=WEEKLY;BYDAY=MO` (every Monday), `FREQ=DAILY`, "
            "`FREQ=MONTHLY;BYMONTHDAY=1`, `FREQ=WEEKLY;INTERVAL=2;BYDAY=FR`; end it with "
            "`UNTIL=20271231T000000Z` (COUNT is not supported). FREQ is YEARLY, MONTHLY, WEEKLY, "
            "DAILY or HOURLY; rules are evaluated in UTC from the due time. Completing the task "
            "creates its next occurrence."
        ),
        examples=["FREQ=WEEKLY;BYDAY=MO"],
    ),
]
SearchText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=SEARCH_MAX_CHARS),
    AfterValidator(reject_unstorable_text),
]

_TITLE_DOC = f"1 to {TITLE_MAX_CHARS} characters."
_DESCRIPTION_DOC = f"Up to {DESCRIPTION_MAX_CHARS} characters."
_DUE_DOC = "When the task is due (RFC 3339, with a zone)."
_REMIND_DOC = (
    "When to remind the user (RFC 3339, with a zone): a `parley.reminder.due.v1` event is "
    "published then."
)


class TaskChanges(TypedDict, total=False):
    """The fields an update sets; a field that is absent is left as it is."""

    title: str
    description: str | None
    completed: bool
    priority: Priority
    due_at: datetime | None
    tags: list[str]
    recurrence: str | None
    remind_at: datetime | None


class TaskCreate(RequestModel):
    """A new task."""

    title: Title = Field(description=_TITLE_DOC)
    description: Description | None = Field(default=None, description=_DESCRIPTION_DOC)
    priority: Priority = Priority.MEDIUM
    due_at: UtcDatetime | None = Field(default=None, description=_DUE_DOC)
    tags: Tags = Field(default_factory=list)
    completed: bool = False
    recurrence: Recurrence | None = None
    remind_at: UtcDatetime | None = Field(default=None, description=_REMIND_DOC)


_NOT_NULLABLE = ("title", "completed", "priority", "tags")


def _publish_not_nullable(schema: dict[str, Any]) -> None:
    """Publish the fields that may be left out but not sent as null without the `null` branch
    (and the `null` default) their Python type needs, so clients and models are not invited to
    send a null that would be refused."""
    properties = schema.get("properties", {})
    for name in _NOT_NULLABLE:
        field_schema = properties.get(name, {})
        branches = [
            branch for branch in field_schema.get("anyOf", []) if branch.get("type") != "null"
        ]
        if len(branches) == 1:
            annotations = {
                key: value for key, value in field_schema.items() if key not in ("anyOf", "default")
            }
            properties[name] = {**branches[0], **annotations}


class TaskUpdate(RequestModel):
    """Changes to a task: only the fields sent are changed; `description` and `due_at` may be set
    to null to clear them."""

    model_config = ConfigDict(json_schema_extra=_publish_not_nullable)

    title: Title | None = Field(default=None, description=_TITLE_DOC)
    description: Description | None = Field(default=None, description=_DESCRIPTION_DOC)
    completed: bool | None = Field(
        default=None, description="true records `completed_at`; false clears it."
    )
    priority: Priority | None = None
    due_at: UtcDatetime | None = Field(default=None, description=_DUE_DOC)
    tags: Tags | None = Field(default=None, description="Replaces every tag of the task.")
    recurrence: Recurrence | None = Field(
        default=None, description="An RFC 5545 RRULE (see add_task), or null to stop repeating."
    )
    remind_at: UtcDatetime | None = Field(
        default=None, description=_REMIND_DOC + " null clears it."
    )

    @field_validator(*_NOT_NULLABLE, mode="before")
    @classmethod
    def _refuse_null(cls, value: Any) -> Any:
        # Runs only for fields that were sent: an absent field keeps its None default.
        if value is None:
            raise ValueError("may not be null")
        return value

    def changes(self) -> TaskChanges:
        """The fields that were sent, for `TaskService.update`."""
        changes = TaskChanges()
        fields = self.model_fields_set
        if "title" in fields and self.title is not None:
            changes["title"] = self.title
        if "description" in fields:
            changes["description"] = self.description
        if "completed" in fields and self.completed is not None:
            changes["completed"] = self.completed
        if "priority" in fields and self.priority is not None:
            changes["priority"] = self.priority
        if "due_at" in fields:
            changes["due_at"] = self.due_at
        if "tags" in fields and self.tags is not None:
            changes["tags"] = self.tags
        if "recurrence" in fields:
            changes["recurrence"] = self.recurrence
        if "remind_at" in fields:
            changes["remind_at"] = self.remind_at
        return changes


class TaskPublic(BaseModel):
    """A task as clients see it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    description: str | None
    completed: bool
    completed_at: datetime | None
    priority: Priority
    due_at: datetime | None
    tags: list[str]
    recurrence: str | None = Field(description="An RFC 5545 RRULE, or null.")
    remind_at: datetime | None
    created_at: datetime
    updated_at: datetime
