/*
 * store.h - natscope's SQLite database: the live state written by the
 * collector every interval, read back by the web service.
 *
 * One struct store is one SQLite connection and is used by one thread at a
 * time.  The collector's thread never touches SQLite: it fills a
 * struct store_batch and hands it to the writer thread (store_writer_*).
 * The web service opens its own read-only connection.
 *
 * Errors follow common.h: -1/NULL with errno set, detail logged here.
 * SQLite codes are converted at this boundary:
 *   SQLITE_BUSY/LOCKED -> EBUSY      SQLITE_FULL -> ENOSPC
 *   SQLITE_CORRUPT/NOTADB -> EILSEQ  SQLITE_CANTOPEN -> ENOENT or EACCES
 *   SQLITE_READONLY -> EROFS         schema newer than binary -> EPROTONOSUPPORT
 *   SQLITE_NOMEM -> ENOMEM           anything else -> EIO
 * A file that is not a natscope database also fails with EILSEQ; another
 * writer holding the database, EWOULDBLOCK; tables changed behind the
 * writer's back, ESTALE.  The log line says which, in words: a read-only
 * or full file system, a permission, a lock, corruption and "not a
 * natscope database" are never reported as one another.
 */
#ifndef NATSCOPE_STORE_H
#define NATSCOPE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct store;

/* STORE_IMMUTABLE reads a frozen copy: SQLite's immutable=1, for a file
 * in a directory this process cannot write (a WAL database there cannot
 * get its -shm).  No locks are taken and changes to the file are not
 * seen; the -wal file, if any, is not read. */
enum store_mode { STORE_READ_WRITE, STORE_READ_ONLY, STORE_IMMUTABLE };

/* Opens (READ_WRITE: creates) the database at path.
 *
 * READ_WRITE is for the one writer of a database.  Before SQLite touches
 * the file it is opened for writing (EROFS, EACCES, ENOENT say why not)
 * and locked with flock(LOCK_EX): a second writer fails with EWOULDBLOCK
 * and the log names the process holding it (pid, and when its run started
 * if the status row says).  The lock is held until store_close(); readers
 * (READ_ONLY stores, the sqlite3 tool) never take it and are never
 * blocked.  Then it sets WAL mode, applies every compiled-in migration the
 * file lacks, each in its own transaction, and runs PRAGMA quick_check on
 * the tables a run keeps (status, gaps, schema_migrations): a damaged one
 * fails with EILSEQ.  The live tables are emptied by the run anyway.  If
 * it fails after creating the file, the file is removed again; an existing
 * file is left as it was (SQLite's -wal and -shm too, unless it created
 * them and they hold nothing).
 *
 * Closing any descriptor of a file drops the process's POSIX locks on it,
 * SQLite's included: close this process's other connections to the file
 * before a READ_WRITE store.
 *
 * Both modes fail with EPROTONOSUPPORT, and say so, if the file's schema
 * is newer than this binary's.  READ_ONLY never writes and fails with
 * ENOENT if the file does not exist. */
struct store *store_open(const char *path, enum store_mode mode);

/* Closes the connection (and releases a READ_WRITE store's lock).  NULL
 * is allowed. */
void store_close(struct store *st);

/* Closes st like store_close() and, if store_open() created the file,
 * removes it with its -wal and -shm: for a start that failed before the
 * run began, so that no half-made database is left behind.  An existing
 * file is only closed.  NULL is allowed. */
void store_discard(struct store *st);

/* Groups every store_write() until store_tx_end() into one transaction
 * (the importer: all of it lands or none).  READ_WRITE stores only; the
 * writes inside keep their own all-or-nothing (a savepoint each), but a
 * failed one is not marked db-error: the caller ends with commit 0.
 * store_tx_end() commits (commit != 0) or rolls everything back.  Both
 * return 0, or -1 with errno (logged); a failed commit rolls back. */
int store_tx_begin(struct store *st);
int store_tx_end(struct store *st, int commit);

/* Schema version recorded in the open database, or -1 with errno. */
int store_schema_version(struct store *st);

/* Number of migrations compiled into this binary (the newest version). */
int store_binary_schema_version(void);

/* For tests only: runs sql (statements without results) on st's own
 * connection, e.g. "PRAGMA max_page_count = 20" to simulate a full disk.
 * Returns 0, or -1 with errno. */
int store_test_exec(struct store *st, const char *sql);

/* ---- rows: what the collector writes and the web reads back ---- */

/* One (public IP, protocol): a gateway IP's port usage for one protocol. */
struct store_gateway_row {
	struct ns_addr ip; /* the public IP */
	uint8_t proto;	   /* IPPROTO_* */
	uint8_t deleted;   /* write side: remove this row (no live mappings) */
	uint32_t ports_in_use; /* distinct public ports with >= 1 mapping */
	uint32_t mappings;
	uint32_t hosts;	       /* internal hosts with >= 1 mapping */
	uint32_t destinations; /* destination buckets with >= 1 mapping */
	/* The destination bucket with the highest mappings/capacity ratio
	 * (ties: more mappings).  worst_mappings == 0 when there is none. */
	struct ns_addr worst_ip;
	uint16_t worst_port;
	uint16_t worst_zone;
	uint32_t worst_mappings;
	uint32_t worst_capacity;
	/* TCP only: mappings per state, indexed by the kernel's
	 * enum tcp_conntrack (see ns_tcp_state_name()). */
	uint32_t states[NS_TCP_STATES];
};

/* One internal host's use of one (public IP, protocol).  For a locally
 * originated connection the host is the public IP itself (kind LOCAL). */
struct store_host_row {
	struct ns_addr gateway;
	uint8_t proto;
	uint8_t kind;	       /* enum ns_kind: NAT or LOCAL */
	struct ns_addr ip;     /* the internal host */
	uint32_t mappings;     /* write side: 0 removes the row */
	uint32_t ports_in_use; /* distinct public ports this host holds */
};

/* One destination bucket: (public IP, protocol, zone, destination ip:port).
 * Its capacity is the size of the port range new mappings draw from. */
struct store_dest_row {
	struct ns_addr gateway;
	uint8_t proto;
	uint16_t zone;
	struct ns_addr ip;
	uint16_t port;	   /* 0 for ICMP */
	uint32_t mappings; /* write side: 0 removes the row */
	uint32_t capacity;
};

/* A period during which events were lost (socket overrun) and the live
 * figures were not exact, from the last moment they were known exact to
 * the end of the resync that repaired them. */
struct store_gap_row {
	int64_t run_started_ms; /* identifies the run: with seq, the key */
	uint32_t seq;		/* 1, 2, ... within a run */
	int64_t start_ms;	/* figures exact until here */
	int64_t end_ms;		/* repaired at; 0 while still open */
	int64_t events_lost;	/* the kernel's drop count; -1 unknown */
	uint64_t enobufs;	/* ENOBUFS errors folded into this gap */
	uint64_t added;		/* repairs made by the resync */
	uint64_t removed;
	uint64_t changed;
	char reason[32];	/* "enobufs", "dump-error", ... */
};

enum store_state {
	STORE_STATE_STARTING = 0, /* before the first complete dump */
	STORE_STATE_RUNNING,
	STORE_STATE_RESYNCING, /* a gap is open; figures may be off */
	STORE_STATE_STOPPED,
	STORE_STATE_DB_ERROR, /* writes fail: the tables are not current */
	STORE_STATES
};

/* "starting", "running", "resyncing", "stopped", "db-error" (as stored
 * and shown); "unknown" out of range. */
