"""The live grid as long-running services under supervisor: `gridgov up`, `down`, `status` and `soak`.

Why supervisor (4.3): it daemonizes, restarts a program that exits (``autorestart``; a program that
dies within ``startsecs`` is retried ``startretries`` times with a growing delay, then left FATAL),
writes each program's output to its own log, and answers state over XML-RPC on a unix socket, so
`status` and `down` talk to it without pid files of our own. honcho runs a Procfile in the foreground
and restarts nothing; circus does what supervisor does but is less maintained.

Everything lives in ``GRID_HOME/live/``: ``plan.json`` (what `up` was asked to run, so a later `up`
adds to it), the generated ``supervisord.conf`` (0600: it may carry the validator's root secret),
the socket, supervisord's own log and pid file, and ``logs/<program>.log``. One program per service:
the validator, the meter (the grid's clock), one ``agent-<id>`` per participant with its own key
file, the sinks and the dashboard. supervisord manages only those, so `down` stops nothing else.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import xmlrpc.client
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
from confluent_kafka import Consumer, TopicPartition

from connectors.readmodel.agents import read_only_connection
from core.config import REPO_ROOT, Settings
from core.kafka_access import KafkaAccess
from core.process import WaitTimeoutError, cmdline, pid_alive, poll_until, read_pid, terminate

logger = logging.getLogger(__name__)

LIVE_DIR_NAME = "live"
SOCKET_PATH_MAX = 100  # AF_UNIX paths are at most 107 bytes
RPC_TIMEOUT_S = 10.0
START_TIMEOUT_S = 30.0  # supervisord answering on its socket
PROGRAMS_RUNNING_TIMEOUT_S = 60.0  # every program past its startsecs
SHUTDOWN_TIMEOUT_S = 120.0  # every program stopped in turn, each within STOP_WAIT_S
STOP_WAIT_S = 15
START_SECS = 3  # a program that stays up this long has started
START_RETRIES = 5  # failed starts in a row before supervisor gives up on it (FATAL)
PROGRAM_LOG_BYTES_MAX = "20MB"
SUPERVISOR_LOG_BYTES_MAX = "50MB"
KAFKA_TIMEOUT_S = 5.0
SINK_TOPICS = ("rejections", "incidents", "alerts")
RUNNING = "RUNNING"
STOPPED_STATES = ("STOPPED", "EXITED", "FATAL", None)
SPAWNED = re.compile(r"spawned: '([^']+)' with pid")
PROGRAM_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class LiveError(RuntimeError):
    """The live grid could not be started, reached or stopped."""


@dataclass(frozen=True)
class LivePaths:
    home: Path

    @property
    def dir(self) -> Path:
        return self.home / LIVE_DIR_NAME

    @property
    def plan(self) -> Path:
        return self.dir / "plan.json"

    @property
    def conf(self) -> Path:
        return self.dir / "supervisord.conf"

    @property
    def registry(self) -> Path:
        return self.dir / "registry.json"

    @property
    def log(self) -> Path:
        return self.dir / "supervisord.log"

    @property
    def pidfile(self) -> Path:
        return self.dir / "supervisord.pid"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def socket(self) -> Path:
        path = self.dir / "supervisor.sock"
        if len(str(path)) <= SOCKET_PATH_MAX:
            return path
        # A deep GRID_HOME (a test's temporary one): a short path that is still this home's alone.
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"gridgov-live-{digest}.sock"


@dataclass
class Plan:
    """What `up` runs; kept in ``plan.json`` so a later `up` (or `up --add-agent`) extends it."""

    scenario: str
    market: str
    seed: int
    tick_s: float
    agents: dict[str, str] = field(default_factory=dict)  # agent -> its key file
    sinks: bool = True
    dashboard_port: int | None = None  # None: no dashboard
    validator_metrics_port: int = 0

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))

    @classmethod
    def load(cls, path: Path) -> Plan | None:
        try:
            return cls(**orjson.loads(path.read_bytes()))
        except FileNotFoundError:
            return None


@dataclass(frozen=True)
class Program:
    name: str
    argv: tuple[str, ...]
    priority: int  # supervisor starts lower first and stops them in reverse
    environment: tuple[tuple[str, str], ...] = ()


def program_name(agent: str) -> str:
    """An agent's program: supervisor's names take no ':' or '.', which agent ids may hold."""
    return "agent-" + PROGRAM_NAME_UNSAFE.sub("_", agent)


def programs(plan: Plan, paths: LivePaths, meter_key: Path, validator_env: dict[str, str]) -> list[Program]:
    """The services of ``plan``, validator first; ``validator_env`` goes to the validator alone."""
    gridgov = (sys.executable, "-m", "gridgov.cli")
    scenario = ("--scenario", plan.scenario, "--seed", str(plan.seed))
    clock = ("--market", plan.market, "--tick-s", str(plan.tick_s))
    found = [
        Program(
            "validator",
            (*gridgov, "validator", "--metrics-port", str(plan.validator_metrics_port)),
            100,
            tuple(sorted(validator_env.items())),
        ),
        Program(
            "meter",
            (*gridgov, "meter", "--key", str(meter_key), "--registry", str(paths.registry), *scenario, *clock),
            200,
        ),
    ]
    for agent, key in sorted(plan.agents.items()):
        argv = (*gridgov, "agent", "run", "--key", key, *scenario, "--market", plan.market)
        found.append(Program(program_name(agent), argv, 300))
    if plan.sinks:
        found.append(Program("sinks", (*gridgov, "sinks"), 400))
    if plan.dashboard_port is not None:
        found.append(Program("dashboard", (*gridgov, "dashboard", "run", "--port", str(plan.dashboard_port)), 500))
    return found


def _conf_text(value: object) -> str:
    # supervisor's config parser expands %(name)s: a literal % is written twice.
    return str(value).replace("%", "%%")


def render_conf(paths: LivePaths, found: list[Program]) -> str:
    """supervisord.conf for ``found``: one [program:x] each, restarted on exit, its own log."""
    lines = [
        "; generated by `gridgov up`: edits are replaced by the next one",
        "[unix_http_server]",
        f"file={_conf_text(paths.socket)}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={_conf_text(paths.log)}",
        f"logfile_maxbytes={SUPERVISOR_LOG_BYTES_MAX}",
        "logfile_backups=2",
        f"pidfile={_conf_text(paths.pidfile)}",
        f"childlogdir={_conf_text(paths.logs)}",
        "nodaemon=false",
        "loglevel=info",
        "identifier=gridgov-live",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_conf_text(paths.socket)}",
    ]
    for program in found:
        lines += [
            "",
            f"[program:{program.name}]",
            f"command={_conf_text(shlex.join(program.argv))}",
            f"directory={_conf_text(REPO_ROOT)}",
            f"priority={program.priority}",
            "autostart=true",
            "autorestart=true",
            f"startsecs={START_SECS}",
            f"startretries={START_RETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={STOP_WAIT_S}",
            # the dashboard's streamlit is a child of its command: stop and kill the whole group
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_conf_text(paths.logs / f'{program.name}.log')}",
            f"stdout_logfile_maxbytes={PROGRAM_LOG_BYTES_MAX}",
            "stdout_logfile_backups=2",
        ]
        if program.environment:
            assert all('"' not in v and "\n" not in v for _, v in program.environment), "unquotable value"
            lines.append("environment=" + ",".join(f'{k}="{_conf_text(v)}"' for k, v in program.environment))
    return "\n".join(lines) + "\n"


def write_private_text(path: Path, text: str) -> None:
    """Write (or replace) ``path`` readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# --- talking to supervisord -------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: Path, timeout_s: float) -> None:
        super().__init__()
        self._path, self._timeout_s = path, timeout_s

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path, self._timeout_s)


