"""Checkpoints: the law's state after entry ``seq``, written by the validator inside a batch transaction.

hash = sha256(ledger_hash || state_json), where ledger_hash is the hash of entry ``seq``. The hash
catches a corrupted or edited row; it does not stop a forger who recomputes it, which is why
``rehydrate`` from T=0 also compares every checkpoint it passes with its own fold.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from core import config
from law import State
from law.ledger import Entry
from law.snapshot import SnapshotError, from_json, to_json

logger = logging.getLogger(__name__)


@functools.cache
def checkpoint_every() -> int:
    """Entries between checkpoints, from ``GRID_CHECKPOINT_EVERY`` (0 turns them off)."""
    return config.load().checkpoint_every


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    ledger_hash: bytes
    state_json: str
    hash: bytes


def checkpoint_hash(ledger_hash: bytes, state_json: str) -> bytes:
    return hashlib.sha256(ledger_hash + state_json.encode()).digest()


def write_checkpoint(cur: psycopg.Cursor[Any], state: State, head_seq: int, head_hash: bytes) -> None:
    """Snapshot ``state``, which must be the state right after entry ``head_seq``."""
    assert state.seq_next == head_seq + 1, f"state is at seq_next {state.seq_next}, not after entry {head_seq}"
    text = to_json(state)
    cur.execute(
        "INSERT INTO checkpoints (seq, ledger_hash, state_json, hash) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (seq) DO NOTHING",
        (head_seq, head_hash, text, checkpoint_hash(head_hash, text)),
    )
    logger.info("checkpoint written", extra={"seq": head_seq, "state_bytes": len(text)})


def after_batch(cur: psycopg.Cursor[Any], entries: list[Entry], state: State, every: int | None = None) -> bool:
    """Write a checkpoint when this batch's entries cross a multiple of ``every``; True if it did.

    Derived from seq numbers alone, so a restart needs no counter and a replay checkpoints at the
    same batches' ends only if it batches alike (checkpoints are per database, never compared across).
    """
    every = checkpoint_every() if every is None else every
    if not entries or every <= 0 or (entries[-1].seq + 1) // every == entries[0].seq // every:
        return False
    write_checkpoint(cur, state, entries[-1].seq, entries[-1].hash)
    return True


def checkpoint_problem(checkpoint: Checkpoint, ledger_hash_at_seq: bytes | None) -> tuple[str, str] | None:
    """(reason, detail) if the checkpoint cannot be trusted as the state after its entry, else None."""
    if ledger_hash_at_seq is None:
        return "CHECKPOINT_CORRUPT", f"no ledger entry {checkpoint.seq} to link to"
    if checkpoint.ledger_hash != ledger_hash_at_seq:
        return "CHECKPOINT_CORRUPT", "ledger_hash is not the hash of its ledger entry"
    if checkpoint_hash(checkpoint.ledger_hash, checkpoint.state_json) != checkpoint.hash:
        return "CHECKPOINT_CORRUPT", "hash does not match sha256(ledger_hash || state_json)"
    try:
        state = from_json(checkpoint.state_json)
    except SnapshotError as exc:
        return "CHECKPOINT_CORRUPT", str(exc)
    if state.seq_next != checkpoint.seq + 1:
        return "CHECKPOINT_CORRUPT", f"snapshot is at seq_next {state.seq_next}, not {checkpoint.seq + 1}"
    return None


def checkpoints_newest_first(conn: psycopg.Connection[Any], at_or_below_seq: int) -> Iterator[Checkpoint]:
    """Checkpoints at or below a seq, newest first, each read when it is asked for."""
    seqs = [
        s
        for (s,) in conn.execute(
            "SELECT seq FROM checkpoints WHERE seq <= %s ORDER BY seq DESC", (at_or_below_seq,)
        ).fetchall()
    ]
    for seq in seqs:
        found = read_checkpoint(conn, seq)
        if found is not None:
            yield found


def read_checkpoint(conn: psycopg.Connection[Any], seq: int) -> Checkpoint | None:
    row = conn.execute("SELECT seq, ledger_hash, state_json, hash FROM checkpoints WHERE seq = %s", (seq,)).fetchone()
    return Checkpoint(row[0], bytes(row[1]), row[2], bytes(row[3])) if row else None