const char *store_state_name(enum store_state state);

/* How the collector follows the table. */
enum store_follow {
	STORE_FOLLOW_EVENTS = 0, /* events only: every mapping reports */
	STORE_FOLLOW_EVENTS_DUMPS, /* events, and re-dumps for silent ones */
	STORE_FOLLOW_DUMPS,	   /* nf_conntrack_events=0: re-dumps only */
	STORE_FOLLOWS
};

/* "events", "events+dumps", "dumps"; "unknown" out of range. */
const char *store_follow_name(enum store_follow follow);

/*
 * The status row: one per database, rewritten every interval.  Every field
 * is declared once, here, and this one list drives the C struct, the
 * status table's columns (checked against schema/ by test_store), the
 * bindings, the read-back, the JSON of /api/v1/status, the Prometheus
 * samples of /metrics and the checks that docs/database.md documents
 * every column.
 *
 * F(name, type, json, metric, help):
 *  name    C member and SQL column.  For type EXPR: an SQL expression
 *          over the columns (?1 is "now" in ms), with no member.
 *  type    U64   counter or count, uint64_t
 *          OPT   int64_t, -1 when unknown (NULL in SQL, null in JSON)
 *          SIGNED int64_t that may be negative, STORE_UNKNOWN when unknown
 *          MS    int64_t time in ms since the epoch, <= 0 for never
 *                (JSON: RFC 3339 text; metric: seconds)
 *          US    int64_t duration in microseconds, -1 unknown (JSON:
 *                milliseconds; metric: seconds)
 *          REAL  double, < 0 when unknown
 *          BOOL  uint8_t
 *          TEXT  char[STORE_TEXT_MAX], "" for none (NULL in SQL)
 *          STATE enum store_state, FOLLOW enum store_follow (uint8_t;
 *                stored and shown by name)
 *          EXPR  derived by SQL for the JSON only
 *  json    "key" or "group.key" in /api/v1/status ("" for none: the
 *          answer's header carries it).  Rows of one group are adjacent.
 *  metric  Prometheus sample "family" or "family{label=\"value\"}", ""
 *          for none.  Families ending in _total are counters, the rest
 *          gauges; the first row of a family gives its help.  Rows of one
 *          family are adjacent.  One family, one unit: the name ends in
 *          it (_seconds, _bytes, _port, ...).  An enumeration is
 *          "family{label=\"a|b|c\"}": one 0/1 sample per name, 1 for the
 *          one whose index is the value.  A histogram is its rows
 *          "family_bucket{le=\"bound\"}" (cumulative counts, bounds
 *          rising), then "family_count" (which is also the +Inf bucket)
 *          and "family_sum".
 *  help    one line: the column's meaning (docs) and the family's help.
 */
#define STORE_UNKNOWN INT64_MIN
#define STORE_TEXT_MAX 128

