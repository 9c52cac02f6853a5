/*
 * test_store.c - store/ against real SQLite files in a temporary
 * directory: migrations and version checks, write/read round trips, the
 * delta semantics, failures (full disk, locked database) leaving the file
 * as it was, gap retention, the JSON documents (checked with json_extract)
 * and the writer thread.  Prints the time a full 100k-bucket write takes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/common.h"
#include "store/store.h"

/* 2026-11-25T10:00:00.000Z: the snapshot time most tests use. */
#define T0 1795600800000LL
#define MIN_MS 60000LL
#define DAY_MS (24 * 3600 * 1000LL)

static char tmpdir[] = "/tmp/natscope-store-XXXXXX";
static sqlite3 *jdb; /* in-memory connection for json_extract() */

/* ---- helpers ---- */

static const char *db_path(const char *name)
{
	static char path[4][256];
	static int next;
	char *p = path[next++ % 4];

	snprintf(p, sizeof(path[0]), "%s/%s.db", tmpdir, name);
	return p;
}

static struct ns_addr A(const char *text)
{
	struct ns_addr a;

	assert_int_equal(ns_addr_parse(text, &a), 0);
	return a;
}

static struct store *open_fresh(const char *name)
{
	const char *path = db_path(name);
	struct store *st;
	char extra[300];

	unlink(path);
	snprintf(extra, sizeof(extra), "%s-wal", path);
	unlink(extra);
	snprintf(extra, sizeof(extra), "%s-shm", path);
	unlink(extra);
	st = store_open(path, STORE_READ_WRITE);
	assert_non_null(st);
	return st;
}

/* Runs sql on its own connection to path; returns the first column of the
 * first row as an integer (-999 when NULL or no row). */
static long long q_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	long long v = -999;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY,
					 NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW &&
	    sqlite3_column_type(s, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

/* Same, text result copied into a static buffer ("(null)" for NULL). */
static const char *q_text(const char *path, const char *sql)
{
	static char buf[4096];
	sqlite3 *db;
	sqlite3_stmt *s;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY,
					 NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	snprintf(buf, sizeof(buf), "(null)");
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
		snprintf(buf, sizeof(buf), "%s", sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	sqlite3_close(db);
	return buf;
}

/* fn(doc, path) on the in-memory connection: the value's text in a
 * rotating static buffer, or "(missing)" for SQL NULL. */
static const char *jcall(const char *fn, const char *doc, const char *path)
{
	static char buf[8][2048];
	static int next;
	char sql[64], *out = buf[next++ % 8];
	sqlite3_stmt *s;

	snprintf(sql, sizeof(sql), "SELECT %s(?1, ?2)", fn);
	assert_int_equal(sqlite3_prepare_v2(jdb, sql, -1, &s, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(s, 1, doc, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	if (sqlite3_column_text(s, 0))
		snprintf(out, sizeof(buf[0]), "%s", sqlite3_column_text(s, 0));
	else
		snprintf(out, sizeof(buf[0]), "(missing)");
	sqlite3_finalize(s);
	return out;
}

/* json_extract() as text: strings unquoted, null as "(missing)". */
static const char *jtext(const char *doc, const char *path)
{
	return jcall("json_extract", doc, path);
}

/* json_type(): "integer", "real", "text", "null", "true", "object", ...,
 * or "(missing)" when the path does not exist. */
static const char *jtype(const char *doc, const char *path)
{
	return jcall("json_type", doc, path);
}

static long long jint(const char *doc, const char *path)
{
	const char *type = jtype(doc, path);

	if (strcmp(type, "integer") != 0)
		fail_msg("%s: expected an integer, got %s in %s", path, type,
			 doc);
	return strtoll(jtext(doc, path), NULL, 10);
}

static double jreal(const char *doc, const char *path)
{
	const char *type = jtype(doc, path);

	if (strcmp(type, "real") != 0 && strcmp(type, "integer") != 0)
		fail_msg("%s: expected a number, got %s", path, type);
	return strtod(jtext(doc, path), NULL);
}

static long long jlen(const char *doc, const char *path)
{
	return strtoll(jcall("json_array_length", doc, path), NULL, 10);
}

static void assert_json_valid(const char *doc)
{
	sqlite3_stmt *s;

	assert_non_null(doc);
	assert_int_equal(sqlite3_prepare_v2(jdb, "SELECT json_valid(?1)", -1,
					    &s, NULL), SQLITE_OK);
	sqlite3_bind_text(s, 1, doc, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	if (sqlite3_column_int(s, 0) != 1)
		fail_msg("not valid JSON: %s", doc);
	sqlite3_finalize(s);
}

/* A status with a distinct value in every field. */
static void fill_status(struct store_status *x, uint8_t state)
{
	memset(x, 0, sizeof(*x));
	snprintf(x->version, sizeof(x->version), "%s", NS_VERSION);
	x->started_ms = T0 - 3600 * 1000;
	x->pid = 4242;
	x->interval_s = 5;
	x->state = state;
	x->as_of_ms = T0;
	x->event_buffer_bytes = 134217728;
	x->mappings_nat = 1500;
	x->mappings_local = 20;
	x->mappings_silent = 17;
	x->mappings_other = 7;
	x->gateways = 2;
	x->hosts = 3;
	x->destinations = 4;
	x->events_new = 101;
	x->events_update = 102;
	x->events_destroy = 103;
	x->events_dumped = 104;
	x->events_unknown_destroy = 105;
	x->events_malformed = 106;
	x->events_lost = 107;
	x->events_enobufs = 108;
	x->resync_count = 2;
	x->resync_active = 0;
	x->resync_last_started_ms = T0 - MIN_MS;
	x->resync_last_done_ms = T0 - MIN_MS + 1234;
	x->resync_last_duration_us = 1234567;
	x->resync_last_entries = 5000;
	x->resync_last_added = 11;
	x->resync_last_removed = 12;
	x->resync_last_changed = 13;
	x->conntrack_count = 5021;
	x->conntrack_max = 262144;
	x->conntrack_insert_failed = 3;
	x->conntrack_drop = 4;
	x->conntrack_early_drop = 5;
	x->conntrack_clash_resolve = 9;
	x->sysctl_port_range_lo = 32768;
	x->sysctl_port_range_hi = 60999;
	x->sysctl_tcp_tw_reuse = 2;
	x->sysctl_tcp_fin_timeout = 60;
	x->sysctl_tcp_timeout_time_wait = 120;
	x->sysctl_conntrack_events = 2;
	x->process_rss_bytes = 12345678;
	x->process_cpu_seconds = 3.25;
}

static struct store_gateway_row *add_gw(struct store_batch *b,
					const char *ip, uint8_t proto,
					uint32_t ports, uint32_t mappings)
{
	struct store_gateway_row *g = store_batch_add_gateway(b);

	assert_non_null(g);
	g->ip = A(ip);
	g->proto = proto;
	g->ports_in_use = ports;
	g->mappings = mappings;
	g->hosts = 1;
	g->destinations = 1;
	return g;
}

static void set_worst(struct store_gateway_row *g, const char *ip,
		      uint16_t port, uint16_t zone, uint32_t mappings,
		      uint32_t capacity)
{
	g->worst_ip = A(ip);
	g->worst_port = port;
	g->worst_zone = zone;
	g->worst_mappings = mappings;
	g->worst_capacity = capacity;
}

static struct store_host_row *add_host(struct store_batch *b, const char *gw,
				       uint8_t proto, const char *ip,
				       uint8_t kind, uint32_t mappings,
				       uint32_t ports)
{
	struct store_host_row *h = store_batch_add_host(b);

	assert_non_null(h);
	h->gateway = A(gw);
	h->proto = proto;
	h->ip = A(ip);
	h->kind = kind;
	h->mappings = mappings;
	h->ports_in_use = ports;
	return h;
}

static struct store_dest_row *add_dest(struct store_batch *b, const char *gw,
				       uint8_t proto, const char *ip,
				       uint16_t port, uint16_t zone,
				       uint32_t mappings, uint32_t capacity)
{
	struct store_dest_row *d = store_batch_add_dest(b);

	assert_non_null(d);
	d->gateway = A(gw);
	d->proto = proto;
	d->ip = A(ip);
	d->port = port;
	d->zone = zone;
	d->mappings = mappings;
	d->capacity = capacity;
	return d;
}

static struct store_gap_row *add_gap(struct store_batch *b, int64_t run,
				     uint32_t seq, int64_t start, int64_t end)
{
	struct store_gap_row *g = store_batch_add_gap(b);

	assert_non_null(g);
	g->run_started_ms = run;
	g->seq = seq;
	g->start_ms = start;
	g->end_ms = end;
	g->events_lost = 40 + seq;
	g->enobufs = 2;
	g->added = 10;
	g->removed = 20;
	g->changed = 30;
	snprintf(g->reason, sizeof(g->reason), "enobufs");
	return g;
}

/* Writes a batch holding only a status. */
static void write_status_only(struct store *st, uint8_t state,
			      int64_t as_of)
{
	struct store_batch b;

	store_batch_init(&b);
	fill_status(&b.status, state);
	b.status.as_of_ms = as_of;
	assert_int_equal(store_write(st, &b), 0);
	store_batch_free(&b);
}

/* The standard content: two IPv4 gateways and one IPv6, hosts and
 * buckets.  Written as a full batch. */
static void write_standard(struct store *st)
{
	struct store_gateway_row *g;
	struct store_batch b;

	store_batch_init(&b);
	b.full = 1;
	fill_status(&b.status, STORE_STATE_RUNNING);
	g = add_gw(&b, "203.0.113.1", IPPROTO_TCP, 1200, 1500);
	g->hosts = 3;
	g->destinations = 4;
	set_worst(g, "198.51.100.7", 443, 0, 1100, 64512);
	for (int i = 0; i < NS_TCP_STATES; i++)
		g->states[i] = 100 + i;
	g = add_gw(&b, "203.0.113.1", IPPROTO_UDP, 10, 12);
	add_gw(&b, "2001:db8::1", IPPROTO_TCP, 5, 5);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.2", NS_KIND_NAT,
		 1400, 1150);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.3", NS_KIND_NAT, 80,
		 80);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "203.0.113.1", NS_KIND_LOCAL,
		 20, 20);
	add_host(&b, "203.0.113.1", IPPROTO_UDP, "198.18.0.2", NS_KIND_NAT, 12,
		 10);
	add_host(&b, "2001:db8::1", IPPROTO_TCP, "2001:db8:1::5", NS_KIND_NAT,
		 5, 5);
	add_dest(&b, "203.0.113.1", IPPROTO_TCP, "198.51.100.7", 443, 0, 1100,
		 64512);
	add_dest(&b, "203.0.113.1", IPPROTO_TCP, "198.51.100.8", 80, 0, 300,
		 64512);
	add_dest(&b, "203.0.113.1", IPPROTO_TCP, "198.51.100.9", 22, 0, 80,
		 424);
	add_dest(&b, "203.0.113.1", IPPROTO_TCP, "198.51.100.7", 443, 7, 20,
		 28232);
	add_dest(&b, "203.0.113.1", IPPROTO_UDP, "198.51.100.53", 53, 0, 12,
		 64512);
	add_dest(&b, "2001:db8::1", IPPROTO_TCP, "2001:db8:100::7", 443, 0, 5,
		 64512);
	assert_int_equal(store_write(st, &b), 0);
	store_batch_free(&b);
}

/* ---- files, logs and damage ---- */

static char captured[16384];
static int capture_saved = -1;

/* Sends this process's stderr (the log) to a file until capture_end(). */
static void capture_start(void)
{
	char path[300];
	int fd;

	snprintf(path, sizeof(path), "%s/stderr.log", tmpdir);
	fflush(stderr);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	capture_saved = dup(2);
	assert_true(capture_saved >= 0);
	assert_int_equal(dup2(fd, 2), 2);
	close(fd);
}

/* Restores stderr, echoes what was logged and returns it. */
static const char *capture_end(void)
{
	char path[300];
	ssize_t n;
	int fd;

	fflush(stderr);
	assert_int_equal(dup2(capture_saved, 2), 2);
	close(capture_saved);
	capture_saved = -1;
	snprintf(path, sizeof(path), "%s/stderr.log", tmpdir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	n = read(fd, captured, sizeof(captured) - 1);
	close(fd);
	captured[n > 0 ? n : 0] = '\0';
	fputs(captured, stderr);
	return captured;
}

static int exists(const char *path, const char *suffix)
{
	char p[300];

	snprintf(p, sizeof(p), "%s%s", path, suffix);
	return access(p, F_OK) == 0;
}

/* The whole file into a malloc'd buffer (caller frees); *n its size. */
static char *slurp(const char *path, size_t *n)
{
	struct stat sb;
	char *buf;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	buf = malloc((size_t)sb.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(read(fd, buf, (size_t)sb.st_size), sb.st_size);
	close(fd);
	*n = (size_t)sb.st_size;
	return buf;
}

/* Asserts that path holds exactly what slurp() returned before. */
static void assert_same_file(const char *path, const char *before, size_t n)
{
	size_t m;
	char *now = slurp(path, &m);

	assert_int_equal(m, n);
	assert_memory_equal(now, before, n);
	free(now);
}

/* Writes garbage over all but the header of the root page of name (a
 * table or index).  The page must not be in the -wal. */
static void corrupt_root_page(const char *path, const char *name)
{
	char sql[128], junk[65536];
	long long root, size;
	int fd;

	snprintf(sql, sizeof(sql),
		 "SELECT rootpage FROM sqlite_schema WHERE name = '%s'", name);
	root = q_int(path, sql);
	size = q_int(path, "PRAGMA page_size");
	assert_true(root > 1 && size > 8 && size <= (long long)sizeof(junk));
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 37 + 11);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, junk, (size_t)size - 8,
				(off_t)((root - 1) * size + 8)),
			 size - 8);
	close(fd);
}

/* A gap log of n gaps of an earlier run, written as a full batch. */
static void write_gaps(struct store *st, int n)
{
	struct store_batch b;

	store_batch_init(&b);
	b.full = 1;
	fill_status(&b.status, STORE_STATE_RUNNING);
	for (int i = 1; i <= n; i++)
		add_gap(&b, T0 - DAY_MS, (uint32_t)i, T0 - DAY_MS + i * 1000,
			T0 - DAY_MS + i * 1000 + 500);
	assert_int_equal(store_write(st, &b), 0);
	store_batch_free(&b);
}

/* ---- opening, versions ---- */

/* schema/NNN_name.sql, in order */
#define MIGRATIONS "1:live,2:gaps,3:status,4:history,5:status_note,6:maplog," \
	"7:resync_histogram"
#define N_MIGRATIONS 7
/* what the migrations after 003 create (003 rebuilds status itself) */
#define DROP_SINCE_3 "DROP TABLE hist_gateway; DROP TABLE hist_host; " \
	"DROP TABLE hist_dest; DROP TABLE hist_kernel; DROP TABLE incident; " \
	"DROP INDEX hosts_ip; " \
	"DROP TABLE maplog_blocks; DROP TABLE maplog_runs; " \
	"DROP TABLE maplog_losses; DROP TABLE maplog_meta; "

static void test_migrations(void **state)
{
	const char *path = db_path("migrations");
	struct store *st = open_fresh("migrations");

	assert_int_equal(store_binary_schema_version(), N_MIGRATIONS);
	assert_int_equal(store_schema_version(st), N_MIGRATIONS);
	store_close(st);
	assert_int_equal(q_int(path, "PRAGMA user_version"), N_MIGRATIONS);
	assert_string_equal(q_text(path, "PRAGMA journal_mode"), "wal");
	assert_string_equal(
		q_text(path, "SELECT group_concat(version || ':' || name) FROM "
			     "(SELECT * FROM schema_migrations "
			     "ORDER BY applied_at, version)"),
		MIGRATIONS);
	long long applied = q_int(path, "SELECT sum(applied_at) FROM "
					"schema_migrations");

	/* reopening changes nothing */
	st = store_open(path, STORE_READ_WRITE);
	assert_non_null(st);
	assert_int_equal(store_schema_version(st), N_MIGRATIONS);
	store_close(st);
	assert_int_equal(q_int(path, "SELECT count(*) FROM schema_migrations"),
			 N_MIGRATIONS);
	assert_int_equal(q_int(path, "SELECT sum(applied_at) FROM "
				     "schema_migrations"), applied);
	/* read-only opens it too */
	st = store_open(path, STORE_READ_ONLY);
	assert_non_null(st);
	assert_int_equal(store_schema_version(st), N_MIGRATIONS);
	store_close(st);
}

static void test_newer_schema(void **state)
{
	const char *path = db_path("newer");
	struct store *st = open_fresh("newer");
	sqlite3 *db;

	store_close(st);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL,
				      NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	errno = 0;
	assert_null(store_open(path, STORE_READ_WRITE));
	assert_int_equal(errno, EPROTONOSUPPORT);
	errno = 0;
	assert_null(store_open(path, STORE_READ_ONLY));
	assert_int_equal(errno, EPROTONOSUPPORT);
	/* and nothing was changed */
	assert_int_equal(q_int(path, "PRAGMA user_version"), 99);
}

/* A database written by a binary that only knew migration 1. */
static void test_upgrade(void **state)
{
	const char *path = db_path("upgrade");
	struct store *st = open_fresh("upgrade");
	sqlite3 *db;

	store_close(st);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DROP TABLE gaps; " DROP_SINCE_3
					  "DELETE FROM schema_migrations "
					  "WHERE version >= 2; "
					  "PRAGMA user_version = 1", NULL, NULL,
				      NULL), SQLITE_OK);
	sqlite3_close(db);
	/* the web's read-only connection cannot use it yet */
	errno = 0;
	assert_null(store_open(path, STORE_READ_ONLY));
	assert_int_equal(errno, EPROTONOSUPPORT);
	/* the collector's read-write open upgrades it */
	st = store_open(path, STORE_READ_WRITE);
	assert_non_null(st);
	assert_int_equal(store_schema_version(st), N_MIGRATIONS);
	store_close(st);
	assert_string_equal(q_text(path, "SELECT group_concat(version || ':' "
					 "|| name) FROM schema_migrations"),
			    MIGRATIONS);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gaps"), 0);
	st = store_open(path, STORE_READ_ONLY);
	assert_non_null(st);
	store_close(st);
}

