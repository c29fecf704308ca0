"""The validator's Postgres adapter: one transaction per batch, and the fold of the ledger on start.

A batch's transaction holds the ledger entries and postings (COPY), the rejections (COPY), the
touched ``world_state`` rows, the open offers, participants and grid status caches, the relay
positions and the consumer position. Either all of it is durable or none of it is; the consumer
position inside it is what makes redelivery harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import psycopg
from psycopg import sql

from connectors import checkpoints
from connectors.readmodel.ledger import PgLedgerReader
from core.audit import (
    CHECKPOINT_SEQ_ANY,
    OFFER_COLUMNS,
    ORDER_COLUMNS,
    Checkpoint,
    rebuild_state,
)
from core.outgoing import LEDGER_STREAM, REJECTION_STREAM
from core.rows import (
    LEDGER_COLUMNS,
    LEDGER_TYPES,
    POSTING_COLUMNS,
    POSTING_TYPES,
    REJECTION_COLUMNS,
    REJECTION_TYPES,
    Batch,
    CommitRefused,
    Position,
    Rejection,
    entry_row,
    posting_rows,
)
from law import State
from law.ledger import GENESIS_PREV_HASH, Entry
from law.state import OpenOffer, Order
from schemas.signing import Ed25519Signer

logger = logging.getLogger(__name__)

# One well-known advisory lock: at most one validator writes a given ledger.
VALIDATOR_LOCK_KEY = 0x67726964_6C656467  # "gridledg"


class LedgerStoreContract(Protocol):
    """What the validator needs of its store; ``LedgerStore`` (Postgres) and ``MemoryLedgerStore`` have it,
    and one contract test suite runs against both."""

    def lock(self) -> bool: ...
    def position(self) -> Position: ...
    def fold(self) -> State: ...
    def commit(self, batch: Batch, state: State, relay: dict[str, int]) -> None: ...
    def relay_positions(self) -> dict[str, int]: ...
    def unrelayed(self, confirmed: dict[str, int]) -> Batch: ...
    def close(self) -> None: ...


class LedgerStore:
    def __init__(self, database_url: str, consumer: str, topic: str, signer: Ed25519Signer, partition: int = 0) -> None:
        self.signer = signer  # the validator's key: it signs checkpoints, and start-up trusts only those
        self.conn = psycopg.connect(database_url, autocommit=False)
        self.reader = PgLedgerReader(self.conn, database_url)
        self.consumer, self.topic, self.partition = consumer, topic, partition
        self._offers_persisted: dict[str, OpenOffer] = {}
        self._orders_persisted: dict[str, Order] = {}
        self._agents_persisted = 0

    def close(self) -> None:
        self.conn.close()

    def lock(self) -> bool:
        """Take the single-writer lock for this session's lifetime; False if another validator holds it."""
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (VALIDATOR_LOCK_KEY,)).fetchone()
        self.conn.commit()
        return bool(row and row[0])

    # --- start-up --------------------------------------------------------------------------------

    def position(self) -> Position:
        row = self.conn.execute(
            "SELECT next_offset FROM consumer_position WHERE consumer = %s AND topic = %s AND partition = %s",
            (self.consumer, self.topic, self.partition),
        ).fetchone()
        head = self.conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        self.conn.commit()
        return Position(
            next_offset=row[0] if row else 0,
            head_seq=head[0] if head else -1,
            head_hash=bytes(head[1]) if head else GENESIS_PREV_HASH,
        )

    def fold(self) -> State:
        """Rebuild the law's state: from the newest checkpoint that verifies, else from T=0, checking
        every entry folded (``core.audit.rebuild_state``); raises ``LedgerCorrupt`` on a damaged ledger."""
        state, start = rebuild_state(self.reader, _log_skipped, self.signer.public_key)
        if start.checkpoint_seq is not None:
            logger.info("folded from checkpoint", extra={"seq": start.checkpoint_seq})
        self._offers_persisted = dict(state.offers)
        self._orders_persisted = dict(state.orders)
        self._agents_persisted = _registry_signature(state)
        return state

    def relay_positions(self) -> dict[str, int]:
        """How far the relay's streams were confirmed by the broker, as of the last commit."""
        rows = self.conn.execute("SELECT stream, position FROM relay_position").fetchall()
        self.conn.commit()
        return {stream: position for stream, position in rows}

    def unrelayed(self, confirmed: dict[str, int]) -> Batch:
        """Everything committed beyond the relay's confirmed positions, for it to republish."""
        entries = list(self.reader.entries(confirmed.get(LEDGER_STREAM, 0), CHECKPOINT_SEQ_ANY))
        rows = self.conn.execute(
            f"SELECT {REJECTION_COLUMNS} FROM rejections WHERE source_offset >= %s ORDER BY source_offset",
            (confirmed.get(REJECTION_STREAM, 0),),
        ).fetchall()
        self.conn.commit()
        return Batch(entries=entries, rejections=[Rejection(*r) for r in rows])

    # --- one batch -------------------------------------------------------------------------------

    def commit(self, batch: Batch, state: State, relay: dict[str, int]) -> None:
        """Write the batch and its consequences in one transaction: ``changes`` then ``write``."""
        persisted = self._offers_persisted, self._orders_persisted, self._agents_persisted
        try:
            self.write(batch, self.changes(batch, state), relay)
        except BaseException:
            # nothing was written: the caches' rows are as before the batch
            self._offers_persisted, self._orders_persisted, self._agents_persisted = persisted
            raise

    def changes(self, batch: Batch, state: State) -> Changes:
        """What ``batch`` changes in the caches beside the ledger, read from ``state`` as the batch left it.

        Pure reads of ``state``, so the validator can decide the next batch while another connection
        (``streams.writer``) writes this one. It counts the rows as persisted from here on: the caller
        writes them, or halts.
        """
        entries = batch.entries
        offers, self._offers_persisted = _row_changes(state.offers, self._offers_persisted, OFFER_COLUMNS)
        orders, self._orders_persisted = _row_changes(state.orders, self._orders_persisted, ORDER_COLUMNS)
        participants = None
        signature = _registry_signature(state)
        if signature != self._agents_persisted:
            participants = [
                (name, a.role, a.kind, list(a.accounts), a.emits_carbon, a.critical_load, a.suspended)
                for name, a in sorted(state.agents.items())
            ]
            self._agents_persisted = signature
        checkpoint = None
        if checkpoints.due(entries):
            head = entries[-1]
            checkpoint = checkpoints.checkpoint_row(state, head.seq, head.hash, batch.next_offset, self.signer)
        return Changes(
            balances=_balances(entries, state),
            status=_status(entries[-1], state) if entries else None,
            checkpoint=checkpoint,
            offers=offers,
            orders=orders,
            participants=participants,
        )

    def write(self, batch: Batch, changes: Changes, relay: dict[str, int]) -> None:
        """Write a batch and its ``changes`` in one transaction.

        1. COPY ledger entries and their postings, then the rejections; replace the open offers,
           orders and participants that changed.
        2. Upsert the world_state rows the postings touched, the grid status row and the checkpoint
           when one is due.
        3. Record the relay positions confirmed so far and the consumer position.
        4. Commit. A crash before this line leaves no trace; after it, the batch is decided for good.

        The law refuses whatever the database would, so a refusal here (a constraint, a value out of
        range) is a bug in the law: it is raised as ``CommitRefused`` naming what was refused, for the
        validator to halt on. A lost connection is not that, and propagates as it is.
        """
        try:
            self._write(batch, changes, relay)
        except (psycopg.IntegrityError, psycopg.DataError, psycopg.errors.RaiseException) as exc:
            self.conn.rollback()
            raise _refused(batch, exc) from exc

    def _write(self, batch: Batch, changes: Changes, relay: dict[str, int]) -> None:
        cur = self.conn.cursor()
        if batch.entries:
            self._copy_entries(cur, batch.entries)
        if batch.rejections:
            with _copy_in(cur, "rejections", REJECTION_COLUMNS, REJECTION_TYPES) as copy:
                for r in batch.rejections:
                    copy.write_row(r.as_tuple())
        _replace_rows(cur, "open_offers", OFFER_COLUMNS, changes.offers)
        _replace_rows(cur, "open_orders", ORDER_COLUMNS, changes.orders)
        if changes.participants is not None:
            cur.execute("DELETE FROM participants")
            with cur.copy(
                "COPY participants (agent, role, kind, accounts, emits_carbon, critical_load, suspended) FROM STDIN"
            ) as copy:
                for row in changes.participants:
                    copy.write_row(row)
        # The statements left and the commit go in one round trip (a pipeline holds no COPY): every
        # round trip is paid once per batch, and at low load a batch's fixed cost is its latency.
        with self.conn.pipeline():
            if changes.balances is not None:
                cur.execute(
                    "INSERT INTO world_state (account, resource, balance, seq) "
                    "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[]) "
                    "ON CONFLICT (account, resource) DO UPDATE SET balance = EXCLUDED.balance, seq = EXCLUDED.seq",
                    changes.balances,
                )
            if changes.status is not None:
                cur.execute(_STATUS_UPSERT, changes.status)
            if changes.checkpoint is not None:
                checkpoints.insert_checkpoint(cur, changes.checkpoint)
            if relay:
                cur.execute(
                    "INSERT INTO relay_position (stream, position) SELECT * FROM unnest(%s::text[], %s::bigint[]) "
                    "ON CONFLICT (stream) DO UPDATE SET position = EXCLUDED.position",
                    (list(relay), list(relay.values())),
                )
            cur.execute(
                "INSERT INTO consumer_position (consumer, topic, partition, next_offset) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
                (self.consumer, self.topic, self.partition, batch.next_offset),
            )
            self.conn.commit()

    def _copy_entries(self, cur: psycopg.Cursor[Any], entries: list[Entry]) -> None:
        with _copy_in(cur, "ledger", LEDGER_COLUMNS, LEDGER_TYPES) as copy:
            for e in entries:
                copy.write_row(entry_row(e))
        with _copy_in(cur, "postings", POSTING_COLUMNS, POSTING_TYPES) as copy:
            for e in entries:
                for row in posting_rows(e):
                    copy.write_row(row)


