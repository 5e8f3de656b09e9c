"""The one classifier of a model's failures, for every surface that calls a model.

`provider_failure` turns whatever a model step raised (Pydantic AI's model errors, a timeout, or
the relay's own `ParleyError` from an OpenAI-compatible server) into a `ParleyError`: what `/v1`
answers with. `turn_failure` reads that same error as a turn stores and streams it: a stable code
and a sentence for a person, never the provider's raw text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelContextWindowExceededError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelRequestRejectedError,
    ModelRequestTimeout,
    ModelTimeoutError,
    ModelUnavailableError,
    UserError,
)

from parley.core import errors
from parley.core.errors import ParleyError

logger = logging.getLogger(__name__)
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"


@dataclass(frozen=True, slots=True)
class TurnFailure:
    """Why a turn failed, as stored on the reply and sent in the stream's `error` chunk."""

    code: str
    message: str


CONTEXT_TOO_LONG = TurnFailure(
    "context_too_long", "The conversation is too long for this model's context window."
)
PROVIDER_TIMEOUT = TurnFailure("provider_timeout", "The model provider did not answer in time.")
PROVIDER_UNAVAILABLE = TurnFailure(
    "provider_unavailable", "The model provider is unavailable; try again shortly."
)
PROVIDER_ERROR = TurnFailure("provider_error", "The model provider returned an error.")
UNKNOWN_FAILURE = TurnFailure("provider_error", "The reply failed.")


def is_model_failure(error: BaseException) -> bool:
    """Whether `error` came from the model or its provider, rather than from Parley's own code."""
    return isinstance(error, ParleyError | ModelAPIError | TimeoutError)


def provider_failure(error: BaseException, *, log_unknown: bool = True) -> ParleyError:
    """The Parley error for a model's failure; never the provider's own text, except for a
    request the provider rejected as the caller's fault."""
    if isinstance(error, ParleyError):
        return error
    if isinstance(error, ModelContextWindowExceededError):
        return errors.InvalidRequest(
            "The messages are too long for this model's context window.",
            param="messages",
            openai_code=CONTEXT_LENGTH_EXCEEDED,
        )
    if isinstance(error, ModelTimeoutError | ModelRequestTimeout | TimeoutError):
        return errors.ProviderTimeout()
    if isinstance(error, ModelRateLimitError | ModelUnavailableError | ModelConnectionError):
        return errors.ProviderUnavailable()
    if isinstance(error, ModelAuthenticationError):
        return errors.ProviderError()
    if isinstance(error, ModelRequestRejectedError) and (
        isinstance(error, ModelHTTPError) and error.status_code in (400, 413, 422)
    ):
        return errors.InvalidRequest("The model provider rejected the request as invalid.")
    if isinstance(error, UserError):
        return errors.InvalidRequest(f"This model cannot answer this request: {error}")
    if log_unknown and not isinstance(error, ModelAPIError):
        logger.error("a model call failed", exc_info=error)
    return errors.ProviderError()


def turn_failure(error: BaseException) -> TurnFailure:
    """A stable code and a sentence for a person, for a turn whose model step raised `error`."""
    if not is_model_failure(error):
        return UNKNOWN_FAILURE  # Parley's own bug or a library's: logged by the turn
    failure = provider_failure(error, log_unknown=False)
    if isinstance(failure, errors.ProviderTimeout):
        return PROVIDER_TIMEOUT
    if isinstance(failure, errors.ProviderUnavailable):
        return PROVIDER_UNAVAILABLE
    # OpenAI-compatible servers (Ollama, vLLM, llama.cpp) report an overflowing context with a
    # 400 whose message names it and, often, no code.
    if isinstance(failure, errors.InvalidRequest) and (
        failure.openai_code == CONTEXT_LENGTH_EXCEEDED or "context" in failure.message.lower()
    ):
        return CONTEXT_TOO_LONG
    return PROVIDER_ERROR
