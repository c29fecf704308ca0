"""Console logins: each person opens their own sealed key; failures are throttled before any work;
the development one-time password burns for good on its first use."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.identities import IdentityError, create_operator, is_sealed, operator_signer
from dashboard import auth
from gridgov.commands import dashboard as command
from schemas.signing import Ed25519Signer

PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.now_s = 1_000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def signer(home: Path) -> Ed25519Signer:
    return operator_signer(home, "someone-else")  # any opened key: the gate does not look inside


def refusing() -> Ed25519Signer:
    raise IdentityError("wrong password")


def test_each_failure_doubles_the_wait_and_a_refused_attempt_opens_nothing(signer: Ed25519Signer) -> None:
    clock, opened = Clock(), []
    gate = auth.LoginGate(clock=clock)

    def counting() -> Ed25519Signer:
        opened.append(1)
        raise IdentityError("wrong")

    waits = []
    for _ in range(4):
        with pytest.raises(auth.LoginRefused, match="Wrong operator name or password"):
            gate.attempt("alice", counting)
        waits.append(gate.wait_s("alice"))
        with pytest.raises(auth.LoginRefused, match="Too many failed logins as alice"):
            gate.attempt("alice", lambda: signer)  # even the right password waits: no work is done
        clock.now_s += waits[-1]
    assert waits == [1.0, 2.0, 4.0, 8.0] and len(opened) == 4
    assert gate.wait_s("bob") == 0.0  # one user's failures do not lock out another


def test_the_wait_is_capped_and_a_success_clears_it(signer: Ed25519Signer) -> None:
    clock = Clock()
    gate = auth.LoginGate(clock=clock)
    for _ in range(20):
        clock.now_s += gate.wait_s("alice")
        with pytest.raises(auth.LoginRefused):
            gate.attempt("alice", refusing)
    assert gate.wait_s("alice") == auth.FAILURE_DELAY_MAX_S
    clock.now_s += auth.FAILURE_DELAY_MAX_S
    assert gate.attempt("alice", lambda: signer) is signer
    assert gate.wait_s("alice") == 0.0


def test_only_a_few_key_openings_run_at_once(signer: Ed25519Signer) -> None:
    gate, release = auth.LoginGate(openings_max=2), threading.Event()
    started = threading.Barrier(3)

    def slow() -> Ed25519Signer:
        started.wait()
        release.wait(10)
        return signer

    workers = [threading.Thread(target=gate.attempt, args=(f"user{i}", slow)) for i in range(2)]
    for w in workers:
        w.start()
    started.wait()
    with pytest.raises(auth.LoginRefused, match="busy"):
        gate.attempt("carol", lambda: signer)
    release.set()
    for w in workers:
        w.join()
    assert gate.attempt("carol", lambda: signer) is signer  # the openings were released


def test_the_failures_remembered_are_bounded() -> None:
    gate = auth.LoginGate(clock=Clock(), users_max=3)
    for user in ("a", "b", "c", "d"):
        with pytest.raises(auth.LoginRefused):
            gate.attempt(user, refusing)
    assert gate.wait_s("a") == 0.0 and gate.wait_s("d") > 0  # the oldest was forgotten


def test_a_sealed_key_opens_only_with_its_password(home: Path) -> None:
    created = create_operator(home, "alice", password=PASSWORD)
    assert is_sealed(home, "alice")
    opened = auth.open_operator_key(home, "alice", PASSWORD, None, "operator")
    assert opened.public_key == created.public_key
    with pytest.raises(IdentityError):
        auth.open_operator_key(home, "alice", PASSWORD + "!", None, "operator")


def test_an_unsealed_or_missing_key_is_no_console_login(home: Path) -> None:
    operator_signer(home, "operator")  # the machine's development key, unsealed
    assert not is_sealed(home, "operator") and not is_sealed(home, "nobody") and not is_sealed(home, "../x")
    for user in ("operator", "nobody"):
        with pytest.raises(IdentityError):
            auth.open_operator_key(home, user, "", None, "operator")


def test_the_one_time_password_opens_the_development_key_once_ever(home: Path) -> None:
    development = operator_signer(home, "operator")
    password = auth.OneTimePassword(home).issue()
    assert password is not None and len(password) >= 16
    assert password not in (home / auth.ONE_TIME_FILE).read_text()  # only its hash is stored
    with pytest.raises(IdentityError):
        auth.open_operator_key(home, "alice", password, auth.OneTimePassword(home), "operator")
    opened = auth.open_operator_key(home, "operator", password, auth.OneTimePassword(home), "operator")
    assert opened.public_key == development.public_key
    again = auth.OneTimePassword(home)  # a restart reads the same file
    assert again.burnt() and not again.use(password) and again.issue() is None
    with pytest.raises(IdentityError):
        auth.open_operator_key(home, "operator", password, again, "operator")


def test_an_unused_one_time_password_is_replaced_at_each_start(home: Path) -> None:
    first = auth.OneTimePassword(home).issue()
    second = auth.OneTimePassword(home).issue()
    assert first and second and first != second
    assert not auth.OneTimePassword(home).use(first)
    assert auth.OneTimePassword(home).use(second)


def test_no_one_time_password_in_production_or_once_the_user_has_a_sealed_key(home: Path) -> None:
    assert auth.issue_development_password(home, "operator", production=True) is None
    create_operator(home, "alice", password=PASSWORD)
    assert auth.issue_development_password(home, "alice", production=False) is None
    assert auth.issue_development_password(home, "operator", production=False) is not None


def test_a_session_ends_when_idle_or_too_old(signer: Ed25519Signer) -> None:
    session = auth.Session("alice", signer, started_s=0.0, seen_s=0.0)
    assert session.expiry(899.0, idle_max_s=900, age_max_s=3600) is None
    assert "15 min without use" in (session.expiry(901.0, idle_max_s=900, age_max_s=3600) or "")
    used = auth.Session("alice", signer, started_s=0.0, seen_s=3590.0)
    assert "1 h" in (used.expiry(3601.0, idle_max_s=900, age_max_s=3600) or "")


def test_the_cli_prints_the_one_time_password_and_passes_it_to_nobody(
    settings_file: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRID_HOME", str(home))
    env = command.app_environment()
    password = capsys.readouterr().err.rsplit(" ", 1)[-1].strip()
    assert password not in "".join(env.values())
    assert auth.OneTimePassword(home).use(password)


def test_the_cli_prints_no_password_in_production(
    settings_file: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRID_HOME", str(home))
    monkeypatch.setenv("GRID_ENV", "production")
    command.app_environment()
    assert "one-time" not in capsys.readouterr().err
    assert not (home / auth.ONE_TIME_FILE).exists()
