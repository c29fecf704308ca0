"""A local Kafka (KRaft) run from Maven Central jars, without Docker: one node by default, or a cluster of
``GRID_KAFKA_BROKERS`` nodes on this machine, each a broker and a KRaft controller.

Layout under ``<home>/kafka``: ``libs-<version>/`` (jars, fetched once), ``cluster.id``, and per node
``server.properties`` (0600: it holds the admin password), ``data/`` (formatted once), ``kafka.log`` and
``kafka.pid``. One node keeps these in ``<home>/kafka`` itself (the layout from before clusters); a
cluster keeps node n's in ``<home>/kafka/node-<n>`` and its size in ``brokers``. The size is fixed when
the nodes are formatted (their controller quorum is static, ``controller.quorum.voters``), so ``up`` with
another count is refused, and ``status`` and ``down`` act on the nodes that were formatted, whatever
GRID_KAFKA_BROKERS says now. Node n listens on GRID_KAFKA_PORT + 2(n-1), its controller on
GRID_KAFKA_CONTROLLER_PORT + 2(n-1). Kafka's internal topics get the replicas and min.insync.replicas
``connectors.kafka_admin`` gives the grid's topics: 3 and 2 from three nodes on. A node that died is
started again by the next ``up``, which leaves the others running.

Secured (``GRID_KAFKA_SASL``, the default): clients authenticate with SCRAM-SHA-256 on a SASL_PLAINTEXT
listener and the StandardAuthorizer allows each principal only what ``connectors.kafka_admin`` grants
it; nothing is allowed where no ACL says so. The admin (the super user) is written into the metadata
at format time; the controller listener takes a static PLAIN login for admin alone, because KRaft keeps
SCRAM credentials in the metadata the controller itself serves. Each start then upserts the SCRAM users
of the other principals and writes their password and a client properties file (for Kafka's own tools)
under ``GRID_HOME/credentials``. A cluster formatted before it was secured is upgraded in place: started
once without authentication to add the admin credential, then restarted secured; its topics stay.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from connectors.kafka_admin import min_insync_replicas, replication_factor
from core.config import Settings
from core.credentials import generated_secret, write_private
from core.kafka_access import PRINCIPALS, KafkaAccess, Principal, client_properties, password_path, properties_path
from core.process import (
    InfraError,
    cmdline,
    log_tail,
    pid_alive,
    poll_until,
    port_open,
    read_pid,
    spawn_detached,
    terminate,
)

logger = logging.getLogger(__name__)

INFRA_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"
FETCH_TIMEOUT_S = 900
# for all nodes together: they are formatted at the same time
FORMAT_TIMEOUT_S = 120
READY_TIMEOUT_S = 90.0
# a single-node broker shuts down in a few seconds; more than this means it is stuck
STOP_TIMEOUT_S = 60.0
COMPLETE_MARKER = ".complete"
MAIN_CLASS = "kafka.Kafka"
# the tools' JVMs (format, upgrade) hold next to nothing
TOOL_HEAP_MB = 256
# below this a broker's JVM spends its time collecting; a cluster's nodes share GRID_KAFKA_HEAP_MB down to it
NODE_HEAP_MB_MIN = 256
# a cluster's size, written before its nodes are formatted
BROKERS_FILE = "brokers"
# librdkafka logs every refused connection; route that through logging instead of stderr
_RDKAFKA_LOGGER = logging.getLogger("gridgov.infra.librdkafka")
ADMIN: Principal = "admin"
# written once the metadata holds the admin's SCRAM credential (at format time, or by the upgrade)
SECURED_MARKER = "secured"
# Kafka's minimum for SCRAM-SHA-256; each login costs the broker this many HMACs once per connection
SCRAM_ITERATIONS = 4096
SCRAM_TIMEOUT_S = 30.0
# what a failed start shows of a broker's log: its errors among the last lines scanned, then the very last
LOG_SCAN_LINES = 2000
LOG_ERROR_LINES = 5
LOG_TAIL_LINES = 15
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


def root(s: Settings) -> Path:
    return s.home / "kafka"


def libs_dir(s: Settings) -> Path:
    return root(s) / f"libs-{s.kafka_version}"


@dataclass(frozen=True)
class Node:
    """One broker and controller of the local Kafka, and the folder of its files."""

    id: int
    port: int
    controller_port: int
    folder: Path

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def controller(self) -> str:
        return f"{HOST}:{self.controller_port}"

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def log_path(self) -> Path:
        return self.folder / "kafka.log"

    @property
    def pid_path(self) -> Path:
        return self.folder / "kafka.pid"

    @property
    def properties_path(self) -> Path:
        return self.folder / "server.properties"

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "meta.properties").exists()


def nodes(s: Settings) -> list[Node]:
    """The ``GRID_KAFKA_BROKERS`` nodes, node 1 first: a single one in ``root`` itself, else in ``node-<n>``."""
    single = s.kafka_brokers == 1
    return [
        Node(n, port, controller_port, root(s) if single else root(s) / f"node-{n}")
        for n, (port, controller_port) in enumerate(s.kafka_node_ports, start=1)
    ]


def formatted_brokers(s: Settings) -> int | None:
    """How many nodes the Kafka in ``root`` was formatted for; None before the first format."""
    if (root(s) / "data" / "meta.properties").exists():
        return 1
    path = root(s) / BROKERS_FILE
    return int(path.read_text()) if path.exists() else None


def on_disk(s: Settings) -> Settings:
    """``s`` with the size the local Kafka was formatted for: what ``status`` and ``down`` act on."""
    return s.replace(kafka_brokers=formatted_brokers(s) or s.kafka_brokers)


def check_size(s: Settings) -> None:
    formatted = formatted_brokers(s)
    if formatted is not None and formatted != s.kafka_brokers:
        raise InfraError(
            f"the Kafka in {root(s)} was formatted for {formatted} broker(s), not GRID_KAFKA_BROKERS="
            f"{s.kafka_brokers}: a KRaft quorum keeps its size. Use another GRID_HOME, or set it back"
        )


def node_heap_mb(s: Settings) -> int:
    """Each node's share of ``GRID_KAFKA_HEAP_MB``, but at least ``NODE_HEAP_MB_MIN`` (or all of it, if less)."""
    return max(min(s.kafka_heap_mb, NODE_HEAP_MB_MIN), s.kafka_heap_mb // s.kafka_brokers)


def log_path(s: Settings) -> Path:
    """The log of node 1 (the only one by default)."""
    return nodes(on_disk(s))[0].log_path


def fetch_jars(s: Settings) -> float:
    """Copy the broker's runtime jars from Maven into ``libs-<version>``; return seconds (0 when cached)."""
    target = libs_dir(s)
    if (target / COMPLETE_MARKER).exists():
        return 0.0
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError("Maven (mvn) is needed once to fetch the Kafka jars; run scripts/setup.sh")
    start = time.monotonic()
    partial = target.with_name(target.name + ".partial")
    # a fetch that was interrupted leaves either folder without the marker: start over
    for leftover in (partial, target):
        shutil.rmtree(leftover, ignore_errors=True)
    cmd = [
        mvn, "-B", "-q", "-f", str(INFRA_DIR / "pom.xml"), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={partial}", f"-Dkafka.version={s.kafka_version}",
    ]  # fmt: skip
    logger.info("fetching Kafka %s jars with Maven into %s", s.kafka_version, target)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if done.returncode != 0 or not (partial / f"kafka_2.13-{s.kafka_version}.jar").exists():
        raise InfraError(f"Maven could not fetch Kafka {s.kafka_version}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    partial.rename(target)
    jar_count = len(list(target.glob("*.jar")))
    (target / COMPLETE_MARKER).write_text(f"{jar_count} jars\n")
    elapsed_s = time.monotonic() - start
    logger.info("fetched %d jars in %.1f s", jar_count, elapsed_s)
    return elapsed_s


def server_properties(s: Settings, node: Node, secured: bool) -> dict[str, str]:
    cluster = nodes(s)
    client = "CLIENT" if secured else "PLAINTEXT"
    listeners = f"{client}://{node.address},CONTROLLER://{node.controller}"
    protocol = "SASL_PLAINTEXT" if secured else "PLAINTEXT"
    # One node: a dynamic quorum of itself (formatted --standalone). Several: a static quorum of all of
    # them, which needs no step to add voters after the format.
    quorum = (
        {"controller.quorum.bootstrap.servers": node.controller}
        if len(cluster) == 1
        else {"controller.quorum.voters": ",".join(f"{n.id}@{n.controller}" for n in cluster)}
    )
    replicas = str(replication_factor(len(cluster)))
    insync = str(min_insync_replicas(replication_factor(len(cluster))))
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.id),
        **quorum,
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": client,
        "listener.security.protocol.map": f"CONTROLLER:{protocol},{client}:{protocol}",
        **(_security_properties(admin_password(s)) if secured else {}),
        "log.dirs": str(node.data_dir),
        "num.partitions": "1",
        # every topic is created by connectors.kafka_admin with its own partitions, replicas and retention
        "auto.create.topics.enable": "false",
        # internal topics replicated as the grid's own (one replica on one broker); min.insync.replicas
        # stays per topic, so a topic someone makes with one replica on a cluster can still be written
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": insync,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": insync,
        # the default 3 s delay only helps groups whose members join one by one over seconds
        "group.initial.rebalance.delay.ms": "0",
    }