@contextmanager
def _copy_in(cur: psycopg.Cursor[Any], table: str, columns: str, types: tuple[str, ...]) -> Iterator[psycopg.Copy]:
    """A binary COPY into ``table``: per row a third less formatting here than text (nothing to escape
    in the JSON columns) and no parsing of numbers in Postgres."""
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(types))
        yield copy


RowChanges = tuple[list[str], list[tuple[Any, ...]]]  # (keys whose rows go, rows that come)


@dataclass(frozen=True, slots=True)
class Changes:
    """A batch's writes beside the ledger, as ``LedgerStore.changes`` read them from the state; plain
    values, so they can be handed to another process."""

    balances: tuple[list[str], list[str], list[int], list[int]] | None  # accounts, resources, balances, seqs
    status: tuple[Any, ...] | None  # the grid_status row after the batch's last entry
    checkpoint: checkpoints.CheckpointRow | None
    offers: RowChanges
    orders: RowChanges
    participants: list[tuple[Any, ...]] | None  # the whole registry, when it changed


NO_CHANGES = Changes(None, None, None, ([], []), ([], []), None)

_STATUS_UPSERT = (
    "INSERT INTO grid_status (id, head_seq, head_hash, tick, policy_version, policy_json, breaker_open, "
    "breaker_reason, breaker_trip_seq, telemetry_json, shortfall_json, updated_at) "
    "VALUES (true, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) ON CONFLICT (id) DO UPDATE SET "
    "head_seq = EXCLUDED.head_seq, head_hash = EXCLUDED.head_hash, tick = EXCLUDED.tick, "
    "policy_version = EXCLUDED.policy_version, policy_json = EXCLUDED.policy_json, "
    "breaker_open = EXCLUDED.breaker_open, breaker_reason = EXCLUDED.breaker_reason, "
    "breaker_trip_seq = EXCLUDED.breaker_trip_seq, "
    "telemetry_json = EXCLUDED.telemetry_json, shortfall_json = EXCLUDED.shortfall_json, updated_at = now()"
)


