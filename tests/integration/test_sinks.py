"""The sinks end to end: real Kafka, real PostgreSQL, ``python -m gridgov.cli sinks`` as a subprocess, and local
stand-ins that speak Linear's GraphQL and Discord's webhook formats (with their limits and rate limits).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from connectors.kafka_admin import admin_client, ensure_acls, ensure_topics, namespace_grants
from connectors.kafka_io import send_proposals
from core import config
from core.config import Settings
from schemas.records import AlertRecord, IncidentRecord, Record, RejectionRecord
from streams.validator import open_validator
from streams.workload import Workload
from tests.conftest import broker_settings, grid_settings, own_kafka_env
from tests.integration.test_validator import SECRET
from tests.standins.discord_server import DiscordStandIn
from tests.standins.linear_server import LinearStandIn
from tests.support.records import sample_rejection

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_TIMEOUT_S = 30
WAIT_TIMEOUT_S = 30
POLL_INTERVAL_S = 0.05
STOP_TIMEOUT_S = 20
# retry and batching bounds shrunk so failure stretches take a second, not a minute
FAST_SINK_ENV = {
    "GRID_SINK_RETRY_ATTEMPTS": "4",
    "GRID_SINK_BACKOFF_BASE_S": "0.05",
    "GRID_SINK_BACKOFF_CAP_S": "0.4",
    "GRID_SINK_STALL_PROBE_S": "0.3",
    "GRID_SINK_LINGER_S": "0.3",
    "GRID_SINK_BATCH_AGE_MAX_S": "1.0",
}
ALERT_ID_IN_FIELD = re.compile(r"`(alert-[^`]+)`")
TOTAL_IN_COMMENT = re.compile(r"\*\*(\d+)\*\* in total")


# --- topics and records ---------------------------------------------------------------------------


def create_topics(bootstrap: str, prefix: str) -> None:
    """The sinks' input topics, with the grants of the real ones (``ensure_topics`` gives rejections one partition)."""
    settings = broker_settings(bootstrap).replace(topic_prefix=prefix)
    admin = admin_client(settings.kafka("admin"))
    topics = [
        NewTopic(f"{prefix}.rejections", 2, 1),
        NewTopic(f"{prefix}.incidents", 1, 1),
        NewTopic(f"{prefix}.alerts", 1, 1),  # one partition: the alerts' order is defined
    ]
    for future in admin.create_topics(topics, operation_timeout=ADMIN_TIMEOUT_S).values():
        future.result(timeout=ADMIN_TIMEOUT_S)
    if settings.kafka_sasl:
        ensure_acls(admin, namespace_grants(settings))


def produce(bootstrap: str, topic: str, records: list[tuple[str, Record]]) -> None:
    # as the validator, the only principal allowed to write these topics
    producer = Producer(broker_settings(bootstrap).kafka("validator").config(**{"enable.idempotence": True}))
    for key, record in records:
        producer.produce(topic, key=key.encode(), value=record.model_dump_json().encode())
    assert producer.flush(ADMIN_TIMEOUT_S) == 0