def _security_properties(password: str) -> dict[str, str]:
    return {
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-256",
        "listener.name.client.scram-sha-256.sasl.jaas.config": (
            f'{_SCRAM_LOGIN} required username="{ADMIN}" password="{password}";'
        ),
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": (
            f'{_PLAIN_LOGIN} required username="{ADMIN}" password="{password}" user_{ADMIN}="{password}";'
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
    }


def admin_password(s: Settings) -> str:
    return generated_secret(s.home, f"kafka-{ADMIN}")


def secured_marker(s: Settings) -> Path:
    return root(s) / SECURED_MARKER


def write_properties(s: Settings, node: Node, secured: bool) -> Path:
    path = node.properties_path
    lines = [f"{key}={value}" for key, value in server_properties(s, node, secured).items()]
    text = "# generated by gridgov/infra/kafka.py on every start; edits are lost\n" + "\n".join(lines) + "\n"
    node.folder.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # write_private keeps an existing file
    write_private(path, text)
    return path


def cluster_id(s: Settings) -> str:
    """The cluster id, generated once: base64url of 16 random bytes, unpadded, not starting with '-'."""
    path = root(s) / "cluster.id"
    if path.exists():
        return path.read_text().strip()
    value = "-"
    while value.startswith("-"):
        value = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    path.write_text(value + "\n")
    return value


