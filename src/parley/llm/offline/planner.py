"""What the offline model does next in a turn: call a task tool, or answer in text.

A turn is the last user prompt and the tool calls made since, with their results (`read_turn`).
`plan_step` looks at the intent of the prompt (`offline_parsing`) and at what the tools answered so
far: adding or listing takes one call; completing, deleting or updating a task by name first lists
the tasks matching it, then acts on the one that matches; the last step sums up in words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextContent,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_core import to_jsonable_python

from parley.llm.offline.knowledge import (
    NOT_OFFERED,
    answer_text,
    knowledge_question,
    names_files,
    request_text,
)
from parley.llm.offline.parsing import (
    AddTask,
    CompleteTask,
    DeleteTask,
    Intent,
    ListTasks,
    SmallTalk,
    UpdateTask,
    parse_intent,
)

MAX_TOOL_CALLS_PER_TURN = 4
MAX_LISTED = 20
INTRODUCTION = (
    "I'm Parley's offline model: I run inside Parley without any AI provider, so I can't hold a "
    "real conversation, but I can manage your tasks. Try:\n\n"
    '- "add a task to buy milk tomorrow"\n'
    '- "what\'s on my list?"\n'
    '- "mark buy milk as done"\n'
    '- "delete the milk task"\n\n'
    "To chat with a real model, an administrator sets `OPENAI_API_KEY` (or `OPENAI_BASE_URL` for a "
    "local server such as Ollama or vLLM), `ANTHROPIC_API_KEY` or `GEMINI_API_KEY` and restarts "
    "Parley; then pick that model for your chat."
)


@dataclass(frozen=True, slots=True)
class ToolCallStep:
    """Call `tool_name` with `args`."""

    tool_name: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TextStep:
    """Answer with `text`, ending the turn."""

    text: str


Step = ToolCallStep | TextStep


@dataclass(frozen=True, slots=True)
class ToolExchange:
    """A tool call made in this turn and what came back."""

    tool_name: str
    args: dict[str, Any]
    result: Any
    failed: bool


@dataclass(frozen=True, slots=True)
class Turn:
    """The user's request and the tool exchanges since."""

    prompt: str
    exchanges: tuple[ToolExchange, ...]


def _prompt_text(part: UserPromptPart) -> str:
    if isinstance(part.content, str):
        return part.content
    texts = [
        item if isinstance(item, str) else item.content
        for item in part.content
        if isinstance(item, str | TextContent)
    ]
    return "\n".join(texts)


def _result_value(content: Any) -> Any:
    """A tool result as plain JSON values (a JSON string is parsed)."""
    value = to_jsonable_python(content, fallback=str)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def read_turn(messages: Sequence[ModelMessage]) -> Turn:
    """The current turn: the last user prompt, then each answered tool call after it, in order."""
    start = 0
    prompt = ""
    for index, message in enumerate(messages):
        if isinstance(message, ModelRequest):
            prompts = [part for part in message.parts if isinstance(part, UserPromptPart)]
            if prompts:
                start, prompt = index, _prompt_text(prompts[-1])
    calls: list[ToolCallPart] = []
    returns: dict[str, ToolReturnPart] = {}
    for message in messages[start + 1 :]:
        if isinstance(message, ModelResponse):
            calls.extend(part for part in message.parts if isinstance(part, ToolCallPart))
        else:
            for part in message.parts:
                if isinstance(part, ToolReturnPart):
                    returns[part.tool_call_id] = part
    exchanges = tuple(
        ToolExchange(
            tool_name=call.tool_name,
            args=call.args_as_dict(),
            result=_result_value(returns[call.tool_call_id].content),
            failed=returns[call.tool_call_id].outcome != "success",
        )
        for call in calls
        if call.tool_call_id in returns
    )
    return Turn(prompt=prompt, exchanges=exchanges)


def _fit_args(args: dict[str, Any], properties: frozenset[str] | None) -> dict[str, Any]:
    """Keep the arguments the tool declares; wrap them when it takes one object parameter."""
    if properties is None:
        return args
    fitted = {key: value for key, value in args.items() if key in properties}
    if not fitted and args and len(properties) == 1:
        return {next(iter(properties)): args}
    return fitted


def _task_id_key(properties: frozenset[str] | None) -> str:
    if not properties or "task_id" in properties:
        return "task_id"
    if "id" in properties:
        return "id"
    return next((name for name in sorted(properties) if name.endswith("id")), "task_id")


