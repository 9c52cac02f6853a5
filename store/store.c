/*
 * store.c - opening the database: WAL mode, the schema version check and
 * the migrations; the SQLite-to-errno boundary and the statement cache
 * the other files share.
 */
#include "store/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/migrations.h"

/* PRAGMA application_id of a natscope database: "NATS". */
#define STORE_APPLICATION_ID 0x4e415453
#define STORE_BUSY_MS 2000
/* Page cache of the writer: a full batch of 100k buckets fits. */
#define STORE_CACHE_KIB 16384
/* The -wal file is truncated back to this size after a checkpoint. */
#define STORE_WAL_LIMIT (16 * 1024 * 1024)

int store_errno(struct store *st, int rc)
{
	int sys;

	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return EBUSY;
	case SQLITE_FULL:
		return ENOSPC;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return EILSEQ;
	case SQLITE_CANTOPEN:
		sys = st && st->db ? sqlite3_system_errno(st->db) : 0;
		return sys == ENOENT ? ENOENT : EACCES;
	case SQLITE_READONLY:
		return EROFS;
	case SQLITE_NOMEM:
		return ENOMEM;
	case SQLITE_IOERR:
		sys = st && st->db ? sqlite3_system_errno(st->db) : 0;
		return sys == ENOSPC || sys == EDQUOT ? ENOSPC : EIO;
	}
	return EIO;
}

int store_fail(struct store *st, int rc, const char *what)
{
	int err = store_errno(st, rc);
	const char *msg = st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);

	log_warnx("store: %s: %s: %s", st->path, what, msg);
	snprintf(st->last_msg, sizeof(st->last_msg), "%s: %s", what, msg);
	errno = err;
	return -1;
}

sqlite3_stmt *store_stmt(struct store *st, enum store_stmt id,
			 const char *sql)
{
	int rc;

	if (st->stmt[id]) {
		sqlite3_reset(st->stmt[id]);
		sqlite3_clear_bindings(st->stmt[id]);
		return st->stmt[id];
	}
	rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
				&st->stmt[id], NULL);
	if (rc != SQLITE_OK) {
		store_fail(st, rc, "preparing a statement");
		st->stmt[id] = NULL;
		return NULL;
	}
	return st->stmt[id];
}

int store_step_done(struct store *st, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return store_fail(st, rc, what);
	return 0;
}

int store_exec(struct store *st, const char *sql, const char *what)
{
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		return store_fail(st, rc, what);
	return 0;
}

/* Runs a query returning one integer (a PRAGMA).  Returns 0 and *v, or -1
 * with errno. */
static int store_query_int(struct store *st, const char *sql, int64_t *v,
			   const char *what)
{
	sqlite3_stmt *s;
	int rc;

	rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return store_fail(st, rc, what);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*v = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
		return 0;
	}
	if (rc == SQLITE_DONE)
		*v = 0;
	else
		store_fail(st, rc, what);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_binary_schema_version(void)
{
	return (int)schema_migrations_count;
}

int store_schema_version(struct store *st)
{
	int64_t v;

	if (store_query_int(st, "PRAGMA user_version", &v,
			    "reading the schema version") < 0)
		return -1;
	return (int)v;
}

/* Refuses files that are not natscope databases (EILSEQ) or whose schema
 * is newer than this binary (EPROTONOSUPPORT).  Returns the version. */
static int store_check_version(struct store *st)
{
	int64_t version, app, tables;
	int have = store_binary_schema_version();

	if (store_query_int(st, "PRAGMA user_version", &version,
			    "not a natscope database") < 0)
		return -1;
	if (store_query_int(st, "PRAGMA application_id", &app,
			    "not a natscope database") < 0)
		return -1;
	if (version == 0) {
		if (store_query_int(st, "SELECT count(*) FROM sqlite_schema",
				    &tables, "not a natscope database") < 0)
			return -1;
		if (tables > 0) {
			log_warnx("store: %s: not a natscope database (it "
				  "holds other tables)", st->path);
			errno = EILSEQ;
			return -1;
		}
		return 0;
	}
	if (app != STORE_APPLICATION_ID) {
		log_warnx("store: %s: not a natscope database (application_id "
			  "%#llx)", st->path, (unsigned long long)app);
		errno = EILSEQ;
		return -1;
	}
	if (version > have) {
		log_warnx("store: %s: database schema version %lld is newer "
			  "than this natscope supports (%d); upgrade natscope",
			  st->path, (long long)version, have);
		errno = EPROTONOSUPPORT;
		return -1;
	}
	return (int)version;
}

