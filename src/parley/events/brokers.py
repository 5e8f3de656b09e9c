"""`EVENTS_BROKER` a broker URL: the relay publishes each event to Redis Streams, NATS
JetStream, RabbitMQ or a Kafka-protocol broker through FastStream, and each consumer reads
them back in its own consumer group (docs/events.md "Brokers"; the names are CONTRACT.md
section 11's).

- `redis://`, `rediss://`: the stream `EVENTS_TOPIC` (XADD, capped near `REDIS_MAXLEN`
  entries), the entry's `__data__` field holding the CloudEvent; consumer group
  `<EVENTS_TOPIC>.<consumer>`; entries left unacknowledged (a crash, a failed effect) are
  claimed again after `CLAIM_IDLE_SECONDS`.
- `nats://`, `tls://`: subject `<EVENTS_TOPIC>.<type>` in the JetStream stream capturing
  `<EVENTS_TOPIC>.>` (named after the topic, dots as `_`), with `Nats-Msg-Id` = the event id so
  that the stream drops a relay's re-publish; a durable pull consumer per consumer.
- `amqp://`, `amqps://`: the durable topic exchange `EVENTS_TOPIC`, routing key = the type,
  persistent messages under publisher confirms; a durable queue `<EVENTS_TOPIC>.<consumer>` bound to
  the consumer's types.
- `kafka://host:port[,host:port]`: the topic `EVENTS_TOPIC`, key = the subject, acknowledged by
  all in-sync replicas (not the idempotent producer); group `<EVENTS_TOPIC>.<consumer>`, offsets
  committed by hand as events are handled, never past one whose effect is pending.

`BrokerDelivery` publishes a relay batch (pipelined or concurrently, all confirmations awaited,
failing if one fails) inside the relay's transaction, and declares on connecting what its
consumers read from (the stream, consumer groups, durable consumers, queues and bindings, the
topic), so that an event published before a consumer first ran still reaches it.
`ConsumerLoop` feeds one consumer, up to `CONSUMER_CONCURRENCY` events at once and one subject's
in order: a message that is not a Parley CloudEvent is dropped (acked) with a warning; an effect
that fails is delivered again after a pause; a lost connection restarts the loop after a pause.
Connections open lazily, at the first delivery and at each loop's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit

from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker
from faststream.rabbit import Channel, ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.parser import MessageFormat
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import Database
from parley.events.consumers import Consumer, Consumers, ReceivedEvent, consume, parse_event
from parley.events.models import OutboxEvent
from parley.events.schemas import cloud_event
from parley.events.transport import Transport
from parley.settings import Settings

if TYPE_CHECKING:
    from fast_depends.library.serializer import SerializerProto
    from faststream._internal.basic_types import SendableMessage
    from faststream._internal.broker import BrokerUsecase
    from faststream._internal.parser import CodecProto
    from faststream.kafka.subscriber.usecase import DefaultSubscriber as KafkaSubscriber
    from faststream.nats.subscriber.usecases import PullStreamSubscriber
    from faststream.rabbit.subscriber import RabbitSubscriber
    from faststream.redis.subscriber.usecases.stream_subscriber import StreamSubscriber
    from nats.aio.client import Client as NatsClient

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/cloudevents+json"
# Redis: the stream is trimmed to about this many entries (XADD MAXLEN ~).
REDIS_MAXLEN = 1_000_000
# Redis: an entry delivered but not acknowledged for this long (its consumer died, or its
# effect failed) is claimed and delivered again; checked every CLAIM_EVERY_SECONDS.
CLAIM_IDLE_SECONDS = 30.0
CLAIM_EVERY_SECONDS = 5.0
# NATS: a stream made here keeps at most this many events (older ones are discarded).
NATS_MAX_MSGS = 1_000_000
# NATS: a message not acknowledged this long after delivery is delivered again.
NATS_ACK_WAIT_SECONDS = 30.0
# RabbitMQ: messages a consumer holds unacknowledged at once.
RABBIT_PREFETCH = 100
# Kafka: partitions of a topic made here (keys keep each subject's events in order).
KAFKA_PARTITIONS = 1
# A failed effect is delivered again after these pauses (the last one repeating).
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# A consumer loop whose connection failed starts again after these pauses.
RESTART_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
# Events a consumer handles at once (one subject's one after another).
CONSUMER_CONCURRENCY = 16
# How long a consumer waits for a message before looking again (and noticing a stop).
POLL_SECONDS = 1.0
# Delivery: how long a relay batch waits for a connection being made (it goes on in the
# background), for the connection's check, and for the broker to have the whole batch; the
# relay's transaction (on SQLite, the write lock) is held meanwhile.
CONNECT_WAIT_SECONDS = 1.0
PING_SECONDS = 1.0
PUBLISH_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
# Per-message logs of FastStream at DEBUG: a relay batch or a busy consumer would flood INFO.
_FASTSTREAM_LOGGER = logging.getLogger("parley.events.faststream")
_FASTSTREAM_LOG_LEVEL = logging.DEBUG
_NATS_NAME = re.compile(r"[^A-Za-z0-9_-]")

BrokerT = TypeVar("BrokerT", bound="BrokerUsecase[Any, Any, Any]")
Message = StreamMessage[Any]


def _stop_if_asked() -> None:
    """Raise CancelledError when this task has been asked to stop. A consumer loop polls the
    broker through client libraries; one that swallows a cancellation (turns it into an
    empty poll or a timeout) would otherwise have the loop poll again, and never stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_loops(
    tasks: Sequence[asyncio.Task[Any]], within: float = STOP_TIMEOUT_SECONDS
) -> bool:
    """Cancel consumer loops and wait up to `within` seconds for them to end, cancelling again,
    every second, those still running (a cancellation lost inside a client library is asked
    for once more): whether every one ended."""
    deadline = time.monotonic() + within
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - time.monotonic()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(1.0, left))
    if pending:
        logger.warning(
            "%d consumer loops did not stop within %s s: %s",
            len(pending),
            within,
            ", ".join(sorted(task.get_name() for task in pending)),
        )
    return not pending


