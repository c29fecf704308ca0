"""A stateful fuzz of the law through the real Postgres commit path (hypothesis ``RuleBasedStateMachine``).

Registered agents, strangers and the operator send every kind with reused ids, stale and far-future
nonces, expired and far-future ticks, boundary and huge numbers, control characters, bad signatures,
governance re-sends and raw garbage. Each message goes through ``core.step.LedgerStep`` and is committed
(alone, or in a batch of a few) by the validator's ``LedgerStore`` to a database of its own. After every
step: nothing raised, the commit succeeded, every balance is within the bound and no participant is
overdrawn, each resource sums to zero, and the stored position and head are the step's; every few
commits and at the end the stored ledger folds to exactly the step's state, and at the end the audit
of the whole database is clean.

Short and derandomized by default (``make test``); ``GRID_FUZZ=1`` runs it long (``make fuzz``), with
``GRID_FUZZ_EXAMPLES`` and ``GRID_FUZZ_STEPS`` to size the run.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections import Counter
from contextlib import ExitStack
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from connectors import checkpoints
from connectors.ledger_store import LedgerStore
from connectors.migrate import apply_migrations
from connectors.readmodel.ledger import audit_database
from core.rows import Batch, CommitRefused, Rejection
from core.step import LedgerStep
from law import State
from law.decide import EXPIRY_WINDOW_TICKS_MAX, OFFER_OPEN_TICKS_MAX
from law.ledger import Entry
from law.policy import DEFAULT_POLICY, POLICY_BOUNDS
from law.state import SYSTEM_GENESIS, SYSTEM_PRODUCTION, SYSTEM_TREASURY
from schemas.codec import MESSAGE_BYTES_MAX, encode, sign
from schemas.envelope import build
from schemas.keys import derive_key
from schemas.signing import Ed25519Signer, HmacSigner, Signer, key_fingerprint
from schemas.types import (
    ACCOUNTS_PER_AGENT_COUNT_MAX,
    BALANCE_MAX,
    MEMO_LENGTH_MAX,
    NONCE_MAX,
    QUANTITY_MAX,
    RATIONALE_LENGTH_MAX,
    READINGS_COUNT_MAX,
    RESOURCES,
    TICK_MAX,
)
from streams.workload import synthetic_operator
from tests.conftest import temporary_database
from tests.support.world import (
    AGENTS,
    METER,
    OPERATOR,
    OPERATOR_SIGNER,
    SECRET,
    account,
    genesis_body,
    keyring,
    operator_key,
)

WRONG_SECRET = b"not-the-grid-secret"
VALIDATOR_SIGNER = synthetic_operator(b"fuzz-validator")  # signs this machine's checkpoints

# --- how long it runs --------------------------------------------------------------------------------

FUZZ = os.environ.get("GRID_FUZZ") == "1"
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# make test: the same 20 examples every run, well under a minute. A failure is reported as generated
# (every message and its decision is in the notes) instead of spending minutes shrinking a database
# per attempt; GRID_FUZZ_SHRINK=1 shrinks it.
SHORT = settings(
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[p for p in Phase if p is not Phase.shrink or os.environ.get("GRID_FUZZ_SHRINK") == "1"],
    suppress_health_check=_HEALTH,
)
# make fuzz: random, long; a failure prints a blob for @reproduce_failure.
LONG = settings(
    max_examples=int(os.environ.get("GRID_FUZZ_EXAMPLES", "500")),
    stateful_step_count=int(os.environ.get("GRID_FUZZ_STEPS", "100")),
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_HEALTH,
)
PROFILE = LONG if FUZZ else SHORT
FOLD_EVERY = 5  # commits between two comparisons of the stored ledger's fold with the step's state

# Every decision of every example (shrinking included), for the reach check at the end of the module.
REASONS: Counter[str] = Counter()
OUTCOMES: Counter[str] = Counter()  # "kind: reason"
REQUIRED_REASONS = frozenset(
    {
        "ACCEPTED",
        "DUPLICATE_PROPOSAL",
        "MALFORMED",
        "LIMIT_EXCEEDED",
        "BAD_SIGNATURE",
        "INSUFFICIENT_BALANCE",
        "EXPIRED",
    }
)

# --- the values drawn ------------------------------------------------------------------------------


class Raw:
    """A JSON literal orjson cannot write (an integer past 64 bits, an infinite number): spliced into the
    encoded bytes after signing, so the message fails to decode whatever its signature."""

    __slots__ = ("literal",)

    def __init__(self, literal: bytes) -> None:
        self.literal = literal

    def __repr__(self) -> str:
        return f"Raw({self.literal!r})"


# One hostile thing per message at most, so most messages get far enough for the law's own rules:
# nothing (the first choice, where shrinking goes), hostile body fields, control characters in every
# text field, or one hostile envelope field.
ATTACKS = ("none",) * 6 + ("body", "body", "text", "text", "nonce", "time", "time", "id", "provenance", "signing")

_PLACEHOLDER = 918_273_645_500_000  # placeholder integers for Raw literals: placeholder + i
# Each field: (benign strategy, hostile strategy); the benign side includes the legal boundaries.
QUANTITY_EDGES = (1, 2, 999, 1_000, 1_000_000, 10**12, QUANTITY_MAX - 1, QUANTITY_MAX)
BAD_NUMBERS: tuple[Any, ...] = (
    0, -1, QUANTITY_MAX + 1, BALANCE_MAX, BALANCE_MAX + 1, 2**63 - 1, 2**63, 2**64 - 1,
    Raw(b"18446744073709551616"), Raw(b"1" + b"0" * 40), Raw(b"1e400"), Raw(b"-0"), 1.0, "1", True, None,
)  # fmt: skip
quantities = (st.one_of(st.integers(1, 2_000_000), st.sampled_from(QUANTITY_EDGES)), st.sampled_from(BAD_NUMBERS))
prices = (
    st.one_of(st.integers(0, 2_000_000), st.sampled_from((0, *QUANTITY_EDGES))),
    st.sampled_from(BAD_NUMBERS[1:]),
)
reading_amounts = (
    st.one_of(st.integers(0, 1_000_000), st.sampled_from((0, 1, 10**12, QUANTITY_MAX))),
    st.sampled_from((QUANTITY_MAX + 1, -1, 1.0, None, Raw(b"1e400"))),
)
# Control characters (NUL, BEL, ESC, DEL) in every free-text field: the law must refuse or store them,
# never hand the store something it refuses.
CONTROL_TEXTS = ("nul\x00byte", "\x00", "bell\x07", "escape\x1b[31mred", "del\x7f", "tab\tand\nnewline")
texts = (
    st.sampled_from(("ok", "", "é ∑ ☀ unicode", "line\u2028sep", "x" * 40)),
    st.sampled_from(("x" * 41, "x" * MEMO_LENGTH_MAX, "x" * (MEMO_LENGTH_MAX + 1), 1, None)),
)
control_texts = st.sampled_from(CONTROL_TEXTS)
BAD_IDS = ("", "bad id", "-lead", "x" * 65, "nul\x00", "a/b", "é")
PROVENANCES: dict[str, tuple[dict[str, Any] | None, ...]] = {
    "benign": (None, {"source": "cli"}, {"source": "heuristic", "rationale": "r" * RATIONALE_LENGTH_MAX}),
    "text": (
        None,
        {"source": "gemini", "model": "m\x00odel", "response_id": "\x1b[2J", "prompt_tokens": 10**9},
        {"source": "heuristic", "fallback": "bell\x07", "rationale": "line\none\x7f"},
    ),
    "hostile": (
        {"source": "heuristic", "rationale": "r" * (RATIONALE_LENGTH_MAX + 1)},
        {"source": "evil"},
        {"source": "cli", "prompt_tokens": 10**9 + 1},
        {"source": "cli", "prompt_sha256": "0" * 64, "output_tokens": -1},
        {"source": "operator", "extra": 1},
        {"source": "cli", "latency_ms": 1.5},
    ),
}
NONCE_ATTACKS = ("skip", "equal", "stale", "max", "zero", "over", "float")
TIME_ATTACKS = (
    "expired", "expired", "expired", "window_edge", "beyond_window", "far_future",
    "tick_max", "over_tick_max", "inverted", "negative",
)  # fmt: skip
SIGNING_ATTACKS = ("wrong_secret", "other_key", "flipped", "tampered", "uppercase", "missing")
ID_ATTACKS = ("reuse", "reuse_other", "reuse_offer", "invalid")
GENESIS_POLICIES: tuple[dict[str, int], ...] = (
    {},
    {"interest_bps": 1_000, "interest_period_ticks": 1},  # 10 % a tick: legal
    {"breaker_critical_shortfall_max": 0, "breaker_grace_ticks": 0},
    {"proposals_per_tick_max": 2, "proposals_per_tick_grid_max": 5},
    {"carbon_tax_per_kwh": 10**9, "price_ceiling_energy": 1},
    {"breaker_reserve_min_permille": 10**9, "stress_reserve_permille": 10**9, "stressed_ceiling_pct": 1},
)
MESSAGE_WEIGHTS = {
    "transfer": 4, "offer": 3, "accept": 3, "cancel": 1, "clock": 3, "meter": 2, "policy_set": 1,
    "breaker_trip": 2, "breaker_resume": 2, "participant_add": 2, "participant_rekey": 1, "participant_suspend": 1,
    "genesis_again": 1,
    "resend": 2, "garbage": 2, "batch": 1,
}  # fmt: skip
MESSAGE_KINDS = tuple(kind for kind, weight in MESSAGE_WEIGHTS.items() for _ in range(weight))
GARBAGE = (
    "bytes", "null message", "empty", "array", "object", "number", "string", "invalid utf-8",
    "nested", "extra field", "padded to the limit", "padded past the limit", "oversized",
)  # fmt: skip
STRANGERS = ("mallory", "newcomer")  # not registered at genesis; participant_add may register them

# The store's checkpoint interval, drawn per example (0: none; 1: after every batch with entries).
_checkpoint_every = {"now": 0}


def _placeholders(value: Any, literals: dict[int, bytes]) -> Any:
    if isinstance(value, Raw):
        placeholder = _PLACEHOLDER + len(literals)
        literals[placeholder] = value.literal
        return placeholder
    if isinstance(value, dict):
        return {k: _placeholders(v, literals) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v, literals) for v in value]
    return value


def _flip(sig: str) -> str:
    return ("1" if sig[0] == "0" else "0") + sig[1:]


def state_differences(a: State, b: State) -> dict[str, tuple[str, str]]:
    return {
        f.name: (repr(getattr(a, f.name))[:400], repr(getattr(b, f.name))[:400])
        for f in dataclasses.fields(State)
        if getattr(a, f.name) != getattr(b, f.name)
    }


@dataclasses.dataclass(frozen=True)
class Sent:
    raw: bytes | None
    result: Entry | Rejection

    @property
    def authenticated(self) -> bool:
        """Decided for good: accepted, or refused once authenticated (its nonce used up)."""
        return isinstance(self.result, Entry) or self.result.nonce is not None


# --- the machine -----------------------------------------------------------------------------------


class LawMachine(RuleBasedStateMachine):
    server_url: str = ""  # the session's Postgres server, set by the test below

    def __init__(self) -> None:
        super().__init__()
        assert self.server_url, "run through test_law_machine, which sets the server"
        self._stack = ExitStack()
        self.url = self._stack.enter_context(temporary_database(self.server_url))
        apply_migrations(self.url)
        self.store = LedgerStore(self.url, "fuzz", "fuzz.proposals", VALIDATOR_SIGNER)
        self._stack.callback(self.store.close)
        self.step = LedgerStep(State(), keyring(), "fuzz")
        # Every operator key this machine made, by public key: it signs with the one the state names.
        self.operator_keys: dict[str, Ed25519Signer] = {OPERATOR_SIGNER.public_key: OPERATOR_SIGNER}
        self.offset = 0
        self.pending: list[Entry | Rejection] = []
        self.hold = 0  # decisions still to accumulate before the next commit
        self.commits = 0
        self.history: list[Sent] = []
        self.signed: dict[str, int] = {}  # the highest nonce this machine signed per agent
        self.pids: list[str] = []
        self.offer_ids: list[str] = []  # every offer ever opened, open or not
        self.serial = 0
        self.attack = "none"  # the one hostile thing about the message being built

    @property
    def state(self) -> State:
        return self.step.state

    # --- deciding and committing -------------------------------------------------------------------

    def submit(self, raw: bytes | None, label: str) -> Entry | Rejection:
        offset = self.offset
        result = self.step.step(raw, offset)
        self.offset += 1
        reason = "ACCEPTED" if isinstance(result, Entry) else result.reason_code
        REASONS[reason] += 1
        OUTCOMES[f"{label}: {reason}"] += 1
        event(reason)
        shown = raw if raw is None or len(raw) <= 300 else raw[:300] + b"..."
        detail = "" if isinstance(result, Entry) else f" ({result.field}: {result.detail})"
        note(f"offset {offset} {label} [{self.attack}] -> {reason}{detail}: {shown!r}")
        self.history.append(Sent(raw, result))
        if isinstance(result, Entry) and result.kind == "offer":
            self.offer_ids.append(f"{result.agent}/{result.proposal_id}")
        self.pending.append(result)
        if self.hold > 0:
            self.hold -= 1
        else:
            self.flush()
        return result

    def flush(self) -> None:
        batch = Batch(
            entries=[r for r in self.pending if isinstance(r, Entry)],
            rejections=[r for r in self.pending if isinstance(r, Rejection)],
            next_offset=self.offset,
        )
        try:
            self.store.commit(batch, self.state, {})
        except CommitRefused as exc:
            raise AssertionError(f"the store refused what the law decided: {exc}") from exc
        self.pending.clear()
        self.hold = 0
        self.commits += 1
        if self.commits % FOLD_EVERY == 0:
            self.check_fold()

    def check_fold(self) -> None:
        folded = self.store.fold()
        assert folded == self.state, f"stored ledger folds to another state: {state_differences(folded, self.state)}"

    # --- drawing -----------------------------------------------------------------------------------

    def begin(self, data: st.DataObject) -> None:
        self.attack = data.draw(st.sampled_from(ATTACKS), label="attack")

    def field(
        self, data: st.DataObject, choices: tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]], label: str
    ) -> Any:
        """A body field: benign (legal boundaries included), or hostile when the body is under attack."""
        benign, hostile = choices
        if self.attack == "body" and data.draw(st.booleans(), label=f"hostile {label}"):
            return data.draw(hostile, label=label)
        return data.draw(benign, label=label)

    def text(self, data: st.DataObject, label: str) -> Any:
        """A free-text field: control characters in every one when the attack is on text."""
        if self.attack == "text":
            return data.draw(control_texts, label=label)
        return self.field(data, texts, label)

    def pick(self, data: st.DataObject, benign: tuple[Any, ...], hostile: tuple[Any, ...], label: str) -> Any:
        return self.field(data, (st.sampled_from(benign), st.sampled_from(hostile)), label)

    def quantity(self, data: st.DataObject, acct: str, resource: Any) -> Any:
        """A drawn quantity, or exactly what the account holds, or one more: the funds boundary."""
        held = self.state.balance(acct, resource) if isinstance(resource, str) else 0
        how = data.draw(st.sampled_from(("drawn", "drawn", "all it holds", "one more than it holds")), label="how much")
        if how == "drawn" or held < 1 or held >= QUANTITY_MAX:
            return self.field(data, quantities, "quantity")
        return held if how == "all it holds" else held + 1

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def nonce_for(self, data: st.DataObject, agent: str) -> Any:
        decided = self.state.nonces.get(agent, 0)
        last = max(self.signed.get(agent, 0), decided)
        if self.attack != "nonce":
            return last + 1
        return {
            "skip": last + 1_000,
            "equal": decided,
            "stale": max(1, decided - 1),
            "max": NONCE_MAX,
            "zero": 0,
            "over": NONCE_MAX + 1,
            "float": float(last + 1),
        }[data.draw(st.sampled_from(NONCE_ATTACKS), label="nonce")]

    def time_for(self, data: st.DataObject, force: bool = False) -> tuple[int, int]:
        """(tick, ttl): the envelope's tick and expires_tick = tick + ttl."""
        now = self.state.tick
        if self.attack != "time" and not force:
            return now, 10
        mode = data.draw(st.sampled_from(TIME_ATTACKS), label="time")
        if mode == "expired":
            tick = max(0, now - 5)
            return tick, max(0, now - 1 - tick)  # expires at now - 1 (at tick 0 nothing can expire)
        return {
            "window_edge": (now, EXPIRY_WINDOW_TICKS_MAX),
            "beyond_window": (now, EXPIRY_WINDOW_TICKS_MAX + 1),
            "far_future": (now + 10**6, 10),
            "tick_max": (TICK_MAX, 0),
            "over_tick_max": (TICK_MAX, 1),
            "inverted": (now + 5, -1),
            "negative": (-1, 10),
        }[mode]

    def pid_for(self, data: st.DataObject, agent: str) -> str:
        if self.attack != "id":
            return f"p{self.next_serial()}"
        mode = data.draw(st.sampled_from(ID_ATTACKS), label="id")
        own = [o.split("/", 1)[1] for o in self.offer_ids if o.startswith(f"{agent}/")]
        if mode == "reuse" and self.pids:
            return str(data.draw(st.sampled_from(self.pids[-20:]), label="reused id"))
        if mode == "reuse_offer" and own:
            return str(data.draw(st.sampled_from(own), label="an open or closed offer's id"))
        if mode == "invalid":
            return str(data.draw(st.sampled_from(BAD_IDS), label="invalid id"))
        return str(data.draw(st.sampled_from(("genesis", "p1", "same", f"{agent}-1")), label="reused id"))

    def signed_message(
        self, data: st.DataObject, agent: str, body: dict[str, Any], time: tuple[int, int] | None = None
    ) -> bytes:
        """``body`` in an envelope signed as ``agent``; at most the one field ``self.attack`` names is hostile."""
        nonce = self.nonce_for(data, agent)
        tick, ttl = time if time is not None else self.time_for(data)
        pid = self.pid_for(data, agent)
        which = {"provenance": "hostile", "text": "text"}.get(self.attack, "benign")
        provenance = data.draw(st.sampled_from(PROVENANCES[which]), label="provenance")
        signing = data.draw(st.sampled_from(SIGNING_ATTACKS), label="signing") if self.attack == "signing" else "good"
        literals: dict[int, bytes] = {}
        body = _placeholders(body, literals)
        signer = HmacSigner(derive_key(WRONG_SECRET, agent)) if signing == "wrong_secret" else self.signer(agent)
        envelope = build(agent, body, tick, ttl, signer, pid, nonce, provenance)
        if signing == "other_key":
            other = data.draw(st.sampled_from([a for a in (OPERATOR, METER, *AGENTS) if a != agent]), label="key of")
            envelope = sign(envelope, self.signer(other))
        elif signing == "flipped":
            envelope["sig"] = _flip(envelope["sig"])
        elif signing == "tampered":
            envelope["id"] = "tampered" if envelope["id"] != "tampered" else "tampered2"
        elif signing == "uppercase":
            envelope["sig"] = envelope["sig"].upper()
        elif signing == "missing":
            del envelope["sig"]
        raw = encode(envelope)
        for placeholder, literal in literals.items():
            raw = raw.replace(str(placeholder).encode(), literal)
        if isinstance(nonce, int) and not isinstance(nonce, bool):
            self.signed[agent] = max(self.signed.get(agent, 0), nonce)
        self.pids.append(pid)
        return raw

    def signer(self, agent: str) -> Signer:
        """The key in force for ``agent`` now (after any rekey), or its first one when it is not registered."""
        info = self.state.agents.get(agent)
        if info is not None and info.public_key is not None:
            return self.operator_keys.get(info.public_key, operator_key(agent))
        if info is None and agent == OPERATOR:
            return OPERATOR_SIGNER
        return HmacSigner(derive_key(SECRET, agent, info.key_generation if info else 0))

    def registered(self) -> list[str]:
        return sorted(self.state.agents)

    def draw_trader(self, data: st.DataObject) -> str:
        extra = [a for a in self.registered() if a not in AGENTS and a != OPERATOR]
        return str(data.draw(st.sampled_from([*AGENTS, *AGENTS, *extra, OPERATOR, *STRANGERS]), label="agent"))

    def draw_governor(self, data: st.DataObject) -> str:
        operators = sorted(a for a, info in self.state.agents.items() if info.role == "operator")
        return str(data.draw(st.sampled_from([OPERATOR] * 4 + operators + [AGENTS[0], "mallory"]), label="commander"))

    def draw_account(self, data: st.DataObject, agent: str, label: str) -> str:
        """Mostly the agent's own account, sometimes another's, an unknown or a system one."""
        info = self.state.agents.get(agent)
        own = list(info.accounts) if info else [account(agent)]
        others = sorted(self.state.account_owner) or own
        alien = (SYSTEM_TREASURY, SYSTEM_GENESIS, "ghost:main")
        which = data.draw(st.sampled_from(("own", "own", "own", "other", "alien")), label=f"{label} whose")
        pool = {"own": own, "other": others, "alien": alien}[which]
        return str(data.draw(st.sampled_from(pool), label=label))

    def draw_offer_id(self, data: st.DataObject) -> str:
        open_now = sorted(self.state.offers)
        choices = [st.sampled_from(open_now)] * 3 if open_now else []
        if self.offer_ids:
            choices.append(st.sampled_from(self.offer_ids))
        choices.append(st.sampled_from(("nobody/p0", "solar/genesis", "no-slash", "a/b/c", "x\x00/y")))
        return str(data.draw(st.one_of(choices), label="offer_id"))

    # --- what the machine does: one message of a kind drawn by weight, or a batch ------------------

    @rule(data=st.data())
    def send(self, data: st.DataObject) -> None:
        """One message (or the start of a batch): a single rule with weighted kinds, so hypothesis's
        per-example switching off of rules cannot starve the trades in a short run."""
        kind = data.draw(st.sampled_from(MESSAGE_KINDS), label="kind")
        getattr(self, f"send_{kind}")(data)

    def send_batch(self, data: st.DataObject) -> None:
        """Commit the next few decisions in one transaction, as the validator batches."""
        n = data.draw(st.integers(2, 6), label="batch of")
        if not self.pending:
            self.hold = n - 1

    # --- genesis -----------------------------------------------------------------------------------

    @initialize(
        tick=st.sampled_from((10, 0, TICK_MAX - 50)),  # the grid's clock starts at the genesis' tick
        opening=st.sampled_from((1_000_000, 1, QUANTITY_MAX)),
        policy=st.sampled_from(GENESIS_POLICIES),
        checkpoint_every=st.sampled_from((0, 1, 4)),
        before=st.lists(
            st.sampled_from(("meter", "transfer", "by_participant", "wrong_secret", "bad_policy")), max_size=3
        ),
    )
    def genesis(
        self, tick: int, opening: int, policy: dict[str, int], checkpoint_every: int, before: list[str]
    ) -> None:
        _checkpoint_every["now"] = checkpoint_every
        body = genesis_body(opening=opening, **policy)
        for what in before:  # refused before genesis; none of them uses up a nonce
            if what == "meter":
                raw = build(METER, {"kind": "meter", "readings": []}, 0, 10, self.signer(METER), "early", 1)
            elif what == "transfer":
                pay = {"kind": "transfer", "from_account": account(AGENTS[0]), "to_account": account(AGENTS[1])}
                pay = {**pay, "resource": "energy", "quantity": 1}
                raw = build(AGENTS[0], pay, 0, 10, self.signer(AGENTS[0]), "early", 1)
            elif what == "by_participant":
                raw = build(AGENTS[0], body, 0, 10, self.signer(AGENTS[0]), "genesis", 1)
            elif what == "wrong_secret":
                raw = build(OPERATOR, body, 0, 10, operator_key("not-a-founder"), "genesis", 1)
            else:
                bad = {**body, "policy": {"interest_bps": 10**6}}
                raw = build(OPERATOR, bad, 0, 10, OPERATOR_SIGNER, "genesis", 1)
            assert isinstance(self.submit(encode(raw), f"pre-genesis {what}"), Rejection)
        result = self.submit(encode(build(OPERATOR, body, tick, 10, OPERATOR_SIGNER, "genesis", 1)), "genesis")
        assert isinstance(result, Entry), result
        self.signed[OPERATOR] = 1

    # --- trades ------------------------------------------------------------------------------------

    def send_transfer(self, data: st.DataObject) -> None:
        self.begin(data)
        agent = self.draw_trader(data)
        others = [a for a in AGENTS if a != agent]
        payee = data.draw(st.sampled_from([*others, *others, OPERATOR, agent]), label="payee")
        body: dict[str, Any] = {
            "kind": "transfer",
            "from_account": self.draw_account(data, agent, "from_account"),
            "to_account": self.draw_account(data, payee, "to_account"),
            "resource": self.pick(data, RESOURCES, ("gold", "", None), "resource"),
        }
        body["quantity"] = self.quantity(data, body["from_account"], body["resource"])
        if data.draw(st.booleans(), label="with memo"):
            body["memo"] = self.text(data, "memo")
        self.submit(self.signed_message(data, agent, body), "transfer")

    def send_offer(self, data: st.DataObject) -> None:
        self.begin(data)
        agent = self.draw_trader(data)
        now = self.state.tick
        until = (now + 10, now, now + 1, now + OFFER_OPEN_TICKS_MAX, now + OFFER_OPEN_TICKS_MAX + 1, max(0, now - 1))
        body: dict[str, Any] = {
            "kind": "offer",
            "account": self.draw_account(data, agent, "account"),
            "resource": self.pick(data, ("energy", "water", "energy", "water", "credits"), ("gold",), "resource"),
        }
        body["quantity"] = self.quantity(data, body["account"], body["resource"])
        body["price"] = self.field(data, prices, "price")
        body["open_until_tick"] = self.pick(data, until, (TICK_MAX + 1, -1), "open_until_tick")
        self.submit(self.signed_message(data, agent, body), "offer")

    def send_accept(self, data: st.DataObject) -> None:
        self.begin(data)
        agent = self.draw_trader(data)
        body = {
            "kind": "accept",
            "offer_id": self.draw_offer_id(data),
            "account": self.draw_account(data, agent, "account"),
        }
        self.submit(self.signed_message(data, agent, body), "accept")

    def send_cancel(self, data: st.DataObject) -> None:
        self.begin(data)
        agent = self.draw_trader(data)
        body = {"kind": "cancel", "offer_id": self.draw_offer_id(data)}
        self.submit(self.signed_message(data, agent, body), "cancel")

    # --- the operator's meter: the clock -----------------------------------------------------------

    def send_meter(self, data: st.DataObject) -> None:
        self.begin(data)
        agent = data.draw(st.sampled_from((METER,) * 5 + (OPERATOR, AGENTS[0], "mallory")), label="metered by")
        participants = sorted(self.state.account_owner)
        template = [
            {
                "account": self.pick(data, tuple(participants), ("ghost:main", SYSTEM_PRODUCTION), "account"),
                "resource": self.pick(data, RESOURCES, ("gold",), "resource"),
                "produced": self.field(data, reading_amounts, "produced"),
                "consumed": self.field(data, reading_amounts, "consumed"),
            }
            for _ in range(data.draw(st.integers(1, 4), label="distinct readings"))
        ]
        count = self.pick(data, (len(template), 0, READINGS_COUNT_MAX), (READINGS_COUNT_MAX + 1,), "count")
        readings = (template * (count // len(template) + 1))[:count]
        if self.attack == "time":
            time = self.time_for(data, force=True)
        else:  # the clock moves on, stands still, or jumps to the edge of the window and past it
            delta = data.draw(st.sampled_from((1, 1, 0, 2, 10, 100, 101, -1)), label="ticks ahead")
            time = (max(0, self.state.tick + delta), 0 if delta >= 100 else 10)
        body = {"kind": "meter", "readings": readings}
        self.submit(self.signed_message(data, agent, body, time), f"meter x{count}")

    def send_clock(self, data: st.DataObject) -> None:
        """The operator's ordinary meter, one to a few ticks on: the grid's time moves."""
        self.attack = "none"
        readings = [
            {"account": account(agent), "resource": resource, "produced": produced, "consumed": consumed}
            for agent, resource, produced, consumed in data.draw(
                st.lists(
                    st.tuples(
                        st.sampled_from(AGENTS),
                        st.sampled_from(RESOURCES),
                        st.integers(0, 1_000_000),
                        st.integers(0, 1_500_000),
                    ),
                    max_size=4,
                ),
                label="readings",
            )
        ]
        time = (self.state.tick + data.draw(st.integers(1, 3), label="ticks ahead"), 10)
        body = {"kind": "meter", "readings": readings}
        self.submit(self.signed_message(data, METER, body, time), "clock")

    # --- governance --------------------------------------------------------------------------------

    def send_policy_set(self, data: st.DataObject) -> None:
        self.begin(data)
        agent = self.draw_governor(data)
        hostile_presets = ("empty", "too many", "unknown")
        preset = self.pick(data, ("drawn", "drawn", "interest 10% a tick"), hostile_presets, "params")
        if preset == "interest 10% a tick":
            params: dict[str, Any] = {"interest_bps": 1_000, "interest_period_ticks": 1}
        elif preset == "empty":
            params = {}
        elif preset == "too many":
            params = {f"k{i}": 1 for i in range(33)}
        elif preset == "unknown":
            params = {"no_such_param": 1}
        else:
            keys = data.draw(st.lists(st.sampled_from(sorted(POLICY_BOUNDS)), min_size=1, max_size=3, unique=True))
            params = {}
            for key in keys:
                low, high = POLICY_BOUNDS[key]
                params[key] = self.pick(data, (DEFAULT_POLICY[key], low, high), (low - 1, high + 1, 1.0, "1"), key)
        version = self.state.policy_version
        expected = data.draw(st.sampled_from((None, None, version, version - 1, version + 1)), label="expected")
        body: dict[str, Any] = {"kind": "policy_set", "params": params, "reason": self.text(data, "reason")}
        if expected is not None:
            body["expected_policy_version"] = expected
        self.submit(self.signed_message(data, agent, body), "policy_set")

    def send_breaker_trip(self, data: st.DataObject) -> None:
        self.begin(data)
        body = {"kind": "breaker_trip", "reason": self.text(data, "reason")}
        self.submit(self.signed_message(data, self.draw_governor(data), body), "breaker_trip")

    def send_breaker_resume(self, data: st.DataObject) -> None:
        """Naming the open trip's seq, another (stale or future) one, or none."""
        self.begin(data)
        seq = self.state.breaker_trip_seq
        trip_seq = self.pick(data, (max(seq, 0), seq + 1, max(seq - 1, 0), 0), (-1, 2**62, 2**62 + 1), "trip_seq")
        body = {"kind": "breaker_resume", "reason": self.text(data, "reason"), "trip_seq": trip_seq}
        self.submit(self.signed_message(data, self.draw_governor(data), body), "breaker_resume")

    def send_participant_add(self, data: st.DataObject) -> None:
        self.begin(data)
        name = self.pick(data, (*STRANGERS, "newcomer2", AGENTS[1], OPERATOR), BAD_IDS, "agent")
        accounts = self.pick(
            data,
            ([f"{name}:main"], [f"{name}:main", f"{name}:spare"], [account(AGENTS[0])], ["system:evil"]),
            ([f"{name}:{i}" for i in range(ACCOUNTS_PER_AGENT_COUNT_MAX + 1)], []),
            "accounts",
        )
        role = self.pick(data, ("participant", "participant", "meter", "operator"), ("king",), "role")
        participant = {
            "agent": name,
            "role": role,
            **self.draw_key(data, name, role),
            "accounts": accounts,
            "kind": self.text(data, "kind"),
            "emits_carbon": data.draw(st.booleans(), label="emits_carbon"),
            "critical_load": data.draw(st.booleans(), label="critical_load"),
        }
        body = {"kind": "participant_add", "participant": participant}
        self.submit(self.signed_message(data, self.draw_governor(data), body), "participant_add")

    def draw_key(self, data: st.DataObject, name: str, role: Any) -> dict[str, Any]:
        """A new agent's key: its own, someone else's, nobody's, the wrong kind, or both kinds."""
        own_fingerprint = key_fingerprint(derive_key(SECRET, name))
        own_public = operator_key(name).public_key
        if role == "operator":
            self.operator_keys[own_public] = operator_key(name)
            legal = ({"public_key": own_public}, {"public_key": OPERATOR_SIGNER.public_key})
        else:
            legal = (
                {"key_fingerprint": own_fingerprint},
                {"key_fingerprint": key_fingerprint(derive_key(SECRET, AGENTS[0]))},  # someone else's key
                {"key_fingerprint": "0" * 32},  # nobody's key
            )
        hostile = (
            {"key_fingerprint": "zz"},
            {},
            {"key_fingerprint": own_fingerprint, "public_key": own_public},
            {"public_key": own_public} if role != "operator" else {"key_fingerprint": own_fingerprint},
        )
        return dict(self.pick(data, legal, hostile, "key"))

    def send_participant_rekey(self, data: st.DataObject) -> None:
        """To the next generation's key, a wrong generation's, an operator's new public key, or nonsense."""
        self.begin(data)
        target = self.pick(data, (*AGENTS, METER, OPERATOR, *STRANGERS, *self.registered()), BAD_IDS, "target")
        info = self.state.agents.get(target)
        generation = info.key_generation if info else 0
        fresh = operator_key(f"{target}-{self.next_serial()}")
        self.operator_keys[fresh.public_key] = fresh
        key = self.pick(
            data,
            (
                {"key_fingerprint": key_fingerprint(derive_key(SECRET, target, generation + 1))},
                {"key_fingerprint": key_fingerprint(derive_key(SECRET, target, generation + 2))},
                {"key_fingerprint": key_fingerprint(derive_key(SECRET, target, generation))},
                {"public_key": fresh.public_key},
            ),
            ({}, {"key_fingerprint": "zz"}),
            "new key",
        )
        body = {"kind": "participant_rekey", "agent": target, **key, "reason": self.text(data, "reason")}
        self.submit(self.signed_message(data, self.draw_governor(data), body), "participant_rekey")

    def send_participant_suspend(self, data: st.DataObject) -> None:
        self.begin(data)
        target = self.pick(data, (*AGENTS, OPERATOR, *STRANGERS, *self.registered()), BAD_IDS, "target")
        body = {"kind": "participant_suspend", "agent": target, "reason": self.text(data, "reason")}
        self.submit(self.signed_message(data, self.draw_governor(data), body), "participant_suspend")

    def send_genesis_again(self, data: st.DataObject) -> None:
        self.begin(data)
        body = genesis_body(opening=QUANTITY_MAX)
        self.submit(self.signed_message(data, self.draw_governor(data), body), "genesis again")

    # --- replays and garbage -----------------------------------------------------------------------

    def send_resend(self, data: st.DataObject) -> None:
        """An earlier message again, byte for byte or re-encoded: what was decided stays decided."""
        self.attack = "resend"
        earlier = data.draw(st.sampled_from(self.history), label="earlier message")
        how = data.draw(st.sampled_from(("verbatim", "keys sorted", "padded")), label="resend")
        raw = earlier.raw
        if raw is not None and how != "verbatim":
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                obj = None
            if obj is not None:
                raw = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) if how == "keys sorted" else b" \n" + raw + b"\t"
        result = self.submit(raw, f"resend {how} of {earlier.result.kind or 'undecodable'}")
        if earlier.authenticated and raw is not None and len(raw) <= MESSAGE_BYTES_MAX:
            assert isinstance(result, Rejection), f"decided twice: {earlier.result} then {result}"
            assert result.reason_code == "DUPLICATE_PROPOSAL", result
            assert result.nonce is None, "a duplicate must not use up a nonce again"

    def send_garbage(self, data: st.DataObject) -> None:
        self.attack = "garbage"
        what = data.draw(st.sampled_from(GARBAGE), label="garbage")
        raw: bytes | None
        if what == "bytes":
            raw = data.draw(st.binary(max_size=64), label="bytes")
        elif what in ("padded to the limit", "padded past the limit", "extra field"):
            agent = data.draw(st.sampled_from(AGENTS), label="agent")
            body = {
                "kind": "transfer",
                "from_account": account(agent),
                "to_account": account(OPERATOR),
                "resource": "water",
                "quantity": 1,
            }
            self.attack = "none"
            raw = self.signed_message(data, agent, body)
            if what == "extra field":
                raw = raw[:-1] + b',"admin":true}'
            else:  # whitespace is outside the signed canonical bytes
                size = MESSAGE_BYTES_MAX + (what == "padded past the limit")
                raw = raw + b" " * max(0, size - len(raw))
        else:
            raw = {
                "null message": None,
                "empty": b"",
                "array": b"[]",
                "object": b"{}",
                "number": b"1",
                "string": b'"hello"',
                "invalid utf-8": b'{"v":1,"id":"\xff\xfe","agent":"solar"}',
                "nested": b"[" * 5_000 + b"]" * 5_000,
                "oversized": b'{"v":1,"memo":"' + b"x" * MESSAGE_BYTES_MAX + b'"}',
            }[what]
        self.submit(raw, f"garbage {what}")

    # --- invariants --------------------------------------------------------------------------------

    @invariant()
    def balances_bounded_and_conserved(self) -> None:
        totals: Counter[str] = Counter()
        for (acct, resource), value in self.state.balances.items():
            assert abs(value) <= BALANCE_MAX, f"{acct} holds {value} {resource}, beyond the bound"
            if acct in self.state.account_owner:
                assert value >= 0, f"participant account {acct} holds {value} {resource}"
            totals[resource] += value
        assert all(total == 0 for total in totals.values()), f"not conserved: {dict(totals)}"

    @invariant()
    def store_is_at_the_step(self) -> None:
        if self.pending:
            return  # a batch is being accumulated: the store is at its start
        position = self.store.position()
        assert position.next_offset == self.offset, (position.next_offset, self.offset)
        assert position.head_seq == self.state.seq_next - 1, (position.head_seq, self.state.seq_next)
        assert position.head_hash == self.step.head_hash

    def teardown(self) -> None:
        with self._stack:  # closes the store and drops the database, whatever happens
            if sys.exc_info()[1] is None:  # when a step failed, its own error is the report
                if self.pending:
                    self.flush()
                self.check_fold()
                report = audit_database(self.url)
                assert report.ok, report.problems[:10]
                assert report.state == self.state, state_differences(report.state, self.state)


def test_law_machine(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoints, "checkpoint_every", lambda: _checkpoint_every["now"])
    monkeypatch.setattr(LawMachine, "server_url", database_url)
    run_state_machine_as_test(LawMachine, settings=PROFILE)


def test_law_machine_reached_every_required_outcome() -> None:
    """Runs after test_law_machine (file order): the machine exercised the outcomes it is for."""
    if not REASONS:
        pytest.skip("test_law_machine did not run in this session")
    print("\ndecisions by reason:", dict(REASONS.most_common()))
    print("decisions by rule and reason:", dict(sorted(OUTCOMES.items())))
    missing = REQUIRED_REASONS - set(REASONS)
    assert not missing, f"never reached {sorted(missing)}; reached {dict(REASONS)}"
