-- 002_gaps.sql - the gap log: periods during which conntrack events were
-- lost and the live figures were not exact, from the last moment they were
-- known exact (start_ms) to the end of the resync that repaired them
-- (end_ms).  Kept across runs; each write trims it to the newest 1000 gaps
-- and the last 30 days.
CREATE TABLE gaps (
	run_started_ms	INTEGER NOT NULL,	-- status.started_ms of the run
	seq		INTEGER NOT NULL,	-- 1, 2, ... within the run
	start_ms	INTEGER NOT NULL,	-- figures exact until here
	end_ms		INTEGER,	-- repaired at; NULL while open
	events_lost	INTEGER,	-- the kernel's drop count; NULL unknown
	enobufs		INTEGER NOT NULL,	-- ENOBUFS errors folded into it
	added		INTEGER NOT NULL,	-- repairs the resync made
	removed		INTEGER NOT NULL,
	changed		INTEGER NOT NULL,
	reason		TEXT NOT NULL,	-- 'enobufs', 'dump-error', ...
	PRIMARY KEY (run_started_ms, seq)
);
CREATE INDEX gaps_start ON gaps (start_ms);
