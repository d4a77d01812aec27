"""The shard's decoding: PyAV in worker processes gives FFmpeg's samples and FFmpeg's failure
reasons (tests/engines/audio_decode_checks.py, under the HPC Python)."""

from __future__ import annotations

import pytest

from hpc_checks import run_checks


@pytest.fixture(scope="module")
def checks(engine_runtime: dict[str, str]) -> dict:
    return run_checks("audio_decode_checks.py", timeout=300)


def test_pyav_decodes_what_ffmpeg_decodes(checks: dict) -> None:
    assert checks["pyav_vs_ffmpeg_max_abs_diff"] < 1e-4


def test_process_pool_gives_each_clip_the_thread_pool_outcome(checks: dict) -> None:
    """Durations for clips that decode (speech, and silence: the engine judges that one); the
    reason (empty, not_audio, corrupt) for the others, the same as the FFmpeg threads give and
    as the clips were made to fail."""
    assert checks["processes"] == checks["threads"]
    decode_failures = {"empty", "not_audio", "corrupt"}
    for name, want in checks["expected"].items():
        got = checks["processes"][name]
        if want in decode_failures:
            assert got == want, name
        else:
            assert isinstance(got, float) and got > 1.0, name


def test_too_long_travels_back_from_a_worker_process(checks: dict) -> None:
    assert list(checks["short_limit"].values()) == ["too_long"]
