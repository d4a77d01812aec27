"""With ``transfer_backend: globus`` the DAG hands the jobs the collections and a credentials
file written from the Airflow connection, 0600 on the real cluster (never argv or env)."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import pytest

from dag_support import write_config
from hpc_pipeline.config import load_config
from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.steps import DayContext, write_globus_credentials
from support import import_dag

SOURCE, DEST = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture
def globus_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_config(
        tmp_path / "globus.json",
        uuid.uuid4().hex[:8],
        transfer_backend="globus",
        globus_source_collection=SOURCE,
        globus_dest_collection=DEST,
        globus_dest_root="/staging",
    )
    monkeypatch.setenv("AUDIO_PIPELINE_CONFIG", str(path))
    monkeypatch.setenv(
        "AIRFLOW_CONN_GLOBUS_DEFAULT",
        json.dumps(
            {"conn_type": "generic", "login": "client-id-123", "password": "s3cr3t'; rm -rf ~"}
        ),
    )
    return path


def test_dag_passes_collections_and_credentials_path(globus_config: Path) -> None:
    module = import_dag("audio_pipeline_daily_globus")
    dag = module.dag
    master, transfer = dag.get_task("master"), dag.get_task("transfer")
    assert "globus_credentials" in master.upstream_task_ids
    for op in (master, transfer):
        args = list(op.script_args)
        assert args[args.index("--source-collection") + 1] == SOURCE
        assert "--globus-credentials" in args
        assert not any("s3cr3t" in a for a in args) and "s3cr3t" not in json.dumps(op.env)
    args = list(transfer.script_args)
    assert args[args.index("--dest-collection") + 1] == DEST


def test_credentials_file_is_private_on_the_cluster(globus_config: Path, ssh_conn_id: str) -> None:
    config = load_config()
    hook = SlurmHook(ssh_conn_id)
    try:
        root = hook.resolve(config.remote_root)
        ctx = DayContext(
            day="2024-01-15",
            plan_id="p",
            reprocess="none",
            run_id="r",
            staging_root=f"{root}/staging",
            day_dir=f"{root}/staging/2024-01-15",
            release_root=f"{root}/releases",
        )
        path = write_globus_credentials(hook, config, ctx)
        assert path == f"{root}/secrets/globus.json"
        assert stat.S_IMODE(hook.sftp().stat(path).st_mode) == 0o600
        assert stat.S_IMODE(hook.sftp().stat(f"{root}/secrets").st_mode) == 0o700
        assert json.loads(hook.read_text(path)) == {
            "client_id": "client-id-123",
            "client_secret": "s3cr3t'; rm -rf ~",
        }
    finally:
        hook.run(["rm", "-rf", "--", hook.resolve(config.remote_root)])
        hook.close()
