"""`EVENTS_BROKER=dapr`: events go out through the Dapr sidecar's pub/sub API and come back in as
its deliveries (docs/events.md "Dapr").

Out: `DaprDelivery`, the relay's delivery, publishes each event of a batch, in order, with
`POST {DAPR_HTTP_ENDPOINT}/v1.0/publish/{DAPR_PUBSUB_NAME}/{EVENTS_TOPIC}?metadata.partitionKey=
<subject>`, the structured CloudEvent as the body, `Content-Type: application/cloudevents+json`
(so the sidecar keeps the event's own id, type and source instead of wrapping it in an envelope
of its own) and `dapr-api-token` when `DAPR_API_TOKEN` is set. The sidecar answers 204 once the
broker has the message; anything else fails the batch, which the relay tries again.

In: `dapr_router`, mounted only with `EVENTS_BROKER=dapr`.

- `GET /dapr/subscribe` — Parley's programmatic subscription: `EVENTS_TOPIC` on
  `DAPR_PUBSUB_NAME`, delivered to `/dapr/events/{EVENTS_TOPIC}`.
- `POST /dapr/events/{topic}` — one delivered CloudEvent (the published one, with the fields the
  sidecar adds: `topic`, `pubsubname`, `traceid`, `traceparent`, `tracestate`). Every consumer
  of its type applies its effect once (`consume`); the answer is Dapr's
  `{"status": "SUCCESS" | "RETRY" | "DROP"}`, always with HTTP 200: SUCCESS when every effect
  is applied (or the type is none of the consumers'), RETRY when an effect failed (the sidecar
  delivers it again; the effects already applied are not applied twice), DROP for what can
  never succeed (not a Parley CloudEvent, or another topic), which RETRY would redeliver forever.

Only the sidecar may call these: with `DAPR_APP_API_TOKEN` set (the sidecar's `APP_API_TOKEN`),
each request must carry it as `dapr-api-token` (401 otherwise); without it, only a client on a
loopback address, not relayed by a proxy, is heard (403 otherwise). A forged event could
otherwise make the consumers act for any user. They are not in the public OpenAPI document.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Annotated, Literal
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.dependencies import database_of, settings_of
from parley.core.errors import Forbidden, InvalidToken, NotAuthenticated
from parley.events.consumers import Consumers, ReceivedEvent, consume, parse_event
from parley.events.models import OutboxEvent
from parley.events.schemas import cloud_event
from parley.settings import Settings

logger = logging.getLogger(__name__)

CLOUDEVENTS_JSON = "application/cloudevents+json"
TOKEN_HEADER = "dapr-api-token"
# The sidecar is beside the app: a publish that takes longer than this is a sidecar in trouble
# (the batch is tried again), and one that cannot even connect says so at once.
PUBLISH_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
# Headers a proxy adds: a request that carries one was relayed, so it is not the sidecar's own.
_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
# The attributes every CloudEvent has (CloudEvents 1.0, "Required Attributes").
_REQUIRED = ("specversion", "id", "source", "type")

DaprStatus = Literal["SUCCESS", "RETRY", "DROP"]


class DaprPublishFailed(RuntimeError):
    """The sidecar did not take an event (unreachable, or an answer other than 2xx)."""


def _secret(value: SecretStr | None) -> str:
    """A `SecretStr` setting's value; "" when unset (an empty token is no token)."""
    return str(value.get_secret_value()) if value is not None else ""


