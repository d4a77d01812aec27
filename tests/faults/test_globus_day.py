"""A whole day with the Globus backend (the cloud faked on 127.0.0.1, see fake_globus.py;
the SLURM jobs, SSH, SFTP and PostgreSQL are real).

Fault: Globus reports one file failed. That clip is recorded ``transfer_failed`` with
Globus's reason, the other is transcribed; a new run with ``reprocess=failed`` transfers
and transcribes only the failed clip.

Secrets: over both runs, the Globus client secret and the results DB password appear in no
task log, no job log, no job environment (``scontrol show job``, the controller's saved job
environment, the jobs' /proc/<pid>/environ) and no process's command line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fake_globus import FakeGlobus
from faults_support import (
    LOGICAL_DATE,
    SOURCE_ROOT,
    assert_recorded_once,
    load_dag,
    query,
    run_day,
    staging_day,
)

SOURCE, DEST = str(uuid.uuid4()), str(uuid.uuid4())
GLOBUS_PORT = 8142
SUBMIT_UID = pwd.getpwnam("hpcuser").pw_uid


class ProcessWatch:
    """Samples every process's command line, and the submit user's processes' environment
    (the jobs), for the secrets, until stopped."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = [s.encode() for s in secrets]
        self.leaks: list[str] = []
        self.job_processes: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit() or int(proc.name) == os.getpid():
                    continue  # this process is Airflow: it holds its connections
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                    mine = proc.stat().st_uid == SUBMIT_UID
                    environ = (proc / "environ").read_bytes() if mine else b""
                except OSError:
                    continue
                if mine and b"SLURM_JOB_ID=" in environ:
                    self.job_processes.add(int(proc.name))
                for secret in self.secrets:
                    if secret in cmdline or secret in environ:
                        self.leaks.append(f"pid {proc.name}: {cmdline[:200]!r}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def globus(
    fault_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tag: str
) -> Iterator[tuple[FakeGlobus, Path, str]]:
    secret = f"globus-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_GLOBUS_DEFAULT",
        json.dumps({"conn_type": "generic", "login": "client-id-faults", "password": secret}),
    )
    with FakeGlobus(GLOBUS_PORT, "hpcuser") as fake:
        export = "--export=ALL," + ",".join(f"{k}={v}" for k, v in fake.env.items())
        staging = staging_day(tag).parent
        config = fault_config(
            transfer_backend="globus",
            source_root=str(SOURCE_ROOT),
            globus_source_collection=SOURCE,
            globus_dest_collection=DEST,
            globus_dest_root=str(staging),
            # the fake service serves transfers, not listings: plan at once (the readiness
            # listing through Globus is tested in tests/plugin/test_source_ready_units.py)
            readiness={"rule": "none"},
            resources={"master": {"extra_args": [export]}, "transfer": {"extra_args": [export]}},
        )
        yield fake, config, secret


def test_globus_day_failed_file_then_reprocess_failed_and_no_secret_leaks(
    globus: tuple[FakeGlobus, Path, str],
    private_postgres: dict,
    private_results_db: str,
    source_day: list[str],
    tag: str,
    capfd: pytest.CaptureFixture,
) -> None:
    fake, config, secret = globus
    dsn, password = private_results_db, private_postgres["password"]
    bad, good = source_day[1], source_day[0]
    fake.fail = {bad}
    watch = ProcessWatch([secret, password])
    dag = load_dag(config)

    run = run_day(dag)
    assert run.state == "success", run.tasks
    rows = dict(
        (cid.split("/", 1)[1], (st, kind, err))
        for cid, st, kind, err in query(
            dsn, "SELECT clip_id, status, error_kind, error FROM audio_clips"
        )
    )
    assert rows[good][:2] == ("ok", None)
    assert rows[bad][:2] == ("failed", "transfer_failed") and "PERMISSION_DENIED" in rows[bad][2]
    (first_text,) = query(dsn, "SELECT text, recorded_at FROM transcripts")

    fake.fail = set()
    again = run_day(dag, logical_date=LOGICAL_DATE + dt.timedelta(hours=1), reprocess="failed")
    watch.stop()
    assert again.state == "success", again.tasks
    assert_recorded_once(dsn, source_day)
    assert [len(items) for items in fake.submissions] == [2, 1]  # only the failed clip again
    assert [Path(i["source_path"]).name for i in fake.submissions[1]] == [bad]
    assert first_text in query(dsn, "SELECT text, recorded_at FROM transcripts")  # untouched

    # Secrets: everything a user of the cluster or of Airflow can read.
    task_logs = "".join(capfd.readouterr())
    assert "Submitted SLURM job" in task_logs
    job_ids = sorted({j for (j,) in query(dsn, "SELECT job_id FROM slurm_jobs")})
    assert len(job_ids) >= 6  # 3 steps x 2 runs
    day = staging_day(tag)
    job_logs = {p: p.read_text(errors="replace") for p in day.glob("logs/*.out")}
    assert len(job_logs) == len(job_ids)
    scontrol = {
        j: subprocess.run(
            ["scontrol", "show", "job", "-dd", j], capture_output=True, text=True
        ).stdout
        for j in job_ids
    }
    saved_env = {
        p: p.read_bytes().decode(errors="replace")
        for j in job_ids
        for p in Path("/var/spool/slurmctld").glob(f"hash.*/job.{j}/environment")
    }
    assert any("SLURM_UMASK" in text for text in saved_env.values()), "saw no job environment"
    assert watch.job_processes, "no job process was sampled"
    for name, value in (("Globus secret", secret), ("DB password", password)):
        assert value not in task_logs, f"{name} in a task log"
        for where, text in [*job_logs.items(), *scontrol.items(), *saved_env.items()]:
            assert value not in text, f"{name} in {where}"
    assert not watch.leaks, watch.leaks
    # The control: the secret is on the cluster, in the one 0600 file meant for it.
    creds = day.parents[1] / "secrets" / "globus.json"
    assert secret in creds.read_text() and creds.stat().st_mode & 0o077 == 0
