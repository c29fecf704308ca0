"""The sinks' memory in PostgreSQL: planned and delivered messages, accounted records, conflicts.

Tables (``connectors/migrations/0050_sinks.sql``):

- ``sink_deliveries``: one row per message to send, with its full payload, in plan order (``seq``).
  ``pending`` rows are the outbox and the crash-recovery journal; ``delivered`` rows remember what
  Linear or Discord confirmed, with the id they gave it.
- ``sink_records``: which delivery accounts for each topic record (rejection, incident or alert id),
  so a record seen again after a restart, a rebalance or a replay is not planned twice.
- ``sink_conflicts``: per conflict, its Linear issue and running totals.

Planning a batch is one transaction; so is marking one delivery delivered. A ``DeliveryStore`` is one
connection and is used by one thread at a time.

``OutboxFile`` mirrors offline deliveries into ``GRID_HOME/outbox/{sink}.jsonl`` for people to read;
the table is what gets delivered.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

SINKS = ("linear", "discord")
CONNECT_TIMEOUT_S = 10
ERROR_TEXT_LENGTH_MAX = 2_000


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    delivery_id: str
    operation: str  # issue | comment | message
    payload: dict[str, Any]
    record_ids: Sequence[str] = ()
    conflict_id: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A pending row, with the Linear issue id of its conflict when one is known."""

    seq: int
    delivery_id: str
    operation: str
    payload: dict[str, Any]
    attempts: int
    conflict_id: str | None = None
    issue_id: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the outside service answered: the id (and link) of what it created."""

    target_id: str
    target_url: str | None = None


@dataclass(frozen=True, slots=True)
class ConflictRow:
    occurrences: int
    updates: int
    first_source_offset: int
    last_source_offset: int


@dataclass(frozen=True, slots=True)
class SinkSummary:
    sink: str
    pending: int
    offline_pending: int
    stalled: int  # pending rows whose last attempt failed
    delivered: int
    last_error: str | None = None


def connect(database_url: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(database_url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S)


class DeliveryStore:
    def __init__(self, conn: psycopg.Connection[dict[str, Any]], sink: str) -> None:
        if sink not in SINKS:
            raise ValueError(f"unknown sink {sink!r}")
        self._conn = conn
        self.sink = sink

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._conn.transaction():
            yield

    def unseen(self, record_ids: Sequence[str]) -> set[str]:
        """The ids among ``record_ids`` that no delivery of this sink accounts for yet."""
        rows = self._conn.execute(
            "SELECT record_id FROM sink_records WHERE sink = %s AND record_id = ANY(%s)", (self.sink, list(record_ids))
        ).fetchall()
        return set(record_ids) - {r["record_id"] for r in rows}

    def conflict(self, conflict_id: str) -> ConflictRow | None:
        """The conflict's totals, locked until the end of the transaction."""
        row = self._conn.execute(
            "SELECT occurrences, updates, first_source_offset, last_source_offset FROM sink_conflicts "
            "WHERE conflict_id = %s FOR UPDATE",
            (conflict_id,),
        ).fetchone()
        return ConflictRow(**row) if row else None

    def conflicts_in_window(self, start: datetime) -> int:
        """How many conflicts (the overflow one included) this window has opened so far."""
        row = self._conn.execute(
            "SELECT count(*) AS n FROM sink_conflicts WHERE window_start = %s", (start,)
        ).fetchone()
        return int(row["n"]) if row else 0

    def save_conflict(
        self, conflict_id: str, parts: tuple[str, str, str], start: datetime, totals: ConflictRow
    ) -> None:
        self._conn.execute(
            """INSERT INTO sink_conflicts (conflict_id, reason_code, agent, kind, window_start, occurrences,
                   updates, first_source_offset, last_source_offset)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (conflict_id) DO UPDATE SET occurrences = EXCLUDED.occurrences,
                   updates = EXCLUDED.updates, first_source_offset = EXCLUDED.first_source_offset,
                   last_source_offset = EXCLUDED.last_source_offset, updated_at = now()""",
            (
                conflict_id,
                *parts,
                start,
                totals.occurrences,
                totals.updates,
                totals.first_source_offset,
                totals.last_source_offset,
            ),
        )

    def add(self, planned: PlannedDelivery, offline: bool) -> bool:
        """Record a planned delivery and the records it accounts for; False if it was planned before."""
        inserted = self._conn.execute(
            """INSERT INTO sink_deliveries (delivery_id, sink, operation, conflict_id, payload, offline)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (delivery_id) DO NOTHING RETURNING seq""",
            (planned.delivery_id, self.sink, planned.operation, planned.conflict_id, Jsonb(planned.payload), offline),
        ).fetchone()
        if inserted is None:
            return False
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sink_records (sink, record_id, delivery_id) VALUES (%s, %s, %s)",
                [(self.sink, record_id, planned.delivery_id) for record_id in planned.record_ids],
            )
        return True

    def next_pending(self) -> Delivery | None:
        row = self._conn.execute(
            """SELECT d.seq, d.delivery_id, d.operation, d.payload, d.attempts, d.conflict_id, c.issue_id
               FROM sink_deliveries d LEFT JOIN sink_conflicts c USING (conflict_id)
               WHERE d.sink = %s AND d.state = 'pending' ORDER BY d.seq LIMIT 1""",
            (self.sink,),
        ).fetchone()
        return Delivery(**row) if row else None

    def count_attempt(self, delivery_id: str) -> None:
        """Written before each request: from now on the request may have reached the service."""
        self._conn.execute("UPDATE sink_deliveries SET attempts = attempts + 1 WHERE delivery_id = %s", (delivery_id,))

    def note_error(self, delivery_id: str, error: str) -> None:
        self._conn.execute(
            "UPDATE sink_deliveries SET last_error = %s WHERE delivery_id = %s",
            (error[:ERROR_TEXT_LENGTH_MAX], delivery_id),
        )

    def mark_delivered(self, delivery: Delivery, receipt: Receipt) -> None:
        with self._conn.transaction():
            self._conn.execute(
                """UPDATE sink_deliveries SET state = 'delivered', delivered_at = now(), target_id = %s,
                       target_url = %s, last_error = NULL
                   WHERE delivery_id = %s""",
                (receipt.target_id, receipt.target_url, delivery.delivery_id),
            )
            if delivery.operation == "issue" and delivery.conflict_id is not None:
                self._conn.execute(
                    "UPDATE sink_conflicts SET issue_id = %s, issue_url = %s, updated_at = now() "
                    "WHERE conflict_id = %s",
                    (receipt.target_id, receipt.target_url, delivery.conflict_id),
                )

    def backlog(self) -> int:
        row = self._conn.execute(
            "SELECT count(*) AS n FROM sink_deliveries WHERE sink = %s AND state = 'pending'", (self.sink,)
        ).fetchone()
        return int(row["n"]) if row else 0

    def summary(self) -> SinkSummary:
        row = self._conn.execute(
            """SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
                      count(*) FILTER (WHERE state = 'pending' AND offline) AS offline_pending,
                      count(*) FILTER (WHERE state = 'pending' AND last_error IS NOT NULL) AS stalled,
                      count(*) FILTER (WHERE state = 'delivered') AS delivered,
                      (SELECT last_error FROM sink_deliveries WHERE sink = %s AND state = 'pending'
                         AND last_error IS NOT NULL ORDER BY seq LIMIT 1) AS last_error
               FROM sink_deliveries WHERE sink = %s""",
            (self.sink, self.sink),
        ).fetchone()
        return SinkSummary(sink=self.sink, **(row or {}))


class OutboxFile:
    """Append-only JSONL mirror of what an offline sink would have sent."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, sink: str, planned: Sequence[PlannedDelivery]) -> None:
        if not planned:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        at = datetime.now(tz=UTC).isoformat()
        lines = b"".join(
            orjson.dumps(
                {"at": at, "sink": sink, "delivery_id": p.delivery_id, "operation": p.operation, "payload": p.payload}
            )
            + b"\n"
            for p in planned
        )
        with self.path.open("ab") as handle:
            handle.write(lines)
