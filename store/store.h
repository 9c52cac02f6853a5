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
 * A file that is not a natscope database also fails with EILSEQ.
 */
#ifndef NATSCOPE_STORE_H
#define NATSCOPE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct store;

enum store_mode { STORE_READ_WRITE, STORE_READ_ONLY };

/* Opens (READ_WRITE: creates) the database at path.  READ_WRITE sets WAL
 * mode and applies every compiled-in migration the file lacks, each in its
 * own transaction.  Fails with EPROTONOSUPPORT, and says so, if the file's
 * schema is newer than this binary's.  READ_ONLY never writes and fails with
 * ENOENT if the file does not exist. */
struct store *store_open(const char *path, enum store_mode mode);

/* Closes the connection.  NULL is allowed. */
void store_close(struct store *st);

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
};

/* "starting", "running", "resyncing", "stopped" (as stored and shown). */
const char *store_state_name(enum store_state state);

/* The status row: one per database, rewritten every interval.  Counters
 * the collector cannot know are -1 (e.g. a missing sysctl). */
struct store_status {
	/* the run */
	char version[16];
	int64_t started_ms;
	int32_t pid;
	uint32_t interval_s;
	uint8_t state; /* enum store_state */
	int64_t as_of_ms; /* when the collector took this snapshot */
	uint64_t event_buffer_bytes; /* receive buffer granted by the kernel */
	/* the ledger */
	uint64_t mappings_nat;
	uint64_t mappings_local;
	uint64_t mappings_silent; /* known only from dumps (ledger.h) */
	int64_t entries_other; /* conntrack count minus tracked; -1 unknown */
	uint32_t gateways;
	uint32_t hosts;
	uint32_t destinations;
	/* events */
	uint64_t ev_new;
	uint64_t ev_update;
	uint64_t ev_destroy;
	uint64_t ev_dumped;	    /* entries read by dumps */
	uint64_t ev_unknown_destroy; /* DESTROY for a mapping not in the ledger */
	uint64_t ev_malformed;	    /* netlink messages rejected by the parser */
	uint64_t ev_lost;	    /* events the kernel dropped for us */
	uint64_t enobufs;	    /* ENOBUFS errors seen */
	/* resyncs (the start-up dump counts as the first) */
	uint64_t resyncs;
	uint8_t resync_active;
	int64_t resync_last_started_ms;
	int64_t resync_last_done_ms;
	int64_t resync_last_duration_us;
	uint64_t resync_last_entries;
	uint64_t resync_last_added;
	uint64_t resync_last_removed;
	uint64_t resync_last_changed;
	/* the kernel (conntrack statistics summed over CPUs) */
	int64_t ct_count;
	int64_t ct_max;
	int64_t ct_insert_failed;
	int64_t ct_drop;
	int64_t ct_early_drop;
	int64_t ct_clash_resolve;
	/* sysctls */
	int32_t port_range_lo; /* net.ipv4.ip_local_port_range */
	int32_t port_range_hi;
	int32_t tcp_tw_reuse;
	int32_t tcp_fin_timeout;
	int32_t tcp_timeout_time_wait; /* nf_conntrack_tcp_timeout_time_wait */
	int32_t ct_events;	       /* nf_conntrack_events: 0, 1, 2 (auto) */
	/* the process */
	uint64_t rss_bytes;
	double cpu_seconds;
	/* writes: filled in by the store on each write, not by the caller */
	uint64_t writes_ok;
	uint64_t writes_failed;
	int64_t last_write_ms;
	char last_write_error[128];
};

/* Everything one interval changed.  Rows are deltas unless full is set, in
 * which case they replace every live row.  gaps are upserted by key. */
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
	struct store_status status;
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

/* Starts a run: empties the live tables (they described a previous run)
 * and writes status with state STARTING, in one transaction. */
int store_begin_run(struct store *st, const struct store_status *status);

/* Applies a batch in one transaction: all of it or, on error, none of it.
 * Also fills the writes_* fields of the stored status row, trims the gap
 * log to its retention (newest 1000 gaps, 30 days) and, every so often,
 * checkpoints the WAL.  On failure the caller must send a full batch
 * next. */
int store_write(struct store *st, const struct store_batch *b);

/* ---- the writer thread ---- */

struct store_writer;

/* Starts a thread that owns st (a READ_WRITE store) until
 * store_writer_stop().  NULL with errno on failure. */
struct store_writer *store_writer_start(struct store *st);

/* Returns the batch to fill for the next write, cleared, or NULL if the
 * previous batch is still being written (try again next interval).
 * *need_full is set to 1 if that batch must be full because a write failed
 * (or none happened yet), else 0.  Collector thread only. */
struct store_batch *store_writer_acquire(struct store_writer *w, int *need_full);

/* Hands the batch from store_writer_acquire() to the thread. */
void store_writer_submit(struct store_writer *w, struct store_batch *b);

/* Waits until no batch is in flight.  Returns 0 if the last write
 * succeeded, else -1 with its errno. */
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

#endif
