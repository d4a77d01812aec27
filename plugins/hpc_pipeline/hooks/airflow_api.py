"""AirflowApiHook: the few calls this package makes to Airflow's own public REST API.

Why a REST call from a task: Airflow 3.3's Execution API (what tasks talk to) can read a DAG
run's note and set one on a run a task *triggers*, but has no call that edits the running
run's note; the public API's ``PATCH /api/v2/dags/{dag}/dagRuns/{run}?update_mask=note`` is
the supported way. The connection (type http) holds Airflow's URL and a user allowed to edit
DAG runs; its password goes only into the token request's body.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import httpx
from airflow.sdk import BaseHook

NOTE_MAX_CHARS = 1000  # Airflow's dag_run_note.content column


class AirflowApiHook:
    def __init__(self, conn_id: str = "airflow_api", timeout_s: float = 30.0) -> None:
        self.conn_id = conn_id
        self.timeout_s = timeout_s

    @contextmanager
    def _session(self) -> Iterator[httpx.Client]:
        """A client carrying a fresh bearer token for the connection's user."""
        conn = BaseHook.get_connection(self.conn_id)
        host = conn.host or "127.0.0.1"
        base = (
            host
            if "://" in host
            else (f"{conn.schema or 'http'}://{host}" + (f":{conn.port}" if conn.port else ""))
        )
        with httpx.Client(base_url=base.rstrip("/"), timeout=self.timeout_s) as client:
            token = client.post(
                "/auth/token", json={"username": conn.login, "password": conn.password}
            )
            token.raise_for_status()
            client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            yield client

    def set_run_note(self, dag_id: str, run_id: str, note: str) -> None:
        """Replace the DAG run's note (Markdown in the UI), cut to what Airflow stores."""
        with self._session() as client:
            resp = client.patch(
                f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}",
                params={"update_mask": "note"},
                json={"note": note[:NOTE_MAX_CHARS]},
            )
            resp.raise_for_status()
