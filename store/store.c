/*
 * store.c - opening the database: WAL mode, the schema version check and
 * the migrations; the SQLite-to-errno boundary and the statement cache
 * the other files share.
 */
#include "store/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
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
	int sys = st->db ? sqlite3_system_errno(st->db) : 0;
	const char *msg = st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
	char detail[192];

	/* SQLite's words, made plain where they are vague or misleading */
	switch (rc & 0xff) {
	case SQLITE_NOTADB:
		snprintf(detail, sizeof(detail), "not a natscope database (%s)",
			 msg);
		break;
	case SQLITE_CORRUPT:
		snprintf(detail, sizeof(detail), "the database file is corrupt "
			 "(%s)", msg);
		break;
	case SQLITE_IOERR:
		if (sys == ENOSPC || sys == EDQUOT) {
			snprintf(detail, sizeof(detail), "the file system is "
				 "full (%s: %s)", msg, strerror(sys));
			break;
		}
		/* fall through */
	case SQLITE_CANTOPEN:
		if (sys) {
			snprintf(detail, sizeof(detail), "%s (%s)", msg,
				 strerror(sys));
			break;
		}
		/* fall through */
	default:
		snprintf(detail, sizeof(detail), "%s", msg);
		break;
	}
	log_warnx("store: %s: %s: %s", st->path, what, detail);
	snprintf(st->last_msg, sizeof(st->last_msg), "%s: %s", what, detail);
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

	/* Only these answers make a file "not a natscope database": SQLite
	 * saying it is no database (store_fail), a foreign application_id
	 * or foreign tables.  A read-only or full file system, a permission
	 * or a lock fails here too, and store_fail says so in its words. */
	if (store_query_int(st, "PRAGMA user_version", &version,
			    "reading the schema version") < 0)
		return -1;
	if (store_query_int(st, "PRAGMA application_id", &app,
			    "reading the application id") < 0)
		return -1;
	if (version == 0) {
		if (store_query_int(st, "SELECT count(*) FROM sqlite_schema",
				    &tables, "reading the schema") < 0)
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

/* ---- one writer per database ---- */

/* The pid holding a flock on the file open at fd, from /proc/locks; 0 when
 * it cannot be told (no /proc, another pid namespace). */
static pid_t store_lock_holder(int fd)
{
	char line[256], type[16];
	unsigned maj, min;
	unsigned long ino;
	struct stat sb;
	pid_t found = 0;
	int pid;
	FILE *f;

	if (fstat(fd, &sb) < 0 || !(f = fopen("/proc/locks", "re")))
		return 0;
	/* "1: FLOCK  ADVISORY  WRITE 812 fd:00:1234 0 EOF"; waiters
	 * ("1: -> FLOCK ...") are skipped by the type check */
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%lu", type, &pid,
			   &maj, &min, &ino) == 5 &&
		    strcmp(type, "FLOCK") == 0 && pid > 0 &&
		    maj == major(sb.st_dev) && min == minor(sb.st_dev) &&
		    ino == sb.st_ino)
			found = pid;
	fclose(f);
	return found;
}

/* Describes the process holding the file's lock into out: its name and
 * pid, and when its run started if the status row is that process's. */
