"""The version of the law that is running, stamped on every ledger entry and rejection.

``GRID_VALIDATOR_VERSION`` overrides it (builds without git); otherwise the git commit of the code,
with ``-dirty`` when tracked files differ from it, so an entry never claims a law it was not decided by.
"""

from __future__ import annotations

import functools
import subprocess

from core import config
from core.config import REPO_ROOT

GIT_TIMEOUT_S = 10


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True, timeout=GIT_TIMEOUT_S
    ).stdout.strip()


@functools.cache
def validator_version() -> str:
    override = config.load().validator_version
    if override:
        return override
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit
