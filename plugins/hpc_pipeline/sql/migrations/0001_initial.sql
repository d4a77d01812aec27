-- Results database of the daily audio pipeline (separate from Airflow's metadata DB).
-- One row per day, per clip, per transcript and per SLURM job (array index).

CREATE TABLE audio_days (
    day               date PRIMARY KEY,
    plan_id           text,
    dag_run_id        text,
    clips_listed      integer NOT NULL DEFAULT 0,   -- found at the source
    clips_planned     integer NOT NULL DEFAULT 0,   -- sent to the cluster by the last plan
    clips_skipped     integer NOT NULL DEFAULT 0,   -- left out as already done
    clips_ok          integer NOT NULL DEFAULT 0,
    clips_failed      integer NOT NULL DEFAULT 0,
    clips_missing     integer NOT NULL DEFAULT 0,   -- planned but without an outcome yet
    failed_by_reason  jsonb   NOT NULL DEFAULT '{}'::jsonb,
    audio_seconds     double precision NOT NULL DEFAULT 0,
    gpu_seconds       double precision NOT NULL DEFAULT 0,
    wall_seconds      double precision NOT NULL DEFAULT 0,   -- sum of shard wall times
    real_time_factor  double precision,                      -- audio seconds per shard wall second
    -- complete: every planned clip transcribed; partial: some failed; incomplete: some missing
    status            text NOT NULL DEFAULT 'incomplete'
                      CHECK (status IN ('complete', 'partial', 'incomplete')),
    recorded_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audio_clips (
    clip_id      text PRIMARY KEY,                 -- <day>/<path relative to the day's source dir>
    day          date NOT NULL REFERENCES audio_days (day),
    status       text NOT NULL CHECK (status IN ('ok', 'failed')),
    error_kind   text,
    error        text,
    duration_s   double precision,
    language     text,
    engine       text,
    model        text,
    alignment    text,
    timings      jsonb NOT NULL DEFAULT '{}'::jsonb,
    job_id       text,
    array_index  integer,
    node         text,
    finished_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audio_clips_day_status ON audio_clips (day, status);

CREATE TABLE transcripts (
    clip_id      text PRIMARY KEY REFERENCES audio_clips (clip_id) ON DELETE CASCADE,
    text         text NOT NULL,
    language     text,
    model        text,
    segments     jsonb NOT NULL,                    -- [{start, end, text, words: [...]}]
    word_count   integer NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE slurm_jobs (
    job_id       text    NOT NULL,                  -- the array job id for arrays
    array_index  integer NOT NULL DEFAULT -1,       -- -1 for a job that is not an array
    day          date    NOT NULL REFERENCES audio_days (day),
    step         text    NOT NULL,                  -- master | transfer | audio
    state        text    NOT NULL,
    exit_code    text,
    elapsed_s    double precision,
    node         text,
    gpus         integer NOT NULL DEFAULT 0,
    gpu_seconds  double precision NOT NULL DEFAULT 0,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, array_index)
);
CREATE INDEX slurm_jobs_day ON slurm_jobs (day, step);
