"""Where the validator's decided batches go: committed in its own process, or in the writer process.

``InlineSink`` commits a batch and relays its records before the validator decides the next one
(the in-memory store and the tests' fakes run this way). ``ProcessSink`` hands the batch to a writer
process with its own Postgres connection and relay, and returns at once: the validator decides batch
N+1 on one core while batch N is written on the other. The consumer position still goes into the
same transaction as the batch's effects, so exactly-once holds as before: a batch is decided for
good when its transaction commits, and a crash loses only what was not yet committed, which the
next start decides again from the stored position.

The writer process holds the single-writer lock: it takes it before the validator folds the ledger,
and dies with the validator (the kernel kills it, ``PR_SET_PDEATHSIG``), so no writer outlives its
validator and no second validator can start while one still writes.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, NamedTuple, Protocol

import msgspec

from connectors.ledger_store import NO_CHANGES, LedgerStore, LedgerStoreContract
from connectors.relay import Relay
from core.config import Settings
from core.identities import validator_signer
from core.outgoing import Outgoing
from core.process import WaitTimeoutError, poll_until, settle_heap_for_batches
from core.rows import Batch, CommitRefused, Rejection
from law import State
from law.ledger import Entry

logger = logging.getLogger(__name__)

# Batches handed over but not yet committed: two keep both cores busy (one deciding, one writing);
# more would only hold more memory and add latency.
IN_FLIGHT_BATCHES_MAX = 2
LOCK_WAIT_S = 30.0
LOCK_RETRY_S = 0.5
# The writer's start: imports, its connection, the lock (LOCK_WAIT_S) and the relay's catch-up.
START_WAIT_S = LOCK_WAIT_S + 60.0
REPLY_WAIT_S = 120.0  # a commit, a relay flush (30 s at most) or the last commit at shutdown
IDLE_POLL_S = 0.05  # how often an idle writer serves the relay's delivery reports
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

# Entries and rejections cross as typed MessagePack (Structs, encoded as arrays): about a fifth of what
# pickle costs the deciding process per entry, and the writer's decoder checks every value's type on
# the way in as it rebuilds them.
_encode = msgspec.msgpack.Encoder().encode
_decode_entries = msgspec.msgpack.Decoder(list[Entry]).decode
_decode_rejections = msgspec.msgpack.Decoder(list[Rejection]).decode


class Committed(NamedTuple):
    """A batch the store committed."""

    next_offset: int
    commit_s: float  # the transaction's duration
    at_ms: int  # wall clock when it committed: produce→commit latency is measured to here, not to when
    # the validator next looks, a batch's decisions later


def _committed(next_offset: int, started_s: float) -> Committed:
    return Committed(next_offset, time.perf_counter() - started_s, int(time.time() * 1000))


class ValidatorStoreError(RuntimeError):
    """The writer process failed or ended: the batches it had not committed are decided again on restart."""


class BatchSink(Protocol):
    """What the validator hands decided batches to."""

    def submit(self, batch: Batch, state: State, extra: list[Outgoing]) -> None:
        """Commit ``batch`` (with ``state`` as it left it) and relay it with ``extra``, now or later."""
        ...

    def committed(self, wait: bool) -> list[Committed]:
        """Each batch committed since the last call, in order; with ``wait``, first wait until at
        least one is, if any is in flight."""
        ...

    @property
    def in_flight(self) -> int: ...

    def flush_relay(self) -> None:
        """Wait until the broker acknowledged every record relayed so far."""
        ...

    def finish(self, next_offset: int, state: State) -> None:
        """Flush the relay and store its confirmed positions; every batch submitted is committed after it."""
        ...

    def close(self) -> None: ...


@dataclass
class InlineSink:
    """Commits and relays each batch before ``submit`` returns."""

    store: LedgerStoreContract
    relay: Any  # streams.validator.RecordSink
    _done: list[Committed] | None = None

    def submit(self, batch: Batch, state: State, extra: list[Outgoing]) -> None:
        started = time.perf_counter()
        self.store.commit(batch, state, self.relay.poll())
        done = _committed(batch.next_offset, started)
        self.relay.publish(batch, extra)
        self._done = [*(self._done or []), done]

    def committed(self, wait: bool) -> list[Committed]:
        self.relay.poll()
        done, self._done = self._done or [], None
        return done

    @property
    def in_flight(self) -> int:
        return 0

    def flush_relay(self) -> None:
        self.relay.flush()

    def finish(self, next_offset: int, state: State) -> None:
        positions = self.relay.flush()
        self.store.commit(Batch(next_offset=next_offset), state, positions)

    def close(self) -> None:
        self.store.close()


class ProcessSink:
    """Hands each batch to the writer process (``serve``) and returns; its commits are reported back."""

    def __init__(self, store: LedgerStore, process: subprocess.Popen[bytes], conn: Connection) -> None:
        self.store, self.process, self.conn = store, process, conn
        self._in_flight: deque[int] = deque()
        self._done: list[Committed] = []  # committed, not yet taken by ``committed``
        self._closed = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def submit(self, batch: Batch, state: State, extra: list[Outgoing]) -> None:
        """1. Read what the batch changes from the state now, before the next batch changes it.
        2. Wait while IN_FLIGHT_BATCHES_MAX batches are not yet committed (bounded memory).
        3. Send the batch: its entries and rejections as MessagePack, the rest pickled."""
        changes = self.store.changes(batch, state)
        while len(self._in_flight) >= IN_FLIGHT_BATCHES_MAX:
            self._receive(REPLY_WAIT_S)
        entries, rejections = _encode(batch.entries), _encode(batch.rejections)
        self.conn.send(("batch", batch.next_offset, entries, rejections, changes, extra))
        self._in_flight.append(batch.next_offset)

    def committed(self, wait: bool) -> list[Committed]:
        if wait and self._in_flight and not self._done:
            self._receive(REPLY_WAIT_S)
        while self.conn.poll(0):
            self._receive(0)
        done, self._done = self._done, []
        return done

    def flush_relay(self) -> None:
        assert not self._in_flight, "the validator waits for its commits first"
        self.conn.send(("flush_relay",))
        self._await("relay_flushed")

    def finish(self, next_offset: int, state: State) -> None:
        del state  # every change of it went with its batch
        assert not self._in_flight, "the validator waits for its commits first"
        self.conn.send(("finish", next_offset))
        self._await("finished")

    def close(self) -> None:
        """End the writer (what it was sent before is committed first) and close the reading connection."""
        if not self._closed:
            self._closed = True
            self.conn.close()  # the writer reads EOF after the last message and ends
            try:
                self.process.wait(REPLY_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.store.close()

    def await_ready(self) -> None:
        """Wait until the writer's relay caught up (the lock it took before ``start_writer`` returned)."""
        self._await("ready", START_WAIT_S)

    def _await(self, wanted: str, timeout_s: float = REPLY_WAIT_S) -> None:
        reply = self._recv(timeout_s)
        assert reply[0] == wanted, f"the writer replied {reply[0]}, not {wanted}"

    def _receive(self, timeout_s: float) -> None:
        """Wait for one commit report."""
        reply = self._recv(timeout_s)
        assert reply[0] == "committed", f"unexpected reply from the writer: {reply[0]}"
        done = Committed(*reply[1:])
        assert self._in_flight.popleft() == done.next_offset, "the writer commits batches in the order sent"
        self._done.append(done)

    def _recv(self, timeout_s: float) -> tuple[Any, ...]:
        if not self.conn.poll(timeout_s):
            raise ValidatorStoreError(f"the writer process sent nothing for {timeout_s:.0f} s")
        try:
            reply: tuple[Any, ...] = self.conn.recv()
        except EOFError:
            try:
                exit_status = self.process.wait(1.0)
            except subprocess.TimeoutExpired:
                exit_status = None
            raise ValidatorStoreError(f"the writer process ended (exit {exit_status})") from None
        if reply[0] == "refused":
            raise CommitRefused(*reply[1:])
        if reply[0] == "lock_timeout":
            raise WaitTimeoutError(reply[1])
        if reply[0] == "failed":
            raise ValidatorStoreError(f"the writer process failed: {reply[1]}")
        return reply


