-- 007_resync_histogram.sql - how long complete resyncs took, as the
-- cumulative buckets of a histogram (store.h's STORE_STATUS_FIELDS, the
-- rows natscope_resync_duration_seconds_*): /metrics serves it, the web
-- reading only this row.  resync_le_X counts the complete resyncs of this
-- run (the start-up dump included) that took at most X; the count is all
-- of them and the sum their durations added up (NULL before a run wrote
-- it).
ALTER TABLE status ADD COLUMN resync_le_10ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_le_50ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_le_100ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_le_250ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_le_500ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_le_1s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_le_2500ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_le_5s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_le_10s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_le_30s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_le_60s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_le_120s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_duration_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE status ADD COLUMN resync_duration_sum_us INTEGER;
