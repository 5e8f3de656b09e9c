"""How the offline model answers questions about the user's files: it calls `search_knowledge`
with the question, then quotes the sentence of the best passage that shares most words with the
question, naming its file and page, and cites it as source [1].

It takes this path when the chat offers `search_knowledge` (the chat has knowledge bases or
attached files) and the request is not about tasks, or whenever the request names a file or a
document ("what does my file say about X"). Deterministic, like the rest of the offline model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_FLAGS = re.IGNORECASE
_FILE_WORDS = (
    r"(?:files?|documents?|docs?|pdfs?|uploads?|attachments?|knowledge(?:\s+base)?|manuals?|"
    r"reports?|papers?|notes|handbooks?|guides?|policy|policies)"
)
# A request that names the user's files: "what does my file say about X", "in the document...".
_NAMES_FILES = re.compile(
    rf"\b(?:my|the|this|these|attached|uploaded|our)\s+(?:\w+\s+)?{_FILE_WORDS}\b", _FLAGS
)
# What the question is about, when it says so: "... say about X", "search my files for X".
_ABOUT = re.compile(
    r"\b(?:say|says|said|mention|mentions|tell\s+me|know)\s+(?:about|on|regarding)\s+(?P<q>.+)$"
    r"|\b(?:search|look\s+up|find)\s+.*?\bfor\s+(?P<q2>.+)$"
    r"|\babout\s+(?P<q3>.+)$",
    _FLAGS,
)
_ATTACHED_LINE = re.compile(r"^\[Attached files: .*\]$", re.MULTILINE)
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")
_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "did",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "say",
        "says",
        "should",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "about",
        "file",
        "files",
        "document",
        "documents",
        "tell",
        "please",
    ]
)
MAX_QUOTE_CHARS = 400
NOT_OFFERED = (
    "I can only search files that are attached to this chat or in its knowledge bases. Attach a "
    "file to your message (or add a knowledge base to the chat), then ask again."
)


@dataclass(frozen=True, slots=True)
class KnowledgeQuestion:
    """A question to answer from the user's files."""

    query: str


def request_text(prompt: str) -> str:
    """The user's words, without the line naming the attached files."""
    return _ATTACHED_LINE.sub("", prompt).strip()


def names_files(prompt: str) -> bool:
    """Whether the request is about the user's files or documents."""
    return bool(_NAMES_FILES.search(request_text(prompt)))


def knowledge_question(prompt: str) -> KnowledgeQuestion:
    """The search query for a request: what it says it is about, else the whole request."""
    text = request_text(prompt)
    found = _ABOUT.search(text)
    if found:
        query = next(group for group in found.groups() if group)
        query = query.strip().rstrip("?.! ")
        if query:
            return KnowledgeQuestion(query)
    return KnowledgeQuestion(text.rstrip("?.! ") or text)


def _words(text: str) -> set[str]:
    return {word.lower() for word in _WORD.findall(text)} - _STOPWORDS


def best_sentence(text: str, query: str) -> str:
    """The sentence of `text` sharing most words with `query` (the first one on a tie), at most
    `MAX_QUOTE_CHARS`."""
    wanted = _words(query)
    sentences = [match.group().strip() for match in _SENTENCE.finditer(text)]
    sentences = [sentence for sentence in sentences if sentence]
    if not sentences:
        return text[:MAX_QUOTE_CHARS].strip()
    best = max(sentences, key=lambda sentence: len(wanted & _words(sentence)))
    if len(best) > MAX_QUOTE_CHARS:
        best = best[: MAX_QUOTE_CHARS - 1].rstrip() + "…"
    return best


def _where(passage: Mapping[str, Any]) -> str:
    where = f'"{passage.get("filename") or "your file"}"'
    if passage.get("page"):
        where += f", page {passage['page']}"
    if passage.get("heading"):
        where += f" ({passage['heading']})"
    return where


def answer_text(question: KnowledgeQuestion, result: Any) -> str:
    """The reply once `search_knowledge` has answered."""
    passages: Sequence[Mapping[str, Any]] = []
    if isinstance(result, Mapping) and isinstance(result.get("results"), list):
        passages = [item for item in result["results"] if isinstance(item, Mapping)]
    if not passages:
        return f'I found nothing about "{question.query}" in your files.'
    best = passages[0]
    quote = best_sentence(str(best.get("text", "")), question.query)
    text = f'According to {_where(best)}: "{quote}" [1]'
    others = [f"[{n}] {_where(p)}" for n, p in enumerate(passages[1:3], start=2)]
    if others:
        text += "\n\nSee also " + "; ".join(others) + "."
    return text
