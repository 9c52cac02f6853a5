/*
 * internal.h - what store/'s files share.  Not part of the module's
 * interface: only the files of store/ include it.
 */
#ifndef NATSCOPE_STORE_INTERNAL_H
#define NATSCOPE_STORE_INTERNAL_H

#include <stdint.h>

#include <sqlite3.h>

#include "store/store.h"

/* An open incident (incident.c). */
struct store_incident {
	int64_t id;
	int kind; /* gateway, bucket, kernel */
	char public_ip[NS_ADDR_STRLEN], proto[16];
	uint16_t zone, dest_port;
	char dest_ip[NS_ADDR_STRLEN];
	uint64_t capacity, peak, last; /* last: this period's peak */
	int64_t opened_ms, peak_ms;
	int64_t insert_failed, drop, early_drop;
	int critical;
};

#define STORE_INCIDENTS_OPEN_MAX 256

/* Every cached prepared statement, by the file that uses it. */
enum store_stmt {
	/* write.c */
	STMT_BEGIN,
	STMT_COMMIT,
	STMT_CLEAR_GATEWAYS,
	STMT_CLEAR_HOSTS,
	STMT_CLEAR_DESTS,
	STMT_GW_UPSERT,
	STMT_GW_DELETE,
	STMT_GW_DELETE_HOSTS,
	STMT_GW_DELETE_DESTS,
	STMT_HOST_UPSERT,
	STMT_HOST_DELETE,
	STMT_DEST_UPSERT,
	STMT_DEST_DELETE,
	STMT_GAP_UPSERT,
	STMT_GAP_TRIM_AGE,
	STMT_GAP_TRIM_COUNT,
	STMT_STATUS_UPSERT,
	STMT_STATUS_FAILED,
	STMT_DATA_VERSION,
	/* history.c */
	STMT_HIST_ACC_HOST,
	STMT_HIST_ACC_DEST,
	STMT_HIST_RAW_GW,
	STMT_HIST_RAW_KERNEL,
	/* incident.c */
	STMT_INC_INSERT,
	STMT_INC_UPDATE,
	STMT_INC_SAT,
	/* read.c */
	STMT_JSON_GATEWAYS,
	STMT_JSON_HOSTS,
	STMT_JSON_DESTS,
	STMT_JSON_STATUS,
	STMT_JSON_ERROR,
	STMT_READ_STATUS,
	STMT_READ_GATEWAYS,
	STMT_READ_TOP_HOSTS,
	STMT_READ_GONE_GATEWAYS,
	STMT_READ_COVERAGE,
	/* histread.c */
	STMT_HIST_GATEWAYS,
	STMT_HIST_GATEWAYS_RANGE,
	STMT_HIST_HOSTS,
	STMT_HIST_DESTS,
	STMT_HIST_RANGE,
	STMT_HIST_TIERS,
	STMT_HIST_SERIES,
	STMT_HIST_HOST,
	STMT_HIST_INCIDENTS,
	STMT_HIST_INCIDENT,
	/* csv.c */
	STMT_CSV_HEAD,
	STMT_CSV_CELLS,
	/* maplog.c */
	STMT_MAPLOG_INSERT,
	STMT_MAPLOG_REPLACE,
	STMT_MAPLOG_READ,
	STMT_MAPLOG_DELETE,
	STMT_MAPLOG_OLDEST,
	STMT_MAPLOG_TRIMMED,
	STMT_MAPLOG_RUN,
	STMT_MAPLOG_LOSS,
	STMT_MAPLOG_FIND,
	STMT_MAPLOG_HIT,
	STMT_MAPLOG_JSON,
	STMT_MAPLOG_HOST_RUNS,
	STMT_MAPLOG_HOST_SCAN,
	STMT_MAPLOG_HOST_JSON,
	/* portmap.c */
	STMT_PORTS_FIND,
	STMT_PORTS_JSON,
	/* diagnosis.c */
	STMT_DIAG_BUCKETS,
	STMT_DIAG_GATEWAY,
	STMT__COUNT
};

