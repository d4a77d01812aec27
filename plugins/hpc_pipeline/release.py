"""Deploy the ``hpc/`` code to the cluster as an immutable, content-addressed release.

``<release_root>/<id>/`` where ``id`` hashes every file's path and bytes: the same code is
uploaded once, a changed file makes a new release, and jobs of a running day keep the
release they were submitted with.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import uuid
from pathlib import Path

from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.slurm.errors import SlurmError

log = logging.getLogger(__name__)
# What the jobs run: the sbatch scripts, the cluster package and the runtime's requirements
# (a checkout's hpc/ also holds the dev bed, the container cluster and packaging files).
_RELEASED = ("slurm/", "src/", "requirements-hpc")
_SKIP_PARTS = {"__pycache__", ".pytest_cache"}


def release_files(local_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in local_dir.rglob("*")
        if p.is_file()
        and p.relative_to(local_dir).as_posix().startswith(_RELEASED)
        and not _SKIP_PARTS.intersection(p.relative_to(local_dir).parts)
    )


def release_id(local_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in release_files(local_dir):
        digest.update(path.relative_to(local_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def deploy_release(ssh: SlurmHook, local_dir: Path, release_root: str) -> str:
    """Upload ``local_dir`` unless that release is already there; return its remote path.

    Uploads go to a temp dir renamed into place, so a half-copied release is never used.
    """
    target = posixpath.join(release_root, release_id(local_dir))
    if ssh.exists(posixpath.join(target, ".complete")):
        log.info("Release %s already deployed", target)
        return target
    tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
    files = release_files(local_dir)
    for folder in sorted({p.parent.relative_to(local_dir).as_posix() for p in files}):
        ssh.makedirs(posixpath.join(tmp, folder))
    for path in files:
        ssh.write_text(
            posixpath.join(tmp, path.relative_to(local_dir).as_posix()),
            path.read_text(encoding="utf-8"),
            mode=0o755 if path.suffix == ".sh" else 0o644,
        )
    ssh.write_text(posixpath.join(tmp, ".complete"), "")
    try:
        ssh.check(["mv", "-T", tmp, target], what=f"moving the release into {target}")
    except SlurmError:
        ssh.check(["rm", "-rf", "--", tmp], what=f"removing {tmp}")
        if not ssh.exists(posixpath.join(target, ".complete")):  # lost a race is fine
            raise
    log.info("Deployed %d files to %s", len(files), target)
    return target
