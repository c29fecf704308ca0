"""A PostgreSQL cluster of the project's own, on its own port, from the distribution's server binaries.

Layout under ``<home>/pg``: ``data/`` (initdb'd once, holds postmaster.pid), ``run/`` (socket), ``pg.log``.
As root, the server runs as the ``postgres`` system user (initdb and postgres refuse root).

Logins (``pg_hba.conf``, rewritten by every ``up``): TCP takes SCRAM-SHA-256 passwords only; each login
role of ``core.pg_access`` gets one generated into ``GRID_HOME/credentials`` (0600). The owner also
logs in without one over the socket, whose directory (0700) only the server's system user and root can
enter: that is how ``up`` sets the passwords, also on a cluster made before it had any (which it
upgrades in place: passwords first, then the stricter pg_hba.conf, then a reload).
"""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from core import pg_access
from core.config import Settings
from core.credentials import generated_secret
from core.process import InfraError, cmdline, log_tail, pid_alive, poll_until, read_pid

logger = logging.getLogger(__name__)

PG_LIB = Path("/usr/lib/postgresql")
PG_USER = "postgres"
INSTALL_TIMEOUT_S = 900
INITDB_TIMEOUT_S = 120
PG_CTL_TIMEOUT_S = 60
READY_TIMEOUT_S = 60.0
# a Unix socket path is limited to 107 bytes; deep checkouts (CI temp dirs) can exceed it
SOCKET_PATH_MAX = 100
HBA_FILE_NAME = "pg_hba.conf"
# First match wins. The socket line is safe because of the directory's 0700, not because of trust.
HBA = f"""# written by gridgov infra up (gridgov/infra/postgres.py); changes are overwritten
local   all   {pg_access.OWNER}   trust
local   all   all        reject
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""


def root(s: Settings) -> Path:
    return s.home / "pg"


def data_dir(s: Settings) -> Path:
    return root(s) / "data"


def log_path(s: Settings) -> Path:
    return root(s) / "pg.log"


def admin_url(s: Settings) -> str:
    """The owner on the always-present ``postgres`` database over the socket: for readiness checks,
    CREATE DATABASE and setting the roles' passwords."""
    return make_conninfo(host=str(socket_dir(s)), port=s.pg_port, user=pg_access.OWNER, dbname="postgres")


def find_bindir() -> Path | None:
    """The newest installed server's bin directory, e.g. /usr/lib/postgresql/15/bin."""
    found = [p.parent for p in PG_LIB.glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    return max(found, key=lambda p: int(p.parent.name)) if found else None


def ensure_installed() -> tuple[Path, float]:
    """Return the server bin directory, installing Debian's ``postgresql`` first if needed, and the seconds spent."""
    bindir = find_bindir()
    if bindir is not None:
        return bindir, 0.0
    if os.geteuid() != 0:
        raise InfraError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; install the 'postgresql' "
            "package as root (scripts/setup.sh does) or set GRID_DATABASE_URL to a running server"
        )
    start = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    logger.info("installing PostgreSQL with apt-get")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        if done.returncode != 0:
            raise InfraError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    bindir = find_bindir()
    if bindir is None:
        raise InfraError("apt-get installed postgresql but no initdb appeared under /usr/lib/postgresql/*/bin")
    return bindir, time.monotonic() - start


def _as_pg_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _run_pg(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _as_pg_user(cmd), capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL, cwd="/"
    )


def make_traversable(path: Path) -> None:
    """Give every ancestor of ``path`` o+x so the postgres user can reach it (CI checkouts live in 0700 dirs)."""
    for ancestor in reversed(path.parents):
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            ancestor.chmod(mode | stat.S_IXOTH)
            logger.warning("chmod o+x %s so the postgres user can reach %s", ancestor, path)


def socket_dir(s: Settings) -> Path:
    preferred = root(s) / "run"
    if len(str(preferred / f".s.PGSQL.{s.pg_port}")) <= SOCKET_PATH_MAX:
        return preferred
    return Path(tempfile.gettempdir()) / f"gridgov-pg-{s.pg_port}"


def prepare_dirs(s: Settings) -> None:
    for path in (root(s), socket_dir(s)):
        path.mkdir(parents=True, exist_ok=True)
    socket_dir(s).chmod(0o700)  # whoever can enter it logs in as the owner without a password
    if os.geteuid() != 0:
        return
    make_traversable(root(s))
    user = pwd.getpwnam(PG_USER)
    for path in (root(s), socket_dir(s)):
        os.chown(path, user.pw_uid, user.pw_gid)


def initdb(s: Settings, bindir: Path) -> float:
    """Create the cluster once; return seconds (0 when it exists)."""
    data = data_dir(s)
    if (data / "PG_VERSION").exists():
        return 0.0
    if data.exists():
        logger.warning("removing %s: an earlier initdb did not finish", data)
        shutil.rmtree(data)
    start = time.monotonic()
    # locale C: independent of the caller's LANG (which may name a locale that is not installed)
    cmd = [
        str(bindir / "initdb"), "-D", str(data), "--auth-local=trust", "--auth-host=scram-sha-256",
        "-U", PG_USER, "-E", "UTF8", "--locale=C",
    ]  # fmt: skip
    done = _run_pg(cmd, INITDB_TIMEOUT_S)
    if done.returncode != 0:
        raise InfraError(f"initdb failed:\n{done.stdout}{done.stderr}")
    elapsed_s = time.monotonic() - start
    logger.info("initialised PostgreSQL cluster %s in %.1f s", data, elapsed_s)
    return elapsed_s


