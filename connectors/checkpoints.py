"""Writing checkpoints: the law's state after entry ``seq``, inside the validator's batch transaction.
What a checkpoint is and how it is checked is ``core.audit``'s; reading them is the read model's."""

from __future__ import annotations

import functools
import logging
from typing import Any

import psycopg

from core import config
from core.audit import checkpoint_hash
from law import State
from law.ledger import Entry
from law.snapshot import to_json
from schemas.signing import Ed25519Signer

logger = logging.getLogger(__name__)

CHECKPOINTS_KEPT = 3


@functools.cache
def checkpoint_every() -> int:
    """Entries between checkpoints, from ``GRID_CHECKPOINT_EVERY`` (0 turns them off)."""
    return config.load().checkpoint_every


# (seq, ledger_hash, next_offset, state_json, hash, signature): a checkpoints row, made where the
# state is and written in the batch's transaction, wherever that runs.
CheckpointRow = tuple[int, bytes, int, str, bytes, bytes]


def checkpoint_row(
    state: State, head_seq: int, head_hash: bytes, next_offset: int, signer: Ed25519Signer
) -> CheckpointRow:
    """Snapshot ``state``: the state after entry ``head_seq`` and every decision below ``next_offset``,
    signed with the validator's key."""
    assert state.seq_next == head_seq + 1, f"state is at seq_next {state.seq_next}, not after entry {head_seq}"
    text = to_json(state)
    digest = checkpoint_hash(head_hash, next_offset, text)
    return head_seq, head_hash, next_offset, text, digest, bytes.fromhex(signer.sign(digest))


def insert_checkpoint(cur: psycopg.Cursor[Any], row: CheckpointRow) -> None:
    """Store a checkpoint. Only the newest CHECKPOINTS_KEPT stay: older ones would only ever be a
    slower start."""
    cur.execute(
        "INSERT INTO checkpoints (seq, ledger_hash, next_offset, state_json, hash, signature) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (seq) DO NOTHING",
        row,
    )
    cur.execute(
        "DELETE FROM checkpoints WHERE seq < (SELECT min(seq) FROM "
        "(SELECT seq FROM checkpoints ORDER BY seq DESC LIMIT %s) newest)",
        (CHECKPOINTS_KEPT,),
    )
    logger.info("checkpoint written", extra={"seq": row[0], "state_bytes": len(row[3])})


def due(entries: list[Entry], every: int | None = None) -> bool:
    """Whether a batch with these entries ends with a checkpoint: when they cross a multiple of ``every``.

    Derived from seq numbers alone, so a restart needs no counter and a replay checkpoints at the
    same batches' ends only if it batches alike (checkpoints are per database, never compared across).
    """
    every = checkpoint_every() if every is None else every
    return bool(entries) and every > 0 and (entries[-1].seq + 1) // every != entries[0].seq // every
