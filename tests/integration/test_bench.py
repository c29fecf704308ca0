"""The bench's own machinery on the real broker and database, small: a scratch run leaves no topic and
no database behind, and the latency measurement counts the window after its warm-up."""

from __future__ import annotations

import psycopg

from connectors.kafka_admin import admin_client
from streams.bench import (
    LATENCY_WARMUP_S,
    bench_workload,
    delete_scratch_topics,
    latency,
    run_validator,
    scratch,
    send_workload,
)
from tests.conftest import broker_settings

RATE_PER_S = 2_000
WINDOW_S = 1.0


def test_a_scratch_run_measures_latency_and_leaves_no_topic_or_database_behind(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = broker_settings(kafka_bootstrap).replace(database_url_external=database_url)
    w = bench_workload()
    with scratch(settings) as s:
        prefix, scratch_url = s.topic_prefix, s.database_url
        total = send_workload(s, w, 1_000)
        run_validator(s, total)
        measured = latency(s, w, RATE_PER_S, WINDOW_S, total)
    # The window is what was produced after the warm-up: about a second's worth (the pacing may lag
    # and catch up), never the warm-up's too.
    offered = int(RATE_PER_S * (LATENCY_WARMUP_S + WINDOW_S))
    assert RATE_PER_S * WINDOW_S / 2 <= measured.count < offered - RATE_PER_S * LATENCY_WARMUP_S / 2
    assert 0 <= measured.p50_ms <= measured.p99_ms <= measured.p999_ms
    topics = admin_client(settings.kafka("admin")).list_topics(timeout=30).topics
    assert not [t for t in topics if t.startswith(f"{prefix}.")]
    name = scratch_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (0,)


def test_a_scratch_run_that_keeps_its_topics_names_them_for_deleting_after_the_measurements(
    kafka_bootstrap: str, database_url: str
) -> None:
    settings = broker_settings(kafka_bootstrap).replace(database_url_external=database_url)
    kept: list[str] = []
    with scratch(settings, kept) as s:
        prefix = s.topic_prefix
    assert kept == [prefix]
    admin = admin_client(settings.kafka("admin"))
    assert [t for t in admin.list_topics(timeout=30).topics if t.startswith(f"{prefix}.")]
    delete_scratch_topics(settings, kept)
    assert not [t for t in admin.list_topics(timeout=30).topics if t.startswith(f"{prefix}.")]
