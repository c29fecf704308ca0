"""The local Kafka's layout: one node as before clusters, or several with interleaved ports, a static
quorum of all, and internal topics replicated like the grid's. No JVM is started."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import config
from core.config import Settings
from core.process import InfraError
from gridgov.infra import kafka


@pytest.fixture
def base(settings_file: Path, tmp_path: Path) -> Settings:
    s = config.load().replace(home=tmp_path / "home", kafka_port=41092, kafka_controller_port=41093)
    kafka.root(s).mkdir(parents=True)  # the cluster id and the admin's password are generated into it
    return s


def test_one_broker_keeps_the_layout_and_properties_of_before(base: Settings) -> None:
    (node,) = kafka.nodes(base)
    assert (node.id, node.address, node.controller) == (1, "127.0.0.1:41092", "127.0.0.1:41093")
    assert node.folder == kafka.root(base) and node.log_path == kafka.root(base) / "kafka.log"
    assert base.kafka_bootstrap == "127.0.0.1:41092"
    props = kafka.server_properties(base, node, secured=True)
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:41093"
    assert "controller.quorum.voters" not in props
    assert props["node.id"] == "1" and props["log.dirs"] == str(kafka.root(base) / "data")
    assert props["offsets.topic.replication.factor"] == props["transaction.state.log.min.isr"] == "1"
    assert "--standalone" in kafka.format_args(base, node)
    assert kafka.node_heap_mb(base) == base.kafka_heap_mb


def test_three_brokers_interleave_ports_and_form_one_static_quorum(base: Settings) -> None:
    s = base.replace(kafka_brokers=3)
    cluster = kafka.nodes(s)
    assert [(n.port, n.controller_port) for n in cluster] == [(41092, 41093), (41094, 41095), (41096, 41097)]
    assert [n.folder.name for n in cluster] == ["node-1", "node-2", "node-3"]
    assert s.kafka_bootstrap == "127.0.0.1:41092,127.0.0.1:41094,127.0.0.1:41096"
    voters = "1@127.0.0.1:41093,2@127.0.0.1:41095,3@127.0.0.1:41097"
    for node in cluster:
        props = kafka.server_properties(s, node, secured=True)
        assert props["node.id"] == str(node.id) and props["controller.quorum.voters"] == voters
        assert props["listeners"] == f"CLIENT://{node.address},CONTROLLER://{node.controller}"
        assert props["log.dirs"] == str(node.data_dir)
        assert props["offsets.topic.replication.factor"] == props["transaction.state.log.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == props["share.coordinator.state.topic.min.isr"] == "2"
        assert "--standalone" not in kafka.format_args(s, node)
    assert len({str(kafka.format_args(s, n)[-1]) for n in cluster}) == 1  # one admin credential for all


@pytest.mark.parametrize(
    ("heap_mb", "brokers", "each_mb"), [(1024, 1, 1024), (1024, 3, 341), (512, 3, 256), (128, 3, 128)]
)
def test_the_brokers_share_the_heap_down_to_a_floor(base: Settings, heap_mb: int, brokers: int, each_mb: int) -> None:
    assert kafka.node_heap_mb(base.replace(kafka_heap_mb=heap_mb, kafka_brokers=brokers)) == each_mb


def test_the_size_formatted_is_the_size_status_and_down_see(base: Settings) -> None:
    assert kafka.formatted_brokers(base) is None
    (kafka.root(base) / kafka.BROKERS_FILE).write_text("3\n")
    assert kafka.on_disk(base).kafka_brokers == 3
    kafka.check_size(base.replace(kafka_brokers=3))
    with pytest.raises(InfraError, match="formatted for 3 broker"):
        kafka.check_size(base)


def test_a_single_node_formatted_before_refuses_a_cluster(base: Settings) -> None:
    (kafka.root(base) / "data").mkdir()
    (kafka.root(base) / "data" / "meta.properties").write_text("node.id=1\n")
    assert kafka.formatted_brokers(base) == 1
    with pytest.raises(InfraError, match="formatted for 1 broker"):
        kafka.check_size(base.replace(kafka_brokers=3))
