"""Alerts: mail the pipeline's owners when a day needs them, through Airflow's notifier
mechanism (SMTP by default: the SMTP provider's ``SmtpNotifier`` and an SMTP connection).

Rules (``alerts.*`` in the config); no mail on a clean day:

- a step fails for good (retries spent): ``StepFailureNotifier``, the tasks'
  ``on_failure_callback``, names the day, the step and the reason (the task's error: SLURM
  state, exit code, failed indices, log tail);
- a day ends ``partial`` with more failed clips than ``max_failed_ratio`` of those planned,
  or ``incomplete`` (planned clips without any result);
- none of the ``days_without_complete`` days up to the run's day is ``complete``.

The last two are checked once the day is recorded (``day_problems``, by the DAG's last task).

Each day problem is mailed once per (day, kind, DAG run), recorded in the results DB
(``ResultsDbHook.alerts_to_send``, table ``alerts_sent``). Why the run and not the day's
status: a retried ``report_day``, or the run cleared and run again, re-judges the same
attempt at the day, and its owners already have that mail; a *new* run of the day (a
reprocess after a fix, a backfill) is a new attempt, and its still-partial outcome is news
they need, which a key on (day, kind, status) would swallow. The kind is part of the key, so
a cleared run whose day got worse (``partial`` -> ``incomplete``) mails the new problem.
A step failure is mailed once per (day, step and try, DAG run): each try that fails for good
is a new failure, but Airflow can call ``on_failure_callback`` twice for one try (the task
process runs it, then the scheduler again when the executor's late report of the try
disagrees: seen when a trigger fires within seconds of the deferral). That mail must go out
even when the results DB is what failed, so a DB that cannot answer (or a day that is not a
date yet) mails without the check.

Texts reach the mail as they are, HTML-escaped and never rendered as Jinja: error messages
and clip names come from untrusted files and must not pull secrets in through templates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import logging
from dataclasses import dataclass
from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import BaseNotifier

from hpc_pipeline.config import AlertConfig

log = logging.getLogger(__name__)
SUBJECT_PREFIX = "[audio-pipeline]"
_MAX_REASON = 4000  # characters of a failure's message in a mail (the log has all of it)


@dataclass(frozen=True)
class Alert:
    subject: str
    body: str  # plain text; sent as escaped <pre>


def failed_ratio(summary: dict[str, Any]) -> float:
    """Failed clips over the clips planned for the day (listed minus already done)."""
    planned = summary["clips_ok"] + summary["clips_failed"] + summary["clips_missing"]
    return summary["clips_failed"] / planned if planned else 0.0


@dataclass(frozen=True)
class Problem:
    kind: str  # "incomplete" | "partial" | "no_complete_day": part of the once-only key
    text: str


def day_problems(
    day: str, summary: dict[str, Any] | None, last_complete: str | None, cfg: AlertConfig
) -> list[Problem]:
    """What is wrong with ``day`` after recording (``summary``: its ``audio_days`` row, None
    when nothing was recorded), and with the days before it; ``[]`` for a clean day."""
    problems = []
    if summary and summary["status"] == "incomplete":
        problems.append(
            Problem(
                "incomplete",
                f"day {day} is incomplete: {summary['clips_missing']} planned clips have no result",
            )
        )
    elif (
        summary and summary["status"] == "partial" and failed_ratio(summary) > cfg.max_failed_ratio
    ):
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary["failed_by_reason"].items()))
        problems.append(
            Problem(
                "partial",
                f"day {day} is partial: {summary['clips_failed']} "
                f"clips failed ({failed_ratio(summary):.1%} > "
                f"{cfg.max_failed_ratio:.1%}; {reasons})",
            )
        )
    window = cfg.days_without_complete
    if window > 0:
        first = (dt.date.fromisoformat(day) - dt.timedelta(days=window - 1)).isoformat()
        if last_complete is None or last_complete < first:
            problems.append(
                Problem(
                    "no_complete_day",
                    f"no complete day in the {window} days "
                    f"{first}..{day} (last complete day: {last_complete or 'never'})",
                )
            )
    return problems


def day_alert(
    day: str, run_id: str, problems: list[Problem], summary_line: str | None, link: str
) -> Alert | None:
    if not problems:
        return None
    lines = [f"Day {day} (run {run_id}) needs attention:", *(f"- {p.text}" for p in problems), ""]
    if summary_line:
        lines.append(summary_line)
    lines.append(f"Status page: {link}")
    return Alert(subject=f"{SUBJECT_PREFIX} {day}: {problems[0].text}", body="\n".join(lines))


def failure_alert(day: str, context: Any) -> Alert:
    """The mail for a task that failed for good: day, step, reason, where the log is."""
    ti = context["ti"]
    reason = str(context.get("exception") or "unknown (see the task log)")
    if len(reason) > _MAX_REASON:
        reason = reason[:_MAX_REASON] + "\n[... cut; the task log has all of it]"
    first = reason.splitlines()[0] if reason.strip() else reason
    body = "\n".join(
        [
            f"Day {day}: step {ti.task_id} of {ti.dag_id} failed (try {ti.try_number}, run "
            f"{ti.run_id}).",
            "",
            "Reason:",
            reason,
            "",
            f"Log: {getattr(ti, 'log_url', '-')}",
        ]
    )
    return Alert(
        subject=f"{SUBJECT_PREFIX} {day}: step {ti.task_id} failed: {first[:120]}", body=body
    )


def send(alert: Alert, cfg: AlertConfig, context: Any) -> bool:
    """Mail ``alert`` to ``cfg.to`` through the SMTP notifier; False when nobody is configured."""
    log.warning("ALERT: %s\n%s", alert.subject, alert.body)
    if not cfg.to:
        log.warning("alerts.to is empty: the alert above is not mailed")
        return False
    notifier = SmtpNotifier(
        to=list(cfg.to),
        from_email=cfg.from_email,
        subject=alert.subject.replace("\n", " "),
        html_content=f"<pre>{html.escape(alert.body)}</pre>",
        smtp_conn_id=cfg.smtp_conn_id,
    )
    notifier.notify(context)  # notify(), not __call__: nothing of ours is rendered as Jinja
    return True


class StepFailureNotifier(BaseNotifier):
    """``on_failure_callback`` of the pipeline's tasks: one mail per step that failed for good.

    ``day_task_id``: the task whose XCom holds ``{"day": ...}``; before it ran, the run's
    ``date`` param names the day."""

    def __init__(
        self,
        cfg: AlertConfig,
        results_conn_id: str | None = None,
        day_task_id: str = "resolve_day",
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.results_conn_id = results_conn_id
        self.day_task_id = day_task_id

    def notify(self, context: Any) -> None:
        ti = context["ti"]
        day_ctx = None
        if ti.task_id != self.day_task_id:
            day_ctx = ti.xcom_pull(task_ids=self.day_task_id)
        day = (day_ctx or {}).get("day") or (context.get("params") or {}).get("date") or "?"
        alert = failure_alert(day, context)
        kind = f"step {ti.task_id} failed, try {ti.try_number}"
        with contextlib.ExitStack() as once:
            try:
                dt.date.fromisoformat(day)
                new = once.enter_context(self._guard(day, ti.run_id, kind, alert.subject))
            except Exception as exc:  # no date, or no DB: mail without the once-check
                log.warning("Mailing %r without the once-per-try check: %s", kind, exc)
                new = [kind]
            if kind in new:
                send(alert, self.cfg, context)
            else:
                log.info("Day %s: %s was already mailed in run %s", day, kind, ti.run_id)

    def _guard(
        self, day: str, run_id: str, kind: str, message: str
    ) -> contextlib.AbstractContextManager[list[str]]:
        if not self.results_conn_id:
            raise LookupError("no results connection configured")
        from hpc_pipeline.hooks.results_db import ResultsDbHook  # not at DAG parse

        return ResultsDbHook(self.results_conn_id).alerts_to_send(day, run_id, {kind: message})