def open_broker_transport(
    settings: Settings, database: Database, consumers: Consumers
) -> Transport:
    """The transport of a broker URL: a delivery that publishes there, and one loop per
    consumer reading from there (no I/O until the first delivery or a loop's start).

    Raises:
        ValueError: `settings.events_broker` is not a broker URL Parley knows.
    """
    backend = backend_for(settings.events_broker, settings.events_topic)
    delivery = BrokerDelivery(backend, list(consumers))
    loops = [ConsumerLoop(backend, database, consumer).run for consumer in consumers]
    return Transport(delivery=delivery, loops=loops, closers=[delivery.close])


def backend_for(url: str, topic: str) -> Backend[Any]:
    """The backend of a broker URL's scheme."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss"):
        return RedisBackend(url, topic)
    if scheme in ("nats", "tls"):
        return NatsBackend(url, topic)
    if scheme in ("amqp", "amqps"):
        return RabbitBackend(url, topic)
    if scheme == "kafka":
        return KafkaBackend(url, topic)
    raise ValueError(f"EVENTS_BROKER: no broker for the scheme {scheme!r}")


def event_body(row: OutboxEvent) -> bytes:
    """The structured-mode CloudEvent JSON of an outbox row: every broker's message body."""
    return json.dumps(cloud_event(row), separators=(",", ":"), ensure_ascii=False).encode()


def where(url: str) -> str:
    """A broker URL without its credentials, for logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://?"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}"


def group_name(topic: str, consumer: Consumer) -> str:
    """A consumer's group (Redis Streams, Kafka) and queue (RabbitMQ): `<topic>.<consumer>`.
    RabbitMQ queues and Kafka groups are global to a vhost or cluster, so the name carries the
    topic: two deployments with their own `EVENTS_TOPIC` never share a queue or a group."""
    return f"{topic}.{consumer.name}"


def _raise_first(results: Sequence[object]) -> None:
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _stop_quietly(broker: BrokerUsecase[Any, Any, Any]) -> None:
    try:
        async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
            await broker.stop()
    except Exception as exc:  # closing a broken connection: nothing more to do
        logger.debug("closing a broker connection failed: %s: %s", type(exc).__name__, exc)


# -- the backends: what each broker creates, publishes and reads ----------------------------------


class Inbox(ABC):
    """Where one consumer's messages come from (after its broker started)."""

    @abstractmethod
    def messages(self) -> AsyncIterator[Message]:
        """The messages, in the order the broker hands them out, until the connection fails."""

    def received(self, message: Message) -> None:  # noqa: B027 - a hook most brokers skip
        """A message is taken, in the order of `messages` (before it is handled)."""

    async def done(self, message: Message) -> None:
        """The message is handled (or dropped): the broker forgets it."""
        await message.ack()

    @abstractmethod
    async def retry(self, message: Message, pause: float) -> bool:
        """The message's effect failed: have it delivered again after about `pause` s; or,
        answering True, wait that long and have it handled again here."""