static void test_not_a_database(void **state)
{
	const char *path = db_path("garbage");
	const char *other = db_path("foreign");
	char junk[8192];
	sqlite3 *db;
	FILE *f;

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 131 + 7);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
	fclose(f);
	errno = 0;
	assert_null(store_open(path, STORE_READ_WRITE));
	assert_int_equal(errno, EILSEQ);
	errno = 0;
	assert_null(store_open(path, STORE_READ_ONLY));
	assert_int_equal(errno, EILSEQ);

	/* another program's SQLite database is not touched */
	unlink(other);
	assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL,
				      NULL), SQLITE_OK);
	sqlite3_close(db);
	errno = 0;
	assert_null(store_open(other, STORE_READ_WRITE));
	assert_int_equal(errno, EILSEQ);
	assert_int_equal(q_int(other, "SELECT count(*) FROM sqlite_schema"),
			 1);
}

static void test_read_only_missing(void **state)
{
	const char *path = db_path("missing");

	unlink(path);
	errno = 0;
	assert_null(store_open(path, STORE_READ_ONLY));
	assert_int_equal(errno, ENOENT);
	assert_int_equal(access(path, F_OK), -1);
}

/* One writer per database: a second READ_WRITE open is refused before it
 * writes anything, and says who holds the database; readers are not
 * blocked; the lock goes with the first store. */
static void test_one_writer(void **state)
{
	const char *path = db_path("onewriter");
	struct store *st = open_fresh("onewriter"), *ro, *again;
	struct store_batch b;
	char want[64], *before, *doc;
	const char *log;
	size_t n;

	/* a status row of this process, as a run writes it */
	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	b.status.pid = (uint64_t)getpid();
	add_gw(&b, "203.0.113.1", IPPROTO_TCP, 1, 1);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(store_test_exec(st, "PRAGMA wal_checkpoint(TRUNCATE)"),
			 0);
	before = slurp(path, &n);

	capture_start();
	errno = 0;
	again = store_open(path, STORE_READ_WRITE);
	log = capture_end();
	assert_null(again);
	assert_int_equal(errno, EWOULDBLOCK);
	snprintf(want, sizeof(want), "pid %d", (int)getpid());
	assert_non_null(strstr(log, want));
	assert_non_null(strstr(log, "test_store")); /* its name */
	assert_non_null(strstr(log, "started at 2026-11-25T09:00:00.000Z"));
	assert_non_null(strstr(log, "another process is writing"));
	assert_same_file(path, before, n);
	free(before);

	/* readers are not blocked, and the first writer still writes */
	ro = store_open(path, STORE_READ_ONLY);
	assert_non_null(ro);
	assert_int_equal(store_json_gateways(ro, T0, &doc), 0);
	assert_int_equal(jlen(doc, "$.gateways"), 1);
	free(doc);
	store_close(ro);
	assert_int_equal(store_write(st, &b), 0);
	store_batch_free(&b);

	/* the lock goes with the store */
	store_close(st);
	again = store_open(path, STORE_READ_WRITE);
	assert_non_null(again);
	store_close(again);
}

/* A start that fails leaves no half-made database behind, and an
 * existing database exactly as it was. */
static void test_failed_start_leaves_nothing(void **state)
{
	const char *path = db_path("halfmade");
	char wal[300], *before;
	struct store *st;
	size_t n;

	/* created, then given up (the run could not begin) */
	unlink(path);
	st = store_open(path, STORE_READ_WRITE);
	assert_non_null(st);
	assert_true(exists(path, ""));
	store_discard(st);
	assert_false(exists(path, ""));
	assert_false(exists(path, "-wal"));
	assert_false(exists(path, "-shm"));

	/* created, then failing inside store_open(): its WAL cannot be made
	 * (a directory is in the way) */
	snprintf(wal, sizeof(wal), "%s-wal", path);
	assert_int_equal(mkdir(wal, 0700), 0);
	errno = 0;
	assert_null(store_open(path, STORE_READ_WRITE));
	assert_int_not_equal(errno, 0);
	assert_false(exists(path, ""));
	assert_false(exists(path, "-shm"));
	assert_int_equal(rmdir(wal), 0);

	/* an existing database: opened and given up, byte for byte the same,
	 * and its -wal and -shm gone as after any close */
	st = open_fresh("halfmade");
	write_standard(st);
	store_close(st);
	before = slurp(path, &n);
	st = store_open(path, STORE_READ_WRITE);
	assert_non_null(st);
	store_discard(st);
	assert_same_file(path, before, n);
	assert_false(exists(path, "-wal"));
	free(before);
}

/* Failures at open are named for what they are: only a file that is no
 * SQLite database, or someone else's, is "not a natscope database". */
static void test_open_words(void **state)
{
	static char msg[4096];
	const char *path = db_path("words");
	const char *other = db_path("words-foreign");
	struct store *st = open_fresh("words");
	const char *log;
	sqlite3 *raw;
	int64_t t0;

	write_standard(st);
	store_close(st);

	/* locked: someone holds an exclusive lock on a rollback-journal
	 * copy of it (in WAL mode a writer blocks no reader) */
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw, "PRAGMA journal_mode = DELETE; "
					   "BEGIN EXCLUSIVE", NULL, NULL, NULL),
			 SQLITE_OK);
	capture_start();
	t0 = ns_mono_ns();
	errno = 0;
	st = store_open(path, STORE_READ_WRITE);
	log = capture_end();
	assert_null(st);
	assert_int_equal(errno, EBUSY);
	assert_true(ns_mono_ns() - t0 >= 1000000000LL); /* it waited */
	assert_non_null(strstr(log, "locked"));
	assert_null(strstr(log, "not a natscope database"));
	assert_int_equal(sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(raw);
	st = store_open(path, STORE_READ_WRITE); /* back to WAL */
	assert_non_null(st);
	store_close(st);

	/* permission denied (as root: in a child that is not, whose log
	 * comes back through a pipe; no cmocka calls in the child) */
	if (geteuid() == 0) {
		int fds[2], ws;
		ssize_t got;
		size_t len = 0;
		pid_t pid;

		assert_int_equal(chmod(tmpdir, 0711), 0);
		assert_int_equal(pipe(fds), 0);
		fflush(stderr);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			if (dup2(fds[1], 2) != 2 || setgid(65534) < 0 ||
			    setuid(65534) < 0)
				_exit(2);
			errno = 0;
			st = store_open(path, STORE_READ_WRITE);
			_exit(st == NULL && errno == EACCES ? 0 : 1);
		}
		close(fds[1]);
		while (len < sizeof(msg) - 1 &&
		       (got = read(fds[0], msg + len, sizeof(msg) - 1 - len)) > 0)
			len += (size_t)got;
		msg[len] = '\0';
		close(fds[0]);
		assert_int_equal(waitpid(pid, &ws, 0), pid);
		assert_int_equal(chmod(tmpdir, 0700), 0);
		fputs(msg, stderr);
		assert_true(WIFEXITED(ws));
		assert_int_equal(WEXITSTATUS(ws), 0);
		log = msg;
	} else {
		assert_int_equal(chmod(path, 0444), 0);
		capture_start();
		errno = 0;
		st = store_open(path, STORE_READ_WRITE);
		log = capture_end();
		assert_int_equal(chmod(path, 0644), 0);
		assert_null(st);
		assert_int_equal(errno, EACCES);
	}
	assert_non_null(strstr(log, "Permission denied"));
	assert_null(strstr(log, "not a natscope"));

	/* another program's database: not a natscope database */
	unlink(other);
	assert_int_equal(sqlite3_open(other, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw, "CREATE TABLE t (x)", NULL, NULL,
				      NULL), SQLITE_OK);
	sqlite3_close(raw);
	capture_start();
	st = store_open(other, STORE_READ_WRITE);
	log = capture_end();
	assert_null(st);
	assert_non_null(strstr(log, "not a natscope database"));
}

/* A damaged table that a run keeps (here the gap log) is found at open,
 * before anything is written, and named. */
static void test_corrupt_at_open(void **state)
{
	const char *path = db_path("corrupt-open");
	struct store *st = open_fresh("corrupt-open");
	const char *log;
	char *before;
	size_t n;

	write_gaps(st, 20);
	store_close(st);
	corrupt_root_page(path, "gaps");
	before = slurp(path, &n);
	capture_start();
	errno = 0;
	st = store_open(path, STORE_READ_WRITE);
	log = capture_end();
	assert_null(st);
	assert_int_equal(errno, EILSEQ);
	assert_non_null(strstr(log, "corrupt"));
	assert_non_null(strstr(log, "quick_check of gaps"));
	assert_null(strstr(log, "not a natscope database"));
	assert_same_file(path, before, n);
	assert_false(exists(path, "-wal"));
	free(before);
}

/* ---- writing and reading back ---- */

#define SAME(f) assert_int_equal(got.f, want.f)

