-- Search walks the transcripts newest day first, a window of days at a time
-- (hpc_pipeline.transcripts.search.newest_matches), each window a clip-id range (clip ids
-- start with their day). This BRIN index gives a window's heap pages from a small index, so
-- PostgreSQL ANDs them with the GIN index's matches and reads only the window's matching
-- rows; the clip-id primary key would have to list every row of the window (0.3-0.4 s for 30
-- days at 20,000 clips a day). Rows are appended day by day, so each range of 128 heap pages
-- (about 500 transcripts; a day fills 30) holds a narrow run of clip ids. Every BRIN scan
-- reads the whole index (1 MB at a year with 128 pages a range, 3.4 MB and 30 ms with 32).
-- Pages filled since the last VACUUM are not summarized yet and are always read (the newest
-- day, searched most); autosummarize summarizes a range at the next autovacuum once it is
-- full. The build reads the table once (10 GB at a year: about a minute when cached),
-- blocking writers, not readers, meanwhile.
CREATE INDEX transcripts_clip_brin ON transcripts USING brin (clip_id)
    WITH (autosummarize = on);
