"""Validate the knowledge-base retrieval evaluation set.

Checks ``questions.jsonl`` against the Markdown files in ``documents/``:

* every line is a JSON object with exactly the keys ``id``, ``question``,
  ``document`` and ``answer``, all non-empty strings;
* ids are unique;
* every referenced document exists in ``documents/``;
* every answer is a verbatim substring of its document (exact whitespace and
  punctuation) and is at least 40 characters long;
* no two questions share the same answer;
* every document has at least one question.

Prints the number of questions per document (with each document's word
count) and exits with status 1 if any check fails.

Usage (from the repository root)::

    python3 bench/knowledge_eval/check.py

Standard library only; Python 3.11.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCUMENTS_DIR = HERE / "documents"
QUESTIONS_FILE = HERE / "questions.jsonl"
REQUIRED_KEYS = {"id", "question", "document", "answer"}
MIN_ANSWER_CHARS = 40


def main() -> int:
    errors: list[str] = []
    documents = {
        path.name: path.read_text(encoding="utf-8") for path in sorted(DOCUMENTS_DIR.glob("*.md"))
    }
    if not documents:
        errors.append(f"no Markdown documents found in {DOCUMENTS_DIR}")

    counts = dict.fromkeys(documents, 0)
    seen_ids: dict[str, int] = {}
    seen_answers: dict[str, int] = {}
    total = 0

    lines = QUESTIONS_FILE.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, 1):
        where = f"line {lineno}"
        if not line.strip():
            errors.append(f"{where}: empty line")
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: invalid JSON ({exc})")
            continue
        if not isinstance(item, dict):
            errors.append(f"{where}: not a JSON object")
            continue
        keys = set(item)
        if keys != REQUIRED_KEYS:
            errors.append(f"{where}: keys {sorted(keys)} != {sorted(REQUIRED_KEYS)}")
            continue
        if not all(isinstance(item[k], str) and item[k].strip() for k in REQUIRED_KEYS):
            errors.append(f"{where}: every field must be a non-empty string")
            continue

        total += 1
        qid, doc, answer = item["id"], item["document"], item["answer"]
        where = f"line {lineno} ({qid})"

        if qid in seen_ids:
            errors.append(f"{where}: duplicate id (first on line {seen_ids[qid]})")
        else:
            seen_ids[qid] = lineno

        if answer in seen_answers:
            errors.append(f"{where}: answer already used on line {seen_answers[answer]}")
        else:
            seen_answers[answer] = lineno

        if len(answer) < MIN_ANSWER_CHARS:
            errors.append(
                f"{where}: answer has {len(answer)} characters, minimum is {MIN_ANSWER_CHARS}"
            )

        if doc not in documents:
            errors.append(f"{where}: document {doc!r} not found in documents/")
            continue
        counts[doc] += 1
        if answer not in documents[doc]:
            errors.append(f"{where}: answer is not a verbatim substring of {doc}")

    for name, count in counts.items():
        if count == 0:
            errors.append(f"{name}: no questions")

    width = max((len(name) for name in counts), default=8)
    print(f"{'document':<{width}}  questions  words")
    for name, count in counts.items():
        words = len(documents[name].split())
        print(f"{name:<{width}}  {count:>9}  {words:>5}")
    print(f"{'total':<{width}}  {total:>9}  ({len(documents)} documents)")

    if errors:
        print(f"\nFAILED: {len(errors)} problem(s)", file=sys.stderr)
        for error in errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    print("\nOK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