#define STORE_STATUS_FIELDS(F)                                                \
	/* the run */                                                          \
	F(version, TEXT, "version", "", "natscope version that wrote the row") \
	F(started_ms, MS, "started_at",                                        \
	  "natscope_collector_start_time_seconds",                             \
	  "When this run of the collector started.")                           \
	F((?1 - started_ms) / 1000.0, EXPR, "uptime_seconds", "",              \
	  "seconds since the run started")                                     \
	F(pid, U64, "pid", "", "process id of the run")                        \
	F(interval_s, U64, "interval_seconds",                                 \
	  "natscope_write_interval_seconds",                                   \
	  "How often the collector writes its figures (--interval).")          \
	F(state, STATE, "state", "",                                           \
	  "starting, running, resyncing, stopped or db-error")                 \
	F(follow, FOLLOW, "follow", "",                                        \
	  "events, events+dumps (re-dumps for silent mappings) or dumps "      \
	  "(nf_conntrack_events=0)")                                           \
	F(as_of_ms, MS, "", "",                                                \
	  "when the figures in the live tables were true")                     \
	F(event_buffer_bytes, U64, "event_buffer_bytes",                       \
	  "natscope_event_buffer_bytes",                                       \
	  "Netlink receive buffer the kernel granted for events.")             \
	/* the ledger */                                                       \
	F((mappings_nat + mappings_local), EXPR, "mappings.live", "",          \
	  "nat + local")                                                       \
	F(mappings_nat, U64, "mappings.nat", "natscope_mappings{kind=\"nat\"}", \
	  "Live conntrack entries by kind: nat and local hold a port of a "    \
	  "public IP, other holds none; the kinds sum to the table natscope "  \
	  "tracks (natscope_conntrack_entries when exact).")                   \
	F(mappings_local, U64, "mappings.local",                               \
	  "natscope_mappings{kind=\"local\"}",                                 \
	  "live mappings of connections this host originates")                 \
	F(mappings_other, U64, "mappings.other",                               \
	  "natscope_mappings{kind=\"other\"}",                                 \
	  "live conntrack entries that use no port of this host, as "          \
	  "natscope counts them")                                              \
	F(mappings_silent, U64, "mappings.silent", "natscope_silent_entries",  \
	  "Entries known only from dumps: the kernel sends no events for "     \
	  "them, so natscope re-dumps to follow them.")                        \
	F(gateways, U64, "gateways", "", "rows in gateways")                   \
	F(hosts, U64, "hosts", "", "rows in hosts")                            \
	F(destinations, U64, "destinations", "", "rows in destinations")       \
	/* conntrack events received since the run started */                  \
	F(events_new, U64, "events.new", "natscope_events_total{type=\"new\"}", \
	  "Conntrack events received, by type (dumped: entries read by "      \
	  "table dumps).")                                                     \
	F(events_update, U64, "events.update",                                 \
	  "natscope_events_total{type=\"update\"}", "UPDATE events")           \
	F(events_destroy, U64, "events.destroy",                               \
	  "natscope_events_total{type=\"destroy\"}", "DESTROY events")         \
	F(events_dumped, U64, "events.dumped",                                 \
	  "natscope_events_total{type=\"dumped\"}", "entries read by dumps")   \
	F(events_unknown_destroy, U64, "events.unknown_destroy",               \
	  "natscope_unknown_destroy_total",                                    \
	  "DESTROY events for entries natscope did not know.")                 \
	F(events_malformed, U64, "events.malformed",                           \
	  "natscope_malformed_messages_total",                                 \
	  "Netlink messages the parser rejected.")                             \
	F(events_lost, U64, "events.lost", "natscope_events_lost_total",       \
	  "Events the kernel dropped for natscope.")                           \
	F(events_enobufs, U64, "events.enobufs", "natscope_enobufs_total",     \
	  "ENOBUFS errors on the event socket.")                               \
	/* full re-dumps; the start-up dump is the first */                    \
	F(resync_count, U64, "resync.count", "natscope_resyncs_total",         \
	  "Full table dumps completed, the start-up dump included.")           \
	F(resync_active, BOOL, "resync.active", "natscope_resync_active",      \
	  "1 while a resync is running.")                                      \
	F(resync_last_started_ms, MS, "resync.last_started_at", "",            \
	  "when the last resync started")                                      \
	F(resync_last_done_ms, MS, "resync.last_done_at",                      \
	  "natscope_resync_last_done_timestamp_seconds",                       \
	  "When the last complete resync ended.")                              \
	F(resync_last_duration_us, US, "resync.last_duration_ms",              \
	  "natscope_resync_last_duration_seconds",                             \
	  "Duration of the last complete resync.")                             \
	F(resync_last_entries, U64, "resync.last_entries", "",                 \
	  "entries the last resync read")                                      \
	F(resync_last_added, U64, "resync.last_added", "",                     \
	  "mappings the last resync added")                                    \
	F(resync_last_removed, U64, "resync.last_removed", "",                 \
	  "mappings the last resync removed")                                  \
	F(resync_last_changed, U64, "resync.last_changed", "",                 \
	  "mappings the last resync changed")                                  \
	F(resync_failed, U64, "resync.failed", "natscope_resync_failed_total", \
	  "Dumps that ended in an error (nothing swept; dumped again).")       \
	F(resync_abandoned, U64, "resync.abandoned",                           \
	  "natscope_resync_abandoned_total",                                   \
	  "Dumps abandoned by the watchdog after making no progress.")         \
	/* the self-audit */                                                   \
	F(audit_checks, U64, "audit.checks", "natscope_audit_checks_total",    \
	  "Count audits: tracked entries compared with the kernel's count.")   \
	F(audit_mismatches, U64, "audit.mismatches",                           \
	  "natscope_audit_mismatches_total",                                   \
	  "Disagreements with the kernel that outlasted their tolerance.")     \
	F(audit_last_ms, MS, "audit.last_at", "", "when the last count audit ran") \
	F(audit_kernel_entries, OPT, "audit.kernel_entries", "",               \
	  "the kernel's entry count at the last count audit")                  \
	F(audit_tracked_entries, U64, "audit.tracked_entries", "",             \
	  "nat + local + other at the last count audit")                       \
	F(audit_difference, SIGNED, "audit.difference",                        \
	  "natscope_audit_difference",                                         \
	  "Kernel entries minus tracked entries at the last count audit.")     \
	F(audit_tolerance, U64, "audit.tolerance", "",                         \
	  "largest difference the last count audit could explain by changes "  \
	  "in flight")                                                         \
	F(audit_sampled, U64, "audit.sampled", "natscope_audit_sampled_total", \
	  "Tracked mappings verified one by one against the kernel.")          \
	F(audit_sample_ghosts, U64, "audit.sample_ghosts",                     \
	  "natscope_audit_ghosts_total",                                       \
	  "Sampled mappings the kernel no longer had (and no event said so).") \
	F(audit_dump_ghosts, U64, "audit.dump_ghosts",                         \
	  "natscope_audit_dump_ghosts_total",                                  \
	  "Tracked entries a routine re-dump found gone with no event or "     \
	  "loss to explain it.")                                              \
	F(audit_sample_changed, U64, "audit.sample_changed", "",               \
	  "sampled mappings whose host or state differed in the kernel")      \
	F(audit_sample_silent_gone, U64, "audit.sample_silent_gone", "",       \
	  "silent mappings found gone by sampling, and removed")               \
	F(audit_cycle_s, REAL, "audit.cycle_seconds",                          \
	  "natscope_audit_cycle_seconds",                                      \
	  "Seconds between routine re-dumps, each of which checks every "      \
	  "tracked entry against the kernel's table.")                        \
	/* writes of this database by this run (filled by the store) */        \
	F(writes_ok, U64, "writes.ok", "", "successful writes")                \
	F(writes_failed, U64, "writes.failed", "natscope_writes_failed_total", \
	  "Database writes that failed.")                                      \
	F(writes_last_ms, MS, "writes.last_at",                                \
	  "natscope_last_write_timestamp_seconds",                             \
	  "When the collector last wrote to the database.")                    \
	F(writes_last_error, TEXT, "writes.last_error", "",                    \
	  "the last failure's message")                                        \
	/* the kernel's conntrack statistics, summed over CPUs */              \
	F(conntrack_count, OPT, "conntrack.count", "natscope_conntrack_entries", \
	  "Entries in the kernel's conntrack table.")                          \
	F(conntrack_max, OPT, "conntrack.max",                                 \
	  "natscope_conntrack_entries_limit",                                  \
	  "Size limit of the kernel's conntrack table.")                       \
	F(conntrack_insert_failed, OPT, "conntrack.insert_failed",             \
	  "natscope_conntrack_insert_failed_total",                            \
	  "Conntrack insert_failed, summed over CPUs.")                        \
	F(conntrack_drop, OPT, "conntrack.drop", "natscope_conntrack_drop_total", \
	  "Conntrack drop, summed over CPUs.")                                 \
	F(conntrack_early_drop, OPT, "conntrack.early_drop",                   \
	  "natscope_conntrack_early_drop_total",                               \
	  "Conntrack early_drop, summed over CPUs.")                           \
	F(conntrack_clash_resolve, OPT, "conntrack.clash_resolve",             \
	  "natscope_conntrack_clash_resolve_total",                            \
	  "Conntrack clash_resolve, summed over CPUs.")                        \
	/* sysctls */                                                          \
	F(json(CASE WHEN sysctl_port_range_lo IS NOT NULL AND                  \
	       sysctl_port_range_hi IS NOT NULL THEN                           \
	       json_array(sysctl_port_range_lo, sysctl_port_range_hi) END),     \
	  EXPR, "sysctl.ip_local_port_range", "", "[lo, hi]")                  \
	F(sysctl_port_range_lo, OPT, "",                                       \
	  "natscope_sysctl_ip_local_port_range_low_port",                      \
	  "net.ipv4.ip_local_port_range, low end: first port of local "        \
	  "connections.")                                                      \
	F(sysctl_port_range_hi, OPT, "",                                       \
	  "natscope_sysctl_ip_local_port_range_high_port",                     \
	  "net.ipv4.ip_local_port_range, high end: last port of local "        \
	  "connections.")                                                      \
	F(sysctl_tcp_tw_reuse, OPT, "sysctl.tcp_tw_reuse",                     \
	  "natscope_sysctl_tcp_tw_reuse{mode=\"off|on|loopback\"}",            \
	  "net.ipv4.tcp_tw_reuse: 1 for its mode (0 off, 1 on, 2 loopback "    \
	  "only), 0 for the others.")                                          \
	F(sysctl_tcp_fin_timeout, OPT, "sysctl.tcp_fin_timeout",               \
	  "natscope_sysctl_tcp_fin_timeout_seconds",                           \
	  "net.ipv4.tcp_fin_timeout.")                                         \
	F(sysctl_tcp_timeout_time_wait, OPT,                                   \
	  "sysctl.nf_conntrack_tcp_timeout_time_wait",                         \
	  "natscope_sysctl_nf_conntrack_tcp_timeout_time_wait_seconds",        \
	  "net.netfilter.nf_conntrack_tcp_timeout_time_wait: how long a "      \
	  "TIME_WAIT entry holds its port.")                                   \
	F(conntrack_max, EXPR, "sysctl.nf_conntrack_max", "",                  \
	  "net.netfilter.nf_conntrack_max")                                    \
	F(sysctl_conntrack_events, OPT, "sysctl.nf_conntrack_events",          \
	  "natscope_sysctl_nf_conntrack_events{mode=\"off|on|auto\"}",         \
	  "net.netfilter.nf_conntrack_events: 1 for its mode (0 off, 1 on, "   \
	  "2 auto), 0 for the others.")                                        \
	/* the collector's process (the serving process's own figures are   \
	 * process_*, read by the web at each scrape) */                       \
	F(process_rss_bytes, U64, "process.rss_bytes",                         \
	  "natscope_collector_resident_memory_bytes",                          \
	  "Resident memory of the collector process.")                         \
	F(process_cpu_seconds, REAL, "process.cpu_seconds",                    \
	  "natscope_collector_cpu_seconds_total",                              \
	  "CPU time used by the collector process.")                          \
	/* who wrote it */                                                     \
	F(note, TEXT, "note", "",                                              \
	  "what wrote the row when it was no live run (natscope import)")      \
	/* how long complete resyncs took, as a histogram (schema 007):       \
	 * cumulative counts per bound, set by store_resync_hist_status() */   \
	F(resync_le_10ms, U64, "resync_histogram.le_0.01",                     \
	  "natscope_resync_duration_seconds_bucket{le=\"0.01\"}",              \
	  "Complete resyncs (the start-up dump included) by how long they "    \
	  "took.")                                                             \
	F(resync_le_50ms, U64, "resync_histogram.le_0.05",                     \
	  "natscope_resync_duration_seconds_bucket{le=\"0.05\"}",              \
	  "complete resyncs that took at most 0.05 s")                         \
	F(resync_le_100ms, U64, "resync_histogram.le_0.1",                     \
	  "natscope_resync_duration_seconds_bucket{le=\"0.1\"}",               \
	  "complete resyncs that took at most 0.1 s")                          \
	F(resync_le_250ms, U64, "resync_histogram.le_0.25",                    \
	  "natscope_resync_duration_seconds_bucket{le=\"0.25\"}",              \
	  "complete resyncs that took at most 0.25 s")                         \
	F(resync_le_500ms, U64, "resync_histogram.le_0.5",                     \
	  "natscope_resync_duration_seconds_bucket{le=\"0.5\"}",               \
	  "complete resyncs that took at most 0.5 s")                          \
	F(resync_le_1s, U64, "resync_histogram.le_1",                          \
	  "natscope_resync_duration_seconds_bucket{le=\"1\"}",                 \
	  "complete resyncs that took at most 1 s")                            \
	F(resync_le_2500ms, U64, "resync_histogram.le_2.5",                    \
	  "natscope_resync_duration_seconds_bucket{le=\"2.5\"}",               \
	  "complete resyncs that took at most 2.5 s")                          \
	F(resync_le_5s, U64, "resync_histogram.le_5",                          \
	  "natscope_resync_duration_seconds_bucket{le=\"5\"}",                 \
	  "complete resyncs that took at most 5 s")                            \
	F(resync_le_10s, U64, "resync_histogram.le_10",                        \
	  "natscope_resync_duration_seconds_bucket{le=\"10\"}",                \
	  "complete resyncs that took at most 10 s")                           \
	F(resync_le_30s, U64, "resync_histogram.le_30",                        \
	  "natscope_resync_duration_seconds_bucket{le=\"30\"}",                \
	  "complete resyncs that took at most 30 s")                           \
	F(resync_le_60s, U64, "resync_histogram.le_60",                        \
	  "natscope_resync_duration_seconds_bucket{le=\"60\"}",                \
	  "complete resyncs that took at most 60 s")                           \
	F(resync_le_120s, U64, "resync_histogram.le_120",                      \
	  "natscope_resync_duration_seconds_bucket{le=\"120\"}",               \
	  "complete resyncs that took at most 120 s")                          \
	F(resync_duration_count, U64, "resync_histogram.count",                \
	  "natscope_resync_duration_seconds_count",                            \
	  "complete resyncs timed (the +Inf bucket)")                          \
	F(resync_duration_sum_us, US, "resync_histogram.sum_ms",               \
	  "natscope_resync_duration_seconds_sum",                              \
	  "their durations added up")

