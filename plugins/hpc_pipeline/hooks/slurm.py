"""SlurmHook: the one place that talks SSH and SLURM.

Every remote command is an argv list joined with :func:`shlex.join`, so job names, paths,
dates and arguments holding spaces, quotes, ``;`` or ``$(...)`` reach SLURM as literal
strings. One paramiko connection (through the SSH provider's ``SSHHook``, which applies the
connection's pinned host key) is reused for commands and SFTP until it breaks; the next
call then reconnects. Parsing of ``sacct``/``squeue`` output lives here too, as pure
functions, so the trigger and the operators share one reading of SLURM.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shlex
import stat
import tarfile
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Iterator, Sequence

import paramiko
from airflow.sdk.exceptions import AirflowException
from airflow.providers.ssh.hooks.ssh import SSHHook

from hpc_pipeline.config import SlurmResources
from hpc_pipeline.slurm_states import MAY_BE_REQUEUED, base_state

# Failures of the transport (not of SLURM): the caller may reconnect and retry.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, paramiko.SSHException)

_SEP = "\x1f"  # ASCII unit separator: cannot occur in job names or paths we create
SACCT_FIELDS = ("JobID", "State", "ExitCode", "NodeList", "ElapsedRaw", "AllocTRES", "Submit",
                "Start", "Reason", "JobName")  # JobName last: the one field that may hold the separator
SQUEUE_FIELDS = ("JobArrayID", "State", "Exit_Code", "NodeList", "TimeUsed", "tres-alloc",
                 "StdOut", "SubmitTime", "StartTime", "Reason", "Name")
_SACCT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\Z")
# Per file: "<lines> <lines holding the marker m> <path>" (POSIX awk: gawk, mawk, busybox).
_COUNT_LINES = ('FNR == 1 { if (p != "") print n, f, p; n = 0; f = 0; p = FILENAME } '
                '{ n++ } index($0, m) { f++ } END { if (p != "") print n, f, p }')
# The progress probe (``SlurmHook.progress_probe``): $1 job ids ("" = skip squeue), $2 results
# dir ("" = skip counting), $3 "m=<marker>", $4 the awk program, $5 squeue's -o format, then
# find's name tests. Sections are headed by lines starting with "@@" (squeue's "<id>..." and
# awk's "<n> <f> <path>" lines start with a digit); each part ends with "@@rc <status>".
_PROBE_SCRIPT = """ids=$1 dir=$2 marker=$3 prog=$4 fmt=$5; shift 5
if [ -n "$ids" ]; then echo @@squeue; squeue -h -r -t PD -j "$ids" -o "$fmt"; echo "@@rc $?"; fi
if [ -n "$dir" ]; then echo @@count
  if [ -d "$dir" ]; then find "$dir" -maxdepth 1 -type f "$@" -exec awk -v "$marker" "$prog" {} +
    echo "@@rc $?"; else echo "@@rc 0"; fi
