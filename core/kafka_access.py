"""Who a Kafka client is: the broker's address and the SASL/SCRAM identity of one principal.

The broker authorises by principal (ACLs made by ``connectors.kafka_admin``), so each process
connects as the one it acts for:

- ``admin``: creates topics, users and ACLs; the broker's super user. Only infra and operators' tools.
- ``validator``: reads ``proposals``; the only writer of ``ledger-events``, ``rejections``, ``alerts``
  and ``incidents``.
- ``producer``: agents, the meter and ``gridgov propose``: may write ``proposals`` and nothing else.
- ``sinks``: reads ``rejections``, ``incidents`` and ``alerts``.
- ``dashboard``: sees every topic's size; its console writes ``proposals``.
- ``n8n``: the incident workflows' Kafka triggers read ``alerts``, ``incidents`` and ``rejections``; it
  writes nothing, so a workflow cannot propose, trip or resume anything.

A process given ``GRID_KAFKA_USERNAME``/``GRID_KAFKA_PASSWORD`` (a compose service) holds that one
identity whatever it asks for; otherwise the password is read from ``GRID_HOME/credentials``, where
``gridgov infra up`` generated it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.credentials import credentials_dir

Principal = Literal["admin", "validator", "producer", "sinks", "dashboard", "n8n"]
PRINCIPALS: tuple[Principal, ...] = ("admin", "validator", "producer", "sinks", "dashboard", "n8n")
MECHANISM = "SCRAM-SHA-256"
SECURITY_PROTOCOL = "SASL_PLAINTEXT"


class KafkaAccessError(RuntimeError):
    """No credentials for the principal a process asked to connect as."""


@dataclass(frozen=True)
class KafkaAccess:
    bootstrap: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka properties for this identity, plus ``extra`` (dots as underscores are not accepted)."""
        base: dict[str, Any] = {"bootstrap.servers": self.bootstrap}
        if self.username is not None:
            base |= {
                "security.protocol": SECURITY_PROTOCOL,
                "sasl.mechanism": MECHANISM,
                "sasl.username": self.username,
                "sasl.password": self.password,
            }
        return base | extra


def password_path(home: Path, principal: str) -> Path:
    return credentials_dir(home) / f"kafka-{principal}"


def properties_path(home: Path, principal: str) -> Path:
    """A client config file for Kafka's own tools: ``kafka-topics.sh --command-config FILE``."""
    return credentials_dir(home) / f"kafka-{principal}.properties"


def client_properties(username: str, password: str) -> str:
    login = "org.apache.kafka.common.security.scram.ScramLoginModule"
    jaas = f'{login} required username="{username}" password="{password}";'
    return f"security.protocol={SECURITY_PROTOCOL}\nsasl.mechanism={MECHANISM}\nsasl.jaas.config={jaas}\n"


def access(
    bootstrap: str,
    home: Path,
    principal: Principal,
    sasl: bool,
    own: tuple[str, str] | None = None,
) -> KafkaAccess:
    """The identity to connect to ``bootstrap`` as ``principal``; ``own`` is the process's one identity."""
    if not sasl:
        return KafkaAccess(bootstrap)
    if own is not None:
        return KafkaAccess(bootstrap, *own)
    path = password_path(home, principal)
    if not path.exists():
        raise KafkaAccessError(
            f"no Kafka credentials for {principal!r} in {path.parent}: `gridgov infra up` creates them, "
            "or set GRID_KAFKA_USERNAME and GRID_KAFKA_PASSWORD"
        )
    return KafkaAccess(bootstrap, principal, path.read_text().strip())