#define STORE_CTYPE_U64(n) uint64_t n;
#define STORE_CTYPE_OPT(n) int64_t n;
#define STORE_CTYPE_SIGNED(n) int64_t n;
#define STORE_CTYPE_MS(n) int64_t n;
#define STORE_CTYPE_US(n) int64_t n;
#define STORE_CTYPE_REAL(n) double n;
#define STORE_CTYPE_BOOL(n) uint8_t n;
#define STORE_CTYPE_TEXT(n) char n[STORE_TEXT_MAX];
#define STORE_CTYPE_STATE(n) uint8_t n;
#define STORE_CTYPE_FOLLOW(n) uint8_t n;
#define STORE_CTYPE_EXPR(n)
#define STORE_STATUS_MEMBER(name, type, json, metric, help)                  \
	STORE_CTYPE_##type(name)

/* See STORE_STATUS_FIELDS.  store_status_init() sets the unknowns. */
struct store_status {
	STORE_STATUS_FIELDS(STORE_STATUS_MEMBER)
};

/* Zeroes *s and marks every field whose type has an "unknown" value as
 * unknown (-1, STORE_UNKNOWN), version and pid of this process. */
void store_status_init(struct store_status *s);

/* One row of STORE_STATUS_FIELDS, for code that walks them all. */
enum store_field_type {
	STORE_F_U64, STORE_F_OPT, STORE_F_SIGNED, STORE_F_MS, STORE_F_US,
	STORE_F_REAL, STORE_F_BOOL, STORE_F_TEXT, STORE_F_STATE,
	STORE_F_FOLLOW, STORE_F_EXPR
};

struct store_field {
	const char *name; /* column, or the SQL expression of an EXPR */
	enum store_field_type type;
	size_t offset;	    /* in struct store_status; 0 for EXPR */
	const char *json;   /* "" for none */
	const char *metric; /* "" for none */
	const char *help;
};

extern const struct store_field store_status_fields[];
extern const size_t store_status_nfields;

/* The value of a numeric field of s as a double (times and durations in
 * seconds), for /metrics.  Returns 0 and *v, or -1 when the field is
 * unknown (it has no sample then) or not numeric. */
int store_field_value(const struct store_field *f, const struct store_status *s,
		      double *v);

/* The resync-duration histogram, kept by the collector between status
 * rows: cumulative counts for the bounds of the status rows
 * natscope_resync_duration_seconds_bucket{le=...}, in their order (the
 * field table is the one place that names the bounds). */
#define STORE_RESYNC_BUCKETS 12
#define STORE_RESYNC_FAMILY "natscope_resync_duration_seconds"

struct store_resync_hist {
	uint64_t le[STORE_RESYNC_BUCKETS]; /* took at most the i-th bound */
	uint64_t count;	 /* every one (the +Inf bucket) */
	int64_t sum_us;	 /* their durations added up */
};

/* Counts one complete resync that took us microseconds (< 0 counts as 0).
 * Never fails. */
void store_resync_hist_observe(struct store_resync_hist *h, int64_t us);

/* Copies h into s's resync_le_*, resync_duration_count and
 * resync_duration_sum_us.  Never fails. */
void store_resync_hist_status(struct store_status *s,
			      const struct store_resync_hist *h);

/* ---- history: what one interval saw (schema/004_history.sql) ---- */

/* A gateway over one period: its figures at the end (worst_* name the
 * bucket whose peak came closest to full, worst_mappings is that peak) and
 * the highest values reached at any moment within it. */
struct store_hist_gateway {
	struct store_gateway_row end;
	uint32_t ports_peak, mappings_peak, time_wait_peak;
	uint32_t new_mappings; /* created (by events) within the period */
};

/* A host of one gateway over one period (end.mappings 0: it ended). */
struct store_hist_host {
	struct store_host_row end;
	uint32_t mappings_peak, new_mappings;
};

/* A destination bucket over one period. */
struct store_hist_dest {
	struct store_dest_row end;
	uint32_t mappings_peak, new_mappings;
};

