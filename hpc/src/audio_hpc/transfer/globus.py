"""Globus backend: list a day on the source collection and bring its clips to staging.

Unattended: a confidential client's id/secret (client-credentials grant), never a person's
login. Idempotent: the ``submission_id`` is stored on staging *before* submitting and the
task id right after, so a retried job re-attaches to its task (or re-submits with the same
submission id, which Globus de-duplicates) instead of starting a second transfer.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import globus_sdk

from audio_hpc.checksums import sha256_file
from audio_hpc.contract import Clip, Manifest, TransferOutcome, write_atomic
from audio_hpc.listing import clips_from

log = logging.getLogger("transfer_globus")

TERMINAL = ("SUCCEEDED", "FAILED")


class GlobusTransferError(RuntimeError):
    """The Globus task did not succeed (or did not finish in time); the job must fail."""


def load_credentials(path: str | None) -> tuple[str, str]:
    """Client id/secret from a 0600 JSON file ({"client_id", "client_secret"}) or from
    GLOBUS_CLIENT_ID / GLOBUS_CLIENT_SECRET; a file others can read is refused."""
    if path:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(
                f"{path} is readable by others (mode {oct(mode & 0o777)}); chmod 600 it"
            )
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return doc["client_id"], doc["client_secret"]
    try:
        return os.environ["GLOBUS_CLIENT_ID"], os.environ["GLOBUS_CLIENT_SECRET"]
    except KeyError:
        raise PermissionError(
            "no Globus credentials: pass --globus-credentials FILE or set "
            "GLOBUS_CLIENT_ID and GLOBUS_CLIENT_SECRET"
        ) from None


def make_client(credentials_path: str | None) -> globus_sdk.TransferClient:
    client_id, secret = load_credentials(credentials_path)
    auth = globus_sdk.ConfidentialAppAuthClient(client_id=client_id, client_secret=secret)
    authorizer = globus_sdk.ClientCredentialsAuthorizer(auth, globus_sdk.TransferClient.scopes.all)
    return globus_sdk.TransferClient(authorizer=authorizer)


def list_day(
    tc: globus_sdk.TransferClient, collection: str, source_root: str, date: str
) -> list[Clip]:
    """Every audio/video file under ``<source_root>/<date>/`` on the collection, recursively."""
    day_root = f"{source_root.rstrip('/')}/{date}"
    entries: list[tuple[str, int]] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        for item in tc.operation_ls(collection, path=f"{day_root}/{rel}".rstrip("/") + "/"):
            child = f"{rel}{item['name']}"
            if item["type"] == "dir":
                stack.append(child + "/")
            elif item["type"] == "file":
                entries.append((child, int(item.get("size", 0))))
    return clips_from(date, day_root, entries)


@dataclass
class TaskState:
    """What is stored on staging (``transfer.globus.json``) to make retries idempotent."""

    plan_id: str
    submission_id: str
    task_id: str = ""


class GlobusTransfer:
    """One day's transfer: submit (or re-attach), wait for a terminal state, report per file."""

    def __init__(
        self,
        tc: globus_sdk.TransferClient,
        source_collection: str,
        dest_collection: str,
        dest_day_path: str,
        day: Path,
        deadline: dt.timedelta = dt.timedelta(hours=12),
        poll_s: float = 30.0,
        timeout_s: float = 12 * 3600,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.tc = tc
        self.source, self.dest = source_collection, dest_collection
        self.dest_day_path = dest_day_path.rstrip("/")
        self.day = day
        self.state_path = day / "transfer.globus.json"
        self.deadline, self.poll_s, self.timeout_s, self.sleep = deadline, poll_s, timeout_s, sleep

    def _load_state(self, plan_id: str) -> TaskState | None:
        if not self.state_path.exists():
            return None
        state = TaskState(**json.loads(self.state_path.read_text(encoding="utf-8")))
        return state if state.plan_id == plan_id else None

    def _save(self, state: TaskState) -> None:
        write_atomic(self.state_path, json.dumps(asdict(state), sort_keys=True))

    def _task_status(self, task_id: str) -> str:
        return self.tc.get_task(task_id)["status"]

    def submit(self, manifest: Manifest) -> TaskState:
        """Submit once per plan. A stored task that FAILED is the only reason to submit anew
        (nothing of it arrived); otherwise the stored ids are reused."""
        state = self._load_state(manifest.plan_id)
        if state and state.task_id and self._task_status(state.task_id) != "FAILED":
            log.info(
                "re-attaching to Globus task %s (submission %s)", state.task_id, state.submission_id
            )
            return state
        if state is None or state.task_id:
            state = TaskState(manifest.plan_id, self.tc.get_submission_id()["value"])
            self._save(state)  # stored BEFORE submitting: a crash here is harmless
        data = globus_sdk.TransferData(
            self.source,
            self.dest,
            label=f"audio {manifest.date} {manifest.plan_id}"[:128],
            submission_id=state.submission_id,
            sync_level="checksum",
            verify_checksum=True,
            skip_source_errors=True,
            fail_on_quota_errors=True,
            deadline=dt.datetime.now(dt.timezone.utc) + self.deadline,
            notify_on_succeeded=False,
            notify_on_failed=False,
            notify_on_inactive=False,
        )
        for clip in manifest.clips:
            data.add_item(clip.source_path, f"{self.dest_day_path}/audio/{clip.name}")
        result = self.tc.submit_transfer(data)
        log.info(
            "Globus submission %s: %s, task %s",
            state.submission_id,
            result["code"],
            result["task_id"],
        )
        state.task_id = result["task_id"]
        self._save(state)
        return state

    def wait(self, task_id: str) -> None:
        """Poll until SUCCEEDED; FAILED or the time limit raise (task_wait would return on
        FAILED as if all were well)."""
        waited = 0.0
        while (status := self._task_status(task_id)) not in TERMINAL:
            if waited >= self.timeout_s:
                raise GlobusTransferError(
                    f"task {task_id} still {status} after {waited:.0f} s; a retry re-attaches to it"
                )
            self.sleep(self.poll_s)
            waited += self.poll_s
        if status != "SUCCEEDED":
            task = self.tc.get_task(task_id)
            raise GlobusTransferError(
                f"task {task_id} ended {status}: "
                f"{task.get('nice_status') or task.get('fatal_error')}"
            )

    def run(self, manifest: Manifest) -> tuple[TaskState | None, list[TransferOutcome]]:
        """Submit or re-attach, wait, report; Globus API/network errors become
        GlobusTransferError (the job fails and its retry re-attaches)."""
        if not manifest.clips:
            return None, []
        try:
            state = self.submit(manifest)
            self.wait(state.task_id)
            return state, self.outcomes(state.task_id, manifest.clips)
        except globus_sdk.GlobusError as exc:
            raise GlobusTransferError(f"Globus call failed: {exc}") from exc

    def outcomes(self, task_id: str, clips: list[Clip]) -> list[TransferOutcome]:
        """Per clip: transferred (in the task's successful list), failed (skipped source
        error, or missing on staging), else skipped (checksum-identical already)."""
        moved = {
            t["destination_path"]
            for t in self.tc.paginated.task_successful_transfers(task_id).items()
        }
        errors = {
            e["source_path"]: f"{e.get('error_code', '')}: {e.get('error_details', '')}"
            for e in self.tc.paginated.task_skipped_errors(task_id).items()
        }
        out = []
        for clip in clips:
            dest = f"{self.dest_day_path}/audio/{clip.name}"
            local = self.day / "audio" / clip.name
            if clip.source_path in errors:
                out.append(
                    TransferOutcome(
                        clip.clip_id, clip.name, "failed", error=errors[clip.source_path]
                    )
                )
            elif not local.is_file():
                out.append(
                    TransferOutcome(
                        clip.clip_id,
                        clip.name,
                        "failed",
                        error="task succeeded but file is not on staging",
                    )
                )
            else:
                out.append(
                    TransferOutcome(
                        clip.clip_id,
                        clip.name,
                        "transferred" if dest in moved else "skipped",
                        checksum=sha256_file(local),
                    )
                )
        return out