def java_cmd(s: Settings, heap_mb: int, log: Path | None = None) -> list[str]:
    """The JVM command line before the main class; Kafka's own logging goes to ``log`` (node 1's by default)."""
    java_home = os.environ.get("JAVA_HOME")
    java = shutil.which("java", path=f"{java_home}/bin") if java_home else shutil.which("java")
    if java is None:
        raise InfraError("java is needed to run Kafka; run scripts/setup.sh (openjdk-17-jre-headless)")
    return [
        java, f"-Xms{min(256, heap_mb)}m", f"-Xmx{heap_mb}m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={INFRA_DIR / 'log4j2.properties'}", f"-Dgrid.kafka.log={log or log_path(s)}",
        "-cp", f"{libs_dir(s)}/*",
    ]  # fmt: skip


def format_args(s: Settings, node: Node) -> list[str]:
    """The arguments of ``StorageTool`` that format ``node``."""
    args = ["format", "-t", cluster_id(s), "-c", str(node.properties_path)]
    if s.kafka_brokers == 1:
        args.append("--standalone")  # the node is its own quorum; a cluster's voters are in its properties
    if s.kafka_sasl:
        # every node's bootstrap metadata must be the same, so each gets the credential
        credential = f"name={ADMIN},iterations={SCRAM_ITERATIONS},password={admin_password(s)}"
        args += ["--add-scram", f"SCRAM-SHA-256=[{credential}]"]
    return args