fi"""
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._:@+-]+\Z")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# sacct cannot answer: slurmdbd down / accounting disabled / not reachable.
_ACCOUNTING_DOWN = re.compile(r"accounting storage is disabled|slurmdbd|talking to the database|"
                              r"connection refused|unable to connect|timed out", re.IGNORECASE)


class SlurmError(AirflowException):
    """A SLURM command answered with an error (bad option, unknown partition, ...)."""


class SlurmUnavailable(SlurmError):
    """Neither sacct nor squeue could report on the jobs: the controller is unreachable."""


@dataclass(frozen=True)
class JobState:
    """One job, or one index of a job array, as SLURM reports it."""
    job_id: str              # "12" or "12_3": what scancel/sacct accept
    array_job_id: str        # "12" for both
    array_index: int | None
    name: str
    state: str               # long name, reason stripped: "CANCELLED", not "CANCELLED by 1001"
    exit_code: str           # "rc:signal", e.g. "3:0"
    node: str | None
    elapsed_s: int | None
    alloc_tres: str
    gpus: int
    stdout: str | None = None  # only squeue reports it
    source: str = "sacct"
    submit_time: str | None = None  # cluster local time "YYYY-MM-DDTHH:MM:SS"
    start_time: str | None = None   # None while pending; queue wait = start - submit
    reason: str = ""           # why it waits (Priority, Resources, ...); "" when none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SiteLimits:
    """The controller's limits on arrays (``scontrol show config``).

    ``max_array_size``: array indices must be below it (an index value, not a count).
    ``max_job_count``: jobs the controller holds at once; every array index counts as one.
    """
    max_array_size: int
    max_job_count: int


def parse_site_limits(text: str) -> SiteLimits:
    """``MaxArraySize``/``MaxJobCount`` from ``scontrol show config`` output."""
    values = dict(re.findall(r"^(MaxArraySize|MaxJobCount)\s*=\s*(\d+)", text, re.MULTILINE))
    if len(values) != 2:
        raise SlurmError(f"scontrol show config lacks MaxArraySize/MaxJobCount: {sorted(values)}")
    return SiteLimits(max_array_size=int(values["MaxArraySize"]),
                      max_job_count=int(values["MaxJobCount"]))


def with_offsets(jobs: Iterable[JobState], offsets: dict[str, int]) -> list[JobState]:
    """Array indices shifted by their job's offset (a day's array split into submissions
    whose SLURM indices restart at 0); ``job_id`` keeps SLURM's own ``<id>_<index>``."""
    return [replace(j, array_index=j.array_index + offsets[j.array_job_id])
            if j.array_index is not None and offsets.get(j.array_job_id) else j for j in jobs]


def job_name(prefix: str, step: str, day: str, run_id: str) -> str:
    """Deterministic per (step, day, DAG run): what reattach looks for."""
    return f"{prefix}-{step}-{day}-{hashlib.sha1(run_id.encode()).hexdigest()[:8]}"


def expand_job_id(raw: str) -> list[tuple[str, int | None]]:
    """``"12"`` -> ``[("12", None)]``; ``"12_[0-3%2]"``/``"12_1"`` -> per-index pairs."""
    base, _, idx = raw.partition("_")
    if not idx:
        return [(base, None)]
    if not idx.startswith("["):
        return [(base, int(idx))]
    indices: list[int] = []
    for part in idx.strip("[]").split("%")[0].split(","):
        lo, _, rest = part.partition("-")
        hi, _, step = rest.partition(":")
        indices.extend(range(int(lo), int(hi or lo) + 1, int(step or 1)))
    return [(base, i) for i in indices]


def _gpus(tres: str) -> int:
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if key in ("gres/gpu", "gpu") and value.isdigit():
            return int(value)
    return 0


def _seconds(used: str) -> int | None:
    """squeue TimeUsed ``[D-][HH:]MM:SS`` -> seconds."""
    days, _, clock = used.rpartition("-")
    try:
        parts = [int(p) for p in clock.split(":")]
    except ValueError:
        return None
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds + int(days or 0) * 86400


def _timestamp(value: str) -> str | None:
    """sacct's ISO time, or None for "Unknown"/"None" (a job not started yet)."""
    return value if _SACCT_TIME.match(value) else None


def _reason(value: str) -> str:
    return "" if value.strip() in ("", "None", "(null)") else value.strip()


def _node(value: str) -> str | None:
    return None if not value or value.startswith("(") or value == "None assigned" else value


def parse_sacct(text: str) -> list[JobState]:
    out = []
    for line in text.splitlines():
        cols = line.split(_SEP)
        if len(cols) < len(SACCT_FIELDS):
            continue
        jid, state, exit_code, node, elapsed, tres, submit, start, reason, name = (
            cols[:9] + [_SEP.join(cols[9:])])
        for base, index in expand_job_id(jid):
            out.append(JobState(
                job_id=base if index is None else f"{base}_{index}", array_job_id=base,
                array_index=index, name=name, state=base_state(state), exit_code=exit_code,
                node=_node(node), elapsed_s=int(elapsed) if elapsed.isdigit() else None,
                alloc_tres=tres, gpus=_gpus(tres), source="sacct",
                submit_time=_timestamp(submit), start_time=_timestamp(start),
                reason=_reason(reason)))
    return out


