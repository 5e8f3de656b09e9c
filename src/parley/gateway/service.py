"""The gateway's use cases: listing the models, and one chat completion, orchestrated across the
catalog (llm), the budget (usage) and the provider (embeddings: `parley.gateway.embedding_service`).

A completion is checked in this order: rate limit (per user), model (an enabled catalog entry),
arguments; then its cost is estimated, the read transaction is committed (the use case's one
commit: no database connection is held while the model answers), the estimate is reserved against
the user's budget, and the call goes to its provider — passed through to an OpenAI-compatible
server, translated for the others (`parley.gateway.model_calls`). The call is settled exactly
once, whichever way it ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from parley import engines
from parley.accounts.authentication import Caller
from parley.core.errors import InvalidRequest
from parley.core.ratelimit import RateLimiter
from parley.core.telemetry import traced
from parley.gateway.errors import ModelNotFound
from parley.gateway.metering import CallStatus, MeteredCall, estimate_prompt_tokens
from parley.gateway.passthrough import StreamRelay, complete
from parley.gateway.schemas import ChatCompletionRequest
from parley.llm.embedding_catalog import EmbeddingEntry
from parley.llm.embeddings import Embeddings
from parley.llm.providers import ModelProviders
from parley.llm.schemas import CatalogEntry
from parley.llm.service import LLMService, ModelUnavailable
from parley.settings import Settings
from parley.usage.meter import UsageMeter
from parley.usage.pricing import estimate_cost

if TYPE_CHECKING:
    from parley.gateway.model_requests import ModelCall

PASS_THROUGH_PROVIDER = "openai"
MAX_MODEL_ID_CHARS = 200


def _model_calls() -> ModuleType:
    """`parley.gateway.model_calls`: it needs the model library (see `parley.engines`)."""
    result: ModuleType = engines.module("parley.gateway.model_calls")
    return result


def is_catalog_id(model_id: str) -> bool:
    """Whether `model_id` could be a catalog id at all (no database can look up text with a NUL
    character or a lone surrogate, so such ids are simply unknown)."""
    if len(model_id) > MAX_MODEL_ID_CHARS or "\x00" in model_id:
        return False
    try:
        model_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def count_v1_request(limiter: RateLimiter, settings: Settings, caller: Caller) -> None:
    """Count one `/v1` request against the caller's per-minute limit.

    Raises:
        RateLimited: over `RATE_LIMIT_V1_PER_MINUTE`.
    """
    per_minute = settings.rate_limit_v1_per_minute
    await limiter.hit(
        f"v1:user:{caller.user_id}",
        per_minute,
        message=f"Rate limit reached for /v1 requests: {per_minute} per minute.",
    )


@dataclass(frozen=True, slots=True)
class CompletionResult:
    """A completion's answer: a JSON body, or the events of a stream."""

    body: bytes | None = None
    events: AsyncIterator[bytes] | None = None


@dataclass(frozen=True, slots=True)
class _CheckedCall:
    """A completion that passed its checks: its model, what to ask a translated model (None when
    the call passes through), and the tokens its budget hold is estimated at."""

    entry: CatalogEntry
    model_call: ModelCall | None
    input_estimate: int
    output_estimate: int


