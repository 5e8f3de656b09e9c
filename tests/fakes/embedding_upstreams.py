"""Fake embedding APIs on loopback, speaking the real wire formats: an OpenAI-compatible server's
`POST /v1/embeddings` (`FakeOpenAIEmbeddings`) and Gemini's
`POST /v1beta/models/{model}:batchEmbedContents` (`FakeGeminiEmbeddings`).

Each answers every text with a vector that depends on the text alone (so tests can compare), of
`dimension` numbers, deliberately not of unit length (Parley normalises), or with an error in the
provider's own format as scripted by a `Reply` (`status`, `error_message`, `delay`); a `Reply`
whose `text` is set answers that text as the body instead, for unreadable answers. Every request
is recorded.

    fake = FakeOpenAIEmbeddings.start()
    fake.script.push(Reply(status=429))
    ... OPENAI_BASE_URL=fake.base_url ...
    fake.stop()
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes import FakeUpstream, Reply, Script

DEFAULT_DIMENSION = 8


def fake_vector(text: str, dimension: int) -> list[float]:
    """The fake's vector for `text`: numbers in [-3, 3] drawn from the text's SHA-256 (never all
    zero, never of unit length on purpose)."""
    numbers: list[float] = []
    counter = 0
    while len(numbers) < dimension:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        numbers += [(value / 2**31) * 3 - 3 for (value,) in struct.iter_unpack(">I", digest)]
        counter += 1
    vector = numbers[:dimension]
    vector[0] = vector[0] or 1.0
    return vector


@dataclass
class _FakeEmbeddings(FakeUpstream):
    """What both fakes share: the vectors' length and the scripted failures."""

    script: Script = field(default_factory=lambda: Script(default=Reply()))
    dimension: int = DEFAULT_DIMENSION

    def reset(self) -> None:
        """Nothing scripted, nothing recorded, vectors of the default length."""
        self.script = Script(default=Reply())
        self.dimension = DEFAULT_DIMENSION

    async def _scripted(self, request: Request) -> tuple[dict[str, Any], Reply, Response | None]:
        """The request's body, the reply scripted for it, and the response to send instead of
        vectors (an error, or a scripted body), if any."""
        body = await self._record(request) or {}
        reply = self.script.next_reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return body, reply, self._error(reply)
        if reply.text is not None:
            return body, reply, Response(reply.text, media_type="application/json")
        return body, reply, None

    @abstractmethod
    def _error(self, reply: Reply) -> Response:
        """The provider's error answer for a scripted failure."""


@dataclass
class FakeOpenAIEmbeddings(_FakeEmbeddings):
    """`POST /v1/embeddings` as OpenAI answers it, usage included."""

    @property
    def base_url(self) -> str:
        """What `OPENAI_BASE_URL` would be: the origin and `/v1`."""
        return f"{self.origin}/v1"

    def _error(self, reply: Reply) -> Response:
        kind = "server_error" if reply.status >= 500 else "invalid_request_error"
        return JSONResponse(
            {"error": {"message": reply.error_message, "type": kind, "param": None, "code": None}},
            status_code=reply.status,
        )

    async def embeddings(self, request: Request) -> Response:
        body, reply, instead = await self._scripted(request)
        if instead is not None:
            return instead
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": index, "embedding": fake_vector(text, self.dimension)}
            for index, text in enumerate(texts)
        ]
        # Answered in reverse: OpenAI's `index` says which input a row is for.
        return JSONResponse(
            {
                "object": "list",
                "data": data[::-1],
                "model": body["model"],
                "usage": {"prompt_tokens": reply.input_tokens, "total_tokens": reply.input_tokens},
            }
        )

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(routes=[Route("/v1/embeddings", self.embeddings, methods=["POST"])])


@dataclass
class FakeGeminiEmbeddings(_FakeEmbeddings):
    """`POST /v1beta/models/{model}:batchEmbedContents` as Gemini answers it (no usage; its
    `outputDimensionality` honoured); its `origin` is `GEMINI_BASE_URL`."""

    def _error(self, reply: Reply) -> Response:
        status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED"}
        error: dict[str, Any] = {
            "code": reply.status,
            "message": reply.error_message,
            "status": status.get(reply.status, "INTERNAL"),
        }
        if "API key" in reply.error_message:  # as Gemini refuses a wrong key: a 400
            error["details"] = [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            ]
        return JSONResponse({"error": error}, status_code=reply.status)

    async def batch_embed(self, request: Request) -> Response:
        body, _, instead = await self._scripted(request)
        if instead is not None:
            return instead
        embeddings = []
        for item in body["requests"]:
            text = "".join(part["text"] for part in item["content"]["parts"])
            values = fake_vector(text, self.dimension)
            embeddings.append({"values": values[: item.get("outputDimensionality", len(values))]})
        return JSONResponse({"embeddings": embeddings})

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(
            routes=[
                Route(
                    "/v1beta/models/{model}:batchEmbedContents", self.batch_embed, methods=["POST"]
                )
            ]
        )
