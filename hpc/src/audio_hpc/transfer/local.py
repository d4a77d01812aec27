"""Local backend: copy clips from a directory to staging, verifying a SHA-256 of each copy.

A clip already staged with the same checksum is skipped; a source that cannot be read is
recorded as failed with the reason and the other clips proceed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from audio_hpc.checksums import sha256_file
from audio_hpc.contract import Clip, StagingFull, TransferOutcome, atomic_file


def _copy_hashing(src: Path, dest: Path) -> str:
    """Copy atomically (never a half-written clip on staging); return the sha256 of the
    bytes read from the source."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, atomic_file(dest, "wb") as fout:
        for block in iter(lambda: fin.read(1 << 20), b""):
            h.update(block)
            fout.write(block)
    return h.hexdigest()


def transfer_clip(clip: Clip, audio_dir: Path) -> TransferOutcome:
    src, dest = Path(clip.source_path), audio_dir / clip.name
    try:
        source_sum = sha256_file(src)
        if dest.is_file() and sha256_file(dest) == source_sum:
            return TransferOutcome(clip.clip_id, clip.name, "skipped", checksum=source_sum)
        copied_sum = _copy_hashing(src, dest)
    except OSError as exc:
        StagingFull.check(exc, dest)  # a full staging disk is the day's fault, not the clip's
        return TransferOutcome(
            clip.clip_id, clip.name, "failed", error=f"cannot copy {src}: {exc.strerror or exc}"
        )
    staged_sum = sha256_file(dest)
    if not source_sum == copied_sum == staged_sum:
        dest.unlink(missing_ok=True)
        return TransferOutcome(
            clip.clip_id,
            clip.name,
            "failed",
            error="checksum mismatch after copy (source changed or bad disk)",
        )
    return TransferOutcome(clip.clip_id, clip.name, "transferred", checksum=staged_sum)


def transfer_all(clips: list[Clip], audio_dir: Path) -> list[TransferOutcome]:
    audio_dir.mkdir(parents=True, exist_ok=True)
    return [transfer_clip(c, audio_dir) for c in clips]
