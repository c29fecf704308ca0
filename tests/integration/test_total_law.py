"""No signed message can stop the validator: each case that once halted the grid, through the real
validator on the real broker and database. Every case ends with a canary proposal that must be
decided, so "the validator went on" is checked, not assumed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import pytest

from connectors.kafka_io import send_proposals
from core.config import REPO_ROOT, Settings
from schemas.codec import encode
from schemas.envelope import build
from schemas.types import BALANCE_MAX
from streams.validator import EXIT_COMMIT_REFUSED, open_validator
from streams.workload import METER, OPERATOR, genesis, stream_signer
from tests.integration.test_validator import SECRET, VERSION, settings

__all__ = ["settings"]

AGENTS = ["alice", "bob", "hospital"]
CLI_TIMEOUT_S = 120


@dataclass
class Grid:
    """Signs as any registered agent with its next nonce, and runs the real validator until idle."""

    settings: Settings
    nonces: dict[str, int] = field(default_factory=lambda: {"operator": 1})  # the genesis used 1
    tick: int = 0
    agents: list[str] = field(default_factory=lambda: list(AGENTS))

    def start(self, **policy: int) -> None:
        raw = orjson.loads(genesis(SECRET, self.agents, "genesis", policy))
        hospital = next(p for p in raw["body"]["participants"] if p["agent"] == "hospital")
        hospital["critical_load"] = True
        signed = build(OPERATOR, raw["body"], 0, 10, stream_signer(SECRET, OPERATOR), "genesis", 1)
        send_proposals(self.settings, [encode(signed)])
        assert self.decide("genesis") == "ACCEPTED"

    def envelope(self, agent: str, body: dict[str, Any], pid: str, tick: int | None = None) -> bytes:
        self.nonces[agent] = self.nonces.get(agent, 0) + 1
        tick = self.tick if tick is None else tick
        return encode(build(agent, body, tick, 10, stream_signer(SECRET, agent), pid, self.nonces[agent]))

    def send(self, agent: str, body: dict[str, Any], pid: str, tick: int | None = None) -> str:
        send_proposals(self.settings, [self.envelope(agent, body, pid, tick)])
        return self.decide(pid)

    def resend(self, raw: bytes, pid: str) -> str:
        send_proposals(self.settings, [raw])
        return self.decide(pid)

    def meter(self, readings: list[dict[str, Any]] | None = None) -> str:
        self.tick += 1
        return self.send(METER, {"kind": "meter", "readings": readings or []}, f"meter-{self.tick}")

    def decide(self, pid: str) -> str:
        """Run the validator until idle; the latest decision on ``pid`` ("ACCEPTED" or the reason)."""
        open_validator(self.settings, SECRET, version=VERSION).run(threading.Event(), idle_exit_s=0.5)
        with psycopg.connect(self.settings.database_url) as conn:
            row = conn.execute(
                "SELECT source_offset, 'ACCEPTED' FROM ledger WHERE proposal_id = %(p)s UNION ALL "
                "SELECT source_offset, reason_code FROM rejections WHERE proposal_id = %(p)s "
                "ORDER BY source_offset DESC LIMIT 1",
                {"p": pid},
            ).fetchone()
        assert row is not None, f"{pid} was never decided"
        return str(row[1])

    def canary(self) -> None:
        assert self.send("bob", transfer("bob", "alice", 1), f"canary-{self.nonces.get('bob', 0)}") == "ACCEPTED"

    def balance(self, account: str, resource: str) -> int:
        with psycopg.connect(self.settings.database_url) as conn:
            row = conn.execute(
                "SELECT balance FROM world_state WHERE account = %s AND resource = %s", (account, resource)
            ).fetchone()
        return int(row[0]) if row else 0


def transfer(src: str, dst: str, qty: int, resource: str = "energy") -> dict[str, Any]:
    return {
        "kind": "transfer",
        "from_account": f"{src}:main",
        "to_account": f"{dst}:main",
        "resource": resource,
        "quantity": qty,
    }


@pytest.fixture
def grid(settings: Settings) -> Grid:
    g = Grid(settings)
    g.start(breaker_critical_shortfall_max=0)
    return g


# --- 1. an id reused after the duplicate window ----------------------------------------------------


def test_an_id_reused_after_five_ticks_is_a_new_proposal_and_the_old_bytes_a_duplicate(grid: Grid) -> None:
    first = grid.envelope("alice", transfer("alice", "bob", 5), "pay-1")
    assert grid.resend(first, "pay-1") == "ACCEPTED"
    for _ in range(5):
        assert grid.meter() == "ACCEPTED"
    assert grid.send("alice", transfer("alice", "bob", 7), "pay-1") == "ACCEPTED"  # a label, not an identity
    assert grid.resend(first, "pay-1") == "DUPLICATE_PROPOSAL"
    grid.canary()


# --- 2. what the database would refuse, the law refuses first ---------------------------------------


def test_an_offer_reposted_under_an_open_id_is_refused_not_crashed(grid: Grid) -> None:
    offer = {"kind": "offer", "account": "alice:main", "resource": "energy", "quantity": 10, "price": 10}
    assert grid.send("alice", {**offer, "open_until_tick": 5}, "sale") == "ACCEPTED"
    assert grid.send("alice", {**offer, "open_until_tick": 6}, "sale") == "DUPLICATE_OFFER"
    grid.canary()


@pytest.mark.parametrize(
    ("agent", "body"),
    [
        ("operator", {"kind": "breaker_trip", "reason": "null\u0000byte"}),
        (
            "operator",
            {
                "kind": "participant_add",
                "participant": {"agent": "eve", "key_fingerprint": "0" * 32, "accounts": ["eve:main"], "kind": "x\x00"},
            },
        ),
        ("alice", {**transfer("alice", "bob", 1), "memo": "bell\x07"}),
    ],
    ids=["breaker reason", "participant kind", "memo"],
)
def test_control_characters_are_malformed_and_the_grid_goes_on(grid: Grid, agent: str, body: dict[str, Any]) -> None:
    assert grid.send(agent, body, "text") == "MALFORMED"
    grid.canary()


def test_interest_and_meters_at_their_legal_limits_are_capped_at_the_bound(settings: Settings) -> None:
    g = Grid(settings)
    g.start(interest_bps=1_000, interest_period_ticks=1)  # 10 % a tick: a legal policy
    flood = [{"account": f"{a}:main", "resource": "energy", "produced": 10**15} for a in AGENTS]
    for _ in range(30):
        assert g.meter(flood) == "ACCEPTED"
    assert g.balance("system:treasury", "credits") >= -BALANCE_MAX
    assert g.balance("system:production", "energy") == -BALANCE_MAX  # reached and capped, never crossed
    g.canary()


# --- 3. decided means decided, accepted or not -----------------------------------------------------


def test_a_payment_refused_while_open_cannot_be_replayed_after_the_resume(grid: Grid) -> None:
    assert grid.meter([{"account": "hospital:main", "resource": "energy", "consumed": 2 * 10**12}]) == "ACCEPTED"
    payment = grid.envelope("alice", transfer("alice", "bob", 100), "pay-open")
    assert grid.resend(payment, "pay-open") == "CIRCUIT_OPEN"
    resume = {"kind": "breaker_resume", "reason": "backup on", "trip_seq": trip_seq(grid)}
    assert grid.send("operator", resume, "resume-1") == "ACCEPTED"
    assert grid.send("alice", transfer("alice", "bob", 100), "pay-again") == "ACCEPTED"
    paid = grid.balance("bob:main", "energy")
    assert grid.resend(payment, "pay-open") == "DUPLICATE_PROPOSAL"
    assert grid.balance("bob:main", "energy") == paid
    grid.canary()


def test_nobody_can_use_up_another_agents_ids(grid: Grid) -> None:
    assert grid.send("bob", transfer("bob", "alice", 1), "alice-1") == "ACCEPTED"  # alice's predictable id
    assert grid.send("alice", transfer("alice", "bob", 1), "alice-1") == "ACCEPTED"
    grid.canary()


def test_an_old_resume_cannot_close_the_next_trip(grid: Grid) -> None:
    short = [{"account": "hospital:main", "resource": "energy", "consumed": 2 * 10**12}]
    assert grid.meter(short) == "ACCEPTED"
    old = grid.envelope("operator", {"kind": "breaker_resume", "reason": "first", "trip_seq": trip_seq(grid)}, "r1")
    assert grid.resend(old, "r1") == "ACCEPTED"
    assert grid.send("operator", {"kind": "breaker_resume", "reason": "again", "trip_seq": 0}, "r2") == "BREAKER_STATE"
    for _ in range(4):  # past the grace period, the hospital short again: a new trip
        grid.meter(short)
    assert breaker_open(grid)
    assert grid.resend(old, "r1") == "DUPLICATE_PROPOSAL"
    stale = {"kind": "breaker_resume", "reason": "signed for the first trip", "trip_seq": 1}
    assert grid.send("operator", stale, "r3") == "STALE_COMMAND"
    assert breaker_open(grid)
    assert grid.send("alice", transfer("alice", "bob", 1), "held") == "CIRCUIT_OPEN"


def trip_seq(grid: Grid) -> int:
    with psycopg.connect(grid.settings.database_url) as conn:
        row = conn.execute("SELECT breaker_trip_seq FROM grid_status").fetchone()
    assert row is not None
    return int(row[0])


def breaker_open(grid: Grid) -> bool:
    with psycopg.connect(grid.settings.database_url) as conn:
        row = conn.execute("SELECT breaker_open FROM grid_status").fetchone()
    return bool(row and row[0])


# --- a commit the store refuses anyway is a bug: a loud halt, not a silent loop -----------------------


def test_a_batch_the_store_refuses_halts_the_validator_with_a_diagnosis(grid: Grid) -> None:
    with psycopg.connect(grid.settings.database_url, autocommit=True) as conn:
        # A rule the law does not know, added behind its back: the store now refuses what the law accepts.
        conn.execute("ALTER TABLE ledger ADD CONSTRAINT test_only_small_ticks CHECK (tick < 3)")
    send_proposals(grid.settings, [grid.envelope("alice", transfer("alice", "bob", 1), "too-late", tick=5)])
    env = {
        **os.environ,
        "GRID_DATABASE_URL": grid.settings.database_url,
        "GRID_KAFKA_BOOTSTRAP": grid.settings.kafka_bootstrap,
        "GRID_TOPIC_PREFIX": grid.settings.topic_prefix,
        "GRID_KEY_SECRET": SECRET.hex(),
        "GRID_FOUNDING_OPERATORS": grid.settings.founding_operators or "",
        "GRID_VALIDATOR_VERSION": VERSION,
    }
    command = [sys.executable, "-m", "gridgov.cli", "validator", "--metrics-port", "0", "--idle-exit-s", "3"]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert done.returncode == EXIT_COMMIT_REFUSED, done.stderr[-2000:]
    halted = next(orjson.loads(line) for line in done.stderr.splitlines() if "validator halted" in line)
    assert halted["constraint"] == "test_only_small_ticks"
    assert [e["proposal_id"] for e in halted["entries"]] == ["too-late"]
    with psycopg.connect(grid.settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ledger WHERE proposal_id = 'too-late'").fetchone() == (0,)
