"""`build_model` and `ModelProviders` against the fake upstreams: real HTTP on loopback, the real
SDKs, streaming and tool call round trips."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import PartDeltaEvent
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.google import GoogleModel
from pydantic_ai.models.openai import OpenAIChatModel

from parley.core.errors import ServiceUnavailable
from parley.llm.offline.model import OfflineModel
from parley.llm.providers import (
    ModelProviders,
    build_model,
    create_provider_http_client,
    provider_modules,
)
from parley.llm.schemas import CatalogEntry
from tests.fakes import Reply, ToolCall
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fixtures.settings import SettingsFactory


def _entry(model_id: str, **fields: Any) -> CatalogEntry:
    provider, _, model_name = model_id.partition(":")
    values: dict[str, Any] = {
        "id": model_id,
        "name": model_name,
        "provider": provider,
        "model_name": model_name,
        "context_window": None,
        "supports_tools": True,
        "input_price_per_mtok": Decimal(0),
        "output_price_per_mtok": Decimal(0),
        "enabled": True,
        "is_default": False,
    }
    return CatalogEntry(**{**values, **fields})


def _weather_agent(model: Any, seen: list[str]) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(model, instructions="Be brief.")

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"Sunny in {city}"

    return agent


@pytest.fixture
async def http_client(llm_settings: SettingsFactory) -> Any:
    client = create_provider_http_client(llm_settings())
    try:
        yield client
    finally:
        await client.aclose()


def test_the_shared_client_has_the_configured_timeouts(llm_settings: SettingsFactory) -> None:
    settings = llm_settings(provider_connect_timeout_seconds=3, provider_read_timeout_seconds=45)
    client = create_provider_http_client(settings)
    assert isinstance(client, httpx2.AsyncClient)
    assert (client.timeout.connect, client.timeout.read) == (3, 45)


async def test_openai_streams_a_tool_call_round_trip(
    fake_openai: FakeOpenAI, llm_settings: SettingsFactory, http_client: httpx2.AsyncClient
) -> None:
    settings = llm_settings(openai_api_key="sk-fake", openai_base_url=fake_openai.base_url)
    model = build_model(_entry("openai:gpt-fake-large"), settings, http_client)
    assert isinstance(model, OpenAIChatModel)
    fake_openai.script.push(
        Reply(
            tool_calls=(ToolCall("get_weather", {"city": "Paris"}, id="call_w1"),),
            input_tokens=30,
            output_tokens=8,
        ),
        Reply(text="It is sunny in Paris.", input_tokens=50, output_tokens=6),
    )
    seen: list[str] = []
    async with _weather_agent(model, seen).run_stream("Weather in Paris?") as result:
        deltas = [delta async for delta in result.stream_text(delta=True, debounce_by=None)]
    assert seen == ["Paris"]
    assert "".join(deltas) == "It is sunny in Paris."
    assert len(deltas) > 1
    assert (result.usage.input_tokens, result.usage.output_tokens) == (80, 14)

    first, second = fake_openai.script.completions("/chat/completions")
    assert first.headers["authorization"] == "Bearer sk-fake"
    assert first.body is not None
    assert second.body is not None
    assert first.body["model"] == "gpt-fake-large"
    assert first.body["stream"] is True
    assert first.body["stream_options"] == {"include_usage": True}
    assert [tool["function"]["name"] for tool in first.body["tools"]] == ["get_weather"]
    assert first.body["messages"][0] == {"role": "system", "content": "Be brief."}
    tool_message = second.body["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"] == "call_w1"
    assert "Sunny in Paris" in tool_message["content"]
    call = second.body["messages"][-2]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


async def test_openai_without_streaming(
    fake_openai: FakeOpenAI, llm_settings: SettingsFactory, http_client: httpx2.AsyncClient
) -> None:
    settings = llm_settings(openai_base_url=fake_openai.base_url)  # a local server: no key
    model = build_model(_entry("openai:gpt-fake-small"), settings, http_client)
    fake_openai.script.push(Reply(text="Plain answer.", input_tokens=5, output_tokens=2))
    result = await Agent(model).run("Hi")
    assert result.output == "Plain answer."
    assert (result.usage.input_tokens, result.usage.output_tokens) == (5, 2)
    [request] = fake_openai.script.requests
    assert request.body is not None
    assert not request.body.get("stream")
    assert request.headers["authorization"] == "Bearer not-needed"


async def test_openai_errors_surface_with_their_status(
    fake_openai: FakeOpenAI, llm_settings: SettingsFactory, http_client: httpx2.AsyncClient
) -> None:
    settings = llm_settings(openai_base_url=fake_openai.base_url, provider_max_retries=1)
    model = build_model(_entry("openai:gpt-fake-large"), settings, http_client)
    fake_openai.script.push(Reply(status=400, error_message="model is sleeping"))
    with pytest.raises(ModelHTTPError) as raised:
        await Agent(model).run("Hi")
    assert raised.value.status_code == 400
    # A server error is retried PROVIDER_MAX_RETRIES times by the SDK before it gives up.
    fake_openai.script.reset()
    fake_openai.script.push(Reply(status=503), Reply(text="Back again."))
    result = await Agent(model).run("Hi")
    assert result.output == "Back again."
    assert len(fake_openai.script.completions("/chat/completions")) == 2


async def test_a_slow_upstream_times_out(
    fake_openai: FakeOpenAI, llm_settings: SettingsFactory
) -> None:
    settings = llm_settings(
        openai_base_url=fake_openai.base_url,
        provider_read_timeout_seconds=0.2,
        provider_max_retries=0,
    )
    client = create_provider_http_client(settings)
    try:
        model = build_model(_entry("openai:gpt-fake-large"), settings, client)
        fake_openai.script.push(Reply(text="Too late.", delay=1.0))
        with pytest.raises(Exception, match=r"(?i)time"):
            await Agent(model).run("Hi")
    finally:
        await client.aclose()


async def test_anthropic_streams_a_tool_call_round_trip(
    fake_anthropic: FakeAnthropic, llm_settings: SettingsFactory, http_client: httpx2.AsyncClient
) -> None:
    settings = llm_settings(
        anthropic_api_key="sk-ant-fake", anthropic_base_url=fake_anthropic.base_url
    )
    model = build_model(_entry("anthropic:claude-fake-opus"), settings, http_client)
    assert isinstance(model, AnthropicModel)
    fake_anthropic.script.push(
        Reply(
            text="Let me check.",
            tool_calls=(ToolCall("get_weather", {"city": "Oslo"}, id="toolu_w1"),),
            input_tokens=40,
            output_tokens=9,
        ),
        Reply(text="Oslo is sunny.", input_tokens=70, output_tokens=4),
    )
    seen: list[str] = []
    # Events, not `run_stream`: that one stops at the first text, and this reply starts with some.
    events = []
    async with _weather_agent(model, seen).run_stream_events("Weather in Oslo?") as stream:
        events = [event async for event in stream]
    result = events[-1].result
    assert seen == ["Oslo"]
    assert result.output == "Oslo is sunny."
    assert (result.usage.input_tokens, result.usage.output_tokens) == (110, 13)
    text_deltas = [e for e in events if isinstance(e, PartDeltaEvent)]
    assert len(text_deltas) >= 4  # word by word, and the tool arguments in two halves

    first, second = fake_anthropic.script.completions("/v1/messages")
    # The key travels as `x-api-key` or, in newer SDKs, as a bearer token.
    credentials = (first.headers.get("x-api-key"), first.headers.get("authorization"))
    assert credentials in (("sk-ant-fake", None), (None, "Bearer sk-ant-fake"))
    assert first.body is not None
    assert second.body is not None
    assert first.body["stream"] is True
    assert first.body["model"] == "claude-fake-opus"
    assert [tool["name"] for tool in first.body["tools"]] == ["get_weather"]
    assistant, tool_results = second.body["messages"][-2:]
    assert {"type": "tool_use", "id": "toolu_w1", "name": "get_weather"}.items() <= (
        assistant["content"][-1].items()
    )
    result_block = tool_results["content"][0]
    assert result_block["type"] == "tool_result"
    assert result_block["tool_use_id"] == "toolu_w1"
    assert "Sunny in Oslo" in json.dumps(result_block["content"])


async def test_anthropic_errors_surface_with_their_status(
    fake_anthropic: FakeAnthropic, llm_settings: SettingsFactory, http_client: httpx2.AsyncClient
) -> None:
    settings = llm_settings(
        anthropic_api_key="sk-ant-fake",
        anthropic_base_url=fake_anthropic.base_url,
        provider_max_retries=0,
    )
    model = build_model(_entry("anthropic:claude-fake-haiku"), settings, http_client)
    fake_anthropic.script.push(Reply(status=529, error_message="overloaded"))
    with pytest.raises(ModelHTTPError) as raised:
        await Agent(model).run("Hi")
    assert raised.value.status_code == 529
    assert len(fake_anthropic.script.completions("/v1/messages")) == 1


async def test_gemini_and_offline_entries_build_their_models(
    llm_settings: SettingsFactory, http_client: httpx2.AsyncClient
) -> None:
    settings = llm_settings(gemini_api_key="gm-fake", offline_model_delay_ms=35)
    providers = ModelProviders(settings, http_client)
    gemini = providers.model_for(_entry("gemini:gemini-fake", context_window=1000))
    assert isinstance(gemini, GoogleModel)
    assert gemini.model_name == "gemini-fake"
    assert gemini.context_window == 1000
    offline = providers.model_for(_entry("offline:parley"))
    assert isinstance(offline, OfflineModel)
    assert offline.delay_seconds == pytest.approx(0.035)


async def test_a_model_without_tools_is_built_that_way(
    llm_settings: SettingsFactory, http_client: httpx2.AsyncClient
) -> None:
    providers = ModelProviders(llm_settings(openai_api_key="sk-x"), http_client)
    model = providers.model_for(_entry("openai:gpt-x", supports_tools=False))
    assert model.profile["supports_tools"] is False
    # The provider (and its SDK client) is shared by the models of the same provider.
    other = providers.model_for(_entry("openai:gpt-y"))
    assert other.provider is model.provider


async def test_an_unconfigured_provider_is_unavailable(
    llm_settings: SettingsFactory, http_client: httpx2.AsyncClient
) -> None:
    providers = ModelProviders(llm_settings(), http_client)
    for model_id in ("openai:gpt-x", "anthropic:claude-x", "gemini:gemini-x"):
        with pytest.raises(ServiceUnavailable):
            providers.model_for(_entry(model_id))


def test_the_warm_up_imports_the_openai_sdk_only_where_a_turn_would_use_it(
    llm_settings: SettingsFactory,
) -> None:
    """An OpenAI-compatible server is reached through the relay, not the `openai` SDK (16 MB
    of memory): the warm-up leaves the SDK out, unless a fallback model sends every turn
    through Pydantic AI's models; OpenAI's own service keeps it."""
    sdk = "parley.llm.sdks.openai"
    local = {"openai_api_key": "sk-x", "openai_base_url": "http://127.0.0.1:11434/v1"}
    assert sdk not in provider_modules(llm_settings(**local))
    assert sdk in provider_modules(llm_settings(**local, fallback_model="offline:parley"))
    assert sdk in provider_modules(llm_settings(openai_api_key="sk-x"))
    anthropic = provider_modules(llm_settings(anthropic_api_key="sk-ant"))
    assert anthropic == ["parley.llm.sdks.anthropic"]