static void store_describe_holder(struct store *st, int fd, char *out,
				  size_t n)
{
	static const char sql[] = "SELECT pid, " SQL_TIME("started_ms")
				  " FROM status WHERE id = 1";
	char comm[64] = "", started[40] = "", proc[64];
	pid_t pid = store_lock_holder(fd);
	long long row_pid = 0;
	sqlite3_stmt *s = NULL;
	sqlite3 *db = NULL;
	FILE *f;

	if (pid > 0) {
		snprintf(proc, sizeof(proc), "/proc/%d/comm", (int)pid);
		if ((f = fopen(proc, "re"))) {
			if (fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		}
	}
	/* A reader's look at the status row: never blocked, writes nothing.
	 * Its descriptors are SQLite's, which keeps them open while another
	 * connection of this process locks the file, so closing it drops no
	 * lock. */
	if (sqlite3_open_v2(st->path, &db, SQLITE_OPEN_READONLY |
			    SQLITE_OPEN_NOMUTEX, NULL) == SQLITE_OK &&
	    sqlite3_busy_timeout(db, 200) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW) {
		row_pid = sqlite3_column_int64(s, 0);
		if (sqlite3_column_text(s, 1))
			snprintf(started, sizeof(started), "%s",
				 (const char *)sqlite3_column_text(s, 1));
	}
	sqlite3_finalize(s);
	sqlite3_close(db);

	if (pid > 0 && row_pid == pid && *started)
		snprintf(out, n, "%s%spid %d, whose run started at %s", comm,
			 *comm ? ", " : "", (int)pid, started);
	else if (pid > 0)
		snprintf(out, n, "%s%spid %d", comm, *comm ? ", " : "",
			 (int)pid);
	else if (row_pid > 0 && *started)
		snprintf(out, n, "not visible from here; the status row was "
			 "last written by pid %lld, whose run started at %s",
			 row_pid, started);
	else
		snprintf(out, n, "not visible from here");
}

/* Opens the file for writing, creating it if missing (st->created), and
 * takes its write lock.  Nothing is written. */
static int store_lock(struct store *st)
{
	char who[200];
	int fd, err;

	for (;;) {
		fd = open(st->path, O_RDWR | O_CLOEXEC | O_NOCTTY);
		if (fd >= 0 || errno != ENOENT)
			break;
		fd = open(st->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC |
			  O_NOCTTY, 0644);
		if (fd >= 0) {
			st->created = 1;
			break;
		}
		if (errno != EEXIST) /* else created meanwhile: open it */
			break;
	}
	if (fd < 0) {
		err = errno;
		log_warn("store: %s: cannot open the database for writing",
			 st->path);
		errno = err;
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		err = errno;
		if (err == EWOULDBLOCK) {
			store_describe_holder(st, fd, who, sizeof(who));
			log_warnx("store: %s: another process is writing this "
				  "database (%s); a database has one writer: "
				  "stop that one or use another file",
				  st->path, who);
		} else {
			log_warn("store: %s: locking", st->path);
		}
		close(fd); /* we hold no SQLite lock on it yet */
		st->created = 0; /* not ours to remove: someone else's now */
		errno = err;
		return -1;
	}
	st->lock_fd = fd;
	return 0;
}

/* path + suffix into out. */
static const char *store_sidecar(const struct store *st, const char *suffix,
				 char *out, size_t n)
{
	snprintf(out, n, "%s%s", st->path, suffix);
	return out;
}

/* What store_close_files() removes. */
enum store_remove {
	REMOVE_NOTHING,
	REMOVE_CREATED,	 /* the file, if store_open() created it */
	REMOVE_ALL_MADE, /* that, or a -wal and -shm it made that hold nothing */
};

/* After a failed start: removes the file if this store created it, else
 * (REMOVE_ALL_MADE) only a -wal and -shm it created that hold nothing.
 * Call with the lock held and SQLite closed. */
static void store_remove_made(struct store *st, enum store_remove what)
{
	char wal[PATH_MAX + 16], shm[PATH_MAX + 16], jnl[PATH_MAX + 16];
	struct stat sb;

	if (st->lock_fd < 0)
		return;
	store_sidecar(st, "-wal", wal, sizeof(wal));
	store_sidecar(st, "-shm", shm, sizeof(shm));
	store_sidecar(st, "-journal", jnl, sizeof(jnl));
	if (st->created) {
		unlink(wal);
		unlink(shm);
		unlink(jnl);
		if (unlink(st->path) == 0)
			log_info("store: %s: removed the database this failed "
				 "start had created", st->path);
		return;
	}
	if (what != REMOVE_ALL_MADE)
		return;
	/* a non-empty -wal holds committed transactions: never ours */
	if (!st->had_wal && stat(wal, &sb) == 0 && sb.st_size == 0)
		unlink(wal);
	if (!st->had_shm && stat(wal, &sb) < 0)
		unlink(shm);
}

/* PRAGMA quick_check of the tables a run keeps (the live ones are emptied
 * by store_begin_run()).  Costs well under a millisecond whatever the
 * size of the file; a quick_check of the whole file would read all of it
 * (docs/database.md). */
static int store_check_kept_tables(struct store *st)
{
	static const char *const tables[] = { "status", "gaps",
					      "schema_migrations" };
	char sql[64];
	const char *res;
	sqlite3_stmt *s;
	int rc;

	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		snprintf(sql, sizeof(sql), "PRAGMA quick_check(%s)", tables[i]);
		rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
		if (rc != SQLITE_OK)
			return store_fail(st, rc, "checking the database");
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW) {
			store_fail(st, rc, "checking the database");
			sqlite3_finalize(s);
			return -1;
		}
		res = (const char *)sqlite3_column_text(s, 0);
		if (!res || strcmp(res, "ok") != 0) {
			/* the first finding, without the "*** in database
			 * main ***" line */
			if (res && strncmp(res, "*** ", 4) == 0 &&
			    strchr(res, '\n'))
				res = strchr(res, '\n') + 1;
			log_warnx("store: %s: the database file is corrupt "
				  "(quick_check of %s: %.*s); it holds only "
				  "what natscope rebuilds and the gap log: move "
				  "it aside (keep it to inspect) and natscope "
				  "starts a new one", st->path, tables[i],
				  res ? (int)strcspn(res, "\n") : 9,
				  res ? res : "no answer");
			snprintf(st->last_msg, sizeof(st->last_msg),
				 "the database file is corrupt");
			sqlite3_finalize(s);
			errno = EILSEQ;
			return -1;
		}
		sqlite3_finalize(s);
	}
	return 0;
}