def client(paths: LivePaths) -> Any:
    """supervisord's XML-RPC interface (``supervisor.*`` methods), every call bounded by RPC_TIMEOUT_S."""
    return xmlrpc.client.ServerProxy("http://localhost", transport=_UnixTransport(paths.socket, RPC_TIMEOUT_S))


def running(paths: LivePaths) -> bool:
    """Whether this home's supervisord answers."""
    try:
        return bool(client(paths).supervisor.getState()["statename"] == RUNNING)
    except (OSError, xmlrpc.client.Error):
        return False


def start_supervisord(paths: LivePaths, env: dict[str, str]) -> None:
    """Start supervisord on the generated conf (it daemonizes) and wait until it answers."""
    if paths.log.exists():  # restarts are counted from this start's log
        paths.log.replace(paths.log.with_name(paths.log.name + ".previous"))
    paths.logs.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "supervisor.supervisord", "-c", str(paths.conf)]
    done = _run_to_completion(command, env)
    if done:
        raise LiveError(f"supervisord did not start: {done}")
    try:
        poll_until(lambda: running(paths), START_TIMEOUT_S, "supervisord to answer")
    except WaitTimeoutError as exc:
        raise LiveError(f"{exc}; see {paths.log}") from exc


def _run_to_completion(command: list[str], env: dict[str, str]) -> str:
    """Run ``command`` to completion (bounded); its error output when it failed, else ''."""
    done = subprocess.run(
        command, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=START_TIMEOUT_S, start_new_session=True, check=False,
    )  # fmt: skip
    return "" if done.returncode == 0 else (done.stderr or done.stdout).strip()[-2000:]


