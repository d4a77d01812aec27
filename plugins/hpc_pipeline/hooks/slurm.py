"""SlurmHook: the one place that talks SSH to the cluster's login node.

Commands come from ``hpc_pipeline.slurm.commands`` (argv lists, joined with
:func:`shlex.join`) and their output is read by ``hpc_pipeline.slurm.parse``: this hook only
runs them. One paramiko connection (through the SSH provider's ``SSHHook``, which applies the
connection's pinned host key) is reused for commands and SFTP until it breaks; the next call
then reconnects.
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Sequence
from typing import Any

import paramiko
from airflow.providers.ssh.hooks.ssh import SSHHook
from airflow.sdk import BaseHook

from hpc_pipeline.config import SlurmResources
from hpc_pipeline.hooks.remote_files import RemoteFiles
from hpc_pipeline.slurm import commands
from hpc_pipeline.slurm.errors import (
    LoginUnreachable,
    SlurmError,
    SlurmRejected,
    SlurmUnavailable,
    sbatch_refusal,
)
from hpc_pipeline.slurm.jobs import (
    JobState,
    SiteLimits,
    latest_runs,
    merge,
    newest_first,
    reconcile,
)
from hpc_pipeline.slurm.parse import (
    ProgressProbe,
    parse_progress_probe,
    parse_sacct,
    parse_site_limits,
    parse_squeue,
    parse_tree,
)
from hpc_pipeline.slurm.states import MAY_BE_REQUEUED

# Failures of the transport (not of SLURM): the caller may reconnect and retry.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, paramiko.SSHException)
# A poll that could not reach SLURM at all (transport, or neither sacct nor squeue answered).
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, SlurmUnavailable)
# Anything a remote call can raise: the outages and SLURM's own refusals.
REMOTE_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, SlurmError)


def connect_failure(exc: BaseException, timeout: float) -> str:
    """What an SSH connection attempt's exception means, in words a site admin acts on."""
    if isinstance(exc, paramiko.BadHostKeyException):
        return (
            "the login node's host key does not match the key pinned in the connection "
            "(extra.host_key): a different machine answers, or its key changed"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return f"the login node refused the login ({exc}): check the user and the key"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return f"connection refused: nothing listens on that port ({exc})"
    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s (host down, wrong address, or a firewall)"
    if isinstance(exc, (FileNotFoundError, PermissionError)):
        return f"the SSH key cannot be read ({exc}): check the connection's key_file"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: nothing listens on that port ({exc})"
    if isinstance(exc, paramiko.SSHException):
        return f"the SSH handshake failed ({exc}): is an SSH server listening there?"
    return f"{type(exc).__name__}: {exc}"


class SlurmHook(RemoteFiles, BaseHook):
    """SSH + SLURM operations on one reused connection (files: ``RemoteFiles``). Not
    thread-safe: one caller at a time.

    :param ssh_conn_id: an ``ssh`` connection to the login node, host key pinned
        (``extra.host_key``); the SSH provider's connection form and fields apply.
    :param cmd_timeout: seconds a remote command may take before it is abandoned.
    :param conn_retry_attempts: connection attempts per (re)connect; the trigger uses 1 and
        does its own backoff between polls.
    :param conn_timeout: seconds to wait for the SSH handshake.
    """

    conn_name_attr = "ssh_conn_id"
    default_conn_name = "hpc_ssh"
    conn_type = "ssh"
    hook_name = "SLURM over SSH"

    def __init__(
        self,
        ssh_conn_id: str = default_conn_name,
        *,
        cmd_timeout: float = 60.0,
        conn_retry_attempts: int = 3,
        conn_timeout: int = 20,
    ) -> None:
        super().__init__()
        self.ssh_conn_id = ssh_conn_id
        self.cmd_timeout = cmd_timeout
        self._ssh = SSHHook(
            ssh_conn_id=ssh_conn_id,
            conn_retry_attempts=conn_retry_attempts,
            conn_timeout=conn_timeout,
        )
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_of: paramiko.SSHClient | None = None
        self._home: str | None = None
        self._limits: SiteLimits | None = None
        # Why the last ``query`` could not ask accounting (sacct), None when it could.
        self.accounting_error: str | None = None

    # -- connection -------------------------------------------------------------------
    def get_conn(self) -> paramiko.SSHClient:
        """The SSH client, reused while its transport is alive.

        Raises ``LoginUnreachable`` naming ``user@host:port``, the connection and the cause
        once the SSH provider's connection attempts are spent (the cause's traceback is
        left out: it says nothing more)."""
        try:
            return self._ssh.get_conn()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            ssh = self._ssh
            raise LoginUnreachable(
                f"cannot reach the login node {ssh.username}@{ssh.remote_host}:{ssh.port} "
                f"(SSH connection {self.ssh_conn_id!r}, {ssh.conn_retry_attempts} attempt(s)): "
                f"{connect_failure(exc, ssh.conn_timeout or 0)}"
            ) from None

    def sftp(self) -> paramiko.SFTPClient:
        client = self.get_conn()
        if self._sftp is None or self._sftp_of is not client:
            self._sftp = client.open_sftp()
            self._sftp_of = client
        return self._sftp

    def __enter__(self) -> SlurmHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection; the next call opens a new one."""
        for thing in (self._sftp, self._ssh.client):
            try:
                if thing is not None:
                    thing.close()
            except Exception:  # noqa: BLE001  (teardown of a broken connection: nothing to do)
                pass
        self._sftp = self._sftp_of = None
        self._ssh.client = None

    # -- commands ---------------------------------------------------------------------
    def run(self, argv: Sequence[str], timeout: float | None = None) -> tuple[int, str, str]:
        """Run argv remotely (each element quoted); return (rc, stdout, stderr).

        Raises ``SlurmUnavailable`` when the SSH session ends before the command reports an
        exit status (sshd restarted mid-command): that says nothing about SLURM, so callers
        that ride out outages (the trigger) poll again on a new connection."""
        command = shlex.join(str(a) for a in argv)
        stdin, stdout, stderr = self.get_conn().exec_command(
            command, timeout=timeout or self.cmd_timeout
        )
        # Closed here, in this thread: left to the garbage collector, paramiko's stdin file
        # can be closed inside its transport thread while that thread holds the channel's
        # lock, and the trigger then hangs for good in hook.close() (seen on the cluster).
        stdin.close()
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
        rc = stdout.channel.recv_exit_status()
        if rc == -1:  # paramiko's "no exit status": the channel closed under the command
            raise SlurmUnavailable(f"{argv[0]}: the SSH session ended before the command finished")
        return rc, out, err

    def check(self, argv: Sequence[str], what: str | None = None) -> str:
        """Run argv; return its stdout, or raise ``SlurmError`` naming ``what`` (default: the
        command), the exit status and stderr. Every command whose failure matters goes here."""
        rc, out, err = self.run(argv)
        if rc != 0:
            raise SlurmError(
                f"{what or argv[0]} failed (rc={rc}): {(err.strip() or out.strip())[:1000]}"
            )
        return out

    def submit(
        self, script: str, *, job_name: str, resources: SlurmResources, output: str, **options: Any
    ) -> str:
        """``sbatch --parsable`` (options: ``commands.sbatch``); return the job id.

        Raises ``SlurmRejected`` when SLURM refused the request itself (``sbatch_refusal``),
        ``SlurmError`` for any other failure."""
        argv = commands.sbatch(
            script, job_name=job_name, resources=resources, output=output, **options
        )
        rc, out, err = self.run(argv)
        if rc != 0:
            text = (err.strip() or out.strip())[:1000]
            if (reason := sbatch_refusal(text)) is not None:
                raise SlurmRejected(
                    f"sbatch refused the job {job_name!r} (rc={rc}): {text}", reason
                )
            raise SlurmError(f"sbatch failed (rc={rc}): {text}")
        return commands.sbatch_job_id(out)

    def query(self, job_ids: Sequence[str], array_size: int | None = None) -> list[JobState]:
        """States of every job / array index of ``job_ids``, newest first.

        Exactly one ``sacct`` call for all ids; ``squeue`` (one call) only for the ids
        accounting does not know yet, reports without array indices or as ended in a state
        SLURM may requeue (the controller's answer wins for those), for all of them when
        accounting lists fewer than the ``array_size`` indices the jobs hold together, or
        when accounting is down. Ids neither knows are absent from the result.
        """
        if not job_ids:
            return []
        rc, out, err = self.run(commands.sacct(job_ids))
        if rc != 0 and not commands.accounting_down(err):
            raise SlurmError(f"sacct failed (rc={rc}): {err.strip()}")
        self.accounting_error = err.strip()[:200] if rc != 0 else None
        if rc != 0:
            self.log.debug("sacct cannot answer (%s): asking the controller (squeue)", err)
        found = parse_sacct(out) if rc == 0 else []
        known = {j.array_job_id for j in found}
        # Accounting lags: a fresh array job first shows as "<id>" (no index, even COMPLETED)
        # before "<id>_<i>"; taken at its word, a retried index would still look failed.
        unindexed = {j.array_job_id for j in found if j.array_index is None}
        # A job requeued after a node failure shows its ended attempt (NODE_FAIL) in
        # accounting until it starts again: judged on that, a job SLURM reruns would fail.
        requeued = {j.array_job_id for j in found if j.state in MAY_BE_REQUEUED}
        ask = [i for i in job_ids if i not in known or i in unindexed or i in requeued]
        # (counted per (name, index): a split array's parts each start at index 0)
        if array_size and sum(j.array_index is not None for j in latest_runs(found)) < array_size:
            ask = list(job_ids)  # an index accounting has not recorded yet
        if not ask:
            return newest_first(found)
        return reconcile(found, self._squeue(commands.squeue_by_ids(ask)))

    def attempts(self, job_ids: Sequence[str]) -> list[JobState]:
        """Every attempt of ``job_ids`` in accounting's order (a requeued job's ended attempts
        first); [] when accounting cannot answer. One ``sacct -D`` call."""
        if not job_ids:
            return []
        rc, out, _ = self.run(commands.sacct_attempts(job_ids))
        return parse_sacct(out) if rc == 0 else []

    def _squeue(self, argv: list[str]) -> list[JobState]:
        rc, out, err = self.run(argv)
        if rc != 0:
            if "Invalid job id" in err:
                return []  # purged from the controller (older than MinJobAge)
            raise SlurmUnavailable(f"squeue failed (rc={rc}): {err.strip()}")
        return parse_squeue(out)

    def site_limits(self) -> SiteLimits:
        """The controller's array limits, asked once per hook (they change only on reconfig)."""
        if self._limits is None:
            self._limits = parse_site_limits(self.check(commands.show_config()))
        return self._limits

    def find_jobs(self, name: str, *, days: int = 30) -> list[JobState]:
        """Jobs of the submit user named ``name``, live or finished, newest first.

        Asks both the controller (fresh, but forgets jobs after MinJobAge) and accounting
        (history, but may lag or be down), so a just-submitted job is never missed.
        """
        live = self._squeue(commands.squeue_by_name(name))
        rc, out, _ = self.run(commands.sacct_history(name, days))
        # slurmdbd stores '"' as '`'; filter exactly here in any case.
        stored = name.replace('"', "`")
        history = [j for j in parse_sacct(out) if j.name in (name, stored)] if rc == 0 else []
        return merge(live, history)

    def cancel(self, job_ids: Sequence[str]) -> None:
        """``scancel``; finished jobs are ignored by SLURM, so this is safe to repeat."""
        if job_ids:
            self.run(commands.scancel(job_ids))

    def tail(self, path: str, lines: int = 50) -> str:
        rc, out, err = self.run(commands.tail(path, lines))
        return out if rc == 0 else f"(cannot read {path}: {err.strip()})"

    def list_tree(self, path: str) -> list[tuple[str, int, float]] | None:
        """Every non-directory under ``path`` as (path relative to it, size, mtime), in one
        remote call; None when ``path`` is not a directory (a source day not created yet)."""
        rc, out, err = self.run(commands.list_tree(self.resolve(path)))
        if rc == commands.NO_SUCH_DIR:
            return None
        if rc != 0:
            raise SlurmError(f"cannot list {path} (rc={rc}): {err.strip()[:500]}")
        return parse_tree(out)

    def progress_probe(
        self,
        pending_job_ids: Sequence[str],
        directory: str | None,
        names: Sequence[str] | None,
        marker: str,
    ) -> ProgressProbe:
        """What the trigger's progress line needs beyond ``query``, in ONE remote call:
        SLURM's reason for ``pending_job_ids`` (``JobArrayTaskLimit``, ``Dependency``, ...:
        accounting often leaves it empty for an array's pending part) and
        ``{file name: (lines, lines containing marker)}`` for ``directory``'s files ``names``
        (``None``: every ``shard-*.jsonl``; a directory not created yet counts as empty).

        A part with nothing to ask is not run; with neither, no call is made. A failed
        ``squeue`` (the job just left the queue) only leaves ``reasons`` empty; a failed
        count raises."""
        count = directory is not None and names != []
        if not pending_job_ids and not count:
            return ProgressProbe(reasons={}, counts=None)
        rc, out, err = self.run(
            commands.progress_probe(
                pending_job_ids,
                self.resolve(directory) if count and directory else "",
                names,
                marker,
            )
        )
        if rc != 0:
            raise SlurmError(f"progress probe failed (rc={rc}): {err.strip()[:500]}")
        probe = parse_progress_probe(out)
        if probe.count_rc not in (None, 0):
            raise SlurmError(
                f"counting lines in {directory} failed (rc={probe.count_rc}): {err.strip()[:500]}"
            )
        return probe
