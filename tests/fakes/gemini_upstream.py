"""A fake Gemini server, for model discovery only: `GET /v1beta/models` answers two models (one
that generates text, one embedding model that discovery must skip) and records each request."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes import FakeUpstream

MODELS = [
    {
        "name": "models/gemini-fake-pro",
        "displayName": "Gemini Fake Pro",
        "inputTokenLimit": 1048576,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    },
    {
        "name": "models/text-embedding-fake",
        "supportedGenerationMethods": ["embedContent"],
    },
]


@dataclass
class FakeGemini(FakeUpstream):
    """Gemini's model list on loopback; `origin` is its base URL (`GEMINI_BASE_URL`)."""

    async def list_models(self, request: Request) -> JSONResponse:
        """`GET /v1beta/models`: the fixed list."""
        await self._record(request)
        return JSONResponse({"models": MODELS})

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(routes=[Route("/v1beta/models", self.list_models, methods=["GET"])])
