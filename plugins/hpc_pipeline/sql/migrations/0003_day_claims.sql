-- One DAG run works on a day at a time (ResultsDbHook.claim_day): the run that claimed it
-- last. A claim of a run that has ended is taken over by the next run of that day.
CREATE TABLE day_claims (
    day         date PRIMARY KEY,
    dag_run_id  text NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);
