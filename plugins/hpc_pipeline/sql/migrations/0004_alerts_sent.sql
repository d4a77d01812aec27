-- The alerts already sent for a day (ResultsDbHook.alerts_to_send): a retried report_day,
-- or a run cleared and re-run, does not mail the same alert twice. One row per (day, alert
-- kind, DAG run); a new run of the day (a reprocess, a backfill) may alert again.
CREATE TABLE alerts_sent (
    day         date NOT NULL,
    kind        text NOT NULL,
    dag_run_id  text NOT NULL,
    message     text NOT NULL,                -- the problem as the mail stated it
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, kind, dag_run_id)
);
