-- Full-text search over transcripts (hpc_pipeline.transcripts.search). The English
-- configuration stems words ("mentions" finds "mentioned"); the query side uses the same one
-- (transcripts.search.TS_CONFIG). The column is generated, so every writer (record_day's
-- upsert, a manual UPDATE) keeps it right; adding it rewrites the table once, under a lock
-- that blocks writers for as long as that takes (about a minute per million transcripts).
ALTER TABLE transcripts
    ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED;
CREATE INDEX transcripts_search ON transcripts USING gin (search);