def parse_squeue(text: str) -> list[JobState]:
    out = []
    for line in text.splitlines():
        cols = line.split(_SEP)
        if len(cols) < len(SQUEUE_FIELDS):
            continue
        jid, state, status, node, used, tres, stdout, submit, start, reason = (
            c.strip() for c in cols[:10])
        name = cols[10]
        # squeue up to 22.05 reports the raw wait status (256 = exit 1); from 23.02 it prints
        # sacct's form "rc:signal" itself (tests/plugin/golden/).
        code = int(status) if status.isdigit() else 0
        exit_code = status if ":" in status else f"{code >> 8}:{code & 0x7F}"
        for base, index in expand_job_id(jid):
            out.append(JobState(
                job_id=base if index is None else f"{base}_{index}", array_job_id=base,
                array_index=index, name=name, state=base_state(state),
                exit_code=exit_code, node=_node(node),
                elapsed_s=_seconds(used), alloc_tres=tres, gpus=_gpus(tres),
                # 24.05+ prints "(null)" for a path it does not know
                stdout=None if stdout in ("", "(null)") else stdout, source="squeue",
                submit_time=_timestamp(submit),
                # a pending job's StartTime is only the scheduler's forecast
                start_time=None if base_state(state) == "PENDING" else _timestamp(start),
                reason=_reason(reason)))
    return out


@dataclass(frozen=True)
class ProgressProbe:
    """The answer of ``SlurmHook.progress_probe``.

    ``reasons``: SLURM job id (``"12_3"``, or ``"12"``) -> why it is pending; ``counts``:
    ``{file name: (lines, lines holding the marker)}``, None when lines were not counted;
    ``*_rc``: the exit status of each part (None: not run)."""
    reasons: dict[str, str]
    counts: dict[str, tuple[int, int]] | None
    squeue_rc: int | None = None
    count_rc: int | None = None


def parse_progress_probe(text: str) -> ProgressProbe:
    """Read the probe's sections (``@@squeue``, ``@@count``, each closed by ``@@rc N``).

    A squeue line is ``<job id><US><reason>``; a count line is ``<lines> <marked> <path>``.
    A section cut short (no ``@@rc``) keeps what it printed and reports rc None."""
    reasons: dict[str, str] = {}
    counts: dict[str, tuple[int, int]] | None = None
    rcs: dict[str, int] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("@@rc "):
            if section is not None:
                rcs[section] = int(line[5:])
            section = None
        elif line in ("@@squeue", "@@count"):
            section = line[2:]
            if section == "count":
                counts = {}
        elif section == "squeue" and _SEP in line:
            job_id, _, reason = line.partition(_SEP)
            if reason := _reason(reason):
                reasons[job_id.strip()] = reason
        elif section == "count" and counts is not None:
            lines, marked, path = line.split(" ", 2)
            counts[posixpath.basename(path)] = (int(lines), int(marked))
    return ProgressProbe(reasons=reasons, counts=counts, squeue_rc=rcs.get("squeue"),
                         count_rc=rcs.get("count"))


def parse_tree(text: str) -> list[tuple[str, int, float]]:
    """``find -printf '%s %T@ %P\\0'`` output -> (relative path, size, mtime) per file."""
    entries = []
    for record in text.split("\0"):
        size, _, rest = record.partition(" ")
        mtime, _, rel = rest.partition(" ")
        if rel:
            entries.append((rel, int(size), float(mtime)))
    return entries


def newest_first(jobs: Iterable[JobState]) -> list[JobState]:
    return sorted(jobs, key=lambda j: (int(j.array_job_id), j.array_index or 0), reverse=True)


def latest_runs(jobs: Iterable[JobState]) -> list[JobState]:
    """The newest job per (job name, array index), by name then index.

    A retry resubmits failed indices under the same name, so its job supersedes the failed
    one for those indices; jobs with other names (independent jobs) are judged separately.
    slurmdbd stores '"' as '`', hence the normalised name.
    """
    latest: dict[tuple[str, int | None], JobState] = {}
    for job in newest_first(jobs):
        latest.setdefault((job.name.replace('"', "`"), job.array_index), job)
    return [latest[k] for k in sorted(latest, key=lambda k: (k[0], k[1] or 0))]