def _balances(entries: list[Entry], state: State) -> tuple[list[str], list[str], list[int], list[int]] | None:
    """The world_state rows the postings touched: balance now, and the seq that last touched each."""
    last_seq: dict[tuple[str, str], int] = {}
    for e in entries:
        for account, resource, _ in e.postings:
            last_seq[(account, resource)] = e.seq
    if not last_seq:
        return None
    keys = sorted(last_seq)
    return (
        [k[0] for k in keys],
        [k[1] for k in keys],
        [state.balance(*k) for k in keys],
        [last_seq[k] for k in keys],
    )


def _status(head: Entry, state: State) -> tuple[Any, ...]:
    shortfall = [[a, r, u] for (a, r), u in sorted(state.shortfall.items())]
    return (
        head.seq,
        head.hash,
        state.tick,
        state.policy_version,
        orjson.dumps(state.policy, option=orjson.OPT_SORT_KEYS).decode(),
        state.breaker_open,
        state.breaker_reason,
        state.breaker_trip_seq,
        orjson.dumps(state.telemetry.as_dict()).decode(),
        orjson.dumps(shortfall).decode(),
    )


def _row_changes(
    current: Mapping[str, Any], persisted: dict[str, Any], columns: tuple[str, ...]
) -> tuple[RowChanges, dict[str, Any]]:
    """What brings a cache of frozen state objects up to date (a changed object is a new object): the
    keys gone or changed, the rows new or changed; and what is persisted after it."""
    changed = sorted(key for key, value in current.items() if persisted.get(key) is not value)
    stale = sorted((persisted.keys() - current.keys()) | set(changed))
    rows = [(key, *(getattr(current[key], name) for name in columns[1:])) for key in changed]
    return (stale, rows), dict(current)


