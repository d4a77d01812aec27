"""SlurmSubmitOperator: submit (or reattach to) one pipeline step's SLURM job, then defer.

Submitting and waiting are one task on purpose: Airflow retries tasks, so a retry of this
task looks at what its job name already ran and resubmits only what failed (only the failed
array indices), while a live or completed job is reattached, never submitted twice.

Example (``cfg = load_config()``; the job name must be unique per step, day and DAG run:
the DAG registers ``user_defined_macros={"job_name": hooks.slurm.job_name}``)::

    SlurmSubmitOperator(
        task_id="process_audio", ssh_conn_id=cfg.ssh_conn_id,
        script="audio-pipeline/current/hpc/slurm/2_process_audio_job.sh",
        script_args=["--date", "{{ params.date }}"],
        job_name="{{ job_name('audio', 'audio', params.date, run_id) }}",
        resources=cfg.resources["audio"],
        array_size="{{ ti.xcom_pull('plan')['shards'] }}",  # "0" skips the task
        env={"CONTAINER_RUNTIME": cfg.container_runtime},
        log_dir="audio-pipeline/staging/{{ params.date }}/logs", retries=2)
"""
from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowSkipException
from airflow.sdk import BaseOperator

from hpc_pipeline.config import SlurmResources
from hpc_pipeline.hooks.slurm import (JobState, SiteLimits, SlurmHook, latest_runs, log_path,
                                      with_offsets)
from hpc_pipeline.slurm_states import Verdict, explain, verdict
from hpc_pipeline.slurm_signals import signal_notes
from hpc_pipeline.triggers.slurm import SlurmJobTrigger

XCOM_KEY = "slurm_job"
# Set in every array job's environment: its shard is SLURM_ARRAY_TASK_ID + this offset.
INDEX_OFFSET_ENV = "ARRAY_INDEX_OFFSET"
_FULL_BYTES = 64 << 20  # below this much free space (1 % on small disks), staging is "full"


