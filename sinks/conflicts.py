"""Group rejections into conflicts: what one Linear issue is about.

The board wants systemic conflicts, not a ticket per rejection. A conflict is identified by
``(reason_code, agent, proposal kind)`` within a tumbling window:

- ``reason_code`` names the rule of the law that objects;
- ``agent`` names who keeps running into it: one misbehaving or mis-prompted agent is one conflict,
  with one owner and one fix, and a rule that trips many agents shows up as many issues with the same
  reason on the board, which is itself the signal that the rule (or the policy) is the problem;
- ``kind`` separates failures that share a reason but not a cause: ``INSUFFICIENT_BALANCE`` on
  ``transfer`` is budgeting, on ``accept`` it is offer matching.

Deliberately not in the key: ``field`` and ``detail`` (free text carrying amounts and ids, which would
split one conflict into hundreds), ``tick``, and ``policy_version`` (a conflict that survives a policy
change should stay in its issue; every comment states the versions in force).

The window is tumbling, ``CONFLICT_WINDOW_S`` (one UTC day) on the Kafka record timestamp, rather than
sliding or gap-based, so that a record's conflict is a pure function of the record: a restart, a
replay or another interleaving of partitions maps every rejection to the same ``conflict_id``, which is
what lets the conflict id serve as a delivery id. A conflict still alive the next day opens a fresh
issue, which keeps the board about what is happening now.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.records import RejectionRecord

CONFLICT_WINDOW_S = 24 * 3600
MISSING_PART = "-"  # kind absent, e.g. a MALFORMED proposal that did not parse
UNAUTHENTICATED = "unauthenticated"  # no agent: the sender's claim was never verified


@dataclass(frozen=True, slots=True)
class ConflictKey:
    reason_code: str
    agent: str
    kind: str

    @classmethod
    def of(cls, record: RejectionRecord) -> ConflictKey:
        """An unauthenticated rejection has no agent (``core.outgoing``): all of them with one reason
        make one conflict, so a flood of messages claiming a thousand names opens one issue."""
        return cls(record.reason_code, record.agent or UNAUTHENTICATED, record.kind or MISSING_PART)

    def label(self) -> str:
        return f"{self.reason_code} · {self.agent} · {self.kind}"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejection as the sink saw it: the record and where it sat on the topic."""

    record: RejectionRecord
    partition: int
    offset: int
    timestamp_s: float


@dataclass(frozen=True, slots=True)
class Conflict:
    """The rejections of one batch that share a conflict, in topic order."""

    conflict_id: str
    key: ConflictKey
    window_start: datetime
    rejections: tuple[Rejection, ...]

    @property
    def first_source_offset(self) -> int:
        return min(r.record.source_offset for r in self.rejections)

    @property
    def last_source_offset(self) -> int:
        return max(r.record.source_offset for r in self.rejections)


# Where conflicts go once a window has opened its cap of issues: one issue that counts the rest.
OVERFLOW_KEY = ConflictKey("CONFLICTS_OVER_CAP", "many agents", "any kind")


def overflow(conflict: Conflict) -> Conflict:
    """``conflict``'s rejections, folded into its window's overflow conflict."""
    return Conflict(
        conflict_id(OVERFLOW_KEY, conflict.window_start), OVERFLOW_KEY, conflict.window_start, conflict.rejections
    )


def window_start(timestamp_s: float, window_s: int = CONFLICT_WINDOW_S) -> datetime:
    return datetime.fromtimestamp(int(timestamp_s) // window_s * window_s, tz=UTC)


def conflict_id(key: ConflictKey, start: datetime) -> str:
    """Stable id: the same key in the same window always gives the same id, on any machine."""
    text = "\x1f".join((key.reason_code, key.agent, key.kind, start.isoformat()))
    return "c-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def group(rejections: Iterable[Rejection], window_s: int = CONFLICT_WINDOW_S) -> list[Conflict]:
    """Conflicts in order of their first rejection; each keeps its rejections in arrival order."""
    members: dict[tuple[ConflictKey, datetime], list[Rejection]] = {}
    for rejection in rejections:
        key = ConflictKey.of(rejection.record)
        members.setdefault((key, window_start(rejection.timestamp_s, window_s)), []).append(rejection)
    return [Conflict(conflict_id(key, start), key, start, tuple(batch)) for (key, start), batch in members.items()]
