"""A three-broker Kafka cluster loses the leader of ``proposals`` to SIGKILL while a producer sends and the
validator decides: both carry on, nothing is lost or duplicated, and the broker comes back into the ISR.

The cluster is the test's own (its own GRID_HOME and free ports, started by ``gridgov.infra.kafka`` like
`gridgov infra up --brokers 3`); only the shared PostgreSQL is used, through the usual fixtures.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from connectors import kafka_admin
from connectors.kafka_io import proposal_producer
from connectors.readmodel.ledger import audit_database
from core import config
from core.config import Settings
from core.process import poll_until, stop_child
from gridgov.infra import kafka as local_kafka
from streams.workload import Workload, synthetic_operator
from tests.conftest import TEST_SECRETS, with_credentials
from tests.integration.test_validator import SECRET, VERSION, stored
from tests.integration.test_validator_crash import decided_count
from tests.support.fold import fold

BROKER_COUNT = 3
PROPOSAL_COUNT = 10_000
SEND_RATE_PER_S = 400  # about 25 s of sending: the outage and the rejoin both happen while it goes on
SEND_TICK_S = 0.05
KILL_AT_FRACTION = 0.25  # of the proposals sent: the validator is deciding by then
PORT_SEARCH_ATTEMPTS = 50
PORT_SEARCH_LOW = 20_000  # above the ports services usually take
EPHEMERAL_LOW_DEFAULT = 32_768
# the controller fences a dead broker after broker.session.timeout.ms (9 s), then moves its leaderships
FAILOVER_TIMEOUT_S = 45.0
REJOIN_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 60.0
FLUSH_TIMEOUT_S = 60.0
# a bound on a validator the test failed to stop; the test stops it itself once everything is decided
VALIDATOR_IDLE_EXIT_S = 60
VALIDATOR_STOP_TIMEOUT_S = 30.0
METADATA_TIMEOUT_S = 10.0


def ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (Linux's default where it does not say)."""
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    return int(path.read_text().split()[0]) if path.exists() else EPHEMERAL_LOW_DEFAULT


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free ports on 127.0.0.1, below the ephemeral ports: a clustered
    broker binds its client port only once its quorum formed, and an outgoing connection (the brokers'
    own among them) could have been given it by then."""
    rng = random.Random()
    for _ in range(PORT_SEARCH_ATTEMPTS):
        base = rng.randrange(PORT_SEARCH_LOW, ephemeral_low() - count)
        if not any(local_kafka.port_taken(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports in {PORT_SEARCH_ATTEMPTS} tries")


@pytest.fixture
def cluster(tmp_path: Path, fresh_database: str) -> Iterator[Settings]:
    """A grid on a three-broker cluster of its own, stopped afterwards; its database is a fresh one."""
    home = with_credentials(tmp_path / "home")  # the shared PostgreSQL's role passwords
    base = free_port_run(2 * BROKER_COUNT)
    s = config.load().replace(
        home=home,
        kafka_bootstrap_external=None,
        kafka_port=base,
        kafka_controller_port=base + 1,
        kafka_brokers=BROKER_COUNT,
        kafka_sasl=True,
        kafka_username=None,
        kafka_password=None,
        topic_prefix=f"c{uuid.uuid4().hex[:8]}",
        database_url_external=fresh_database,
        founding_operators=",".join(synthetic_operator(secret).public_key for secret in TEST_SECRETS),
        key_secret=SECRET.hex(),
        validator_version=VERSION,
        log_level="WARNING",
    )
    # the jars are the shared ones: link them instead of fetching again
    local_kafka.root(s).mkdir(parents=True)
    local_kafka.libs_dir(s).symlink_to(local_kafka.libs_dir(config.load()))
    try:
        local_kafka.up(s)
        yield s
    finally:
        local_kafka.down(s)


@dataclass
class Sender:
    """Sends ``messages`` at a steady rate from a thread, as an agent would, counting what the cluster
    acknowledged (and at which offset) and every delivery that failed."""

    settings: Settings
    messages: list[bytes]
    sent: int = 0
    offsets: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unflushed: int = 0
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="sender", daemon=True)
        self.thread.start()

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            offset = msg.offset()
            assert offset is not None, "an acknowledged record has its offset"
            self.offsets.append(offset)

    def _run(self) -> None:
        producer = proposal_producer(self.settings.kafka("producer"))
        topic = self.settings.topic("proposals")
        per_tick = max(1, int(SEND_RATE_PER_S * SEND_TICK_S))
        started = time.monotonic()
        for tick, first in enumerate(range(0, len(self.messages), per_tick)):
            for raw in self.messages[first : first + per_tick]:
                producer.produce(topic, raw, on_delivery=self._delivered)
            self.sent = min(first + per_tick, len(self.messages))
            producer.poll(0)
            time.sleep(max(0.0, started + (tick + 1) * SEND_TICK_S - time.monotonic()))
        self.unflushed = producer.flush(FLUSH_TIMEOUT_S)

    def join(self, timeout_s: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the sender did not finish in time"


def validator_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """The real validator, configured as every grid process is: by the settings, in its environment."""
    cmd = [sys.executable, "-m", "gridgov.cli", "validator", "--metrics-port", "0"]
    cmd += ["--idle-exit-s", str(VALIDATOR_IDLE_EXIT_S)]
    with log.open("ab") as sink:
        return subprocess.Popen(cmd, env={**os.environ, **settings.as_env()}, stdout=subprocess.DEVNULL, stderr=sink)


def proposals_partition(settings: Settings) -> tuple[int, list[int]]:
    """(leader, in-sync replicas) of the proposals partition, as the cluster reports them now."""
    admin = kafka_admin.admin_client(settings.kafka("admin"))
    topic = settings.topic("proposals")
    partition = admin.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics[topic].partitions[0]
    return partition.leader, sorted(partition.isrs)


def test_losing_the_leader_broker_loses_and_duplicates_nothing(cluster: Settings, tmp_path: Path) -> None:
    s = cluster
    infos = kafka_admin.ensure_topics(s)
    assert {(i.replicas, i.min_insync_replicas) for i in infos} == {(3, 2)}
    w = Workload(SECRET, agent_count=20, seed=16)
    messages = [w.genesis()] + [m.raw for m in w.messages(PROPOSAL_COUNT - 1)]
    log = tmp_path / "validator.log"
    validator = validator_process(s, log)
    sender = Sender(s, messages)
    try:
        sender.start()
        poll_until(lambda: sender.sent >= KILL_AT_FRACTION * len(messages), 30, "a quarter of the proposals sent")
        leader, isr = proposals_partition(s)
        assert isr == [1, 2, 3]
        victim = next(node for node in local_kafka.nodes(s) if node.id == leader)
        victim_pid = local_kafka.running_pid(victim)
        assert victim_pid is not None
        sent_at_kill, decided_at_kill = sender.sent, decided_count(s)
        assert decided_at_kill > 0, "the validator was deciding before the kill"
        os.kill(victim_pid, signal.SIGKILL)
        killed_at = time.monotonic()

        # The controller fences the dead broker and moves the leadership. Until it has, a proposal decided
        # after the kill proves nothing: it may have reached the old leader's log just before it died.
        def failed_over() -> bool:
            try:
                new_leader, shrunk_isr = proposals_partition(s)
            except KafkaException:  # metadata asked of the dead broker: ask again
                return False
            return new_leader not in (leader, -1) and leader not in shrunk_isr

        leader_moved_s = poll_until(failed_over, FAILOVER_TIMEOUT_S, "the leadership moved off the dead broker")
        # Both carry on without it: proposals acknowledged by the new leader reach the validator and get decided.
        sent_on_new_leader = sender.sent
        failover_s = leader_moved_s + poll_until(
            lambda: decided_count(s) > sent_on_new_leader,
            FAILOVER_TIMEOUT_S,
            "proposals sent to the new leader decided",
        )
        assert validator.poll() is None, log.read_text()[-2000:]
        down_s = time.monotonic() - killed_at

        restart_at = time.monotonic()
        restarted = local_kafka.up(s)  # what `gridgov infra up` does: start the node that is missing
        assert restarted["state"] == "started"
        assert victim_pid not in {n["pid"] for n in restarted["nodes"]}
        poll_until(lambda: proposals_partition(s)[1] == [1, 2, 3], REJOIN_TIMEOUT_S, "the restarted broker in the ISR")
        rejoin_s = time.monotonic() - restart_at
        assert local_kafka.status(s)["state"] == "running"

        sender.join(FLUSH_TIMEOUT_S + 60)
        poll_until(lambda: decided_count(s) >= len(messages), DRAIN_TIMEOUT_S, "every proposal decided")
        assert stop_child(validator, VALIDATOR_STOP_TIMEOUT_S) == 0, log.read_text()[-2000:]
    finally:
        if validator.poll() is None:
            stop_child(validator, VALIDATOR_STOP_TIMEOUT_S)

    # The producer: every record acknowledged once, none failed, in the order sent.
    assert sender.errors == [] and sender.unflushed == 0
    assert sorted(sender.offsets) == list(range(len(messages)))
    assert kafka_admin.watermarks(s.kafka("admin"), s.topic("proposals")) == (0, len(messages))
    # The validator: the ledger is the pure fold of the log, every offset decided exactly once.
    expected = fold(messages, SECRET, VERSION)
    entries, rejections = stored(s)
    assert entries == [(e.seq, e.hash) for e in expected.entries]
    assert rejections == expected.rejections
    both = "SELECT source_offset FROM ledger UNION ALL SELECT source_offset FROM rejections"
    with psycopg.connect(s.database_url) as conn:
        decided = [offset for (offset,) in conn.execute(both)]
    assert sorted(decided) == list(range(len(messages)))
    report = audit_database(s.database_url)
    assert report.ok, report.problems[:5]
    print(
        f"\n3-broker cluster, SIGKILL of broker {leader} (leader of proposals) after {sent_at_kill} sent and "
        f"{decided_at_kill} decided: sent {len(messages)}, acknowledged {len(sender.offsets)}, delivery errors "
        f"{len(sender.errors)}, decided {len(decided)}, ledger entries {len(entries)}, rejections {len(rejections)}; "
        f"leadership moved {leader_moved_s:.1f} s and the first proposal sent to the new leader decided "
        f"{failover_s:.1f} s after the kill, broker down {down_s:.1f} s, "
        f"`up` to ISR 3 in {rejoin_s:.1f} s (broker listed after {restarted['timings_s']['start_s']:.1f} s)"
    )
