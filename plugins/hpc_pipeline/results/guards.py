"""What keeps a day's side effects single: an alert mailed once per (day, kind, DAG run),
and one run at a time per day (the day claim)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from hpc_pipeline.results.connection import ResultsConnection


class DayGuards(ResultsConnection):
    """Alert de-duplication and day claims."""

    @contextlib.contextmanager
    def alerts_to_send(
        self, day: str, run_id: str, problems: dict[str, str]
    ) -> Iterator[list[str]]:
        """Yield the kinds of ``problems`` (``{kind: message}``) not alerted yet for ``day``
        in run ``run_id`` (see ``hpc_pipeline.alerts`` for why that key).

        They are recorded as sent when the block ends without error, and not at all when it
        raises (the mail did not go: the task's retry sends it). Their rows stay locked until
        then, so a second attempt at the same time waits and then finds them sent."""
        kinds = list(problems)
        with self.get_conn() as conn:
            with conn.cursor() as cur:
                cur.execute(
                    """INSERT INTO alerts_sent (day, kind, dag_run_id, message)
                               SELECT %s, k, %s, m FROM unnest(%s::text[], %s::text[]) AS a(k, m)
                               ON CONFLICT (day, kind, dag_run_id) DO NOTHING RETURNING kind""",
                    (day, run_id, kinds, [problems[k] for k in kinds]),
                )
                new = {row[0] for row in cur.fetchall()}
            try:
                yield [k for k in kinds if k in new]
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def claim_day(self, day: str, run_id: str, run_active: Callable[[str], bool]) -> str | None:
        """Claim ``day`` for ``run_id``; return the run holding it instead when that run is
        still active (``run_active``). Row-locked, so two runs claiming at once serialise."""
        with self.get_conn() as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO day_claims (day, dag_run_id) VALUES (%s, %s) "
                "ON CONFLICT (day) DO NOTHING",
                (day, run_id),
            )
            cur.execute("SELECT dag_run_id FROM day_claims WHERE day = %s FOR UPDATE", (day,))
            (holder,) = cur.fetchone()
            if holder != run_id:
                if run_active(holder):
                    conn.rollback()
                    return holder
                cur.execute(
                    "UPDATE day_claims SET dag_run_id = %s, claimed_at = now() WHERE day = %s",
                    (run_id, day),
                )
            conn.commit()
        return None