/* One interval of history: the period from the previous snapshot to this
 * one.  start_ms == 0: the batch carries none. */
struct store_history {
	int64_t start_ms, end_ms;
	uint8_t exact; /* the figures were exact all along (no gap, running) */
	uint8_t state; /* the worst enum store_state within the period */
	struct store_hist_gateway *gateways;
	size_t n_gateways, cap_gateways;
	struct store_hist_host *hosts;
	size_t n_hosts, cap_hosts;
	struct store_hist_dest *dests;
	size_t n_dests, cap_dests;
};

/* Resolutions of history: 0 raw (one interval), 1 minute, 2 hour. */
#define STORE_TIERS 3

struct store_history_config {
	int64_t keep_ms[STORE_TIERS]; /* retention of each tier */
	int64_t keep_top_minute_ms;   /* of hist_host and hist_dest's minutes
					 (the bulk of the file), if shorter */
	uint64_t max_bytes; /* the database's size limit: oldest go first */
	unsigned top;	    /* hosts and buckets kept per gateway and period,
			       by peak and again by new mappings */
	double warn, critical; /* incident thresholds, of capacity (0-1) */
};

/* The defaults: raw a day, minutes a week (hosts' and buckets' a day),
 * hours 90 days, 1 GiB, top 10,
 * incidents at 70% (warn) and 90% (critical). */
void store_history_defaults(struct store_history_config *cfg);

/* Sets a READ_WRITE store's history retention (before its first write;
 * the defaults otherwise).  Returns 0, or -1 with EINVAL (top 0, a limit
 * under 1 MiB, a negative age, thresholds not 0 < warn <= critical <= 1). */
int store_history_configure(struct store *st,
			    const struct store_history_config *cfg);
/* ---- the mapping log (issue 7; store/maplog.c) ----
 *
 * Every NAT and local mapping's start and end, for the reverse lookup
 * "who held public ip:port at that time".  The collector appends one
 * record per start and per end (struct store_maplog_rec) and hands them
 * over in the interval's batch; the writer pairs each end with its start
 * and keeps, in compressed blocks (zstd over delta/varint columns, one
 * block per public IP, protocol and public-port range):
 *  - "open" blocks: the start records of mappings still open at the last
 *    write, rewritten when a member ends (so they hold exactly the open
 *    mappings);
 *  - "ended" blocks: complete records (start, end), never rewritten,
 *    trimmed by age and by size (store_maplog_configure()).
 * A TCP mapping also carries its state: the state at its start, the
 * last state change the collector saw with its time (one record per
 * change), and the state it held longest between two changes with that
 * interval; other changes are not kept, and the log says so:
 * store_maplog_state_at().  An open mapping's state change rewrites its
 * open block like an end does.
 * See schema/006_maplog.sql. */

/* Flags of a record (store_maplog_rec.flags and what the log keeps). */
enum store_maplog_flag {
	STORE_MAPLOG_END = 1,	/* an end (else a start) */
	/* start: first seen by a table dump or an UPDATE (its NEW was
	 * before the run, or lost): ms is when it was seen, not its start */
	STORE_MAPLOG_START_UNKNOWN = 2,
	/* end: removed by a resync's sweep or found gone by the sampler (its
	 * DESTROY was lost or never sent): ms is when that was noticed; a gap
	 * in the gaps table covers the time it really ended */
	STORE_MAPLOG_END_UNCERTAIN = 4,
	/* end (set by the store): natscope stopped while it was open; ms is
	 * the last write of that run */
	STORE_MAPLOG_END_STOPPED = 8,
	STORE_MAPLOG_LOCAL = 16, /* start: kind LOCAL (else NAT) */
	/* a TCP state change (neither a start nor an end): the mapping is
	 * in state since ms */
	STORE_MAPLOG_STATE = 32,
	/* state record: a table dump or a check (GET) found the mapping in
	 * state at ms, and no event said when it changed: it did at or
	 * before ms.  Kept on the entry for its last state. */
	STORE_MAPLOG_STATE_SEEN = 64,
	/* entry (set by the store): more than one state change was logged,
	 * so the states between the start's and the last (but the longest
	 * held) are not kept */
	STORE_MAPLOG_STATE_BETWEEN = 128,
};

/* One start, end or state change as the collector saw it.  The key
 * (family, proto, zone, public ip:port, destination ip:port) pairs an
 * end or a state change with its start; host_port may be 0 in an end or
 * a state change (the start's is kept).  state: the TCP state (kernel
 * numbering, see ns_tcp_state_name()) at a start or from a state
 * change, NS_TCP_STATE_UNKNOWN when not known or not TCP. */
struct store_maplog_rec {
	int64_t ms;
	uint8_t family, proto, flags, state;
	uint16_t zone, public_port, host_port, dest_port;
	uint8_t public_ip[16], host_ip[16], dest_ip[16];
};

/* Batches carry records packed: 32 bytes for IPv4, 68 for IPv6, at most
 * STORE_MAPLOG_PACKED_MAX.  store_maplog_pack() writes r into out and
 * returns its length (0 for a family other than AF_INET/AF_INET6);
 * store_maplog_unpack() reads one from p (len bytes available) into *r
 * and returns its length, or 0 when p does not hold a whole record. */
#define STORE_MAPLOG_PACKED_MAX 68
size_t store_maplog_pack(const struct store_maplog_rec *r, uint8_t *out);
size_t store_maplog_unpack(const uint8_t *p, size_t len,
			   struct store_maplog_rec *r);

/* Everything one interval changed.  Rows are deltas unless full is set, in
 * which case they replace every live row.  gaps are upserted by key.
 * maplog records are never deltas of anything: each is written once (a
 * batch that failed keeps its records in the store for the next write). */
struct store_batch {
	int full;
	struct store_gateway_row *gateways;
	size_t n_gateways, cap_gateways;
	struct store_host_row *hosts;
	size_t n_hosts, cap_hosts;
	struct store_dest_row *dests;
	size_t n_dests, cap_dests;
	struct store_gap_row *gaps;
	size_t n_gaps, cap_gaps;
	uint8_t *maplog; /* packed records, in the order they happened */
	size_t maplog_len, cap_maplog; /* bytes */
	size_t n_maplog;	       /* records */
	/* records the collector could not keep (its buffer was full): how
	 * many, and the period they fall in (0 when none) */
	uint64_t maplog_lost;
	int64_t maplog_lost_from_ms, maplog_lost_to_ms;
	struct store_status status;
	struct store_history hist;
};

/* Batch helpers.  init zeroes; clear empties the row arrays and keeps
 * their memory; free releases it.  The add functions return a zeroed row
 * that stays valid until the next add or clear, or NULL with ENOMEM. */
void store_batch_init(struct store_batch *b);
void store_batch_clear(struct store_batch *b);
void store_batch_free(struct store_batch *b);
struct store_gateway_row *store_batch_add_gateway(struct store_batch *b);
struct store_host_row *store_batch_add_host(struct store_batch *b);
struct store_dest_row *store_batch_add_dest(struct store_batch *b);
struct store_gap_row *store_batch_add_gap(struct store_batch *b);
struct store_hist_gateway *store_batch_add_hist_gateway(struct store_batch *b);
struct store_hist_host *store_batch_add_hist_host(struct store_batch *b);
struct store_hist_dest *store_batch_add_hist_dest(struct store_batch *b);

/* Starts a run: empties the live tables (they described a previous run)
 * and writes status with state STARTING, in one transaction. */
