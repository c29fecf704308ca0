"""n8n and the shipped workflows end to end: a real n8n (installed once under GRID_HOME, started once per
session in a home of its own), the real broker, and the Linear and Discord stand-ins as its endpoints.

Records are published as the validator, the only principal that may write the topics n8n reads.
Without npm's registry the install fails, and so do these tests: they never skip.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from confluent_kafka import KafkaError, Producer

from connectors.kafka_admin import ensure_topics
from connectors.n8n_client import N8nApi
from core import config
from core.config import Settings
from core.outgoing import breaker_records
from gridgov.infra import n8n
from law.ledger import Entry
from tests.conftest import broker_settings, with_credentials
from tests.integration.test_kafka_security import delivery_errors, fetch_error
from tests.standins.discord_server import DiscordStandIn
from tests.standins.linear_server import LinearStandIn
from tests.support.records import sample_rejection

WAIT_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.2
PRODUCE_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 10.0
# the digest runs every few seconds here instead of daily, so a test sees it without waiting a day
DIGEST_EVERY_S = 5
DASHBOARD_URL = "http://console.grid.test:8501"
FORM_URL = re.compile(r"decide at (\S+/form-waiting/\d+)")
CRITICAL, DIGEST, CHECKPOINT = (
    "Grid: critical alerts to Discord and Linear",
    "Grid: daily digest of conflicts to Linear",
    "Grid: breaker trip human checkpoint",
)

T = TypeVar("T")


def wait_for(what: str, found: Callable[[], T | None], timeout_s: float = WAIT_TIMEOUT_S) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def free_port_pair() -> int:
    """A free port whose next one is free too: n8n's task runners connect to the next."""
    while True:
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port


