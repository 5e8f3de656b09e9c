"""The providers' embedding APIs: an OpenAI-compatible server's `POST {base_url}/embeddings`
(OpenAI, Ollama, vLLM, llama.cpp, OpenRouter...) and Gemini's
`POST {base_url}/v1beta/models/{model}:batchEmbedContents`.

Both send through the relay's connection pool with its retries, timeouts and error mapping
(`parley.llm.openai_relay.post_with_retries`), with the provider's configured URL and key: a 429
or 503 becomes `ProviderUnavailable`, a timeout `ProviderTimeout`, a refused key (and an answer
that cannot be read) `ProviderError`, the provider's 400 `InvalidRequest` with its message. An
answer is parsed in a worker thread: a batch's vectors are megabytes of JSON.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from parley.core.errors import ParleyError, ProviderError
from parley.llm.catalog_config import ProviderConfig
from parley.llm.embedders import ModelEmbedder, Purpose, RawBatch
from parley.llm.embedding_catalog import EmbeddingEntry
from parley.llm.openai_relay import (
    USER_AGENT,
    OpenAIRelay,
    RelayHttp,
    RelayResponse,
    env_proxy,
    post_with_retries,
    rejection_error,
)

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

# Each call stays far below OpenAI's limits (2048 inputs, 300,000 tokens a request), so that a
# batch is also a reasonable size for a smaller server.
OPENAI_BATCH_TEXTS = 256
OPENAI_BATCH_CHARS = 400_000
# batchEmbedContents takes at most 100 requests.
GEMINI_BATCH_TEXTS = 100
GEMINI_BATCH_CHARS = 400_000
GEMINI_TASK_TYPES: dict[Purpose, str] = {
    "query": "RETRIEVAL_QUERY",
    "passage": "RETRIEVAL_DOCUMENT",
}
# OpenAI (and Gemini) refuse an empty input; a lone space embeds to a valid vector instead.
EMPTY_TEXT_STAND_IN = " "


def _unreadable() -> ProviderError:
    return ProviderError("The embedding model's answer could not be read.")


def _matrix(rows: list[Any]) -> NDArray[np.float32]:
    """Rows of numbers as a float32 matrix (ragged or non-numeric rows are an unusable answer)."""
    import numpy as np

    try:
        matrix = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise _unreadable() from None
    if matrix.ndim != 2:
        raise _unreadable()
    return matrix


async def _read_json(response: RelayResponse) -> bytes:
    try:
        return await response.read()
    finally:
        response.close()


def parse_openai_answer(content: bytes, count: int) -> RawBatch:
    """An OpenAI `/embeddings` answer (`{"data": [{"index", "embedding"}], "usage"}`) as a batch,
    its rows in the order of the inputs.

    Raises:
        ProviderError: the answer is not that, or has not one row per input.
    """
    try:
        payload = json.loads(content)
        data = payload["data"]
        if not isinstance(data, list) or len(data) != count:
            raise _unreadable()
        ordered = sorted(data, key=lambda item: int(item.get("index", 0)))
        rows = [item["embedding"] for item in ordered]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _unreadable() from None
    usage = payload.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    reported = tokens if isinstance(tokens, int) and tokens >= 0 else None
    return RawBatch(_matrix(rows), reported)


def parse_gemini_answer(content: bytes, count: int) -> RawBatch:
    """A `batchEmbedContents` answer (`{"embeddings": [{"values"}]}`) as a batch (Gemini reports
    no token counts for it).

    Raises:
        ProviderError: the answer is not that, or has not one row per input.
    """
    try:
        embeddings = json.loads(content)["embeddings"]
        if not isinstance(embeddings, list) or len(embeddings) != count:
            raise _unreadable()
        rows = [item["values"] for item in embeddings]
    except (ValueError, KeyError, TypeError):
        raise _unreadable() from None
    return RawBatch(_matrix(rows), None)


class OpenAICompatibleEmbedder(ModelEmbedder):
    """An `openai:*` embedding model, through `POST {base_url}/embeddings` (the purpose changes
    nothing: OpenAI's API has no such argument).

    Args:
        entry: the model's catalog entry.
        relay: the provider's relay to its `/embeddings`.
    """

    max_batch_texts = OPENAI_BATCH_TEXTS
    max_batch_chars = OPENAI_BATCH_CHARS

    def __init__(self, entry: EmbeddingEntry, relay: OpenAIRelay) -> None:
        super().__init__(entry)
        self.relay = relay

    async def _embed_batch(self, texts: list[str], purpose: Purpose) -> RawBatch:
        body = {
            "model": self.entry.model_name,
            "input": [text or EMPTY_TEXT_STAND_IN for text in texts],
            "encoding_format": "float",
        }
        content = await _read_json(await self.relay.open(body, stream=False))
        return await asyncio.to_thread(parse_openai_answer, content, len(texts))


def gemini_rejection(status: int, content: bytes, config: ProviderConfig) -> ParleyError:
    """Gemini's error answers: as the relay reads them, but a refused key, which Gemini answers
    with a 400 (`API_KEY_INVALID`), is the operator's fault, not the caller's."""
    if status in (400, 403) and b"API_KEY_INVALID" in content:
        return ProviderError()
    return rejection_error(status, content, config)


class GeminiEmbedder(ModelEmbedder):
    """A `gemini:*` embedding model, through `batchEmbedContents`, with the purpose as its
    `taskType` and, when the catalog entry sets the dimension, as its `outputDimensionality`.

    Args:
        entry: the model's catalog entry.
        http: the relay's connection pool.
        config: Gemini's base URL and key.
        max_retries: retries of a failed call (`PROVIDER_MAX_RETRIES`).
    """

    max_batch_texts = GEMINI_BATCH_TEXTS
    max_batch_chars = GEMINI_BATCH_CHARS

    def __init__(
        self, entry: EmbeddingEntry, http: RelayHttp, config: ProviderConfig, max_retries: int
    ) -> None:
        super().__init__(entry)
        self.http = http
        self.config = config
        self.max_retries = max_retries
        name = quote(entry.model_name, safe="")
        self.url = f"{config.base_url}/v1beta/models/{name}:batchEmbedContents"
        self.headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": USER_AGENT,
            "x-goog-api-key": config.api_key or "",
        }
        self.proxy = env_proxy(self.url)

    def request_body(self, texts: list[str], purpose: Purpose) -> dict[str, Any]:
        """The `batchEmbedContents` body for one batch."""
        common: dict[str, Any] = {
            "model": f"models/{self.entry.model_name}",
            "taskType": GEMINI_TASK_TYPES[purpose],
        }
        if self.entry.truncates and self.entry.dimension:
            common["outputDimensionality"] = self.entry.dimension
        return {
            "requests": [
                {**common, "content": {"parts": [{"text": text or EMPTY_TEXT_STAND_IN}]}}
                for text in texts
            ]
        }

    async def _embed_batch(self, texts: list[str], purpose: Purpose) -> RawBatch:
        content = json.dumps(self.request_body(texts, purpose), separators=(",", ":")).encode()
        response = await post_with_retries(
            self.http,
            self.url,
            content,
            self.headers,
            proxy=self.proxy,
            config=self.config,
            max_retries=self.max_retries,
            rejection=gemini_rejection,
        )
        answer = await _read_json(response)
        return await asyncio.to_thread(parse_gemini_answer, answer, len(texts))