int store_begin_run(struct store *st, const struct store_status *status);

/* Applies a batch in one transaction: all of it or, on error, none of it.
 * Also fills the writes_* fields of the stored status row, trims the gap
 * log to its retention (newest 1000 gaps, 30 days) and, every so often,
 * checkpoints the WAL.
 *
 * A delta batch is refused (ESTALE) when another connection committed to
 * the database since this one last wrote (PRAGMA data_version): someone
 * changed the tables (the sqlite3 tool, an older natscope), so a delta
 * would build on rows natscope did not write.
 *
 * On any failure the write is counted (writes_failed) and, in a
 * transaction of its own, the status row alone is marked: state db-error,
 * writes_failed and writes_last_error (its other fields, as_of included,
 * still describe the last write that landed).  So readers see that the
 * tables are not current, and every answer's coverage is not complete,
 * until a write succeeds again.  The caller must send a full batch next. */
int store_write(struct store *st, const struct store_batch *b);

/* Sets the mapping log's retention: ended mappings are kept keep_ms
 * (default 7 days) and the log's blocks at most max_bytes (default 256
 * MiB; the oldest ended blocks go first; open mappings are never
 * trimmed).  Call before the writer thread starts.  Returns 0, or -1 with
 * EINVAL for a value <= 0. */
int store_maplog_configure(struct store *st, int64_t keep_ms,
			   uint64_t max_bytes);

/* The log's figures, for tests and the benchmark: blocks, their payload
 * bytes, records in ended and in open blocks.  Returns 0, or -1 with
 * errno. */
struct store_maplog_stats {
	uint64_t blocks, bytes, ended, open;
	int64_t trimmed_ms; /* mappings that ended before this may be gone */
};
int store_maplog_stats(struct store *st, struct store_maplog_stats *out);

/* One mapping as the log keeps it (family, proto and public ip are its
 * block's).  end_ms 0: still open.  TCP state (else
 * NS_TCP_STATE_UNKNOWN, as in blocks written before the log kept
 * states): state_start at start_ms; state_last since state_ms (0: no
 * change was logged, state_last is then NS_TCP_STATE_UNKNOWN); and
 * state_long held exactly from long_ms until long_end (exclusive): the
 * longest interval between two changes (or the start and a change) that
 * events bounded, NS_TCP_STATE_UNKNOWN when none. */
struct store_maplog_entry {
	int64_t start_ms, end_ms;
	int64_t state_ms, long_ms, long_end;
	uint8_t flags; /* STORE_MAPLOG_START_UNKNOWN, _END_UNCERTAIN,
			  _END_STOPPED, _LOCAL, _STATE_SEEN, _STATE_BETWEEN */
	uint8_t state_start, state_last, state_long;
	uint16_t zone, public_port, host_port, dest_port;
	uint8_t host_ip[16], dest_ip[16];
};

/* What the log says of an entry's TCP state at a moment t (start_ms <= t
 * <= its end), from store_maplog_state_at():
 *  - state: at t, or NS_TCP_STATE_UNKNOWN when the log cannot say (no
 *    state kept, or t falls after the start's millisecond, outside the
 *    longest held state's interval and before the last change, when
 *    other changes came between or the last one was only seen);
 *  - since_ms: when that state began, as far as the log knows (0 when
 *    state is unknown);
 *  - exact: 1 when both are exact; 0 when the state began at or before
 *    since_ms (first seen by a dump, or found changed by a dump or a
 *    check) or is unknown;
 *  - why: enum store_maplog_state_why, what a reader must be told.
 * Gaps and lost records are not known to the entry: the caller adds
 * them (a gap over [since_ms, t] makes the state not exact). */
enum store_maplog_state_why {
	STORE_STATE_KNOWN = 0,	    /* exact */
	STORE_STATE_NOT_TCP,	    /* only TCP mappings have a state */
	STORE_STATE_NOT_KEPT,	    /* the log has no state for it */
	STORE_STATE_START_SEEN,	    /* first seen in it by a dump at since */
	STORE_STATE_CHANGE_SEEN,    /* found in it at since, changed before */
	STORE_STATE_BETWEEN,	    /* t is between the start and the last
				       change, and states between are not
				       kept (or the change was only seen) */
};
struct store_maplog_state {
	uint8_t state;
	int exact;
	int64_t since_ms;
	enum store_maplog_state_why why;
};
void store_maplog_state_at(const struct store_maplog_entry *e, uint8_t proto,
			   int64_t t, struct store_maplog_state *out);

/* The block codec (exposed for tests).  Encodes n entries (n >= 1, sorted
 * or not; alen 4 or 16 bytes per address; ended: every end_ms is set) into
 * a malloc'd zstd frame *out of *len bytes.  Returns 0, or -1 with ENOMEM
 * or EINVAL (logged). */
int store_maplog_encode(const struct store_maplog_entry *e, size_t n,
			unsigned alen, int ended, void **out, size_t *len);

/* Decodes a block into a malloc'd array *e of *n entries (caller frees).
 * Returns 0, or -1 with EILSEQ for bytes that are not a valid block, or
 * ENOMEM (logged). */
int store_maplog_decode(const void *data, size_t len,
			struct store_maplog_entry **e, size_t *n);

/* ---- the writer thread ---- */

struct store_writer;

/* Starts a thread that owns st (a READ_WRITE store) until
 * store_writer_stop().  NULL with errno on failure. */
struct store_writer *store_writer_start(struct store *st);

/* Sets the incident thresholds (of capacity, 0 < warn <= critical <= 1)
 * that the writer uses from its next write on: SIGHUP's reload.  Safe from
 * any thread. */
void store_writer_set_thresholds(struct store_writer *w, double warn,
				 double critical);

/* Has the thread begin the run (store_begin_run() with status) and waits
 * for it.  Call once, before the first store_writer_acquire().  Returns 0,
 * or -1 with errno (nothing was written then). */
int store_writer_begin(struct store_writer *w, const struct store_status *status);

/* Returns the batch to fill for the next write, cleared, or NULL if the
 * previous batch is still being written (try again next interval).
 * *need_full is set to 1 if that batch must be full because a write failed
 * (or none happened yet), else 0.  Collector thread only. */
struct store_batch *store_writer_acquire(struct store_writer *w, int *need_full);

/* Hands the batch from store_writer_acquire() to the thread. */
void store_writer_submit(struct store_writer *w, struct store_batch *b);

/* Waits until no batch is in flight.  Returns 0 if the last write
 * succeeded, else -1 with its errno: after the collector's final write,
 * this says whether the database shows the end of the run. */
int store_writer_wait(struct store_writer *w);

/* Waits for the batch in flight, stops and joins the thread.  The store
 * passed to start is not closed.  NULL is allowed. */
void store_writer_stop(struct store_writer *w);

/* ---- read side (the web service) ---- */

/* Each json function sets *out to a malloc'd NUL-terminated JSON document
 * built by SQLite's JSON functions (the caller frees it) and returns 0, or
 * returns -1 with errno: ENOENT when the asked-for gateway has no live
 * row, EBUSY when the database stays locked, EIO/EILSEQ otherwise.
 * now_ms becomes "generated_at".  Every answer carries "as_of" (the
 * snapshot time) and "coverage" (gaps overlapping the last interval).
 * store_json_status fails with ENOENT before any run wrote a status row.
 * The shapes are README.md's "HTTP API". */
