"""Process helpers: detached start, pid files, supervised children, and the one bounded wait everything uses."""

from __future__ import annotations

import fcntl
import gc
import logging
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.25
KILL_WAIT_S = 10.0  # SIGKILL cannot be ignored: past this the process is stuck in the kernel
GC_YOUNG_OBJECTS_COUNT_MAX = 100_000


class InfraError(RuntimeError):
    """A local service could not be fetched, prepared, started or stopped."""


class WaitTimeoutError(InfraError, TimeoutError):
    """A bounded wait ran out; the message names what it waited for."""


def settle_heap_for_batches() -> None:
    """For a process that handles batches of thousands of records (the validator and its writer),
    once its long-lived objects exist.

    Freezing what is on the heap keeps the collector's full passes (which would otherwise walk all of
    it) from adding pauses to batch latency. And a batch's objects live until it is handed on, so at
    the default threshold (700 objects) the young generation is collected every few dozen records, in
    vain: nearly everything a batch allocates is freed by reference counting (in the writer, decoding
    a 5,000-entry batch took 1.5 µs per entry at 700, 1.0 at this threshold). Cyclic garbage still
    cannot outgrow this many objects.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_OBJECTS_COUNT_MAX, *gc.get_threshold()[1:])


def spawn_detached(cmd: list[str], log_path: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start ``cmd`` in a new session, orphaned from us, output appended to ``log_path``; return its pid.

    A shell backgrounds the command and exits at once, so the service is never our child: no zombie
    and no "subprocess still running" warning in a long-lived caller, and Ctrl-C in the caller's
    terminal does not reach it.
    """
    script = f"exec {shlex.join(cmd)} >>{shlex.quote(str(log_path))} 2>&1 </dev/null &\necho $!"
    done = subprocess.run(
        ["sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=30, start_new_session=True
    )
    if done.returncode != 0:
        raise InfraError(f"could not start {cmd[0]}: {done.stderr.strip()}")
    return int(done.stdout.strip())


def pid_alive(pid: int) -> bool:
    """True when ``pid`` is a live (non-zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_pid(pid_path: Path) -> int | None:
    """The pid on the first line of ``pid_path`` (postmaster.pid has more lines), or None."""
    try:
        return int(pid_path.read_text().splitlines()[0].strip())
    except (FileNotFoundError, IndexError, ValueError):
        return None


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def log_tail(log_path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {log_path})"


def poll_until(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    interval_s: float = POLL_INTERVAL_S,
) -> float:
    """Call ``check`` every ``interval_s`` until it returns True; return the seconds it took.

    ``what`` names what is waited for, for the error. ``alive`` lets the wait fail fast when the
    process being waited for has died. Raises ``WaitTimeoutError`` after ``timeout_s``.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    while time.monotonic() < deadline:
        if check():
            return time.monotonic() - start
        if alive is not None and not alive():
            raise InfraError(f"the process exited while waiting for {what}")
        time.sleep(interval_s)
    raise WaitTimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")


@contextmanager
def exclusive(lock_path: Path, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path``: concurrent `up`/`down` calls (parallel test sessions,
    several terminals) must not both decide to start the same service."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:

        def acquired() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        poll_until(acquired, timeout_s, f"the lock on {lock_path}")
        yield  # closing the file releases the lock


def terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL: a clean shutdown when possible, a bounded one always."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        poll_until(lambda: not pid_alive(pid), timeout_s, f"pid {pid} to exit on SIGTERM")
        return
    except WaitTimeoutError:
        logger.warning("pid %d did not stop within %.0f s; sending SIGKILL", pid, timeout_s)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    poll_until(lambda: not pid_alive(pid), KILL_WAIT_S, f"pid {pid} to exit on SIGKILL")


def stop_child(child: subprocess.Popen[bytes], timeout_s: float) -> int:
    """``terminate`` a child of ours, then reap it; its exit status.

    Until it is reaped a child's pid cannot be reused, so signalling it by pid is safe.
    """
    if child.poll() is None:
        terminate(child.pid, timeout_s)
    return child.wait(KILL_WAIT_S)


class Service:
    """A child process in a session of its own, output to its own log file; stopped by ``stop_child``."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.log_path = name, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            # A session of its own: Ctrl-C in the terminal reaches us, and we stop it in order.
            self.process = subprocess.Popen(
                list(argv), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float) -> int:
        return stop_child(self.process, timeout_s)
