"""The grid's topics, created idempotently; consumer groups reset or deleted; a topic's watermarks.

Every topic has one partition: the validator decides proposals in one total order (the ledger's hash
chain depends on it), so ``proposals`` must never be split, and the others follow it one-to-one.

Replicas follow the cluster: one on a single broker, three (``min.insync.replicas=2``) from three brokers
on, so a write the producers' ``acks=all`` saw acknowledged is on two brokers and one may fail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourcePatternType,
    ResourceType,
    TopicMetadata,
)

from core.config import Settings
from core.kafka_access import KafkaAccess
from core.process import WaitTimeoutError, poll_until

logger = logging.getLogger(__name__)

TIMEOUT_S = 30.0
METADATA_POLL_S = 0.1
THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000
# Three copies survive one broker lost (two still in sync) and one more being restarted; more only costs.
REPLICATION_FACTOR_MAX = 3
# With three replicas an acknowledged write is on two: one broker may die without losing it or stopping writes.
MIN_INSYNC_REPLICAS_REPLICATED = 2


def replication_factor(broker_count: int) -> int:
    """Replicas of a new topic on a cluster of ``broker_count`` brokers: as many as there are, at most three."""
    assert broker_count >= 1, "a cluster has at least one broker"
    return min(broker_count, REPLICATION_FACTOR_MAX)


def min_insync_replicas(replicas: int) -> int:
    """The ``min.insync.replicas`` of a topic with ``replicas`` copies: two once there are three, else one
    (with two copies, two in sync would stop every write while one broker restarts)."""
    assert replicas >= 1, "a topic has at least one replica"
    return MIN_INSYNC_REPLICAS_REPLICATED if replicas >= REPLICATION_FACTOR_MAX else 1


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


TOPIC_SPECS = (
    TopicSpec(
        "proposals",
        1,
        {
            # proposals are the system of record: kept forever, replayable from offset 0
            "retention.ms": "-1",
            "retention.bytes": "-1",
            "cleanup.policy": "delete",
            # 2 MiB, above the producer's 1 MB default: a hostile oversized proposal must reach the
            # validator and become a recorded rejection instead of vanishing at the broker
            "max.message.bytes": "2097152",
            "message.timestamp.type": "CreateTime",
        },
    ),
    TopicSpec("rejections", 1, {"retention.ms": str(THIRTY_DAYS_MS)}),
    TopicSpec("alerts", 1, {"retention.ms": str(THIRTY_DAYS_MS)}),
    TopicSpec("ledger-events", 1, {"retention.ms": "-1"}),
    TopicSpec("incidents", 1, {"retention.ms": str(THIRTY_DAYS_MS)}),
)


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    retention_ms: int
    max_message_bytes: int
    replicas: int
    min_insync_replicas: int
    action: str = "ok"  # what ensure_topics did: "created", "altered" or "ok"


class TopicMismatchError(RuntimeError):
    """An existing topic has a partition count that cannot be fixed in place."""


def admin_client(kafka: KafkaAccess) -> AdminClient:
    return AdminClient(kafka.config(), logger=logger)


@dataclass(frozen=True)
class Grant:
    """``principal`` may do ``operations`` on the resource ``name`` (a literal name or a prefix)."""

    principal: str
    resource: ResourceType
    name: str
    operations: tuple[AclOperation, ...]
    pattern: ResourcePatternType = ResourcePatternType.LITERAL

    def bindings(self) -> list[AclBinding]:
        principal = f"User:{self.principal}"
        allow = AclPermissionType.ALLOW
        return [AclBinding(self.resource, self.name, self.pattern, principal, "*", op, allow) for op in self.operations]


_TOPIC, _GROUP = ResourceType.TOPIC, ResourceType.GROUP
_READ = (AclOperation.READ, AclOperation.DESCRIBE)
_WRITE = (AclOperation.WRITE, AclOperation.DESCRIBE)
VALIDATOR_OUTPUTS = ("ledger-events", "rejections", "alerts", "incidents")
SINK_INPUTS = ("rejections", "incidents", "alerts")
N8N_INPUTS = SINK_INPUTS
# Consumer groups are not namespaced by topic prefix: the validator's own, and replay's per-run ones.
VALIDATOR_GROUP_PREFIXES = ("grid-validator", "gridgov-")


def n8n_group_prefix(settings: Settings) -> str:
    """The consumer groups n8n's workflows may join: ``{prefix}-n8n-…``."""
    return f"{settings.topic_prefix}-n8n-"


def namespace_grants(settings: Settings) -> list[Grant]:
    """Who may do what on one namespace's topics: the trust boundary of docs/trust.md, in ACLs."""
    t, sinks_app = settings.topic, f"{settings.topic_prefix}-sinks"
    n8n_groups = n8n_group_prefix(settings)
    grants = [
        Grant("producer", _TOPIC, t("proposals"), _WRITE),
        Grant("dashboard", _TOPIC, t("proposals"), (AclOperation.WRITE,)),  # the console's commands
        Grant("validator", _TOPIC, t("proposals"), _READ),
        Grant("sinks", _GROUP, sinks_app, (AclOperation.READ,)),
        # faust's own bookkeeping topics are named after its app
        Grant("sinks", _TOPIC, f"{sinks_app}-", (AclOperation.ALL,), ResourcePatternType.PREFIXED),
    ]
    grants += [Grant("validator", _TOPIC, t(name), _WRITE) for name in VALIDATOR_OUTPUTS]
    grants += [Grant("sinks", _TOPIC, t(name), _READ) for name in SINK_INPUTS]
    # n8n's Kafka triggers: read-only, in consumer groups of its own (one per workflow)
    grants += [Grant("n8n", _TOPIC, t(name), _READ) for name in N8N_INPUTS]
    grants.append(Grant("n8n", _GROUP, n8n_groups, (AclOperation.READ,), ResourcePatternType.PREFIXED))
    grants += [Grant("dashboard", _TOPIC, t(spec.name), (AclOperation.DESCRIBE,)) for spec in TOPIC_SPECS]
    return grants


def shared_grants() -> list[Grant]:
    prefixed = ResourcePatternType.PREFIXED
    return [Grant("validator", _GROUP, g, (AclOperation.READ,), prefixed) for g in VALIDATOR_GROUP_PREFIXES]


def ensure_acls(admin: AdminClient, grants: list[Grant], timeout_s: float = TIMEOUT_S) -> None:
    """Create the ACLs of ``grants``; creating one that exists already is a no-op at the broker."""
    bindings = [b for g in grants for b in g.bindings()]
    for future in admin.create_acls(bindings, request_timeout=timeout_s).values():
        future.result(timeout=timeout_s)
    # The controller has them now; the broker's authorizer applies them from its metadata log a moment
    # later, and a client that came before would be refused: wait until the broker describes them.
    # None matches any name, principal and host (the client's type stubs say str)
    anything: Any = None
    everything = AclBindingFilter(
        ResourceType.ANY, anything, ResourcePatternType.ANY, anything, anything, AclOperation.ANY, AclPermissionType.ANY
    )
    wanted = set(bindings)
    poll_until(
        lambda: wanted <= set(admin.describe_acls(everything, request_timeout=timeout_s).result(timeout=timeout_s)),
        timeout_s,
        "the broker to apply the topics' ACLs",
    )


def delete_acls(admin: AdminClient, grants: list[Grant], timeout_s: float = TIMEOUT_S) -> None:
    bindings = [b for g in grants for b in g.bindings()]
    filters = [
        AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, "*", b.operation, b.permission_type)
        for b in bindings
    ]
    for future in admin.delete_acls(filters, request_timeout=timeout_s).values():
        future.result(timeout=timeout_s)


@dataclass(frozen=True)
class _Layout:
    partitions: int
    replicas: int  # of partition 0: every topic is created with one replication factor for all


def _layout(topic: TopicMetadata) -> _Layout:
    first = topic.partitions.get(0)
    return _Layout(len(topic.partitions), len(first.replicas) if first is not None else 0)


def _wait_for_metadata(admin: AdminClient, names: list[str], timeout_s: float) -> dict[str, _Layout]:
    """Partitions and replicas of ``names``, waiting until freshly created topics show in the metadata."""
    counts: dict[str, _Layout] = {}

    def all_listed() -> bool:
        nonlocal counts
        topics = admin.list_topics(timeout=timeout_s).topics
        counts = {n: _layout(topics[n]) for n in names if n in topics and topics[n].error is None}
        return len(counts) == len(names)

    try:
        poll_until(all_listed, timeout_s, "the new topics in the broker's metadata", interval_s=METADATA_POLL_S)
    except WaitTimeoutError as exc:  # name the topics still missing
        raise WaitTimeoutError(f"{exc}: {set(names) - set(counts)} not listed") from exc
    return counts