def index_spec(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (short ``--array`` specs for big retries)."""
    parts: list[str] = []
    for i in sorted(indices):
        if parts and parts[-1].split("-")[-1] == str(i - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ",".join(parts)


def array_plan(existing: list[JobState], array_size: int) -> tuple[list[str], list[int]]:
    """(job ids to reattach to, indices to (re)submit) for an array: judged per index by the
    newest job that ran it; missing and failed indices are (re)submitted, the rest watched."""
    latest = {j.array_index: j for j in latest_runs(j for j in existing if j.array_index is not None)}
    todo = [i for i in range(array_size)
            if i not in latest or verdict(latest[i].state) is Verdict.FAILURE]
    watch = sorted({latest[i].array_job_id for i in range(array_size) if i in latest and i not in todo},
                   key=int)
    return watch, todo


def plan(existing: list[JobState], array_size: int | None) -> tuple[list[str], str | None, bool]:
    """What to watch and what to submit, given the jobs that already carry our name.

    Returns (job ids to reattach to, ``--array`` spec or None, whether to submit).
    Non-array: the newest job is reattached unless it failed. Array: see ``array_plan``.
    """
    if array_size is None:
        jobs = [j for j in existing if j.array_index is None]
        if jobs and verdict(jobs[0].state) is not Verdict.FAILURE:
            return [jobs[0].array_job_id], None, False
        return [], None, True
    watch, todo = array_plan(existing, array_size)
    return watch, (index_spec(todo) if todo else None), bool(todo)


def array_chunks(array_size: int, limits: SiteLimits) -> list[tuple[int, int]]:
    """(offset, count) of each submission a day's array is split into.

    A submission's indices run 0..count-1 (SLURM refuses an index >= ``MaxArraySize``, so
    index 1500 of a day cannot be submitted as such): its job computes its shard as
    ``SLURM_ARRAY_TASK_ID + offset``. ``MaxJobCount`` bounds a submission too, since every
    index counts as a job."""
    limit = max(1, min(limits.max_array_size, limits.max_job_count))
    return [(offset, min(limit, array_size - offset)) for offset in range(0, array_size, limit)]


def chunk_name(job_name: str, offset: int) -> str:
    """The job name of the submission starting at ``offset``: how a retry or a reattach
    finds each part of a split array (and its offset) from SLURM alone."""
    return job_name if offset == 0 else f"{job_name}+{offset}"

def full_disk_note(hook: SlurmHook, log_dir: str) -> str | None:
    """A sentence naming the filesystem of ``log_dir`` when it is (nearly) full: then the
    jobs could not write their results, and often not their logs either."""
    space = hook.free_space(log_dir)
    if space is None:
        return None
    free, total, mount = space
    if free >= min(_FULL_BYTES, total // 100):
        return None
    return (f"STAGING FULL: the filesystem holding {log_dir} (mounted at {mount}) has "
            f"{free // 1024} KiB free of {total // 1024} KiB; free space there, then clear "
            "the task (finished clips are kept)")


def complete(log: logging.Logger, hook: SlurmHook, event: dict[str, Any],
             tail_lines: int) -> dict[str, Any]:
    """Log the shown jobs' log tails; return the outcome (counts per state) or raise naming
    what failed: states, failed indices, what to change, log tails.

    Shared by the submit operator and the sensor (no ``log_path``: use squeue's StdOut).
    """
    pattern = event.get("log_path")
    counts: dict[str, int] = event.get("counts", {})
    tails: list[str] = []
    for job in (JobState(**t) for t in event.get("shown", [])):
        if source := pattern or job.stdout:
            path = log_path(source, job)
            text = hook.tail(path, tail_lines).rstrip()
            log.info("---- %s: last %d lines of %s ----\n%s", job.job_id, tail_lines, path, text)
            tails.append(f"--- last lines of {path} ---\n{text}")
    result = {"job_ids": event["job_ids"], "log_path": pattern, "counts": counts}
    if event["status"] == "success":
        return result
    if event["status"] == "failed":
        indices = event.get("failed_indices", [])
        notes = explain([s for s in counts if verdict(s) is Verdict.FAILURE], "\n".join(tails))
        notes += signal_notes(t["exit_code"] for t in event.get("shown", []))
        if pattern and (full := full_disk_note(hook, posixpath.dirname(pattern))):
            notes.append(full)
        raise AirflowException(
            f"SLURM job failed: {event['message']}"
            + (f"; failed array indices: {indices}" if indices else "") + "\n"
            + "".join(f"{n}\n" for n in notes) + "\n".join(tails))
    raise AirflowException(f"SLURM watch error: {event['message']}")


class SlurmWatchMixin:
    """What the submit operator and the sensor share: the trigger they defer to and how its
    event becomes the task's outcome."""

    log: logging.Logger
    ssh_conn_id: str
    poll_interval_s: float
    max_poll_interval_s: float
    outage_timeout_s: float
    tail_lines: int

    def watch_trigger(self, job_ids: list[str], log_path: str | None,
                      array_size: int | None = None,
                      index_offsets: dict[str, int] | None = None,
                      job_indices: dict[str, str] | None = None,
                      results_dir: str | None = None,
                      clips_total: int | None = None) -> SlurmJobTrigger:
        return SlurmJobTrigger(ssh_conn_id=self.ssh_conn_id, job_ids=job_ids,
                               poll_interval_s=self.poll_interval_s,
                               max_poll_interval_s=self.max_poll_interval_s,
                               outage_timeout_s=self.outage_timeout_s, log_path=log_path,
                               array_size=array_size, index_offsets=index_offsets,
                               job_indices=job_indices, results_dir=results_dir,
                               clips_total=clips_total)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        with SlurmHook(self.ssh_conn_id) as hook:
            return complete(self.log, hook, event, self.tail_lines)


def parse_array_size(value: int | str | None, name: str = "array_size") -> int | None:
    """A rendered count (templates render to strings); ``None``/``""`` = not given."""
    if value is None or value == "":
        return None
    size = int(value)
    if size < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return size


class SlurmSubmitOperator(SlurmWatchMixin, BaseOperator):
    """Submit ``script`` with ``sbatch`` (or reattach to the job named ``job_name``), defer
    until it ends, fail with state, exit code, node, failed indices and log tail.

    Arrays larger than the site allows (``MaxArraySize``, ``MaxJobCount`` from ``scontrol
    show config``, lowered by ``max_array_size`` / ``max_job_count`` when given) are split
    into submissions named ``<job_name>+<offset>``; every array job gets
    ``ARRAY_INDEX_OFFSET`` (its shard = ``SLURM_ARRAY_TASK_ID + ARRAY_INDEX_OFFSET``). When
    the whole array exceeds ``MaxJobCount``, each submission waits for the previous one
    (``--dependency=afterany``), so only one part's indices are queued at a time.

    XCom ``slurm_job`` (pushed before deferring): ``{"job_ids": [...], "log_path": pattern}``.
    Return value: the same plus ``counts``: ``{state: indices}`` over the newest job of
    every array index (of the job, for a single job), e.g. ``{"COMPLETED": 400}``. Per-index
    details stay in SLURM (``sacct``; ``record_results`` stores them), not in the XCom.
    """

    template_fields: Sequence[str] = ("script", "script_args", "job_name", "array_size", "env",
                                      "log_dir", "chdir", "dependency", "results_dir",
                                      "clips_total")
    ui_color = "#d9e8f5"

    def __init__(self, *, ssh_conn_id: str, script: str, job_name: str,
                 resources: SlurmResources, log_dir: str, script_args: Sequence[str] = (),
                 array_size: int | str | None = None, env: dict[str, str] | None = None,
                 chdir: str | None = None, dependency: str | None = None,
                 poll_interval_s: float = 10, max_poll_interval_s: float = 120,
                 outage_timeout_s: float = 900, tail_lines: int = 30,
                 max_array_size: int | None = None, max_job_count: int | None = None,
                 results_dir: str | None = None, clips_total: int | str | None = None,
                 **kwargs: Any) -> None:
        """``results_dir``/``clips_total``: the shards' result-line directory and the clips
        they were given, so the trigger log shows clips done / total while the job runs."""
        super().__init__(**kwargs)
        self.ssh_conn_id = ssh_conn_id
        self.script = script
        self.script_args = script_args
        self.job_name = job_name
        # not ``self.resources``: BaseOperator owns that attribute (executor resources)
        self.slurm_resources = resources
        self.array_size = array_size
        self.env = env
        self.log_dir = log_dir
        self.chdir = chdir
        self.dependency = dependency
        self.poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s
        self.outage_timeout_s = outage_timeout_s
        self.tail_lines = tail_lines
        self.max_array_size = max_array_size
        self.max_job_count = max_job_count
        self.results_dir = results_dir
        self.clips_total = clips_total
        self._job_ids: list[str] = []
        self._submitted = 0   # submissions by this execute (0: it only reattached)

    def site_limits(self, hook: SlurmHook) -> SiteLimits:
        """The controller's limits, lowered by this operator's overrides (a QOS cap, a test)."""
        site = hook.site_limits()
        return SiteLimits(
            max_array_size=min(site.max_array_size, self.max_array_size or site.max_array_size),
            max_job_count=min(site.max_job_count, self.max_job_count or site.max_job_count))

    def _submit(self, hook: SlurmHook, pattern: str, *, name: str, array: str | None = None,
                env: dict[str, str] | None = None, dependency: str | None = None) -> str:
        self._submitted += 1
        new = hook.submit(self.script, job_name=name, resources=self.slurm_resources,
                          output=pattern, env=env, array=array, dependency=dependency,
                          chdir=self.chdir, script_args=[str(a) for a in self.script_args])
        self.log.info("Submitted SLURM job %s%s named %r", new,
                      f" (array {array})" if array else "", name)
        return new

    def _run_array(self, hook: SlurmHook, size: int, pattern: str
                   ) -> tuple[list[str], dict[str, int], dict[str, str]]:
        """Reattach to / (re)submit every part of the array; (job ids, job id -> offset,
        job id -> the whole-array indices it runs)."""
        limits = self.site_limits(hook)
        chunks = array_chunks(size, limits)
        if len(chunks) > 1:
            self.log.info("Array of %d indices split into %d submissions (site limits: "
                          "MaxArraySize %d, MaxJobCount %d)", size, len(chunks),
                          limits.max_array_size, limits.max_job_count)
        offsets: dict[str, int] = {}
        existing: list[JobState] = []
        for offset, _ in chunks:
            found = hook.find_jobs(chunk_name(self.job_name, offset))
            offsets.update({j.array_job_id: offset for j in found})
            existing += with_offsets(found, offsets)
        watch, todo = array_plan(existing, size)
        owned: dict[str, list[int]] = {}
        redo = set(todo)
        for job in latest_runs(j for j in existing if j.array_index is not None):
            if job.array_index < size and job.array_index not in redo:
                owned.setdefault(job.array_job_id, []).append(job.array_index)
        if watch:
            self.log.info("Reattaching to SLURM job(s) %s named %r", watch, self.job_name)
        one_at_a_time = size > limits.max_job_count
        previous: str | None = None
        for offset, count in chunks:
            mine = [i - offset for i in todo if offset <= i < offset + count]
            if not mine:
                continue
            after = [f"afterany:{previous}"] if one_at_a_time and previous else []
            new = self._submit(hook, pattern, name=chunk_name(self.job_name, offset),
                               array=index_spec(mine),
                               env={**(self.env or {}), INDEX_OFFSET_ENV: str(offset)},
                               dependency=",".join([*after, *filter(None, [self.dependency])])
                               or None)
            offsets[new] = offset
            owned[new] = [offset + i for i in mine]
            watch.append(new)
            previous = new
        return (watch, {j: o for j, o in offsets.items() if j in watch and o},
                {j: index_spec(owned[j]) for j in watch})

    def execute(self, context: Any) -> dict[str, Any] | None:
        size = parse_array_size(self.array_size)
        if size == 0:
            raise AirflowSkipException("nothing to do: array_size is 0")
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.job_name)
        offsets: dict[str, int] = {}
        owned: dict[str, str] = {}
        self._submitted = 0
        with SlurmHook(self.ssh_conn_id) as hook:
            log_dir = hook.resolve(self.log_dir)
            pattern = posixpath.join(log_dir, f"{safe}-%A_%a.out" if size else f"{safe}-%j.out")
            hook.makedirs(log_dir)
            if size:
                watch, offsets, owned = self._run_array(hook, size, pattern)
            else:
                watch, _, submit = plan(hook.find_jobs(self.job_name), None)
                if watch:
                    self.log.info("Reattaching to SLURM job(s) %s named %r", watch, self.job_name)
                if submit:
                    watch = [self._submit(hook, pattern, name=self.job_name, env=self.env,
                                          dependency=self.dependency)]
            self._job_ids = watch
            self.log.info("Watching SLURM job(s) %s; remote log: %s", watch, pattern)
            context["ti"].xcom_push(key=XCOM_KEY, value={"job_ids": watch, "log_path": pattern})
            clips = parse_array_size(self.clips_total, "clips_total")
            trigger = self.watch_trigger(watch, pattern, size, offsets or None, owned or None,
                                         self.results_dir or None, clips)
            # Only reattached, nothing submitted: finished jobs complete the task right here.
            if not self._submitted and (event := trigger.settled(hook)) is not None:
                return complete(self.log, hook, event, self.tail_lines)
        self.defer(trigger=trigger, method_name="execute_complete")

    def on_kill(self) -> None:
        """Killed while submitting (not deferred): cancel what we submitted. While deferred,
        the trigger's ``on_kill`` does it."""
        if self._job_ids:
            with SlurmHook(self.ssh_conn_id) as hook:
                hook.cancel(self._job_ids)
