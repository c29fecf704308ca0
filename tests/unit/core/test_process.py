"""The one bounded wait and the one way to stop a process: both give up, and say what they waited for."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from core.process import InfraError, WaitTimeoutError, poll_until, stop_child

TIMEOUT_S = 0.3
# Ignores SIGTERM, and says so only once the handler is in place, so the test never signals too early.
READY_THEN_SLEEP = "print('ready', flush=True); time.sleep(60)"
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + READY_THEN_SLEEP
OBEDIENT = "import time; " + READY_THEN_SLEEP


def test_poll_until_returns_the_seconds_it_took_once_the_check_holds() -> None:
    ready_at = time.monotonic() + 0.05
    elapsed_s = poll_until(lambda: time.monotonic() >= ready_at, TIMEOUT_S * 10, "the clock", interval_s=0.01)
    assert 0.05 <= elapsed_s < TIMEOUT_S * 10


def test_poll_until_gives_up_after_its_timeout_and_names_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError, match=r"timed out after 0\.3 s waiting for the moon to rise"):
        poll_until(lambda: False, TIMEOUT_S, "the moon to rise", interval_s=0.01)
    assert TIMEOUT_S <= time.monotonic() - started < TIMEOUT_S + 1


def test_a_timeout_is_also_a_timeout_error_for_callers_that_catch_those() -> None:
    with pytest.raises(TimeoutError):
        poll_until(lambda: False, 0.0, "nothing")


def test_poll_until_fails_fast_when_the_awaited_process_died() -> None:
    started = time.monotonic()
    with pytest.raises(InfraError, match="the process exited while waiting for the service"):
        poll_until(lambda: False, 30, "the service", alive=lambda: False, interval_s=0.01)
    assert time.monotonic() - started < 1


def _started(code: str) -> subprocess.Popen[bytes]:
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    return child


def test_stop_child_escalates_to_sigkill_when_sigterm_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with _started(STUBBORN) as child:
        started = time.monotonic()
        assert stop_child(child, TIMEOUT_S) == -signal.SIGKILL
    assert TIMEOUT_S <= time.monotonic() - started < TIMEOUT_S + 5
    assert "sending SIGKILL" in caplog.text


def test_stop_child_stops_an_obedient_child_with_sigterm_alone(caplog: pytest.LogCaptureFixture) -> None:
    with _started(OBEDIENT) as child:
        assert stop_child(child, 10) == -signal.SIGTERM
    assert "SIGKILL" not in caplog.text


def test_stop_child_returns_the_status_of_a_child_that_already_exited() -> None:
    with subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]) as child:
        child.wait()
        assert stop_child(child, 10) == 3
