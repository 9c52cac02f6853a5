/*
 * write.c - the write side: batches, store_begin_run() and store_write(),
 * one transaction each, with cached prepared statements and UPSERT.
 */
#include "store/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- batches ---- */

void store_batch_init(struct store_batch *b)
{
	memset(b, 0, sizeof(*b));
}

void store_batch_clear(struct store_batch *b)
{
	b->full = 0;
	b->n_gateways = b->n_hosts = b->n_dests = b->n_gaps = 0;
	b->n_maplog = b->maplog_len = 0; /* maplog */
	b->maplog_lost = 0;
	b->maplog_lost_from_ms = b->maplog_lost_to_ms = 0;
	memset(&b->status, 0, sizeof(b->status));
	b->hist.start_ms = b->hist.end_ms = 0;
	b->hist.exact = b->hist.state = 0;
	b->hist.n_gateways = b->hist.n_hosts = b->hist.n_dests = 0;
}

void store_batch_free(struct store_batch *b)
{
	free(b->gateways);
	free(b->hosts);
	free(b->dests);
	free(b->gaps);
	free(b->hist.gateways);
	free(b->hist.hosts);
	free(b->hist.dests);
	free(b->maplog);
	store_batch_init(b);
}

int store_grow(void *arr, size_t n, size_t *cap, size_t size)
{
	void *old, *p;
	size_t ncap;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 256;
	memcpy(&old, arr, sizeof(old));
	if (ncap > SIZE_MAX / size || !(p = realloc(old, ncap * size))) {
		errno = ENOMEM;
		log_warn("store: array of %zu rows", n + 1);
		return -1;
	}
	memcpy(arr, &p, sizeof(p));
	*cap = ncap;
	return 0;
}

#define BATCH_ADD(b, arr, n, cap)                                           \
	do {                                                                \
		if (store_grow(&(b)->arr, (b)->n, &(b)->cap,               \
			       sizeof(*(b)->arr)) < 0)                      \
			return NULL;                                        \
		memset(&(b)->arr[(b)->n], 0, sizeof(*(b)->arr));            \
		return &(b)->arr[(b)->n++];                                 \
	} while (0)

struct store_gateway_row *store_batch_add_gateway(struct store_batch *b)
{
	BATCH_ADD(b, gateways, n_gateways, cap_gateways);
}

struct store_host_row *store_batch_add_host(struct store_batch *b)
{
	BATCH_ADD(b, hosts, n_hosts, cap_hosts);
}

struct store_dest_row *store_batch_add_dest(struct store_batch *b)
{
	BATCH_ADD(b, dests, n_dests, cap_dests);
}

struct store_gap_row *store_batch_add_gap(struct store_batch *b)
{
	BATCH_ADD(b, gaps, n_gaps, cap_gaps);
}

struct store_hist_gateway *store_batch_add_hist_gateway(struct store_batch *b)
{
	BATCH_ADD(b, hist.gateways, hist.n_gateways, hist.cap_gateways);
}

struct store_hist_host *store_batch_add_hist_host(struct store_batch *b)
{
	BATCH_ADD(b, hist.hosts, hist.n_hosts, hist.cap_hosts);
}

struct store_hist_dest *store_batch_add_hist_dest(struct store_batch *b)
{
	BATCH_ADD(b, hist.dests, hist.n_dests, hist.cap_dests);
}

/* ---- binding ---- */

/* ---- binding (store/internal.h) ---- */

const char *store_addr_text(struct store_addr_text *c, const struct ns_addr *a)
{
	if (c->valid && memcmp(&c->addr, a, sizeof(*a)) == 0)
		return c->text;
	c->valid = 0;
	if (!ns_addr_format(a, c->text)) {
		log_warnx("store: batch row with address family %u",
			  a->family);
		errno = EINVAL;
		return NULL;
	}
	c->addr = *a;
	c->valid = 1;
	return c->text;
}

/* Binds an address's text at i, its family (4/6) at i + 1 and its bytes
 * at i + 2.  Pass family_at 0 to bind the text only. */
int store_bind_addr(sqlite3_stmt *s, int i, int family_at,
		     struct store_addr_text *c, const struct ns_addr *a)
{
	const char *text = store_addr_text(c, a);

	if (!text)
		return -1;
	sqlite3_bind_text(s, i, text, -1, SQLITE_STATIC);
	if (family_at) {
		sqlite3_bind_int(s, family_at, a->family == AF_INET ? 4 : 6);
		sqlite3_bind_blob(s, family_at + 1, a->bytes,
				  a->family == AF_INET ? 4 : 16,
				  SQLITE_STATIC);
	}
	return 0;
}

void store_bind_proto(sqlite3_stmt *s, int i, uint8_t proto)
{
	const char *name = ns_proto_name(proto);

	if (name)
		sqlite3_bind_text(s, i, name, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int(s, i, proto); /* read back as a number */
}

void store_bind_u64(sqlite3_stmt *s, int i, uint64_t v)
{
	sqlite3_bind_int64(s, i, v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

/* Counters that may be unknown (-1): NULL in the database. */
void store_bind_opt(sqlite3_stmt *s, int i, int64_t v)
{
	if (v < 0)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_int64(s, i, v);
}

/* Times, where 0 means never: NULL in the database. */
void store_bind_ms(sqlite3_stmt *s, int i, int64_t ms)
{
	if (ms <= 0)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_int64(s, i, ms);
}

/* ---- rows ---- */

#define SQL_GW_UPSERT                                                       \
	"INSERT INTO gateways (public_ip, proto, family, ip_bin, "          \
	"ports_in_use, mappings, hosts, destinations, worst_ip, worst_port, " \
	"worst_zone, worst_mappings, worst_capacity, state_none, "          \
	"state_syn_sent, state_syn_recv, state_established, state_fin_wait, " \
	"state_close_wait, state_last_ack, state_time_wait, state_close, "  \
	"state_syn_sent2) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, " \
	"?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23) "  \
	"ON CONFLICT (public_ip, proto) DO UPDATE SET "                     \
	"ports_in_use = ?5, mappings = ?6, hosts = ?7, destinations = ?8, "  \
	"worst_ip = ?9, worst_port = ?10, worst_zone = ?11, "               \
	"worst_mappings = ?12, worst_capacity = ?13, state_none = ?14, "     \
	"state_syn_sent = ?15, state_syn_recv = ?16, "                      \
	"state_established = ?17, state_fin_wait = ?18, "                   \
	"state_close_wait = ?19, state_last_ack = ?20, "                    \
	"state_time_wait = ?21, state_close = ?22, state_syn_sent2 = ?23"

static int write_gateway(struct store *st, const struct store_gateway_row *r,
			 struct store_addr_text *gw, struct store_addr_text *other)
{
	/* A deleted gateway has no live mappings, so neither have any of
	 * its hosts or buckets: remove them too. */
	static const struct {
		enum store_stmt id;
		const char *sql;
	} del[] = {
		{ STMT_GW_DELETE, "DELETE FROM gateways "
				  "WHERE public_ip = ?1 AND proto = ?2" },
		{ STMT_GW_DELETE_HOSTS, "DELETE FROM hosts "
					"WHERE public_ip = ?1 AND proto = ?2" },
		{ STMT_GW_DELETE_DESTS, "DELETE FROM destinations "
					"WHERE public_ip = ?1 AND proto = ?2" },
	};
	sqlite3_stmt *s;

	for (size_t i = 0; r->deleted && i < sizeof(del) / sizeof(del[0]);
	     i++) {
		s = store_stmt(st, del[i].id, del[i].sql);
		if (!s || store_bind_addr(s, 1, 0, gw, &r->ip) < 0)
			return -1;
		store_bind_proto(s, 2, r->proto);
		if (store_step_done(st, s, "deleting a gateway") < 0)
			return -1;
	}
	if (r->deleted)
		return 0;
	s = store_stmt(st, STMT_GW_UPSERT, SQL_GW_UPSERT);
	if (!s || store_bind_addr(s, 1, 3, gw, &r->ip) < 0)
		return -1;
	store_bind_proto(s, 2, r->proto);
	sqlite3_bind_int64(s, 5, r->ports_in_use);
	sqlite3_bind_int64(s, 6, r->mappings);
	sqlite3_bind_int64(s, 7, r->hosts);
	sqlite3_bind_int64(s, 8, r->destinations);
	if (r->worst_ip.family && store_bind_addr(s, 9, 0, other, &r->worst_ip) < 0)
		return -1;
	sqlite3_bind_int(s, 10, r->worst_port);
	sqlite3_bind_int(s, 11, r->worst_zone);
	sqlite3_bind_int64(s, 12, r->worst_mappings);
	sqlite3_bind_int64(s, 13, r->worst_capacity);
	for (int i = 0; i < NS_TCP_STATES; i++)
		sqlite3_bind_int64(s, 14 + i, r->states[i]);
	return store_step_done(st, s, "writing a gateway");
}

static int write_host(struct store *st, const struct store_host_row *r,
		      struct store_addr_text *gw, struct store_addr_text *host)
{
	sqlite3_stmt *s;

	if (r->mappings == 0)
		s = store_stmt(st, STMT_HOST_DELETE,
			       "DELETE FROM hosts WHERE public_ip = ?1 AND "
			       "proto = ?2 AND ip = ?3");
	else
		s = store_stmt(st, STMT_HOST_UPSERT,
			       "INSERT INTO hosts (public_ip, proto, ip, kind, "
			       "family, ip_bin, mappings, ports_in_use) VALUES "
			       "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
			       "ON CONFLICT (public_ip, proto, ip) "
			       "DO UPDATE SET kind = ?4, "
			       "mappings = ?7, ports_in_use = ?8");
	if (!s || store_bind_addr(s, 1, 0, gw, &r->gateway) < 0)
		return -1;
	store_bind_proto(s, 2, r->proto);
	if (store_bind_addr(s, 3, r->mappings ? 5 : 0, host, &r->ip) < 0)
		return -1;
	if (r->mappings) {
		sqlite3_bind_text(s, 4, ns_kind_name(r->kind), -1,
				  SQLITE_STATIC);
		sqlite3_bind_int64(s, 7, r->mappings);
		sqlite3_bind_int64(s, 8, r->ports_in_use);
	}
	return store_step_done(st, s, "writing a host");
}

static int write_dest(struct store *st, const struct store_dest_row *r,
		      struct store_addr_text *gw, struct store_addr_text *dest)
{
	sqlite3_stmt *s;

	if (r->mappings == 0)
		s = store_stmt(st, STMT_DEST_DELETE,
			       "DELETE FROM destinations WHERE public_ip = ?1 "
			       "AND proto = ?2 AND zone = ?3 AND ip = ?4 AND "
			       "port = ?5");
	else
		s = store_stmt(st, STMT_DEST_UPSERT,
			       "INSERT INTO destinations (public_ip, proto, "
			       "zone, ip, port, family, ip_bin, mappings, "
			       "capacity) VALUES "
			       "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
			       "ON CONFLICT (public_ip, proto, zone, ip, port) "
			       "DO UPDATE SET mappings = ?8, capacity = ?9");
	if (!s || store_bind_addr(s, 1, 0, gw, &r->gateway) < 0)
		return -1;
	store_bind_proto(s, 2, r->proto);
	sqlite3_bind_int(s, 3, r->zone);
	if (store_bind_addr(s, 4, r->mappings ? 6 : 0, dest, &r->ip) < 0)
		return -1;
	sqlite3_bind_int(s, 5, r->port);
	if (r->mappings) {
		sqlite3_bind_int64(s, 8, r->mappings);
		sqlite3_bind_int64(s, 9, r->capacity);
	}
	return store_step_done(st, s, "writing a destination");
}

static int write_gap(struct store *st, const struct store_gap_row *g)
{
	sqlite3_stmt *s;

	s = store_stmt(st, STMT_GAP_UPSERT,
		       "INSERT INTO gaps (run_started_ms, seq, start_ms, "
		       "end_ms, events_lost, enobufs, added, removed, changed, "
		       "reason) "
		       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
		       "ON CONFLICT (run_started_ms, seq) DO UPDATE SET "
		       "start_ms = ?3, end_ms = ?4, events_lost = ?5, "
		       "enobufs = ?6, added = ?7, removed = ?8, changed = ?9, "
		       "reason = ?10");
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, g->run_started_ms);
	sqlite3_bind_int64(s, 2, g->seq);
	sqlite3_bind_int64(s, 3, g->start_ms);
	store_bind_ms(s, 4, g->end_ms);
	store_bind_opt(s, 5, g->events_lost);
	store_bind_u64(s, 6, g->enobufs);
	store_bind_u64(s, 7, g->added);
	store_bind_u64(s, 8, g->removed);
	store_bind_u64(s, 9, g->changed);
	sqlite3_bind_text(s, 10, g->reason, strnlen(g->reason,
						    sizeof(g->reason)),
			  SQLITE_STATIC);
	return store_step_done(st, s, "writing a gap");
}

/* Keeps the newest STORE_GAPS_KEEP gaps of the last STORE_GAPS_KEEP_MS
 * before now_ms, and the current run's open gap whatever its age. */
static int trim_gaps(struct store *st, int64_t now_ms, int64_t run_ms)
{
	sqlite3_stmt *s;

	s = store_stmt(st, STMT_GAP_TRIM_AGE,
		       "DELETE FROM gaps WHERE coalesce(end_ms, start_ms) < ?1 "
		       "AND NOT (end_ms IS NULL AND run_started_ms = ?2)");
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, now_ms - STORE_GAPS_KEEP_MS);
	sqlite3_bind_int64(s, 2, run_ms);
	if (store_step_done(st, s, "trimming the gap log") < 0)
		return -1;
	s = store_stmt(st, STMT_GAP_TRIM_COUNT,
		       "DELETE FROM gaps WHERE rowid IN "
		       "(SELECT rowid FROM gaps ORDER BY start_ms DESC, "
		       "run_started_ms DESC, seq DESC LIMIT -1 OFFSET ?1)");
	if (!s)
		return -1;
	sqlite3_bind_int(s, 1, STORE_GAPS_KEEP);
	return store_step_done(st, s, "trimming the gap log");
}

/* Writes the status row x with state and the store's own write
 * counters (the caller's writes_* fields are ignored). */
static int write_status(struct store *st, const struct store_status *x,
			uint8_t state, uint64_t writes_ok, int64_t write_ms)
{
	struct store_status row = *x;

	row.state = state;
	row.writes_ok = writes_ok;
	row.writes_failed = st->writes_failed;
	row.writes_last_ms = write_ms;
	snprintf(row.writes_last_error, sizeof(row.writes_last_error), "%s",
		 st->last_error);
	return store_write_status(st, &row);
}

/* A write's transaction, or its savepoint inside store_tx_begin()'s. */
static int tx_begin(struct store *st)
{
	sqlite3_stmt *s;

	if (st->outer_tx)
		return store_exec(st, "SAVEPOINT store_write",
				  "starting a savepoint");
	s = store_stmt(st, STMT_BEGIN, "BEGIN IMMEDIATE");
	return s ? store_step_done(st, s, "starting a transaction") : -1;
}

static int tx_commit(struct store *st)
{
	sqlite3_stmt *s;

	if (st->outer_tx)
		return store_exec(st, "RELEASE store_write",
				  "releasing a savepoint");
	s = store_stmt(st, STMT_COMMIT, "COMMIT");
	return s ? store_step_done(st, s, "committing") : -1;
}

/* Rolls back whatever the failed transaction (or savepoint) did; keeps
 * errno. */
static void tx_rollback(struct store *st)
{
	int err = errno;
	const char *sql = st->outer_tx ? "ROLLBACK TO store_write; "
					 "RELEASE store_write" : "ROLLBACK";

	for (int i = 0; i < STMT__COUNT; i++)
		if (st->stmt[i])
			sqlite3_reset(st->stmt[i]);
	if (!sqlite3_get_autocommit(st->db) &&
	    sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		log_warnx("store: %s: rollback: %s", st->path,
			  sqlite3_errmsg(st->db));
	errno = err;
}

int store_tx_begin(struct store *st)
{
	if (st->mode != STORE_READ_WRITE || st->outer_tx) {
		log_warnx("store: %s: a transaction needs a read-write store "
			  "and none open", st->path);
		errno = EINVAL;
		return -1;
	}
	if (store_exec(st, "BEGIN IMMEDIATE", "starting a transaction") < 0)
		return -1;
	st->outer_tx = 1;
	return 0;
}

int store_tx_end(struct store *st, int commit)
{
	int rc = 0, err;

	if (!st->outer_tx) {
		errno = EINVAL;
		return -1;
	}
	for (int i = 0; i < STMT__COUNT; i++)
		if (st->stmt[i])
			sqlite3_reset(st->stmt[i]);
	if (commit && store_exec(st, "COMMIT", "committing") == 0) {
		st->outer_tx = 0;
		/* our own commit: the next delta builds on it */
		return store_data_version(st, &st->data_version);
	}
	err = errno;
	if (!sqlite3_get_autocommit(st->db) &&
	    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK) {
		log_warnx("store: %s: rollback: %s", st->path,
			  sqlite3_errmsg(st->db));
		rc = -1;
	}
	st->outer_tx = 0;
	if (commit || rc < 0) {
		errno = commit ? err : EIO;
		return -1;
	}
	return 0;
}

static int clear_live(struct store *st)
{
	static const char *sql[] = {
		"DELETE FROM gateways",
		"DELETE FROM hosts",
		"DELETE FROM destinations",
	};
	sqlite3_stmt *s;

	for (int i = 0; i < 3; i++) {
		s = store_stmt(st, STMT_CLEAR_GATEWAYS + i, sql[i]);
		if (!s || store_step_done(st, s, "emptying live tables") < 0)
			return -1;
	}
	return 0;
}

/* Whether another connection committed since this one last looked (so
 * the tables may not be what natscope wrote).  Call inside a write
 * transaction, where nobody else can commit.  Returns 1 changed, 0 not,
 * -1 with errno. */
static int foreign_commit(struct store *st)
{
	int64_t v;

	if (store_data_version(st, &v) < 0)
		return -1;
	if (v == st->data_version)
		return 0;
	st->data_version = v;
	return 1;
}

int store_begin_run(struct store *st, const struct store_status *status)
{
	if (tx_begin(st) < 0)
		return -1;
	if (foreign_commit(st) < 0 || clear_live(st) < 0 ||
	    store_incidents_begin_run(st, ns_now_ms()) < 0 ||
	    store_maplog_begin_run(st, status->started_ms) < 0 || /* maplog */
	    write_status(st, status, STORE_STATE_STARTING, st->writes_ok,
			 st->last_write_ms) < 0 ||
	    tx_commit(st) < 0) {
		tx_rollback(st);
		return -1;
	}
	return 0;
}

/* Records a failed write so that the status row reports it. */
static void note_failure(struct store *st)
{
	int err = errno;

	st->writes_failed++;
	snprintf(st->last_error, sizeof(st->last_error), "%.*s",
		 (int)sizeof(st->last_error) - 1,
		 err == EINVAL ? "invalid row in batch" : st->last_msg);
	errno = err;
}

/* After a failed write: marks the status row alone, in a transaction of
 * its own, so that readers see the tables are not current.  Its other
 * fields (as_of included) still describe the last write that landed.
 * When this fails too (a full disk, a lock), the status row ages and
 * /healthz calls it stale.  Keeps errno. */
static void mark_failed(struct store *st)
{
	int err = errno;
	sqlite3_stmt *s;

	if (st->mode != STORE_READ_WRITE || st->outer_tx)
		return; /* inside store_tx_begin(): all of it rolls back */
	s = store_stmt(st, STMT_STATUS_FAILED,
		       "UPDATE status SET state = ?1, writes_failed = ?2, "
		       "writes_last_error = ?3 WHERE id = 1");
	if (s) {
		sqlite3_bind_text(s, 1, store_state_name(STORE_STATE_DB_ERROR),
				  -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, (int64_t)st->writes_failed);
		sqlite3_bind_text(s, 3, st->last_error, -1, SQLITE_STATIC);
		store_step_done(st, s, "marking the status db-error");
	}
	errno = err;
}

static void checkpoint(struct store *st)
{
	int log_pages, done_pages, rc;

	if (st->outer_tx ||
	    ++st->writes_since_checkpoint < STORE_CHECKPOINT_EVERY)
		return;
	st->writes_since_checkpoint = 0;
	rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
				       &log_pages, &done_pages);
	if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY)
		log_warnx("store: %s: checkpoint: %s", st->path,
			  sqlite3_errmsg(st->db));
	else
		log_debug("store: checkpoint: %d of %d WAL pages", done_pages,
			  log_pages);
}

int store_write(struct store *st, const struct store_batch *b)
{
	struct store_addr_text gw = { 0 }, other = { 0 };
	int64_t now = ns_now_ms();
	size_t i;
	int changed;

	if (tx_begin(st) < 0)
		goto fail;
	if ((changed = foreign_commit(st)) < 0)
		goto rollback;
	if (changed && !b->full) {
		log_warnx("store: %s: another connection changed the database "
			  "since natscope last wrote it: the tables may not be "
			  "what natscope wrote, so they will be rewritten in "
			  "full", st->path);
		snprintf(st->last_msg, sizeof(st->last_msg), "another "
			 "connection changed the tables; rewriting them in "
			 "full");
		errno = ESTALE;
		goto rollback;
	}
	if (b->full && clear_live(st) < 0)
		goto rollback;
	for (i = 0; i < b->n_gateways; i++)
		if (write_gateway(st, &b->gateways[i], &gw, &other) < 0)
			goto rollback;
	for (i = 0; i < b->n_hosts; i++)
		if (write_host(st, &b->hosts[i], &gw, &other) < 0)
			goto rollback;
	for (i = 0; i < b->n_dests; i++)
		if (write_dest(st, &b->dests[i], &gw, &other) < 0)
			goto rollback;
	for (i = 0; i < b->n_gaps; i++)
		if (write_gap(st, &b->gaps[i]) < 0)
			goto rollback;
	if (trim_gaps(st, b->status.as_of_ms > 0 ? b->status.as_of_ms : now,
		      b->status.started_ms) < 0)
		goto rollback;
	if (store_history_write(st, b) < 0)
		goto rollback;
	if (store_maplog_write(st, b, now) < 0) /* maplog */
		goto rollback;
	if (write_status(st, &b->status, b->status.state, st->writes_ok + 1,
			 now) < 0)
		goto rollback;
	if (tx_commit(st) < 0)
		goto rollback;
	store_history_committed(st, b, 1);
	store_maplog_committed(st, b); /* maplog */
	st->writes_ok++;
	st->last_write_ms = now;
	checkpoint(st);
	return 0;
rollback:
	note_failure(st);
	tx_rollback(st);
	store_history_committed(st, b, 0);
	store_maplog_failed(st, b); /* maplog: kept for the next write */
	mark_failed(st);
	return -1;
fail:
	note_failure(st);
	store_history_committed(st, b, 0);
	store_maplog_failed(st, b); /* maplog */
	mark_failed(st);
	return -1;
}