def _items(result: Any) -> list[dict[str, Any]]:
    """The tasks in a `list_tasks` result, whatever envelope it comes in."""
    if isinstance(result, dict):
        for key in ("items", "tasks", "data", "results"):
            if isinstance(result.get(key), list):
                result = result[key]
                break
    if not isinstance(result, list):
        return []
    return [item for item in result if isinstance(item, dict) and item.get("title")]


def _task(result: Any) -> dict[str, Any] | None:
    if isinstance(result, dict):
        if isinstance(result.get("task"), dict):
            return dict(result["task"])
        if result.get("title"):
            return result
    return None


def _matches(items: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    wanted = query.lower()
    titles = [(item, str(item["title"]).lower()) for item in items]
    for test in (
        lambda title: title == wanted,
        lambda title: wanted in title,
        lambda title: all(word in title for word in wanted.split()),
    ):
        found = [item for item, title in titles if test(title)]
        if found:
            return found
    return []


def _describe(task: Mapping[str, Any], *, show_done: bool = False) -> str:
    details: list[str] = []
    if task.get("due_at"):
        details.append(f"due {str(task['due_at'])[:10]}")
    if task.get("priority") in ("high", "low"):
        details.append(f"{task['priority']} priority")
    tags = task.get("tags")
    if isinstance(tags, list) and tags:
        details.append(" ".join(f"#{tag}" for tag in tags))
    if show_done and task.get("completed"):
        details.append("done")
    suffix = f" ({', '.join(details)})" if details else ""
    return f'"{task.get("title", "?")}"{suffix}'


def _list_text(intent: ListTasks, items: list[dict[str, Any]]) -> str:
    kind = {True: "completed ", False: "open ", None: ""}[intent.completed]
    if not items:
        hint = ' Try "add a task to buy milk tomorrow".' if intent.completed is not True else ""
        return f"You have no {kind}tasks.{hint}"
    count = len(items)
    lines = [f"You have {count} {kind}task{'s' if count != 1 else ''}:", ""]
    lines += [
        f"- {_describe(item, show_done=intent.completed is None)}" for item in items[:MAX_LISTED]
    ]
    if count > MAX_LISTED:
        lines.append(f"- ... and {count - MAX_LISTED} more")
    return "\n".join(lines)


def _change_text(changes: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if "title" in changes:
        parts.append(f'renamed it to "{changes["title"]}"')
    if "priority" in changes:
        parts.append(f"set its priority to {changes['priority']}")
    if "due_at" in changes:
        parts.append(f"moved it to {str(changes['due_at'])[:10]}")
    return " and ".join(parts)


_ACTIONS: dict[type[Intent], tuple[str, str]] = {
    CompleteTask: ("complete_task", "mark {} as done"),
    DeleteTask: ("delete_task", "delete {}"),
    UpdateTask: ("update_task", "change {}"),
}


def _lookup_step(
    intent: CompleteTask | DeleteTask | UpdateTask,
    exchanges: Sequence[ToolExchange],
    tools: Mapping[str, frozenset[str] | None],
) -> Step:
    """List the tasks matching the query, then act on the one that matches."""
    action, example = _ACTIONS[type(intent)]
    if action not in tools or "list_tasks" not in tools:
        return TextStep(
            f"I can't {example.format('tasks')} here: the task tools are not available."
        )
    done = [exchange for exchange in exchanges if exchange.tool_name == action]
    lists = [exchange for exchange in exchanges if exchange.tool_name == "list_tasks"]
    if done:
        title = str((_task(done[-1].result) or {}).get("title") or intent.query)
        if isinstance(intent, CompleteTask):
            return TextStep(f'Marked "{title}" as done.')
        if isinstance(intent, DeleteTask):
            target = _matches(_items(lists[-1].result), intent.query) if lists else []
            return TextStep(f'Deleted "{target[0]["title"] if target else title}".')
        return TextStep(f'Done: I {_change_text(intent.changes)} ("{title}").')
    if not lists:
        return ToolCallStep("list_tasks", _fit_args({"q": intent.query}, tools["list_tasks"]))
    matches = _matches(_items(lists[-1].result), intent.query)
    if not matches and len(lists) == 1 and lists[0].args:
        # The search may be stricter than a look at every title: look again without a filter.
        return ToolCallStep("list_tasks", {})
    if isinstance(intent, CompleteTask):
        matches = [item for item in matches if not item.get("completed")] or matches
    if not matches:
        return TextStep(
            f'I couldn\'t find a task matching "{intent.query}". Ask "what\'s on my list?" to '
            "see your tasks."
        )
    if len(matches) > 1:
        names = ", ".join(f'"{item["title"]}"' for item in matches[:5])
        first = f'"{example.format(matches[0]["title"])}"'
        return TextStep(
            f'{len(matches)} tasks match "{intent.query}": {names}. Which one? Use its full '
            f"title, for example {first}."
        )
    task_id = str(matches[0].get("id", ""))
    args: dict[str, Any] = {_task_id_key(tools[action]): task_id}
    if isinstance(intent, UpdateTask):
        args.update(intent.changes)
    return ToolCallStep(action, _fit_args(args, tools[action]))


def _add_step(
    intent: AddTask, exchanges: Sequence[ToolExchange], tools: Mapping[str, frozenset[str] | None]
) -> Step:
    if "add_task" not in tools:
        return TextStep("I can't add tasks here: the task tools are not available.")
    added = [exchange for exchange in exchanges if exchange.tool_name == "add_task"]
    if added:
        return TextStep(f"Added {_describe(_task(added[-1].result) or {'title': intent.title})}.")
    args: dict[str, Any] = {"title": intent.title}
    if intent.due_at:
        args["due_at"] = intent.due_at
    if intent.priority:
        args["priority"] = intent.priority
    if intent.tags:
        args["tags"] = list(intent.tags)
    return ToolCallStep("add_task", _fit_args(args, tools["add_task"]))


def _list_step(
    intent: ListTasks, exchanges: Sequence[ToolExchange], tools: Mapping[str, frozenset[str] | None]
) -> Step:
    if "list_tasks" not in tools:
        return TextStep("I can't show your tasks here: the task tools are not available.")
    listed = [exchange for exchange in exchanges if exchange.tool_name == "list_tasks"]
    if listed:
        return TextStep(_list_text(intent, _items(listed[-1].result)))
    args: dict[str, Any] = {}
    if intent.completed is not None:
        args["completed"] = intent.completed
    if intent.priority:
        args["priority"] = intent.priority
    if intent.tag:
        args["tag"] = intent.tag
    return ToolCallStep("list_tasks", _fit_args(args, tools["list_tasks"]))


def _failure_text(exchange: ToolExchange) -> str:
    detail = exchange.result if isinstance(exchange.result, str) else str(exchange.result)
    return f"The {exchange.tool_name} tool failed, so I stopped there: {detail[:300]}"


def _knowledge_step(
    turn: Turn, tools: Mapping[str, frozenset[str] | None], today: date
) -> Step | None:
    """A question about the user's files: search them, then quote the best passage (None: the
    request is not one)."""
    explicit = names_files(turn.prompt)
    if "search_knowledge" not in tools:
        return TextStep(NOT_OFFERED) if explicit and not _about_tasks(turn.prompt) else None
    if not explicit and not isinstance(parse_intent(request_text(turn.prompt), today), SmallTalk):
        return None  # a request about tasks
    question = knowledge_question(turn.prompt)
    searches = [exchange for exchange in turn.exchanges if exchange.tool_name == "search_knowledge"]
    if searches:
        return TextStep(answer_text(question, searches[-1].result))
    return ToolCallStep(
        "search_knowledge", _fit_args({"query": question.query}, tools["search_knowledge"])
    )


def _about_tasks(prompt: str) -> bool:
    return bool(re.search(r"\b(?:tasks?|todos?|to-?do)\b", prompt, re.IGNORECASE))


def plan_step(turn: Turn, tools: Mapping[str, frozenset[str] | None], today: date) -> Step:
    """The next step of the turn.

    Args:
        turn: the user's request and the tool exchanges so far.
        tools: the tools offered, by name, with the argument names each declares (None: unknown).
        today: what "today" is, for due dates.
    """
    failed = next((exchange for exchange in turn.exchanges if exchange.failed), None)
    if failed is not None:
        return TextStep(_failure_text(failed))
    if len(turn.exchanges) >= MAX_TOOL_CALLS_PER_TURN:
        return TextStep("I've done what I could with your tasks for this request.")
    knowledge = _knowledge_step(turn, tools, today)
    if knowledge is not None:
        return knowledge
    intent = parse_intent(request_text(turn.prompt), today)
    if isinstance(intent, AddTask):
        return _add_step(intent, turn.exchanges, tools)
    if isinstance(intent, ListTasks):
        return _list_step(intent, turn.exchanges, tools)
    if isinstance(intent, CompleteTask | DeleteTask | UpdateTask):
        return _lookup_step(intent, turn.exchanges, tools)
    return TextStep(INTRODUCTION)
