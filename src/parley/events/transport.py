"""`EVENTS_BROKER` chosen: where the relay delivers events (`Transport.delivery`) and what runs
the consumers (`Transport.loops`, companions of a worker, or of `parley consumers`).

- `none`: consumer jobs on this database (`parley.events.consumers.JobDelivery`); no loops.
- `redis://`, `nats://`, `amqp://`, `kafka://`: the broker through FastStream
  (`parley.events.brokers`); each consumer subscribes in its own group.
- `dapr`: the sidecar's publish API (`parley.events.dapr`); deliveries come back in over HTTP
  (`POST /dapr/events/{topic}`), so there is no loop here.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from parley.core.db import Database
from parley.events.consumers import Consumers, JobDelivery
from parley.events.relay import Delivery
from parley.settings import Settings

Loop = Callable[[], Coroutine[Any, Any, None]]


@dataclass(slots=True)
class Transport:
    """The relay's delivery, the loops that feed the consumers, and what to close."""

    delivery: Delivery
    loops: Sequence[Loop] = ()
    closers: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Close the broker connections (after the loops have stopped)."""
        for closer in reversed(self.closers):
            await closer()


def open_transport(settings: Settings, database: Database, consumers: Consumers) -> Transport:
    """The transport of `settings.events_broker` (connections open lazily, in the loops and
    at the first delivery, so building it does no I/O)."""
    broker = settings.events_broker
    if broker == "none":
        return Transport(delivery=JobDelivery(consumers))
    if broker == "dapr":
        from parley.events.dapr import DaprDelivery

        dapr = DaprDelivery(settings)
        return Transport(delivery=dapr, closers=[dapr.close])
    from parley.events.brokers import open_broker_transport

    return open_broker_transport(settings, database, consumers)