@dataclass
class Grid:
    settings: Settings
    api: N8nApi
    discord: DiscordStandIn
    linear: LinearStandIn
    workflow_ids: dict[str, str]

    def publish(self, topic: str, key: str, value: bytes) -> None:
        producer = Producer(self.settings.kafka("validator").config())
        producer.produce(self.settings.topic(topic), key=key.encode(), value=value)
        assert producer.flush(PRODUCE_TIMEOUT_S) == 0

    def executions(self, workflow: str, status: str | None = None) -> list[dict[str, Any]]:
        return self.api.executions(self.workflow_ids[workflow], status)

    def execution_of(self, workflow: str, status: str, matches: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first execution of ``workflow`` in ``status`` whose data ``matches``, waiting for it."""

        def found() -> dict[str, Any] | None:
            details = (self.api.execution(e["id"]) for e in self.executions(workflow, status))
            return next((d for d in details if matches(d)), None)

        return wait_for(f"a {status} execution of {workflow!r}", found)


def trigger_message(execution: dict[str, Any]) -> Any:
    """The Kafka record that started an execution, as its trigger node output it."""
    run_data = execution["data"]["resultData"]["runData"]
    trigger = next(name for name in run_data if name.endswith("topic"))
    return run_data[trigger][0]["data"]["main"][0][0]["json"]["message"]


def n8n_home(tmp: Path) -> Path:
    """A home of its own for the test's n8n, with the grid's credentials and the install of GRID_HOME."""
    main = config.load()
    n8n.install(main)  # paid once, kept in GRID_HOME
    home = with_credentials(tmp)
    (home / "n8n").mkdir()
    (home / "n8n" / n8n.app_dir(main).name).symlink_to(n8n.app_dir(main))
    return home


@pytest.fixture(scope="module")
def grid(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    with DiscordStandIn() as discord, LinearStandIn() as linear:
        settings = broker_settings(kafka_bootstrap).replace(
            home=n8n_home(tmp_path_factory.mktemp("n8n-home")),
            topic_prefix=f"n8n{uuid.uuid4().hex[:8]}",
            n8n_port=free_port_pair(),
            linear_url=linear.url,
            linear_api_key=linear.api_key,
            linear_team_id=linear.team_id,
            discord_webhook_url=discord.webhook_url,
            dashboard_url=DASHBOARD_URL,
            n8n_digest_cron=f"*/{DIGEST_EVERY_S} * * * * *",
        )
        ensure_topics(settings)
        try:
            result = n8n.up(settings)
            with httpx.Client() as http:
                ids = {w["name"]: w["id"] for w in result["workflows"]}
                yield Grid(settings, n8n.api(settings, http), discord, linear, ids)
        finally:
            n8n.down(settings)


def warm_up(grid: Grid, workflows: tuple[str, ...]) -> None:
    """Publish info alerts until each alert workflow has run one: its consumer then reads from the end of
    the topic, where the test's records come next (a trigger joins at the end, not at the beginning)."""
    for _ in range(int(WAIT_TIMEOUT_S)):
        resume = alert_record(seq=1, opened=False)
        grid.publish("alerts", "breaker:1", resume)
        time.sleep(1.0)
        if all(grid.executions(w, "success") for w in workflows):
            return
    raise AssertionError(f"{workflows} never ran")


def alert_record(seq: int, opened: bool) -> bytes:
    """A breaker alert exactly as the validator publishes it (``core.outgoing``)."""
    entry = Entry(
        seq=seq, source_offset=seq + 100, proposal_id=f"p-{seq}", kind="meter", agent="meter", nonce=seq,
        tick=7, expires_tick=8, validator_version="law-test", policy_version=3, postings=(), effects_json="[]",
        proposal_json="{}", sig="", prev_hash=b"", hash=b"",
    )  # fmt: skip
    telemetry = {"critical_unmet_kwh": 1250, "reserve_kwh": 0, "hospital_unmet_ticks": 3}
    effect = {"t": "breaker", "open": opened, "reason": "hospital load unmet", "by": "law", "telemetry": telemetry}
    topic, _key, value = breaker_records(entry, effect)[0]
    assert topic == "alerts"
    return value


@pytest.fixture(scope="module")
def tripped(grid: Grid) -> dict[str, Any]:
    """A breaker trip at seq 42, published once the alert workflows are listening; its alert record."""
    warm_up(grid, (CRITICAL, CHECKPOINT))
    value = alert_record(seq=42, opened=True)
    grid.publish("alerts", "breaker:42", value)
    record: dict[str, Any] = json.loads(value)
    return record


def test_the_shipped_workflows_are_imported_and_active(grid: Grid) -> None:
    listed = {w["name"]: w["active"] for w in grid.api.workflows()}
    assert listed == {CRITICAL: True, DIGEST: True, CHECKPOINT: True}


def test_a_breaker_trip_becomes_one_discord_message_and_one_urgent_linear_issue(
    grid: Grid, tripped: dict[str, Any]
) -> None:
    execution = grid.execution_of(CRITICAL, "success", lambda e: trigger_message(e) == tripped)
    issues = wait_for("the Linear issue", lambda: grid.linear.snapshot()[1])
    [request] = issues
    assert (request.operation, request.authorization, request.status) == ("issueCreate", grid.linear.api_key, 200)
    issue = request.variables["input"]
    assert (issue["teamId"], issue["priority"], issue["title"]) == (
        grid.linear.team_id,
        1,
        "[breaker_trip] Circuit breaker tripped at tick 7 (seq 42)",
    )
    assert "| critical_unmet_kwh | 1250 |" in issue["description"]
    assert f"{DASHBOARD_URL}/?view=governance" in issue["description"]
    assert f"/executions/{execution['id']}" in issue["description"]
    alerts = [m for m in discord_payloads(grid) if m.get("embeds") and m["embeds"][0]["title"].startswith("breaker")]
    [alert] = alerts
    assert alert["allowed_mentions"] == {"parse": []}
    embed = alert["embeds"][0]
    assert embed["title"] == "breaker_trip: Circuit breaker tripped at tick 7 (seq 42)"
    assert embed["url"] == f"{DASHBOARD_URL}/?view=ledger&alert=breaker%3A42&seq=42"
    assert {f["name"]: f["value"] for f in embed["fields"]}["critical_unmet_kwh"] == "1250"


def discord_payloads(grid: Grid) -> list[dict[str, Any]]:
    return [r.payload for r in grid.discord.snapshot()[1] if r.status == 200]


def test_the_checkpoint_collects_a_decision_and_hands_the_signing_to_the_operator(
    grid: Grid, tripped: dict[str, Any]
) -> None:
    asked = wait_for(
        "the checkpoint's form link on Discord",
        lambda: [m for m in discord_payloads(grid) if "Human checkpoint for breaker:42" in m.get("content", "")],
    )
    match = FORM_URL.search(asked[0]["content"])
    assert match is not None
    form_url = match[1]
    # 1.123's list of executions leaves waiting ones out; the form's link names its execution
    waiting = grid.api.execution(form_url.rsplit("/", 1)[1])
    assert (waiting["status"], trigger_message(waiting)) == ("waiting", tripped)
    with httpx.Client(timeout=HTTP_TIMEOUT_S) as http:
        page = http.get(form_url)
        assert page.status_code == 200 and "critical_unmet_kwh = 1250" in page.text
        answer = {"field-0": "Resume the grid", "field-1": "alice", "field-2": "load restored"}
        submitted = http.post(form_url, files={k: (None, v) for k, v in answer.items()})
        assert submitted.status_code == 200, submitted.text
    grid.execution_of(CHECKPOINT, "success", lambda e: trigger_message(e) == tripped)
    [report] = [m for m in discord_payloads(grid) if m.get("content", "").startswith("alice decided")]
    assert "Resume the grid. Reason: load restored" in report["content"]
    assert "GRID_OPERATOR=alice gridgov breaker resume --reason 'load restored'" in report["content"]


def test_a_malformed_record_fails_its_execution_and_the_next_record_still_runs(grid: Grid) -> None:
    grid.publish("alerts", "junk", b"this is not an alert")
    for workflow in (CRITICAL, CHECKPOINT):
        failed = grid.execution_of(workflow, "error", lambda e: trigger_message(e) == "this is not an alert")
        error = failed["data"]["resultData"]["error"]
        assert error["description"] == "Malformed alert record"
        assert error["message"].startswith(f"not a JSON object, record on {grid.settings.topic('alerts')}")
    after = alert_record(seq=43, opened=False)
    grid.publish("alerts", "breaker:43", after)
    grid.execution_of(CRITICAL, "success", lambda e: trigger_message(e) == json.loads(after))


def test_the_digest_posts_one_comment_per_conflict(grid: Grid) -> None:
    before = len(grid.linear.snapshot()[1])
    # just after a digest ran: the three rejections are counted well before the next one
    wait_for("a digest tick", lambda: time.time() % DIGEST_EVERY_S < 1, DIGEST_EVERY_S + 1)
    for offset, reason in ((10, "INSUFFICIENT_BALANCE"), (11, "INSUFFICIENT_BALANCE"), (12, "BAD_SIGNATURE")):
        grid.publish("rejections", f"rej:{offset}", sample_rejection(offset, reason).model_dump_json().encode())
    requests = wait_for("the digest and its comments", lambda: linear_requests_after(grid, before, 3))
    assert [r.operation for r in requests] == ["issueCreate", "commentCreate", "commentCreate"]
    comments = [r.variables["input"]["body"] for r in requests[1:]]
    assert comments[0].startswith("**INSUFFICIENT_BALANCE**: agent-a on transfer: **2** rejection(s)")
    assert comments[1].startswith("**BAD_SIGNATURE**: agent-a on transfer: **1** rejection(s)")


def linear_requests_after(grid: Grid, before: int, count: int) -> list[Any] | None:
    requests = grid.linear.snapshot()[1][before:]
    return requests if len(requests) >= count else None


def test_n8n_reads_its_inputs_in_its_own_group_and_writes_nothing(grid: Grid, tripped: dict[str, Any]) -> None:
    s = grid.settings
    if not s.kafka_sasl:
        pytest.skip("a broker without authentication has no principals")
    n8n_kafka, own_group = s.kafka("n8n"), f"{s.topic_prefix}-n8n-probe"
    for topic in ("alerts", "proposals"):
        [error] = delivery_errors(n8n_kafka, s.topic(topic))
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, error)
    assert fetch_error(n8n_kafka, s.topic("alerts"), own_group) is None