def rejection(
    offset: int, reason: str, agent: str, kind: str, rationale: str = "cheaper than waiting"
) -> RejectionRecord:
    return sample_rejection(offset, reason, agent, kind, rationale, tick=offset // 10)


def rejections(bootstrap: str, prefix: str, offsets: range, reason: str, agent: str, kind: str) -> None:
    produce(bootstrap, f"{prefix}.rejections", [(f"rej:{o}", rejection(o, reason, agent, kind)) for o in offsets])


def alert(n: int, kind: str = "rejection_spike", severity: str = "critical", detail: str = "") -> AlertRecord:
    return AlertRecord(
        alert_id=f"alert-{n}",
        kind=kind,
        severity=severity,
        title=f"{kind} #{n}",
        detail=detail or f"{n} rejections in the last minute",
        seq=n,
        telemetry={"rejections_per_min": 100 + n},
        validator_version="law-1.4.0",
        policy_version=7,
    )


def alerts(bootstrap: str, prefix: str, numbers: range, **fields: str) -> None:
    produce(bootstrap, f"{prefix}.alerts", [(f"alert-{n}", alert(n, **fields)) for n in numbers])


# --- the sink process -----------------------------------------------------------------------------


def sink_env(
    kafka: str, database: str, prefix: str, home: Path, linear: LinearStandIn | None, discord: DiscordStandIn | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LINEAR_API_KEY", "LINEAR_TEAM_ID", "DISCORD_WEBHOOK_URL")}
    env.update(FAST_SINK_ENV)
    # the sinks' one database role, as compose gives it: not the owner's URL
    sinks_url = config.load().replace(database_url_external=database).sinks_database_url
    env.pop("GRID_DATABASE_URL", None)
    env.update(
        GRID_KAFKA_BOOTSTRAP=kafka, GRID_SINKS_DATABASE_URL=sinks_url, GRID_TOPIC_PREFIX=prefix, GRID_HOME=str(home)
    )
    env.update(own_kafka_env(kafka, "sinks"))
    if linear is not None:
        env.update(LINEAR_API_KEY=linear.api_key, LINEAR_TEAM_ID=linear.team_id, GRID_LINEAR_URL=linear.url)
    if discord is not None:
        env.update(DISCORD_WEBHOOK_URL=discord.webhook_url)
    return env


@contextmanager
def sink_process(env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gridgov.cli", "sinks", *args],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_once(env: dict[str, str], log: Path) -> None:
    with sink_process(env, log, "run", "--once") as process:
        assert process.wait(WAIT_TIMEOUT_S + 30) == 0, log.read_text()[-3000:]


def wait_until(
    condition: Callable[[], bool], what: str, log: Path, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            break
        time.sleep(POLL_INTERVAL_S)
    pytest.fail(f"not reached: {what}\n--- sink log ---\n{log.read_text()[-4000:]}")


def alert_ids(messages: list[dict]) -> list[str]:
    return [
        m
        for message in messages
        for embed in message.get("embeds", [])
        for f in embed.get("fields", [])
        for m in ALERT_ID_IN_FIELD.findall(f["value"])
    ]


def comment_totals(issue_comments: list[dict[str, str]]) -> list[int]:
    return [int(TOTAL_IN_COMMENT.search(c["body"])[1]) for c in issue_comments]


def assert_rate_limits_honoured(requests: list) -> None:
    """Every request after a rate limit (429, or Linear's 400 RATELIMITED) waited the ``retry_after`` it got."""
    for before, after in itertools.pairwise(requests):
        if before.retry_after_s is not None:
            assert after.arrived_s - before.arrived_s >= before.retry_after_s - 0.01, (before, after)


@pytest.fixture
def topics(kafka_bootstrap: str, topic_prefix: str) -> str:
    create_topics(kafka_bootstrap, topic_prefix)
    return topic_prefix


# --- tests ----------------------------------------------------------------------------------------


def test_a_burst_for_two_conflict_keys_files_two_issues_then_comments(
    kafka_bootstrap: str, fresh_database: str, topics: str, tmp_path: Path
) -> None:
    log = tmp_path / "sink.log"
    with LinearStandIn() as linear, DiscordStandIn() as discord:
        env = sink_env(kafka_bootstrap, fresh_database, topics, tmp_path, linear, discord)
        rejections(kafka_bootstrap, topics, range(0, 30), "INSUFFICIENT_BALANCE", "agent-a", "transfer")
        rejections(kafka_bootstrap, topics, range(30, 50), "PRICE_CEILING", "agent-b", "offer")
        with sink_process(env, log, "run") as process:
            wait_until(lambda: len(linear.snapshot()[0]) == 2, "two issues", log, process)
            rejections(kafka_bootstrap, topics, range(50, 55), "INSUFFICIENT_BALANCE", "agent-a", "transfer")
            rejections(kafka_bootstrap, topics, range(55, 58), "PRICE_CEILING", "agent-b", "offer")
            wait_until(
                lambda: sorted(max(comment_totals(i.comments), default=0) for i in linear.snapshot()[0]) == [23, 35],
                "comments with the new totals",
                log,
                process,
            )
        issues, _ = linear.snapshot()
    assert len(issues) == 2
    by_title = {i.title.split(" (")[0]: i for i in issues}
    balance = by_title["INSUFFICIENT_BALANCE: agent-a on transfer"]
    assert "**30** proposal(s)" in balance.description and "validator `law-1.4.0` · policy v7" in balance.description
    assert "cheaper than waiting" in balance.description and "/rejections?conflict=" in balance.description
    assert "Source offsets: 0 … 29" in balance.description
    for issue, total in ((balance, 35), (by_title["PRICE_CEILING: agent-b on offer"], 23)):
        totals = comment_totals(issue.comments)
        assert totals == sorted(set(totals)) and totals[-1] == total  # in order, no repeats


def test_failures_and_rate_limits_deliver_everything_once_in_order_after_waiting(
    kafka_bootstrap: str, fresh_database: str, topics: str, tmp_path: Path
) -> None:
    log = tmp_path / "sink.log"
    with LinearStandIn() as linear, DiscordStandIn(bucket_size=2, bucket_window_s=0.6) as discord:
        env = sink_env(kafka_bootstrap, fresh_database, topics, tmp_path, linear, discord)
        linear.fail(500, 3)
        linear.rate_limit(2, 0.4)
        linear.limit_budget(4, 0.8)  # then: 4 requests, the last saying "0 remaining, reset in 0.8 s"
        discord.fail(502, 2)
        discord.rate_limit(1, 0.5)
        with sink_process(env, log, "run") as process:
            for burst in range(4):
                base = burst * 10
                rejections(kafka_bootstrap, topics, range(base, base + 6), "NOT_OWNER", "agent-c", "transfer")
                rejections(kafka_bootstrap, topics, range(base + 6, base + 10), "EXPIRED", "agent-d", "accept")
                alerts(kafka_bootstrap, topics, range(burst * 5, burst * 5 + 5), kind="breaker_trip")
                time.sleep(0.5)  # separate bursts: each is its own batch, so there are comments and several messages
            wait_until(lambda: len(alert_ids(discord.snapshot()[0])) >= 20, "20 alerts on Discord", log, process)
            wait_until(
                lambda: (
                    sum(max(comment_totals(i.comments), default=len(i.comments)) for i in linear.snapshot()[0]) == 40
                ),
                "all 40 rejections counted on Linear",
                log,
                process,
            )
        issues, linear_requests = linear.snapshot()
        messages, discord_requests = discord.snapshot()
    assert len(issues) == 2
    for issue in issues:
        totals = comment_totals(issue.comments)
        assert totals == sorted(set(totals)), totals
    assert alert_ids(messages) == [f"alert-{n}" for n in range(20)]  # each once, in order
    assert [r.status for r in linear_requests][:5] == [500, 500, 500, 400, 400]
    assert_rate_limits_honoured(linear_requests)
    assert linear.violations == 0  # the budget headers were read: never a request before the reset
    spent = next(i for i, r in enumerate(linear_requests) if r.remaining == 0)
    assert linear_requests[spent + 1].arrived_s - linear_requests[spent].arrived_s >= 0.8 - 0.01
    assert_rate_limits_honoured(discord_requests)
    assert discord.violations == 0  # the bucket headers were read: never a request into an empty bucket
    assert len(messages) < 20  # bursts were coalesced
    # Linear ran out of retries once (three 500s, then a 429): the stall was reported through Discord
    assert any(e["title"] == "sink_failure: linear sink stalled" for m in messages for e in m["embeds"])


def test_sigkill_mid_delivery_then_restart_delivers_nothing_twice_and_loses_nothing(
    kafka_bootstrap: str, fresh_database: str, topics: str, tmp_path: Path
) -> None:
    log = tmp_path / "sink.log"
    with LinearStandIn() as linear, DiscordStandIn() as discord:
        env = sink_env(kafka_bootstrap, fresh_database, topics, tmp_path, linear, discord)
        for index, agent in enumerate(("agent-e", "agent-f", "agent-g")):
            rejections(kafka_bootstrap, topics, range(index * 10, index * 10 + 10), "SELF_TRADE", agent, "accept")
        produce(kafka_bootstrap, f"{topics}.incidents", [("inc-1", incident("inc-1"))])
        alerts(kafka_bootstrap, topics, range(0, 8))
        # Linear creates the issue but the answer never reaches the sink; Discord never sees its request
        linear_parked = linear.hold("issueCreate", after_apply=True)
        discord_parked = discord.hold(after_apply=False)
        with sink_process(env, log, "run") as process:
            wait_until(
                lambda: linear_parked.is_set() and discord_parked.is_set(), "both requests in flight", log, process
            )
            process.send_signal(signal.SIGKILL)
            process.wait()
        linear.release()
        discord.release()
        with sink_process(env, log, "run") as process:
            wait_until(
                lambda: len(linear.snapshot()[0]) == 4 and len(alert_ids(discord.snapshot()[0])) >= 8,
                "all delivered",
                log,
                process,
            )
            rejections(kafka_bootstrap, topics, range(30, 33), "SELF_TRADE", "agent-e", "accept")
            wait_until(
                lambda: any(i.comments for i in linear.snapshot()[0]), "a comment on the first issue", log, process
            )
            time.sleep(1.0)  # anything repeated would have arrived by now
        issues, _ = linear.snapshot()
        messages, _ = discord.snapshot()
    assert sorted(i.title for i in issues) == sorted({i.title for i in issues}) and len(issues) == 4
    assert [comment_totals(i.comments) for i in issues if i.comments] == [[13]]
    assert sorted(alert_ids(messages)) == sorted(f"alert-{n}" for n in range(8))
    with psycopg.connect(fresh_database) as conn:
        pending = conn.execute("SELECT count(*) FROM sink_deliveries WHERE state = 'pending'").fetchone()
    assert pending == (0,)


def incident(incident_id: str) -> IncidentRecord:
    return IncidentRecord(
        incident_id=incident_id,
        kind="breaker_trip",
        title="Breaker tripped: feeder 3 overload",
        detail="line load 131% for 3 ticks",
        seq=42,
        telemetry={"load_pct": 131},
        validator_version="law-1.4.0",
        policy_version=7,
    )


def test_a_storm_of_oversized_alerts_becomes_few_messages_within_discords_limits(
    kafka_bootstrap: str, fresh_database: str, topics: str, tmp_path: Path
) -> None:
    log = tmp_path / "sink.log"
    with DiscordStandIn() as discord:
        env = sink_env(kafka_bootstrap, fresh_database, topics, tmp_path, None, discord)
        # All 300 are in Kafka before the sink starts; a linger well above the time it takes to read
        # them makes them one batch however loaded the machine is, so the count below is exact.
        env.update(GRID_SINK_LINGER_S="1.5", GRID_SINK_BATCH_AGE_MAX_S="30")
        alerts(kafka_bootstrap, topics, range(0, 150), kind="replay_anomaly", severity="warning", detail="x" * 4000)
        alerts(kafka_bootstrap, topics, range(150, 300), kind="rejection_spike", detail="y" * 4000)
        run_once(env, log)
        messages, requests = discord.snapshot()
    assert [r.status for r in requests] == [200]  # one request, and the stand-in found it within Discord's limits
    (message,) = messages
    assert message["content"] == "**300 alerts** (150 critical, 150 warning)"
    # An embed per kind, the critical one first, each counting its 150 alerts.
    assert [e["title"].split(":")[0] for e in message["embeds"]] == ["rejection_spike ×150", "replay_anomaly ×150"]


def test_without_credentials_the_outbox_fills_then_drains_when_they_arrive(
    kafka_bootstrap: str, fresh_database: str, topics: str, tmp_path: Path
) -> None:
    log = tmp_path / "sink.log"
    rejections(kafka_bootstrap, topics, range(0, 5), "POLICY_CAP", "agent-h", "offer")
    alerts(kafka_bootstrap, topics, range(0, 3))
    offline = sink_env(kafka_bootstrap, fresh_database, topics, tmp_path, None, None)
    run_once(offline, log)
    assert "writing what it would send to the outbox" in log.read_text()
    lines = [orjson.loads(line) for line in (tmp_path / "outbox" / "linear.jsonl").read_bytes().splitlines()]
    assert [line["operation"] for line in lines] == ["issue"]
    status = subprocess.run(
        [sys.executable, "-m", "gridgov.cli", "sinks", "status"],
        env=offline,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "offline (outbox)" in status.stdout
    with LinearStandIn() as linear, DiscordStandIn() as discord:
        run_once(sink_env(kafka_bootstrap, fresh_database, topics, tmp_path, linear, discord), log)
        issues, _ = linear.snapshot()
        messages, _ = discord.snapshot()
    assert len(issues) == 1 and "**5** proposal(s)" in issues[0].description
    assert alert_ids(messages) == ["alert-0", "alert-1", "alert-2"]


HOSTILE_TEXT = "![x](http://evil.example/p.png) [click](http://evil.example) @everyone <b>#x</b> ```"
UNSIGNED_COUNT = 1_000


def unsigned_flood(settings: Settings) -> None:
    """A genesis, then 1,000 unsigned messages, each claiming another agent name, with markdown in every
    free field the envelope has, decided by the real validator and relayed to the rejections topic."""
    flood = [Workload(SECRET, agent_count=2, seed=3).genesis()]
    for i in range(UNSIGNED_COUNT):
        envelope = {
            "v": 1, "id": f"md-{i}", "agent": f"claimed-{i}", "nonce": 1, "tick": 0, "expires_tick": 5,
            "body": {"kind": "transfer", "from_account": "agent000:main", "to_account": "agent001:main",
                     "resource": "energy", "quantity": 1, "memo": HOSTILE_TEXT},
            "provenance": {"source": "gemini", "model": HOSTILE_TEXT[:80], "rationale": HOSTILE_TEXT},
            "sig": "0" * 64,
        }  # fmt: skip
        flood.append(orjson.dumps(envelope))
    flood.append(orjson.dumps({"v": 1, "id": "md-field", HOSTILE_TEXT: 1}))  # a hostile field name
    send_proposals(settings, flood)
    open_validator(settings, SECRET, version="law-1.4.0").run(threading.Event(), idle_exit_s=1.0)


def test_a_flood_of_unsigned_messages_with_markdown_opens_few_issues_with_inert_text(
    kafka_bootstrap: str, fresh_database: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = topic_prefix  # the validator's own topics, as `gridgov topics` makes them
    settings = grid_settings(kafka_bootstrap, fresh_database, topics)
    ensure_topics(settings)
    unsigned_flood(settings)
    log = tmp_path / "sink.log"
    with LinearStandIn() as linear:
        run_once(sink_env(kafka_bootstrap, fresh_database, topics, tmp_path, linear, None), log)
        issues, _ = linear.snapshot()
    titles = sorted(i.title.split(" (")[0] for i in issues)
    assert titles == ["MALFORMED: unauthenticated on -", "UNKNOWN_AGENT: unauthenticated on -"], titles
    text = "\n".join(f"{i.title}\n{i.description}\n" + "\n".join(c["body"] for c in i.comments) for i in issues)
    assert "claimed-" not in text and "evil.example" not in text.replace("evil\\.example", "")
    for opener in ("![", "](http://evil", "<b>", "@everyone"):
        assert opener not in text
