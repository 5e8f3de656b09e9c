"""The README and docs/ stay true to the code: every setting is documented in
docs/configuration.md, every relative link (and its `#anchor`) resolves, and the README's commands
are the ones that ship (the quick start, and the test commands exactly as `.ci/run` runs them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from parley.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
PAGES = sorted([README, *(ROOT / "docs").glob("*.md")])

# [text](target) outside code; images too. Targets with a scheme or starting with `/` are not files.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def _env_name(field_name: str) -> str:
    alias = Settings.model_fields[field_name].validation_alias
    return alias if isinstance(alias, str) else field_name.upper()


def _prose(text: str) -> str:
    """The text with fenced blocks and inline code removed, where `[x](y)` is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats
    numbered."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for line in FENCE.sub("", text).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("field_name", sorted(Settings.model_fields))
def test_every_setting_is_documented(field_name: str) -> None:
    env = _env_name(field_name)
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \|", CONFIGURATION.read_text(encoding="utf-8"), re.M)
    assert env in rows, f"{env} (Settings.{field_name}) has no row in docs/configuration.md"


def test_configuration_documents_no_setting_that_does_not_exist() -> None:
    known = {_env_name(name) for name in Settings.model_fields}
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \|", CONFIGURATION.read_text(encoding="utf-8"), re.M)
    assert sorted(set(rows) - known) == []
    assert len(rows) == len(set(rows)), "a variable has two rows"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            continue  # a URL (https:, mailto:) or a path on the running server
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists() or (
            anchor
            and linked.suffix == ".md"
            and anchor not in _anchors(linked.read_text(encoding="utf-8"))
        ):
            broken.append(target)
    assert broken == [], f"{page.relative_to(ROOT)}: links that do not resolve: {broken}"


def test_readme_test_commands_are_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = re.findall(r"^(uv run pytest[^\n#]*?)\s*$", ci, re.M)
    assert commands, ".ci/run runs no pytest command"
    readme = README.read_text(encoding="utf-8")
    for command in commands:
        assert re.search(rf"^{re.escape(command)}\s*(#.*)?$", readme, re.M), command


def test_readme_quick_start_is_the_serve_command() -> None:
    assert "\nuv run --no-dev parley serve\n" in README.read_text(encoding="utf-8")
