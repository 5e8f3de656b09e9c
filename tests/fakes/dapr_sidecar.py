"""A stand-in for the Dapr sidecar (daprd) on loopback, speaking the parts of Dapr's documented
HTTP pub/sub contract that Parley relies on. It is not daprd: no component, no broker, no
resiliency policy; one in-memory log per (pub/sub, topic) plays the broker.

The app's side, a real HTTP server on a free loopback port:

- `POST /v1.0/publish/{pubsubname}/{topic}[?metadata.<key>=...]` (Dapr's pub/sub API reference):
  204 once the message is kept; 400 `ERR_PUBSUB_NOT_FOUND` for a pub/sub it does not know; 401
  without the `dapr-api-token` its `api_token` (daprd's DAPR_API_TOKEN) asks for; `fail_with`
  makes it answer that status instead (a sidecar whose broker is down answers 500). A body of
  `application/cloudevents+json` is the app's own CloudEvent: like daprd
  (components-contrib `pubsub.FromCloudEvent`), it keeps every field and sets `topic`,
  `pubsubname`, `traceid`, `traceparent` and `tracestate`; any other body is wrapped in a new
  CloudEvent of Dapr's (`com.dapr.event.sent`, a new id).

daprd's side, driven by the test (`subscriptions`, `deliver`, `deliver_pending`, `post`):

- it reads the app's programmatic subscriptions, `GET /dapr/subscribe` (a JSON list of
  `{pubsubname, topic, route}` or `{pubsubname, topic, routes: {rules, default}}`);
- it delivers a kept message by `POST`ing its bytes, as the broker holds them, to the route, with
  `Content-Type: application/cloudevents+json`, `traceparent`, `pubsubName` and, when its
  `app_api_token` (daprd's APP_API_TOKEN) is set, `dapr-api-token`;
- it reads the answer as daprd does: a 2xx with `{"status": "SUCCESS"}`, no status or a body that
  is not JSON is a success; `DROP` drops the message; `RETRY`, an unknown status, or any other
  HTTP status but 404 is delivered again; 404 drops it.
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.loopback import ServerThread, serve

CLOUDEVENTS_JSON = "application/cloudevents+json"
Outcome = Literal["SUCCESS", "RETRY", "DROP"]


@dataclass(frozen=True)
class Published:
    """One publish request the sidecar took, and the message it keeps for the topic."""

    path: str
    pubsub: str
    topic: str
    headers: dict[str, str]  # lower-case names
    metadata: dict[str, str]  # the `metadata.` query parameters, without the prefix
    body: Any  # the JSON the app sent
    message: bytes  # what the broker holds: the CloudEvent with Dapr's additions

    @property
    def cloud_event(self) -> dict[str, Any]:
        """The kept message, parsed."""
        event: dict[str, Any] = json.loads(self.message)
        return event


@dataclass(frozen=True)
class Subscription:
    """One of the app's programmatic subscriptions."""

    pubsub: str
    topic: str
    path: str


@dataclass(frozen=True)
class Attempt:
    """One delivery to the app: what was sent, what came back, and what daprd makes of it."""

    path: str
    headers: dict[str, str]
    status_code: int
    answer: Any  # the app's JSON answer (None when it was not JSON)
    outcome: Outcome


def interpret(status_code: int, body: bytes) -> Outcome:
    """What daprd does with an app's answer to a delivery (Dapr's pub/sub API reference,
    "Expected HTTP Response")."""
    if 200 <= status_code <= 299:
        try:
            answer = json.loads(body) if body else {}
        except ValueError:
            return "SUCCESS"  # "ignored if invalid payload"
        status = answer.get("status", "") if isinstance(answer, dict) else ""
        if status in ("", "SUCCESS"):
            return "SUCCESS"
        if status == "DROP":
            return "DROP"
        return "RETRY"  # RETRY, and any other status
    if status_code == 404:
        return "DROP"
    return "RETRY"


def _traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


