-- Queue wait of every SLURM job (array index): sacct's Submit and Start, in the cluster's
-- local time as sacct prints them (no zone: the difference is what monitoring needs).
-- Rows recorded before this migration keep NULLs and read as "not measured".
ALTER TABLE slurm_jobs
    ADD COLUMN submitted_at timestamp,
    ADD COLUMN started_at   timestamp,
    ADD COLUMN queue_wait_s double precision
        GENERATED ALWAYS AS (extract(epoch FROM started_at - submitted_at)) STORED;

-- The status page pages through one day's clips in clip order, optionally by status.
CREATE INDEX audio_clips_day_status_clip ON audio_clips (day, status, clip_id);
DROP INDEX audio_clips_day_status;  -- the index above serves its queries too
