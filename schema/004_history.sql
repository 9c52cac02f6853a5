-- 004_history.sql - history: every interval's figures, kept at three
-- resolutions ("tiers") and bounded by age and by the database's size.
--
--   tier 0  raw: one row per collector interval (--interval), kept 1 day
--   tier 1  one row per minute, kept 7 days
--   tier 2  one row per hour, kept 90 days
--
-- (the defaults; --history-raw, --history-minute, --history-hour and
-- --history-max-size change them).  ts_ms is the start of the period a
-- row describes and span_ms how much of it natscope observed: a raw row
-- covers one interval (from the previous snapshot to this one); a minute
-- or hour row starts on the minute or hour (UTC) and its span_ms is the
-- sum of its raw rows' spans, less than the period when natscope did not
-- run all of it.  A rollup row is made when its period is over, from the
-- finer rows, so at any time the newest minute and hour are only in the
-- finer tiers.
--
-- Peaks, not samples: the collector sees every change, so *_peak is the
-- highest value reached at any moment within the period (a burst that
-- opens and closes within one interval shows), and rollups keep the max
-- of the peaks; plain columns are the value at the period's end; *_avg is
-- the mean of the raw snapshots, weighted by their spans.
--
-- exact = 1 when the whole period was covered with the figures known
-- exact (state running, no gap open); 0 when any part of it was not
-- (a gap, a resync, starting, db-error): the gaps table says why.  A
-- period natscope did not observe at all has no row.

-- One row per (tier, period, public IP, protocol) with a mapping at any
-- moment of the period.
CREATE TABLE hist_gateway (
	public_ip	TEXT NOT NULL,
	proto		TEXT NOT NULL,
	tier		INTEGER NOT NULL,	-- 0 raw, 1 minute, 2 hour
	ts_ms		INTEGER NOT NULL,	-- period start
	span_ms		INTEGER NOT NULL,	-- observed part of the period
	exact		INTEGER NOT NULL,	-- 1 if exact all along, see above
	family		INTEGER NOT NULL,
	ip_bin		BLOB NOT NULL,
	ports_in_use	INTEGER NOT NULL,	-- at the end
	ports_peak	INTEGER NOT NULL,	-- highest within the period
	ports_avg	REAL NOT NULL,
	mappings	INTEGER NOT NULL,
	mappings_peak	INTEGER NOT NULL,
	mappings_avg	REAL NOT NULL,
	hosts		INTEGER NOT NULL,	-- at the end
	destinations	INTEGER NOT NULL,	-- at the end
	new_mappings	INTEGER NOT NULL,	-- created within the period (rate: / span)
	-- the destination bucket that came closest to full within the period
	-- (highest worst_peak / worst_capacity); worst_peak 0 when none
	worst_ip	TEXT,
	worst_port	INTEGER,
	worst_zone	INTEGER,
	worst_capacity	INTEGER,
	worst_peak	INTEGER NOT NULL,
	-- TCP states at the end; time_wait_peak the highest within the period
	state_none		INTEGER NOT NULL DEFAULT 0,
	state_syn_sent		INTEGER NOT NULL DEFAULT 0,
	state_syn_recv		INTEGER NOT NULL DEFAULT 0,
	state_established	INTEGER NOT NULL DEFAULT 0,
	state_fin_wait		INTEGER NOT NULL DEFAULT 0,
	state_close_wait	INTEGER NOT NULL DEFAULT 0,
	state_last_ack		INTEGER NOT NULL DEFAULT 0,
	state_time_wait		INTEGER NOT NULL DEFAULT 0,
	state_close		INTEGER NOT NULL DEFAULT 0,
	state_syn_sent2		INTEGER NOT NULL DEFAULT 0,
	time_wait_peak		INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (public_ip, proto, tier, ts_ms)
) WITHOUT ROWID;
CREATE INDEX hist_gateway_time ON hist_gateway (tier, ts_ms);

-- Internal hosts per (tier, period, gateway): not every host, the top
-- consumers - in each raw period the --history-top (default 20) hosts of
-- each gateway with the highest mappings_peak and the 20 with the most
-- new_mappings; a rollup row aggregates the raw rows of that host.  A host
-- absent from a period was not among them.
CREATE TABLE hist_host (
	public_ip	TEXT NOT NULL,
	proto		TEXT NOT NULL,
	tier		INTEGER NOT NULL,
	ts_ms		INTEGER NOT NULL,
	ip		TEXT NOT NULL,	-- the internal host (= public_ip for local)
	span_ms		INTEGER NOT NULL,	-- part of the period it was recorded in
	kind		TEXT NOT NULL,	-- 'nat' or 'local'
	family		INTEGER NOT NULL,
	ip_bin		BLOB NOT NULL,
	mappings	INTEGER NOT NULL,	-- at the end
	mappings_peak	INTEGER NOT NULL,
	ports_in_use	INTEGER NOT NULL,	-- at the end
	new_mappings	INTEGER NOT NULL,
	PRIMARY KEY (public_ip, proto, tier, ts_ms, ip)
) WITHOUT ROWID;
CREATE INDEX hist_host_ip ON hist_host (ip, tier, ts_ms);