struct store {
	sqlite3 *db;
	enum store_mode mode;
	char *path;
	/* READ_WRITE: the file, open for its flock (store_open) */
	int lock_fd;
	int created;		/* store_open() created the file */
	int had_wal, had_shm;	/* the -wal and -shm existed before it */
	/* PRAGMA data_version when this connection last looked: another
	 * connection's commit changes it (write.c) */
	int64_t data_version;
	sqlite3_stmt *stmt[STMT__COUNT];
	/* what the status row's writes_* columns say */
	uint64_t writes_ok;
	uint64_t writes_failed;
	int64_t last_write_ms;
	char last_error[128];
	char last_msg[256]; /* the last failure store_fail() logged */
	unsigned writes_since_checkpoint;
	/* store_tx_begin() opened a transaction: writes are savepoints */
	int outer_tx;
	/* history (history.c) */
	struct store_history_config hist_cfg;
	int hist_configured;
	int64_t hist_minute;	  /* the accumulators' minute; 0 none yet */
	int64_t hist_minute_next; /* ... once this write commits */
	struct store_status hist_prev; /* the last committed write's */
	int hist_have_prev, hist_pending, hist_size_warned;
	int writes_failed_run; /* the last write failed: its period is lost */
	/* open incidents (incident.c), and a copy to restore on rollback */
	struct store_incident inc[STORE_INCIDENTS_OPEN_MAX];
	struct store_incident inc_saved[STORE_INCIDENTS_OPEN_MAX];
	size_t n_inc, n_inc_saved;
	int inc_full_warned;
	struct store_maplog *maplog; /* the mapping log's writer state */
};

/* Writes the status row x (status.c), as it is: the caller sets the
 * writes_* fields.  Returns 0, or -1 with errno (logged). */
int store_write_status(struct store *st, const struct store_status *x);

/* The status fields as the arguments of a json_object() over the status
 * row (status.c), malloc'd; NULL with ENOMEM. */
char *store_sql_status_json(void);

/* Writes b's history (b->hist) inside store_write()'s transaction: raw
 * rows, the open minute's accumulators, rollups of the periods that ended,
 * retention.  Returns 0, or -1 with errno (logged). */
int store_history_write(struct store *st, const struct store_batch *b);

/* How much a kernel counter rose since the last committed write of the
 * same run (now: its value in x, before: in that write's status); -1 when
 * either is unknown, there was none, or it went down (a reset). */
int64_t store_history_rise(const struct store *st,
			   const struct store_status *x, int64_t now,
			   int64_t before);

/* After store_write()'s transaction: ok 1 committed, 0 rolled back. */
void store_history_committed(struct store *st, const struct store_batch *b,
			     int ok);

/* Incidents (incident.c), inside store_write()'s transaction: save the
 * open ones before the write; judge the batch's period (after its history
 * rows and accumulators are written); roll back to the saved ones if the
 * write fails.  begin_run closes what a previous run left open.  Return 0,
 * or -1 with errno (logged). */
void store_incidents_save(struct store *st);
int store_incidents_judge(struct store *st, const struct store_batch *b);
void store_incidents_rollback(struct store *st);
int store_incidents_begin_run(struct store *st, int64_t now);
/* The mapping log's part of a write (maplog.c), inside store_write()'s
 * transaction: pairs b's records (after those of failed writes) and
 * writes them, trims the log.  Returns 0, or -1 with errno.  Then exactly
 * one of: _committed() once the transaction committed (the writer's
 * in-memory state follows it), _failed() when it was rolled back (b's
 * records are kept for the next write). */
int store_maplog_write(struct store *st, const struct store_batch *b,
		       int64_t now);
void store_maplog_committed(struct store *st, const struct store_batch *b);
void store_maplog_failed(struct store *st, const struct store_batch *b);

/* Inside store_begin_run()'s transaction: the previous run's open
 * mappings end at its last write (STORE_MAPLOG_END_STOPPED), and this
 * run is recorded.  Returns 0, or -1 with errno. */
int store_maplog_begin_run(struct store *st, int64_t run_ms);

/* Frees the writer state (store_close()). */
void store_maplog_free(struct store *st);

/* Gap log retention, applied by every store_write(). */
#define STORE_GAPS_KEEP 1000
#define STORE_GAPS_KEEP_MS (30LL * 24 * 3600 * 1000)
/* A passive WAL checkpoint after this many successful writes. */
#define STORE_CHECKPOINT_EVERY 16

/* Makes room for one more element in the array *arr points to (n used of
 * *cap elements of size bytes), doubling it.  Returns 0, or -1 with ENOMEM
 * (logged); *arr is unchanged then. */
int store_grow(void *arr, size_t n, size_t *cap, size_t size);

/* The errno for an SQLite result code (see store.h). */
int store_errno(struct store *st, int rc);

