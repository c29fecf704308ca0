"""``replay``: rebuild a ledger from the proposals topic into another database and compare it with the
live one; or replay the same proposals under another version of the law and diff the outcomes.

Same law: a Validator runs in this process against the target database, under its own consumer group
(``replay-…``, reset to earliest through the admin API, as an operator would with Kafka's
``kafka-consumer-groups --reset-offsets``); its position in the fresh database starts at 0, so it
decides every offset again. Its derived records go to throwaway topics (``{prefix}.replay-….*``),
never to the live ones the sinks read. With the same law and the same version stamp, every entry's
hash, and so the head hash, must come out identical (``streams.replay_compare``).

Other law: the code at a git revision runs in its own process (``streams.other_law``), and the
outcomes are diffed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from connectors.kafka_admin import delete_group, delete_topics, ensure_topics, reset_group_offsets, watermarks
from connectors.migrate import apply_migrations
from connectors.progress import progress_bar
from connectors.readmodel.replay import entry_count, policy_version, stored_position
from core.config import Settings
from core.kafka_access import KafkaAccess
from streams.other_law import run_other_law
from streams.rehydrate import Anomaly, finish_run, new_run_id, raise_alerts, start_run
from streams.replay_compare import Comparison, LawDiff, Outcome, compare_ledgers, diff_laws
from streams.replay_errors import ReplayError
from streams.validator import ValidatorStalled, open_validator

STALL_S = 60.0  # no new offset decided for this long: the topic is shorter than the bound, or stuck


# --- settings whose derived topics are not the live ones -----------------------------------------


class ReplaySettings(Settings):
    """Reads the live proposals topic; publishes everything else under ``output_prefix``."""

    output_prefix: str = ""  # not a variable: set only by replay_settings

    def topic(self, name: str) -> str:
        return super().topic(name) if name == "proposals" else f"{self.output_prefix}.{name}"


def replay_settings(live: Settings, target_url: str, output_prefix: str) -> ReplaySettings:
    fields = {**live.model_dump(), "database_url_external": target_url}
    return ReplaySettings(**fields, output_prefix=output_prefix)


# --- bounds and targets --------------------------------------------------------------------------


def live_position(live_url: str, topic: str) -> int:
    """How far the live validator has decided ``topic``: its stored next offset."""
    position = stored_position(live_url, topic)
    if position is None:
        raise ReplayError(f"the live database has no position for {topic}: nothing was decided yet")
    return position


def _replayable_end(kafka: KafkaAccess, topic: str) -> int:
    """The topic's high watermark, once sure that retention removed none of the history a replay needs."""
    low, high = watermarks(kafka, topic)
    if low != 0:
        raise ReplayError(f"{topic} starts at offset {low}: retention removed history a replay needs")
    return high


def require_empty(target_url: str) -> None:
    """Refuse a target that already holds a ledger: a replay decides every offset from 0."""
    count = entry_count(target_url)
    if count:
        raise ReplayError(f"the target already holds {count} ledger entries: replay into a fresh database")


# --- same law, in this process -------------------------------------------------------------------


def run_same_law(live: Settings, target_url: str, to_offset: int, secret: bytes, version: str, run_id: str) -> None:
    """Decide offsets [0, to_offset) of the live proposals topic into ``target_url``."""
    group = f"gridgov-{run_id}"
    settings = replay_settings(live, target_url, f"{live.topic_prefix}.{run_id}")
    ensure_topics(settings)
    reset_group_offsets(settings.kafka("admin"), group, live.topic("proposals"), "earliest")
    validator = open_validator(settings, secret, group_id=group, version=version)
    try:
        with progress_bar(total=to_offset, desc="replay", unit="offset", unit_scale=True) as bar:
            # Beyond the bound is the live validator's future, not this replay's.
            validator.run_until(to_offset, STALL_S, progress=lambda done: bar.update(done - bar.n))
        validator.flush_relay()
    except ValidatorStalled as exc:
        raise ReplayError(f"{exc}: the topic is shorter than the bound, or stuck") from exc
    finally:
        validator.close()
        delete_group(settings.kafka("admin"), group)
        delete_topics(settings, settings.output_prefix)


