"""Run both sinks as faust-streaming agents that acknowledge a record only after its delivery is confirmed.

faust acks an event when the agent's loop moves on, and also when the agent raises, and ``take()`` acks
its buffer in a ``finally`` (so a shutdown mid-flush would ack undelivered records). So the agents here
never ack by themselves: each iterates ``stream.noack().events()`` and hands every event to a bounded
queue. A worker task per sink batches the queue (``BatchingSink.add``), runs ``flush`` in a thread (it
blocks on HTTP and PostgreSQL, and retries inside), and only when ``flush`` has returned, i.e. Linear or
Discord confirmed everything, acks the batch's events and commits the consumer's offsets. A record is
never acked before its delivery; a crash before the commit only means records come again, and the
delivery store recognises them.

Operational choices, each measured against Kafka 4.1 with aiokafka 0.14:

- static group membership (``consumer_group_instance_id``): a sink restarted after a crash takes its
  partitions back at once instead of waiting out the dead member's session;
- one process per topic prefix delivers: it holds a PostgreSQL advisory lock from before it joins the
  consumer group until it exits, so a second ``gridgov sinks`` waits instead of sharing partitions;
- ``--once`` drains: it exits after the partitions were assigned and nothing arrived for
  ``IDLE_EXIT_S``, with everything delivered and committed (records produced later wait for the next run).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import faust
import httpx
import psycopg
from faust import Stream
from faust.types import EventT

from connectors.discord import TIMEOUT as DISCORD_TIMEOUT
from connectors.discord import DiscordWebhook
from connectors.linear import TIMEOUT as LINEAR_TIMEOUT
from connectors.linear import LinearClient
from connectors.retry import Stopped, Waiter
from core.config import Settings
from core.kafka_access import MECHANISM, KafkaAccess
from sinks import discord_sink, linear_sink
from sinks.batching import BatchingSink, Message
from sinks.delivery import Deliverer
from sinks.discord_sink import DiscordSink, DiscordTransport
from sinks.linear_sink import LinearSink, LinearTransport
from sinks.settings import SinkSettings
from sinks.store import Delivery, DeliveryStore, OutboxFile, connect

logger = logging.getLogger(__name__)

QUEUE_LENGTH_MAX = 2_000  # events between agent and worker; when full, the agent waits and faust stops fetching
POLL_INTERVAL_S = 0.1
BACKLOG_CHECK_INTERVAL_S = 2.0  # how often an idle worker looks for rows the other sink queued for it
IDLE_EXIT_S = 2.0
LOCK_POLL_INTERVAL_S = 2.0
SESSION_TIMEOUT_S = 30.0


@dataclass
class Sinks:
    linear: LinearSink
    discord: DiscordSink
    waiter: Waiter


def _outbox(settings: Settings, sink: str) -> OutboxFile:
    return OutboxFile(settings.home / "outbox" / f"{sink}.jsonl")


def build_sinks(settings: Settings, sink_settings: SinkSettings, waiter: Waiter) -> Sinks:
    """Both sinks, each with its own PostgreSQL connection and HTTP client (each runs in its own thread)."""
    ss = sink_settings
    linear_conn, discord_conn = connect(settings.sinks_database_url), connect(settings.sinks_database_url)
    linear_store, discord_store = DeliveryStore(linear_conn, "linear"), DeliveryStore(discord_conn, "discord")
    # a sink reports its own stall through the other sink's table, on its own connection
    discord_inbox, linear_inbox = DeliveryStore(linear_conn, "discord"), DeliveryStore(discord_conn, "linear")

    def linear_failed(failed: Delivery, error: str) -> None:
        discord_sink.plan_failure_report(discord_inbox, failed, error, offline=not ss.discord_online)

    def discord_failed(failed: Delivery, error: str) -> None:
        linear_sink.plan_failure_report(linear_inbox, failed, error, ss.dashboard_url, offline=not ss.linear_online)

    linear_deliverer = None
    if ss.linear_api_key is not None and ss.linear_team_id is not None:
        client = LinearClient(httpx.Client(timeout=LINEAR_TIMEOUT), ss.linear_api_key, ss.linear_url)
        transport = LinearTransport(client, ss.linear_team_id)
        linear_deliverer = Deliverer(linear_store, transport, ss.retry, waiter, linear_failed, ss.stall_probe_s)
    discord_deliverer = None
    if ss.discord_webhook_url is not None:
        webhook = DiscordWebhook(httpx.Client(timeout=DISCORD_TIMEOUT), ss.discord_webhook_url)
        discord_deliverer = Deliverer(
            discord_store, DiscordTransport(webhook), ss.retry, waiter, discord_failed, ss.stall_probe_s
        )
    linear = LinearSink(
        linear_store,
        linear_deliverer,
        _outbox(settings, "linear"),
        (settings.topic("rejections"), settings.topic("incidents")),
        ss.dashboard_url,
        (ss.conflict_window_s, ss.conflicts_per_window_max),
        ss.linger_s,
        ss.batch_age_max_s,
    )
    discord_outbox = _outbox(settings, "discord")
    discord = DiscordSink(
        discord_store, discord_deliverer, discord_outbox, ss.dashboard_url, ss.linger_s, ss.batch_age_max_s
    )
    for sink, credentials in ((linear, "LINEAR_API_KEY and LINEAR_TEAM_ID"), (discord, "DISCORD_WEBHOOK_URL")):
        if not sink.online:
            logger.warning(
                "%s sink: no %s; writing what it would send to the outbox (sink_outbox, %s) until they are set",
                sink.name,
                credentials,
                _outbox(settings, sink.name).path,
            )
    return Sinks(linear, discord, waiter)


@contextmanager
def exclusive(settings: Settings, waiter: Waiter) -> Iterator[None]:
    """Hold the sinks' advisory lock for this topic prefix; wait while another process holds it."""
    with connect(settings.sinks_database_url) as conn:
        key = f"gridgov-sinks:{settings.topic_prefix}"
        while not _try_lock(conn, key):
            logger.warning("another sinks process delivers for %r; waiting for it to stop", settings.topic_prefix)
            waiter.sleep(LOCK_POLL_INTERVAL_S)
        yield  # the lock goes with the connection, also when the process is killed


