"""Checks of the shard's decoding under the HPC Python (PyAV there), run by
test_audio_decode.py; prints one JSON object.

The independent reference is the FFmpeg command line: PyAV must give the same samples, and
the pool (worker processes) the same outcome per clip, bad clips' reasons included, as the
FFmpeg threads it replaces.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

import sample_clips
from audio_hpc.decode import DecodeError, DecodeJob, DecodePool, _ffmpeg_samples, _pyav_samples


def outcomes(pool: DecodePool) -> dict[str, object]:
    return {
        job.clip_id: o.kind if isinstance(o, DecodeError) else round(o.duration_s, 3)
        for job, o in pool
    }


def main() -> None:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        expected = sample_clips.make_day(Path(tmp), "day", clips=3, sentences_per_clip=1)
        day = Path(tmp) / "day"
        good = sorted(n for n, t in expected.items() if not t.startswith("error:"))
        diffs = []
        for name in good:
            a, b = _pyav_samples(day / name, 600), _ffmpeg_samples(day / name, 600)
            diffs.append(float(np.abs(a - b).max()) if a.size == b.size else float("inf"))
        out["pyav_vs_ffmpeg_max_abs_diff"] = max(diffs)
        out["expected"] = {
            n: t.removeprefix("error:") if t.startswith("error:") else "ok"
            for n, t in expected.items()
        }
        jobs = [DecodeJob(n, day / n) for n in sorted(expected)]
        for name, processes in (("processes", True), ("threads", False)):
            with DecodePool(jobs, 2, 600, processes=processes) as pool:
                out[name] = outcomes(pool)
        with DecodePool(jobs[:1], 1, 1.0, processes=True) as pool:
            out["short_limit"] = outcomes(pool)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
