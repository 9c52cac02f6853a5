-- 001_live.sql - the live state: what the collector saw at the last
-- snapshot (status.as_of_ms).  Rows exist only while they have live
-- mappings, so these tables never grow past the size of the conntrack
-- table.  Times are milliseconds since the Unix epoch (UTC); addresses are
-- canonical text (dotted quad, RFC 5952 for IPv6), with family (4 or 6)
-- and ip_bin (the address in network byte order) as the numeric sort key.

-- One row per (public IP, protocol) with at least one live mapping.
CREATE TABLE gateways (
	public_ip	TEXT NOT NULL,	-- the gateway's public address
	proto		TEXT NOT NULL,	-- 'tcp', 'udp', 'udplite', 'sctp', 'dccp', 'icmp', 'icmpv6'
	family		INTEGER NOT NULL,	-- 4 or 6
	ip_bin		BLOB NOT NULL,	-- public_ip in network byte order
	ports_in_use	INTEGER NOT NULL,	-- distinct public ports with >= 1 mapping (of 65535)
	mappings	INTEGER NOT NULL,	-- live mappings (conntrack entries)
	hosts		INTEGER NOT NULL,	-- internal hosts with >= 1 mapping
	destinations	INTEGER NOT NULL,	-- destination buckets with >= 1 mapping
	-- the destination bucket closest to full (highest mappings/capacity)
	worst_ip	TEXT,		-- NULL when there is none (worst_mappings = 0)
	worst_port	INTEGER,
	worst_zone	INTEGER,
	worst_mappings	INTEGER NOT NULL,	-- 0 when there is none
	worst_capacity	INTEGER,
	-- mappings per TCP state (0 for other protocols)
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
	PRIMARY KEY (public_ip, proto)
) WITHOUT ROWID;

-- One row per (public IP, protocol, internal host).
CREATE TABLE hosts (
	public_ip	TEXT NOT NULL,	-- the gateway (gateways.public_ip)
	proto		TEXT NOT NULL,
	ip		TEXT NOT NULL,	-- the internal host; = public_ip for 'local'
	kind		TEXT NOT NULL,	-- 'local' if any mapping is this host's own, else 'nat'
	family		INTEGER NOT NULL,	-- of ip: 4 or 6
	ip_bin		BLOB NOT NULL,	-- ip in network byte order
	mappings	INTEGER NOT NULL,	-- live mappings of this host on this gateway
	ports_in_use	INTEGER NOT NULL,	-- distinct public ports it holds
	PRIMARY KEY (public_ip, proto, ip)
) WITHOUT ROWID;

-- One row per destination bucket: what runs out is the ports of one
-- (protocol, public IP, zone, destination ip:port).
CREATE TABLE destinations (
	public_ip	TEXT NOT NULL,	-- the gateway (gateways.public_ip)
	proto		TEXT NOT NULL,
	zone		INTEGER NOT NULL,	-- conntrack zone, 0 by default
	ip		TEXT NOT NULL,	-- destination address
	port		INTEGER NOT NULL,	-- destination port, 0 for ICMP
	family		INTEGER NOT NULL,	-- of ip: 4 or 6
	ip_bin		BLOB NOT NULL,	-- ip in network byte order
	mappings	INTEGER NOT NULL,	-- live mappings toward it
	capacity	INTEGER NOT NULL,	-- size of the port range they draw from
	PRIMARY KEY (public_ip, proto, zone, ip, port)
) WITHOUT ROWID;

-- The collector's status: exactly one row (id = 1), rewritten on every
-- write.  NULL means unknown (or, for a time, never).
CREATE TABLE status (
	id			INTEGER PRIMARY KEY CHECK (id = 1),
	-- the run
	version			TEXT NOT NULL,	-- natscope version
	started_ms		INTEGER NOT NULL,	-- when this run started
	pid			INTEGER NOT NULL,
	interval_s		INTEGER NOT NULL,	-- write interval, seconds
	state			TEXT NOT NULL,	-- 'starting', 'running', 'resyncing', 'stopped'
	as_of_ms		INTEGER,	-- when the live tables' snapshot was taken
	event_buffer_bytes	INTEGER NOT NULL,	-- netlink receive buffer granted
	-- live mappings
	mappings_nat		INTEGER NOT NULL,
	mappings_local		INTEGER NOT NULL,
	mappings_silent		INTEGER NOT NULL,	-- known only from dumps: no events come for them
	entries_other		INTEGER,	-- conntrack entries using no port of ours
	gateways		INTEGER NOT NULL,	-- rows in gateways
	hosts			INTEGER NOT NULL,	-- rows in hosts
	destinations		INTEGER NOT NULL,	-- rows in destinations
	-- conntrack events received since the run started
	ev_new			INTEGER NOT NULL,
	ev_update		INTEGER NOT NULL,
	ev_destroy		INTEGER NOT NULL,
	ev_dumped		INTEGER NOT NULL,	-- entries read by dumps
	ev_unknown_destroy	INTEGER NOT NULL,	-- DESTROY of an unknown mapping
	ev_malformed		INTEGER NOT NULL,	-- messages the parser rejected
	ev_lost			INTEGER NOT NULL,	-- events the kernel dropped
	enobufs			INTEGER NOT NULL,	-- ENOBUFS errors
	-- resyncs (full re-dumps; the start-up dump is the first)
	resyncs			INTEGER NOT NULL,
	resync_active		INTEGER NOT NULL,	-- 1 while one runs
	resync_last_started_ms	INTEGER,
	resync_last_done_ms	INTEGER,
	resync_last_duration_us	INTEGER,	-- microseconds
	resync_last_entries	INTEGER NOT NULL,
	resync_last_added	INTEGER NOT NULL,
	resync_last_removed	INTEGER NOT NULL,
	resync_last_changed	INTEGER NOT NULL,
	-- the kernel's conntrack statistics, summed over CPUs
	ct_count		INTEGER,
	ct_max			INTEGER,	-- net.netfilter.nf_conntrack_max
	ct_insert_failed	INTEGER,
	ct_drop			INTEGER,
	ct_early_drop		INTEGER,
	ct_clash_resolve	INTEGER,
	-- sysctls
	port_range_lo		INTEGER,	-- net.ipv4.ip_local_port_range
	port_range_hi		INTEGER,
	tcp_tw_reuse		INTEGER,	-- net.ipv4.tcp_tw_reuse
	tcp_fin_timeout		INTEGER,	-- net.ipv4.tcp_fin_timeout, seconds
	tcp_timeout_time_wait	INTEGER,	-- nf_conntrack_tcp_timeout_time_wait, s
	ct_events		INTEGER,	-- net.netfilter.nf_conntrack_events (0 off, 1 on, 2 auto)
	-- the process
	rss_bytes		INTEGER NOT NULL,
	cpu_seconds		REAL NOT NULL,
	-- writes of this database by this run
	writes_ok		INTEGER NOT NULL,
	writes_failed		INTEGER NOT NULL,
	last_write_ms		INTEGER,	-- last successful write
	last_write_error	TEXT		-- last failure's message, NULL if none
);
