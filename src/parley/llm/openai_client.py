"""The OpenAI SDK's client, with streamed chunks built by pydantic's validator.

The SDK builds every streamed `ChatCompletionChunk` with its own lenient `construct_type`, which
walks the model in Python and tests each class against a runtime-checkable protocol;
`ChatCompletionChunk.model_validate` (pydantic-core) gives an equal object for far less CPU (see
bench/findings.md), and a reply is as many chunks as it has tokens. A chunk the schema refuses (a
server that sends a finish reason or an `object` of its own) is still built the SDK's lenient way.
"""

from __future__ import annotations

from typing import TypeVar, cast

import httpx2
import pydantic
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk

ResponseT = TypeVar("ResponseT")


class ParleyOpenAI(AsyncOpenAI):
    """`AsyncOpenAI` whose streamed chat chunks are validated by pydantic-core."""

    def _process_response_data(
        self, *, data: object, cast_to: type[ResponseT], response: httpx2.Response
    ) -> ResponseT:
        if cast_to is ChatCompletionChunk and type(data) is dict:
            try:
                return cast(ResponseT, ChatCompletionChunk.model_validate(data))
            except pydantic.ValidationError:
                pass  # off the schema: built leniently below, as the SDK does
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)
