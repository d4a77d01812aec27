-- Search walks the transcripts newest day first, a window of days at a time
-- (hpc_pipeline.transcripts.search.newest_matches). A window of several days is found
-- through this BRIN index over the day a clip id starts with, ANDed with the GIN index's
-- matches: only the window's matching rows are read. The primary key could list the
-- window's rows too, but the planner, misjudging how many of them match (a rare word is
-- expected 10 times as often as it occurs; the newest days, past the last ANALYZE's
-- statistics, look empty), then walked every row of the window (0.3 s for 5 days); on the
-- expression only this index serves the range. Rows are appended day by day, so each
-- range of 128 heap pages (about 500 transcripts; a day fills 30) holds one or two days.
-- Every BRIN scan reads the whole index (under 1 MB at a year). Pages filled since the last
-- VACUUM are not summarized yet and are always read (the newest day, searched most);
-- autosummarize summarizes a range at the next autovacuum once it is full. The build reads
-- the table once (10 GB at a year: about a minute when cached), blocking writers, not
-- readers, meanwhile.
CREATE INDEX transcripts_day_brin ON transcripts USING brin ((left(clip_id, 10)))
    WITH (autosummarize = on);
