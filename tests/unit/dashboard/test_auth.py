"""The console's login: PBKDF2 hashes from the settings, no default password, production refuses without one."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from core import config
from core.config import Settings
from dashboard import auth
from gridgov.commands import dashboard as command

FAST_ITERATIONS = auth.ITERATIONS_MIN  # hashing at the production cost would make these tests slow


@pytest.fixture(autouse=True)
def no_configured_login(settings_file: Path) -> None:
    """Every test starts from the defaults, whatever login the machine running it configures."""


def login(**fields: Any) -> Settings:
    return config.load().replace(**fields)


def child_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a child process started with ``env`` loads."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return config.load()


def test_a_hash_verifies_its_password_and_nothing_else() -> None:
    encoded = auth.hash_password("s3cret-enough", iterations=FAST_ITERATIONS)
    assert encoded.startswith(f"pbkdf2_sha256${FAST_ITERATIONS}$")
    assert auth.verify_password("s3cret-enough", encoded)
    assert not auth.verify_password("s3cret-enougH", encoded)
    assert not auth.verify_password("", encoded)


def test_the_same_password_hashes_differently_each_time() -> None:
    assert auth.hash_password("same", iterations=FAST_ITERATIONS) != auth.hash_password(
        "same", iterations=FAST_ITERATIONS
    )


def test_the_default_cost_is_the_recommended_one() -> None:
    iterations, _, _ = auth.parse_hash(auth.hash_password("x"))
    assert iterations == auth.ITERATIONS_DEFAULT >= 600_000


@pytest.mark.parametrize(
    "encoded",
    [
        "plaintext-password",
        "md5$100000$salt$AAAA",
        "pbkdf2_sha256$1000$salt$" + "A" * 44,  # too few iterations
        "pbkdf2_sha256$many$salt$" + "A" * 44,
        "pbkdf2_sha256$100000$$" + "A" * 44,
        "pbkdf2_sha256$100000$salt$not*base64",
        "pbkdf2_sha256$100000$salt$AAAA",  # wrong length
    ],
)
def test_malformed_hashes_are_refused_with_a_reason(encoded: str) -> None:
    with pytest.raises(auth.HashFormatError):
        auth.parse_hash(encoded)
    found = auth.load_credentials(login(dashboard_password_hash=encoded))
    assert found.refusal is not None and found.password_hash is None
    assert not auth.check_login(found, "operator", encoded)


def test_configured_credentials_log_in_only_with_both_user_and_password() -> None:
    encoded = auth.hash_password("pw-pw-pw-pw", FAST_ITERATIONS)
    found = auth.load_credentials(login(dashboard_user="alice", dashboard_password_hash=encoded))
    assert found.refusal is None and not found.one_time and found.generated_password is None
    assert auth.check_login(found, "alice", "pw-pw-pw-pw")
    assert auth.check_login(found, " alice ", "pw-pw-pw-pw")
    assert not auth.check_login(found, "operator", "pw-pw-pw-pw")
    assert not auth.check_login(found, "alice", "pw-pw-pw-p")


def test_production_without_a_hash_lets_nobody_in() -> None:
    found = auth.load_credentials(login(mode="production"))
    assert found.password_hash is None and found.generated_password is None
    assert "GRID_DASHBOARD_PASSWORD_HASH" in (found.refusal or "")
    assert not auth.check_login(found, "operator", "")


def test_development_without_a_hash_generates_a_one_time_password() -> None:
    first, second = auth.load_credentials(login()), auth.load_credentials(login())
    assert first.user == "operator" and first.one_time and first.refusal is None
    assert first.generated_password and len(first.generated_password) >= 16
    assert first.generated_password != second.generated_password  # never a fixed default
    assert auth.check_login(first, "operator", first.generated_password)
    assert not auth.check_login(first, "operator", "operator")
    assert first.generated_password in auth.one_time_notice(first)


def test_the_cli_passes_only_the_hash_of_a_generated_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = command.app_environment()
    printed = capsys.readouterr().err
    found = auth.load_credentials(child_settings(env, monkeypatch))
    assert found.one_time and found.generated_password is None  # the app gets the hash, not the password
    password = printed.rsplit(" ", 1)[-1].strip()
    assert auth.check_login(found, "operator", password)
    assert password not in "".join(env.values())


def test_the_cli_warns_when_production_has_no_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRID_ENV", "production")
    env = command.app_environment()
    assert "production mode needs GRID_DASHBOARD_PASSWORD_HASH" in capsys.readouterr().err
    assert auth.load_credentials(child_settings(env, monkeypatch)).refusal is not None


def test_hash_password_reads_a_piped_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert command.hash_password() == 0
    assert auth.verify_password("a long enough password", capsys.readouterr().out.strip())


def test_hash_password_refuses_a_short_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert command.hash_password() == 1
    assert capsys.readouterr().out == ""
