-- 006_maplog.sql - the mapping log: every NAT and local mapping's start
-- and end, for the reverse lookup (who held public ip:port at a moment).
-- Written by the store's writer thread in the interval's transaction
-- (store/maplog.c); the encoding of a block is described there.
--
-- A block holds the mappings of one public IP and protocol, sorted by
-- public port, in a narrow port range (port_lo..port_hi), zstd-compressed:
--   open = 1: start records of mappings still open at the last write;
--             t_last is 9223372036854775807 (open).  Rewritten in the same
--             transaction that logs a member's end, so open blocks hold
--             exactly the mappings open at the last write.
--   open = 0: complete records (start, end) of ended mappings; written
--             once, removed by retention (age, then size: oldest t_last
--             first).
CREATE TABLE maplog_blocks (
	id		INTEGER PRIMARY KEY,
	family		INTEGER NOT NULL,	-- 4 or 6
	ip_bin		BLOB NOT NULL,	-- the public IP, 4 or 16 bytes
	proto		INTEGER NOT NULL,	-- IPPROTO_*
	open		INTEGER NOT NULL,	-- 1 open mappings, 0 ended ones
	t_first		INTEGER NOT NULL,	-- earliest start, ms
	t_last		INTEGER NOT NULL,	-- latest end, ms (open: int64 max)
	port_lo		INTEGER NOT NULL,	-- public ports of its mappings
	port_hi		INTEGER NOT NULL,
	n		INTEGER NOT NULL,	-- mappings in the block
	data		BLOB NOT NULL	-- zstd frame, see store/maplog.c
);
CREATE INDEX maplog_blocks_lookup ON maplog_blocks (ip_bin, proto, t_last);
CREATE INDEX maplog_blocks_age ON maplog_blocks (open, t_last);

-- One row per natscope run that wrote the log: the log covers
-- [started_ms, last_ms] of each run; outside them nothing was logged.
CREATE TABLE maplog_runs (
	started_ms	INTEGER PRIMARY KEY,	-- status.started_ms of the run
	last_ms		INTEGER NOT NULL	-- its last write's time
);

-- Periods whose records were lost (the collector's buffer overflowed
-- while writes failed or lagged): lookups there are uncertain.
CREATE TABLE maplog_losses (
	start_ms	INTEGER NOT NULL,
	end_ms		INTEGER NOT NULL,
	records		INTEGER NOT NULL
);

-- trimmed_ms: retention removed ended blocks whose latest end was at or
-- before it, so a mapping that ended at or before trimmed_ms may be gone.
CREATE TABLE maplog_meta (
	id		INTEGER PRIMARY KEY CHECK (id = 1),
	trimmed_ms	INTEGER NOT NULL
);
INSERT INTO maplog_meta (id, trimmed_ms) VALUES (1, 0);