static void test_round_trip(void **state)
{
	struct store *st = open_fresh("roundtrip");
	struct store_status want, got;
	struct store_gateway_row *rows;
	struct store_host_row *hosts;
	struct ns_addr gw = A("203.0.113.1");
	int64_t before = ns_now_ms(), after;
	size_t n;

	errno = 0;
	assert_int_equal(store_read_status(st, &got), -1);
	assert_int_equal(errno, ENOENT);
	write_standard(st);
	after = ns_now_ms();

	fill_status(&want, STORE_STATE_RUNNING);
	assert_int_equal(store_read_status(st, &got), 0);
	assert_string_equal(got.version, want.version);
	SAME(started_ms); SAME(pid); SAME(interval_s); SAME(state);
	SAME(as_of_ms); SAME(event_buffer_bytes); SAME(mappings_nat);
	SAME(mappings_local); SAME(mappings_silent); SAME(mappings_other); SAME(gateways); SAME(hosts);
	SAME(destinations); SAME(events_new); SAME(events_update); SAME(events_destroy);
	SAME(events_dumped); SAME(events_unknown_destroy); SAME(events_malformed);
	SAME(events_lost); SAME(events_enobufs); SAME(resync_count); SAME(resync_active);
	SAME(resync_last_started_ms); SAME(resync_last_done_ms);
	SAME(resync_last_duration_us); SAME(resync_last_entries);
	SAME(resync_last_added); SAME(resync_last_removed);
	SAME(resync_last_changed); SAME(conntrack_count); SAME(conntrack_max);
	SAME(conntrack_insert_failed); SAME(conntrack_drop); SAME(conntrack_early_drop);
	SAME(conntrack_clash_resolve); SAME(sysctl_port_range_lo); SAME(sysctl_port_range_hi);
	SAME(sysctl_tcp_tw_reuse); SAME(sysctl_tcp_fin_timeout); SAME(sysctl_tcp_timeout_time_wait);
	SAME(sysctl_conntrack_events); SAME(process_rss_bytes);
	assert_true(got.process_cpu_seconds == want.process_cpu_seconds);
	assert_int_equal(got.writes_ok, 1);
	assert_int_equal(got.writes_failed, 0);
	assert_in_range(got.writes_last_ms, before, after);
	assert_string_equal(got.writes_last_error, "");

	/* unknown (-1) counters come back as -1 */
	{
		struct store_batch b;

		store_batch_init(&b);
		fill_status(&b.status, STORE_STATE_RESYNCING);
		b.status.audit_difference = STORE_UNKNOWN;
		b.status.conntrack_count = b.status.conntrack_max = -1;
		b.status.conntrack_insert_failed = b.status.conntrack_drop = -1;
		b.status.conntrack_early_drop = b.status.conntrack_clash_resolve = -1;
		b.status.sysctl_port_range_lo = b.status.sysctl_port_range_hi = -1;
		b.status.sysctl_tcp_tw_reuse = b.status.sysctl_tcp_fin_timeout = -1;
		b.status.sysctl_tcp_timeout_time_wait = -1;
		b.status.sysctl_conntrack_events = -1;
		b.status.resync_last_duration_us = -1;
		b.status.resync_active = 1;
		b.status.writes_ok = 999; /* ignored: the store counts */
		assert_int_equal(store_write(st, &b), 0);
		store_batch_free(&b);
	}
	assert_int_equal(store_read_status(st, &got), 0);
	assert_int_equal(got.state, STORE_STATE_RESYNCING);
	assert_true(got.audit_difference == STORE_UNKNOWN);
	assert_int_equal(got.conntrack_count, -1);
	assert_int_equal(got.conntrack_max, -1);
	assert_int_equal(got.conntrack_insert_failed, -1);
	assert_int_equal(got.conntrack_drop, -1);
	assert_int_equal(got.conntrack_early_drop, -1);
	assert_int_equal(got.conntrack_clash_resolve, -1);
	assert_int_equal(got.sysctl_port_range_lo, -1);
	assert_int_equal(got.sysctl_port_range_hi, -1);
	assert_int_equal(got.sysctl_tcp_tw_reuse, -1);
	assert_int_equal(got.sysctl_tcp_fin_timeout, -1);
	assert_int_equal(got.sysctl_tcp_timeout_time_wait, -1);
	assert_int_equal(got.sysctl_conntrack_events, -1);
	assert_int_equal(got.resync_last_duration_us, -1);
	assert_int_equal(got.resync_active, 1);
	assert_int_equal(got.writes_ok, 2);

	/* gateways: IPv4 before IPv6, tcp before udp */
	assert_int_equal(store_read_gateways(st, &rows, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(ns_addr_cmp(&rows[0].ip, &gw), 0);
	assert_int_equal(rows[0].proto, IPPROTO_TCP);
	assert_int_equal(rows[0].deleted, 0);
	assert_int_equal(rows[0].ports_in_use, 1200);
	assert_int_equal(rows[0].mappings, 1500);
	assert_int_equal(rows[0].hosts, 3);
	assert_int_equal(rows[0].destinations, 4);
	{
		struct ns_addr w = A("198.51.100.7");

		assert_int_equal(ns_addr_cmp(&rows[0].worst_ip, &w), 0);
	}
	assert_int_equal(rows[0].worst_port, 443);
	assert_int_equal(rows[0].worst_zone, 0);
	assert_int_equal(rows[0].worst_mappings, 1100);
	assert_int_equal(rows[0].worst_capacity, 64512);
	for (int i = 0; i < NS_TCP_STATES; i++)
		assert_int_equal(rows[0].states[i], 100 + i);
	assert_int_equal(rows[1].proto, IPPROTO_UDP);
	assert_int_equal(rows[1].worst_mappings, 0);
	assert_int_equal(rows[1].worst_ip.family, 0);
	assert_int_equal(rows[2].ip.family, AF_INET6);
	{
		struct ns_addr v6 = A("2001:db8::1");

		assert_int_equal(ns_addr_cmp(&rows[2].ip, &v6), 0);
	}
	free(rows);

	/* top hosts, largest first, limited */
	assert_int_equal(store_read_top_hosts(st, &gw, IPPROTO_TCP, 2, &hosts,
					      &n), 0);
	assert_int_equal(n, 2);
	{
		struct ns_addr h0 = A("198.18.0.2"), h1 = A("198.18.0.3");

		assert_int_equal(ns_addr_cmp(&hosts[0].ip, &h0), 0);
		assert_int_equal(ns_addr_cmp(&hosts[1].ip, &h1), 0);
	}
	assert_int_equal(ns_addr_cmp(&hosts[0].gateway, &gw), 0);
	assert_int_equal(hosts[0].proto, IPPROTO_TCP);
	assert_int_equal(hosts[0].kind, NS_KIND_NAT);
	assert_int_equal(hosts[0].mappings, 1400);
	assert_int_equal(hosts[0].ports_in_use, 1150);
	free(hosts);
	assert_int_equal(store_read_top_hosts(st, &gw, IPPROTO_TCP, 10, &hosts,
					      &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(hosts[2].kind, NS_KIND_LOCAL);
	assert_int_equal(ns_addr_cmp(&hosts[2].ip, &gw), 0);
	free(hosts);
	/* a gateway without hosts: an empty list */
	assert_int_equal(store_read_top_hosts(st, &gw, IPPROTO_ICMP, 10,
					      &hosts, &n), 0);
	assert_int_equal(n, 0);
	free(hosts);
	store_close(st);
}

static void test_delta(void **state)
{
	const char *path = db_path("delta");
	struct store *st = open_fresh("delta");
	struct store_gateway_row *g;
	struct store_batch b;

	write_standard(st);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts"), 5);
	assert_int_equal(q_int(path, "SELECT count(*) FROM destinations"), 6);

	/* update, delete via mappings 0, add */
	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	g = add_gw(&b, "203.0.113.1", IPPROTO_TCP, 1300, 1600);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.2", NS_KIND_NAT,
		 1500, 1200);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.3", NS_KIND_NAT, 0,
		 0);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.4", NS_KIND_NAT, 7,
		 7);
	add_dest(&b, "203.0.113.1", IPPROTO_TCP, "198.51.100.8", 80, 0, 0, 0);
	add_dest(&b, "203.0.113.1", IPPROTO_TCP, "198.51.100.7", 443, 0, 1200,
		 64512);
	(void)g;
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(q_int(path, "SELECT ports_in_use FROM gateways WHERE "
				     "public_ip = '203.0.113.1' AND "
				     "proto = 'tcp'"), 1300);
	/* an upsert without worst bucket clears it */
	assert_int_equal(q_int(path, "SELECT worst_mappings FROM gateways "
				     "WHERE public_ip = '203.0.113.1' AND "
				     "proto = 'tcp'"), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts"), 5);
	assert_int_equal(q_int(path, "SELECT mappings FROM hosts WHERE "
				     "ip = '198.18.0.2' AND proto = 'tcp'"),
			 1500);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts WHERE "
				     "ip = '198.18.0.3'"), 0);
	assert_int_equal(q_int(path, "SELECT mappings FROM hosts WHERE "
				     "ip = '198.18.0.4'"), 7);
	assert_int_equal(q_int(path, "SELECT count(*) FROM destinations"), 5);
	assert_int_equal(q_int(path, "SELECT mappings FROM destinations WHERE "
				     "ip = '198.51.100.7' AND zone = 0"),
			 1200);
	/* the zone is part of the key: zone 7's bucket is untouched */
	assert_int_equal(q_int(path, "SELECT mappings FROM destinations WHERE "
				     "ip = '198.51.100.7' AND zone = 7"), 20);

	/* kind is not part of the key: a host that becomes local (or stops
	 * being) keeps one row, and a delete needs no kind */
	store_batch_clear(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.4", NS_KIND_LOCAL,
		 9, 9);
	assert_int_equal(store_write(st, &b), 0);
	assert_string_equal(q_text(path, "SELECT group_concat(kind || '/' || "
					 "mappings) FROM hosts WHERE "
					 "ip = '198.18.0.4'"), "local/9");
	store_batch_clear(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.4", NS_KIND_NAT, 0,
		 0);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts WHERE "
				     "ip = '198.18.0.4'"), 0);

	/* a deleted gateway goes, with its hosts and buckets; others stay */
	store_batch_clear(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	g = add_gw(&b, "203.0.113.1", IPPROTO_UDP, 0, 0);
	g->deleted = 1;
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gateways"), 2);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gateways WHERE "
				     "proto = 'udp'"), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts WHERE "
				     "proto = 'udp'"), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM destinations WHERE "
				     "proto = 'udp'"), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts"), 3);

	/* full replaces every live row */
	store_batch_clear(&b);
	b.full = 1;
	fill_status(&b.status, STORE_STATE_RUNNING);
	add_gw(&b, "192.0.2.1", IPPROTO_ICMP, 1, 1);
	add_host(&b, "192.0.2.1", IPPROTO_ICMP, "198.18.1.1", NS_KIND_NAT, 1,
		 1);
	add_dest(&b, "192.0.2.1", IPPROTO_ICMP, "198.51.100.1", 0, 0, 1,
		 65536);
	assert_int_equal(store_write(st, &b), 0);
	assert_string_equal(q_text(path, "SELECT group_concat(public_ip || '/' "
					 "|| proto) FROM gateways"),
			    "192.0.2.1/icmp");
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts"), 1);
	assert_int_equal(q_int(path, "SELECT count(*) FROM destinations"), 1);
	assert_int_equal(q_int(path, "SELECT port FROM destinations"), 0);
	assert_int_equal(q_int(path, "SELECT capacity FROM destinations"),
			 65536);

	/* begin_run empties the live tables and says starting */
	fill_status(&b.status, STORE_STATE_RUNNING);
	assert_int_equal(store_begin_run(st, &b.status), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gateways"), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts"), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM destinations"), 0);
	assert_string_equal(q_text(path, "SELECT state FROM status"),
			    "starting");
	assert_int_equal(q_int(path, "SELECT count(*) FROM status"), 1);
	store_batch_free(&b);
	store_close(st);
}

static void test_invalid_row(void **state)
{
	const char *path = db_path("invalid");
	struct store *st = open_fresh("invalid");
	struct store_batch b;

	write_standard(st);
	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.9", NS_KIND_NAT, 1,
		 1);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.10", NS_KIND_NAT, 1,
		 1)->ip.family = 99;
	errno = 0;
	assert_int_equal(store_write(st, &b), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts WHERE "
				     "ip = '198.18.0.9'"), 0);
	/* the next write does not carry the failed one's rows along */
	store_batch_clear(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.11", NS_KIND_NAT, 1,
		 1);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts WHERE "
				     "ip = '198.18.0.9'"), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts WHERE "
				     "ip = '198.18.0.11'"), 1);
	assert_string_equal(q_text(path, "SELECT writes_last_error FROM status"),
			    "invalid row in batch");
	store_batch_free(&b);
	store_close(st);
}

/* ---- failures ---- */

static void test_disk_full(void **state)
{
	const char *path = db_path("full");
	struct store *st = open_fresh("full");
	struct store_status got;
	struct store_batch b;
	char sql[96];
	char ip[NS_ADDR_STRLEN];

	write_standard(st);
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld",
		 q_int(path, "PRAGMA page_count"));
	assert_int_equal(store_test_exec(st, sql), 0);

	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	b.status.as_of_ms = T0 + 5000;
	for (int i = 0; i < 20000; i++) {
		snprintf(ip, sizeof(ip), "198.51.100.%d", i % 250);
		add_dest(&b, "203.0.113.1", IPPROTO_TCP, ip,
			 (uint16_t)(1024 + i / 250), 0, 1, 64512);
	}
	errno = 0;
	assert_int_equal(store_write(st, &b), -1);
	assert_int_equal(errno, ENOSPC);
	/* the live tables are as they were, and the status row says that
	 * they are not current (the rest of it as of the last write) */
	assert_int_equal(q_int(path, "SELECT count(*) FROM destinations"), 6);
	assert_int_equal(q_int(path, "SELECT as_of_ms FROM status"), T0);
	assert_int_equal(q_int(path, "SELECT writes_ok FROM status"), 1);
	assert_int_equal(q_int(path, "SELECT writes_failed FROM status"), 1);
	assert_string_equal(q_text(path, "SELECT state FROM status"),
			    "db-error");
	assert_non_null(strstr(q_text(path, "SELECT writes_last_error FROM "
					    "status"), "full"));

	/* room again: the next write works and reports the failure */
	assert_int_equal(store_test_exec(st, "PRAGMA max_page_count = "
					     "1073741823"), 0);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM destinations"),
			 20006);
	assert_int_equal(store_read_status(st, &got), 0);
	assert_int_equal(got.writes_ok, 2);
	assert_int_equal(got.writes_failed, 1);
	assert_int_equal(got.as_of_ms, T0 + 5000);
	assert_int_equal(got.state, STORE_STATE_RUNNING);
	assert_non_null(strstr(got.writes_last_error, "full"));
	store_batch_free(&b);
	store_close(st);
}

static void test_locked(void **state)
{
	const char *path = db_path("locked");
	struct store *st = open_fresh("locked"), *ro;
	struct store_batch b;
	sqlite3 *other;
	char *doc;

	write_standard(st);
	ro = store_open(path, STORE_READ_ONLY);
	assert_non_null(ro);
	assert_int_equal(store_test_exec(st, "PRAGMA busy_timeout = 100"), 0);
	assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE; DELETE FROM "
					     "hosts", NULL, NULL, NULL),
			 SQLITE_OK);

	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	b.status.as_of_ms = T0 + 5000;
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.2", NS_KIND_NAT,
		 1, 1);
	errno = 0;
	assert_int_equal(store_write(st, &b), -1);
	assert_int_equal(errno, EBUSY);
	errno = 0;
	assert_int_equal(store_begin_run(st, &b.status), -1);
	assert_int_equal(errno, EBUSY);
	/* readers are not blocked by a writer in WAL mode */
	assert_int_equal(store_json_gateways(ro, T0, &doc), 0);
	assert_int_equal(jlen(doc, "$.gateways"), 3);
	free(doc);

	assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(other);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(q_int(path, "SELECT mappings FROM hosts WHERE "
				     "ip = '198.18.0.2' AND proto = 'tcp'"), 1);
	assert_int_equal(q_int(path, "SELECT writes_failed FROM status"), 1);
	assert_string_equal(q_text(path, "SELECT writes_last_error FROM status"),
			    "starting a transaction: database is locked");
	/* the read-only store saw it */
	assert_int_equal(store_json_hosts(ro, &(struct ns_addr){ 0 }, 0, 1, T0,
					  &doc), -1);
	assert_int_equal(errno, EINVAL);
	{
		struct ns_addr gw = A("203.0.113.1");

		assert_int_equal(store_json_hosts(ro, &gw, IPPROTO_TCP, 1,
						  T0, &doc), 0);
		assert_string_equal(jtext(doc, "$.as_of"),
				    "2026-11-25T10:00:05.000Z");
		free(doc);
	}
	/* and cannot write */
	errno = 0;
	assert_int_equal(store_write(ro, &b), -1);
	assert_int_equal(errno, EROFS);
	store_batch_free(&b);
	store_close(ro);
	store_close(st);
}

/* Someone else commits to the database (the sqlite3 tool, an older
 * natscope): the next delta is refused, the status row says db-error, and
 * the full write that follows puts the tables right. */
static void test_foreign_change(void **state)
{
	const char *path = db_path("foreign-change");
	struct store *st = open_fresh("foreign-change"), *ro;
	struct ns_addr gw = A("203.0.113.1");
	struct store_batch b;
	sqlite3 *other;
	char *doc;

	write_standard(st);
	ro = store_open(path, STORE_READ_ONLY);
	assert_non_null(ro);

	/* a transaction rolled back is no change */
	assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN; DELETE FROM gateways; "
					     "ROLLBACK", NULL, NULL, NULL),
			 SQLITE_OK);
	write_status_only(st, STORE_STATE_RUNNING, T0 + 1000);

	/* a commit is */
	assert_int_equal(sqlite3_exec(other, "DELETE FROM gateways; "
					     "DELETE FROM hosts",
				      NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	b.status.as_of_ms = T0 + 2000;
	add_dest(&b, "203.0.113.1", IPPROTO_TCP, "198.51.100.7", 443, 0, 1101,
		 64512);
	errno = 0;
	assert_int_equal(store_write(st, &b), -1);
	assert_int_equal(errno, ESTALE);
	/* nothing of the delta landed; the status row says why */
	assert_int_equal(q_int(path, "SELECT mappings FROM destinations WHERE "
				     "ip = '198.51.100.7' AND zone = 0"), 1100);
	assert_string_equal(q_text(path, "SELECT state FROM status"),
			    "db-error");
	assert_int_equal(q_int(path, "SELECT writes_failed FROM status"), 1);
	assert_int_equal(q_int(path, "SELECT as_of_ms FROM status"), T0 + 1000);
	assert_non_null(strstr(q_text(path, "SELECT writes_last_error FROM "
					    "status"), "another connection"));
	/* and no answer calls the tables complete */
	assert_int_equal(store_json_gateways(ro, T0 + 2000, &doc), 0);
	assert_string_equal(jtype(doc, "$.coverage.complete"), "false");
	assert_int_equal(jlen(doc, "$.gateways"), 0);
	free(doc);
	assert_int_equal(store_json_destinations(ro, &gw, IPPROTO_TCP, 5,
						 T0 + 2000, &doc), -1);
	assert_int_equal(errno, ENOENT); /* its gateway row is gone */
	assert_int_equal(store_json_status(ro, T0 + 2000, &doc), 0);
	assert_string_equal(jtext(doc, "$.state"), "db-error");
	assert_string_equal(jtype(doc, "$.coverage.complete"), "false");
	assert_int_equal(jint(doc, "$.writes.failed"), 1);
	free(doc);

	/* the full write that follows puts everything right */
	write_standard(st);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gateways"), 3);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts"), 5);
	assert_string_equal(q_text(path, "SELECT state FROM status"),
			    "running");
	assert_int_equal(store_json_gateways(ro, T0, &doc), 0);
	assert_string_equal(jtype(doc, "$.coverage.complete"), "true");
	free(doc);
	/* and deltas are taken again */
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(q_int(path, "SELECT mappings FROM destinations WHERE "
				     "ip = '198.51.100.7' AND zone = 0"), 1101);
	store_batch_free(&b);
	store_close(ro);
	store_close(st);
}

/* One damaged page in the gap log, found while running: every write
 * fails and is counted, the status row says db-error, writes go on being
 * tried, and no answer presents the tables as complete. */