def apply_conf(paths: LivePaths) -> dict[str, list[str]]:
    """What `supervisorctl update` does: reread the conf, then add, replace or remove programs."""
    rpc = client(paths).supervisor
    [[added, changed, removed]] = rpc.reloadConfig()
    for name in [*removed, *changed]:
        rpc.stopProcessGroup(name)
        rpc.removeProcessGroup(name)
    for name in [*changed, *added]:
        rpc.addProcessGroup(name)
    return {"added": sorted(added), "changed": sorted(changed), "removed": sorted(removed)}


def wait_programs_running(paths: LivePaths, names: list[str], timeout_s: float = PROGRAMS_RUNNING_TIMEOUT_S) -> None:
    """Until every program in ``names`` is RUNNING; a FATAL one fails at once, naming its log."""
    rpc = client(paths).supervisor
    states: dict[str, str] = {}

    def all_running() -> bool:
        states.update({p["name"]: p["statename"] for p in rpc.getAllProcessInfo()})
        fatal = [n for n in names if states.get(n) == "FATAL"]
        if fatal:
            raise LiveError(f"{fatal} could not start; see {paths.logs}/<name>.log")
        return all(states.get(n) == RUNNING for n in names)

    try:
        poll_until(all_running, timeout_s, "every live service to run")
    except WaitTimeoutError as exc:
        late = sorted(n for n in names if states.get(n) != RUNNING)
        raise LiveError(f"{exc}: {late} not running; see {paths.logs}") from exc


def shutdown(paths: LivePaths) -> list[str]:
    """Stop every program and supervisord itself; the names of the programs it ran."""
    pid = read_pid(paths.pidfile)
    names: list[str] = []
    if running(paths):
        rpc = client(paths).supervisor
        names = sorted(p["name"] for p in rpc.getAllProcessInfo())
        # supervisord's own shutdown stops one program after the other; the producers are signalled
        # together instead, and the validator last, so it decides what they had already published.
        producers = [n for n in names if n != "validator"]
        for name in producers:
            try:
                rpc.stopProcess(name, False)
            except xmlrpc.client.Fault:
                continue  # not running: nothing to stop
        try:
            poll_until(lambda: _all_stopped(rpc, producers), SHUTDOWN_TIMEOUT_S, "the live services to stop")
        except WaitTimeoutError:
            logger.warning("services still stopping; supervisord kills what is left", extra={"home": str(paths.home)})
        rpc.shutdown()
    if pid is not None and _is_supervisord(pid):
        try:
            poll_until(lambda: not pid_alive(pid), SHUTDOWN_TIMEOUT_S, f"supervisord (pid {pid}) to stop")
        except WaitTimeoutError:
            terminate(pid, STOP_WAIT_S)
    return names