int store_json_gateways(struct store *st, int64_t now_ms, char **out);
int store_json_hosts(struct store *st, const struct ns_addr *gateway,
		     uint8_t proto, unsigned limit, int64_t now_ms, char **out);
int store_json_destinations(struct store *st, const struct ns_addr *gateway,
			    uint8_t proto, unsigned limit, int64_t now_ms,
			    char **out);
int store_json_status(struct store *st, int64_t now_ms, char **out);

/* The reverse lookup: who held public_ip:port (proto) at at_ms - one
 * mapping per destination at most, possibly several.  *out (malloc'd,
 * caller frees) is built by SQLite's JSON functions:
 *   {"generated_at", "public_ip", "proto", "port", "at",
 *    "uncertain": bool, "reasons": [text...],
 *    "holders": [{"kind": "nat"|"local",
 *                 "internal": {"ip", "port"},
 *                 "destination": {"ip", "port"}, "zone",
 *                 "start", "start_known": bool, "end" (null while open),
 *                 "state", "state_since", "state_exact": bool,
 *                 "state_note",
 *                 "uncertain": bool, "reasons": [text...]}]}
 * "state" is a TCP holder's state at at_ms (store_maplog_state_at()),
 * null when not known then (or not TCP); "state_since" when it began as
 * far as the log knows; "state_exact" true only when both are exact and
 * no gap or lost records overlap [state_since, at_ms] and at_ms is not
 * after the log's last write; "state_note" (null when exact) says why
 * not.
 * A holder is uncertain when its start is unknown (first seen by a dump),
 * its end was not reported (removed by a resync, or natscope stopped), or
 * a gap covers its start, its end or at_ms.  The answer is uncertain when
 * a holder is, or when a gap covers at_ms, the log was not being written
 * then (natscope not running, or at_ms is after its last write), records
 * of that time were lost, or retention has removed mappings that ended
 * at or after at_ms ("reasons" says which).  A holder is held at its start and at its end
 * millisecond (both inclusive).  now_ms becomes "generated_at".  Returns
 * 0, or -1 with errno: EINVAL (bad address or proto), EBUSY, EIO, EILSEQ
 * (a corrupt block). */
int store_json_lookup(struct store *st, const struct ns_addr *public_ip,
		      uint8_t proto, uint16_t port, int64_t at_ms,
		      int64_t now_ms, char **out);

/* at_ms of store_json_ports() for the live map. */
#define STORE_PORTS_LIVE INT64_MIN

/* One public IP's port occupancy (proto) from the mapping log, for the
 * port map (store/portmap.c): live (at_ms STORE_PORTS_LIVE: the open
 * blocks, exactly the mappings open at the log's last write, which is
 * the answer's "at" and "as_of") or at at_ms (every mapping with
 * start <= at_ms <= end, ends inclusive).  *out (malloc'd, caller frees),
 * built by SQLite's JSON functions but for "runs" (numbers only, printed
 * by portmap.c):
 *   {"generated_at", "public_ip", "proto", "live": bool, "at", "as_of",
 *    "age_seconds" and "state" (live: now - as_of and the collector's
 *    state; null at at_ms),
 *    "uncertain": bool, "reasons": [text...],
 *    "coverage": {"complete": !uncertain, "gaps": [gaps over "at"]},
 *    "log": {"from", "to"} (what the log holds: its first run's start,
 *            or after what retention trimmed; its last write),
 *    "port_space": 65535, "ports_in_use", "mappings", "shared_ports"
 *    (ports held toward more than one destination),
 *    "multi_host_ports" (ports held by more than one host),
 *    "start_unknown" (mappings first seen by a dump),
 *    "tcp_states" (TCP: the state names, kernel order), "states" (TCP:
 *    {name: mappings} in each state at the moment), "state_unknown"
 *    (TCP: mappings whose state the log does not know then); null for
 *    other protocols,
 *    "hosts": [{"ip", "kind", "ports", "mappings"}] (most ports first),
 *    "destinations": [{"ip", "port", "zone", "mappings", "capacity",
 *                      "range": [lo, hi]}] (most mappings first),
 *    "runs": [[first_port, count, host_index, destination_index]...]}
 *    (TCP: [..., state], state an index into "tcp_states" or null)
 * A run is consecutive public ports held by one host toward one bucket
 * (TCP: in one state);
 * every (port, host, bucket) held is in exactly one run, so a port held
 * toward several destinations is in several runs.  Runs are sorted by
 * first port, then destination and host index.  The answer is uncertain
 * (reasons say why) when a gap covers the moment, the log was not being
 * written then or its run's start-up dump had not ended, (live) natscope
 * is stopped, starting or failing to write, or its last write is older
 * than two intervals, at_ms is after the last write, retention trimmed
 * mappings that ended at or after it, records of that time were lost, or
 * a mapping shown ended unreported and may have ended before it.
 * now_ms becomes "generated_at".  Returns 0, or -1 with errno: ENOENT
 * (the log never had a write), EINVAL (bad address, proto or at_ms),
 * ENOMEM, EBUSY, EIO, EILSEQ (a corrupt block), E2BIG (16M hosts or
 * buckets on one IP).  Thread: the store's. */
int store_json_ports(struct store *st, const struct ns_addr *public_ip,
		     uint8_t proto, int64_t at_ms, int64_t now_ms, char **out);

/* {"error": msg} with msg escaped by SQLite.  Never fails: falls back to a
 * constant body if SQLite cannot run.  Caller frees *out. */
void store_json_error(struct store *st, const char *msg, char **out);

/* Opens a read transaction: every read until store_read_end() sees the
 * same snapshot, for an answer built from several reads (/metrics).
 * Returns 0, or -1 with errno. */
int store_read_begin(struct store *st);

/* Ends the read transaction of store_read_begin().  Safe to call after a
 * failed read. */
void store_read_end(struct store *st);

/* Reads the status row back.  ENOENT if no run has written one yet. */
int store_read_status(struct store *st, struct store_status *out);

/* Reads every gateway row into a malloc'd array (caller frees). */
int store_read_gateways(struct store *st, struct store_gateway_row **rows,
			size_t *n);

/* Reads the k hosts with most mappings of one gateway (caller frees). */
int store_read_top_hosts(struct store *st, const struct ns_addr *gateway,
			 uint8_t proto, unsigned k,
			 struct store_host_row **rows, size_t *n);

/* The gateways (public IP, protocol) that had a mapping in a raw period of
 * history ending at or after since_ms but have no live row: those that
 * emptied lately, which /metrics reports at 0 for a while instead of
 * dropping them.  Only periods that began at most ten intervals (a
 * minute at least) before since_ms are read: the scan stays short.  A malloc'd array (caller frees) of rows with only ip
 * and proto set, ordered as store_read_gateways'; 0 rows when history has
 * none.  Returns 0, or -1 with errno (EBUSY, EIO, ENOMEM). */
int store_read_gone_gateways(struct store *st, int64_t since_ms,
			     struct store_gateway_row **rows, size_t *n);

/* What every answer's "coverage" says, as numbers. */
struct store_coverage {
	int complete;	   /* the figures are exact: "coverage.complete" */
	int gap_open;	   /* a gap of this run is still open */
	uint64_t gaps_run; /* gaps this run opened (its highest seq) */
};

/* Fills *c from the status row and the gap log (the rule of the answers'
 * coverage: state neither starting nor db-error, and no gap open or
 * overlapping the last interval).  Returns 0, or -1 with errno: ENOENT
 * before any status row, EBUSY, EIO. */
