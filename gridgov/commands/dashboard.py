"""``gridgov dashboard [--port P] [--address A]``: serve the Streamlit dashboard; ``hash-password`` for logins."""

from __future__ import annotations

import argparse
import getpass
import os
import subprocess
import sys

from dashboard import auth
from gridgov import config
from gridgov.config import REPO_ROOT

APP_PATH = REPO_ROOT / "dashboard" / "app.py"
PORT_DEFAULT = 8501
ADDRESS_DEFAULT = "127.0.0.1"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dashboard", help="serve the dashboard, or hash a console password")
    parser.add_argument(
        "action", nargs="?", default="run", choices=("run", "hash-password"), help="default: run the dashboard"
    )
    # The container sets STREAMLIT_SERVER_* so it can listen on 0.0.0.0; flags given here still win.
    parser.add_argument("--port", type=int, default=int(os.environ.get("STREAMLIT_SERVER_PORT") or PORT_DEFAULT))
    parser.add_argument("--address", default=os.environ.get("STREAMLIT_SERVER_ADDRESS") or ADDRESS_DEFAULT)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    return hash_password() if args.action == "hash-password" else serve(args.port, args.address)


def hash_password() -> int:
    """Read a password (twice on a terminal, once from a pipe) and print its hash for the environment."""
    if sys.stdin.isatty():
        password = getpass.getpass("console password: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < auth.PASSWORD_LENGTH_MIN:
        print(f"use at least {auth.PASSWORD_LENGTH_MIN} characters", file=sys.stderr)
        return 1
    print(auth.hash_password(password))
    return 0


def app_environment() -> dict[str, str]:
    """The settings in force, passed on explicitly, plus a console login when none is configured.

    In development without a hash the password is generated here, at startup, and printed once; the
    app receives only its hash. In production without a hash the app refuses every login.
    """
    settings = config.load()
    env = {**os.environ, "GRID_DATABASE_URL": settings.database_url, "GRID_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
    env["GRID_TOPIC_PREFIX"] = settings.topic_prefix
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    found = auth.load_credentials(env)
    if found.generated_password is not None and found.password_hash is not None:
        env.update({"GRID_DASHBOARD_PASSWORD_HASH": found.password_hash, auth.ONE_TIME_MARKER: "1"})
        print(auth.one_time_notice(found), file=sys.stderr)
    elif found.refusal is not None:
        print(f"governance console: {found.refusal}", file=sys.stderr)
    return env


def serve(port: int, address: str) -> int:
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", address,
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    env = app_environment()
    print(f"dashboard: http://{address}:{port}", flush=True)
    try:
        return subprocess.run(command, env=env, cwd=REPO_ROOT, check=False).returncode
    except KeyboardInterrupt:
        return 0
