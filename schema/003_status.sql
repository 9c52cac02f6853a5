-- 003_status.sql - the status row, rebuilt from store.h's
-- STORE_STATUS_FIELDS, which drives every column below: each column is
-- named as the field, and test_store checks that this table and the list
-- agree.  The row is rewritten on every write, so the old table is simply
-- replaced (the next write fills the new one).  New columns: follow, the
-- self-audit (audit_*), resync_failed and resync_abandoned; mappings_other
-- is now natscope's own count of entries that use no port (it was the
-- kernel's count minus what natscope tracked).  NULL means unknown (or,
-- for a time, never).
DROP TABLE status;
CREATE TABLE status (
	id                           INTEGER PRIMARY KEY CHECK (id = 1),
	version                      TEXT,             -- natscope version that wrote the row
	started_ms                   INTEGER,          -- When this run started.
	pid                          INTEGER NOT NULL, -- process id of the run
	interval_s                   INTEGER NOT NULL, -- write interval, seconds
	state                        TEXT NOT NULL,    -- starting, running, resyncing, stopped or db-error
	follow                       TEXT NOT NULL,    -- events, events+dumps (re-dumps for silent mappings) or dumps (nf_conntrack_events=0)
	as_of_ms                     INTEGER,          -- when the figures in the live tables were true
	event_buffer_bytes           INTEGER NOT NULL, -- Netlink receive buffer the kernel granted for events.
	mappings_nat                 INTEGER NOT NULL, -- Live conntrack entries by kind: nat and local hold a port of a public IP, other holds none.
	mappings_local               INTEGER NOT NULL, -- live mappings of connections this host originates
	mappings_other               INTEGER NOT NULL, -- live conntrack entries that use no port of this host, as natscope counts them
	mappings_silent              INTEGER NOT NULL, -- Entries known only from dumps: the kernel sends no events for them, so natscope re-dumps to follow them.
	gateways                     INTEGER NOT NULL, -- rows in gateways
	hosts                        INTEGER NOT NULL, -- rows in hosts
	destinations                 INTEGER NOT NULL, -- rows in destinations
	events_new                   INTEGER NOT NULL, -- Conntrack events received, by type (dumped: entries read by table dumps).
	events_update                INTEGER NOT NULL, -- UPDATE events
	events_destroy               INTEGER NOT NULL, -- DESTROY events
	events_dumped                INTEGER NOT NULL, -- entries read by dumps
	events_unknown_destroy       INTEGER NOT NULL, -- DESTROY events for entries natscope did not know.
	events_malformed             INTEGER NOT NULL, -- Netlink messages the parser rejected.
	events_lost                  INTEGER NOT NULL, -- Events the kernel dropped for natscope.
	events_enobufs               INTEGER NOT NULL, -- ENOBUFS errors on the event socket.
	resync_count                 INTEGER NOT NULL, -- Full table dumps completed, the start-up dump included.
	resync_active                INTEGER NOT NULL, -- 1 while a resync is running.
	resync_last_started_ms       INTEGER,          -- when the last resync started
	resync_last_done_ms          INTEGER,          -- When the last complete resync ended.
	resync_last_duration_us      INTEGER,          -- Duration of the last complete resync.
	resync_last_entries          INTEGER NOT NULL, -- entries the last resync read
	resync_last_added            INTEGER NOT NULL, -- mappings the last resync added
	resync_last_removed          INTEGER NOT NULL, -- mappings the last resync removed
	resync_last_changed          INTEGER NOT NULL, -- mappings the last resync changed
	resync_failed                INTEGER NOT NULL, -- Dumps that ended in an error (nothing swept; dumped again).
	resync_abandoned             INTEGER NOT NULL, -- Dumps abandoned by the watchdog after making no progress.
	audit_checks                 INTEGER NOT NULL, -- Count audits: tracked entries compared with the kernel's count.
	audit_mismatches             INTEGER NOT NULL, -- Disagreements with the kernel that outlasted their tolerance.
	audit_last_ms                INTEGER,          -- when the last count audit ran
	audit_kernel_entries         INTEGER,          -- the kernel's entry count at the last count audit
	audit_tracked_entries        INTEGER NOT NULL, -- nat + local + other at the last count audit
	audit_difference             INTEGER,          -- Kernel entries minus tracked entries at the last count audit.
	audit_tolerance              INTEGER NOT NULL, -- largest difference the last count audit could explain by changes in flight
	audit_sampled                INTEGER NOT NULL, -- Tracked mappings verified one by one against the kernel.
	audit_sample_ghosts          INTEGER NOT NULL, -- Sampled mappings the kernel no longer had (and no event said so).
	audit_dump_ghosts            INTEGER NOT NULL, -- Tracked entries a routine re-dump found gone with no event or loss to explain it.
	audit_sample_changed         INTEGER NOT NULL, -- sampled mappings whose host or state differed in the kernel
	audit_sample_silent_gone     INTEGER NOT NULL, -- silent mappings found gone by sampling, and removed
	audit_cycle_s                REAL,             -- Seconds between routine re-dumps, each of which checks every tracked entry against the kernel's table.
	writes_ok                    INTEGER NOT NULL, -- successful writes
	writes_failed                INTEGER NOT NULL, -- Database writes that failed.
	writes_last_ms               INTEGER,          -- When the collector last wrote to the database.
	writes_last_error            TEXT,             -- the last failure's message
	conntrack_count              INTEGER,          -- Entries in the kernel's conntrack table.
	conntrack_max                INTEGER,          -- Size limit of the kernel's conntrack table.
	conntrack_insert_failed      INTEGER,          -- Conntrack insert_failed, summed over CPUs.
	conntrack_drop               INTEGER,          -- Conntrack drop, summed over CPUs.
	conntrack_early_drop         INTEGER,          -- Conntrack early_drop, summed over CPUs.
	conntrack_clash_resolve      INTEGER,          -- Conntrack clash_resolve, summed over CPUs.
	sysctl_port_range_lo         INTEGER,          -- Kernel settings that decide port capacity and reuse.
	sysctl_port_range_hi         INTEGER,          -- net.ipv4.ip_local_port_range, high end
	sysctl_tcp_tw_reuse          INTEGER,          -- net.ipv4.tcp_tw_reuse
	sysctl_tcp_fin_timeout       INTEGER,          -- net.ipv4.tcp_fin_timeout, seconds
	sysctl_tcp_timeout_time_wait INTEGER,          -- net.netfilter.nf_conntrack_tcp_timeout_time_wait, seconds
	sysctl_conntrack_events      INTEGER,          -- net.netfilter.nf_conntrack_events: 0 off, 1 on, 2 auto
	process_rss_bytes            INTEGER NOT NULL, -- Resident memory of the collector process.
	process_cpu_seconds          REAL              -- CPU time used by the collector process.
);
