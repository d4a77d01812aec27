"""Capture real ``sacct`` / ``squeue`` output of one SLURM world as golden files for the
parsers' unit tests (test_golden.py). Run as root from the repository root:

    PYTHONPATH=plugins:tests python tests/plugin/golden/capture.py bed      # the 22.05 bed
    PYTHONPATH=plugins:tests python tests/plugin/golden/capture.py cluster  # 24.11 cluster

Submits, as the submit user over SSH, one job per scenario (jobs.json maps scenario -> job
id), snapshots both commands exactly as ``SlurmHook`` runs them while the jobs run and again
once they ended (squeue keeps ended jobs for MinJobAge), into ``slurm-<version>/``. Takes
about 100 s: the TIMEOUT scenario needs ``--time=1`` to expire.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from hpc_pipeline.slurm.parse import SACCT_FIELDS, SEP, SQUEUE_FIELDS
from support import run_as_submit_user

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
ENV_COMMANDS = {
    "bed": ["bash", str(REPO / "hpc/devcluster/provision.sh"), "env"],
    "cluster": ["bash", str(REPO / "hpc/cluster/cluster.sh"), "env"],
}
# scenario -> (sbatch options, script); $$ is the batch shell itself.
SCENARIOS = {
    "completed": ([], "true"),
    "exit3": ([], "echo failing; exit 3"),
    "sigkill": ([], "kill -9 $$"),
    "child_sigkill": ([], 'sh -c "kill -9 \\$\\$"'),
    "cancelled": ([], "sleep 300"),
    "timeout": (["--time=1"], "sleep 300"),
    "array": (["--array=5-100%10"], "sleep 20"),
    "dependency": (["--dependency=afterok:{cancelled}"], "true"),
}


def ssh(world: dict[str, str], argv: list[str]) -> str:
    proc = run_as_submit_user(world, shlex.join(argv))
    if proc.returncode:
        raise RuntimeError(f"{argv[0]} failed: {proc.stderr}")
    return proc.stdout


def snapshot(world: dict[str, str], ids: list[str], out: Path, when: str) -> None:
    sacct = [
        "sacct",
        "-X",
        "--parsable2",
        "--noheader",
        f"--delimiter={SEP}",
        f"--format={','.join(SACCT_FIELDS)}",
        "-j",
        ",".join(ids),
    ]
    squeue = [
        "squeue",
        "-h",
        "-r",
        "-t",
        "all",
        "-j",
        ",".join(ids),
        "-O",
        ",".join(f"{f}:{SEP}" for f in SQUEUE_FIELDS),
    ]
    (out / f"sacct-{when}.txt").write_text(ssh(world, sacct))
    (out / f"squeue-{when}.txt").write_text(ssh(world, squeue))
    # the pending part of an array, unexpanded (how squeue shows "123_[15-100%10]")
    (out / f"squeue-pending-{when}.txt").write_text(
        ssh(world, ["squeue", "-h", "-t", "PD", "-j", ",".join(ids), "-o", f"%i{SEP}%T{SEP}%r"])
    )


def main(which: str) -> None:
    env = subprocess.run(ENV_COMMANDS[which], check=True, capture_output=True, text=True).stdout
    world = {
        k: v.strip('"') for k, v in (line.split("=", 1) for line in env.splitlines() if "=" in line)
    }
    version = ssh(world, ["sinfo", "--version"]).split()[1]  # "slurm 24.11.5"
    out = HERE / f"slurm-{'.'.join(version.split('.')[:2])}"
    out.mkdir(exist_ok=True)
    jobs: dict[str, str] = {}
    for name, (opts, script) in SCENARIOS.items():
        opts = [o.format(**jobs) for o in opts]
        jobs[name] = (
            ssh(
                world,
                [
                    "sbatch",
                    "--parsable",
                    f"--job-name=golden-{name}",
                    "--mem=50M",
                    "--output=/dev/null",
                    *opts,
                    "--wrap",
                    script,
                ],
            )
            .strip()
            .split(";")[0]
        )
    time.sleep(8)
    ssh(world, ["scancel", jobs["cancelled"]])
    time.sleep(2)
    ids = list(jobs.values())
    snapshot(world, ids, out, "running")
    ssh(world, ["scancel", jobs["array"]])
    deadline = time.monotonic() + 150
    while "TIMEOUT" not in ssh(world, ["sacct", "-X", "-n", "-o", "State", "-j", jobs["timeout"]]):
        if time.monotonic() > deadline:
            raise RuntimeError("the --time=1 job never timed out")
        time.sleep(3)
    snapshot(world, ids, out, "ended")
    uid = ssh(world, ["id", "-u"]).strip()
    (out / "jobs.json").write_text(
        json.dumps({"slurm": version, "submit_uid": uid, "jobs": jobs}, indent=2) + "\n"
    )
    print(f"{out}: {jobs}")


if __name__ == "__main__":
    main(sys.argv[1])