static void test_corrupt_while_running(void **state)
{
	const char *path = db_path("corrupt-run");
	struct store *st = open_fresh("corrupt-run"), *ro;
	struct store_status got;
	struct store_batch b;
	char *doc;
	int rc;

	write_gaps(st, 20);
	write_standard(st);
	assert_int_equal(store_test_exec(st, "PRAGMA wal_checkpoint(TRUNCATE)"),
			 0);
	corrupt_root_page(path, "gaps");
	/* forget the cached copy: the next read of it comes from the file */
	assert_int_equal(store_test_exec(st, "PRAGMA shrink_memory"), 0);

	store_batch_init(&b);
	b.full = 1;
	fill_status(&b.status, STORE_STATE_RUNNING);
	b.status.as_of_ms = T0 + 5000;
	add_gw(&b, "203.0.113.1", IPPROTO_TCP, 7, 7);
	for (int i = 1; i <= 2; i++) {
		errno = 0;
		assert_int_equal(store_write(st, &b), -1);
		assert_int_equal(errno, EILSEQ);
		assert_string_equal(q_text(path, "SELECT state FROM status"),
				    "db-error");
		assert_int_equal(q_int(path, "SELECT writes_failed FROM "
					     "status"), i);
		assert_non_null(strstr(q_text(path, "SELECT writes_last_error "
						    "FROM status"), "corrupt"));
	}
	assert_int_equal(q_int(path, "SELECT as_of_ms FROM status"), T0);

	/* readers: the status row says so; an answer that needs the damaged
	 * page fails, one that does not says it is not complete */
	ro = store_open(path, STORE_READ_ONLY);
	assert_non_null(ro);
	assert_int_equal(store_read_status(ro, &got), 0);
	assert_int_equal(got.state, STORE_STATE_DB_ERROR);
	assert_int_equal(got.writes_failed, 2);
	rc = store_json_gateways(ro, T0 + 5000, &doc);
	if (rc == 0) {
		assert_string_equal(jtype(doc, "$.coverage.complete"), "false");
		free(doc);
	} else {
		assert_int_equal(errno, EILSEQ);
	}
	store_close(ro);
	store_batch_free(&b);
	store_close(st);
}

/* A copied database (no -wal, no -shm, the writer gone) is readable. */
static void test_read_copy(void **state)
{
	const char *path = db_path("copy");
	struct store *st = open_fresh("copy");
	char *doc, wal[300];

	write_standard(st);
	store_close(st);
	snprintf(wal, sizeof(wal), "%s-wal", path);
	assert_int_equal(access(wal, F_OK), -1);
	st = store_open(path, STORE_READ_ONLY);
	assert_non_null(st);
	assert_int_equal(store_json_gateways(st, T0, &doc), 0);
	assert_int_equal(jlen(doc, "$.gateways"), 3);
	free(doc);
	store_close(st);
}

/* How many gaps start before ms. */
static long long gaps_before(const char *path, int64_t ms)
{
	char sql[96];

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM gaps WHERE start_ms < %lld",
		 (long long)ms);
	return q_int(path, sql);
}

static void test_gap_retention_count(void **state)
{
	const char *path = db_path("gaps");
	struct store *st = open_fresh("gaps");
	int64_t run = T0 - 3600 * 1000;
	struct store_batch b;

	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	/* 1100 closed gaps, one a second, the newest ending at T0 */
	for (int i = 1; i <= 1100; i++)
		add_gap(&b, run, i, T0 - (1101 - i) * 1000,
			T0 - (1101 - i) * 1000 + 500);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gaps"), 1000);
	assert_int_equal(q_int(path, "SELECT min(seq) FROM gaps"), 101);
	assert_int_equal(q_int(path, "SELECT max(seq) FROM gaps"), 1100);

	/* upsert by key: seq 1100 is rewritten, not added */
	store_batch_clear(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	add_gap(&b, run, 1100, T0 - 1000, T0 + 700)->events_lost = -1;
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gaps"), 1000);
	assert_int_equal(q_int(path, "SELECT end_ms FROM gaps WHERE "
				     "seq = 1100"), T0 + 700);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gaps WHERE "
				     "seq = 1100 AND events_lost IS NULL"), 1);

	/* one more young gap: the oldest goes */
	store_batch_clear(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	add_gap(&b, run, 1101, T0 + 1000, T0 + 1500);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gaps"), 1000);
	assert_int_equal(q_int(path, "SELECT min(seq) FROM gaps"), 102);
	store_batch_free(&b);
	store_close(st);
}

static void test_gap_retention_age(void **state)
{
	const char *path = db_path("gaps2");
	struct store *st = open_fresh("gaps2");
	int64_t old_run = T0 - 40 * DAY_MS, run = T0 - 3600 * 1000;
	int64_t cutoff = T0 - 30 * DAY_MS;
	struct store_batch b;

	/* a run 40 days old with a gap still open: kept while the run is
	 * the current one, however old */
	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_RESYNCING);
	b.status.started_ms = old_run;
	add_gap(&b, old_run, 1, old_run + 1000, 0);
	add_gap(&b, old_run, 2, old_run - 1000, old_run - 500);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gaps"), 1);
	assert_int_equal(q_int(path, "SELECT seq FROM gaps"), 1);

	/* a new run: that open gap is dead and old, it goes; closed gaps
	 * go after 30 days */
	store_batch_clear(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	b.status.started_ms = run;
	add_gap(&b, run - DAY_MS, 1, cutoff - 2000, cutoff - 1);
	add_gap(&b, run - DAY_MS, 2, cutoff - 1000, cutoff + 1);
	add_gap(&b, run, 1, T0 - 1000, T0 - 500);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(gaps_before(path, old_run + 2000), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gaps"), 2);
	assert_int_equal(gaps_before(path, cutoff), 1); /* ended after it */
	store_batch_free(&b);
	store_close(st);
}

/* ---- JSON ---- */

static void test_json_time(void **state)
{
	struct store *st = open_fresh("time");
	char *doc;

	write_status_only(st, STORE_STATE_RUNNING, 1795600800999LL);
	assert_int_equal(store_json_gateways(st, 1795600801250LL, &doc), 0);
	assert_json_valid(doc);
	assert_string_equal(jtext(doc, "$.generated_at"),
			    "2026-11-25T10:00:01.250Z");
	assert_string_equal(jtext(doc, "$.as_of"),
			    "2026-11-25T10:00:00.999Z");
	free(doc);
	write_status_only(st, STORE_STATE_RUNNING, 1795600800001LL);
	assert_int_equal(store_json_gateways(st, 951782400000LL, &doc), 0);
	assert_string_equal(jtext(doc, "$.generated_at"),
			    "2000-02-29T00:00:00.000Z");
	assert_string_equal(jtext(doc, "$.as_of"),
			    "2026-11-25T10:00:00.001Z");
	free(doc);
	store_close(st);
}

static void test_json_gateways(void **state)
{
	struct store *st = open_fresh("jgateways");
	struct store_gateway_row *g;
	struct store_batch b;
	char *doc;

	/* before any run: no as_of, not complete, no gateways */
	assert_int_equal(store_json_gateways(st, T0, &doc), 0);
	assert_json_valid(doc);
	assert_string_equal(jtype(doc, "$.as_of"), "null");
	assert_string_equal(jtype(doc, "$.coverage.complete"), "false");
	assert_int_equal(jlen(doc, "$.coverage.gaps"), 0);
	assert_int_equal(jlen(doc, "$.gateways"), 0);
	free(doc);

	store_batch_init(&b);
	b.full = 1;
	fill_status(&b.status, STORE_STATE_RUNNING);
	/* written out of order on purpose */
	add_gw(&b, "2001:db8:0:0:0:0:0:1", IPPROTO_TCP, 6, 6);
	g = add_gw(&b, "203.0.113.10", IPPROTO_TCP, 1200, 1500);
	g->hosts = 3;
	g->destinations = 4;
	set_worst(g, "198.51.100.7", 443, 2, 1100, 64512);
	g->states[2] = 2;
	g->states[3] = 400;
	g->states[5] = 1;
	g->states[7] = 1097;
	add_gw(&b, "203.0.113.9", IPPROTO_UDP, 3, 3);
	add_gw(&b, "203.0.113.9", IPPROTO_TCP, 4, 4);
	add_gw(&b, "192.0.2.1", IPPROTO_ICMP, 1, 1);
	add_gw(&b, "2001:db8::1:0:0:2", IPPROTO_TCP, 7, 7);
	assert_int_equal(store_write(st, &b), 0);
	store_batch_free(&b);

	assert_int_equal(store_json_gateways(st, T0 + 1250, &doc), 0);
	assert_json_valid(doc);
	assert_string_equal(jtext(doc, "$.generated_at"),
			    "2026-11-25T10:00:01.250Z");
	assert_string_equal(jtext(doc, "$.as_of"), "2026-11-25T10:00:00.000Z");
	assert_string_equal(jtype(doc, "$.coverage.complete"), "true");
	assert_int_equal(jlen(doc, "$.coverage.gaps"), 0);
	assert_int_equal(jlen(doc, "$.gateways"), 6);
	/* family, then numeric address, then proto name */
	assert_string_equal(jtext(doc, "$.gateways[0].public_ip"), "192.0.2.1");
	assert_string_equal(jtext(doc, "$.gateways[0].proto"), "icmp");
	assert_string_equal(jtext(doc, "$.gateways[1].public_ip"),
			    "203.0.113.9");
	assert_string_equal(jtext(doc, "$.gateways[1].proto"), "tcp");
	assert_string_equal(jtext(doc, "$.gateways[2].public_ip"),
			    "203.0.113.9");
	assert_string_equal(jtext(doc, "$.gateways[2].proto"), "udp");
	assert_string_equal(jtext(doc, "$.gateways[3].public_ip"),
			    "203.0.113.10");
	assert_string_equal(jtext(doc, "$.gateways[4].public_ip"),
			    "2001:db8::1");
	assert_string_equal(jtext(doc, "$.gateways[5].public_ip"),
			    "2001:db8::1:0:0:2");
	/* the full object */
	assert_int_equal(jint(doc, "$.gateways[3].ports_in_use"), 1200);
	assert_int_equal(jint(doc, "$.gateways[3].port_space"), 65535);
	assert_int_equal(jint(doc, "$.gateways[3].mappings"), 1500);
	assert_int_equal(jint(doc, "$.gateways[3].hosts"), 3);
	assert_int_equal(jint(doc, "$.gateways[3].destinations"), 4);
	assert_string_equal(jtext(doc, "$.gateways[3].worst_destination.ip"),
			    "198.51.100.7");
	assert_int_equal(jint(doc, "$.gateways[3].worst_destination.port"),
			 443);
	assert_int_equal(jint(doc, "$.gateways[3].worst_destination.zone"), 2);
	assert_int_equal(jint(doc, "$.gateways[3].worst_destination.mappings"),
			 1100);
	assert_int_equal(jint(doc, "$.gateways[3].worst_destination.capacity"),
			 64512);
	assert_string_equal(jtype(doc, "$.gateways[3].states"), "object");
	assert_int_equal(jint(doc, "$.gateways[3].states.none"), 0);
	assert_int_equal(jint(doc, "$.gateways[3].states.syn_recv"), 2);
	assert_int_equal(jint(doc, "$.gateways[3].states.established"), 400);
	assert_int_equal(jint(doc, "$.gateways[3].states.close_wait"), 1);
	assert_int_equal(jint(doc, "$.gateways[3].states.time_wait"), 1097);
	assert_int_equal(jint(doc, "$.gateways[3].states.syn_sent2"), 0);
	assert_string_equal(
		jtext(doc, "$.gateways[3].states"),
		"{\"none\":0,\"syn_sent\":0,\"syn_recv\":2,\"established\":400,"
		"\"fin_wait\":0,\"close_wait\":1,\"last_ack\":0,"
		"\"time_wait\":1097,\"close\":0,\"syn_sent2\":0}");
	/* no bucket: null; states only for TCP */
	assert_string_equal(jtype(doc, "$.gateways[1].worst_destination"),
			    "null");
	assert_string_equal(jtype(doc, "$.gateways[1].states"), "object");
	assert_string_equal(jtype(doc, "$.gateways[0].states"), "(missing)");
	assert_string_equal(jtype(doc, "$.gateways[2].states"), "(missing)");
	assert_string_equal(jtype(doc, "$.gateways[4].states"), "object");
	/* the keys and their order */
	assert_string_equal(
		jtext(doc, "$.gateways[2]"),
		"{\"public_ip\":\"203.0.113.9\",\"proto\":\"udp\","
		"\"ports_in_use\":3,\"port_space\":65535,\"mappings\":3,"
		"\"hosts\":1,\"destinations\":1,\"worst_destination\":null}");
	free(doc);
	store_close(st);
}

static void test_json_hosts_dests(void **state)
{
	struct store *st = open_fresh("jhosts");
	struct ns_addr gw = A("203.0.113.1"), v6 = A("2001:db8::1");
	struct store_batch b;
	char *doc;

	store_batch_init(&b);
	b.full = 1;
	fill_status(&b.status, STORE_STATE_RUNNING);
	add_gw(&b, "203.0.113.1", IPPROTO_TCP, 100, 100);
	add_gw(&b, "2001:db8::1", IPPROTO_UDP, 1, 1);
	add_gw(&b, "203.0.113.2", IPPROTO_TCP, 1, 1);
	/* ties at 10 mappings ordered by address: numeric, IPv4 first */
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "2001:db8::5", NS_KIND_NAT, 10,
		 10);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.10", NS_KIND_NAT, 10,
		 9);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.9", NS_KIND_NAT, 10,
		 8);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "198.18.0.200", NS_KIND_NAT,
		 50, 40);
	add_host(&b, "203.0.113.1", IPPROTO_TCP, "203.0.113.1", NS_KIND_LOCAL,
		 20, 20);
	add_host(&b, "2001:db8::1", IPPROTO_UDP, "2001:db8:1::0:0:1",
		 NS_KIND_NAT, 1, 1);
	add_dest(&b, "203.0.113.1", IPPROTO_TCP, "198.51.100.10", 443, 0, 30,
		 64512);
	add_dest(&b, "203.0.113.1", IPPROTO_TCP, "198.51.100.9", 443, 0, 30,
		 64512);
	add_dest(&b, "203.0.113.1", IPPROTO_TCP, "198.51.100.9", 80, 0, 30,
		 424);
	add_dest(&b, "203.0.113.1", IPPROTO_TCP, "198.51.100.1", 22, 3, 40,
		 28232);
	add_dest(&b, "2001:db8::1", IPPROTO_UDP, "2001:db8:100::53", 53, 0, 1,
		 64512);
	assert_int_equal(store_write(st, &b), 0);
	store_batch_free(&b);

	assert_int_equal(store_json_hosts(st, &gw, IPPROTO_TCP, 50, T0 + 1250,
					  &doc), 0);
	assert_json_valid(doc);
	assert_string_equal(jtext(doc, "$.generated_at"),
			    "2026-11-25T10:00:01.250Z");
	assert_string_equal(jtext(doc, "$.as_of"), "2026-11-25T10:00:00.000Z");
	assert_string_equal(jtype(doc, "$.coverage.complete"), "true");
	assert_string_equal(jtext(doc, "$.public_ip"), "203.0.113.1");
	assert_string_equal(jtext(doc, "$.proto"), "tcp");
	assert_int_equal(jint(doc, "$.total"), 5);
	assert_int_equal(jint(doc, "$.limit"), 50);
	assert_int_equal(jlen(doc, "$.hosts"), 5);
	assert_string_equal(jtext(doc, "$.hosts[0]"),
			    "{\"ip\":\"198.18.0.200\",\"mappings\":50,"
			    "\"ports_in_use\":40,\"kind\":\"nat\"}");
	assert_string_equal(jtext(doc, "$.hosts[1].ip"), "203.0.113.1");
	assert_string_equal(jtext(doc, "$.hosts[1].kind"), "local");
	assert_string_equal(jtext(doc, "$.hosts[2].ip"), "198.18.0.9");
	assert_string_equal(jtext(doc, "$.hosts[3].ip"), "198.18.0.10");
	assert_string_equal(jtext(doc, "$.hosts[4].ip"), "2001:db8::5");
	free(doc);

	/* limit cuts the list, not the total */
	assert_int_equal(store_json_hosts(st, &gw, IPPROTO_TCP, 2, T0, &doc),
			 0);
	assert_int_equal(jint(doc, "$.total"), 5);
	assert_int_equal(jint(doc, "$.limit"), 2);
	assert_int_equal(jlen(doc, "$.hosts"), 2);
	assert_string_equal(jtext(doc, "$.hosts[1].ip"), "203.0.113.1");
	free(doc);

	/* IPv6 in canonical text */
	assert_int_equal(store_json_hosts(st, &v6, IPPROTO_UDP, 50, T0, &doc),
			 0);
	assert_string_equal(jtext(doc, "$.public_ip"), "2001:db8::1");
	assert_string_equal(jtext(doc, "$.proto"), "udp");
	assert_string_equal(jtext(doc, "$.hosts[0].ip"), "2001:db8:1::1");
	free(doc);

	/* a gateway row without hosts: an empty list, not an error */
	{
		struct ns_addr g2 = A("203.0.113.2");

		assert_int_equal(store_json_hosts(st, &g2, IPPROTO_TCP, 50, T0,
						  &doc), 0);
		assert_int_equal(jint(doc, "$.total"), 0);
		assert_string_equal(jtype(doc, "$.hosts"), "array");
		assert_int_equal(jlen(doc, "$.hosts"), 0);
		free(doc);
	}

	/* no gateway row for (ip, proto): ENOENT */
	errno = 0;
	doc = (char *)1;
	assert_int_equal(store_json_hosts(st, &gw, IPPROTO_UDP, 50, T0, &doc),
			 -1);
	assert_int_equal(errno, ENOENT);
	assert_null(doc);
	{
		struct ns_addr none = A("192.0.2.99");

		errno = 0;
		assert_int_equal(store_json_destinations(st, &none,
							 IPPROTO_TCP, 50, T0,
							 &doc), -1);
		assert_int_equal(errno, ENOENT);
	}

	/* destinations: largest first, ties by address then port */
	assert_int_equal(store_json_destinations(st, &gw, IPPROTO_TCP, 3,
						 T0 + 1250, &doc), 0);
	assert_json_valid(doc);
	assert_string_equal(jtext(doc, "$.generated_at"),
			    "2026-11-25T10:00:01.250Z");
	assert_string_equal(jtype(doc, "$.coverage.complete"), "true");
	assert_string_equal(jtext(doc, "$.public_ip"), "203.0.113.1");
	assert_int_equal(jint(doc, "$.total"), 4);
	assert_int_equal(jint(doc, "$.limit"), 3);
	assert_int_equal(jlen(doc, "$.destinations"), 3);
	assert_string_equal(jtext(doc, "$.destinations[0]"),
			    "{\"ip\":\"198.51.100.1\",\"port\":22,\"zone\":3,"
			    "\"mappings\":40,\"capacity\":28232}");
	assert_string_equal(jtext(doc, "$.destinations[1].ip"), "198.51.100.9");
	assert_int_equal(jint(doc, "$.destinations[1].port"), 80);
	assert_int_equal(jint(doc, "$.destinations[1].capacity"), 424);
	assert_string_equal(jtext(doc, "$.destinations[2].ip"), "198.51.100.9");
	assert_int_equal(jint(doc, "$.destinations[2].port"), 443);
	free(doc);
	assert_int_equal(store_json_destinations(st, &v6, IPPROTO_UDP, 10, T0,
						 &doc), 0);
	assert_string_equal(jtext(doc, "$.destinations[0].ip"),
			    "2001:db8:100::53");
	free(doc);
	store_close(st);
}