def server_options(s: Settings) -> list[str]:
    options = [
        f"-p {s.pg_port}", f"-k {shlex.quote(str(socket_dir(s)))}", "-c listen_addresses=127.0.0.1",
        "-c max_connections=100", "-c shared_buffers=256MB",
    ]  # fmt: skip
    # GRID_PG_FAST trades crash safety for speed: for throwaway test clusters only, never for benchmarks
    if s.pg_fast:
        options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    return options


def running_pid(s: Settings) -> int | None:
    """The postmaster's pid from postmaster.pid, if that process is alive and still a postgres."""
    pid = read_pid(data_dir(s) / "postmaster.pid")
    if pid is None or not pid_alive(pid):
        return None
    return pid if "postgres" in " ".join(cmdline(pid)[:1]) else None


def answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def server_version(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError:
        return None
    return row[0] if row else None


def wait_ready(url: str, timeout_s: float = READY_TIMEOUT_S) -> float:
    return poll_until(lambda: answers(url), timeout_s, "PostgreSQL")


def pg_ctl_start(s: Settings, bindir: Path) -> None:
    cmd = [
        str(bindir / "pg_ctl"), "-D", str(data_dir(s)), "-l", str(log_path(s)), "-w", "-t", str(PG_CTL_TIMEOUT_S),
        "-o", " ".join(server_options(s)), "start",
    ]  # fmt: skip
    done = _run_pg(cmd, PG_CTL_TIMEOUT_S + 10)
    if done.returncode != 0:
        tail = log_tail(log_path(s))
        raise InfraError(
            f"pg_ctl start failed:\n{done.stdout}{done.stderr}\n--- last lines of {log_path(s)} ---\n{tail}"
        )
    logger.info("started PostgreSQL on 127.0.0.1:%d, log %s", s.pg_port, log_path(s))


def create_database(s: Settings) -> float:
    start = time.monotonic()
    with psycopg.connect(admin_url(s), autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (s.pg_database,)).fetchone():
            return 0.0
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(s.pg_database)))
        except psycopg.errors.DuplicateDatabase:
            return 0.0  # a concurrent `up` created it first
    logger.info("created database %s", s.pg_database)
    return time.monotonic() - start


def _shown_url(s: Settings) -> str:
    return pg_access.redacted(s.database_url)


def set_passwords(s: Settings) -> None:
    """Give each login role its generated password (creating the role if the migrations have not yet)."""
    with psycopg.connect(admin_url(s), autocommit=True, connect_timeout=5) as conn:
        for role in pg_access.LOGIN_ROLES:
            password = generated_secret(s.home, pg_access.password_name(role))
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            # PASSWORD takes no bind parameter; sql.Literal quotes it. password_encryption is scram-sha-256.
            query = sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            conn.execute(query)


def require_passwords(s: Settings) -> bool:
    """Write the pg_hba.conf above; True if it changed (the server must reload it)."""
    path = data_dir(s) / HBA_FILE_NAME
    if path.read_text() == HBA:
        return False
    path.write_text(HBA)
    logger.info("%s now takes passwords on TCP (was: trust)", path)
    return True


def secure(s: Settings) -> None:
    """Passwords first, then the pg_hba.conf that requires them: no moment locks the services out."""
    set_passwords(s)
    if require_passwords(s):
        with psycopg.connect(admin_url(s), autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT pg_reload_conf()")


def up(s: Settings) -> dict[str, Any]:
    """Install, initdb and start as needed, then secure the logins and ensure the database exists.
    Harmless when running."""
    if s.database_url_external:
        ready_s = wait_ready(s.database_url_external)
        return {"state": "external", "url": _shown_url(s), "timings_s": {"ready_s": ready_s}}
    pid = running_pid(s)
    if pid is not None and answers(admin_url(s)):
        prepare_dirs(s)
        secure(s)
        create_database(s)
        return {"state": "already running", "pid": pid, "url": _shown_url(s), "timings_s": {}}
    bindir, install_s = ensure_installed()
    prepare_dirs(s)
    timings_s = {"install_s": install_s, "initdb_s": initdb(s, bindir)}
    start_time = time.monotonic()
    if pid is None:
        pg_ctl_start(s, bindir)
    wait_ready(admin_url(s))
    secure(s)
    timings_s["start_s"] = time.monotonic() - start_time
    timings_s["createdb_s"] = create_database(s)
    return {"state": "started", "pid": running_pid(s), "url": _shown_url(s), "timings_s": timings_s}


def down(s: Settings) -> str:
    if s.database_url_external:
        return "external (left alone)"
    bindir = find_bindir()
    if running_pid(s) is None or bindir is None:
        return "not running"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data_dir(s)), "-w", "-t", str(PG_CTL_TIMEOUT_S)]
    done = _run_pg([*pg_ctl, "-m", "fast", "stop"], PG_CTL_TIMEOUT_S + 10)
    if done.returncode != 0:
        # fast shutdown waits for running transactions to roll back; immediate does not (crash recovery next start)
        logger.warning("pg_ctl stop -m fast failed (%s); stopping with -m immediate", done.stderr.strip())
        done = _run_pg([*pg_ctl, "-m", "immediate", "stop"], PG_CTL_TIMEOUT_S + 10)
        if done.returncode != 0:
            raise InfraError(f"pg_ctl stop failed:\n{done.stdout}{done.stderr}")
    return "stopped"


def status(s: Settings) -> dict[str, Any]:
    if s.database_url_external:
        version = server_version(s.database_url_external)
        return {"state": "external", "reachable": version is not None, "url": _shown_url(s), "server_version": version}
    pid = running_pid(s)
    version = server_version(admin_url(s)) if pid is not None else None
    state = "stopped" if pid is None else "running" if version else "not answering"
    return {"state": state, "pid": pid, "url": _shown_url(s), "server_version": version}