class Backend(ABC, Generic[BrokerT]):
    """One kind of broker: its FastStream broker, declarations, publishing and reading."""

    kind: str

    def __init__(self, url: str, topic: str) -> None:
        self.url = url
        self.topic = topic

    @abstractmethod
    def broker(self, *, publishing: bool = True) -> BrokerT:
        """A new FastStream broker (not connected): the delivery's (`publishing`), or a
        consumer loop's."""

    @abstractmethod
    async def declare(self, broker: BrokerT, consumers: Sequence[Consumer]) -> None:
        """Create what the events go to and the consumers read from, where missing."""

    @abstractmethod
    async def publish(self, broker: BrokerT, events: Sequence[OutboxEvent]) -> None:
        """Publish the events in order and wait for the broker to have them all.

        Raises:
            Exception: the broker does not have them all.
        """

    @abstractmethod
    def subscribe(self, broker: BrokerT, consumer: Consumer) -> Inbox:
        """Register the consumer's subscription (before the broker starts)."""

    async def connect(self, broker: BrokerT) -> None:
        """Connect (the delivery's broker: no subscriber)."""
        await broker.connect()


class RawFormat(MessageFormat):
    """Redis Streams entries whose `__data__` is the message body itself (the CloudEvent JSON),
    not FastStream's envelope: what any Redis client reads is the contract's body."""

    __slots__ = ()

    @classmethod
    async def encode(
        cls,
        *,
        message: SendableMessage | Sequence[SendableMessage],
        reply_to: str | None,
        headers: dict[str, Any] | None,
        correlation_id: str,
        serializer: SerializerProto | None = None,
        codec: CodecProto | None = None,
    ) -> bytes:
        built = await cls.build(
            message=message,
            reply_to=reply_to,
            headers=headers,
            correlation_id=correlation_id,
            serializer=serializer,
            codec=codec,
        )
        return built.data

    @classmethod
    def parse(cls, data: bytes) -> tuple[bytes, dict[str, Any]]:
        return data, {}


