"""Run a check script of this folder under the HPC Python (torch, Triton, transformers) and
return the JSON object it prints last. The scripts import the cluster package and the clip
synthesizer by name: ``make install`` installs both editable into the HPC runtime."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from support import HPC_PYTHON, REPO


def run_checks(script: str, timeout: float = 600) -> dict[str, Any]:
    proc = subprocess.run(
        [HPC_PYTHON, str(REPO / "tests" / "engines" / script)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
