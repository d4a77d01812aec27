"""Start a DAG run through Airflow 3's REST API and wait for it (demo and tests).

    python scripts/airflow_api.py run audio_pipeline_daily --conf '{"date": "2024-01-15"}'
    python scripts/airflow_api.py scheduled audio_pipeline_daily

``run`` triggers a manual run; ``scheduled`` unpauses the DAG and follows the run the daily
schedule creates for the latest midnight (it processes yesterday). Prints each task's final
state; exits 1 when the run fails, naming the failed tasks.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any


class AirflowApi:
    def __init__(self, base_url: str = "http://127.0.0.1:8080", user: str = "admin",
                 password: str = "admin") -> None:
        self.base_url = base_url.rstrip("/")
        token = self._call("POST", "/auth/token", {"username": user, "password": password})
        self.token = token["access_token"]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(self.base_url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        if getattr(self, "token", None):
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"{method} {path}: HTTP {err.code}: {err.read().decode()[:500]}") from None

    def wait_for_dag(self, dag_id: str, timeout_s: float = 120) -> None:
        """Wait until the DAG processor has parsed ``dag_id`` (a fresh stack needs a moment)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._call("GET", f"/api/v2/dags/{dag_id}")
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any], logical_date: str | None = None) -> str:
        """A manual run; with ``logical_date`` (ISO) it takes the slot of the scheduled run of
        that date, which the scheduler then does not create."""
        run = self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                         {"logical_date": logical_date, "conf": conf})
        return run["dag_run_id"]

    def scheduled_run(self, dag_id: str, timeout_s: float = 90) -> str | None:
        """The run id the scheduler created for the latest cron time, once it exists."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            runs = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns?run_type=scheduled"
                                     "&order_by=-run_after&limit=1")["dag_runs"]
            if runs:
                return runs[0]["dag_run_id"]
            time.sleep(3)
        return None

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of ``dag_id``, oldest logical date first (states, start/end dates, conf)."""
        return self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=logical_date"
                                 "&limit=100")["dag_runs"]

    def backfill(self, dag_id: str, from_date: str, to_date: str, conf: dict[str, Any],
                 max_active_runs: int = 1) -> dict[str, Any]:
        """What *Backfill…* in the UI sends: one run per schedule date in the range. The UI
        defaults ``max_active_runs`` to 1 (capped by the DAG's); the API's own default is 10."""
        return self._call("POST", "/api/v2/backfills", {
            "dag_id": dag_id, "from_date": from_date, "to_date": to_date,
            "dag_run_conf": conf, "max_active_runs": max_active_runs,
            "reprocess_behavior": "none", "run_backwards": False})

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in tis["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self._call("GET", path + "?deserialize=true")["value"]

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        """What *Mark as failed/success* does in the UI."""
        self._call("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
                   {"new_state": state})

    def wait(self, dag_id: str, run_id: str, timeout_s: float = 1200) -> str:
        """The run's final state. A poll the api-server is too busy to answer in time (a
        loaded machine) is not the run's failure: it is polled again until the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                state = self.run_state(dag_id, run_id)
            except OSError as exc:  # URLError, TimeoutError, ConnectionError
                state = f"unknown ({exc})"
            if state in ("success", "failed"):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {state} after {timeout_s:.0f} s")
            time.sleep(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "scheduled"])
    parser.add_argument("dag_id")
    parser.add_argument("--conf", default="{}")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    api = AirflowApi(args.url)
    api.wait_for_dag(args.dag_id)
    api.unpause(args.dag_id)
    run_id = api.scheduled_run(args.dag_id) if args.command == "scheduled" else None
    if run_id is None:
        run_id = api.trigger(args.dag_id, json.loads(args.conf))
        print(f"triggered {args.dag_id} run {run_id}", flush=True)
    else:
        print(f"following the scheduled run {run_id}", flush=True)
    state = api.wait(args.dag_id, run_id, args.timeout)
    tasks = api.task_states(args.dag_id, run_id)
    for task_id, task_state in tasks.items():
        print(f"  {task_id:<16} {task_state}")
    print(f"run {run_id}: {state}")
    if state != "success":
        failed = [t for t, s in tasks.items() if s in ("failed", "upstream_failed")]
        sys.exit(f"failed tasks: {', '.join(failed)} (open the run in the UI for their logs)")


if __name__ == "__main__":
    main()
