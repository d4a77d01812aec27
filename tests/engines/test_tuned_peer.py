"""The tuned transformers peer of bench_gpu_throughput.py (``bench/tuned_peer.py``): it cuts
the windows transformers' ASR pipeline cuts, and it reports the search and the cache that
``generate`` ran (a peer that silently ran beam search once made a ratio 4x too large)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from support import HPC_PYTHON, REPO


@pytest.fixture(scope="module")
def checks() -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "bench")}
    proc = subprocess.run(
        [HPC_PYTHON, str(REPO / "tests" / "engines" / "tuned_peer_checks.py")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_windows_are_the_pipelines(checks: dict) -> None:
    """Same windows as ``chunk_iter`` (30 s, 5 s strides) from half a second to 200 s,
    across each boundary where a window is added."""
    for seconds, got in checks["cuts"].items():
        assert got["ours"] == got["pipeline"], seconds
    assert len(checks["cuts"]["200"]["ours"]) == 10


def test_the_search_and_cache_that_ran_are_observed(checks: dict) -> None:
    ran = checks["searches"]
    assert set(ran["greedy"]["methods"]) == {"_sample"}
    assert set(ran["beam2"]["methods"]) == {"_beam_search"}
    assert "StaticCache" in ran["static"]["caches"]
    assert "StaticCache" not in ran["greedy"]["caches"]
    assert not ran["static"]["compiled_call"] and ran["static"]["dynamo_graphs_compiled"] == 0
