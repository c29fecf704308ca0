"""Another version of the law, in its own process: the code at a git revision runs from a temporary
worktree, so the version it stamps is its own. It reads a copy of the proposals topic up to the bound
(offsets preserved and checked), so it stops exactly there and its records stay out of the live topics.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import KafkaError, Message, Producer

from connectors.kafka_admin import delete_group_if_any, delete_topics, ensure_topics
from connectors.kafka_io import produce_with_backpressure, proposal_producer
from connectors.progress import progress_bar
from connectors.readmodel.replay import stored_position
from core.config import REPO_ROOT, Settings
from core.kafka_access import KafkaAccess
from core.process import stop_child
from streams.log_reader import read_log
from streams.replay_errors import ReplayError

GIT_TIMEOUT_S = 120
FLUSH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
STALL_S = 60.0  # no new offset copied or decided for this long: the topic is shorter than the bound, or stuck
POLL_EVERY_S = 0.25
IDLE_EXIT_S = 3


@contextmanager
def worktree(rev: str) -> Iterator[tuple[Path, str]]:
    """A detached git worktree of ``rev`` (removed afterwards) and its full commit id."""
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    path = Path(tempfile.gettempdir()) / f"grid-law-{commit[:12]}-{secrets.token_hex(3)}"
    _git("worktree", "add", "--detach", str(path), commit)
    try:
        yield path, commit
    finally:
        _git("worktree", "remove", "--force", str(path))


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise ReplayError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def mirror_proposals(kafka: KafkaAccess, source: str, dest: str, to_offset: int) -> None:
    """Copy offsets [0, to_offset) of ``source`` into the empty ``dest``; each must land at its own offset."""
    producer = proposal_producer(kafka, linger_ms=20)
    misplaced: list[str] = []
    with progress_bar(total=to_offset, desc="copy proposals", unit="msg", unit_scale=True) as bar:
        for _, msg in read_log(kafka, source, to_offset, "gridgov-replay-mirror"):
            _produce(producer, dest, msg, misplaced)
            bar.update(1)
    if producer.flush(FLUSH_TIMEOUT_S) > 0:
        raise ReplayError("copy of the proposals not acknowledged in time")
    if misplaced:
        raise ReplayError(f"{len(misplaced)} copied proposals landed at other offsets: {misplaced[:3]}")


def _produce(producer: Producer, dest: str, msg: Message, misplaced: list[str]) -> None:
    source_offset = msg.offset()

    def delivered(err: KafkaError | None, copied: Message) -> None:
        if err is not None or copied.offset() != source_offset:
            misplaced.append(f"{source_offset} -> {err or copied.offset()}")

    produce_with_backpressure(
        producer, dest, msg.value(), msg.key(), on_delivery=delivered, timestamp_ms=msg.timestamp()[1]
    )
    producer.poll(0)


def run_other_law(live: Settings, target_url: str, to_offset: int, secret: bytes, rev: str, run_id: str) -> str:
    """Decide offsets [0, to_offset) with the law at ``rev``, in its own process; return its commit."""
    prefix = f"{live.topic_prefix}.cf-{run_id}"
    scratch = live.replace(topic_prefix=prefix)
    ensure_topics(scratch)
    try:
        mirror_proposals(live.kafka("admin"), live.topic("proposals"), scratch.topic("proposals"), to_offset)
        with worktree(rev) as (path, commit):
            _run_validator_process(path, scratch, target_url, secret, to_offset, group=f"gridgov-{run_id}")
    finally:
        delete_topics(live, prefix)
        delete_group_if_any(live.kafka("admin"), f"gridgov-{run_id}")
    return commit


def _run_validator_process(
    code: Path, scratch: Settings, target_url: str, secret: bytes, to_offset: int, group: str
) -> None:
    child = scratch.replace(
        database_url_external=target_url,
        key_secret=secret.hex(),
        log_level="WARNING",
        validator_version=None,  # unset: the revision stamps its own commit
    )
    env = {**os.environ, **child.as_env(), "PYTHONPATH": str(code)}
    cmd = [sys.executable, "-m", "gridgov.cli", "validator", "--group", group]
    cmd += ["--idle-exit-s", str(IDLE_EXIT_S), "--metrics-port", "0"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=code, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            _watch(proc, target_url, to_offset)
        finally:
            stop_child(proc, STOP_TIMEOUT_S)
        log.seek(0)
        tail = log.read()[-3000:].decode(errors="replace")
    if proc.returncode != 0:
        raise ReplayError(f"the validator at that revision exited {proc.returncode}:\n{tail}")


def _watch(proc: subprocess.Popen[bytes], target_url: str, to_offset: int) -> None:
    """Follow the other validator's stored position until it exits; it must have reached the bound."""
    last_progress, position = time.monotonic(), 0
    with progress_bar(total=to_offset, desc="counterfactual", unit="offset", unit_scale=True) as bar:
        while proc.poll() is None:
            time.sleep(POLL_EVERY_S)
            now = _target_position(target_url)
            if now > position:
                position, last_progress = now, time.monotonic()
                bar.update(position - bar.n)
            elif time.monotonic() - last_progress > STALL_S:
                raise ReplayError(f"the other validator made no progress for {STALL_S:.0f} s at offset {position}")
    final = _target_position(target_url)
    if proc.returncode == 0 and final != to_offset:
        raise ReplayError(f"the other validator stopped at offset {final}, not {to_offset}")


def _target_position(target_url: str) -> int:
    return stored_position(target_url) or 0  # 0 also before its migrations ran