def _create_missing(
    admin: AdminClient, specs: dict[str, TopicSpec], brokers_expected: int, timeout_s: float
) -> set[str]:
    """Create the topics of ``specs`` not there yet, replicated for the larger of the brokers the cluster
    lists and ``brokers_expected``: a broker that is down then fails the creation instead of leaving the
    topic with fewer copies for good."""
    metadata = admin.list_topics(timeout=timeout_s)
    replicas = replication_factor(max(len(metadata.brokers), brokers_expected))
    isr = {"min.insync.replicas": str(min_insync_replicas(replicas))}
    new = [
        NewTopic(name, spec.partitions, replicas, config=spec.config | isr)
        for name, spec in specs.items()
        if name not in metadata.topics
    ]
    created = set()
    futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s) if new else {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.add(name)
        except KafkaException as exc:
            # another process created it between our list and our create: fine, it is verified below
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def _configs(admin: AdminClient, names: list[str], timeout_s: float) -> dict[str, dict[str, str]]:
    """The configs of ``names``. On a cluster, the broker asked may not know a topic created a moment
    ago although the one that listed it does (UNKNOWN_TOPIC_OR_PART): asked again until it does."""
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
    found: dict[str, dict[str, str]] = {}

    def described() -> bool:
        futures = admin.describe_configs(resources, request_timeout=timeout_s)
        try:
            found.update(
                {r.name: {k: e.value for k, e in f.result(timeout=timeout_s).items()} for r, f in futures.items()}
            )
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            return False
        return True

    poll_until(described, timeout_s, "the new topics' configs from the broker asked", interval_s=METADATA_POLL_S)
    return found


def _alter(admin: AdminClient, name: str, drift: dict[str, str], timeout_s: float) -> None:
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in drift.items()]
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
    admin.incremental_alter_configs([resource], request_timeout=timeout_s)[resource].result(timeout=timeout_s)
    logger.warning("topic %s had drifted; set %s", name, drift)


def ensure_topics(settings: Settings, timeout_s: float = TIMEOUT_S) -> list[TopicInfo]:
    """Create the grid's topics if missing; fix drifted configs; raise if a partition count differs."""
    admin = admin_client(settings.kafka("admin"))
    specs = {settings.topic(spec.name): spec for spec in TOPIC_SPECS}
    # an external cluster's size is what it lists; GRID_KAFKA_BROKERS describes only the local one
    brokers_expected = 1 if settings.kafka_bootstrap_external else settings.kafka_brokers
    created = _create_missing(admin, specs, brokers_expected, timeout_s)
    layouts = _wait_for_metadata(admin, list(specs), timeout_s)
    wrong = {
        n: f"{layouts[n].partitions} instead of {spec.partitions}"
        for n, spec in specs.items()
        if layouts[n].partitions != spec.partitions
    }
    if wrong:
        raise TopicMismatchError(
            f"topics with the wrong partition count: {wrong}; partitions cannot be removed in place: "
            "delete the topics or use another GRID_TOPIC_PREFIX"
        )
    configs = _configs(admin, list(specs), timeout_s)
    infos = []
    for name, spec in specs.items():
        # from the topic's own replicas, not the cluster's: a topic made on one broker keeps one copy,
        # and two in sync would refuse every write to it
        wanted = spec.config | {"min.insync.replicas": str(min_insync_replicas(layouts[name].replicas))}
        drift = {k: v for k, v in wanted.items() if configs[name].get(k) != v}
        if drift:
            _alter(admin, name, drift, timeout_s)
            configs[name].update(drift)
        action = "created" if name in created else "altered" if drift else "ok"
        infos.append(_info(name, layouts[name], configs[name], action))
    if settings.kafka_sasl:
        ensure_acls(admin, namespace_grants(settings) + shared_grants(), timeout_s)
    logger.info("topics ready: %s", ", ".join(f"{i.name} ({i.action})" for i in infos))
    return infos