int store_data_version(struct store *st, int64_t *v)
{
	sqlite3_stmt *s = store_stmt(st, STMT_DATA_VERSION,
				     "PRAGMA data_version");
	int rc;

	if (!s)
		return -1;
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		store_fail(st, rc, "reading the data version");
		sqlite3_reset(s);
		return -1;
	}
	*v = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return 0;
}

static void store_close_files(struct store *st, enum store_remove remove);

/* SQL ns_port_space(proto): the ports one public IP offers for a
 * protocol given by name (ns_port_space()), NULL for an unknown one; the
 * answers' "port_space" comes from the same table as the C side's. */
static void store_sql_port_space(sqlite3_context *ctx, int argc,
				 sqlite3_value **argv)
{
	const char *name = (const char *)sqlite3_value_text(argv[0]);
	int proto = name ? ns_proto_parse(name) : -1;

	(void)argc;
	if (proto < 0)
		sqlite3_result_null(ctx);
	else
		sqlite3_result_int64(ctx, ns_port_space((uint8_t)proto));
}

struct store *store_open(const char *path, enum store_mode mode)
{
	char side[PATH_MAX + 16];
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
	st->lock_fd = -1;
	if (mode != STORE_READ_WRITE && access(path, F_OK) < 0) {
		err = errno;
		log_warn("store: %s", path);
		errno = err;
		goto err;
	}
	if (mode == STORE_READ_WRITE) {
		if (store_lock(st) < 0)
			goto err;
		st->had_wal = access(store_sidecar(st, "-wal", side,
						   sizeof(side)), F_OK) == 0;
		st->had_shm = access(store_sidecar(st, "-shm", side,
						   sizeof(side)), F_OK) == 0;
	}
	/* One thread at a time per connection (store.h): no mutexes. */
	flags = SQLITE_OPEN_NOMUTEX |
		(mode == STORE_READ_WRITE
			 ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
			 : SQLITE_OPEN_READONLY);
	if (mode == STORE_IMMUTABLE) {
		char *uri;

		/* the path goes into a URI as it is: these would be read as
		 * its syntax */
		if (strpbrk(path, "?#%")) {
			log_warnx("store: %s: cannot read a frozen copy of a "
				  "file whose name has '?', '#' or '%%': "
				  "rename it", path);
			errno = EINVAL;
			goto err;
		}
		if (!(uri = sqlite3_mprintf("file:%s?immutable=1", path))) {
			errno = ENOMEM;
			goto err;
		}
		rc = sqlite3_open_v2(uri, &st->db, flags | SQLITE_OPEN_URI,
				     NULL);
		sqlite3_free(uri);
	} else {
		rc = sqlite3_open_v2(path, &st->db, flags, NULL);
	}
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
	rc = sqlite3_create_function_v2(st->db, "ns_port_space", 1,
					SQLITE_UTF8 | SQLITE_DETERMINISTIC,
					NULL, store_sql_port_space, NULL, NULL,
					NULL);
	if (rc != SQLITE_OK) {
		store_fail(st, rc, "cannot register ns_port_space()");
		goto err;
	}

	if ((version = store_check_version(st)) < 0)
		goto err;
	if (mode == STORE_READ_WRITE) {
		if (store_setup_write(st) < 0)
			goto err;
		for (size_t i = 0; i < schema_migrations_count; i++)
			if (store_migrate_one(st, &schema_migrations[i]) < 0)
				goto err;
		if (store_check_kept_tables(st) < 0 ||
		    store_data_version(st, &st->data_version) < 0)
			goto err;
	} else {
		if (version == 0) {
			log_warnx("store: %s: not a natscope database (it has "
				  "no natscope schema)", path);
			errno = EILSEQ;
			goto err;
		}
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
	store_close_files(st, REMOVE_ALL_MADE);
	errno = err;
	return NULL;
}

/* Closes SQLite, then removes what a failed start made, then releases
 * the lock: in that order, so that no other writer can have opened the
 * file in between, and so that closing the lock's descriptor drops no
 * lock SQLite still needs. */
static void store_close_files(struct store *st, enum store_remove remove)
{
	if (!st)
		return;
	store_maplog_free(st);
	for (int i = 0; i < STMT__COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	if (st->db && sqlite3_close(st->db) != SQLITE_OK)
		log_warnx("store: %s: close: %s", st->path,
			  sqlite3_errmsg(st->db));
	if (remove != REMOVE_NOTHING)
		store_remove_made(st, remove);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	free(st->path);
	free(st);
}

void store_close(struct store *st)
{
	store_close_files(st, REMOVE_NOTHING);
}

void store_discard(struct store *st)
{
	store_close_files(st, REMOVE_CREATED);
}

int store_test_exec(struct store *st, const char *sql)
{
	return store_exec(st, sql, "test statement");
}
