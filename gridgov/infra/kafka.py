"""A single-node Kafka (KRaft, broker+controller) run from Maven Central jars, without Docker.

Layout under ``<home>/kafka``: ``libs-<version>/`` (jars, fetched once), ``server.properties`` (0600:
it holds the admin password), ``cluster.id``, ``data/`` (formatted once), ``kafka.log``, ``kafka.pid``.

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
import logging
import os
import shutil
import subprocess
import time
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
FORMAT_TIMEOUT_S = 120
READY_TIMEOUT_S = 90.0
# a single-node broker shuts down in a few seconds; more than this means it is stuck
STOP_TIMEOUT_S = 60.0
COMPLETE_MARKER = ".complete"
MAIN_CLASS = "kafka.Kafka"
# librdkafka logs every refused connection; route that through logging instead of stderr
_RDKAFKA_LOGGER = logging.getLogger("gridgov.infra.librdkafka")
ADMIN: Principal = "admin"
# written once the metadata holds the admin's SCRAM credential (at format time, or by the upgrade)
SECURED_MARKER = "secured"
# Kafka's minimum for SCRAM-SHA-256; each login costs the broker this many HMACs once per connection
SCRAM_ITERATIONS = 4096
SCRAM_TIMEOUT_S = 30.0
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


def root(s: Settings) -> Path:
    return s.home / "kafka"


def libs_dir(s: Settings) -> Path:
    return root(s) / f"libs-{s.kafka_version}"


def log_path(s: Settings) -> Path:
    return root(s) / "kafka.log"


def pid_path(s: Settings) -> Path:
    return root(s) / "kafka.pid"


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


def server_properties(s: Settings, secured: bool) -> dict[str, str]:
    controller = f"{HOST}:{s.kafka_controller_port}"
    client = "CLIENT" if secured else "PLAINTEXT"
    listeners = f"{client}://{HOST}:{s.kafka_port},CONTROLLER://{controller}"
    protocol = "SASL_PLAINTEXT" if secured else "PLAINTEXT"
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": controller,
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": client,
        "listener.security.protocol.map": f"CONTROLLER:{protocol},{client}:{protocol}",
        **(_security_properties(admin_password(s)) if secured else {}),
        "log.dirs": str(root(s) / "data"),
        "num.partitions": "1",
        # every topic is created by connectors.kafka_admin with its own partitions and retention
        "auto.create.topics.enable": "false",
        # one broker: internal topics cannot have more than one replica
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
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


def write_properties(s: Settings, secured: bool) -> Path:
    path = root(s) / "server.properties"
    lines = [f"{key}={value}" for key, value in server_properties(s, secured).items()]
    text = "# generated by gridgov/infra/kafka.py on every start; edits are lost\n" + "\n".join(lines) + "\n"
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


def java_cmd(s: Settings, heap_mb: int) -> list[str]:
    java_home = os.environ.get("JAVA_HOME")
    java = shutil.which("java", path=f"{java_home}/bin") if java_home else shutil.which("java")
    if java is None:
        raise InfraError("java is needed to run Kafka; run scripts/setup.sh (openjdk-17-jre-headless)")
    return [
        java, f"-Xms{min(256, heap_mb)}m", f"-Xmx{heap_mb}m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={INFRA_DIR / 'log4j2.properties'}", f"-Dgrid.kafka.log={log_path(s)}",
        "-cp", f"{libs_dir(s)}/*",
    ]  # fmt: skip


def format_storage(s: Settings, properties: Path) -> float:
    """Format the KRaft storage once; return seconds (0 when already formatted)."""
    if (root(s) / "data" / "meta.properties").exists():
        return 0.0
    start = time.monotonic()
    cmd = [
        *java_cmd(s, heap_mb=256), "kafka.tools.StorageTool", "format",
        "-t", cluster_id(s), "-c", str(properties), "--standalone",
    ]  # fmt: skip
    if s.kafka_sasl:
        credential = f"name={ADMIN},iterations={SCRAM_ITERATIONS},password={admin_password(s)}"
        cmd += ["--add-scram", f"SCRAM-SHA-256=[{credential}]"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise InfraError(f"formatting Kafka storage failed:\n{done.stdout}{done.stderr}")
    if s.kafka_sasl:
        secured_marker(s).write_text("admin SCRAM credential written at format time\n")
    elapsed_s = time.monotonic() - start
    logger.info("formatted Kafka storage in %.1f s", elapsed_s)
    return elapsed_s


def running_pid(s: Settings) -> int | None:
    """Pid of the broker that ``up`` started, if it is still that broker; a stale pid file is removed."""
    pid = read_pid(pid_path(s))
    if pid is None:
        return None
    if pid_alive(pid) and MAIN_CLASS in cmdline(pid):
        return pid
    logger.info("removing stale Kafka pid file (pid %d is gone)", pid)
    pid_path(s).unlink(missing_ok=True)
    return None


def recorded_bootstrap(s: Settings) -> str | None:
    lines = pid_path(s).read_text().splitlines() if pid_path(s).exists() else []
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


def answers(kafka: KafkaAccess, timeout_s: float = 2.0) -> bool:
    """True when a broker at ``kafka.bootstrap`` serves metadata to ``kafka``'s identity: the same call every
    client starts with (so a refused login answers False)."""
    if not any(port_open(host, port) for host, port in _hosts(kafka.bootstrap)):
        return False
    admin = AdminClient(kafka.config(), logger=_RDKAFKA_LOGGER)
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


def wait_ready(
    kafka: KafkaAccess, timeout_s: float = READY_TIMEOUT_S, pid: int | None = None, log: Path | None = None
) -> float:
    """Wait until the broker answers ``kafka``; return seconds. Fails fast if ``pid`` dies, showing ``log``'s tail."""
    alive = (lambda: pid_alive(pid)) if pid is not None else None
    try:
        return poll_until(lambda: answers(kafka), timeout_s, f"Kafka at {kafka.bootstrap}", alive)
    except InfraError as exc:
        tail = f"\n--- last lines of {log} ---\n{log_tail(log)}" if log else ""
        raise InfraError(f"{exc}{tail}") from exc