def _start_format(s: Settings, node: Node) -> subprocess.Popen[str]:
    cmd = [*java_cmd(s, TOOL_HEAP_MB, node.log_path), "kafka.tools.StorageTool", *format_args(s, node)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)


def format_storage(s: Settings) -> float:
    """Format each node's KRaft storage once, all at the same time; return seconds (0 when all were).

    The nodes' properties must be written first: the format reads the quorum and data folder from them.
    """
    cluster = nodes(s)
    todo = [node for node in cluster if not node.formatted]
    if not todo:
        return 0.0
    if len(cluster) > 1:
        (root(s) / BROKERS_FILE).write_text(f"{len(cluster)}\n")  # first: a format cut short is still sized
    start = time.monotonic()
    # Each format is a JVM start of a few seconds; the nodes are independent until they run.
    runs = [(node, _start_format(s, node)) for node in todo]
    failures = []
    try:
        for node, run in runs:
            output, _ = run.communicate(timeout=max(0.0, start + FORMAT_TIMEOUT_S - time.monotonic()))
            if run.returncode != 0:
                failures.append(f"node {node.id}:\n{output}")
    except subprocess.TimeoutExpired as exc:
        raise InfraError(f"formatting Kafka storage took more than {FORMAT_TIMEOUT_S} s") from exc
    finally:
        for _, run in runs:
            if run.poll() is None:
                run.kill()
                run.wait(STOP_TIMEOUT_S)
    if failures:
        raise InfraError("formatting Kafka storage failed:\n" + "\n".join(failures))
    if s.kafka_sasl:
        secured_marker(s).write_text("admin SCRAM credential written at format time\n")
    elapsed_s = time.monotonic() - start
    logger.info("formatted Kafka storage of %d node(s) in %.1f s", len(todo), elapsed_s)
    return elapsed_s


def running_pid(node: Node) -> int | None:
    """Pid of the node's broker that ``up`` started, if it is still that one; a stale pid file is removed."""
    pid = read_pid(node.pid_path)
    if pid is None:
        return None
    args = cmdline(pid)
    if pid_alive(pid) and MAIN_CLASS in args and str(node.properties_path) in args:
        return pid
    logger.info("removing stale Kafka pid file %s (pid %d is gone)", node.pid_path, pid)
    node.pid_path.unlink(missing_ok=True)
    return None


def recorded_address(node: Node) -> str | None:
    lines = node.pid_path.read_text().splitlines() if node.pid_path.exists() else []
    return lines[1] if len(lines) > 1 else None


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    pairs = [server.strip().rsplit(":", 1) for server in bootstrap.split(",") if server.strip()]
    return [(host.strip("[]"), int(port)) for host, port in pairs]


def probe_access(s: Settings) -> KafkaAccess:
    """How ``up``/``status`` reach the broker: as admin when this grid holds its password, else as the process's
    own identity, else unauthenticated (an external broker without SASL)."""
    if not s.kafka_sasl or s.kafka_username or admin_password_path(s).exists():
        return s.kafka(ADMIN)
    return KafkaAccess(s.kafka_bootstrap)


def admin_password_path(s: Settings) -> Path:
    return password_path(s.home, ADMIN)


