"""Who a PostgreSQL client is: the grid's database roles, and the passwords of the local cluster's.

Each process logs in as the role it acts for:

- ``postgres``: owns the tables; runs migrations and the operators' tools. Never a service.
- ``grid_validator``: appends to the ledger and keeps its caches (connectors/migrations/0090).
- ``grid_sinks``: the sinks' own tables and nothing else (0100).
- ``grid_reader``: reads everything, writes nothing (0020); the dashboard.

On the local cluster (``gridgov infra up``) TCP logins take SCRAM passwords, which infra generated
into ``GRID_HOME/credentials/pg-<role>`` (0600); the owner also logs in over the cluster's own socket
directory, which only the server's system user (and root) can enter. A server elsewhere gets each
role's URL from its own setting (compose passes them per service).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from core.credentials import credentials_dir

OWNER = "postgres"
VALIDATOR = "grid_validator"
SINKS = "grid_sinks"
READER = "grid_reader"
LOGIN_ROLES = (OWNER, VALIDATOR, SINKS, READER)
REDACTED = "***"


def password_name(role: str) -> str:
    """The name of ``role``'s password under ``GRID_HOME/credentials``."""
    assert role in LOGIN_ROLES, role
    return f"pg-{role}"


def stored_password(home: Path, role: str) -> str | None:
    """``role``'s generated password, if ``gridgov infra up`` made one on this host."""
    path = credentials_dir(home) / password_name(role)
    if not path.exists():
        return None
    return path.read_text().strip() or None


def with_role(url: str, role: str, password: str | None) -> str:
    """``url`` logging in as ``role`` with ``password`` (none: without one)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = quote(role, safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def redacted(url: str) -> str:
    """``url`` fit to print or log: its password, if any, replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}:{REDACTED}@{host}"))
