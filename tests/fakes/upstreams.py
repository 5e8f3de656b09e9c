"""The pair of fake providers most live-server tests run beside: an OpenAI-compatible server that
can be told to fail, and an Anthropic one, both on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FaultyOpenAI


@contextmanager
def running_upstreams() -> Iterator[tuple[FaultyOpenAI, FakeAnthropic]]:
    """Start both fakes; they stop on exit."""
    openai, anthropic = FaultyOpenAI.start(), FakeAnthropic.start()
    try:
        yield openai, anthropic
    finally:
        openai.stop()
        anthropic.stop()
