"""A whole day on the SLURM 24.11 cluster (hpc/cluster/, AUDIO_TEST_CLUSTER=1) under a real
Airflow (api-server, scheduler, dag-processor, triggerer): REST trigger -> rows in PostgreSQL.
The day's shards are more than one node runs at once (each takes a node's 2 CPUs), so its
array spreads over both compute nodes; the source day and staging live on the shared volume."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import sample_clips
from airflow_api import AirflowApi
from dag_support import DAY, write_config
from slurm_worlds import SlurmWorld, open_world
from support import REPO, create_db, drop_db, one

# The stack's start and stop count too: 15 min was not enough on the shared 2-core machine
# at load 15 (the day itself took 12 min there).
pytestmark = pytest.mark.timeout(1800)
PORT = int(os.environ.get("AUDIO_TEST_CLUSTER_STACK_PORT", "8441"))
CLIPS = 6


@pytest.fixture(scope="module")
def cluster() -> SlurmWorld:
    return open_world("cluster")


@pytest.fixture(scope="module")
def cluster_stack(
    tmp_path_factory: pytest.TempPathFactory, cluster: SlurmWorld, postgres: str
) -> Iterator[dict[str, str]]:
    """An Airflow instance of its own whose hpc_ssh is the cluster's login node."""
    ns = os.environ.get("AUDIO_TEST_NS", "")
    source = cluster.scratch / f"audio-source-test{ns}"
    expected = sample_clips.make_day(source, DAY, clips=CLIPS)
    subprocess.run(["chmod", "-R", "a+rX", str(source)], check=True)
    results_db = f"results_cluster_{uuid.uuid4().hex[:8]}"
    create_db(results_db)
    home = REPO / ".airflow" / f"test-cluster-stack{ns}"
    config = write_config(
        tmp_path_factory.mktemp("cluster") / "site.json",
        uuid.uuid4().hex[:8],
        schedule=None,
        retries=1,
        source_root=str(source),
        shard_size=3,
        resources={
            "master": {"time": "00:10:00", "mem": "1G"},
            "transfer": {"time": "00:10:00", "mem": "1G"},
            "audio": {"time": "00:30:00", "mem": "4G", "cpus_per_task": 2, "array_parallelism": 4},
        },
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_PORT": str(PORT),
        "AIRFLOW_DB": f"airflow_cluster_test{ns}",
        "RESULTS_DB": results_db,
        "AUDIO_PIPELINE_CONFIG": str(config),
        "HPC_CLUSTER_SCRIPT": "hpc/cluster/cluster.sh",
        "VENV": str(Path(sys.executable).parents[1]),
    }
    for key in [k for k in env if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))]:
        del env[key]
    script = str(REPO / "scripts" / "airflow_stack.sh")
    subprocess.run(["bash", script, "start"], env=env, check=True)
    try:
        yield {
            "home": str(home),
            "results_dsn": f"{postgres}/{results_db}",
            "ok": str(sum(not v.startswith("error:") for v in expected.values())),
            "clips": str(len(expected)),
        }
    finally:
        subprocess.run(["bash", script, "stop"], env=env, check=False)
        drop_db(results_db)
        shutil.rmtree(source, ignore_errors=True)


def test_rest_triggered_day_on_the_cluster_uses_both_nodes(
    cluster_stack: dict[str, str], cluster: SlurmWorld
) -> None:
    api = AirflowApi(f"http://127.0.0.1:{PORT}")
    api.wait_for_dag("audio_pipeline_daily")
    api.unpause("audio_pipeline_daily")
    run_id = api.trigger("audio_pipeline_daily", {"date": DAY, "reprocess": "none"})
    state = api.wait("audio_pipeline_daily", run_id, timeout_s=900)
    assert state == "success", api.task_states("audio_pipeline_daily", run_id)
    with psycopg.connect(cluster_stack["results_dsn"]) as conn:
        (ok,) = one(conn, "SELECT count(*) FROM transcripts")
        clips = one(conn, "SELECT count(*), count(DISTINCT clip_id) FROM audio_clips")
        nodes = conn.execute(
            "SELECT step, array_index, node FROM slurm_jobs ORDER BY step, array_index"
        ).fetchall()
        day = one(conn, "SELECT status, clips_planned FROM audio_days")
    assert ok == int(cluster_stack["ok"])
    assert clips == (int(cluster_stack["clips"]),) * 2  # every clip recorded once
    audio_nodes = {node for step, _, node in nodes if step == "audio"}
    print(f"day {DAY} on SLURM {cluster.version}: {day}; jobs by node: {nodes}")
    assert audio_nodes == set(cluster.compute_nodes), nodes
    assert {step for step, _, _ in nodes} == {"master", "transfer", "audio"}
