"""Helpers for tests that talk to the test bed directly (not through Airflow)."""
from __future__ import annotations

import subprocess


def run_as_submit_user(devcluster: dict[str, str], command: str) -> subprocess.CompletedProcess:
    """Run a shell command on the test bed as the submit user, the way Airflow does (SSH)."""
    return subprocess.run(
        ["ssh", "-i", devcluster["DEVCLUSTER_KEY"], "-p", devcluster["DEVCLUSTER_SSH_PORT"],
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={devcluster['DEVCLUSTER_KNOWN_HOSTS']}",
         f"{devcluster['DEVCLUSTER_USER']}@{devcluster['DEVCLUSTER_SSH_HOST']}", command],
        text=True, capture_output=True, timeout=120)