# --- the command's work --------------------------------------------------------------------------


@dataclass
class ReplayResult:
    run_id: str
    to_offset: int
    seconds: float
    law: str | None  # None: the running code
    comparison: Comparison | None = None
    diff: LawDiff | None = None

    @property
    def ok(self) -> bool:
        return self.diff is not None or (self.comparison is not None and self.comparison.identical)


def replay(
    live: Settings,
    target_url: str,
    secret: bytes,
    version: str,
    to_offset: int | None = None,
    law: str | None = None,
) -> ReplayResult:
    """Replay offsets [0, to_offset) (default: the live position) into ``target_url`` and compare."""
    topic = live.topic("proposals")
    bound = live_position(live.database_url, topic) if to_offset is None else to_offset
    if bound > _replayable_end(live.kafka("admin"), topic):
        raise ReplayError(f"{topic} holds fewer than {bound} proposals")
    require_empty(target_url)  # also refuses the live database itself
    kind = "replay" if law is None else "counterfactual"
    run_id = new_run_id(kind)
    apply_migrations(live.database_url)
    with psycopg.connect(live.database_url) as conn:
        start_run(conn, run_id, kind)
        try:
            result = _run(live, target_url, secret, version, bound, law, run_id)
        except Exception as exc:
            finish_run(conn, run_id, [], 0, {"entries": 0, "ok": False, "error": str(exc)})
            raise
        anomalies = _anomalies(result)
        finish_run(conn, run_id, anomalies, len(anomalies), summary(result))
    if anomalies:
        raise_alerts(live, run_id, anomalies, policy_version(live.database_url))
    return result


def _run(
    live: Settings, target_url: str, secret: bytes, version: str, bound: int, law: str | None, run_id: str
) -> ReplayResult:
    started = time.perf_counter()
    if law is None:
        apply_migrations(target_url)
        run_same_law(live, target_url, bound, secret, version, run_id)
        result = ReplayResult(
            run_id, bound, 0.0, None, comparison=compare_ledgers(live.database_url, target_url, bound)
        )
    else:
        commit = run_other_law(live, target_url, bound, secret, law, run_id)
        result = ReplayResult(run_id, bound, 0.0, commit, diff=diff_laws(live.database_url, target_url, bound))
    result.seconds = time.perf_counter() - started
    return result


def _anomalies(result: ReplayResult) -> list[Anomaly]:
    c = result.comparison
    if c is None or c.divergence is None:
        return []  # identical, or only stamped by another version: no evidence of a fault
    return [Anomaly(c.divergence_seq, "REPLAY_DIVERGED", f"same-law replay of [0, {result.to_offset}): {c.divergence}")]


def summary(result: ReplayResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_id": result.run_id,
        "to_offset": result.to_offset,
        "seconds": round(result.seconds, 3),
        "law": result.law,
        "ok": result.ok,
    }
    if result.comparison is not None:
        c = result.comparison
        head = c.replay_head
        out |= {
            "entries": c.entries,
            "entries_per_s": round(c.entries / result.seconds) if result.seconds else None,
            "identical": c.identical,
            "divergence": c.divergence,
            "restamped_seq": c.restamped_seq,
            "live_version": c.live_version,
            "head_seq": head[0] if head else -1,
            "head_hash": head[1].hex() if head else None,
        }
    if result.diff is not None:
        d = result.diff
        out |= {
            "entries": d.offsets,
            "flipped": d.flipped_count,
            "reason_changed": d.reason_changed_count,
            "flips": [_pair(a, b) for a, b in d.flipped],
            "reasons_changed": [_pair(a, b) for a, b in d.reason_changed],
            "balance_differences": [list(b) for b in d.balances],
        }
    return out


def _pair(live: Outcome, other: Outcome) -> list[Any]:
    return [live.source_offset, live.proposal_id, live.verdict, live.detail, other.verdict, other.detail]
