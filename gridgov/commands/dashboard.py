"""``gridgov dashboard [run|start|stop] [--port P] [--address A]``: serve the Streamlit dashboard."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import httpx

from core import config, process
from core.config import REPO_ROOT
from dashboard import auth

APP_PATH = REPO_ROOT / "dashboard" / "app.py"
HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dashboard", help="serve the dashboard and its governance console")
    parser.add_argument(
        "action",
        nargs="?",
        default="run",
        choices=("run", "start", "stop"),
        help="run (foreground, the default), start (in the background, replacing an earlier one), stop",
    )
    # The container sets STREAMLIT_SERVER_* so it can listen on 0.0.0.0; flags given here still win.
    parser.add_argument("--port", type=int, help="default: STREAMLIT_SERVER_PORT (see `gridgov config`)")
    parser.add_argument("--address", help="default: STREAMLIT_SERVER_ADDRESS (see `gridgov config`)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    if args.action == "stop":
        return stop()
    settings = config.load()
    if not reads_as_a_reader(settings.reader_database_url):
        return 2
    port = settings.dashboard_port if args.port is None else args.port
    address = args.address or settings.dashboard_address
    return start(port, address) if args.action == "start" else serve(port, address)


def reads_as_a_reader(reader_url: str) -> bool:
    """False (and why, on stderr) if the dashboard's database role may change the ledger. A database
    that is not up or not migrated yet is no reason to refuse: the page says so until it is."""
    from dashboard import sources  # streamlit and Kafka's client: loaded by this command alone

    try:
        sources.check_reader(reader_url)
    except sources.StrongerRole as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return False
    except sources.SourceError as exc:
        print(f"dashboard: starting anyway; {exc}", file=sys.stderr)
    return True


def app_environment() -> dict[str, str]:
    """The settings in force, passed on explicitly; in development, the console's one-time password.

    That password is generated here, at startup, and printed once on this terminal; the app holds only
    its hash (``dashboard.auth.OneTimePassword``), and its first use burns it.
    """
    settings = config.load()
    password = auth.issue_development_password(settings.home, settings.dashboard_user, settings.production)
    if password is not None:
        print(auth.one_time_notice(settings.dashboard_user, password), file=sys.stderr)
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **settings.as_env(), "PYTHONPATH": pythonpath}


def streamlit_command(port: int, address: str) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", address,
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip


def serve(port: int, address: str) -> int:
    env = app_environment()
    print(f"dashboard: http://{address}:{port}", flush=True)
    try:
        return subprocess.run(streamlit_command(port, address), env=env, cwd=REPO_ROOT, check=False).returncode
    except KeyboardInterrupt:
        return 0


def _pid_path() -> Path:
    return config.load().home / "dashboard" / "dashboard.pid"


def start(port: int, address: str) -> int:
    """Serve in the background (surviving this command, like the infrastructure); health awaited."""
    stop()
    env = app_environment()
    log_path = _pid_path().with_name("dashboard.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid = process.spawn_detached(streamlit_command(port, address), log_path, REPO_ROOT, env)
    _pid_path().write_text(f"{pid}\n")
    try:
        process.poll_until(
            lambda: _healthy(address, port), HEALTH_TIMEOUT_S, "dashboard", alive=lambda: process.pid_alive(pid)
        )
    except process.InfraError as exc:
        print(f"dashboard: {exc}\n{process.log_tail(log_path)}", file=sys.stderr)
        return 1
    print(f"dashboard: http://{address}:{port} (pid {pid}, log {log_path}; stop with `gridgov dashboard stop`)")
    return 0


def _healthy(address: str, port: int) -> bool:
    try:
        return httpx.get(f"http://{address}:{port}/_stcore/health", timeout=1.0).text == "ok"
    except httpx.HTTPError:
        return False


def stop() -> int:
    pid = process.read_pid(_pid_path())
    if pid is not None and process.pid_alive(pid) and "streamlit" in " ".join(process.cmdline(pid)):
        process.terminate(pid, STOP_TIMEOUT_S)
        print(f"dashboard: stopped pid {pid}")
    _pid_path().unlink(missing_ok=True)
    return 0
