"""SlurmSubmitOperator: submit (or reattach to) one pipeline step's SLURM job, then defer.

Submitting and waiting are one task on purpose: Airflow retries tasks, so a retry of this
task looks at what its job name already ran and resubmits only what failed (only the failed
array indices), while a live or completed job is reattached, never submitted twice.

Example (``cfg = load_config()``; the job name must be unique per step, day and DAG run, as
the DAG's ``<prefix>-<step>-<day>-<plan id>`` is)::

    SlurmSubmitOperator(
        task_id="audio", ssh_conn_id=cfg.ssh_conn_id,
        script="audio-pipeline/releases/<id>/slurm/2_process_audio_job.sh",
        script_args=["--date", "{{ ti.xcom_pull('resolve_day')['day'] }}"],
        job_name="audio-audio-2024-01-15-{{ ti.xcom_pull('write_request')['plan_id'] }}",
        resources=cfg.resources["audio"],
        array_size="{{ ti.xcom_pull('read_plan')['shards'] }}",  # "0" skips the task
        env={"CONTAINER_RUNTIME": cfg.container_runtime},
        log_dir="audio-pipeline/staging/2024-01-15/logs", retries=2)
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException
from airflow.sdk import BaseOperator

from hpc_pipeline.config import SlurmResources
from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.operators.slurm_watch import SlurmWatchMixin, complete
from hpc_pipeline.slurm.arrays import (
    INDEX_OFFSET_ENV,
    array_chunks,
    chunk_name,
    index_spec,
    lower_limits,
    parse_array_size,
)
from hpc_pipeline.slurm.errors import SlurmRejected
from hpc_pipeline.slurm.jobs import JobState, latest_runs, with_offsets
from hpc_pipeline.slurm.verdict import array_plan, plan

XCOM_KEY = "slurm_job"


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

    :param script: the sbatch script on the cluster (relative: under the user's home).
    :param job_name: unique per step, day and DAG run: how a retry finds what already ran.
    :param resources: partition, account, QOS, time, CPUs, memory, gres, array parallelism.
    :param log_dir: where the jobs write their logs (``<job>-%A_%a.out``); created.
    :param script_args: arguments after the script (templated).
    :param array_size: indices of the array (templated; ``None``: one job; ``0``: skip).
    :param env: environment given to the job (names checked; values never on a command line
        in a form SLURM could split).
    :param chdir: the jobs' working directory.
    :param dependency: an extra ``--dependency`` for every submission.
    :param max_array_size: lowers the site's ``MaxArraySize`` (a QOS cap, a test).
    :param max_job_count: lowers the site's ``MaxJobCount``.
    :param results_dir: the shards' result-line directory, for the clips-done progress line.
    :param clips_total: the clips the shards were given (templated).
    :param max_pending_s: seconds a job may pend for a reason that means SLURM will not start
        it as submitted (``BadConstraints``, ``ReqNodeNotAvail``, ...: see
        ``hpc_pipeline.slurm.pending``); then its jobs are cancelled and the task fails
        without retries, naming the reason. ``None``: wait as long as SLURM keeps it.

    A request SLURM refuses at submission (an unknown partition, account or QOS, a gres no
    node has) fails the task at once, without retries, with sbatch's message.

    The watch parameters (``ssh_conn_id``, ``poll_interval``, ``max_poll_interval``,
    ``outage_timeout``, ``tail_lines``) are ``SlurmWatchMixin``'s.
    """

    template_fields: Sequence[str] = (
        "script",
        "script_args",
        "job_name",
        "array_size",
        "env",
        "log_dir",
        "chdir",
        "dependency",
        "results_dir",
        "clips_total",
    )
    ui_color = "#d9e8f5"

    def __init__(
        self,
        *,
        script: str,
        job_name: str,
        resources: SlurmResources,
        log_dir: str,
        script_args: Sequence[str] = (),
        array_size: int | str | None = None,
        env: dict[str, str] | None = None,
        chdir: str | None = None,
        dependency: str | None = None,
        max_array_size: int | None = None,
        max_job_count: int | None = None,
        results_dir: str | None = None,
        clips_total: int | str | None = None,
        max_pending_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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
        self.max_array_size = max_array_size
        self.max_job_count = max_job_count
        self.results_dir = results_dir
        self.clips_total = clips_total
        self.max_pending_s = max_pending_s
        self._job_ids: list[str] = []
        self._submitted = 0  # submissions by this execute (0: it only reattached)

    def _submit(
        self,
        hook: SlurmHook,
        pattern: str,
        *,
        name: str,
        array: str | None = None,
        env: dict[str, str] | None = None,
        dependency: str | None = None,
    ) -> str:
        self._submitted += 1
        try:
            new = hook.submit(
                self.script,
                job_name=name,
                resources=self.slurm_resources,
                output=pattern,
                env=env,
                array=array,
                dependency=dependency,
                chdir=self.chdir,
                script_args=[str(a) for a in self.script_args],
            )
        except SlurmRejected as exc:  # the same request would be refused again: no retries
            raise AirflowFailException(
                f"SLURM refused the job: {exc.reason}. It asked for "
                f"{self.slurm_resources.describe()}; this cluster cannot run that request, so "
                "the task is not retried. Fix the step's resources in the site config, then "
                f"clear the task.\n{exc}"
            ) from None
        self.log.info(
            "Submitted SLURM job %s%s named %r", new, f" (array {array})" if array else "", name
        )
        return new

    def _run_array(
        self, hook: SlurmHook, size: int, pattern: str
    ) -> tuple[list[str], dict[str, int], dict[str, str]]:
        """Reattach to / (re)submit every part of the array; (job ids, job id -> offset,
        job id -> the whole-array indices it runs)."""
        limits = lower_limits(hook.site_limits(), self.max_array_size, self.max_job_count)
        chunks = array_chunks(size, limits)
        if len(chunks) > 1:
            self.log.info(
                "Array of %d indices split into %d submissions (site limits: "
                "MaxArraySize %d, MaxJobCount %d)",
                size,
                len(chunks),
                limits.max_array_size,
                limits.max_job_count,
            )
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
            if (
                job.array_index is not None
                and job.array_index < size
                and job.array_index not in redo
            ):
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
            new = self._submit(
                hook,
                pattern,
                name=chunk_name(self.job_name, offset),
                array=index_spec(mine),
                env={**(self.env or {}), INDEX_OFFSET_ENV: str(offset)},
                dependency=",".join([*after, *filter(None, [self.dependency])]) or None,
            )
            offsets[new] = offset
            owned[new] = [offset + i for i in mine]
            watch.append(new)
            previous = new
        return (
            watch,
            {j: o for j, o in offsets.items() if j in watch and o},
            {j: index_spec(owned[j]) for j in watch},
        )

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
                    watch = [
                        self._submit(
                            hook,
                            pattern,
                            name=self.job_name,
                            env=self.env,
                            dependency=self.dependency,
                        )
                    ]
            self._job_ids = watch
            self.log.info("Watching SLURM job(s) %s; remote log: %s", watch, pattern)
            context["ti"].xcom_push(key=XCOM_KEY, value={"job_ids": watch, "log_path": pattern})
            trigger = self.watch_trigger(
                watch,
                pattern,
                array_size=size,
                index_offsets=offsets or None,
                job_indices=owned or None,
                results_dir=self.results_dir or None,
                clips_total=parse_array_size(self.clips_total, "clips_total"),
                max_pending=self.max_pending_s,
            )
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