def _all_stopped(rpc: Any, names: list[str]) -> bool:
    states = {p["name"]: p["statename"] for p in rpc.getAllProcessInfo()}
    return all(states.get(n) in STOPPED_STATES for n in names)


def _is_supervisord(pid: int) -> bool:
    return pid_alive(pid) and any("supervisord" in part for part in cmdline(pid))


# --- what each service is doing ----------------------------------------------------------------------


@dataclass
class ServiceStatus:
    name: str
    state: str
    pid: int | None = None
    uptime_s: int | None = None
    restarts: int = 0
    rss_kb: int | None = None
    lag: int | None = None  # messages its consumer has yet to process
    decisions: int | None = None  # validator: all; meter and agents: their own proposals decided
    last: str = ""


def spawn_counts(log_text: str) -> Counter[str]:
    """program -> times supervisord spawned it, from its log: restarts are that minus the first start."""
    return Counter(match.group(1) for match in SPAWNED.finditer(log_text))


def process_tree_rss_kb(root: int, parents: dict[int, int]) -> int:
    """Resident memory of ``root`` and its descendants (``parents``: pid -> parent pid), in KiB."""
    tree, frontier = {root}, [root]
    while frontier:  # bounded: each pid enters the tree at most once
        children = [pid for pid, ppid in parents.items() if ppid == frontier[-1] and pid not in tree]
        frontier.pop()
        tree.update(children)
        frontier += children
    return sum(_rss_kb(pid) for pid in tree)


def _rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else 0


def process_parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone since the listing
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def gather(settings: Settings, paths: LivePaths, plan: Plan) -> list[ServiceStatus]:
    """Every program's state from supervisord, with figures from the ledger and the broker."""
    try:
        infos = client(paths).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        infos = []
    agents_by_program = {program_name(agent): agent for agent in plan.agents}
    spawns = spawn_counts(paths.log.read_text(errors="replace")) if paths.log.exists() else Counter()
    parents = process_parents()
    found = []
    for info in sorted(infos, key=lambda i: (i["name"] != "validator", i["name"] != "meter", i["name"])):
        alive = info["statename"] == RUNNING and info["pid"]
        found.append(
            ServiceStatus(
                name=info["name"],
                state=str(info["statename"]),
                pid=int(info["pid"]) if alive else None,
                uptime_s=int(info["now"] - info["start"]) if alive else None,
                restarts=max(0, spawns[info["name"]] - 1),
                rss_kb=process_tree_rss_kb(int(info["pid"]), parents) if alive else None,
            )
        )
    _add_figures(settings, found, agents_by_program, plan)
    return found


def _add_figures(settings: Settings, found: list[ServiceStatus], agents: dict[str, str], plan: Plan) -> None:
    try:
        conn = read_only_connection(settings.reader_database_url)
    except psycopg.Error as exc:
        for service in found:
            service.last = f"database unreachable: {type(exc).__name__}"
        return
    with conn:
        for service in found:
            try:
                _figures(conn, settings, service, agents, plan)
            except (psycopg.Error, RuntimeError) as exc:  # an unmigrated database, a broker away
                service.last = f"unknown ({type(exc).__name__})"