def start(s: Settings, properties: Path) -> int:
    for port in (s.kafka_port, s.kafka_controller_port):
        if port_open(HOST, port):
            raise InfraError(f"port {port} is already in use by another process; set GRID_KAFKA_PORT/_CONTROLLER_PORT")
    cmd = [*java_cmd(s, s.kafka_heap_mb), MAIN_CLASS, str(properties)]
    pid = spawn_detached(cmd, log_path(s), cwd=root(s))
    # the second line lets a later `up` with other ports notice the broker it cannot reach
    pid_path(s).write_text(f"{pid}\n{s.kafka_bootstrap}\n")
    logger.info("started Kafka broker pid %d on %s, log %s", pid, s.kafka_bootstrap, log_path(s))
    return pid


def stop(s: Settings, pid: int) -> None:
    logger.info("stopping Kafka broker pid %d", pid)
    terminate(pid, STOP_TIMEOUT_S)
    pid_path(s).unlink(missing_ok=True)


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
    pid = start(s, write_properties(s, secured=False))
    try:
        unauthenticated = KafkaAccess(s.kafka_bootstrap)
        wait_ready(unauthenticated, pid=pid, log=log_path(s))
        upsert_users(unauthenticated, {ADMIN: admin_password(s)})
    finally:
        stop(s, pid)
    secured_marker(s).write_text("admin SCRAM credential added to an existing cluster\n")
    return time.monotonic() - start_time


def ensure_principals(s: Settings, admin: KafkaAccess) -> float:
    """Give every principal but admin its SCRAM user, and each its password and properties file; return seconds."""
    start_time = time.monotonic()
    passwords = {p: generated_secret(s.home, f"kafka-{p}") for p in PRINCIPALS}
    upsert_users(admin, {p: pw for p, pw in passwords.items() if p != ADMIN})
    for principal, password in passwords.items():
        write_private(properties_path(s.home, principal), client_properties(principal, password))
    # the broker applies the new credentials from its metadata log a moment later
    wait_ready(KafkaAccess(s.kafka_bootstrap, "validator", passwords["validator"]), SCRAM_TIMEOUT_S)
    return time.monotonic() - start_time


