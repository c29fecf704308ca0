"""Prometheus metrics of the sinks, labelled by sink (``linear`` or ``discord``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DELIVERED = Counter("gridgov_sink_delivered", "Messages the outside service confirmed", ["sink"])
RETRIED = Counter("gridgov_sink_retried", "Attempts repeated after a transient failure", ["sink"])
FAILED = Counter("gridgov_sink_failed", "Deliveries that ran out of retries or were refused", ["sink"])
UNDECODABLE = Counter("gridgov_sink_undecodable", "Topic records that did not match their schema", ["sink"])
BACKLOG = Gauge("gridgov_sink_backlog", "Planned deliveries not yet confirmed (the outbox)", ["sink"])
STALLED = Gauge("gridgov_sink_stalled", "1 while the sink is stuck on a delivery it cannot complete", ["sink"])
OFFLINE = Gauge("gridgov_sink_offline", "1 while the sink has no credentials and only fills the outbox", ["sink"])