def broker_count(kafka: KafkaAccess, timeout_s: float = 2.0) -> int:
    """How many live brokers the cluster at ``kafka.bootstrap`` lists to ``kafka``'s identity, in the metadata
    every client starts with (0 when none answers, or the login is refused)."""
    if not any(port_open(host, port) for host, port in _hosts(kafka.bootstrap)):
        return 0
    admin = AdminClient(kafka.config(), logger=_RDKAFKA_LOGGER)
    try:
        return len(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        return 0


def answers(kafka: KafkaAccess, timeout_s: float = 2.0) -> bool:
    """True when a broker at ``kafka.bootstrap`` serves metadata to ``kafka``'s identity."""
    return broker_count(kafka, timeout_s) > 0


def wait_ready(
    kafka: KafkaAccess,
    timeout_s: float = READY_TIMEOUT_S,
    log: Path | None = None,
    brokers: int = 1,
    watched: Mapping[int, Path] | None = None,
) -> float:
    """Wait until the cluster lists ``brokers`` live brokers to ``kafka``; return seconds.

    ``watched`` maps the pid of each broker being waited for to its log: the wait fails fast when one
    dies, showing the tail of its log (else of every watched log, or of ``log``).
    """
    watched = watched or {}
    alive = (lambda: all(pid_alive(pid) for pid in watched)) if watched else None
    what = f"Kafka at {kafka.bootstrap}" + (f" to list {brokers} brokers" if brokers > 1 else "")
    try:
        return poll_until(lambda: broker_count(kafka) >= brokers, timeout_s, what, alive)
    except InfraError as exc:
        dead = [path for pid, path in watched.items() if not pid_alive(pid)]
        shown = dead or list(watched.values()) or ([log] if log else [])
        raise InfraError(str(exc) + "".join(_excerpt(path) for path in shown)) from exc


def _excerpt(log: Path) -> str:
    """The recent errors and last lines of a broker's log: a broker that failed logs its cause (a port it
    could not bind, say) long before the many lines of its shutdown."""
    recent = log_tail(log, LOG_SCAN_LINES).splitlines()
    errors = [line for line in recent if " ERROR " in line][:LOG_ERROR_LINES]
    shown = "\n".join([*errors, "...", *recent[-LOG_TAIL_LINES:]] if errors else recent[-LOG_TAIL_LINES:])
    return f"\n--- {log} ---\n{shown}"


def port_taken(port: int) -> bool:
    """True when a socket on this machine holds ``port`` on ``HOST``: a listener, or an outgoing connection
    given it as its local port (which ``port_open`` does not see)."""
    with socket.socket() as probe:
        # as the broker binds: a closed connection's TIME_WAIT does not stand in its way
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def start(s: Settings, node: Node) -> int:
    for port in (node.port, node.controller_port):
        if port_taken(port):
            raise InfraError(
                f"port {port} is already in use by another process or connection; set GRID_KAFKA_PORT/"
                "_CONTROLLER_PORT (for a cluster, below the ephemeral ports of /proc/sys/net/ipv4/ip_local_port_range)"
            )
    cmd = [*java_cmd(s, node_heap_mb(s), node.log_path), MAIN_CLASS, str(node.properties_path)]
    pid = spawn_detached(cmd, node.log_path, cwd=node.folder)
    # the second line lets a later `up` with other ports notice the broker it cannot reach
    node.pid_path.write_text(f"{pid}\n{node.address}\n")
    logger.info("started Kafka broker %d, pid %d on %s, log %s", node.id, pid, node.address, node.log_path)
    return pid


def stop(node: Node, pid: int) -> None:
    logger.info("stopping Kafka broker %d, pid %d", node.id, pid)
    terminate(pid, STOP_TIMEOUT_S)
    node.pid_path.unlink(missing_ok=True)


def stop_all(running: Mapping[Node, int]) -> None:
    """Stop the brokers of ``running`` (node -> pid) all at once: one by one, the last would wait for a
    controller quorum that the others took with them."""
    with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
        for done in [pool.submit(stop, node, pid) for node, pid in running.items()]:
            done.result()


def upsert_users(kafka: KafkaAccess, passwords: dict[str, str]) -> None:
    """Create or replace the SCRAM-SHA-256 credential of each user in ``passwords``, connected as ``kafka``."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, pw.encode()) for user, pw in passwords.items()
    ]
    admin = AdminClient(kafka.config(), logger=_RDKAFKA_LOGGER)
    for future in admin.alter_user_scram_credentials(upserts, request_timeout=SCRAM_TIMEOUT_S).values():
        future.result(timeout=SCRAM_TIMEOUT_S)


def secure_in_place(s: Settings) -> float:
    """Add the admin's SCRAM credential to a cluster formatted without one; return seconds. Its topics stay."""
    logger.warning("securing the Kafka cluster in %s: one start without authentication to add the admin", root(s))
    start_time = time.monotonic()
    (node,) = nodes(s)  # up refuses to secure a cluster of several
    write_properties(s, node, secured=False)
    pid = start(s, node)
    try:
        unauthenticated = KafkaAccess(s.kafka_bootstrap)
        wait_ready(unauthenticated, watched={pid: node.log_path})
        upsert_users(unauthenticated, {ADMIN: admin_password(s)})
    finally:
        stop(node, pid)
    secured_marker(s).write_text("admin SCRAM credential added to an existing cluster\n")
    return time.monotonic() - start_time


def ensure_principals(s: Settings, admin: KafkaAccess) -> float:
    """Give every principal but admin its SCRAM user, and each its password and properties file; return seconds."""
    start_time = time.monotonic()
    passwords = {p: generated_secret(s.home, f"kafka-{p}") for p in PRINCIPALS}
    upsert_users(admin, {p: pw for p, pw in passwords.items() if p != ADMIN})
    for principal, password in passwords.items():
        write_private(properties_path(s.home, principal), client_properties(principal, password))
    # each broker applies the new credentials from its metadata log a moment later: wait for every one
    for node in nodes(s):
        wait_ready(KafkaAccess(node.address, "validator", passwords["validator"]), SCRAM_TIMEOUT_S)
    return time.monotonic() - start_time


def missing_principals(s: Settings) -> list[str]:
    return [p for p in PRINCIPALS if not properties_path(s.home, p).exists()]


def up(s: Settings) -> dict[str, Any]:
    """Fetch, format, secure and start what is missing (every node of a cluster), then wait until each
    broker is listed. Harmless when running; a cluster with a dead node gets that node back."""
    if s.kafka_bootstrap_external:
        ready_s = wait_ready(probe_access(s))
        return {"state": "external", "bootstrap": s.kafka_bootstrap, "timings_s": {"ready_s": ready_s}}
    root(s).mkdir(parents=True, exist_ok=True)
    check_size(s)
    cluster = nodes(s)
    pids = {node: running_pid(node) for node in cluster}
    for node, pid in pids.items():
        recorded = recorded_address(node)
        if pid is not None and recorded not in (None, node.address):
            raise InfraError(
                f"the broker started earlier (pid {pid}) listens on {recorded}, not {node.address}: "
                "run `gridgov infra down --only kafka` with the old settings first"
            )
    admin = KafkaAccess(s.kafka_bootstrap, ADMIN, admin_password(s)) if s.kafka_sasl else KafkaAccess(s.kafka_bootstrap)
    if None not in pids.values() and broker_count(admin) == len(cluster):
        # a principal added since the broker was started (n8n) gets its user without a restart
        users_s = ensure_principals(s, admin) if s.kafka_sasl and missing_principals(s) else 0.0
        return _up_result("already running", s, pids, {"users_s": users_s})
    timings_s = {"fetch_s": fetch_jars(s)}
    if s.kafka_sasl and any(node.formatted for node in cluster) and not secured_marker(s).exists():
        if len(cluster) > 1:
            raise InfraError(f"the Kafka cluster in {root(s)} was formatted without authentication: format a new one")
        (node,) = cluster
        pid = pids[node]
        if pid is not None:
            stop(node, pid)  # a broker started before it was secured: restart it secured
            pids[node] = None
        timings_s["secure_s"] = secure_in_place(s)
    for node in cluster:
        write_properties(s, node, s.kafka_sasl)
    timings_s["format_s"] = format_storage(s)
    start_time = time.monotonic()
    # a live pid that is not listed yet is a broker still starting: wait for it instead of a second one
    started = {node: pid if pid is not None else start(s, node) for node, pid in pids.items()}
    wait_ready(admin, brokers=len(cluster), watched={pid: node.log_path for node, pid in started.items()})
    timings_s["start_s"] = time.monotonic() - start_time
    if s.kafka_sasl:
        timings_s["users_s"] = ensure_principals(s, admin)
    return _up_result("started", s, dict(started), timings_s)


def _up_result(state: str, s: Settings, pids: Mapping[Node, int | None], timings_s: dict[str, float]) -> dict[str, Any]:
    shown = [{"node": node.id, "pid": pid, "bootstrap": node.address} for node, pid in pids.items()]
    only_pid = next(iter(pids.values())) if len(pids) == 1 else None
    return {"state": state, "pid": only_pid, "bootstrap": s.kafka_bootstrap, "nodes": shown, "timings_s": timings_s}


def down(s: Settings) -> str:
    if s.kafka_bootstrap_external:
        return "external (left alone)"
    cluster = nodes(on_disk(s))
    running = {node: pid for node in cluster if (pid := running_pid(node)) is not None}
    if not running:
        return "not running"
    stop_all(running)
    return "stopped" if len(cluster) == 1 else f"stopped {len(running)} of {len(cluster)} brokers"


def running_version(pid: int) -> str | None:
    """The Kafka version of a running broker, read from the core jar on its classpath."""
    args = cmdline(pid)
    if "-cp" not in args:
        return None
    libs = Path(args[args.index("-cp") + 1].rstrip("*"))
    jars = sorted(libs.glob("kafka_2.13-*.jar"))
    return jars[0].stem.removeprefix("kafka_2.13-") if jars else None


def status(s: Settings) -> dict[str, Any]:
    """The local Kafka's state as a whole ("running" only when every broker is listed) and each node's."""
    if s.kafka_bootstrap_external:
        reachable = answers(probe_access(s))
        return {"state": "external", "reachable": reachable, "bootstrap": s.kafka_bootstrap}
    s = on_disk(s)
    cluster = nodes(s)
    probe = probe_access(s)
    pids = {node: running_pid(node) for node in cluster}
    shown = [
        {"node": node.id, "state": _node_state(probe, node, pid), "pid": pid, "bootstrap": node.address}
        for node, pid in pids.items()
    ]
    live = [pid for pid in pids.values() if pid is not None]
    only_pid = live[0] if len(cluster) == 1 and live else None
    info: dict[str, Any] = {"pid": only_pid, "bootstrap": s.kafka_bootstrap, "nodes": shown}
    if not live:
        return {"state": "stopped", **info, "version": s.kafka_version}
    listed = broker_count(probe)
    # the metadata lists a killed broker until the controller fences it (seconds later): trust the pids too
    whole = listed == len(cluster) and len(live) == len(cluster)
    state = "running" if whole else "not answering" if listed == 0 else "degraded"
    return {"state": state, **info, "version": running_version(live[0])}


def _node_state(probe: KafkaAccess, node: Node, pid: int | None) -> str:
    if pid is None:
        return "stopped"
    return "running" if answers(dataclasses.replace(probe, bootstrap=node.address)) else "not answering"