def start_writer(settings: Settings, consumer: str, topic: str, store: LedgerStore) -> ProcessSink:
    """Start the writer process for ``consumer``'s position on ``topic``; ``store`` is the validator's own
    (it folds the ledger and reads each batch's changes). Returns once the writer holds the lock.

    A fresh interpreter (``python -m streams.writer``), not a fork: it inherits no Kafka or libpq state,
    and, unlike multiprocessing's spawn, it does not re-run the caller's main module. The kernel ends
    it when the calling thread ends, so that thread must outlive the validator.
    """
    ours, theirs = socket.socketpair()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.writer", str(theirs.fileno())], pass_fds=[theirs.fileno()]
    )
    theirs.close()  # the writer's end lives in the writer: its exit is our EOF
    sink = ProcessSink(store, process, Connection(ours.detach()))
    sink.conn.send((settings, consumer, topic, os.getpid()))
    try:
        sink._await("locked", START_WAIT_S)
    except BaseException:
        sink.close()
        raise
    return sink


# --- the writer process ----------------------------------------------------------------------------


def serve(conn: Connection, settings: Settings, consumer: str, topic: str, validator_pid: int) -> None:
    """The writer process: take the lock, catch the relay up, then commit and relay batches in order.

    1. Die with the validator, and leave SIGINT and SIGTERM to it: it ends the writer when it stops.
    2. Take the single-writer lock (``lock_timeout`` if another validator keeps it).
    3. Republish what was committed but not confirmed by the broker (the relay's catch-up).
    4. For each batch: write it in one transaction with its position, report the commit, relay it.
    5. At EOF (the validator closed its end or died), end: what was sent is committed or never was.
    """
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != validator_pid:
        return  # the validator died before the line above took effect
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    store = LedgerStore(settings.validator_database_url, consumer, topic, validator_signer(settings.home))
    try:
        try:
            poll_until(store.lock, LOCK_WAIT_S, "the ledger lock, held by another validator", interval_s=LOCK_RETRY_S)
        except WaitTimeoutError as exc:
            conn.send(("lock_timeout", str(exc)))
            return
        conn.send(("locked",))
        relay = Relay(settings.kafka("validator"), settings.topic, store.relay_positions())
        relay.catch_up(store.unrelayed(relay.confirmed))
        conn.send(("ready",))
        settle_heap_for_batches()
        _serve_batches(conn, store, relay)
    except CommitRefused as exc:
        conn.send(("refused", exc.first_offset, exc.next_offset, exc.constraint, exc.detail, exc.suspects))
    except Exception as exc:
        logger.exception("the validator's writer failed")
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        store.close()


def _serve_batches(conn: Connection, store: LedgerStore, relay: Relay) -> None:
    while True:
        if not conn.poll(IDLE_POLL_S):
            relay.poll()
            continue
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] == "batch":
            _, next_offset, entries, rejections, changes, extra = message
            batch = Batch(
                _decode_entries(entries),
                _decode_rejections(rejections),
                next_offset,
            )
            started = time.perf_counter()
            store.write(batch, changes, relay.poll())
            conn.send(("committed", *_committed(next_offset, started)))
            relay.publish(batch, extra)
        elif message[0] == "flush_relay":
            relay.flush()
            conn.send(("relay_flushed",))
        else:
            assert message[0] == "finish", f"unknown message to the writer: {message[0]}"
            store.write(Batch(next_offset=message[1]), NO_CHANGES, relay.flush())
            conn.send(("finished",))


if __name__ == "__main__":
    # started by start_writer: the connection's descriptor, then its first message, the arguments
    writer_conn = Connection(int(sys.argv[1]))
    serve(writer_conn, *writer_conn.recv())
