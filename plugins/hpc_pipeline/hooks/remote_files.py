"""Files on the login node's filesystem (SFTP, and ``tar``/``df`` over the same SSH
connection), for ``SlurmHook``: releases, requests, manifests, results, staging space."""

from __future__ import annotations

import os
import posixpath
import shlex
import stat
import tarfile
from collections.abc import Iterator, Sequence

import paramiko

from hpc_pipeline.slurm import commands
from hpc_pipeline.slurm.errors import SlurmError
from hpc_pipeline.slurm.parse import parse_free_space


class RemoteFiles:
    """File operations over the hook's connection; relative paths are under the submit
    user's home. Mixed into ``SlurmHook``, which provides the connection and ``check``."""

    cmd_timeout: float
    _home: str | None

    def get_conn(self) -> paramiko.SSHClient:
        raise NotImplementedError

    def sftp(self) -> paramiko.SFTPClient:
        raise NotImplementedError

    def run(self, argv: Sequence[str], timeout: float | None = None) -> tuple[int, str, str]:
        raise NotImplementedError

    def check(self, argv: Sequence[str], what: str | None = None) -> str:
        raise NotImplementedError

    def home(self) -> str:
        if self._home is None:
            self._home = self.sftp().normalize(".")
        return self._home

    def resolve(self, path: str) -> str:
        """Absolute remote path; relative ones (and ``~/...``) are under the user's home."""
        if path == "~" or path.startswith("~/"):
            path = path[2:]
        return path if path.startswith("/") else posixpath.join(self.home(), path)

    def read_text(self, path: str) -> str:
        with self.sftp().open(self.resolve(path), "r") as fh:
            fh.prefetch()  # pipelined reads: one round trip per 32 KiB block is slow for MBs
            return fh.read().decode("utf-8")

    def iter_tree(self, root: str, subdir: str) -> Iterator[tuple[str, bytes]]:
        """(path relative to ``root``, content) of every file under ``root/subdir``, sorted by
        path, streamed as one gzip'd tar over one SSH channel.

        Why not SFTP per file: a big day's results are hundreds of files and tens of MB of
        JSON; one compressed stream moves ~10x fewer bytes with no round trip per file, and
        one file at a time is in memory here."""
        command = shlex.join(commands.tar_tree(self.resolve(root), subdir))
        _, stdout, stderr = self.get_conn().exec_command(command, timeout=self.cmd_timeout)
        with tarfile.open(fileobj=stdout, mode="r|gz") as tar:
            for member in tar:
                if member.isfile() and (fh := tar.extractfile(member)) is not None:
                    yield member.name, fh.read()
        rc = stdout.channel.recv_exit_status()
        if rc != 0:
            raise SlurmError(
                f"tar of {root}/{subdir} failed (rc={rc}): "
                f"{stderr.read().decode('utf-8', 'replace').strip()}"
            )

    def write_text(self, path: str, text: str, mode: int = 0o600) -> None:
        """Write ``path``; its mode is set before any byte is written (staging may hold
        data under use agreements, and sftp-server creates files 0644)."""
        with self.sftp().open(self.resolve(path), "w") as fh:
            fh.chmod(mode)
            fh.set_pipelined(True)  # no round trip per 32 KiB block (a big day's request.json)
            fh.write(text.encode("utf-8"))

    def exists(self, path: str) -> bool:
        try:
            self.sftp().stat(self.resolve(path))
            return True
        except FileNotFoundError:
            return False

    def makedirs(self, path: str, mode: int | None = None, group: str | None = None) -> None:
        """``mkdir -p``; then, when given, the dir's group and mode (e.g. 0o2750: setgid, so
        what the jobs create below inherits the group)."""
        path = self.resolve(path)
        self.check(["mkdir", "-p", "--", path])
        if group:
            self.check(["chgrp", "--", group, path])
        if mode is not None:
            self.check(["chmod", f"{mode:o}", "--", path])

    def free_space(self, path: str) -> tuple[int, int, str] | None:
        """(bytes free, bytes total, mount point) of the filesystem holding ``path``."""
        rc, out, _ = self.run(commands.free_space(self.resolve(path)))
        return parse_free_space(out) if rc == 0 else None

    def put_tree(self, local_dir: str, remote_dir: str) -> None:
        """Upload a directory tree, keeping file modes (scripts stay executable)."""
        remote_dir = self.resolve(remote_dir)
        sftp = self.sftp()
        for root, _, files in os.walk(local_dir):
            rel = os.path.relpath(root, local_dir)
            target = remote_dir if rel == "." else posixpath.join(remote_dir, *rel.split(os.sep))
            self.makedirs(target)
            for name in files:
                src = os.path.join(root, name)
                dst = posixpath.join(target, name)
                sftp.put(src, dst)
                sftp.chmod(dst, stat.S_IMODE(os.stat(src).st_mode))