static void test_json_coverage(void **state)
{
	struct store *st = open_fresh("coverage");
	int64_t run = T0 - 3600 * 1000;
	struct store_gap_row *g;
	struct store_batch b;
	char *doc;

	/* a gap that ended before the interval [T0 - 5 s, T0] */
	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	add_gap(&b, run, 1, T0 - 10000, T0 - 5001);
	/* an earlier run's gap left open: that run is over */
	add_gap(&b, run - 7200 * 1000, 4, T0 - 7300 * 1000, 0);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(store_json_gateways(st, T0, &doc), 0);
	assert_string_equal(jtype(doc, "$.coverage.complete"), "true");
	assert_int_equal(jlen(doc, "$.coverage.gaps"), 0);
	free(doc);

	/* starting: never complete */
	write_status_only(st, STORE_STATE_STARTING, T0);
	assert_int_equal(store_json_gateways(st, T0, &doc), 0);
	assert_string_equal(jtype(doc, "$.coverage.complete"), "false");
	assert_int_equal(jlen(doc, "$.coverage.gaps"), 0);
	free(doc);

	/* a closed gap inside the interval */
	store_batch_clear(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	g = add_gap(&b, run, 2, T0 - 8000, T0 - 2000);
	g->events_lost = 1234;
	g->enobufs = 3;
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(store_json_gateways(st, T0, &doc), 0);
	assert_json_valid(doc);
	assert_string_equal(jtype(doc, "$.coverage.complete"), "false");
	assert_int_equal(jlen(doc, "$.coverage.gaps"), 1);
	assert_string_equal(
		jtext(doc, "$.coverage.gaps[0]"),
		"{\"seq\":2,\"start\":\"2026-11-25T09:59:52.000Z\","
		"\"end\":\"2026-11-25T09:59:58.000Z\",\"events_lost\":1234,"
		"\"enobufs\":3,\"added\":10,\"removed\":20,\"changed\":30,"
		"\"reason\":\"enobufs\"}");
	free(doc);

	/* and an open one (unknown loss), in every answer */
	store_batch_clear(&b);
	fill_status(&b.status, STORE_STATE_RESYNCING);
	g = add_gap(&b, run, 3, T0 - 1000, 0);
	g->events_lost = -1;
	snprintf(g->reason, sizeof(g->reason), "dump-error");
	add_gw(&b, "203.0.113.1", IPPROTO_TCP, 1, 1);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(store_json_gateways(st, T0, &doc), 0);
	assert_string_equal(jtype(doc, "$.coverage.complete"), "false");
	assert_int_equal(jlen(doc, "$.coverage.gaps"), 2);
	assert_int_equal(jint(doc, "$.coverage.gaps[0].seq"), 2);
	assert_int_equal(jint(doc, "$.coverage.gaps[1].seq"), 3);
	assert_string_equal(jtype(doc, "$.coverage.gaps[1].end"), "null");
	assert_string_equal(jtype(doc, "$.coverage.gaps[1].events_lost"),
			    "null");
	assert_string_equal(jtext(doc, "$.coverage.gaps[1].reason"),
			    "dump-error");
	free(doc);
	{
		struct ns_addr gw = A("203.0.113.1");

		assert_int_equal(store_json_destinations(st, &gw, IPPROTO_TCP,
							 5, T0, &doc), 0);
		assert_int_equal(jlen(doc, "$.coverage.gaps"), 2);
		free(doc);
	}
	/* the open gap stays in coverage after the interval moves on */
	write_status_only(st, STORE_STATE_RESYNCING, T0 + 60000);
	assert_int_equal(store_json_status(st, T0 + 60000, &doc), 0);
	assert_int_equal(jlen(doc, "$.coverage.gaps"), 1);
	assert_int_equal(jint(doc, "$.coverage.gaps[0].seq"), 3);
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

static void test_json_status(void **state)
{
	struct store *st = open_fresh("jstatus");
	int64_t run = T0 - 3600 * 1000;
	struct store_batch b;
	char *doc;

	errno = 0;
	doc = (char *)1;
	assert_int_equal(store_json_status(st, T0, &doc), -1);
	assert_int_equal(errno, ENOENT);
	assert_null(doc);

	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	for (int i = 1; i <= 12; i++)
		add_gap(&b, run, i, T0 - 100000 + i * 1000,
			T0 - 100000 + i * 1000 + 10);
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(store_json_status(st, T0 + 1250, &doc), 0);
	assert_json_valid(doc);
	assert_string_equal(jtext(doc, "$.generated_at"),
			    "2026-11-25T10:00:01.250Z");
	assert_string_equal(jtext(doc, "$.as_of"), "2026-11-25T10:00:00.000Z");
	assert_string_equal(jtype(doc, "$.coverage.complete"), "true");
	assert_string_equal(jtext(doc, "$.version"), NS_VERSION);
	assert_string_equal(jtext(doc, "$.started_at"),
			    "2026-11-25T09:00:00.000Z");
	assert_true(fabs(jreal(doc, "$.uptime_seconds") - 3601.25) < 1e-9);
	assert_int_equal(jint(doc, "$.pid"), 4242);
	assert_int_equal(jint(doc, "$.interval_seconds"), 5);
	assert_string_equal(jtext(doc, "$.state"), "running");
	assert_int_equal(jint(doc, "$.event_buffer_bytes"), 134217728);
	assert_int_equal(jint(doc, "$.mappings.live"), 1520);
	assert_int_equal(jint(doc, "$.mappings.nat"), 1500);
	assert_int_equal(jint(doc, "$.mappings.local"), 20);
	assert_int_equal(jint(doc, "$.mappings.other"), 7);
	assert_int_equal(jint(doc, "$.gateways"), 2);
	assert_int_equal(jint(doc, "$.hosts"), 3);
	assert_int_equal(jint(doc, "$.destinations"), 4);
	assert_string_equal(jtext(doc, "$.events"),
			    "{\"new\":101,\"update\":102,\"destroy\":103,"
			    "\"dumped\":104,\"unknown_destroy\":105,"
			    "\"malformed\":106,\"lost\":107,\"enobufs\":108}");
	assert_int_equal(jint(doc, "$.resync.count"), 2);
	assert_string_equal(jtype(doc, "$.resync.active"), "false");
	assert_string_equal(jtext(doc, "$.resync.last_started_at"),
			    "2026-11-25T09:59:00.000Z");
	assert_string_equal(jtext(doc, "$.resync.last_done_at"),
			    "2026-11-25T09:59:01.234Z");
	assert_string_equal(jtype(doc, "$.resync.last_duration_ms"), "real");
	assert_true(fabs(jreal(doc, "$.resync.last_duration_ms") - 1234.567) <
		    1e-9);
	assert_int_equal(jint(doc, "$.resync.last_entries"), 5000);
	assert_int_equal(jint(doc, "$.resync.last_added"), 11);
	assert_int_equal(jint(doc, "$.resync.last_removed"), 12);
	assert_int_equal(jint(doc, "$.resync.last_changed"), 13);
	/* newest 10 gaps, newest first */
	assert_int_equal(jlen(doc, "$.gaps"), 10);
	assert_int_equal(jint(doc, "$.gaps[0].seq"), 12);
	assert_int_equal(jint(doc, "$.gaps[9].seq"), 3);
	assert_string_equal(jtext(doc, "$.gaps[0].end"),
			    "2026-11-25T09:58:32.010Z");
	assert_int_equal(jint(doc, "$.writes.ok"), 1);
	assert_int_equal(jint(doc, "$.writes.failed"), 0);
	assert_string_equal(jtype(doc, "$.writes.last_at"), "text");
	assert_string_equal(jtype(doc, "$.writes.last_error"), "null");
	assert_string_equal(jtext(doc, "$.conntrack"),
			    "{\"count\":5021,\"max\":262144,"
			    "\"insert_failed\":3,\"drop\":4,\"early_drop\":5,"
			    "\"clash_resolve\":9}");
	assert_string_equal(jtext(doc, "$.sysctl"),
			    "{\"ip_local_port_range\":[32768,60999],"
			    "\"tcp_tw_reuse\":2,\"tcp_fin_timeout\":60,"
			    "\"nf_conntrack_tcp_timeout_time_wait\":120,"
			    "\"nf_conntrack_max\":262144,"
			    "\"nf_conntrack_events\":2}");
	assert_int_equal(jint(doc, "$.process.rss_bytes"), 12345678);
	assert_true(jreal(doc, "$.process.cpu_seconds") == 3.25);
	free(doc);

	/* unknowns are null; an active resync is true */
	store_batch_clear(&b);
	fill_status(&b.status, STORE_STATE_RESYNCING);
	b.status.audit_difference = STORE_UNKNOWN;
	b.status.conntrack_early_drop = -1;
	b.status.conntrack_max = -1;
	b.status.sysctl_port_range_hi = -1;
	b.status.sysctl_tcp_tw_reuse = -1;
	b.status.resync_active = 1;
	b.status.resync_last_done_ms = 0;
	b.status.as_of_ms = 0;
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(store_json_status(st, T0, &doc), 0);
	assert_json_valid(doc);
	assert_string_equal(jtext(doc, "$.state"), "resyncing");
	assert_string_equal(jtype(doc, "$.as_of"), "null");
	assert_string_equal(jtype(doc, "$.audit.difference"), "null");
	assert_int_equal(jint(doc, "$.mappings.live"), 1520);
	assert_string_equal(jtype(doc, "$.conntrack.early_drop"), "null");
	assert_string_equal(jtype(doc, "$.conntrack.max"), "null");
	assert_string_equal(jtype(doc, "$.sysctl.nf_conntrack_max"), "null");
	assert_string_equal(jtype(doc, "$.sysctl.ip_local_port_range"), "null");
	assert_string_equal(jtype(doc, "$.sysctl.tcp_tw_reuse"), "null");
	assert_string_equal(jtype(doc, "$.resync.active"), "true");
	assert_string_equal(jtype(doc, "$.resync.last_done_at"), "null");
	assert_int_equal(jint(doc, "$.writes.ok"), 2);
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

/* ---- the status field table drives everything ---- */

static char *slurp_doc(const char *rel)
{
	const char *fx = getenv("NATSCOPE_FIXTURES");
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/../../%s", fx ? fx : "tests/fixtures",
		 rel);
	f = fopen(path, "r");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* The migrated status table has exactly the stored fields, in order;
 * docs/database.md documents every column; JSON groups and metric
 * families are contiguous (the generators rely on it). */
static void test_status_fields(void **state)
{
	const char *path = db_path("fields");
	struct store *st = open_fresh("fields");
	char *docs = slurp_doc("docs/database.md");
	sqlite3 *db;
	sqlite3_stmt *s;
	size_t k = 0;

	store_close(st);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT name FROM "
					    "pragma_table_info('status') "
					    "WHERE name <> 'id' ORDER BY cid",
					    -1, &s, NULL), SQLITE_OK);
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *col = (const char *)sqlite3_column_text(s, 0);

		while (k < store_status_nfields &&
		       store_status_fields[k].type == STORE_F_EXPR)
			k++;
		assert_true(k < store_status_nfields);
		if (strcmp(col, store_status_fields[k].name) != 0)
			fail_msg("status column %s, field %s", col,
				 store_status_fields[k].name);
		k++;
	}
	while (k < store_status_nfields &&
	       store_status_fields[k].type == STORE_F_EXPR)
		k++;
	if (k != store_status_nfields)
		fail_msg("field %s has no column", store_status_fields[k].name);
	sqlite3_finalize(s);
	sqlite3_close(db);

	for (size_t i = 0; i < store_status_nfields; i++) {
		const struct store_field *f = &store_status_fields[i];
		char want[160];

		if (f->type == STORE_F_EXPR)
			continue;
		snprintf(want, sizeof(want), "`%s`", f->name);
		if (!strstr(docs, want))
			fail_msg("docs/database.md does not document %s",
				 f->name);
	}
	free(docs);

	/* a group or family, once left, never comes back (rows without a
	 * JSON key or a metric are skipped by the generators) */
	for (int pass = 0; pass < 2; pass++) {
		char seen[64][64];
		int n_seen = 0;
		char prev[64] = "";

		for (size_t i = 0; i < store_status_nfields; i++) {
			const struct store_field *f = &store_status_fields[i];
			const char *t = pass ? f->metric : f->json;
			size_t len = pass ? strcspn(t, "{") : strcspn(t, ".");
			char cur[64];

			if (!*t)
				continue;
			if (!pass && !t[len]) {
				prev[0] = '\0'; /* a top-level key ends a group */
				continue;
			}
			snprintf(cur, sizeof(cur), "%.*s", (int)len, t);
			if (!strcmp(cur, prev))
				continue;
			for (int j = 0; j < n_seen; j++)
				if (!strcmp(seen[j], cur))
					fail_msg("%s %s is split at %s",
						 pass ? "family" : "group", cur,
						 f->name);
			assert_true(n_seen < 64);
			snprintf(seen[n_seen++], 64, "%s", cur);
			snprintf(prev, sizeof(prev), "%s", cur);
		}
	}
}