/* Applies one migration unless another connection already did. */
static int store_migrate_one(struct store *st,
			     const struct schema_migration *m)
{
	char sql[160];
	int64_t version;
	sqlite3_stmt *s;
	int rc;

	if (store_exec(st, "BEGIN IMMEDIATE", "starting a migration") < 0)
		return -1;
	if (store_query_int(st, "PRAGMA user_version", &version,
			    "reading the schema version") < 0)
		goto fail;
	if (version >= m->version)
		goto done;
	if (store_exec(st,
		       "CREATE TABLE IF NOT EXISTS schema_migrations ("
		       "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
		       "applied_at INTEGER NOT NULL)",
		       "creating schema_migrations") < 0)
		goto fail;
	if (store_exec(st, m->sql, m->name) < 0)
		goto fail;
	rc = sqlite3_prepare_v2(st->db, "INSERT INTO schema_migrations "
				"VALUES (?, ?, ?)", -1, &s, NULL);
	if (rc != SQLITE_OK) {
		store_fail(st, rc, "recording a migration");
		goto fail;
	}
	sqlite3_bind_int(s, 1, m->version);
	sqlite3_bind_text(s, 2, m->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, ns_now_ms());
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		store_fail(st, rc, "recording a migration");
		goto fail;
	}
	snprintf(sql, sizeof(sql),
		 "PRAGMA user_version = %d; PRAGMA application_id = %d",
		 m->version, STORE_APPLICATION_ID);
	if (store_exec(st, sql, "recording the schema version") < 0)
		goto fail;
	log_info("store: %s: applied schema migration %03d_%s", st->path,
		 m->version, m->name);
done:
	if (store_exec(st, "COMMIT", "committing a migration") < 0)
		goto fail;
	return 0;
fail:
	rc = errno;
	if (!sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	errno = rc;
	return -1;
}

static int store_setup_write(struct store *st)
{
	char sql[160];
	sqlite3_stmt *s;
	const char *mode;
	int rc;

	rc = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s,
				NULL);
	if (rc != SQLITE_OK)
		return store_fail(st, rc, "setting WAL mode");
	rc = sqlite3_step(s);
	mode = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0)
				: NULL;
	if (rc != SQLITE_ROW || !mode || strcmp(mode, "wal") != 0) {
		if (rc == SQLITE_ROW)
			log_warnx("store: %s: cannot use WAL mode (got %s)",
				  st->path, mode ? mode : "nothing");
		else
			store_fail(st, rc, "setting WAL mode");
		sqlite3_finalize(s);
		errno = rc == SQLITE_ROW ? EIO : errno;
		return -1;
	}
	sqlite3_finalize(s);
	snprintf(sql, sizeof(sql),
		 "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -%d; "
		 "PRAGMA journal_size_limit = %d",
		 STORE_CACHE_KIB, STORE_WAL_LIMIT);
	return store_exec(st, sql, "setting pragmas");
}

struct store *store_open(const char *path, enum store_mode mode)
{
	struct store *st;
	int flags, rc, version, err;

	st = calloc(1, sizeof(*st));
	if (!st || !(st->path = strdup(path))) {
		log_warn("store: %s", path);
		free(st);
		errno = ENOMEM;
		return NULL;
	}
	st->mode = mode;
	if (mode == STORE_READ_ONLY && access(path, F_OK) < 0) {
		err = errno;
		log_warn("store: %s", path);
		errno = err;
		goto err;
	}
	/* One thread at a time per connection (store.h): no mutexes. */
	flags = SQLITE_OPEN_NOMUTEX |
		(mode == STORE_READ_WRITE
			 ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
			 : SQLITE_OPEN_READONLY);
	rc = sqlite3_open_v2(path, &st->db, flags, NULL);
	if (rc != SQLITE_OK) {
		if (!st->db) {
			log_warnx("store: %s: out of memory", path);
			errno = ENOMEM;
		} else {
			store_fail(st, rc, "cannot open");
		}
		goto err;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, STORE_BUSY_MS);

	if ((version = store_check_version(st)) < 0)
		goto err;
	if (mode == STORE_READ_WRITE) {
		if (store_setup_write(st) < 0)
			goto err;
		for (size_t i = 0; i < schema_migrations_count; i++)
			if (store_migrate_one(st, &schema_migrations[i]) < 0)
				goto err;
	} else {
		if (version < store_binary_schema_version()) {
			log_warnx("store: %s: database schema version %d is "
				  "older than this natscope's (%d); open it "
				  "read-write once to upgrade it", path,
				  version, store_binary_schema_version());
			errno = EPROTONOSUPPORT;
			goto err;
		}
		if (store_exec(st, "PRAGMA query_only = 1",
			       "setting query_only") < 0)
			goto err;
	}
	return st;
err:
	err = errno;
	store_close(st);
	errno = err;
	return NULL;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	for (int i = 0; i < STMT__COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	if (st->db && sqlite3_close(st->db) != SQLITE_OK)
		log_warnx("store: %s: close: %s", st->path,
			  sqlite3_errmsg(st->db));
	free(st->path);
	free(st);
}

int store_test_exec(struct store *st, const char *sql)
{
	return store_exec(st, sql, "test statement");
}
