"""Prometheus metrics of the validator (served by ``gridgov validator --metrics-port``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DECISIONS = Counter("grid_decisions_total", "Proposals decided, by decision and reason code", ["decision", "reason"])
REDELIVERED = Counter("grid_redelivered_total", "Messages skipped because the database had already decided them")
BATCH_SIZE = Histogram(
    "grid_batch_size", "Proposals decided per batch", buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000)
)
COMMIT_SECONDS = Histogram(
    "grid_commit_seconds",
    "Latency of the per-batch Postgres transaction",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
LAG = Gauge("grid_consumer_lag", "Proposals on the topic not yet decided (high watermark - next offset)")
HALTED = Gauge(
    "grid_validator_halted", "1 once the validator halted on a batch the store refused, by constraint", ["constraint"]
)
HEAD_SEQ = Gauge("grid_ledger_head_seq", "Sequence number of the ledger head")


def count_decisions(accepted: int, rejected_by_reason: dict[str, int]) -> None:
    """Once per batch, not per proposal: label lookups cost more than the law's own checks."""
    DECISIONS.labels("accepted", "").inc(accepted)
    for reason, count in rejected_by_reason.items():
        DECISIONS.labels("rejected", reason).inc(count)
