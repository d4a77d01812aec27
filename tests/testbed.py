"""Helpers for tests that talk to the test bed directly (not through Airflow)."""
from __future__ import annotations

import subprocess
import time
from typing import Any, Callable


def run_as_submit_user(devcluster: dict[str, str], command: str) -> subprocess.CompletedProcess:
    """Run a shell command on the test bed as the submit user, the way Airflow does (SSH)."""
    return subprocess.run(
        ["ssh", "-i", devcluster["DEVCLUSTER_KEY"], "-p", devcluster["DEVCLUSTER_SSH_PORT"],
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={devcluster['DEVCLUSTER_KNOWN_HOSTS']}",
         f"{devcluster['DEVCLUSTER_USER']}@{devcluster['DEVCLUSTER_SSH_HOST']}", command],
        text=True, capture_output=True, timeout=120)



def wait_until(predicate: Callable[[], Any], timeout_s: float) -> Any:
    """Poll ``predicate`` every 0.5 s until it returns something truthy, and return that.
    RuntimeError (e.g. an XCom not there yet) and OSError (an API call timed out on a loaded
    machine, or a component restarting) count as "not yet"."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except (RuntimeError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout_s} s")
