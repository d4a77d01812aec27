"""One connection helper for the results DB (its own Airflow connection, not Airflow's
metadata DB): write transactions through ``get_conn``, and read-only snapshots on a small
stack of kept connections for a long-lived reader (the api-server plugin)."""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator
from typing import Any

from airflow.providers.postgres.hooks.postgres import PostgresHook
from psycopg.rows import dict_row


class ResultsConnection(PostgresHook):
    """PostgreSQL results DB connection.

    :param postgres_conn_id: the ``postgres`` connection of the results DB.
    :param keep_readers: read-only connections kept open between reads, for a long-lived
        reader; opening one costs ~50 ms (SCRAM auth).
    """

    default_conn_name = "audio_results_db"
    hook_name = "Audio results database"

    def __init__(
        self, postgres_conn_id: str = default_conn_name, *, keep_readers: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(postgres_conn_id=postgres_conn_id, **kwargs)
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue(maxsize=max(keep_readers, 1))
        self._keep_readers = keep_readers

    @contextlib.contextmanager
    def reading(self) -> Iterator[Any]:
        """A dict-row cursor in a read-only transaction (one snapshot for all its queries).

        The connection goes back to the idle stack afterwards when ``keep_readers`` allows;
        an idle one that died (server restart) is noticed by a ping and replaced."""
        conn: Any = None  # psycopg 3's Connection (the provider types it as a DB-API one)
        while conn is None:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self.get_conn()
                conn.autocommit = True  # each read group is its own BEGIN READ ONLY
                conn.read_only = True
                break
            try:
                conn.execute("SELECT 1")
            except Exception:  # dead socket: drop it, try the next one or a new one
                conn.close()
                conn = None
        try:
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                yield cur
        except BaseException:
            conn.close()
            raise
        if self._keep_readers and not self._idle.full():
            self._idle.put_nowait(conn)
        else:
            conn.close()

    def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self.reading() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
