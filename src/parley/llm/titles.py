"""Chat titles from a model: the instructions and prompt the `chat.title` job sends, cleaning the
model's answer into a title, and the title the offline model makes from the prompt's words.

The prompt quotes the first exchange between markers that the offline model reads back
(`words_title`), so that a title from it is made of the user's own words.
"""

from __future__ import annotations

import re

TITLE_INSTRUCTIONS = (
    "You name conversations. Reply with a short title for the conversation below: at most six "
    "words, in the language of the conversation, with no quotes and no final punctuation. Reply "
    "with the title only."
)
MAX_TITLE_CHARS = 80
_PROMPT_CHARS = 2000  # of each side of the exchange: enough to name it, and cheap
_USER, _ASSISTANT = "<user>", "<assistant>"

# Words that say nothing about the subject, dropped from a title made of the user's words.
_FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "about",
        "into",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "am",
        "do",
        "does",
        "did",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "i",
        "me",
        "my",
        "we",
        "our",
        "you",
        "your",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "please",
        "pls",
        "hi",
        "hello",
        "hey",
        "thanks",
        "thank",
        "just",
        "some",
        "any",
        "what",
        "whats",
        "how",
        "why",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "tell",
        "show",
        "give",
        "let",
        "lets",
        "want",
        "need",
        "like",
        "im",
    ]
)
_WORD = re.compile("[\\w][\\w'\u2019-]*", re.UNICODE)


def title_prompt(user_text: str, reply_text: str) -> str:
    """The job's prompt: the first exchange, each side cut to a bounded length."""
    return (
        f"{_USER}\n{user_text.strip()[:_PROMPT_CHARS]}\n{_USER}\n"
        f"{_ASSISTANT}\n{reply_text.strip()[:_PROMPT_CHARS]}\n{_ASSISTANT}"
    )


def clean_title(answer: str) -> str | None:
    """A model's answer as a title: its first non-empty line, without a `Title:` label, quotes,
    Markdown emphasis or final punctuation, cut at a word boundary; None if nothing is left."""
    line = next((line for line in answer.splitlines() if line.strip()), "")
    line = " ".join(line.replace("*", "").replace("_", " ").split())
    line = re.sub(r"^\s*(?:#+\s*)?(?:title\s*[:\-]\s*)?", "", line, flags=re.IGNORECASE)
    line = line.strip("\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb ").rstrip(".!,;:")
    if not line:
        return None
    if len(line) > MAX_TITLE_CHARS:
        line = line[:MAX_TITLE_CHARS].rsplit(" ", 1)[0].rstrip(",.;:-") or line[:MAX_TITLE_CHARS]
    return line


def words_title(prompt: str, limit: int = 6) -> str:
    """A title made of the words of the prompt's user side: its first `limit` words that are
    not filler, the first capitalised (the offline model's answer to `TITLE_INSTRUCTIONS`)."""
    parts = prompt.split(_USER)
    text = parts[1] if len(parts) >= 3 else prompt
    words = [word for word in _WORD.findall(text) if word.lower() not in _FILLER]
    if not words:
        words = _WORD.findall(text)
    if not words:
        return "New chat"
    chosen = words[:limit]
    return " ".join([chosen[0][:1].upper() + chosen[0][1:], *chosen[1:]])