def log_path(pattern: str, job: JobState) -> str:
    """Fill the ``%A``/``%a``/``%j`` of an ``--output`` pattern for one job or array index
    (SLURM's own index, from ``job_id``: ``array_index`` may carry a split's offset)."""
    values = {"A": job.array_job_id, "a": job.job_id.partition("_")[2],
              "j": job.array_job_id if job.array_index is None else job.job_id, "%": "%"}
    return re.sub(r"%([Aaj%])", lambda m: values[m.group(1)], pattern)


def check_job_name(name: str) -> str:
    """SLURM takes ``--name`` filters as comma lists, so a comma would make a job unfindable
    (no reattach); control characters would break line-based parsing."""
    if not name or "," in name or any(ord(c) < 32 for c in name):
        raise ValueError(f"job name must be non-empty, without commas or control chars: {name!r}")
    return name


def _merge(primary: list[JobState], secondary: list[JobState]) -> list[JobState]:
    seen = {(j.array_job_id, j.array_index) for j in primary}
    return newest_first(primary + [j for j in secondary if (j.array_job_id, j.array_index) not in seen])


def reconcile(accounting: list[JobState], controller: list[JobState]) -> list[JobState]:
    """One list from sacct's and squeue's rows: the controller's win; accounting's per-index
    rows stay for indices the controller did not list (under load it can miss one), but not
    its unindexed row of a job the controller answered for (accounting's lag, see ``query``)."""
    answered = {j.array_job_id for j in controller}
    return _merge(controller, [j for j in accounting
                               if j.array_job_id not in answered or j.array_index is not None])