def _replace_rows(cur: psycopg.Cursor[Any], table: str, columns: tuple[str, ...], changes: RowChanges) -> None:
    stale, rows = changes
    if stale:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(sql.Identifier(table), sql.Identifier(columns[0])),
            (stale,),
        )
    if rows:
        query = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with cur.copy(query) as copy:
            for row in rows:
                copy.write_row(row)


def _registry_signature(state: State) -> int:
    """Changes whenever the registry does: agents are only added or suspended, never removed."""
    suspended = sum(1 for a in state.agents.values() if a.suspended)
    return len(state.agents) * 1_000_003 + suspended


def _log_skipped(checkpoint: Checkpoint, reason: str, detail: str) -> None:
    logger.warning("skipping checkpoint", extra={"seq": checkpoint.seq, "reason": reason, "problem": detail})


def _refused(batch: Batch, exc: psycopg.Error) -> CommitRefused:
    diag = exc.diag
    detail = " ".join(part for part in (diag.message_primary, diag.message_detail) if part) or str(exc)
    # The entries the database's message names (a duplicate key names its values), else the whole batch.
    named = [e for e in batch.entries if e.proposal_id in detail or f"{e.agent}, {e.nonce}" in detail]
    offsets = [e.source_offset for e in batch.entries] + [r.source_offset for r in batch.rejections]
    return CommitRefused(
        first_offset=min(offsets, default=batch.next_offset),
        next_offset=batch.next_offset,
        constraint=diag.constraint_name or diag.sqlstate or type(exc).__name__,
        detail=detail,
        suspects=[(e.source_offset, e.agent, e.nonce, e.proposal_id) for e in (named or batch.entries)][:20],
    )
