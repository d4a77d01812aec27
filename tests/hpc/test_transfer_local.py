"""The local backend, in process: checksum-verified copies, skip when already staged, and an
unreadable source failing alone."""

from __future__ import annotations

import hashlib
from pathlib import Path

from audio_hpc.contract import Clip, Manifest, Shard, TransferReport
from audio_hpc.transfer import day as transfer_day

DATE = "2024-01-15"


def _setup(tmp_path: Path) -> tuple[Path, Manifest]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.m4a").write_bytes(b"A" * 3_000_000)  # several copy blocks
    (src / "b.wav").write_bytes(b"B")
    clips = [Clip(f"{DATE}/{n}", n, str(src / n), 1) for n in ("a.m4a", "b.wav")]
    clips.append(Clip(f"{DATE}/gone.mp4", "gone.mp4", str(src / "gone.mp4"), 1))
    manifest = Manifest(date=DATE, plan_id="p1", source="local", shards=[Shard(0, clips)])
    day = tmp_path / "stage" / DATE
    day.mkdir(parents=True)
    (day / "manifest.json").write_text(manifest.to_json())
    return day, manifest


def _run(day: Path) -> TransferReport:
    assert (
        transfer_day.main(["--date", DATE, "--staging-root", str(day.parent), "--backend", "local"])
        == 0
    )
    return TransferReport.from_json((day / "transfer.json").read_text())


def test_copy_verify_then_skip(tmp_path: Path) -> None:
    day, _ = _setup(tmp_path)
    first = _run(day)
    assert [(f.name, f.status) for f in first.files] == [
        ("a.m4a", "transferred"),
        ("b.wav", "transferred"),
        ("gone.mp4", "failed"),
    ]
    assert "No such file or directory" in first.files[2].error
    assert first.files[0].checksum == hashlib.sha256(b"A" * 3_000_000).hexdigest()
    assert (day / "audio" / "a.m4a").read_bytes() == b"A" * 3_000_000
    assert not [p for p in (day / "audio").iterdir() if p.name.startswith(".")]

    (day / "audio" / "b.wav").write_bytes(b"stale")  # a different file is replaced
    second = _run(day)
    assert [f.status for f in second.files] == ["skipped", "transferred", "failed"]
    assert (day / "audio" / "b.wav").read_bytes() == b"B"
    assert (second.plan_id, second.backend) == ("p1", "local")