class DaprDelivery:
    """The relay's delivery to the sidecar's publish API (see the module docstring).

    One HTTP client, made at the first delivery and kept until `close`.
    """

    def __init__(self, settings: Settings) -> None:
        self.endpoint = settings.dapr_http_endpoint.rstrip("/")
        pubsub = quote(settings.dapr_pubsub_name, safe="")
        topic = quote(settings.events_topic, safe="")
        self.url = f"{self.endpoint}/v1.0/publish/{pubsub}/{topic}"
        self.headers = {"content-type": CLOUDEVENTS_JSON}
        token = _secret(settings.dapr_api_token)
        if token:
            self.headers[TOKEN_HEADER] = token
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # No proxy from the environment: the sidecar is local, never behind HTTP_PROXY.
            self._client = httpx.AsyncClient(
                timeout=PUBLISH_TIMEOUT,
                limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
                trust_env=False,
            )
        return self._client

    async def deliver(self, session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        """Publish the events, one at a time, in order.

        Raises:
            DaprPublishFailed: the sidecar could not be reached or did not answer 2xx (the
                relay rolls the batch back and tries it again; the events published before
                the failure are published again then, which consumers absorb).
        """
        http = self._http()
        for event in events:
            body = json.dumps(cloud_event(event), separators=(",", ":"), ensure_ascii=False)
            try:
                response = await http.post(
                    self.url,
                    content=body.encode(),
                    # Kafka's message key (other components ignore it or use it alike): one
                    # subject's events stay in one partition, in order.
                    params={"metadata.partitionKey": event.subject},
                    headers=self.headers,
                )
            except httpx.HTTPError as exc:
                raise DaprPublishFailed(
                    f"the Dapr sidecar at {self.endpoint} cannot be reached "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            if not response.is_success:
                raise DaprPublishFailed(
                    f"the Dapr sidecar answered {response.status_code} to publishing event "
                    f"{event.id}: {response.text[:300]}"
                )

    async def close(self) -> None:
        """Close the HTTP client (a later delivery makes a new one)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


# -- deliveries in ------------------------------------------------------------------------------


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


async def require_sidecar(request: Request) -> None:
    """Let through the sidecar only: its `dapr-api-token` when `DAPR_APP_API_TOKEN` is set,
    else a direct client on a loopback address.

    Raises:
        NotAuthenticated: a token is required and none was sent.
        InvalidToken: the token sent is not the configured one.
        Forbidden: no token is configured and the client is not on loopback, or was relayed.
    """
    expected = _secret(settings_of(request).dapr_app_api_token)
    if expected:
        presented = request.headers.get(TOKEN_HEADER)
        if presented is None:
            raise NotAuthenticated("The Dapr sidecar's dapr-api-token is required.")
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            raise InvalidToken("The dapr-api-token is not the Dapr sidecar's.")
        return
    client = request.client.host if request.client else None
    relayed = any(name in request.headers for name in _PROXY_HEADERS)
    if relayed or not _is_loopback(client):
        raise Forbidden(
            "Only the Dapr sidecar, on loopback, may call this (or set DAPR_APP_API_TOKEN)."
        )


SidecarOnly = Annotated[None, Depends(require_sidecar)]
dapr_router = APIRouter(tags=["dapr"], include_in_schema=False)


def _answer(status: DaprStatus) -> JSONResponse:
    return JSONResponse({"status": status})


def _parley_event(body: bytes) -> ReceivedEvent | str:
    """The delivered CloudEvent, or why it is not a Parley one."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return "the body is not JSON"
    if not isinstance(raw, dict):
        return "the body is not a JSON object"
    missing = [name for name in _REQUIRED if name not in raw]
    if missing:
        return f"not a CloudEvent: no {', '.join(missing)}"
    try:
        event = parse_event(raw)
    except ValueError as exc:
        return str(exc)
    try:
        uuid.UUID(event.id)
    except ValueError:
        return "not a Parley CloudEvent: its id is not a UUID"
    return event


@dapr_router.get("/dapr/subscribe")
async def dapr_subscriptions(request: Request, _sidecar: SidecarOnly) -> JSONResponse:
    """Parley's programmatic subscription, read by the sidecar when it starts."""
    settings = settings_of(request)
    return JSONResponse(
        [
            {
                "pubsubname": settings.dapr_pubsub_name,
                "topic": settings.events_topic,
                "routes": {"default": f"/dapr/events/{settings.events_topic}"},
            }
        ]
    )


@dapr_router.post("/dapr/events/{topic}")
async def dapr_delivery(topic: str, request: Request, _sidecar: SidecarOnly) -> JSONResponse:
    """One event delivered by the sidecar, handed to every consumer of its type."""
    if topic != settings_of(request).events_topic:
        logger.warning("dapr: dropped a delivery for topic %r, which is not Parley's", topic[:200])
        return _answer("DROP")
    event = _parley_event(await request.body())
    if isinstance(event, str):
        logger.warning("dapr: dropped a delivery: %s", event)
        return _answer("DROP")
    consumers: Consumers | None = getattr(request.app.state, "event_consumers", None)
    if consumers is None:  # not started yet
        return _answer("RETRY")
    database = database_of(request)
    for consumer in consumers.wanting(event.type):
        try:
            await consume(database, consumer, event)
        except Exception:
            logger.exception(
                "dapr: consumer %s failed on event %s; retrying", consumer.name, event.id
            )
            return _answer("RETRY")
    return _answer("SUCCESS")