def missing_principals(s: Settings) -> list[str]:
    return [p for p in PRINCIPALS if not properties_path(s.home, p).exists()]


def up(s: Settings) -> dict[str, Any]:
    """Fetch, format, secure and start as needed, then wait until the broker answers. Harmless when running."""
    if s.kafka_bootstrap_external:
        ready_s = wait_ready(probe_access(s))
        return {"state": "external", "bootstrap": s.kafka_bootstrap, "timings_s": {"ready_s": ready_s}}
    root(s).mkdir(parents=True, exist_ok=True)
    pid = running_pid(s)
    recorded = recorded_bootstrap(s)
    if pid is not None and recorded not in (None, s.kafka_bootstrap):
        raise InfraError(
            f"the broker started earlier (pid {pid}) listens on {recorded}, not {s.kafka_bootstrap}: "
            "run `gridgov infra down --only kafka` with the old settings first"
        )
    admin = KafkaAccess(s.kafka_bootstrap, ADMIN, admin_password(s)) if s.kafka_sasl else KafkaAccess(s.kafka_bootstrap)
    if pid is not None and answers(admin):
        # a principal added since the broker was started (n8n) gets its user without a restart
        users_s = ensure_principals(s, admin) if s.kafka_sasl and missing_principals(s) else 0.0
        return {
            "state": "already running",
            "pid": pid,
            "bootstrap": s.kafka_bootstrap,
            "timings_s": {"users_s": users_s},
        }
    timings_s = {"fetch_s": fetch_jars(s)}
    formatted = (root(s) / "data" / "meta.properties").exists()
    if s.kafka_sasl and formatted and not secured_marker(s).exists():
        if pid is not None:
            stop(s, pid)  # a broker started before it was secured: restart it secured
            pid = None
        timings_s["secure_s"] = secure_in_place(s)
    properties = write_properties(s, s.kafka_sasl)
    timings_s["format_s"] = format_storage(s, properties)
    start_time = time.monotonic()
    # a live pid that does not answer yet is a broker still starting: wait for it instead of a second one
    pid = pid if pid is not None else start(s, properties)
    wait_ready(admin, pid=pid, log=log_path(s))
    timings_s["start_s"] = time.monotonic() - start_time
    if s.kafka_sasl:
        timings_s["users_s"] = ensure_principals(s, admin)
    return {"state": "started", "pid": pid, "bootstrap": s.kafka_bootstrap, "timings_s": timings_s}


def down(s: Settings) -> str:
    if s.kafka_bootstrap_external:
        return "external (left alone)"
    pid = running_pid(s)
    if pid is None:
        return "not running"
    stop(s, pid)
    return "stopped"


def running_version(pid: int) -> str | None:
    """The Kafka version of a running broker, read from the core jar on its classpath."""
    args = cmdline(pid)
    if "-cp" not in args:
        return None
    libs = Path(args[args.index("-cp") + 1].rstrip("*"))
    jars = sorted(libs.glob("kafka_2.13-*.jar"))
    return jars[0].stem.removeprefix("kafka_2.13-") if jars else None


def status(s: Settings) -> dict[str, Any]:
    if s.kafka_bootstrap_external:
        reachable = answers(probe_access(s))
        return {"state": "external", "reachable": reachable, "bootstrap": s.kafka_bootstrap}
    pid = running_pid(s)
    if pid is None:
        return {"state": "stopped", "pid": None, "bootstrap": s.kafka_bootstrap, "version": s.kafka_version}
    state = "running" if answers(probe_access(s)) else "not answering"
    return {"state": state, "pid": pid, "bootstrap": s.kafka_bootstrap, "version": running_version(pid)}
