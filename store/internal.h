/*
 * internal.h - what store/'s files share.  Not part of the module's
 * interface: only the files of store/ include it.
 */
#ifndef NATSCOPE_STORE_INTERNAL_H
#define NATSCOPE_STORE_INTERNAL_H

#include <stdint.h>

#include <sqlite3.h>

#include "store/store.h"

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
	/* read.c */
	STMT_JSON_GATEWAYS,
	STMT_JSON_HOSTS,
	STMT_JSON_DESTS,
	STMT_JSON_STATUS,
	STMT_JSON_ERROR,
	STMT_READ_STATUS,
	STMT_READ_GATEWAYS,
	STMT_READ_TOP_HOSTS,
	/* histread.c */
	STMT_HIST_GATEWAYS,
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
};

/* Writes the status row x (status.c), as it is: the caller sets the
 * writes_* fields.  Returns 0, or -1 with errno (logged). */
int store_write_status(struct store *st, const struct store_status *x);

/* The status fields as the arguments of a json_object() over the status
 * row (status.c), malloc'd; NULL with ENOMEM. */
char *store_sql_status_json(void);

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
