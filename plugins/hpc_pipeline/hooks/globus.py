"""GlobusListingHook: list a source day on a Globus collection from the Airflow side.

Why here and not in a cluster job: the readiness wait must hold no worker slot and no SLURM
allocation, and the credentials already live in the Airflow connection ``globus_conn_id``
(login = client id, password = client secret; the same one ``globus_credentials`` stages
for the jobs). The triggerer calls the Transfer API directly with the client-credentials
grant, so nothing is deployed or staged before the wait, and no Python runs on a login node.
The jobs keep their own listing (``hpc/src/transfer_globus.py``) for planning.
"""

from __future__ import annotations

import datetime as dt

import globus_sdk
from airflow.sdk import BaseHook


def _epoch(stamp: str | None) -> float:
    """Globus ``last_modified`` (``"2024-01-15 07:12:00+00:00"``) -> epoch seconds."""
    if not stamp:
        return 0.0
    return dt.datetime.fromisoformat(stamp).timestamp()


class GlobusListingHook:
    """One TransferClient (one HTTP session, one cached token) for the hook's life."""

    def __init__(self, globus_conn_id: str, collection: str) -> None:
        self.globus_conn_id = globus_conn_id
        self.collection = collection
        self._client: globus_sdk.TransferClient | None = None

    def client(self) -> globus_sdk.TransferClient:
        if self._client is None:
            conn = BaseHook.get_connection(self.globus_conn_id)
            if not conn.login or not conn.password:
                raise ValueError(
                    f"connection {self.globus_conn_id!r} needs the Globus client id "
                    "(login) and secret (password)"
                )
            auth = globus_sdk.ConfidentialAppAuthClient(
                client_id=conn.login, client_secret=conn.password
            )
            authorizer = globus_sdk.ClientCredentialsAuthorizer(
                auth, globus_sdk.TransferClient.scopes.all
            )
            self._client = globus_sdk.TransferClient(authorizer=authorizer)
        return self._client

    def list_tree(self, path: str) -> list[tuple[str, int, float]] | None:
        """Every file under ``path`` as (relative path, size, mtime): one ``operation_ls``
        per directory (Globus has no recursive listing); None when ``path`` does not exist."""
        entries: list[tuple[str, int, float]] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            try:
                items = self.client().operation_ls(
                    self.collection, path=f"{path.rstrip('/')}/{rel}".rstrip("/") + "/"
                )
            except globus_sdk.TransferAPIError as exc:
                if exc.http_status == 404 and not rel:
                    return None
                raise
            for item in items:
                child = f"{rel}{item['name']}"
                if item["type"] == "dir":
                    stack.append(child + "/")
                else:
                    entries.append(
                        (child, int(item.get("size") or 0), _epoch(item.get("last_modified")))
                    )
        return entries

    def close(self) -> None:
        self._client = None