def _figures(conn: Any, settings: Settings, service: ServiceStatus, agents: dict[str, str], plan: Plan) -> None:
    topic = settings.topic("proposals")
    if service.name == "validator":
        [(accepted, rejected)] = conn.execute(
            "SELECT (SELECT count(*) FROM ledger), (SELECT count(*) FROM rejections)"
        ).fetchall()
        service.decisions = int(accepted) + int(rejected)
        head = conn.execute("SELECT seq, kind, tick FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        service.last = f"seq {head[0]} {head[1]} (tick {head[2]})" if head else "no ledger yet"
        [(next_offset,)] = conn.execute(
            "SELECT coalesce(max(next_offset), 0) FROM consumer_position WHERE topic = %s", (topic,)
        ).fetchall()
        service.lag = max(0, _high_watermarks(settings.kafka("admin"), [topic])[topic] - int(next_offset))
    elif service.name == "meter" or service.name in agents:
        agent = "meter" if service.name == "meter" else agents[service.name]
        [(accepted, rejected)] = conn.execute(
            "SELECT (SELECT count(*) FROM ledger WHERE agent = %(a)s), "
            "(SELECT count(*) FROM rejections WHERE agent = %(a)s)",
            {"a": agent},
        ).fetchall()
        service.decisions = int(accepted) + int(rejected)
        service.last = _last_decision(conn, agent)
    elif service.name == "sinks":
        group = f"{settings.topic_prefix}-sinks"
        topics = [settings.topic(t) for t in SINK_TOPICS]
        service.lag = _group_lag(settings.kafka("admin"), group, topics)
        [(delivered,)] = conn.execute("SELECT count(*) FROM sink_deliveries WHERE state = 'delivered'").fetchall()
        service.decisions = int(delivered)
        service.last = f"{delivered} delivered (or in the outbox)"
    elif service.name == "dashboard":
        service.last = f"http://{settings.dashboard_address}:{plan.dashboard_port}"


def _last_decision(conn: Any, agent: str) -> str:
    row = conn.execute(
        "SELECT * FROM ("
        " (SELECT source_offset, tick, kind, 'accepted' FROM ledger WHERE agent = %(a)s"
        "  ORDER BY seq DESC LIMIT 1)"
        " UNION ALL"
        " (SELECT source_offset, tick, kind, reason_code FROM rejections WHERE agent = %(a)s"
        "  ORDER BY source_offset DESC LIMIT 1)"
        ") AS last ORDER BY source_offset DESC LIMIT 1",
        {"a": agent},
    ).fetchone()
    suspended = conn.execute("SELECT suspended FROM participants WHERE agent = %s", (agent,)).fetchone()
    flag = " (agent suspended)" if suspended and suspended[0] else ""
    return (f"tick {row[1]} {row[2]} {row[3]}" if row else "nothing decided yet") + flag


# The probes' own client log: closed within a second, they leave librdkafka mid-login to the group
# coordinator, which it reports as a failure; a real failure surfaces as the call's exception.
_PROBE_LOG = logging.getLogger("gridgov.live.kafka_probe")
_PROBE_LOG.setLevel(logging.CRITICAL)


def _consumer(kafka: KafkaAccess, group: str) -> Consumer:
    # Never subscribes: it reads offsets only, so it never joins (or disturbs) the group it names.
    return Consumer(kafka.config(**{"group.id": group, "enable.auto.commit": False}), logger=_PROBE_LOG)


def _high_watermarks(kafka: KafkaAccess, topics: list[str]) -> dict[str, int]:
    consumer = _consumer(kafka, "gridgov-live-status")
    try:
        return {
            t: int(consumer.get_watermark_offsets(TopicPartition(t, 0), timeout=KAFKA_TIMEOUT_S)[1]) for t in topics
        }
    finally:
        consumer.close()


def _group_lag(kafka: KafkaAccess, group: str, topics: list[str]) -> int:
    """Records on ``topics`` that ``group`` has not committed past (a partition it never committed
    counts from the log's start)."""
    consumer = _consumer(kafka, group)
    try:
        committed = consumer.committed([TopicPartition(t, 0) for t in topics], timeout=KAFKA_TIMEOUT_S)
        lag = 0
        for partition in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(partition.topic, 0), timeout=KAFKA_TIMEOUT_S)
            position = partition.offset if partition.offset >= 0 else low
            lag += max(0, int(high) - int(position))
        return lag
    finally:
        consumer.close()


STATUS_HEADERS = ("SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "LAG", "DECISIONS", "RSS MB", "LAST DECISION")


def status_rows(found: list[ServiceStatus]) -> list[list[Any]]:
    return [
        [
            s.name,
            "up" if s.state == RUNNING else f"down ({s.state.lower()})",
            s.pid,
            None if s.uptime_s is None else f"{s.uptime_s}s",
            s.restarts,
            "-" if s.lag is None else s.lag,
            "-" if s.decisions is None else s.decisions,
            None if s.rss_kb is None else f"{s.rss_kb / 1024:.0f}",
            s.last,
        ]
        for s in found
    ]
