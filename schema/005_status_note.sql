-- 005_status_note.sql - status.note (STORE_STATUS_FIELDS): NULL for a live
-- run; set by `natscope import`, whose status row (state 'stopped') says
-- which captures it was built from, so that no answer shows an import as
-- a live run.
ALTER TABLE status ADD COLUMN note TEXT;