class SlurmHook:
    """SSH + SLURM operations on one reused connection. Not thread-safe: one caller at a time."""

    def __init__(self, ssh_conn_id: str, *, cmd_timeout: float = 60.0,
                 conn_retry_attempts: int = 3, conn_timeout: int = 20) -> None:
        self.ssh_conn_id = ssh_conn_id
        self.cmd_timeout = cmd_timeout
        self._ssh = SSHHook(ssh_conn_id=ssh_conn_id, conn_retry_attempts=conn_retry_attempts,
                            conn_timeout=conn_timeout)
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_of: paramiko.SSHClient | None = None
        self._home: str | None = None
        self._limits: SiteLimits | None = None

    # -- connection -------------------------------------------------------------------
    def _client(self) -> paramiko.SSHClient:
        return self._ssh.get_conn()  # reuses the client while its transport is alive

    def sftp(self) -> paramiko.SFTPClient:
        client = self._client()
        if self._sftp is None or self._sftp_of is not client:
            self._sftp = client.open_sftp()
            self._sftp_of = client
        return self._sftp

    def __enter__(self) -> "SlurmHook":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection; the next call opens a new one."""
        for thing in (self._sftp, self._ssh.client):
            try:
                if thing is not None:
                    thing.close()
            except Exception:  # teardown of a broken connection has nothing to recover
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
        _, stdout, stderr = self._client().exec_command(command, timeout=timeout or self.cmd_timeout)
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
        rc = stdout.channel.recv_exit_status()
        if rc == -1:        # paramiko's "no exit status": the channel closed under the command
            raise SlurmUnavailable(f"{argv[0]}: the SSH session ended before the command finished")
        return rc, out, err

    def _check(self, argv: Sequence[str]) -> str:
        rc, out, err = self.run(argv)
        if rc != 0:
            raise SlurmError(f"{argv[0]} failed (rc={rc}): {err.strip() or out.strip()}")
        return out

    def submit(self, script: str, *, job_name: str, resources: SlurmResources, output: str,
               env: dict[str, str] | None = None, array: str | None = None,
               dependency: str | None = None, chdir: str | None = None,
               script_args: Sequence[str] = ()) -> str:
        """``sbatch --parsable``; return the job id.

        The environment is given to ``sbatch`` itself (``env K=V sbatch --export=ALL``)
        rather than as ``--export=ALL,K=V``: SLURM splits ``--export`` on commas, so a
        value holding a comma would be cut. ``--export=ALL`` carries it to the job.
        """
        argv: list[str] = []
        if env:
            bad = [k for k in env if not _ENV_KEY.match(k)]
            if bad:
                raise ValueError(f"invalid environment variable names: {bad}")
            argv += ["env", *(f"{k}={v}" for k, v in env.items())]
        argv += ["sbatch", "--parsable", "--export=ALL", f"--job-name={check_job_name(job_name)}",
                 f"--output={output}", f"--time={resources.time}",
                 f"--cpus-per-task={resources.cpus_per_task}"]
        for flag, value in (("partition", resources.partition), ("account", resources.account),
                            ("qos", resources.qos), ("mem", resources.mem),
                            ("gres", resources.gres), ("dependency", dependency),
                            ("chdir", chdir)):
            if value:
                argv.append(f"--{flag}={value}")
        if array is not None:
            limit = resources.array_parallelism
            argv.append(f"--array={array}%{limit}" if limit else f"--array={array}")
        argv += [*resources.extra_args, "--", script, *script_args]
        return self._check(argv).strip().split(";")[0]

    def query(self, job_ids: Sequence[str], array_size: int | None = None) -> list[JobState]:
        """States of every job / array index of ``job_ids``, newest first.

        Exactly one ``sacct`` call for all ids; ``squeue`` (one call) only for the ids
        accounting does not know yet, reports without array indices or as ended in a state
        SLURM may requeue (the controller's answer wins for those), for all of them when
        accounting lists fewer than the ``array_size`` indices the jobs hold together, or
        when accounting is down.
        Ids neither knows are absent from the result.
        """
        if not job_ids:
            return []
        ids = ",".join(job_ids)
        rc, out, err = self.run(["sacct", "-X", "--parsable2", "--noheader", f"--delimiter={_SEP}",
                                 f"--format={','.join(SACCT_FIELDS)}", "-j", ids])
        if rc != 0 and not _ACCOUNTING_DOWN.search(err):
            raise SlurmError(f"sacct failed (rc={rc}): {err.strip()}")
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
            ask = list(job_ids)     # an index accounting has not recorded yet
        if not ask:
            return newest_first(found)
        return reconcile(found, self._squeue(["-j", ",".join(ask)]))

    def _squeue(self, selector: list[str]) -> list[JobState]:
        fmt = ",".join(f"{f}:{_SEP}" for f in SQUEUE_FIELDS)
        rc, out, err = self.run(["squeue", "-h", "-r", "-t", "all", *selector, "-O", fmt])
        if rc != 0:
            if "Invalid job id" in err:
                return []  # purged from the controller (older than MinJobAge)
            raise SlurmUnavailable(f"squeue failed (rc={rc}): {err.strip()}")
        return parse_squeue(out)

    def site_limits(self) -> SiteLimits:
        """The controller's array limits, asked once per hook (they change only on reconfig)."""
        if self._limits is None:
            self._limits = parse_site_limits(self._check(["scontrol", "show", "config"]))
        return self._limits

    def find_jobs(self, name: str, *, days: int = 30) -> list[JobState]:
        """Jobs of the submit user named ``name``, live or finished, newest first.

        Asks both the controller (fresh, but forgets jobs after MinJobAge) and accounting
        (history, but may lag or be down), so a just-submitted job is never missed.
        """
        live = self._squeue(["--me", f"--name={check_job_name(name)}"])
        # sacct's --name filter misses names with quotes or ';' (slurmdbd escapes them):
        # for those, list the user's jobs of the period and match here.
        by_name = [f"--name={name}"] if _PLAIN_NAME.match(name) else []
        rc, out, err = self.run(["sacct", "-X", "--parsable2", "--noheader", f"--delimiter={_SEP}",
                                 f"--format={','.join(SACCT_FIELDS)}", *by_name,
                                 f"--starttime=now-{days}days"])
        # slurmdbd stores '"' as '`'; filter exactly here in any case.
        stored = name.replace('"', "`")
        history = [j for j in parse_sacct(out) if j.name in (name, stored)] if rc == 0 else []
        return _merge(live, history)

    def cancel(self, job_ids: Sequence[str]) -> None:
        """``scancel``; finished jobs are ignored by SLURM, so this is safe to repeat."""
        if job_ids:
            self.run(["scancel", *job_ids])

    def tail(self, path: str, lines: int = 50) -> str:
        rc, out, err = self.run(["tail", "-n", str(lines), "--", path])
        return out if rc == 0 else f"(cannot read {path}: {err.strip()})"

    def list_tree(self, path: str) -> list[tuple[str, int, float]] | None:
        """Every non-directory under ``path`` as (path relative to it, size, mtime), in one
        remote call; None when ``path`` is not a directory (a source day not created yet).

        The path is a positional argument of a constant ``sh -c`` script (never part of its
        text); records are NUL-terminated so any file name parses."""
        script = ('[ -d "$1" ] || exit 3; cd -- "$1" || exit 4; '
                  "exec find . -mindepth 1 ! -type d -printf '%s %T@ %P\\0'")
        rc, out, err = self.run(["sh", "-c", script, "list_tree", self.resolve(path)])
        if rc == 3:
            return None
        if rc != 0:
            raise SlurmError(f"cannot list {path} (rc={rc}): {err.strip()[:500]}")
        return parse_tree(out)

    def progress_probe(self, pending_job_ids: Sequence[str], directory: str | None,
                       names: Sequence[str] | None, marker: str) -> ProgressProbe:
        """What the trigger's progress line needs beyond ``query``, in ONE remote call.

        - ``squeue -h -r -t PD -j <ids>``: the pending indices of ``pending_job_ids`` with
          SLURM's reason (``JobArrayTaskLimit``, ``Dependency``, ``Priority``, ...), which
          accounting often leaves empty for the pending part of an array;
        - ``find``/``awk`` over ``directory``: ``{file name: (lines, lines containing
          marker)}`` for its files ``names`` (``None``: every ``shard-*.jsonl``); a directory
          not created yet counts as empty.

        A part with nothing to ask (no ids; no directory or ``names == []``) is not run; when
        neither has anything, no call is made. Every value is a positional argument of a
        constant ``sh -c`` script, never part of its text. The answer is one stdout of
        ``@@``-headed sections, read by ``parse_progress_probe``. A failed ``squeue`` (the job
        just left the queue) only leaves ``reasons`` empty; a failed count raises."""
        count = directory is not None and names != []
        if not pending_job_ids and not count:
            return ProgressProbe(reasons={}, counts=None)
        if names is None:
            match = ["-name", "shard-*.jsonl"]
        else:
            match = ["("] + [a for n in names for a in ("-o", "-name", n)][1:] + [")"]
        rc, out, err = self.run(["sh", "-c", _PROBE_SCRIPT, "progress_probe",
                                 ",".join(pending_job_ids), self.resolve(directory) if count else "",
                                 f"m={marker}", _COUNT_LINES, f"%i{_SEP}%r", *match])
        if rc != 0:
            raise SlurmError(f"progress probe failed (rc={rc}): {err.strip()[:500]}")
        probe = parse_progress_probe(out)
        if probe.count_rc not in (None, 0):
            raise SlurmError(f"counting lines in {directory} failed (rc={probe.count_rc}): "
                             f"{err.strip()[:500]}")
        return probe

    # -- files (SFTP) -----------------------------------------------------------------
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
        command = shlex.join(["tar", "--sort=name", "-czf", "-", "-C", self.resolve(root),
                              "--", subdir])
        _, stdout, stderr = self._client().exec_command(command, timeout=self.cmd_timeout)
        with tarfile.open(fileobj=stdout, mode="r|gz") as tar:
            for member in tar:
                if member.isfile():
                    fh = tar.extractfile(member)
                    assert fh is not None
                    yield member.name, fh.read()
        rc = stdout.channel.recv_exit_status()
        if rc != 0:
            raise SlurmError(f"tar of {root}/{subdir} failed (rc={rc}): "
                             f"{stderr.read().decode('utf-8', 'replace').strip()}")

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
        self._check(["mkdir", "-p", "--", path])
        if group:
            self._check(["chgrp", "--", group, path])
        if mode is not None:
            self._check(["chmod", f"{mode:o}", "--", path])

    def free_space(self, path: str) -> tuple[int, int, str] | None:
        """(bytes free, bytes total, mount point) of the filesystem holding ``path``."""
        rc, out, _ = self.run(["df", "-Pk", "--", self.resolve(path)])
        rows = out.splitlines()[1:] if rc == 0 else []
        cols = rows[0].split() if rows else []
        if len(cols) < 6 or not (cols[1].isdigit() and cols[3].isdigit()):
            return None
        return int(cols[3]) * 1024, int(cols[1]) * 1024, " ".join(cols[5:])

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