/* The resync histogram: as many bucket rows as STORE_RESYNC_BUCKETS, their
 * bounds rising; a duration counts in every bucket whose bound it does
 * not exceed (bounds inclusive), and the status row carries it. */
static void test_resync_histogram(void **state)
{
	static const char prefix[] = STORE_RESYNC_FAMILY "_bucket{le=\"";
	struct store_resync_hist h = { 0 };
	struct store_status s;
	double prev = 0;
	size_t n = 0;

	for (size_t i = 0; i < store_status_nfields; i++) {
		const char *m = store_status_fields[i].metric;
		double le;

		if (strncmp(m, prefix, sizeof(prefix) - 1) != 0)
			continue;
		le = strtod(m + sizeof(prefix) - 1, NULL);
		assert_true(le > prev);
		prev = le;
		n++;
	}
	assert_int_equal(n, STORE_RESYNC_BUCKETS);

	store_resync_hist_observe(&h, 10000);	/* 10 ms: le 0.01 */
	store_resync_hist_observe(&h, 10001);	/* just over: le 0.05 */
	store_resync_hist_observe(&h, 5000000); /* 5 s */
	store_resync_hist_observe(&h, 600000000); /* 10 min: +Inf only */
	store_resync_hist_observe(&h, -5);	/* a clock step: 0 */
	store_status_init(&s);
	store_resync_hist_status(&s, &h);
	assert_int_equal(s.resync_le_10ms, 2);
	assert_int_equal(s.resync_le_50ms, 3);
	assert_int_equal(s.resync_le_2500ms, 3);
	assert_int_equal(s.resync_le_5s, 4);
	assert_int_equal(s.resync_le_120s, 4);
	assert_int_equal(s.resync_duration_count, 5);
	assert_int_equal(s.resync_duration_sum_us,
			 10000 + 10001 + 5000000 + 600000000);
}

/* Any answer's table as CSV: flattened columns in order of first
 * appearance, RFC 4180 quoting, as_of and coverage.complete in each row. */
static void test_json_csv(void **state)
{
	struct store *st = open_fresh("csv");
	char *out = NULL;

	assert_int_equal(store_json_csv(st,
		"{\"as_of\": \"2026-12-01T10:00:00.000Z\", "
		"\"coverage\": {\"complete\": true}, \"rows\": ["
		"{\"ip\": \"a,b\", \"n\": 1, \"w\": {\"x\": null, "
		"\"y\": false}},"
		"{\"ip\": \"say \\\"hi\\\"\\nthere\", \"n\": 2.5, "
		"\"extra\": [7, 8]}]}", "$.rows", &out), 0);
	assert_string_equal(out,
		"as_of,coverage_complete,ip,n,w.x,w.y,extra[0],extra[1]\r\n"
		"2026-12-01T10:00:00.000Z,true,\"a,b\",1,,false,,\r\n"
		"2026-12-01T10:00:00.000Z,true,\"say \"\"hi\"\"\nthere\","
		"2.5,,,7,8\r\n");
	free(out);

	/* no document fields, rows that are no objects, an empty table */
	assert_int_equal(store_json_csv(st, "{\"t\": [1, \"x\"]}", "$.t",
					&out), 0);
	assert_string_equal(out, "value\r\n1\r\nx\r\n");
	free(out);
	assert_int_equal(store_json_csv(st, "{\"t\": []}", "$.t", &out), 0);
	assert_string_equal(out, "\r\n");
	free(out);

	errno = 0;
	assert_int_equal(store_json_csv(st, "{\"t\": {}}", "$.t", &out), -1);
	assert_int_equal(errno, EINVAL);
	assert_null(out);
	errno = 0;
	assert_int_equal(store_json_csv(st, "{\"t\": []}", "$.u", &out), -1);
	assert_int_equal(errno, EINVAL);
	store_close(st);
}

/* A database without history: nothing at any moment, and it says so. */
static void test_history_empty(void **state)
{
	struct store *st = open_fresh("nohistory");
	struct store_hist_range r;
	struct ns_addr a;
	char *out = (char *)"x";

	assert_int_equal(ns_addr_parse("203.0.113.1", &a), 0);
	errno = 0;
	assert_int_equal(store_json_gateways_at(st, 1796119200000LL,
						1796119200000LL, &out), -1);
	assert_int_equal(errno, ERANGE);
	assert_null(out);
	errno = 0;
	assert_int_equal(store_json_hosts_at(st, &a, 6, 50, 1796119200000LL,
					     1796119200000LL, &out), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(store_history_range(st, 1796119200000LL, &r), 0);
	assert_true(r.first_ms == -1 && r.end_ms == -1 && r.before_ms == -1 &&
		    r.after_ms == -1);
	errno = 0;
	assert_int_equal(store_json_series(st, &a, 6, 1796119200000LL,
					   1796122800000LL, STORE_TIER_AUTO,
					   10, 1796122800000LL, &out), -1);
	assert_int_equal(errno, ENOENT);
	errno = 0;
	assert_int_equal(store_json_series(st, &a, 6, 5, 5, STORE_TIER_AUTO,
					   10, 5, &out), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(store_json_incidents(st, 0, 1796122800000LL, 10,
					      1796122800000LL, &out), 0);
	assert_non_null(strstr(out, "\"incidents\":[]"));
	free(out);
	errno = 0;
	assert_int_equal(store_json_incident(st, 1, 0, &out), -1);
	assert_int_equal(errno, ENOENT);
	/* no mapping log yet: nobody, and it says natscope was not logging */
	assert_int_equal(store_json_lookup(st, &a, 6, 40123, 1796119200000LL,
					   1796119200000LL, &out), 0);
	assert_non_null(strstr(out, "\"holders\":[]"));
	assert_non_null(strstr(out, "\"uncertain\":true"));
	free(out);
	store_close(st);
}

static void test_json_error(void **state)
{
	struct store *st = open_fresh("jerror");
	const char *msg = "bad \"ip\"\n\\ <é>";
	char *doc;

	store_json_error(st, msg, &doc);
	assert_json_valid(doc);
	assert_string_equal(jtext(doc, "$.error"), msg);
	free(doc);
	store_json_error(NULL, "no store", &doc);
	assert_string_equal(doc, "{\"error\":\"no store\"}");
	free(doc);
	store_close(st);
}

/* ---- the writer thread ---- */

/* store_tx_begin/end: writes grouped into one transaction land together
 * or not at all; a write that fails inside it rolls back its own
 * savepoint, marks nothing (no db-error row), and the whole is rolled
 * back by the caller.  Then a frozen copy (STORE_IMMUTABLE) reads it. */
static void test_outer_transaction(void **state)
{
	const char *path = db_path("outer");
	struct store *st = open_fresh("outer"), *ro;
	struct store_batch b;
	struct store_status got;

	store_batch_init(&b);
	b.full = 1;
	add_gw(&b, "203.0.113.1", IPPROTO_TCP, 10, 12);
	store_status_init(&b.status);
	b.status.state = STORE_STATE_STOPPED;
	b.status.as_of_ms = T0;
	snprintf(b.status.note, sizeof(b.status.note), "imported");

	/* rolled back: two writes, nothing lands */
	assert_int_equal(store_tx_begin(st), 0);
	assert_int_equal(store_write(st, &b), 0);
	b.full = 0;
	b.gateways[0].mappings = 13;
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(store_tx_end(st, 0), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gateways"), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM status"), 0);

	/* a failed write inside: its savepoint goes, the rest stays, the
	 * status row is not marked db-error, the caller rolls back */
	assert_int_equal(store_tx_begin(st), 0);
	b.full = 1;
	assert_int_equal(store_write(st, &b), 0);
	b.full = 0;
	b.gateways[0].ip.family = 99; /* an invalid row */
	errno = 0;
	assert_int_equal(store_write(st, &b), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(store_tx_end(st, 0), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM status"), 0);

	/* committed: both writes, one transaction */
	b.gateways[0].ip = A("203.0.113.1");
	assert_int_equal(store_tx_begin(st), 0);
	assert_int_equal(store_tx_begin(st), -1); /* not nested */
	b.full = 1;
	b.gateways[0].mappings = 12;
	assert_int_equal(store_write(st, &b), 0);
	b.full = 0;
	b.gateways[0].mappings = 14;
	assert_int_equal(store_write(st, &b), 0);
	assert_int_equal(store_tx_end(st, 1), 0);
	assert_int_equal(q_int(path, "SELECT mappings FROM gateways"), 14);
	assert_string_equal(q_text(path, "SELECT state || ' ' || note FROM "
				   "status"), "stopped imported");
	/* and the writer goes on with ordinary writes (no ESTALE) */
	b.gateways[0].mappings = 15;
	assert_int_equal(store_write(st, &b), 0);
	store_close(st);

	/* a frozen copy reads the same */
	ro = store_open(path, STORE_IMMUTABLE);
	assert_non_null(ro);
	assert_int_equal(store_read_status(ro, &got), 0);
	assert_int_equal(got.state, STORE_STATE_STOPPED);
	assert_string_equal(got.note, "imported");
	assert_int_equal(q_int(path, "SELECT mappings FROM gateways"), 15);
	store_close(ro);
	store_batch_free(&b);
}

static void test_writer(void **state)
{
	const char *path = db_path("writer");
	struct store *st = open_fresh("writer");
	struct store_writer *w;
	struct store_batch *b;
	sqlite3 *other;
	int need_full = -1;

	w = store_writer_start(st);
	assert_non_null(w);
	assert_int_equal(store_writer_wait(w), 0); /* idle */

	/* a batch stuck behind a lock is in flight: no second one */
	assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL,
				      NULL), SQLITE_OK);
	b = store_writer_acquire(w, &need_full);
	assert_non_null(b);
	assert_int_equal(need_full, 1);
	assert_int_equal(b->n_gateways, 0);
	b->full = 1;
	fill_status(&b->status, STORE_STATE_RUNNING);
	add_gw(b, "203.0.113.1", IPPROTO_TCP, 1, 1);
	add_host(b, "203.0.113.1", IPPROTO_TCP, "198.18.0.2", NS_KIND_NAT, 1,
		 1);
	store_writer_submit(w, b);
	assert_null(store_writer_acquire(w, &need_full));
	assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(store_writer_wait(w), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts"), 1);

	/* the next batch is cleared and may be a delta */
	b = store_writer_acquire(w, &need_full);
	assert_non_null(b);
	assert_int_equal(need_full, 0);
	assert_int_equal(b->full, 0);
	assert_int_equal(b->n_gateways, 0);
	assert_int_equal(b->n_hosts, 0);

	/* a failed write: the next batch must be full */
	assert_int_equal(store_test_exec(st, "PRAGMA busy_timeout = 50"), 0);
	assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL,
				      NULL), SQLITE_OK);
	fill_status(&b->status, STORE_STATE_RUNNING);
	add_host(b, "203.0.113.1", IPPROTO_TCP, "198.18.0.3", NS_KIND_NAT, 1,
		 1);
	store_writer_submit(w, b);
	errno = 0;
	assert_int_equal(store_writer_wait(w), -1);
	assert_int_equal(errno, EBUSY);
	assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(other);
	b = store_writer_acquire(w, &need_full);
	assert_non_null(b);
	assert_int_equal(need_full, 1);
	b->full = 1;
	fill_status(&b->status, STORE_STATE_RUNNING);
	add_gw(b, "203.0.113.1", IPPROTO_TCP, 2, 2);
	add_host(b, "203.0.113.1", IPPROTO_TCP, "198.18.0.3", NS_KIND_NAT, 2,
		 2);
	store_writer_submit(w, b);
	/* stop waits for the batch in flight */
	store_writer_stop(w);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts"), 1);
	assert_int_equal(q_int(path, "SELECT mappings FROM hosts"), 2);
	assert_int_equal(q_int(path, "SELECT writes_ok FROM status"), 2);
	assert_int_equal(q_int(path, "SELECT writes_failed FROM status"), 1);
	store_writer_stop(NULL);
	/* the store is still ours and works */
	write_status_only(st, STORE_STATE_STOPPED, T0);
	assert_string_equal(q_text(path, "SELECT state FROM status"),
			    "stopped");
	store_close(st);
}

/* The run begins on the writer's thread, after it started: nothing is
 * written when the thread cannot start, and a failed begin writes
 * nothing. */
static void test_writer_begin(void **state)
{
	const char *path = db_path("writer-begin");
	struct store *st = open_fresh("writer-begin");
	struct store_status s;
	struct store_writer *w;
	int need_full = -1;
	sqlite3 *other;

	write_standard(st);
	assert_int_equal(store_test_exec(st, "PRAGMA busy_timeout = 50"), 0);
	w = store_writer_start(st);
	assert_non_null(w);
	fill_status(&s, STORE_STATE_STARTING);
	s.started_ms = T0 + 1000;

	/* locked: the begin fails and nothing changed */
	assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL,
				      NULL), SQLITE_OK);
	errno = 0;
	assert_int_equal(store_writer_begin(w, &s), -1);
	assert_int_equal(errno, EBUSY);
	assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(other);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gateways"), 3);
	assert_string_equal(q_text(path, "SELECT state FROM status"),
			    "running");

	assert_int_equal(store_writer_begin(w, &s), 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM gateways"), 0);
	assert_string_equal(q_text(path, "SELECT state FROM status"),
			    "starting");
	assert_int_equal(q_int(path, "SELECT started_ms FROM status"),
			 T0 + 1000);
	/* the first batch is full */
	assert_non_null(store_writer_acquire(w, &need_full));
	assert_int_equal(need_full, 1);
	store_writer_stop(w);
	store_close(st);
}

/* ---- size and speed (printed, not asserted) ---- */

static double ms_since(int64_t t0)
{
	return (double)(ns_mono_ns() - t0) / 1e6;
}

