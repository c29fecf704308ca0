"""Database URLs per role: the local cluster's generated passwords go to it alone, and never into a log."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from core import config
from core.credentials import write_private
from core.pg_access import LOGIN_ROLES, password_name, redacted, stored_password, with_role


def _home_with_passwords(home: Path) -> Path:
    for role in LOGIN_ROLES:
        write_private(home / "credentials" / password_name(role), f"pw-of-{role}\n")
    return home


def test_each_role_logs_in_to_the_local_cluster_with_its_own_password(tmp_path: Path) -> None:
    s = config.load().replace(home=_home_with_passwords(tmp_path), pg_port=55999, database_url_external=None)
    urls = {
        "postgres": s.database_url,
        "grid_validator": s.validator_database_url,
        "grid_sinks": s.sinks_database_url,
        "grid_reader": s.reader_database_url,
    }
    for role, url in urls.items():
        parts = urlsplit(url)
        assert (parts.username, parts.password, parts.port, parts.path) == (role, f"pw-of-{role}", 55999, "/grid")


def test_a_run_database_on_the_local_cluster_keeps_the_passwords(tmp_path: Path) -> None:
    home = _home_with_passwords(tmp_path)
    s = config.load().replace(home=home, pg_port=55999, database_url_external="postgresql://x:y@127.0.0.1:55999/run")
    assert urlsplit(s.validator_database_url).password == "pw-of-grid_validator"
    assert urlsplit(s.validator_database_url).path == "/run"


def test_a_server_elsewhere_is_never_sent_a_local_password(tmp_path: Path) -> None:
    home = _home_with_passwords(tmp_path)
    s = config.load().replace(home=home, pg_port=55999, database_url_external="postgresql://o:secret@db.example:5432/g")
    for url in (s.validator_database_url, s.sinks_database_url, s.reader_database_url):
        assert urlsplit(url).password is None
        assert urlsplit(url).hostname == "db.example"


def test_each_service_url_can_be_set_on_its_own(tmp_path: Path) -> None:
    s = config.load().replace(
        home=tmp_path,
        validator_database_url_external="postgresql://v:1@h/g",
        sinks_database_url_external="postgresql://s:2@h/g",
        dashboard_database_url="postgresql://r:3@h/g",
    )
    assert (s.validator_database_url, s.sinks_database_url, s.reader_database_url) == (
        "postgresql://v:1@h/g", "postgresql://s:2@h/g", "postgresql://r:3@h/g",
    )  # fmt: skip


def test_no_stored_password_means_a_url_without_one(tmp_path: Path) -> None:
    assert stored_password(tmp_path, "grid_reader") is None
    assert with_role("postgresql://a:b@h:1/d?x=1", "grid_reader", None) == "postgresql://grid_reader@h:1/d?x=1"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://postgres:s3cret@127.0.0.1:5/grid", "postgresql://postgres:***@127.0.0.1:5/grid"),
        ("postgresql://postgres@127.0.0.1:5/grid", "postgresql://postgres@127.0.0.1:5/grid"),
    ],
)
def test_redacted_urls_hide_the_password(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_passwords_with_url_characters_survive_the_round_trip() -> None:
    url = with_role("postgresql://h:1/d", "grid_sinks", "a/b@c:d%")
    assert urlsplit(url).username == "grid_sinks"
    assert unquote(urlsplit(url).password or "") == "a/b@c:d%"
