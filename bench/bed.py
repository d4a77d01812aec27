"""What the scale benches share: the local test bed (sshd + SLURM, PostgreSQL) as Airflow
connections, a fresh results DB, the machine's name, synthesized clips and result lines.

Import this before anything from Airflow: it sets Airflow's environment (its own
AIRFLOW_HOME under .airflow/bench, the plugins folder) before Airflow is imported.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NS = os.environ.get("AUDIO_TEST_NS", "")
RESULTS = REPO / "bench" / "results"

os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".airflow" / "bench"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

# Airflow puts its plugins folder (set above) on sys.path when imported: then the plugin's
# package imports by name, as in the DAG processor and the workers.
import airflow  # noqa: E402,F401

from audio_hpc.contract import ClipResult  # noqa: E402

WORDS = (
    "the quick brown fox jumps over a lazy dog while research data engineers watch "
    "thousands of short clips arrive every single day"
).split()


def machine() -> dict[str, Any]:
    """The box the numbers come from (they are meaningless without it)."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "",
    )
    mem_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    return {
        "name": f"{os.cpu_count()}-core dev box",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "shared_with": "the other helpers' tests and SLURM jobs (2 cores, one test bed)",
        "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],
    }


def _devcluster() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(REPO / "hpc" / "devcluster" / "provision.sh"), "env"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {
        k: v.strip('"') for k, v in (line.split("=", 1) for line in out.splitlines() if "=" in line)
    }


def ssh_connection() -> dict[str, str]:
    """Register ``hpc_ssh`` (host key pinned) for the test bed; return its facts."""
    bed = _devcluster()
    os.environ["AIRFLOW_CONN_HPC_SSH"] = json.dumps(
        {
            "conn_type": "ssh",
            "host": bed["DEVCLUSTER_SSH_HOST"],
            "port": int(bed["DEVCLUSTER_SSH_PORT"]),
            "login": bed["DEVCLUSTER_USER"],
            "extra": {
                "key_file": bed["DEVCLUSTER_KEY"],
                "host_key": bed["DEVCLUSTER_HOST_KEY"],
                "no_host_key_check": False,
            },
        }
    )
    return bed


def _psql(sql: str) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-qAt", "-d", "postgres", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    )


@contextmanager
def results_db(tag: str) -> Iterator[str]:
    """A fresh results DB registered as ``audio_results_db`` (dropped afterwards); its DSN."""
    name = f"bench_{tag}{NS}_{uuid.uuid4().hex[:6]}".lower()
    _psql(f"CREATE DATABASE {name} OWNER audio")
    os.environ["AIRFLOW_CONN_AUDIO_RESULTS_DB"] = json.dumps(
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "login": "audio",
            "password": "audio",
            "schema": name,
        }
    )
    try:
        yield f"postgresql://audio:audio@127.0.0.1:5432/{name}"
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def clip_path(i: int) -> str:
    """Relative path of clip ``i`` of a day: 100 clips per camera folder."""
    return f"cam-{i // 100:04d}/clip-{i:06d}.m4a"


def result_line(
    date: str,
    i: int,
    *,
    segments: int = 10,
    status: str = "ok",
    plan_id: str = "bench",
    shard_size: int = 50,
) -> ClipResult:
    """A plausible outcome for clip ``i``: ~10 segments of ~12 words (a 30-60 s clip)."""
    if status != "ok":
        return ClipResult(
            clip_id=f"{date}/{clip_path(i)}",
            date=date,
            status="failed",
            engine="whisperx",
            model="tiny.en",
            error_kind="corrupt",
            error="Invalid data found when processing input",
            job_id="1000",
            array_index=i // shard_size,
            node="vm",
            finished_at=f"{date}T23:00:00+00:00",
        )
    segs = []
    for s in range(segments):
        text = " ".join(WORDS[(i + s + k) % len(WORDS)] for k in range(12))
        segs.append({"start": s * 4.0, "end": s * 4.0 + 3.6, "text": text})
    return ClipResult(
        clip_id=f"{date}/{clip_path(i)}",
        date=date,
        status="ok",
        engine="whisperx",
        model="tiny.en",
        language="en",
        duration_s=segments * 4.0,
        text=" ".join(seg["text"] for seg in segs),
        segments=segs,
        alignment="skipped: offline",
        timings={"decode_s": 0.1, "transcribe_s": 1.2},
        job_id="1000",
        array_index=i // shard_size,
        node="vm",
        finished_at=f"{date}T23:00:00+00:00",
    )


# Runs a Python module (`-c WRAPPER MODULE ARGS`) and prints its peak RSS (VmHWM, kB) to
# stderr when it exits. VmHWM belongs to the process's own memory map: unlike ru_maxrss it does not inherit the high-water
# mark of the (large) benchmark process it was forked from.
PEAK_RSS_WRAPPER = (
    "import atexit, runpy, sys\n"
    "def peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('PEAK_RSS_KB=' + line.split()[1] + '\\n')\n"
    "atexit.register(peak)\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def peak_rss_mib(stderr: str) -> float:
    """The peak RSS that ``PEAK_RSS_WRAPPER`` reported, in MiB."""
    kb = [
        int(line.split("=", 1)[1])
        for line in stderr.splitlines()
        if line.startswith("PEAK_RSS_KB=")
    ]
    return round(kb[-1] / 1024, 1)


def write_json(name: str, doc: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(
        json.dumps(
            {
                "machine": machine(),
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **doc,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {path}")
    return path