static void test_full_write_timing(void **state)
{
	const char *path = db_path("timing");
	struct store *st = open_fresh("timing");
	struct ns_addr gw = A("203.0.113.1");
	struct store_batch b;
	char ip[NS_ADDR_STRLEN], gws[4][NS_ADDR_STRLEN], *doc;
	int64_t t;
	double full_ms, again_ms, delta_ms, read_ms;

	store_batch_init(&b);
	b.full = 1;
	fill_status(&b.status, STORE_STATE_RUNNING);
	for (int g = 0; g < 4; g++) {
		snprintf(gws[g], sizeof(gws[g]), "203.0.113.%d", g + 1);
		add_gw(&b, gws[g], IPPROTO_TCP, 25000, 25000);
	}
	for (int i = 0; i < 10000; i++) {
		snprintf(ip, sizeof(ip), "198.18.%d.%d", i / 250, i % 250);
		add_host(&b, gws[i % 4], IPPROTO_TCP, ip, NS_KIND_NAT,
			 1 + i % 97, 1 + i % 97);
	}
	for (int i = 0; i < 100000; i++) {
		snprintf(ip, sizeof(ip), "198.51.100.%d", i % 250);
		add_dest(&b, gws[i / 25000], IPPROTO_TCP, ip,
			 (uint16_t)(1024 + (i % 25000) / 250), 0,
			 1 + i % 1000, 64512);
	}
	t = ns_mono_ns();
	assert_int_equal(store_write(st, &b), 0);
	full_ms = ms_since(t);
	t = ns_mono_ns();
	assert_int_equal(store_write(st, &b), 0);
	again_ms = ms_since(t);
	assert_int_equal(q_int(path, "SELECT count(*) FROM destinations"),
			 100000);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hosts"), 10000);

	/* a typical delta: 1% of the buckets change */
	b.full = 0;
	b.n_gateways = 0;
	b.n_hosts = 100;
	b.n_dests = 1000;
	t = ns_mono_ns();
	assert_int_equal(store_write(st, &b), 0);
	delta_ms = ms_since(t);

	t = ns_mono_ns();
	assert_int_equal(store_json_destinations(st, &gw, IPPROTO_TCP, 50, T0,
						 &doc), 0);
	read_ms = ms_since(t);
	assert_int_equal(jint(doc, "$.total"), 25000);
	assert_int_equal(jint(doc, "$.destinations[0].mappings"), 1000);
	free(doc);
	print_message("store timing: full write of 100000 destinations + "
		      "10000 hosts: %.1f ms (again, replacing: %.1f ms); "
		      "delta of 1100 rows: %.1f ms; top 50 of 25000 "
		      "destinations as JSON: %.1f ms\n",
		      full_ms, again_ms, delta_ms, read_ms);
	store_batch_free(&b);
	store_close(st);
}

/* ---- setup ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	return remove(path);
}

static int group_setup(void **state)
{
	log_init("test_store", NS_LOG_WARN);
	if (!mkdtemp(tmpdir))
		return -1;
	return sqlite3_open(":memory:", &jdb) == SQLITE_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
	sqlite3_close(jdb);
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- history ---- */

/* One period [start, end) of history for gateway 203.0.113.1 tcp: ports
 * and mappings at the end, their peaks, new mappings; one host and one
 * bucket with the same figures, and a second host only when it bursts. */
static void hist_write(struct store *st, int64_t start, int64_t end,
		       uint32_t ports, uint32_t peak, uint32_t created,
		       int exact, int64_t insert_failed)
{
	struct store_batch b;
	struct store_hist_gateway *g;
	struct store_hist_host *h;
	struct store_hist_dest *d;

	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	b.status.as_of_ms = end;
	b.status.conntrack_insert_failed = insert_failed;
	b.hist.start_ms = start;
	b.hist.end_ms = end;
	b.hist.exact = (uint8_t)exact;
	b.hist.state = exact ? STORE_STATE_RUNNING : STORE_STATE_RESYNCING;
	assert_non_null(g = store_batch_add_hist_gateway(&b));
	g->end.ip = A("203.0.113.1");
	g->end.proto = IPPROTO_TCP;
	g->end.ports_in_use = ports;
	g->end.mappings = ports;
	g->end.hosts = 1;
	g->end.destinations = 1;
	g->end.worst_ip = A("198.51.100.7");
	g->end.worst_port = 443;
	g->end.worst_mappings = peak;
	g->end.worst_capacity = 64512;
	g->end.states[NS_TCP_TIME_WAIT] = ports / 2;
	g->ports_peak = peak;
	g->mappings_peak = peak;
	g->time_wait_peak = peak / 2;
	g->new_mappings = created;
	assert_non_null(h = store_batch_add_hist_host(&b));
	h->end.gateway = A("203.0.113.1");
	h->end.proto = IPPROTO_TCP;
	h->end.kind = NS_KIND_NAT;
	h->end.ip = A("198.18.0.1");
	h->end.mappings = ports;
	h->end.ports_in_use = ports;
	h->mappings_peak = ports;
	h->new_mappings = 1;
	if (peak > ports) { /* a burst: another host came and went */
		assert_non_null(h = store_batch_add_hist_host(&b));
		h->end.gateway = A("203.0.113.1");
		h->end.proto = IPPROTO_TCP;
		h->end.kind = NS_KIND_NAT;
		h->end.ip = A("198.18.0.9");
		h->mappings_peak = peak - ports;
		h->new_mappings = peak - ports;
	}
	assert_non_null(d = store_batch_add_hist_dest(&b));
	d->end.gateway = A("203.0.113.1");
	d->end.proto = IPPROTO_TCP;
	d->end.ip = A("198.51.100.7");
	d->end.port = 443;
	d->end.mappings = ports;
	d->end.capacity = 64512;
	d->mappings_peak = peak;
	d->new_mappings = created;
	assert_int_equal(store_write(st, &b), 0);
	store_batch_free(&b);
}

#define HGW(tier, ts, col) \
	"SELECT " col " FROM hist_gateway WHERE tier = " #tier \
	" AND ts_ms = " ts

/* Peaks survive rollups: a burst of 20,000 within one 5 s period is the
 * peak of its minute and of its hour; rates add up; a period with a gap
 * makes its minute and hour inexact; the kernel's counters are deltas. */
static void test_history_rollups(void **state)
{
	const char *path = db_path("history");
	struct store *st = open_fresh("history");
	char ts[64];

	(void)state;
	/* minute T0: 11 periods of 5 s ending T0+5 s .. T0+55 s */
	for (int i = 0; i < 11; i++) {
		int64_t start = T0 + i * 5000;

		hist_write(st, start, start + 5000, 100, i == 2 ? 20100 : 100,
			   i == 2 ? 20000 : 10, i != 5, 3 + (i >= 7 ? 4 : 0));
	}
	/* the period ending T0+60 s belongs to the next minute and closes
	 * minute T0 */
	hist_write(st, T0 + 55000, T0 + 60000, 90, 100, 10, 1, 7);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hist_gateway "
				     "WHERE tier = 0"), 12);
	snprintf(ts, sizeof(ts), "%lld", T0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hist_gateway "
				     "WHERE tier = 1"), 1);
	{
		char sql[256];

#define CHECK(tier, col, v)                                                  \
	snprintf(sql, sizeof(sql), "SELECT %s FROM hist_gateway WHERE tier = " \
		 "%d AND ts_ms = %s", col, tier, ts);                          \
	assert_int_equal(q_int(path, sql), v)

		CHECK(1, "span_ms", 55000);
		CHECK(1, "ports_peak", 20100);
		CHECK(1, "ports_in_use", 100);
		CHECK(1, "new_mappings", 10 * 10 + 20000);
		CHECK(1, "exact", 0);
		CHECK(1, "worst_peak", 20100);
		CHECK(1, "time_wait_peak", 10050);
		CHECK(1, "state_time_wait", 50);
		CHECK(1, "round(ports_avg)", 100);
		/* the hosts of the minute: the burst's host, gone by its
		 * end, with its peak */
		snprintf(sql, sizeof(sql), "SELECT mappings_peak * 1000000 + "
			 "mappings FROM hist_host WHERE tier = 1 AND ts_ms = %s "
			 "AND ip = '198.18.0.9'", ts);
		assert_int_equal(q_int(path, sql), 20000LL * 1000000);
		snprintf(sql, sizeof(sql), "SELECT new_mappings FROM "
			 "hist_host WHERE tier = 1 AND ts_ms = %s AND ip = "
			 "'198.18.0.1'", ts);
		assert_int_equal(q_int(path, sql), 11);
		snprintf(sql, sizeof(sql), "SELECT mappings_peak FROM "
			 "hist_dest WHERE tier = 1 AND ts_ms = %s", ts);
		assert_int_equal(q_int(path, sql), 20100);
		/* the kernel: insert_failed rose by 4 within the minute
		 * (the first period has no previous value: NULL) */
		snprintf(sql, sizeof(sql), "SELECT ct_insert_failed FROM "
			 "hist_kernel WHERE tier = 1 AND ts_ms = %s", ts);
		assert_int_equal(q_int(path, sql), 4);
		snprintf(sql, sizeof(sql), "SELECT state FROM hist_kernel "
			 "WHERE tier = 1 AND ts_ms = %s", ts);
		assert_string_equal(q_text(path, sql), "resyncing");

		/* an hour later: hour T0 is made from its minutes */
		hist_write(st, T0 + 3600000, T0 + 3605000, 80, 80, 1, 1, 7);
		CHECK(2, "ports_peak", 20100);
		CHECK(2, "exact", 0);
		CHECK(2, "span_ms", 60000);
		CHECK(2, "new_mappings", 20110);
		CHECK(2, "ports_in_use", 90); /* the last minute's end */
		snprintf(sql, sizeof(sql), "SELECT mappings_peak FROM "
			 "hist_host WHERE tier = 2 AND ts_ms = %s AND ip = "
			 "'198.18.0.9'", ts);
		assert_int_equal(q_int(path, sql), 20000);
		snprintf(sql, sizeof(sql), "SELECT ct_insert_failed FROM "
			 "hist_kernel WHERE tier = 2 AND ts_ms = %s", ts);
		assert_int_equal(q_int(path, sql), 4);
#undef CHECK
	}
	/* nothing made twice */
	assert_int_equal(q_int(path, "SELECT count(*) FROM hist_gateway "
				     "WHERE tier = 1"), 2);
	store_close(st);
}

/* Retention by age per tier, then by size. */
/* The read side over what the writer wrote: the state at a moment and a
 * series give back the written figures, peaks, rates and exactness. */
static void test_history_read_back(void **state)
{
	struct store *st = open_fresh("hist-read");
	struct ns_addr gw = A("203.0.113.1");
	char *out;

	(void)state;
	/* 5 s periods from T0 to T0 + 125 s; the 4th not exact */
	for (int i = 0; i < 25; i++) {
		int64_t start = T0 + i * 5000;

		hist_write(st, start, start + 5000, 100 + (uint32_t)i,
			   200 + (uint32_t)i, 10, i != 3, 0);
	}
	assert_int_equal(store_json_gateways_at(st, T0 + 17500, T0 + DAY_MS,
						&out), 0);
	assert_string_equal(jtext(out, "$.resolution"), "raw");
	assert_string_equal(jtext(out, "$.as_of"), "2026-11-25T10:00:20.000Z");
	assert_string_equal(jtext(out, "$.exact"), "0");
	assert_string_equal(jtext(out, "$.coverage.state"), "resyncing");
	assert_string_equal(jtext(out, "$.gateways[0].ports_in_use"), "103");
	assert_string_equal(jtext(out, "$.gateways[0].ports_peak"), "203");
	assert_string_equal(jtext(out, "$.gateways[0].new_per_second"), "2.0");
	assert_string_equal(jtext(out, "$.gateways[0].worst_destination.peak"),
			    "203");
	free(out);
	assert_int_equal(store_json_hosts_at(st, &gw, IPPROTO_TCP, 50,
					     T0 + 17500, T0 + DAY_MS, &out), 0);
	/* hosts are kept per minute: the minute holding the moment */
	assert_string_equal(jtext(out, "$.resolution"), "minute");
	assert_string_equal(jtext(out, "$.as_of"), "2026-11-25T10:01:00.000Z");
	assert_string_equal(jtext(out, "$.exact"), "0");
	assert_string_equal(jtext(out, "$.coverage.observed_seconds"), "55.0");
	assert_string_equal(jtext(out, "$.recorded.hosts"), "2");
	assert_string_equal(jtext(out, "$.hosts[0].ip"), "198.18.0.1");
	assert_string_equal(jtext(out, "$.hosts[0].mappings"), "110");
	assert_string_equal(jtext(out, "$.hosts[0].new_per_second"), "0.2");
	/* the burst's host, gone by the minute's end, with its peak */
	assert_string_equal(jtext(out, "$.hosts[1].ip"), "198.18.0.9");
	assert_string_equal(jtext(out, "$.hosts[1].mappings"), "0");
	assert_string_equal(jtext(out, "$.hosts[1].mappings_peak"), "100");
	free(out);

	/* the minutes the writer rolled up: T0 and T0 + 60 s are over */
	assert_int_equal(store_json_series(st, &gw, IPPROTO_TCP, T0,
					   T0 + 120000, STORE_TIER_MINUTE, 10,
					   T0 + DAY_MS, &out), 0);
	assert_string_equal(jtext(out, "$.resolution"), "minute");
	assert_string_equal(jcall("json_array_length", out, "$.points"), "2");
	assert_string_equal(jtext(out, "$.points[0].ts"),
			    "2026-11-25T10:00:00.000Z");
	assert_string_equal(jtext(out, "$.points[0].exact"), "0");
	/* a period belongs to the minute it ends in: 0..10, 11..22 */
	assert_string_equal(jtext(out, "$.points[0].ports_peak"), "210");
	assert_string_equal(jtext(out, "$.points[0].ports_in_use"), "110");
	assert_string_equal(jtext(out, "$.points[0].span_seconds"), "55.0");
	assert_string_equal(jtext(out, "$.points[1].exact"), "1");
	assert_string_equal(jtext(out, "$.points[1].ports_peak"), "222");
	assert_string_equal(jtext(out, "$.top_hosts[0].ip"), "198.18.0.1");
	assert_string_equal(jtext(out, "$.recorded.resolution"), "minute");
	assert_string_equal(jtext(out, "$.coverage.complete"), "0");
	free(out);
	/* by default the raw periods, which fit */
	assert_int_equal(store_json_series(st, &gw, IPPROTO_TCP, T0,
					   T0 + 120000, STORE_TIER_AUTO, 10,
					   T0 + DAY_MS, &out), 0);
	assert_string_equal(jtext(out, "$.resolution"), "raw");
	assert_string_equal(jtext(out, "$.points[23].ports_peak"), "223");
	assert_string_equal(jtext(out, "$.points[24]"), "(missing)");
	/* its top hosts from the minutes, where hosts are kept */
	assert_string_equal(jtext(out, "$.recorded.resolution"), "minute");
	assert_string_equal(jtext(out, "$.top_hosts[1].ip"), "198.18.0.9");
	free(out);
	/* one host over the range: from the minutes too */
	assert_int_equal(store_json_host_history(st, &(struct ns_addr){ 0 },
						 T0, T0 + 120000, T0 + DAY_MS,
						 &out), -1);
	assert_int_equal(store_json_host_history(st, &gw, T0, T0 + 120000,
						 T0 + DAY_MS, &out), 0);
	assert_string_equal(jcall("json_array_length", out, "$.gateways"),
			    "0");
	free(out);
	{
		struct ns_addr h = A("198.18.0.1");

		assert_int_equal(store_json_host_history(st, &h, T0,
							 T0 + 120000,
							 T0 + DAY_MS, &out), 0);
	}
	assert_string_equal(jtext(out, "$.resolution"), "minute");
	assert_string_equal(jtext(out, "$.gateways[0].public_ip"),
			    "203.0.113.1");
	assert_string_equal(jtext(out, "$.gateways[0].periods"), "2");
	assert_string_equal(jtext(out, "$.gateways[0].mappings_peak"), "122");
	free(out);
	store_close(st);
}