class GatewayService:
    """The `/v1` use cases, over one request session (only read, and released before a model
    is called)."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        settings: Settings,
        llm: LLMService,
        providers: ModelProviders,
        limiter: RateLimiter,
        meter: UsageMeter,
        embeddings: Embeddings,
    ) -> None:
        self.session = session
        self.settings = settings
        self.llm = llm
        self.providers = providers
        self.limiter = limiter
        self.meter = meter
        self.embeddings = embeddings

    async def count_request(self, caller: Caller) -> None:
        """Count one `/v1` request against the caller's per-minute limit.

        Raises:
            RateLimited: over `RATE_LIMIT_V1_PER_MINUTE`.
        """
        await count_v1_request(self.limiter, self.settings, caller)

    async def resolve(self, model_id: str) -> CatalogEntry:
        """The enabled catalog entry with this id.

        Raises:
            ModelNotFound: no enabled entry has it.
        """
        if not is_catalog_id(model_id):
            raise ModelNotFound()
        unknown = ModelNotFound(
            f"The model `{model_id}` does not exist or you do not have access to it."
        )
        try:
            return await self.llm.resolve(model_id, field="body.model")
        except ModelUnavailable:
            raise unknown from None

    @traced(name="gateway.list_models")
    async def list_models(self, caller: Caller) -> list[CatalogEntry]:
        """The enabled catalog, in catalog order."""
        await self.count_request(caller)
        return await self.llm.list_enabled()

    @traced(name="gateway.get_model")
    async def get_model(self, caller: Caller, model_id: str) -> CatalogEntry | EmbeddingEntry:
        """One enabled catalog entry, or an embedding model (which the list leaves out: tools
        fill their chat model pickers from it).

        Raises:
            ModelNotFound: no enabled entry and no embedding model has this id.
        """
        await self.count_request(caller)
        try:
            return await self.resolve(model_id)
        except ModelNotFound:
            embedding = next((e for e in self.embeddings.entries() if e.id == model_id), None)
            if embedding is None:
                raise
            return embedding

    @traced(name="gateway.chat_completion")
    async def chat_completion(
        self, caller: Caller, request: ChatCompletionRequest
    ) -> CompletionResult:
        """One chat completion, metered.

        Raises:
            RateLimited: over the per-minute limit.
            ModelNotFound: unknown or disabled model.
            InvalidRequest: arguments the model cannot take.
            BudgetExceeded: the monthly budget is spent.
            ProviderError, ProviderUnavailable, ProviderTimeout: the provider failed before its
                first token (a later failure ends the stream with an error event).
        """
        checked = await self._check(caller, request)
        # The use case's one commit, which ends its use of the request session: the session only
        # read (the catalog), and ending its transaction before the call means no connection
        # waits on the model or is held while the answer streams (ARCHITECTURE.md). The budget
        # hold and the usage record are the meter's, in transactions of its own. (With the
        # catalog from memory there is no transaction to end.)
        if self.session.in_transaction():
            await self.session.commit()
        return await self._send(caller, request, checked)

    async def _check(self, caller: Caller, request: ChatCompletionRequest) -> _CheckedCall:
        """Everything checked before a call reserves budget: the limit, the model, the arguments."""
        await self.count_request(caller)
        entry = await self.resolve(request.model)
        if request.n is not None and request.n > 1:
            raise InvalidRequest("Only n=1 is supported.", param="n")
        model_call = (
            None
            if entry.provider == PASS_THROUGH_PROVIDER
            else _model_calls().to_model_call(request, entry)
        )
        return _CheckedCall(
            entry=entry,
            model_call=model_call,
            input_estimate=estimate_prompt_tokens(request),
            output_estimate=(
                request.output_token_limit or self.settings.budget_reserve_output_tokens
            ),
        )

    async def _send(
        self, caller: Caller, request: ChatCompletionRequest, checked: _CheckedCall
    ) -> CompletionResult:
        """Reserve the call's estimated cost and send it to its provider (settled once)."""
        entry = checked.entry
        reservation = await self.meter.reserve(
            caller,
            estimate_cost(
                entry, input_tokens=checked.input_estimate, output_tokens=checked.output_estimate
            ),
        )
        metered = MeteredCall(
            meter=self.meter,
            reservation=reservation,
            user_id=caller.user_id,
            api_key_id=caller.api_key_id,
            entry=entry,
            input_estimate=checked.input_estimate,
        )
        try:
            if checked.model_call is None:
                return await self._pass_through(request, entry, metered)
            calls = _model_calls()
            model = self.llm.model_for(entry)
            if request.stream:
                events = await calls.start_stream(
                    model,
                    checked.model_call,
                    metered,
                    model_id=entry.id,
                    include_usage=request.wants_usage_chunk,
                )
                return CompletionResult(events=events)
            body = await calls.complete(model, checked.model_call, metered, entry.id)
            return CompletionResult(body=body)
        except BaseException as exc:
            # Every way out before the answer is handed over settles here (at most once).
            status: CallStatus = "error" if isinstance(exc, Exception) else "cancelled"
            await metered.settle(status, input_tokens=None, output_tokens=0)
            raise

    async def _pass_through(
        self, request: ChatCompletionRequest, entry: CatalogEntry, metered: MeteredCall
    ) -> CompletionResult:
        relay = self.providers.relay(PASS_THROUGH_PROVIDER)
        body: dict[str, Any] = request.model_dump(mode="json", by_alias=True, exclude_unset=True)
        body["model"] = entry.model_name
        if not request.stream:
            return CompletionResult(body=await complete(relay, body, metered))
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        response = await relay.open(body, stream=True)
        stream = StreamRelay(response, metered, include_usage=request.wants_usage_chunk)
        return CompletionResult(events=await stream.start())
