"""Audit the ledger as stored: the hash chain, seq continuity, offset order, per-entry conservation,
the world_state cache against the fold, and that every decided offset landed in exactly one place.

An entry that fails a check is reported with its seq and reason and is not folded, so one tampered
row is named precisely instead of poisoning every comparison after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from connectors.ledger_store import iter_entries
from law import State, apply
from law.ledger import GENESIS_PREV_HASH, Entry, all_resources_balance, as_accepted, recompute_hash
from law.state import inconsistency

PROBLEMS_REPORTED_MAX = 1_000


@dataclass(frozen=True, slots=True)
class Problem:
    where: str  # "seq 12", "world_state energy@solar:main", "offset 40"
    reason: str  # machine-readable: CHAIN_BROKEN, HASH_MISMATCH, SEQ_GAP, ...
    detail: str


@dataclass
class Report:
    head_seq: int = -1
    head_hash: bytes = GENESIS_PREV_HASH
    entries: int = 0
    problems: list[Problem] = field(default_factory=list)
    state: State = field(default_factory=State)

    def add(self, where: str, reason: str, detail: str) -> None:
        if len(self.problems) < PROBLEMS_REPORTED_MAX:
            self.problems.append(Problem(where, reason, detail))

    @property
    def ok(self) -> bool:
        return not self.problems


def entry_problems(entry: Entry, expected_seq: int, prev_hash: bytes, last_offset: int) -> list[tuple[str, str]]:
    """Everything wrong with one stored entry given what came before it."""
    found = []
    if entry.seq != expected_seq:
        found.append(("SEQ_GAP", f"expected seq {expected_seq}, found {entry.seq}"))
    if entry.prev_hash != prev_hash:
        found.append(
            ("CHAIN_BROKEN", f"prev_hash {entry.prev_hash.hex()[:16]}… != previous hash {prev_hash.hex()[:16]}…")
        )
    if recompute_hash(entry) != entry.hash:
        found.append(("HASH_MISMATCH", "stored hash does not match the entry's content"))
    if entry.source_offset <= last_offset:
        found.append(("OFFSET_ORDER", f"offset {entry.source_offset} not after {last_offset}"))
    if not all_resources_balance(entry.postings):
        found.append(("NOT_CONSERVED", "postings do not sum to zero per resource"))
    return found


def walk(conn: psycopg.Connection[Any], report: Report | None = None, from_seq: int = 0) -> Report:
    """Fold the ledger while checking every entry; bad entries are reported and skipped."""
    report = report or Report()
    expected, prev_hash, last_offset = from_seq, report.head_hash, -1
    for entry in iter_entries(conn, from_seq):
        report.entries += 1
        found = entry_problems(entry, expected, prev_hash, last_offset)
        accepted = as_accepted(entry)
        if not found and (conflict := inconsistency(report.state, accepted)) is not None:
            found.append(("FOLD_INCONSISTENT", f"cannot follow the entries before it: {conflict}"))
        for reason, detail in found:
            report.add(f"seq {entry.seq}", reason, detail)
        if not found:
            apply(report.state, accepted)
        # Continue the chain from what is stored, so one bad row yields one report, not a cascade.
        expected, prev_hash, last_offset = entry.seq + 1, entry.hash, entry.source_offset
        report.head_seq, report.head_hash = entry.seq, entry.hash
    return report


def compare_world_state(conn: psycopg.Connection[Any], state: State, report: Report) -> None:
    cached = {(a, r): b for a, r, b in conn.execute("SELECT account, resource, balance FROM world_state")}
    conn.commit()
    for key in sorted(set(cached) | set(state.balances)):
        folded, stored = state.balances.get(key, 0), cached.get(key, 0)
        if folded != stored:
            report.add(f"world_state {key[1]}@{key[0]}", "CACHE_MISMATCH", f"cache {stored}, fold of ledger {folded}")


def check_offsets(conn: psycopg.Connection[Any], report: Report) -> None:
    """Every offset below the stored position is a ledger entry or a rejection, never both or neither."""
    row = conn.execute(
        "WITH decided AS (SELECT source_offset FROM ledger UNION ALL SELECT source_offset FROM rejections) "
        "SELECT count(*), count(DISTINCT source_offset), coalesce(max(source_offset), -1) FROM decided"
    ).fetchone()
    position = conn.execute("SELECT coalesce(max(next_offset), 0) FROM consumer_position").fetchone()
    conn.commit()
    assert row is not None and position is not None
    total, distinct, highest = row
    if total != distinct:
        report.add("offsets", "DECIDED_TWICE", f"{total - distinct} offsets are both an entry and a rejection")
    if distinct and highest + 1 != distinct:
        report.add(
            "offsets", "OFFSET_MISSING", f"{highest + 1 - distinct} offsets below {highest + 1} have no decision"
        )
    if position[0] and position[0] != highest + 1:
        report.add("offsets", "POSITION_MISMATCH", f"stored position {position[0]}, decided up to {highest + 1}")


def check_orphan_postings(conn: psycopg.Connection[Any], report: Report) -> None:
    """Postings must belong to a ledger entry: orphans mean an entry row was removed."""
    rows = conn.execute(
        "SELECT DISTINCT p.seq FROM postings p LEFT JOIN ledger l ON l.seq = p.seq WHERE l.seq IS NULL "
        "ORDER BY p.seq LIMIT %s",
        (PROBLEMS_REPORTED_MAX,),
    ).fetchall()
    conn.commit()
    for (seq,) in rows:
        report.add(f"seq {seq}", "ORPHAN_POSTINGS", "postings exist for a seq with no ledger entry")


def verify(database_url: str) -> Report:
    with psycopg.connect(database_url) as conn:
        report = walk(conn)
        compare_world_state(conn, report.state, report)
        check_offsets(conn, report)
        check_orphan_postings(conn, report)
    return report
