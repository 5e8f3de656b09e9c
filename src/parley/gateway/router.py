"""The OpenAI-compatible API (CONTRACT.md section 1), in OpenAI's formats and without envelope.

- `GET /v1/models` — the enabled catalog (its chat models), as OpenAI lists models
- `GET /v1/models/{model}` — one model, an embedding model too (catalog ids hold `:` and may
  hold `/`)
- `POST /v1/chat/completions` — a chat completion, streamed (`text/event-stream`) or not
- `POST /v1/embeddings` — embeddings of texts, from an embedding model of the catalog

Authentication is `Authorization: Bearer` with a Parley API key (`pk_...`) or access token; errors
are OpenAI's error objects (see `parley.gateway.errors`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from parley.accounts.dependencies import CurrentCaller
from parley.gateway.dependencies import EmbeddingServiceDep, GatewayServiceDep
from parley.gateway.errors import openai_error_responses
from parley.gateway.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    ModelList,
    ModelObject,
)
from parley.llm.embedding_catalog import EmbeddingEntry
from parley.llm.schemas import CatalogEntry

gateway_router = APIRouter(prefix="/v1", tags=["openai"])

STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
# Catalog entries carry no creation time of their own worth exposing; OpenAI's field is required.
CATALOG_EPOCH = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())


def _model_object(entry: CatalogEntry | EmbeddingEntry) -> ModelObject:
    return ModelObject(id=entry.id, created=CATALOG_EPOCH, owned_by=entry.provider)


def _inlined(schema: Any, definitions: dict[str, Any]) -> Any:
    """A JSON schema with its local `$ref`s replaced by their definitions (no recursion here), so
    that it can stand alone inside the OpenAPI document."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inlined(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
        return {
            key: _inlined(value, definitions) for key, value in schema.items() if key != "$defs"
        }
    if isinstance(schema, list):
        return [_inlined(item, definitions) for item in schema]
    return schema


def _stream_event_schema() -> dict[str, Any]:
    """One server-sent event of a streamed completion (as FastAPI documents event streams, with
    `itemSchema`): its `data` is a `chat.completion.chunk` as JSON, or `[DONE]` last."""
    chunk = ChatCompletionChunk.model_json_schema()
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "description": "A `chat.completion.chunk` as JSON; `[DONE]` ends the stream.",
                "contentMediaType": "application/json",
                "contentSchema": _inlined(chunk, chunk.get("$defs", {})),
            }
        },
    }


@gateway_router.get(
    "/models",
    summary="List models (OpenAI format)",
    response_model=ModelList,
    responses=openai_error_responses(429),
)
async def list_models(caller: CurrentCaller, gateway: GatewayServiceDep) -> ModelList:
    """The enabled catalog entries, as OpenAI's `GET /v1/models` lists models."""
    entries = await gateway.list_models(caller)
    return ModelList(data=[_model_object(entry) for entry in entries])


@gateway_router.get(
    "/models/{model:path}",
    summary="Get a model (OpenAI format)",
    response_model=ModelObject,
    responses=openai_error_responses(404, 429),
)
async def get_model(model: str, caller: CurrentCaller, gateway: GatewayServiceDep) -> ModelObject:
    """One enabled catalog entry by its id (`offline:parley`, `openai:gpt-4o-mini`, ...), or an
    embedding model (`offline:embed`, ...)."""
    return _model_object(await gateway.get_model(caller, model))


_COMPLETION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A `chat.completion` object; with `stream: true`, server-sent "
        "`chat.completion.chunk` events (`data: {...}`) ending with `data: [DONE]`.",
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/ChatCompletion"},
            },
            "text/event-stream": {"itemSchema": _stream_event_schema()},
        },
    },
    **openai_error_responses(402, 404, 413, 429, 502, 503, 504),
}


@gateway_router.post(
    "/chat/completions",
    summary="Create a chat completion (OpenAI format)",
    response_model=ChatCompletion,
    responses=_COMPLETION_RESPONSES,
)
async def create_chat_completion(
    body: ChatCompletionRequest, caller: CurrentCaller, gateway: GatewayServiceDep
) -> Response:
    """OpenAI's chat completion: passed through to OpenAI-compatible providers, translated for
    the offline model, Anthropic and Gemini; metered against the caller's budget."""
    result = await gateway.chat_completion(caller, body)
    if result.events is not None:
        return StreamingResponse(
            result.events, media_type="text/event-stream", headers=STREAM_HEADERS
        )
    return Response(content=result.body, media_type="application/json")


@gateway_router.post(
    "/embeddings",
    summary="Create embeddings (OpenAI format)",
    response_model=EmbeddingList,
    responses=openai_error_responses(402, 404, 413, 429, 502, 503, 504),
)
async def create_embeddings(
    body: EmbeddingRequest, caller: CurrentCaller, embeddings: EmbeddingServiceDep
) -> Response:
    """OpenAI's embeddings: a vector per input text, from an embedding model of the catalog
    (`offline:embed` needs no provider); metered against the caller's budget."""
    content = await embeddings.create(caller, body)
    return Response(content=content, media_type="application/json")