static void test_history_retention(void **state)
{
	const char *path = db_path("hist-retain");
	struct store *st = open_fresh("hist-retain");
	struct store_history_config cfg;
	int64_t t;

	(void)state;
	store_history_defaults(&cfg);
	cfg.keep_ms[0] = 10 * MIN_MS;
	cfg.keep_ms[1] = 3600 * 1000;
	cfg.keep_ms[2] = DAY_MS;
	cfg.keep_top_minute_ms = 20 * MIN_MS;
	assert_int_equal(store_history_configure(st, &cfg), 0);
	cfg.top = 0;
	errno = 0;
	assert_int_equal(store_history_configure(st, &cfg), -1);
	assert_int_equal(errno, EINVAL);
	/* two days, a 5 s period every 5 minutes */
	for (t = T0; t < T0 + 2 * DAY_MS; t += 5 * MIN_MS)
		hist_write(st, t, t + 5000, 10, 10, 1, 1, 0);
	t -= 5 * MIN_MS; /* the last period's start */
	assert_true(q_int(path, "SELECT count(*) FROM hist_gateway WHERE "
				"tier = 0") <= 3);
	{
		char sql[200];

		snprintf(sql, sizeof(sql), "SELECT count(*) FROM hist_gateway "
			 "WHERE tier = 1 AND ts_ms < %lld",
			 (long long)(t - 3600 * 1000));
		assert_int_equal(q_int(path, sql), 0);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM hist_gateway "
			 "WHERE tier = 2 AND ts_ms < %lld",
			 (long long)(t - DAY_MS));
		assert_int_equal(q_int(path, sql), 0);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM hist_kernel "
			 "WHERE tier = 2 AND ts_ms < %lld",
			 (long long)(t - DAY_MS));
		assert_int_equal(q_int(path, sql), 0);
		/* hosts and buckets go with their gateways' periods */
		for (int tier = 1; tier <= 2; tier++) {
			long long keep = tier == 1 ? 3600 * 1000 : DAY_MS;

			snprintf(sql, sizeof(sql), "SELECT (SELECT count(*) "
				 "FROM hist_host WHERE tier = %d AND ts_ms < "
				 "%lld) + (SELECT count(*) FROM hist_dest WHERE "
				 "tier = %d AND ts_ms < %lld)", tier,
				 (long long)(t - keep), tier,
				 (long long)(t - keep));
			assert_int_equal(q_int(path, sql), 0);
			snprintf(sql, sizeof(sql), "SELECT (SELECT count(*) "
				 "FROM hist_host WHERE tier = %d) * (SELECT "
				 "count(*) FROM hist_dest WHERE tier = %d)",
				 tier, tier);
			assert_true(q_int(path, sql) > 0);
		}
	}
	assert_true(q_int(path, "SELECT count(*) FROM hist_gateway WHERE "
				"tier = 2") >= 23);
	/* per-minute hosts: 20 minutes, while gateways keep their hour */
	{
		char sql[200];

		snprintf(sql, sizeof(sql), "SELECT count(*) FROM hist_host "
			 "WHERE tier = 1 AND ts_ms < %lld",
			 (long long)(t - 20 * MIN_MS));
		assert_int_equal(q_int(path, sql), 0);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM hist_gateway "
			 "WHERE tier = 1 AND ts_ms < %lld",
			 (long long)(t - 20 * MIN_MS));
		assert_true(q_int(path, sql) >= 6);
		assert_true(q_int(path, "SELECT count(*) FROM hist_host WHERE "
					"tier = 1") >= 2);
	}
	store_close(st);

	/* by size: 1 MiB, hundreds of gateways a period */
	path = db_path("hist-size");
	st = open_fresh("hist-size");
	store_history_defaults(&cfg);
	cfg.max_bytes = 1 << 20;
	assert_int_equal(store_history_configure(st, &cfg), 0);
	capture_start();
	for (t = T0; t < T0 + 6 * 3600 * 1000LL; t += MIN_MS) {
		struct store_batch b;

		store_batch_init(&b);
		fill_status(&b.status, STORE_STATE_RUNNING);
		b.hist.start_ms = t;
		b.hist.end_ms = t + 5000;
		b.hist.exact = 1;
		for (int i = 0; i < 100; i++) {
			struct store_hist_gateway *g =
				store_batch_add_hist_gateway(&b);
			char ip[32];

			snprintf(ip, sizeof(ip), "203.0.113.%d", i + 1);
			g->end.ip = A(ip);
			g->end.proto = IPPROTO_TCP;
			g->ports_peak = (uint32_t)i;
		}
		assert_int_equal(store_write(st, &b), 0);
		store_batch_free(&b);
	}
	assert_non_null(strstr(capture_end(), "over its limit"));
	/* the bound is met to the byte on main: the read side's index
	 * (hosts_ip) adds its pages to what retention cannot trim */
	assert_true(q_int(path, "SELECT (SELECT page_count FROM "
				"pragma_page_count) - (SELECT freelist_count "
				"FROM pragma_freelist_count)") * 4096 <=
		    (1 << 20) + 400 * 1024);
	/* the newest survive */
	{
		char sql[200];

		snprintf(sql, sizeof(sql), "SELECT count(*) FROM hist_gateway "
			 "WHERE tier = 0 AND ts_ms = %lld",
			 (long long)(t - MIN_MS));
		assert_int_equal(q_int(path, sql), 100);
	}
	store_close(st);
}

/* A write that fails loses its period, and the next period says so. */
static void test_history_failed_write(void **state)
{
	const char *path = db_path("hist-fail");
	struct store *st = open_fresh("hist-fail");

	(void)state;
	hist_write(st, T0, T0 + 5000, 10, 10, 1, 1, 0);
	assert_int_equal(store_test_exec(st, "CREATE TRIGGER no_raw BEFORE "
					     "INSERT ON hist_gateway BEGIN "
					     "SELECT RAISE(ABORT, 'no'); END"),
			 0);
	{
		struct store_batch b;
		struct store_hist_gateway *g;

		store_batch_init(&b);
		fill_status(&b.status, STORE_STATE_RUNNING);
		b.full = 1;
		b.hist.start_ms = T0 + 5000;
		b.hist.end_ms = T0 + 10000;
		b.hist.exact = 1;
		assert_non_null(g = store_batch_add_hist_gateway(&b));
		g->end.ip = A("203.0.113.1");
		g->end.proto = IPPROTO_TCP;
		capture_start();
		assert_int_equal(store_write(st, &b), -1);
		capture_end();
		store_batch_free(&b);
	}
	assert_int_equal(store_test_exec(st, "DROP TRIGGER no_raw"), 0);
	hist_write(st, T0 + 10000, T0 + 15000, 10, 10, 1, 1, 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM hist_kernel WHERE "
				     "tier = 0"), 2);
	assert_string_equal(q_text(path, "SELECT group_concat(state) FROM "
					 "(SELECT state FROM hist_kernel WHERE "
					 "tier = 0 ORDER BY ts_ms)"),
			    "running,db-error");
	assert_int_equal(q_int(path, "SELECT sum(exact) FROM hist_kernel"), 1);
	store_close(st);
}

/* Incidents: a bucket and its gateway cross 70% (warn) then 90%
 * (critical) and fall back: one incident each, closed with its peak; the
 * kernel's insert_failed rising while the bucket is saturated names it,
 * rising later says no bucket was; a new run closes what was left open. */
static void test_incidents(void **state)
{
	const char *path = db_path("incidents");
	struct store *st = open_fresh("incidents");
	char sql[256];
	const char *d;

	(void)state;
	hist_write(st, T0, T0 + 5000, 100, 100, 1, 1, 3);
	assert_int_equal(q_int(path, "SELECT count(*) FROM incident"), 0);
	hist_write(st, T0 + 5000, T0 + 10000, 100, 50000, 49900, 1, 3);
	assert_string_equal(q_text(path, "SELECT group_concat(kind || ':' || "
					 "severity || ':' || peak_mappings) FROM "
					 "(SELECT * FROM incident ORDER BY id)"),
			    "gateway:warn:50000,bucket:warn:50000");
	hist_write(st, T0 + 10000, T0 + 15000, 100, 60000, 10000, 1, 5);
	hist_write(st, T0 + 15000, T0 + 20000, 100, 100, 1, 1, 5);
	assert_string_equal(
		q_text(path, "SELECT group_concat(kind || ':' || severity || ':' "
			     "|| peak_mappings || ':' || (closed_ms - opened_ms) "
			     "|| ':' || (peak_ms - opened_ms)) FROM (SELECT * "
			     "FROM incident ORDER BY id)"),
		"gateway:critical:60000:15000:10000,"
		"bucket:critical:60000:15000:10000,kernel:critical:2:10000:5000");
	d = q_text(path, "SELECT opened_detail FROM incident WHERE kind = "
			 "'kernel'");
	assert_non_null(strstr(d, "\"saturated_buckets\":[{\"public_ip\":"
				  "\"203.0.113.1\",\"proto\":\"tcp\",\"zone\":0,"
				  "\"ip\":\"198.51.100.7\",\"port\":443"));
	assert_null(strstr(d, "\"note\":\"no destination"));
	d = q_text(path, "SELECT peak_detail FROM incident WHERE kind = "
			 "'bucket'");
	assert_non_null(strstr(d, "\"peak\":60000"));
	assert_non_null(strstr(d, "\"ip\":\"198.18.0.9\""));  /* top host */
	assert_non_null(strstr(d, "\"time_wait\":50"));
	assert_non_null(strstr(d, "\"nf_conntrack_tcp_timeout_time_wait\":120"));
	assert_int_equal(q_int(path, "SELECT insert_failed FROM incident WHERE "
				     "kind = 'kernel'"), 2);
	/* the counter rises again, nothing saturated now */
	hist_write(st, T0 + 20000, T0 + 25000, 100, 100, 1, 1, 9);
	snprintf(sql, sizeof(sql), "SELECT opened_detail FROM incident WHERE "
		 "kind = 'kernel' AND opened_ms = %lld", T0 + 20000);
	d = q_text(path, sql);
	assert_non_null(strstr(d, "\"saturated_buckets\":[]"));
	assert_non_null(strstr(d, "\"note\":\"no destination bucket"));
	/* a new run closes it where the last one stopped writing */
	assert_int_equal(q_int(path, "SELECT count(*) FROM incident WHERE "
				     "closed_ms IS NULL"), 1);
	{
		struct store_status x;

		fill_status(&x, STORE_STATE_STARTING);
		assert_int_equal(store_begin_run(st, &x), 0);
	}
	assert_int_equal(q_int(path, "SELECT count(*) FROM incident WHERE "
				     "closed_ms IS NULL"), 0);
	store_close(st);
}

/* One period [start, start + 5 s) of gateway 203.0.113.1 (tcp; no
 * gateway row when gw is 0) listing bucket 198.51.100.k:443 at peak[k]
 * mappings of 64512 for every k from 1 to 11 whose peak[k] is not 0. */
static void bucket_write(struct store *st, int64_t start, int gw,
			 const uint32_t peak[12])
{
	struct store_batch b;
	struct store_hist_gateway *g;

	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_RUNNING);
	b.status.as_of_ms = start + 5000;
	b.hist.start_ms = start;
	b.hist.end_ms = start + 5000;
	b.hist.exact = 1;
	b.hist.state = STORE_STATE_RUNNING;
	if (gw) {
		assert_non_null(g = store_batch_add_hist_gateway(&b));
		g->end.ip = A("203.0.113.1");
		g->end.proto = IPPROTO_TCP;
		g->end.ports_in_use = g->ports_peak = 1000;
		g->end.mappings = g->mappings_peak = 1000;
	}
	for (int k = 1; k <= 11; k++) {
		struct store_hist_dest *d;
		char ip[32];

		if (!peak[k])
			continue;
		assert_non_null(d = store_batch_add_hist_dest(&b));
		snprintf(ip, sizeof(ip), "198.51.100.%d", k);
		d->end.gateway = A("203.0.113.1");
		d->end.proto = IPPROTO_TCP;
		d->end.ip = A(ip);
		d->end.port = 443;
		d->end.capacity = 64512;
		d->end.mappings = d->mappings_peak = peak[k];
	}
	assert_int_equal(store_write(st, &b), 0);
	store_batch_free(&b);
}

#define PCT(x) ((uint32_t)(64512 * (x) / 100))

/* The collector lists only each gateway's top buckets (10 by share): a
 * saturated bucket missing from the list closes its incident when the
 * list shows it cannot be at warn (fewer than 10 listed, or the 10th
 * below warn, or its gateway gone), and stays open while it may be. */
static void test_incident_unlisted_bucket(void **state)
{
	const char *path = db_path("inc-unlisted");
	struct store *st = open_fresh("inc-unlisted");
	const char *open_q = "SELECT group_concat(dest_ip) FROM (SELECT dest_ip "
			     "FROM incident WHERE closed_ms IS NULL AND kind = "
			     "'bucket' ORDER BY dest_ip)";
	uint32_t p[12] = { 0 };
	char sql[200];

	(void)state;
	p[1] = PCT(80); /* .1 at 80 %: open */
	bucket_write(st, T0, 1, p);
	assert_string_equal(q_text(path, open_q), "198.51.100.1");
	/* .1 unlisted beside 10 at 75 %: it may be at warn still: open */
	p[1] = 0;
	for (int k = 2; k <= 11; k++)
		p[k] = PCT(75);
	bucket_write(st, T0 + 5000, 1, p);
	assert_string_equal(q_text(path, open_q),
			    "198.51.100.1,198.51.100.10,198.51.100.11,"
			    "198.51.100.2,198.51.100.3,198.51.100.4,"
			    "198.51.100.5,198.51.100.6,198.51.100.7,"
			    "198.51.100.8,198.51.100.9");
	/* .1 unlisted, the 10th listed at 46 %: .1 is at most that: over at
	 * this period's end, and .11 (listed at 46 %) over too */
	p[11] = PCT(46);
	bucket_write(st, T0 + 10000, 1, p);
	snprintf(sql, sizeof(sql), "SELECT closed_ms - %lld FROM incident "
		 "WHERE dest_ip = '198.51.100.1'", (long long)T0);
	assert_int_equal(q_int(path, sql), 15000);
	assert_string_equal(q_text(path, open_q),
			    "198.51.100.10,198.51.100.2,198.51.100.3,"
			    "198.51.100.4,198.51.100.5,198.51.100.6,"
			    "198.51.100.7,198.51.100.8,198.51.100.9");
	/* three listed (fewer than 10: every bucket in use is): the six
	 * unlisted ones are over */
	for (int k = 5; k <= 11; k++)
		p[k] = 0;
	bucket_write(st, T0 + 15000, 1, p);
	assert_string_equal(q_text(path, open_q),
			    "198.51.100.2,198.51.100.3,198.51.100.4");
	/* the gateway gone from the batch: its buckets are over */
	memset(p, 0, sizeof(p));
	bucket_write(st, T0 + 20000, 0, p);
	assert_int_equal(q_int(path, "SELECT count(*) FROM incident WHERE "
				     "closed_ms IS NULL"), 0);
	store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrations),
		cmocka_unit_test(test_newer_schema),
		cmocka_unit_test(test_upgrade),
		cmocka_unit_test(test_not_a_database),
		cmocka_unit_test(test_read_only_missing),
		cmocka_unit_test(test_one_writer),
		cmocka_unit_test(test_failed_start_leaves_nothing),
		cmocka_unit_test(test_open_words),
		cmocka_unit_test(test_corrupt_at_open),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_delta),
		cmocka_unit_test(test_invalid_row),
		cmocka_unit_test(test_disk_full),
		cmocka_unit_test(test_locked),
		cmocka_unit_test(test_foreign_change),
		cmocka_unit_test(test_corrupt_while_running),
		cmocka_unit_test(test_read_copy),
		cmocka_unit_test(test_gap_retention_count),
		cmocka_unit_test(test_gap_retention_age),
		cmocka_unit_test(test_json_time),
		cmocka_unit_test(test_json_gateways),
		cmocka_unit_test(test_json_hosts_dests),
		cmocka_unit_test(test_json_coverage),
		cmocka_unit_test(test_json_status),
		cmocka_unit_test(test_json_error),
		cmocka_unit_test(test_status_fields),
		cmocka_unit_test(test_resync_histogram),
		cmocka_unit_test(test_outer_transaction),
		cmocka_unit_test(test_writer),
		cmocka_unit_test(test_writer_begin),
		cmocka_unit_test(test_full_write_timing),
		cmocka_unit_test(test_history_rollups),
		cmocka_unit_test(test_history_read_back),
		cmocka_unit_test(test_history_retention),
		cmocka_unit_test(test_history_failed_write),
		cmocka_unit_test(test_incidents),
		cmocka_unit_test(test_incident_unlisted_bucket),
		cmocka_unit_test(test_json_csv),
		cmocka_unit_test(test_history_empty),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
