"""The relay's own HTTP client (`parley.llm.openai_relay`, aiohttp): it honours the proxy the
environment names, as the provider SDKs' client does, and `NO_PROXY`."""

from __future__ import annotations

import pytest
from tests.fakes import Reply
from tests.fakes.http_proxy import forward_proxy
from tests.fakes.openai_upstream import FaultyOpenAI

from parley.llm.catalog_config import ProviderConfig
from parley.llm.openai_relay import OpenAIRelay, RelayHttp, env_proxy

BODY = {"model": "gpt-fake-large", "messages": [{"role": "user", "content": "hi"}]}


def _relay(http: RelayHttp, fake: FaultyOpenAI) -> OpenAIRelay:
    config = ProviderConfig(
        name="openai",
        api_key="sk-test",
        base_url=fake.base_url,
        custom_base_url=True,
        models=(),
    )
    return OpenAIRelay(http, config, max_retries=0)


async def test_requests_go_through_the_environments_proxy(
    openai_fake: FaultyOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = RelayHttp(connect_timeout=5, read_timeout=10)
    async with forward_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        openai_fake.script.push(Reply(text="via the proxy"))
        try:
            response = await _relay(http, openai_fake).open(BODY, stream=False)
            body = await response.read()
            response.close()
        finally:
            await http.aclose()
    assert b"via the proxy" in body
    assert proxy.targets == [f"{openai_fake.base_url}/chat/completions"]
    [sent] = openai_fake.script.requests
    assert sent.headers["authorization"] == "Bearer sk-test"  # the configured key, not a caller's
    assert sent.headers["user-agent"].startswith("parley/")


def test_no_proxy_and_no_setting_mean_a_direct_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "http://models.internal:8000/v1/chat/completions"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert env_proxy(url) is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    assert env_proxy(url) == "http://proxy.internal:3128"
    assert env_proxy("https://api.example.com/v1") is None  # HTTPS_PROXY is not set
    monkeypatch.setenv("NO_PROXY", "models.internal")
    assert env_proxy(url) is None