def _info(name: str, layout: _Layout, config: dict[str, str], action: str = "ok") -> TopicInfo:
    return TopicInfo(
        name,
        layout.partitions,
        int(config["retention.ms"]),
        int(config["max.message.bytes"]),
        layout.replicas,
        int(config["min.insync.replicas"]),
        action,
    )


def describe_topics(settings: Settings, timeout_s: float = TIMEOUT_S) -> list[TopicInfo]:
    """The grid's topics that exist on the broker, with partitions and retention."""
    admin = admin_client(settings.kafka("admin"))
    topics = admin.list_topics(timeout=timeout_s).topics
    names = [settings.topic(spec.name) for spec in TOPIC_SPECS if settings.topic(spec.name) in topics]
    configs = _configs(admin, names, timeout_s) if names else {}
    return [_info(n, _layout(topics[n]), configs[n]) for n in names]


def delete_topics(settings: Settings, prefix: str, timeout_s: float = TIMEOUT_S) -> None:
    """Delete every topic named ``{prefix}.…`` and the namespace's ACLs; wait until the broker accepted each."""
    admin = admin_client(settings.kafka("admin"))
    names = [t for t in admin.list_topics(timeout=timeout_s).topics if t.startswith(f"{prefix}.")]
    for future in admin.delete_topics(names, operation_timeout=timeout_s).values() if names else ():
        future.result(timeout=timeout_s)
    if settings.kafka_sasl:
        delete_acls(admin, namespace_grants(settings.replace(topic_prefix=prefix)), timeout_s)


def delete_group(kafka: KafkaAccess, group: str, timeout_s: float = TIMEOUT_S) -> None:
    admin = admin_client(kafka)  # held until the result: a collected client never resolves its futures
    admin.delete_consumer_groups([group], request_timeout=timeout_s)[group].result(timeout=timeout_s)


def delete_group_if_any(kafka: KafkaAccess, group: str, timeout_s: float = TIMEOUT_S) -> None:
    """Delete a group that another process may or may not have created before it stopped."""
    try:
        delete_group(kafka, group, timeout_s)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
            raise


def watermarks(kafka: KafkaAccess, topic: str, timeout_s: float = TIMEOUT_S) -> tuple[int, int]:
    """(low, high) of ``topic``'s only partition: the first offset still kept, and the next one to be written."""
    # Never subscribes or commits: it only asks the broker for offsets. The group id is required by the client.
    consumer = Consumer(kafka.config(**{"group.id": "gridgov-watermark-probe"}))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout_s)
    finally:
        consumer.close()
    return int(low), int(high)


def reset_group_offsets(
    kafka: KafkaAccess,
    group: str,
    topic: str,
    to_offset: int | Literal["earliest"] = "earliest",
    timeout_s: float = TIMEOUT_S,
) -> dict[int, int]:
    """Set ``group``'s committed offset on every partition of ``topic``; return partition -> offset.

    The group must have no active members (stop its consumers first): the broker refuses otherwise.
    """
    admin = admin_client(kafka)
    partitions = sorted(admin.list_topics(topic, timeout=timeout_s).topics[topic].partitions)
    if to_offset == "earliest":
        # the log start may be past 0 once retention has deleted segments
        # confluent_kafka leaves OffsetSpec's factory classmethods unannotated (it returns an OffsetSpec)
        query = {TopicPartition(topic, p): OffsetSpec.earliest() for p in partitions}  # type: ignore[no-untyped-call]
        futures = admin.list_offsets(query, request_timeout=timeout_s)
        offsets = {tp.partition: f.result(timeout=timeout_s).offset for tp, f in futures.items()}
    else:
        offsets = dict.fromkeys(partitions, to_offset)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in offsets.items()])
    future = admin.alter_consumer_group_offsets([request], request_timeout=timeout_s)[group]
    try:
        result = future.result(timeout=timeout_s)
    except KafkaException as exc:
        raise RuntimeError(f"could not reset group {group!r} on {topic} (is a consumer still running?): {exc}") from exc
    failed = [tp for tp in result.topic_partitions if tp.error is not None]
    if failed:
        raise RuntimeError(f"could not reset group {group!r} on {topic}: {failed}")
    logger.info("reset group %s on %s to %s", group, topic, offsets)
    return offsets
