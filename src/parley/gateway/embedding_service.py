"""`POST /v1/embeddings`, the use case: OpenAI's embeddings API over the embedding catalog
(`parley.llm.embeddings`), metered like every `/v1` call.

A call is checked in this order: rate limit (per user), model (an embedding model of the catalog:
a chat model's id, like any unknown one, is a 404 `model_not_found`), inputs (text only, within
bounds), `dimensions` (at most the model's); then its cost is estimated (about four characters a
token, no output), held against the user's budget, and settled exactly once with the tokens the
model read. It reads no user data and no database row: the catalog of embedding models is the
process's, from its configuration.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from parley.accounts.authentication import Caller
from parley.core.errors import InvalidRequest, NotFound
from parley.core.ratelimit import RateLimiter
from parley.core.telemetry import traced
from parley.gateway.errors import ModelNotFound
from parley.gateway.metering import CallStatus, MeteredCall
from parley.gateway.schemas import (
    MAX_EMBEDDING_INPUT_CHARS,
    MAX_EMBEDDING_INPUTS,
    MAX_EMBEDDING_TOTAL_CHARS,
    EmbeddingRequest,
)
from parley.gateway.service import count_v1_request, is_catalog_id
from parley.llm.embedders import ModelEmbedder, unit_rows
from parley.llm.embeddings import Embeddings
from parley.settings import Settings
from parley.usage.meter import UsageMeter
from parley.usage.pricing import tokens_for_chars

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

EncodingFormat = Literal["float", "base64"]


def checked_inputs(raw: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    """The texts of a request's `input`.

    Raises:
        InvalidRequest: token arrays, no input at all, too many inputs, one too long, too many
            characters in all, or a text that is not valid Unicode.
    """
    if isinstance(raw, str):
        texts = [raw]
    elif not raw:
        raise InvalidRequest("'input' must not be an empty array.", param="input")
    elif not all(isinstance(item, str) for item in raw):
        raise InvalidRequest(
            "Token arrays are not supported here: send 'input' as a string or an array of strings.",
            param="input",
        )
    else:
        texts = [item for item in raw if isinstance(item, str)]
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise InvalidRequest(
            f"'input' takes at most {MAX_EMBEDDING_INPUTS} texts; it has {len(texts)}.",
            param="input",
        )
    total = 0
    for index, text in enumerate(texts):
        if len(text) > MAX_EMBEDDING_INPUT_CHARS:
            raise InvalidRequest(
                f"'input[{index}]' is {len(text)} characters long; the most is "
                f"{MAX_EMBEDDING_INPUT_CHARS}.",
                param=f"input[{index}]",
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(
                f"'input[{index}]' is not valid Unicode (it holds a lone surrogate).",
                param=f"input[{index}]",
            ) from None
        total += len(text)
    if total > MAX_EMBEDDING_TOTAL_CHARS:
        raise InvalidRequest(
            f"The inputs hold {total} characters in all; the most is {MAX_EMBEDDING_TOTAL_CHARS}.",
            param="input",
        )
    return texts


def shortened(vectors: NDArray[np.float32], dimensions: int | None) -> NDArray[np.float32]:
    """The vectors cut to `dimensions` and renormalised (as OpenAI shortens its own), or as
    they are when no shorter length is asked for.

    Raises:
        InvalidRequest: `dimensions` is more than the model's.
    """
    width = int(vectors.shape[1])
    if dimensions is None or dimensions == width:
        return vectors
    if dimensions > width:
        raise InvalidRequest(
            f"This model's vectors have {width} dimensions; 'dimensions' may not be more.",
            param="dimensions",
        )
    return unit_rows(vectors[:, :dimensions])


def embedding_list_body(
    vectors: NDArray[np.float32], *, model_id: str, encoding: EncodingFormat, prompt_tokens: int
) -> bytes:
    """OpenAI's embedding list as JSON: `base64` is each row's little-endian float32 bytes."""
    rows: Sequence[Any]
    if encoding == "base64":
        little = vectors.astype("<f4", copy=False)
        rows = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        rows = vectors.tolist()
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": row}
            for index, row in enumerate(rows)
        ],
        "model": model_id,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
    return json.dumps(body, separators=(",", ":")).encode()


class EmbeddingService:
    """The `/v1/embeddings` use case (see the module's docstring)."""

    def __init__(
        self,
        *,
        settings: Settings,
        embeddings: Embeddings,
        limiter: RateLimiter,
        meter: UsageMeter,
    ) -> None:
        self.settings = settings
        self.embeddings = embeddings
        self.limiter = limiter
        self.meter = meter

    def resolve(self, model_id: str) -> ModelEmbedder:
        """The embedding model a request names.

        Raises:
            ModelNotFound: no embedding model has this id (a chat model's included).
        """
        if not is_catalog_id(model_id):
            raise ModelNotFound()
        try:
            return self.embeddings.embedder(model_id)
        except NotFound:
            raise ModelNotFound(
                f"The model `{model_id}` does not exist or is not an embedding model."
            ) from None

    @traced(name="gateway.embeddings")
    async def create(self, caller: Caller, request: EmbeddingRequest) -> bytes:
        """One embeddings call, metered; OpenAI's embedding list as JSON.

        Raises:
            RateLimited: over the per-minute limit.
            ModelNotFound: not an embedding model of the catalog.
            InvalidRequest: inputs out of bounds, token arrays, or `dimensions` too large.
            BudgetExceeded: the monthly budget is spent.
            ProviderError, ProviderUnavailable, ProviderTimeout: the provider failed.
        """
        await count_v1_request(self.limiter, self.settings, caller)
        embedder = self.resolve(request.model)
        texts = checked_inputs(request.input)
        known = embedder.known_dimension
        if request.dimensions is not None and known is not None and request.dimensions > known:
            raise InvalidRequest(
                f"This model's vectors have {known} dimensions; 'dimensions' may not be more.",
                param="dimensions",
            )
        estimate = tokens_for_chars(sum(len(text) for text in texts))
        entry = embedder.entry
        reservation = await self.meter.reserve(caller, entry.cost_usd(estimate))
        metered = MeteredCall(
            meter=self.meter,
            reservation=reservation,
            user_id=caller.user_id,
            api_key_id=caller.api_key_id,
            entry=entry,
            input_estimate=estimate,
        )
        try:
            result = await embedder.embed_counted(texts, purpose=request.input_type or "query")
        except BaseException as exc:
            status: CallStatus = "error" if isinstance(exc, Exception) else "cancelled"
            await metered.settle(status, input_tokens=None, output_tokens=0)
            if isinstance(exc, ValueError):  # the inputs were checked above: a safety net
                raise InvalidRequest(str(exc), param="input") from None
            raise
        await metered.settle("complete", input_tokens=result.prompt_tokens, output_tokens=0)
        vectors = shortened(result.vectors, request.dimensions)
        # Megabytes of JSON for a large request: encoded off the event loop.
        return await asyncio.to_thread(
            embedding_list_body,
            vectors,
            model_id=entry.id,
            encoding=request.encoding_format,
            prompt_tokens=result.prompt_tokens,
        )