int store_read_coverage(struct store *st, struct store_coverage *c);

/* ---- history (schema/004_history.sql), read by the web service ---- */

/* The three resolutions history is kept at (hist_*.tier). */
enum store_tier {
	STORE_TIER_AUTO = -1, /* store_json_series(): the one that fits */
	STORE_TIER_RAW = 0,   /* one period per collector interval */
	STORE_TIER_MINUTE = 1,
	STORE_TIER_HOUR = 2,
};

/* Points a series may have when its resolution is forced. */
#define STORE_SERIES_MAX_POINTS 3000
/* Points the automatic choice aims at (at most). */
#define STORE_SERIES_FIT_POINTS 1000

/* What history holds, for an answer that found nothing at a moment. */
struct store_hist_range {
	int64_t first_ms;  /* start of the oldest period; -1: no history */
	int64_t end_ms;	   /* end of the newest period */
	int64_t before_ms; /* end of the newest period ending <= at, or -1 */
	int64_t after_ms;  /* start of the oldest period starting > at, or -1 */
};

/* Fills *r for the moment at_ms.  Returns 0, or -1 with errno. */
int store_history_range(struct store *st, int64_t at_ms,
			struct store_hist_range *r);

/* The state at at_ms from history, in the shapes of store_json_gateways,
 * _hosts and _destinations, answered from the finest tier with a period
 * holding at_ms (ts_ms <= at < end; a raw period ends at ts_ms + span_ms,
 * a minute or an hour at its end); for hosts and destinations the finest
 * such period that has rows of them (the writer keeps them per minute and
 * hour), else the finest.  Each answer carries "at", "as_of" (the
 * period's end), "period", "resolution", "resolution_seconds", "exact"
 * (the period's flag, and for hosts/destinations the gateway row's too)
 * and "coverage" with the gaps overlapping the period; hosts and
 * destinations carry "recorded": history keeps each period's top
 * consumers only.  Errors as the json functions above, and ERANGE when no
 * period holds at_ms (store_history_range() says what exists); for
 * hosts/destinations ENOENT when the gateway had no mapping in it. */
int store_json_gateways_at(struct store *st, int64_t at_ms, int64_t now_ms,
			   char **out);
/* Every gateway over [from_ms, to_ms) from history, at the finest tier
 * with at most 100 periods there that reaches back as far (else the
 * coarsest that has periods there; its edges a minute or an hour wide):
 * per gateway
 * its peaks (ports_peak and when, mappings_peak, hosts_max,
 * destinations_max, time_wait_peak), ports_avg, new mappings and their
 * rate, the bucket that came closest to full (with when), the periods
 * and seconds observed and whether all were exact; the answer's
 * "coverage" lists gaps, unobserved stretches (between periods; before
 * the first when it starts after from_ms; after the last when it ends
 * before a to_ms over a minute past) and inexact periods in the range.  Hour periods reach past the range's edges: the answer's
 * "first" and "last" say what was read.  A range with no history has no
 * gateways and coverage not complete.  Returns 0, or -1 with errno
 * (EINVAL: from_ms >= to_ms). */
int store_json_gateways_range(struct store *st, int64_t from_ms,
			      int64_t to_ms, int64_t now_ms, char **out);
int store_json_hosts_at(struct store *st, const struct ns_addr *gateway,
			uint8_t proto, unsigned limit, int64_t at_ms,
			int64_t now_ms, char **out);
int store_json_destinations_at(struct store *st, const struct ns_addr *gateway,
			       uint8_t proto, unsigned limit, int64_t at_ms,
			       int64_t now_ms, char **out);

/* One gateway's figures over [from_ms, to_ms): a point per period of the
 * tier (STORE_TIER_AUTO: raw if its periods there number at most
 * STORE_SERIES_FIT_POINTS and raw history reaches back to from_ms, else
 * minute, else hour), the top_hosts consumers over the range (from
 * hist_host at the finest tier from that one up which holds hosts there),
 * the gaps overlapping it and the stretches no period covers.
 * Never interpolated: a period natscope did not observe has no point; one
 * it observed without a mapping of this gateway is a point of zeros.
 * ENOENT when the gateway has no row at that tier in the range, E2BIG when
 * a forced tier has more than STORE_SERIES_MAX_POINTS periods there. */
int store_json_series(struct store *st, const struct ns_addr *gateway,
		      uint8_t proto, int64_t from_ms, int64_t to_ms,
		      enum store_tier tier, unsigned top_hosts, int64_t now_ms,
		      char **out);

/* Which gateways one internal host used over [from_ms, to_ms) (from
 * hist_host, at the finest tier reaching back to from_ms that holds the
 * host there) and uses now (the hosts table).  Destinations are not in it yet (the mapping log). */
int store_json_host_history(struct store *st, const struct ns_addr *host,
			    int64_t from_ms, int64_t to_ms, int64_t now_ms,
			    char **out);

/* Incidents open at any moment of [from_ms, to_ms), newest first, at most
 * limit; and one incident by id with its opened/peak details (ENOENT if
 * there is none). */
int store_json_incidents(struct store *st, int64_t from_ms, int64_t to_ms,
			 unsigned limit, int64_t now_ms, char **out);
int store_json_incident(struct store *st, int64_t id, int64_t now_ms,
			char **out);

/* The advice an exhaustion playbook gives, from one gateway's own live
 * numbers (store/diagnosis.c): its TIME_WAIT share; this host's
 * ip_local_port_range beside the usual OS defaults; per busiest
 * destination bucket (up to 10) its fill, its rate of new mappings (the
 * newest minute of history within 5 minutes that kept it; null when none)
 * and rate x nf_conntrack_tcp_timeout_time_wait = ports held by closed
 * connections, against its capacity, with a verdict; the remedies in
 * their order of safety, each with whether it fits and why; and the
 * warning never to use tcp_tw_recycle.  *out as the json functions
 * above ("buckets" is the table CSV exports).  -1 with errno ENOENT (no
 * live mappings of that gateway), EINVAL, EBUSY, EIO, ENOMEM. */
int store_json_diagnosis(struct store *st, const struct ns_addr *gateway,
			 uint8_t proto, int64_t now_ms, char **out);

/* Who held public_ip:port (proto) at at_ms: one holder per destination,
 * each with its internal ip:port, destination, start and end, and whether
 * a gap makes it uncertain; read from the mapping log.  *out as the json
 * functions above, with "generated_at", "as_of", "coverage" and the
 * holders in the array "holders" (what ?format=csv exports).  -1 with
 * errno ENOSYS while the mapping log is not built, EBUSY/EIO/EILSEQ as
 * above. */
int store_json_lookup(struct store *st, const struct ns_addr *public_ip,
		      uint8_t proto, uint16_t port, int64_t at_ms,
		      int64_t now_ms, char **out);

/* The array at JSON path table of the document json (an answer of the
 * json functions above) as CSV (RFC 4180, CRLF): a header row, then one
 * row per element.  Nested objects are flattened into dotted columns
 * ("worst_destination.ip"), columns in order of first appearance; null is
 * empty, booleans true/false.  Every row starts with the document's
 * "as_of" and "coverage.complete" (as "as_of", "coverage_complete") when
 * it has them, so a row never loses what says how exact it is.  Returns
 * 0 and a malloc'd *out, or -1 with errno: EINVAL when table is no array
 * of json, ENOMEM, EIO. */
int store_json_csv(struct store *st, const char *json, const char *table,
		   char **out);

#endif