-- Destination buckets per (tier, period, gateway), chosen like hist_host:
-- the top by mappings_peak / capacity and by new_mappings.
CREATE TABLE hist_dest (
	public_ip	TEXT NOT NULL,
	proto		TEXT NOT NULL,
	tier		INTEGER NOT NULL,
	ts_ms		INTEGER NOT NULL,
	zone		INTEGER NOT NULL,
	ip		TEXT NOT NULL,
	port		INTEGER NOT NULL,
	span_ms		INTEGER NOT NULL,
	family		INTEGER NOT NULL,
	ip_bin		BLOB NOT NULL,
	capacity	INTEGER NOT NULL,
	mappings	INTEGER NOT NULL,	-- at the end
	mappings_peak	INTEGER NOT NULL,
	new_mappings	INTEGER NOT NULL,
	PRIMARY KEY (public_ip, proto, tier, ts_ms, zone, ip, port)
) WITHOUT ROWID;

-- The host side of a period: the kernel's counters and settings, and the
-- collector's state, one row per (tier, period).
CREATE TABLE hist_kernel (
	tier		INTEGER NOT NULL,
	ts_ms		INTEGER NOT NULL,
	span_ms		INTEGER NOT NULL,
	exact		INTEGER NOT NULL,
	state		TEXT NOT NULL,	-- the worst within the period:
					-- running < resyncing < starting < db-error
	mappings_nat	INTEGER NOT NULL,	-- at the end
	mappings_local	INTEGER NOT NULL,
	ct_count	INTEGER,	-- conntrack entries at the end
	ct_count_peak	INTEGER,	-- highest snapshot count within the period
	ct_max		INTEGER,
	-- increases of the kernel's counters within the period (summed over
	-- CPUs); NULL when unknown
	ct_insert_failed	INTEGER,
	ct_drop		INTEGER,
	ct_early_drop	INTEGER,
	ct_clash_resolve	INTEGER,
	events_lost	INTEGER NOT NULL,	-- events the kernel dropped for natscope
	-- settings at the end
	port_range_lo	INTEGER,
	port_range_hi	INTEGER,
	tcp_tw_reuse	INTEGER,
	tcp_fin_timeout	INTEGER,
	tcp_timeout_time_wait	INTEGER,
	ct_events	INTEGER,
	PRIMARY KEY (tier, ts_ms)
) WITHOUT ROWID;

-- Incidents: a gateway (public IP, protocol) or a destination bucket above
-- a threshold of its capacity (--warn, default 70%; --critical, 90%), or
-- the kernel's insert_failed / drop / early_drop rising ("kernel").  An
-- incident is open while closed_ms is NULL; it closes when the pressure
-- has been below the warn threshold (for counters: no increase) for one
-- interval.
CREATE TABLE incident (
	id		INTEGER PRIMARY KEY,
	kind		TEXT NOT NULL,	-- 'gateway', 'bucket' or 'kernel'
	severity	TEXT NOT NULL,	-- 'warn' or 'critical': the highest reached
	public_ip	TEXT,		-- NULL for 'kernel'
	proto		TEXT,
	zone		INTEGER,	-- 'bucket' only
	dest_ip		TEXT,
	dest_port	INTEGER,
	capacity	INTEGER,	-- ports the subject can use
	opened_ms	INTEGER NOT NULL,
	closed_ms	INTEGER,	-- NULL while open
	peak_ms		INTEGER NOT NULL,	-- when the peak was reached
	peak_mappings	INTEGER NOT NULL,	-- ports in use (gateway) or mappings (bucket) at the peak
	-- the kernel's counter increases while it was open
	insert_failed	INTEGER NOT NULL DEFAULT 0,
	drop_count	INTEGER NOT NULL DEFAULT 0,
	early_drop	INTEGER NOT NULL DEFAULT 0,
	-- JSON: the moment it opened and the moment of its peak - the
	-- saturated buckets, top consumers with their rates, TCP states,
	-- sysctls (see docs/database.md)
	opened_detail	TEXT NOT NULL,
	peak_detail	TEXT NOT NULL
);
CREATE INDEX incident_time ON incident (opened_ms);
CREATE INDEX incident_open ON incident (closed_ms) WHERE closed_ms IS NULL;

-- indexes for the read side
-- GET /api/v1/hosts/{ip}: the gateways one internal host uses now (the
-- history side reads hist_host_ip).  Every other read of the API goes
-- through a table's primary key or an index above: hist_kernel (tier,
-- ts_ms) finds the period holding a moment or the periods of a range,
-- hist_gateway / hist_host / hist_dest by (public_ip, proto, tier, ts_ms),
-- hist_gateway_time for every gateway of one period, incident_time.
CREATE INDEX hosts_ip ON hosts (ip);