/* Logs "store: PATH: what: sqlite message", keeps "what: message" in
 * st->last_msg and sets errno from rc.  Returns -1. */
int store_fail(struct store *st, int rc, const char *what);

/* The cached statement id, prepared from sql on first use, reset and
 * unbound.  NULL with errno (logged) if it cannot be prepared. */
sqlite3_stmt *store_stmt(struct store *st, enum store_stmt id,
			 const char *sql);

/* Steps s to completion and resets it.  Returns 0, or -1 with errno
 * (logged with what). */
int store_step_done(struct store *st, sqlite3_stmt *s, const char *what);

/* Reads PRAGMA data_version into *v.  Returns 0, or -1 with errno. */
int store_data_version(struct store *st, int64_t *v);

/* Runs one or more SQL statements without results.  Returns 0 or -1 with
 * errno (logged with what). */
int store_exec(struct store *st, const char *sql, const char *what);

/* SQL for a time column or parameter x (ms since the epoch) as RFC 3339
 * UTC text with milliseconds, "2026-11-25T10:00:01.250Z"; NULL when x is
 * NULL or not positive.  Integer arithmetic only, so it is exact. */
#define SQL_TIME(x)                                                        \
	"(CASE WHEN " x " > 0 THEN strftime('%Y-%m-%dT%H:%M:%S', (" x        \
	") / 1000, 'unixepoch') || printf('.%03dZ', (" x ") % 1000) END)"

/* One internal host's destinations over [from_ms, to_ms] from the mapping
 * log, inside the caller's read transaction: *out (malloc'd) is the JSON
 * object {"source": "mapping log", "mappings_read", "complete",
 * "reasons": [text], "list": [{"public_ip", "proto", "destination":
 * {"ip", "port"}, "zone", "mappings" (overlapping the range),
 * "new_mappings" (started in it), "new_per_second" (over the part of the
 * range the log covers), "ports_peak" (most held at once),
 * "open_at_last_write", "first_start", "last_end", "uncertain"}]}.
 * "complete" is false, with the reasons, when a gap, lost records,
 * retention, the log's last write, its runs or the scan's limit
 * (ML_HOST_SCAN_MAX mappings read) leave mappings out or uncertain.
 * Returns 0, or -1 with errno: EINVAL, ENOMEM, EBUSY, EIO, EILSEQ. */
int store_maplog_host_dests(struct store *st, const struct ns_addr *host,
			    int64_t from_ms, int64_t to_ms, int64_t now_ms,
			    char **out);

/* ---- binding rows (write.c) ---- */

/* An address as canonical text, formatted once per distinct address in a
 * run of rows (batches come grouped by gateway). */
struct store_addr_text {
	struct ns_addr addr;
	int valid;
	char text[NS_ADDR_STRLEN];
};

/* c's text for a (formatted once while a stays the same), or NULL with
 * EINVAL for an unknown family. */
const char *store_addr_text(struct store_addr_text *c, const struct ns_addr *a);

/* Binds an address's text at i, its family (4/6) at family_at and its
 * bytes at family_at + 1 (family_at 0: the text only).  Returns 0 or -1. */
int store_bind_addr(sqlite3_stmt *s, int i, int family_at,
		    struct store_addr_text *c, const struct ns_addr *a);
/* A protocol's name (its number if it has none). */
void store_bind_proto(sqlite3_stmt *s, int i, uint8_t proto);
/* A count, clamped to INT64_MAX. */
void store_bind_u64(sqlite3_stmt *s, int i, uint64_t v);
/* A counter that may be unknown (-1): NULL. */
void store_bind_opt(sqlite3_stmt *s, int i, int64_t v);
/* A time where 0 means never: NULL. */
void store_bind_ms(sqlite3_stmt *s, int i, int64_t ms);

/* One gap row (of the gaps table) as a JSON object, for "coverage". */
#define SQL_GAP_OBJECT                                                      \
	"json_object('seq', seq, 'start', " SQL_TIME("start_ms") ", "       \
	"'end', " SQL_TIME("end_ms") ", 'events_lost', events_lost, "       \
	"'enobufs', enobufs, 'added', added, 'removed', removed, "          \
	"'changed', changed, 'reason', reason)"

/* Copies the text of column col of the row s stands on into a malloc'd
 * string (read.c).  Returns 0, or -1 with errno (logged): EIO when the
 * column is NULL, ENOMEM. */
int store_column_dup(sqlite3_stmt *s, int col, char **out);

#endif