def _try_lock(conn: psycopg.Connection[dict[str, Any]], key: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0)) AS ok", (key,)).fetchone()
    return bool(row and row["ok"])


def _message(event: EventT[bytes]) -> Message:
    m = event.message
    return Message(m.topic, m.partition, m.offset, m.timestamp, event.value)


class SinkWorker:
    """Bridges one faust agent to one sink: queue, batch, flush in a thread, then ack and commit."""

    def __init__(self, app: faust.App, sink: BatchingSink) -> None:
        self._app = app
        self.sink = sink
        self._queue: asyncio.Queue[tuple[Stream[bytes], EventT[bytes]]] = asyncio.Queue(QUEUE_LENGTH_MAX)
        self._unacked: list[tuple[Stream[bytes], EventT[bytes]]] = []
        self.last_event_at_s = time.monotonic()
        self.idle = False

    async def agent(self, stream: Stream[bytes]) -> None:
        async for event in stream.noack().events():
            self.last_event_at_s = time.monotonic()
            await self._queue.put((stream, event))

    async def run(self) -> None:
        await asyncio.to_thread(self.sink.deliver_backlog)
        backlog_checked_at_s = time.monotonic()
        while True:
            self._take_queued()
            self.idle = False
            if self.sink.flush_due():
                await asyncio.to_thread(self.sink.flush)
                await self._ack_and_commit()
            elif not self._unacked and time.monotonic() - backlog_checked_at_s >= BACKLOG_CHECK_INTERVAL_S:
                await asyncio.to_thread(self.sink.deliver_backlog)
                backlog_checked_at_s = time.monotonic()
            self.idle = not self._unacked and self._queue.empty()
            await asyncio.sleep(POLL_INTERVAL_S if self._queue.empty() else 0)

    def _take_queued(self) -> None:
        while not self._queue.empty():
            stream, event = self._queue.get_nowait()
            self.sink.add(_message(event))
            self._unacked.append((stream, event))

    async def _ack_and_commit(self) -> None:
        for stream, event in self._unacked:
            await stream.ack(event)
        self._unacked.clear()
        await self._app.consumer.commit()


def _broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{address.strip()}" for address in bootstrap.split(","))


def default_instance_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}-sinks-{socket.gethostname()}"


def _credentials(kafka: KafkaAccess) -> faust.SASLCredentials | None:
    if kafka.username is None:
        return None
    return faust.SASLCredentials(username=kafka.username, password=kafka.password, mechanism=MECHANISM)


def build_app(settings: Settings, sinks: Sinks, instance_id: str, once: bool) -> faust.App:
    datadir = settings.home / "sinks" / "faust"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    kafka = settings.kafka("sinks")
    app = faust.App(
        f"{settings.topic_prefix}-sinks",
        broker=_broker_url(kafka.bootstrap),
        broker_credentials=_credentials(kafka),
        value_serializer="raw",
        web_enabled=False,
        datadir=str(datadir),
        consumer_group_instance_id=instance_id,
        broker_session_timeout=SESSION_TIMEOUT_S,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
    )
    workers = [SinkWorker(app, sinks.linear), SinkWorker(app, sinks.discord)]
    topics = [(settings.topic("rejections"), settings.topic("incidents")), (settings.topic("alerts"),)]
    for worker, names in zip(workers, topics, strict=True):
        agent = app.agent(app.topic(*names, value_type=bytes), name=f"{worker.sink.name}-sink")
        # faust types an agent's argument as StreamT, whose interface omits noack(); it is a Stream
        agent(worker.agent)  # type: ignore[arg-type]
        app.task(_guarded(worker, sinks.waiter))
    if once:
        app.task(_exit_when_drained(app, workers))
    return app


def _guarded(worker: SinkWorker, waiter: Waiter) -> Any:
    async def run_worker() -> None:
        try:
            await worker.run()
        except (asyncio.CancelledError, Stopped):
            waiter.stop()  # wakes the flush thread out of any backoff so the process can exit
            raise

    run_worker.__name__ = f"run_{worker.sink.name}_sink"
    return run_worker


def _exit_when_drained(app: faust.App, workers: list[SinkWorker]) -> Any:
    async def exit_when_drained() -> None:
        while not app.consumer.assignment():
            await asyncio.sleep(POLL_INTERVAL_S)
        assigned_at_s = time.monotonic()
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            quiet_since_s = max(assigned_at_s, *(w.last_event_at_s for w in workers))
            if all(w.idle for w in workers) and time.monotonic() - quiet_since_s >= IDLE_EXIT_S:
                logger.info("drained: every record delivered and committed; stopping")
                os.kill(os.getpid(), signal.SIGTERM)  # the worker's own orderly shutdown path
                return

    return exit_when_drained


def run(settings: Settings, sink_settings: SinkSettings, instance_id: str, once: bool) -> int:
    waiter = Waiter()
    with exclusive(settings, waiter):
        sinks = build_sinks(settings, sink_settings, waiter)
        app = build_app(settings, sinks, instance_id, once)
        worker = faust.Worker(app, loglevel="info", quiet=True, redirect_stdouts=False)
        try:
            worker.execute_from_commandline()
        except SystemExit as exit_:
            return int(exit_.code or 0)
    return 0
