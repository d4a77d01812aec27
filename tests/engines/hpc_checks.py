"""Run a check script of this folder under the HPC Python (torch, Triton, transformers) and
return the JSON object it prints last."""
from __future__ import annotations

import json
import subprocess

from tests.conftest import REPO
from tests.hpc.slurm_jobs import HPC_PYTHON


def run_checks(script: str, timeout: float = 600) -> dict:
    proc = subprocess.run([HPC_PYTHON, str(REPO / "tests" / "engines" / script)],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