@dataclass
class FakeDaprSidecar:
    """The stand-in (see the module docstring); `url` is its `DAPR_HTTP_ENDPOINT` once started.

    Attributes:
        pubsubs: the pub/sub components it knows.
        api_token: the `dapr-api-token` publishers must send (DAPR_API_TOKEN), if any.
        app_api_token: the `dapr-api-token` it sends the app on deliveries (APP_API_TOKEN).
        app_id: the `source` of the CloudEvents it wraps non-CloudEvent bodies in.
        fail_with: the status it answers publishes with instead of taking them (None: takes them).
    """

    pubsubs: tuple[str, ...] = ("pubsub",)
    api_token: str | None = None
    app_api_token: str | None = None
    app_id: str = "parley"
    fail_with: int | None = None
    url: str = ""
    refused: list[int] = field(default_factory=list)
    _published: list[Published] = field(default_factory=list)
    _delivered: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ServerThread | None = None

    # -- the app's side: the publish API --------------------------------------------------------

    async def _publish(self, request: Request) -> Response:
        pubsub = request.path_params["pubsub"]
        topic = request.path_params["topic"]
        body = await request.body()
        if self.api_token is not None and request.headers.get("dapr-api-token") != self.api_token:
            return self._refuse(401, "ERR_UNAUTHORIZED", "invalid api token")
        if pubsub not in self.pubsubs:
            return self._refuse(400, "ERR_PUBSUB_NOT_FOUND", f"pubsub '{pubsub}' not found")
        if self.fail_with is not None:
            return self._refuse(
                self.fail_with, "ERR_PUBSUB_PUBLISH_MESSAGE", "error when publish to topic"
            )
        content_type = request.headers.get("content-type", "text/plain")
        traceparent = request.headers.get("traceparent") or _traceparent()
        tracestate = request.headers.get("tracestate", "")
        if content_type.split(";")[0].strip().lower() == CLOUDEVENTS_JSON:
            try:
                sent: Any = json.loads(body)
            except ValueError:
                sent = None
            if not isinstance(sent, dict):
                return self._refuse(400, "ERR_PUBSUB_CLOUD_EVENTS_SER", "not a CloudEvent")
            event = dict(sent)
            event.setdefault("source", "Dapr")
            event.setdefault("type", "com.dapr.event.sent")
            event.setdefault("specversion", "1.0")
        else:
            sent = body.decode(errors="replace")
            data: Any = sent
            if content_type.startswith("application/json"):
                try:
                    data = json.loads(body)
                except ValueError:
                    data = sent
            event = {
                "id": str(uuid.uuid4()),
                "source": self.app_id,
                "type": "com.dapr.event.sent",
                "specversion": "1.0",
                "datacontenttype": content_type,
                "data": data,
            }
        event.update(
            traceid=traceparent,
            traceparent=traceparent,
            tracestate=tracestate,
            topic=topic,
            pubsubname=pubsub,
        )
        metadata = {
            key.removeprefix("metadata."): value
            for key, value in request.query_params.items()
            if key.startswith("metadata.")
        }
        published = Published(
            path=request.url.path,
            pubsub=pubsub,
            topic=topic,
            headers={name.lower(): value for name, value in request.headers.items()},
            metadata=metadata,
            body=sent,
            message=json.dumps(event).encode(),
        )
        with self._lock:
            self._published.append(published)
        return Response(status_code=204)

    def _refuse(self, status: int, code: str, message: str) -> Response:
        with self._lock:
            self.refused.append(status)
        return JSONResponse({"errorCode": code, "message": message}, status_code=status)

    def app(self) -> Starlette:
        """The ASGI app of the publish API."""
        return Starlette(
            routes=[Route("/v1.0/publish/{pubsub}/{topic}", self._publish, methods=["POST"])]
        )

    @property
    def published(self) -> list[Published]:
        """Every message taken, in order."""
        with self._lock:
            return list(self._published)

    def reset(self) -> None:
        """Forget every message and delivery; take publishes again."""
        with self._lock:
            self._published.clear()
            self._delivered.clear()
            self.refused.clear()
        self.fail_with = None

    # -- daprd's side: deliveries to the app ----------------------------------------------------

    def _app_headers(self) -> dict[str, str]:
        return {"dapr-api-token": self.app_api_token} if self.app_api_token else {}

    async def subscriptions(self, app: httpx.AsyncClient) -> list[Subscription]:
        """The app's programmatic subscriptions (`GET /dapr/subscribe`), read as daprd does.

        Raises:
            AssertionError: the answer is not a list of subscriptions daprd can use.
        """
        response = await app.get("/dapr/subscribe", headers=self._app_headers())
        assert response.status_code == 200, response.text
        items = response.json()
        assert isinstance(items, list), items
        found = []
        for item in items:
            assert isinstance(item.get("pubsubname"), str), item
            assert isinstance(item.get("topic"), str), item
            routes = item.get("routes") or {}
            # No CEL here: only rules without a match (always true) and the default.
            rules = [rule["path"] for rule in routes.get("rules", []) if not rule.get("match")]
            path = next(iter(rules), None) or routes.get("default") or item.get("route")
            assert isinstance(path, str), item
            path = path if path.startswith("/") else f"/{path}"
            found.append(Subscription(item["pubsubname"], item["topic"], path))
        return found

    async def post(
        self,
        app: httpx.AsyncClient,
        path: str,
        content: bytes,
        *,
        headers: dict[str, str] | None = None,
        pubsub: str = "pubsub",
    ) -> Attempt:
        """One delivery of `content` to `path`, as daprd makes it; what came of it."""
        try:
            traceparent = json.loads(content).get("traceparent") or _traceparent()
        except (ValueError, AttributeError, RecursionError):
            traceparent = _traceparent()
        sent = {
            "content-type": CLOUDEVENTS_JSON,
            "traceparent": traceparent,
            "pubsubName": pubsub,
            **self._app_headers(),
            **(headers or {}),
        }
        response = await app.post(path, content=content, headers=sent)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        return Attempt(
            path=path,
            headers=sent,
            status_code=response.status_code,
            answer=answer,
            outcome=interpret(response.status_code, response.content),
        )

    async def deliver(
        self, app: httpx.AsyncClient, message: Published, *, max_attempts: int = 5
    ) -> list[Attempt]:
        """Deliver one kept message to the app's route for its topic until it is a success or
        dropped (a RETRY is delivered again, up to `max_attempts`); every attempt.

        Raises:
            AssertionError: the app has no subscription for the message's topic.
        """
        routes = {(sub.pubsub, sub.topic): sub.path for sub in await self.subscriptions(app)}
        path = routes.get((message.pubsub, message.topic))
        assert path is not None, f"no subscription for {message.pubsub}/{message.topic}"
        attempts: list[Attempt] = []
        while len(attempts) < max_attempts:
            attempt = await self.post(app, path, message.message, pubsub=message.pubsub)
            attempts.append(attempt)
            if attempt.outcome != "RETRY":
                break
        return attempts

    async def deliver_pending(
        self, app: httpx.AsyncClient, *, max_attempts: int = 5
    ) -> list[list[Attempt]]:
        """Deliver, in order, every kept message of the app's subscribed topics not delivered
        yet (like a consumer group's offset: a message still failing after `max_attempts` stays
        pending, and so do the ones after it); the attempts of each."""
        results = []
        for sub in await self.subscriptions(app):
            key = (sub.pubsub, sub.topic)
            log = [item for item in self.published if (item.pubsub, item.topic) == key]
            while self._delivered.get(key, 0) < len(log):
                attempts = await self.deliver(
                    app, log[self._delivered.get(key, 0)], max_attempts=max_attempts
                )
                results.append(attempts)
                if attempts[-1].outcome == "RETRY":
                    break
                self._delivered[key] = self._delivered.get(key, 0) + 1
        return results

    # -- running --------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve the publish API on a free loopback port."""
        self._server = serve(self.app())
        self.url = self._server.url

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()
            self._server = None


@contextmanager
def running_dapr_sidecar(**options: Any) -> Iterator[FakeDaprSidecar]:
    """A started stand-in (`options` as `FakeDaprSidecar`'s), stopped on exit."""
    sidecar = FakeDaprSidecar(**options)
    sidecar.start()
    try:
        yield sidecar
    finally:
        sidecar.stop()
