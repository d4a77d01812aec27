"""Run a check script of this folder under the HPC Python (torch, Triton, transformers) and
return the JSON object it prints last."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from support import HPC_PYTHON, REPO

# what the check scripts import by name: the cluster code and the demo's clip synthesizer
CHECKS_PATH = os.pathsep.join(str(REPO / d) for d in ("hpc/src", "hpc/devcluster"))


def run_checks(script: str, timeout: float = 600) -> dict[str, Any]:
    proc = subprocess.run(
        [HPC_PYTHON, str(REPO / "tests" / "engines" / script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": CHECKS_PATH},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