class RedisBackend(Backend[RedisBroker]):
    """Redis Streams: the stream `topic`, consumer groups `<topic>.<consumer>`."""

    kind = "redis"

    def broker(self, *, publishing: bool = True) -> RedisBroker:
        return RedisBroker(
            self.url,
            message_format=RawFormat,
            logger=_FASTSTREAM_LOGGER,
            log_level=_FASTSTREAM_LOG_LEVEL,
        )

    async def declare(self, broker: RedisBroker, consumers: Sequence[Consumer]) -> None:
        from redis.exceptions import ResponseError

        client = await broker.connect()
        for consumer in consumers:
            # From the stream's end: a new consumer gets the events published from now on.
            try:
                await client.xgroup_create(
                    self.topic, group_name(self.topic, consumer), id="$", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def publish(self, broker: RedisBroker, events: Sequence[OutboxEvent]) -> None:
        client = await broker.connect()
        async with client.pipeline(transaction=False) as pipe:
            for event in events:
                await broker.publish(
                    event_body(event), stream=self.topic, maxlen=REDIS_MAXLEN, pipeline=pipe
                )
            await pipe.execute()  # raises the first command that failed

    def subscribe(self, broker: RedisBroker, consumer: Consumer) -> Inbox:
        group = group_name(self.topic, consumer)
        name = f"{socket.gethostname()}-{os.getpid()}"
        fresh = broker.subscriber(
            stream=StreamSub(self.topic, group=group, consumer=name, last_id=">"),
            ack_policy=AckPolicy.MANUAL,
        )
        stale = broker.subscriber(
            stream=StreamSub(
                self.topic,
                group=group,
                consumer=name,
                min_idle_time=int(CLAIM_IDLE_SECONDS * 1000),
            ),
            ack_policy=AckPolicy.MANUAL,
        )
        return RedisInbox(fresh, stale)


class RedisInbox(Inbox):
    """New entries (XREADGROUP `>`) and, every few seconds, entries pending too long (XAUTOCLAIM:
    a dead consumer's, or ours whose effect failed)."""

    def __init__(self, fresh: StreamSubscriber, stale: StreamSubscriber) -> None:
        self.fresh = fresh
        self.stale = stale

    async def messages(self) -> AsyncIterator[Message]:
        next_claim = 0.0
        while True:
            _stop_if_asked()
            if time.monotonic() >= next_claim:
                for _ in range(100):
                    claimed = await self.stale.get_one(timeout=0)
                    if claimed is None:
                        break
                    yield claimed
                next_claim = time.monotonic() + CLAIM_EVERY_SECONDS
            message = await self.fresh.get_one(timeout=POLL_SECONDS)
            if message is not None:
                yield message

    async def retry(self, message: Message, pause: float) -> bool:
        # Left pending: claimed again once idle for CLAIM_IDLE_SECONDS.
        return False


class NatsBackend(Backend[NatsBroker]):
    """NATS JetStream: subjects `<topic>.<type>` in the stream `<topic with _>`, a durable pull
    consumer per consumer."""

    kind = "nats"

    def __init__(self, url: str, topic: str) -> None:
        super().__init__(url, topic)
        self.stream = _NATS_NAME.sub("_", topic)

    def broker(self, *, publishing: bool = True) -> NatsBroker:
        return NatsBroker(
            [server.strip() for server in self.url.split(",") if server.strip()],
            max_reconnect_attempts=-1,  # never give up: the loops and the relay rely on it
            reconnect_time_wait=1,
            logger=_FASTSTREAM_LOGGER,
            log_level=_FASTSTREAM_LOG_LEVEL,
        )

    def subject(self, event_type: str) -> str:
        return f"{self.topic}.{event_type}"

    def durable(self, consumer: Consumer) -> str:
        return _NATS_NAME.sub("_", f"parley_{consumer.name}")

    def consumer_config(self, client: NatsClient, consumer: Consumer) -> Any:
        from nats.js import api

        subjects = sorted(self.subject(event_type) for event_type in consumer.types)
        config = api.ConsumerConfig(
            durable_name=self.durable(consumer),
            # From now on: a new consumer gets the events published from its creation.
            deliver_policy=api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=NATS_ACK_WAIT_SECONDS,
            max_deliver=-1,
        )
        version = client.connected_server_version
        if len(subjects) == 1:
            config.filter_subject = subjects[0]
        elif (version.major, version.minor) >= (2, 10):
            config.filter_subjects = subjects
        else:  # one filter only before 2.10: every event, the others acknowledged unread
            config.filter_subject = f"{self.topic}.>"
        return config

    async def declare(self, broker: NatsBroker, consumers: Sequence[Consumer]) -> None:
        from nats.js import api
        from nats.js.errors import BadRequestError, NotFoundError

        client = await broker.connect()
        jetstream = client.jetstream()
        wanted = f"{self.topic}.>"
        try:
            info = await jetstream.stream_info(self.stream)
        except NotFoundError:
            await jetstream.add_stream(
                api.StreamConfig(
                    name=self.stream,
                    subjects=[wanted],
                    storage=api.StorageType.FILE,
                    max_msgs=NATS_MAX_MSGS,
                )
            )
        else:
            subjects = list(info.config.subjects or [])
            if wanted not in subjects:
                info.config.subjects = [*subjects, wanted]
                await jetstream.update_stream(info.config)
        for consumer in consumers:
            config = self.consumer_config(client, consumer)
            try:
                await jetstream.add_consumer(self.stream, config)
            except BadRequestError as exc:  # it exists with a configuration it cannot change to
                logger.warning(
                    "NATS consumer %s of stream %s kept as it is: %s",
                    config.durable_name,
                    self.stream,
                    exc,
                )

    async def publish(self, broker: NatsBroker, events: Sequence[OutboxEvent]) -> None:
        # Started in order on one connection (so written in order); acknowledged concurrently.
        results = await asyncio.gather(
            *(
                broker.publish(
                    event_body(event),
                    subject=self.subject(event.type),
                    headers={
                        "Nats-Msg-Id": str(event.id),
                        "content-type": CONTENT_TYPE,
                        "ce_id": str(event.id),
                        "ce_type": event.type,
                    },
                    stream=self.stream,
                    timeout=PUBLISH_TIMEOUT_SECONDS,
                )
                for event in events
            ),
            return_exceptions=True,
        )
        _raise_first(results)

    def subscribe(self, broker: NatsBroker, consumer: Consumer) -> Inbox:
        subjects = sorted(self.subject(event_type) for event_type in consumer.types)
        subscriber = broker.subscriber(
            subjects[0] if len(subjects) == 1 else f"{self.topic}.>",
            stream=JStream(self.stream, declare=False),
            durable=self.durable(consumer),
            pull_sub=True,
            ack_policy=AckPolicy.MANUAL,
        )
        return NatsInbox(subscriber)


class NatsInbox(Inbox):
    """One fetch of the durable pull consumer per message."""

    def __init__(self, subscriber: PullStreamSubscriber) -> None:
        self.subscriber = subscriber

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            _stop_if_asked()
            try:
                message = await self.subscriber.get_one(timeout=POLL_SECONDS)
            except TimeoutError:  # nats-py's fetch may time out with asyncio's own error
                continue
            if message is not None:
                yield message

    async def retry(self, message: Message, pause: float) -> bool:
        from faststream.nats.message import NatsMessage

        if isinstance(message, NatsMessage):
            await message.nack(delay=pause)
        else:  # pragma: no cover - a JetStream subscriber's messages are NatsMessages
            await message.nack()
        return False


class RabbitBackend(Backend[RabbitBroker]):
    """RabbitMQ: the durable topic exchange `topic`, a durable queue `<topic>.<consumer>` bound
    with the consumer's types."""

    kind = "rabbitmq"

    def broker(self, *, publishing: bool = True) -> RabbitBroker:
        return RabbitBroker(
            self.url,
            default_channel=Channel(prefetch_count=RABBIT_PREFETCH, publisher_confirms=True),
            logger=_FASTSTREAM_LOGGER,
            log_level=_FASTSTREAM_LOG_LEVEL,
        )

    @property
    def exchange(self) -> RabbitExchange:
        return RabbitExchange(self.topic, type=ExchangeType.TOPIC, durable=True)

    def queue(self, consumer: Consumer) -> RabbitQueue:
        return RabbitQueue(group_name(self.topic, consumer), durable=True)

    async def declare(self, broker: RabbitBroker, consumers: Sequence[Consumer]) -> None:
        await broker.connect()
        exchange = await broker.declare_exchange(self.exchange)
        for consumer in consumers:
            queue = await broker.declare_queue(self.queue(consumer))
            for event_type in sorted(consumer.types):
                await queue.bind(exchange, routing_key=event_type)

    async def publish(self, broker: RabbitBroker, events: Sequence[OutboxEvent]) -> None:
        from pamqp.commands import Basic

        exchange = self.exchange
        results = await asyncio.gather(
            *(
                broker.publish(
                    event_body(event),
                    exchange=exchange,
                    routing_key=event.type,
                    mandatory=False,  # a type no queue is bound to goes nowhere, as on a topic
                    persist=True,
                    timeout=PUBLISH_TIMEOUT_SECONDS,
                    content_type=CONTENT_TYPE,
                    message_id=str(event.id),
                    message_type=event.type,
                    timestamp=event.time,
                    headers={"ce_id": str(event.id), "ce_type": event.type},
                )
                for event in events
            ),
            return_exceptions=True,
        )
        _raise_first(results)
        if any(isinstance(result, Basic.Nack | Basic.Reject) for result in results):
            raise ConnectionError("RabbitMQ refused (nacked) a published event")

    def subscribe(self, broker: RabbitBroker, consumer: Consumer) -> Inbox:
        subscriber = broker.subscriber(self.queue(consumer), ack_policy=AckPolicy.MANUAL)
        return RabbitInbox(subscriber)


class RabbitInbox(Inbox):
    """The queue's deliveries, in order (up to RABBIT_PREFETCH in flight)."""

    def __init__(self, subscriber: RabbitSubscriber) -> None:
        self.subscriber = subscriber

    async def messages(self) -> AsyncIterator[Message]:
        async for message in self.subscriber:
            yield message

    async def retry(self, message: Message, pause: float) -> bool:
        from faststream.rabbit.message import RabbitMessage

        await asyncio.sleep(pause)  # RabbitMQ has no delayed requeue: hold it, then give it back
        if isinstance(message, RabbitMessage):
            await message.nack(requeue=True)
        else:  # pragma: no cover - a queue subscriber's messages are RabbitMessages
            await message.nack()
        return False


class KafkaBackend(Backend[KafkaBroker]):
    """A Kafka-protocol broker: the topic `topic`, key = subject, group `<topic>.<consumer>`."""

    kind = "kafka"

    def __init__(self, url: str, topic: str) -> None:
        super().__init__(url, topic)
        hosts = url.split("://", 1)[1]
        hosts = hosts.split("?", 1)[0].split("/", 1)[0]
        self.servers = [host.strip() for host in hosts.split(",") if host.strip()]
        if not self.servers:
            raise ValueError("EVENTS_BROKER: a kafka:// URL names host:port[,host:port]")

    def broker(self, *, publishing: bool = True) -> KafkaBroker:
        return KafkaBroker(
            self.servers,
            client_id="parley",
            acks="all",
            enable_idempotence=False,  # not every Kafka-protocol broker has it (tansu does not)
            # The delivery's: a request the broker does not answer fails within a batch's
            # bound, and closing a producer whose broker is away does not outlast
            # STOP_TIMEOUT_SECONDS. (A consumer's group join may take longer.)
            request_timeout_ms=int(PUBLISH_TIMEOUT_SECONDS * 1000) if publishing else 40_000,
            consumer_only=not publishing,  # a loop declares the topic itself
            logger=_FASTSTREAM_LOGGER,
            log_level=_FASTSTREAM_LOG_LEVEL,
        )

    async def declare(self, broker: KafkaBroker, consumers: Sequence[Consumer]) -> None:
        from aiokafka.admin import (  # type: ignore[import-untyped]
            AIOKafkaAdminClient,
            NewTopic,
        )

        admin = AIOKafkaAdminClient(bootstrap_servers=self.servers, client_id="parley")
        await admin.start()
        try:
            if self.topic not in set(await admin.list_topics()):
                # (An error here, e.g. the topic appeared meanwhile, is left to the publish.)
                with contextlib.suppress(Exception):
                    await admin.create_topics(
                        [
                            NewTopic(
                                self.topic, num_partitions=KAFKA_PARTITIONS, replication_factor=1
                            )
                        ]
                    )
        finally:
            await admin.close()

    async def publish(self, broker: KafkaBroker, events: Sequence[OutboxEvent]) -> None:
        # Appended in order (one subject's events go to one partition in order), then all
        # acknowledged.
        sent = [
            await broker.publish(
                event_body(event),
                topic=self.topic,
                key=event.subject.encode(),
                headers={
                    "content-type": CONTENT_TYPE,
                    "ce_id": str(event.id),
                    "ce_type": event.type,
                },
                no_confirm=True,
            )
            for event in events
        ]
        async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
            results = await asyncio.gather(*sent, return_exceptions=True)
        _raise_first(results)

    def subscribe(self, broker: KafkaBroker, consumer: Consumer) -> Inbox:
        subscriber = broker.subscriber(
            self.topic,
            group_id=group_name(self.topic, consumer),
            # A group with no committed offset starts at the oldest event the topic holds
            # (handled_events makes those it has handled already no-ops).
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
        )
        return KafkaInbox(subscriber)


class KafkaInbox(Inbox):
    """The group's records, in order per partition. Handled concurrently, so a partition's
    offset is committed up to its oldest record not handled yet (a record is never committed
    past while its effect is pending: after a crash or a rebalance, what follows it is read
    again, and is a no-op where handled). A failed effect is tried again here, after a pause,
    holding the partition's commit point meanwhile."""

    def __init__(self, subscriber: KafkaSubscriber) -> None:
        self.subscriber = subscriber
        # Per partition: the offsets taken, in order, and whether each is handled.
        self._taken: dict[Any, dict[int, bool]] = {}
        self._committed: dict[Any, int] = {}
        self._commit = asyncio.Lock()

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            _stop_if_asked()
            message = await self.subscriber.get_one(timeout=POLL_SECONDS)
            if message is not None:
                yield message

    @staticmethod
    def _position(message: Message) -> tuple[Any, int]:
        from aiokafka import TopicPartition  # type: ignore[import-untyped]

        record = message.raw_message
        return TopicPartition(record.topic, record.partition), int(record.offset)

    def received(self, message: Message) -> None:
        partition, offset = self._position(message)
        self._taken.setdefault(partition, {})[offset] = False

    async def done(self, message: Message) -> None:
        partition, offset = self._position(message)
        taken = self._taken.setdefault(partition, {})
        taken[offset] = True
        while taken:  # drop the handled head of the partition: it may be committed
            head, handled = next(iter(taken.items()))
            if not handled:
                break
            del taken[head]
            self._committed[partition] = head + 1
        async with self._commit:  # one commit at a time: a later one carries the earlier ones
            consumer = self.subscriber.consumer
            wanted = dict(self._committed)
            if wanted and consumer is not None:
                await consumer.commit(wanted)
                for key, value in wanted.items():
                    if self._committed.get(key) == value:
                        del self._committed[key]

    async def retry(self, message: Message, pause: float) -> bool:
        await asyncio.sleep(pause)  # the partition's commit point waits for it
        return True


# -- the delivery and the loops ---------------------------------------------------------------


class BrokerDelivery:
    """The relay's delivery to a broker: one connection, opened at the first batch (declaring
    what the consumers read from) and opened again after a batch failed.

    The relay holds its batch's transaction open while it delivers (on SQLite, the database's
    write lock), so a broker that is away must fail a batch fast, not hold every writer up:
    connecting happens in the background (a batch waits `CONNECT_WAIT_SECONDS` for it), each
    batch first checks the connection (`PING_SECONDS`), publishing is bounded by
    `PUBLISH_TIMEOUT_SECONDS`, and a failed connection is closed in the background.
    """

    def __init__(self, backend: Backend[Any], consumers: Sequence[Consumer]) -> None:
        self.backend = backend
        self.consumers = list(consumers)
        self._broker: Any = None
        self._connecting: asyncio.Task[Any] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def deliver(self, session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        if not events:
            return
        broker = await self._connected()
        try:
            if not await broker.ping(timeout=PING_SECONDS):
                raise ConnectionError(f"{where(self.backend.url)} does not answer")
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                await self.backend.publish(broker, events)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._drop()  # the next batch connects again
            raise

    async def _connected(self) -> Any:
        if self._broker is not None:
            return self._broker
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect(), name="events-broker-connect")
        connecting = self._connecting
        await asyncio.wait([connecting], timeout=CONNECT_WAIT_SECONDS)
        if not connecting.done():
            raise ConnectionError(f"still connecting to {where(self.backend.url)}")
        self._connecting = None
        self._broker = connecting.result()  # or its error
        return self._broker

    async def _connect(self) -> Any:
        broker = self.backend.broker()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await self.backend.connect(broker)
                await self.backend.declare(broker, self.consumers)
        except BaseException:
            await _stop_quietly(broker)
            raise
        logger.info("publishing events to %s", where(self.backend.url))
        return broker

    def _drop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            closing = asyncio.create_task(_stop_quietly(broker))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close the connection (the next delivery opens a new one)."""
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
            with contextlib.suppress(BaseException):
                self._broker = self._broker or await connecting
        broker, self._broker = self._broker, None
        if broker is not None:
            await _stop_quietly(broker)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class ConsumerLoop:
    """Feeds one consumer from the broker until cancelled: connects, declares, reads; after a
    failure, closes and starts again after a pause.

    Messages are taken in the broker's order and handled concurrently (up to
    `CONSUMER_CONCURRENCY` at once), one subject at a time: a subject's events have their
    effects in the order the broker holds them (but for an event whose effect failed and is
    delivered again, which comes after those that followed it).
    """

    def __init__(self, backend: Backend[Any], database: Database, consumer: Consumer) -> None:
        self.backend = backend
        self.database = database
        self.consumer = consumer
        self._failures: dict[str, int] = {}

    async def run(self) -> None:
        """Read and handle messages until cancelled."""
        restarts = 0
        while True:
            broker = self.backend.broker(publishing=False)
            inbox = self.backend.subscribe(broker, self.consumer)
            chains = SubjectChains(CONSUMER_CONCURRENCY)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    await self.backend.connect(broker)
                    await self.backend.declare(broker, [self.consumer])
                    await broker.start()
                logger.info(
                    "consumer %s reading events from %s",
                    self.consumer.name,
                    where(self.backend.url),
                )
                restarts = 0
                async for message in inbox.messages():
                    await self.take(inbox, chains, message)
                raise ConnectionError("the subscription ended")
            except Exception as exc:
                pause = RESTART_SECONDS[min(restarts, len(RESTART_SECONDS) - 1)]
                restarts += 1
                logger.warning(
                    "consumer %s lost %s (%s: %s); starting again in %s s",
                    self.consumer.name,
                    where(self.backend.url),
                    type(exc).__name__,
                    exc,
                    pause,
                )
            finally:
                await chains.close()
                await _stop_quietly(broker)
            await asyncio.sleep(pause)

    async def take(self, inbox: Inbox, chains: SubjectChains, message: Message) -> None:
        """Hand one message to its subject's chain; drop what is not a Parley CloudEvent."""
        chains.check()
        try:
            event = parse_event(message.body)
        except ValueError as exc:
            logger.warning(
                "consumer %s: dropping a message that is not a Parley CloudEvent (%s)",
                self.consumer.name,
                exc,
            )
            inbox.received(message)
            await inbox.done(message)
            return
        inbox.received(message)
        await chains.submit(event.subject, self.handle(inbox, message, event))

    async def handle(self, inbox: Inbox, message: Message, event: ReceivedEvent) -> None:
        """Apply the consumer's effect of one event, then acknowledge it; after a failure, have
        it delivered again after a pause."""
        while True:
            try:
                await consume(self.database, self.consumer, event)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures = self._failures.get(event.id, 0)
                if len(self._failures) > 10_000:
                    self._failures.clear()
                self._failures[event.id] = failures + 1
                pause = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                logger.exception(
                    "consumer %s failed on event %s (%s); trying again in about %s s",
                    self.consumer.name,
                    event.id,
                    event.type,
                    pause,
                )
                if await inbox.retry(message, pause):
                    continue
                return
            self._failures.pop(event.id, None)
            await inbox.done(message)
            return


class SubjectChains:
    """Runs coroutines concurrently, at most `limit` at once, those of one subject one after
    another in the order submitted. The first error of one (a lost connection when
    acknowledging) is raised by the next `check`."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._last: dict[str, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None

    def check(self) -> None:
        """Raise the first error of a finished coroutine."""
        if self._error is not None:
            raise self._error

    async def submit(self, subject: str, work: Coroutine[Any, Any, None]) -> None:
        """Start `work` after the subject's previous one (waiting for a free slot)."""
        try:
            await self._slots.acquire()
        except BaseException:
            work.close()
            raise
        task = asyncio.create_task(self._after(self._last.get(subject), work))
        self._last[subject] = task
        self._running.add(task)
        task.add_done_callback(lambda done: self._finished(subject, done))

    @staticmethod
    async def _after(previous: asyncio.Task[None] | None, work: Coroutine[Any, Any, None]) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # whatever became of it
        await work

    def _finished(self, subject: str, task: asyncio.Task[None]) -> None:
        self._slots.release()
        self._running.discard(task)
        if self._last.get(subject) is task:
            del self._last[subject]
        if not task.cancelled() and (error := task.exception()) is not None:
            self._error = self._error or error

    async def close(self) -> None:
        """Let the running coroutines finish (briefly), then cancel the rest."""
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running), timeout=STOP_TIMEOUT_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


# -- `parley consumers` -------------------------------------------------------------------------


async def serve_consumers(settings: Settings) -> None:
    """Run the broker consumers of `event_consumers` (no jobs, no relay) until SIGTERM or
    SIGINT."""
    from parley.background import event_consumers
    from parley.core.telemetry import configure_tracing
    from parley.runtime import open_runtime

    tracer_provider = configure_tracing(settings)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    async with open_runtime(settings) as runtime:
        consumers = event_consumers(runtime)
        transport = open_broker_transport(settings, runtime.database, consumers)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        tasks = [
            asyncio.create_task(run(), name=f"events-consumers-{index}")
            for index, run in enumerate(transport.loops)
        ]
        logger.info("running %d event consumers on %s", len(tasks), where(settings.events_broker))
        try:
            await stopping.wait()
            logger.info("stopping the event consumers")
        finally:
            await stop_loops(tasks)
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await transport.close()
    tracer_provider.force_flush()


def run_consumers(settings: Settings) -> None:
    """`serve_consumers` on uvloop's event loop where it is installed."""
    import importlib.util

    if importlib.util.find_spec("uvloop"):
        import uvloop

        uvloop.run(serve_consumers(settings))
    else:
        asyncio.run(serve_consumers(settings))
