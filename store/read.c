/*
 * read.c - the read side: the API's JSON documents, built by SQLite's JSON
 * functions in one statement each (so each is one consistent snapshot),
 * and the rows read back for /metrics.
 */
#include "store/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/*
 * What every answer shares.  s is the status row (none before the first
 * run); cov the gaps the answer's period overlaps: a closed gap overlapping
 * [as_of - interval, as_of], or this run's open gap.  An open gap of an
 * earlier run never closes (that run ended) and is not counted.
 */
#define SQL_WITH                                                            \
	"WITH s AS (SELECT * FROM status WHERE id = 1), "                   \
	"cov AS (SELECT g.* FROM gaps g, s WHERE "                          \
	"(g.end_ms IS NULL AND g.run_started_ms = s.started_ms) OR "        \
	"(g.end_ms IS NOT NULL AND g.start_ms <= s.as_of_ms AND "           \
	"g.end_ms >= s.as_of_ms - s.interval_s * 1000)) "

/* "generated_at", "as_of" and "coverage" (complete, how the table is
 * followed - the figures are as of the last dump when by "dumps" - and
 * the gaps); ?1 is now. */
#define SQL_HEADER                                                          \
	"'generated_at', " SQL_TIME("?1") ", "                              \
	"'as_of', (SELECT " SQL_TIME("as_of_ms") " FROM s), "              \
	"'coverage', json_object('complete', json(CASE WHEN "               \
	"(SELECT state FROM s) NOT IN ('starting', 'db-error') AND "       \
	"NOT EXISTS (SELECT 1 FROM cov) THEN 'true' ELSE 'false' END), "    \
	"'follow', (SELECT follow FROM s), "                                \
	"'gaps', json((SELECT json_group_array(json(o)) FROM (SELECT "      \
	SQL_GAP_OBJECT " AS o FROM cov "                                    \
	"ORDER BY start_ms, run_started_ms, seq)))), "

static const char sql_json_gateways[] =
	SQL_WITH
	"SELECT json_object(" SQL_HEADER
	"'gateways', json((SELECT json_group_array(json(o)) FROM ("
	"SELECT CASE WHEN proto = 'tcp' THEN json_set(o1, '$.states', "
	"json_object('none', state_none, 'syn_sent', state_syn_sent, "
	"'syn_recv', state_syn_recv, 'established', state_established, "
	"'fin_wait', state_fin_wait, 'close_wait', state_close_wait, "
	"'last_ack', state_last_ack, 'time_wait', state_time_wait, "
	"'close', state_close, 'syn_sent2', state_syn_sent2)) "
	"ELSE o1 END AS o FROM ("
	"SELECT *, json_object('public_ip', public_ip, 'proto', proto, "
	"'ports_in_use', ports_in_use, 'port_space', ns_port_space(proto), "
	"'mappings', mappings, 'hosts', hosts, 'destinations', destinations, "
	"'worst_destination', json(CASE WHEN worst_mappings > 0 THEN "
	"json_object('ip', worst_ip, 'port', worst_port, 'zone', worst_zone, "
	"'mappings', worst_mappings, 'capacity', worst_capacity) END)) AS o1 "
	"FROM gateways ORDER BY family, ip_bin, proto)))))";

/* ?2 public_ip, ?3 proto, ?4 limit.  First column: whether the gateway
 * has a row. */
static const char sql_json_hosts[] =
	SQL_WITH
	"SELECT EXISTS (SELECT 1 FROM gateways "
	"WHERE public_ip = ?2 AND proto = ?3), json_object(" SQL_HEADER
	"'public_ip', ?2, 'proto', ?3, "
	"'total', (SELECT count(*) FROM hosts "
	"WHERE public_ip = ?2 AND proto = ?3), 'limit', ?4, "
	"'hosts', json((SELECT json_group_array(json(o)) FROM ("
	"SELECT json_object('ip', ip, 'mappings', mappings, "
	"'ports_in_use', ports_in_use, 'kind', kind) AS o FROM hosts "
	"WHERE public_ip = ?2 AND proto = ?3 "
	"ORDER BY mappings DESC, family, ip_bin LIMIT ?4))))";

static const char sql_json_dests[] =
	SQL_WITH
	"SELECT EXISTS (SELECT 1 FROM gateways "
	"WHERE public_ip = ?2 AND proto = ?3), json_object(" SQL_HEADER
	"'public_ip', ?2, 'proto', ?3, "
	"'total', (SELECT count(*) FROM destinations "
	"WHERE public_ip = ?2 AND proto = ?3), 'limit', ?4, "
	"'destinations', json((SELECT json_group_array(json(o)) FROM ("
	"SELECT json_object('ip', ip, 'port', port, 'zone', zone, "
	"'mappings', mappings, 'capacity', capacity) AS o FROM destinations "
	"WHERE public_ip = ?2 AND proto = ?3 "
	"ORDER BY mappings DESC, family, ip_bin, port, zone LIMIT ?4))))";

/* /api/v1/status: the header, the status fields (status.c builds their
 * part from STORE_STATUS_FIELDS) and the newest gaps. */
#define SQL_JSON_STATUS_HEAD SQL_WITH "SELECT json_object(" SQL_HEADER
#define SQL_JSON_STATUS_TAIL                                                \
	", 'gaps', json((SELECT json_group_array(json(o)) FROM (SELECT "    \
	SQL_GAP_OBJECT " AS o FROM gaps "                                   \
	"ORDER BY start_ms DESC, run_started_ms DESC, seq DESC LIMIT 10)))) " \
	"FROM s"

int store_column_dup(sqlite3_stmt *s, int col, char **out)
{
	const unsigned char *text = sqlite3_column_text(s, col);
	int len = sqlite3_column_bytes(s, col);

	if (!text) {
		errno = sqlite3_errcode(sqlite3_db_handle(s)) == SQLITE_NOMEM
				? ENOMEM
				: EIO;
		log_warn("store: empty JSON answer");
		return -1;
	}
	if (!(*out = malloc((size_t)len + 1))) {
		log_warn("store: JSON answer of %d bytes", len);
		return -1;
	}
	memcpy(*out, text, (size_t)len + 1);
	return 0;
}

/* Steps a JSON statement: one row, the document in column col, and when
 * col is 1 column 0 says whether the asked-for gateway exists. */
static int json_answer(struct store *st, sqlite3_stmt *s, int col,
		       const char *what, char **out)
{
	int rc, ret = -1;

	*out = NULL;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		if (col == 1 && !sqlite3_column_int(s, 0))
			errno = ENOENT;
		else
			ret = store_column_dup(s, col, out);
	} else if (rc == SQLITE_DONE) {
		errno = ENOENT;
	} else {
		store_fail(st, rc, what);
	}
	rc = errno;
	sqlite3_reset(s); /* ends the read transaction */
	errno = rc;
	return ret;
}

int store_json_gateways(struct store *st, int64_t now_ms, char **out)
{
	sqlite3_stmt *s;

	*out = NULL;
	if (!(s = store_stmt(st, STMT_JSON_GATEWAYS, sql_json_gateways)))
		return -1;
	sqlite3_bind_int64(s, 1, now_ms);
	return json_answer(st, s, 0, "reading gateways", out);
}

static int json_gateway_list(struct store *st, enum store_stmt id,
			     const char *sql, const struct ns_addr *gateway,
			     uint8_t proto, unsigned limit, int64_t now_ms,
			     char **out)
{
	char ip[NS_ADDR_STRLEN];
	const char *name = ns_proto_name(proto);
	sqlite3_stmt *s;

	*out = NULL;
	if (!ns_addr_format(gateway, ip) || !name) {
		errno = EINVAL;
		return -1;
	}
	if (!(s = store_stmt(st, id, sql)))
		return -1;
	sqlite3_bind_int64(s, 1, now_ms);
	sqlite3_bind_text(s, 2, ip, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, limit);
	return json_answer(st, s, 1, "reading a gateway", out);
}

int store_json_hosts(struct store *st, const struct ns_addr *gateway,
		     uint8_t proto, unsigned limit, int64_t now_ms, char **out)
{
	return json_gateway_list(st, STMT_JSON_HOSTS, sql_json_hosts, gateway,
				 proto, limit, now_ms, out);
}

int store_json_destinations(struct store *st, const struct ns_addr *gateway,
			    uint8_t proto, unsigned limit, int64_t now_ms,
			    char **out)
{
	return json_gateway_list(st, STMT_JSON_DESTS, sql_json_dests, gateway,
				 proto, limit, now_ms, out);
}

int store_json_status(struct store *st, int64_t now_ms, char **out)
{
	sqlite3_stmt *s;

	*out = NULL;
	if (!st->stmt[STMT_JSON_STATUS]) {
		char *fields = store_sql_status_json();
		char *sql;
		size_t n;

		if (!fields)
			return -1;
		n = sizeof(SQL_JSON_STATUS_HEAD) + strlen(fields) +
		    sizeof(SQL_JSON_STATUS_TAIL);
		if (!(sql = malloc(n))) {
			free(fields);
			log_warn("store: status query");
			return -1;
		}
		snprintf(sql, n, "%s%s%s", SQL_JSON_STATUS_HEAD, fields,
			 SQL_JSON_STATUS_TAIL);
		free(fields);
		s = store_stmt(st, STMT_JSON_STATUS, sql);
		free(sql);
	} else {
		s = store_stmt(st, STMT_JSON_STATUS, NULL);
	}
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, now_ms);
	return json_answer(st, s, 0, "reading the status", out);
}

void store_json_error(struct store *st, const char *msg, char **out)
{
	static const char fallback[] = "{\"error\":\"internal error\"}";
	sqlite3_stmt *s = NULL;
	sqlite3 *mem = NULL;
	int err = errno;

	*out = NULL;
	if (st) {
		s = store_stmt(st, STMT_JSON_ERROR,
			       "SELECT json_object('error', ?1)");
	} else if (sqlite3_open(":memory:", &mem) != SQLITE_OK ||
		   sqlite3_prepare_v2(mem, "SELECT json_object('error', ?1)",
				      -1, &s, NULL) != SQLITE_OK) {
		s = NULL;
	}
	if (s) {
		sqlite3_bind_text(s, 1, msg ? msg : "", -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW)
			store_column_dup(s, 0, out);
		if (mem)
			sqlite3_finalize(s);
		else
			sqlite3_reset(s);
	}
	sqlite3_close(mem);
	if (!*out && !(*out = strdup(fallback)))
		log_warn("store: error answer");
	errno = err;
}

/* ---- rows back ---- */

static uint8_t column_proto(sqlite3_stmt *s, int col)
{
	const char *name = (const char *)sqlite3_column_text(s, col);
	int proto = name ? ns_proto_parse(name) : -1;

	/* A protocol without a name was stored as its number. */
	return proto >= 0 ? (uint8_t)proto
			  : (uint8_t)sqlite3_column_int(s, col);
}

/* The address in the family (4/6) and ip_bin columns at col, col + 1. */
static void column_addr(sqlite3_stmt *s, int col, struct ns_addr *a)
{
	const void *bin = sqlite3_column_blob(s, col + 1);
	int len = sqlite3_column_bytes(s, col + 1);

	memset(a, 0, sizeof(*a));
	a->family = sqlite3_column_int(s, col) == 4 ? AF_INET : AF_INET6;
	if (bin && len == (a->family == AF_INET ? 4 : 16))
		memcpy(a->bytes, bin, (size_t)len);
}

static uint8_t kind_parse(const char *name)
{
	if (name && strcmp(name, "nat") == 0)
		return NS_KIND_NAT;
	if (name && strcmp(name, "local") == 0)
		return NS_KIND_LOCAL;
	return NS_KIND_OTHER;
}

int store_read_begin(struct store *st)
{
	return store_exec(st, "BEGIN DEFERRED", "starting a read");
}

void store_read_end(struct store *st)
{
	int saved = errno;

	store_exec(st, "COMMIT", "ending a read");
	errno = saved;
}

/* Appends one zeroed element to the array *arr points to.  NULL with
 * ENOMEM (logged). */
static void *array_add(void *arr, size_t n, size_t *cap, size_t size)
{
	char *base;

	if (store_grow(arr, n, cap, size) < 0)
		return NULL;
	memcpy(&base, arr, sizeof(base));
	memset(base + n * size, 0, size);
	return base + n * size;
}

/* Ends a row-reading loop: rc is the last sqlite3_step() result. */
static int rows_done(struct store *st, sqlite3_stmt *s, int rc, void *rows,
		     const char *what)
{
	int err;

	if (rc == SQLITE_DONE) {
		sqlite3_reset(s);
		return 0;
	}
	if (rc != SQLITE_ROW) /* else array_add() failed and logged */
		store_fail(st, rc, what);
	err = errno;
	sqlite3_reset(s);
	free(rows);
	errno = err;
	return -1;
}

int store_read_gateways(struct store *st, struct store_gateway_row **rows,
			size_t *n)
{
	struct store_gateway_row *r, *arr = NULL;
	size_t cap = 0;
	sqlite3_stmt *s;
	int rc;

	*rows = NULL;
	*n = 0;
	s = store_stmt(st, STMT_READ_GATEWAYS,
		       "SELECT family, ip_bin, proto, ports_in_use, mappings, "
		       "hosts, destinations, worst_ip, worst_port, worst_zone, "
		       "worst_mappings, worst_capacity, state_none, "
		       "state_syn_sent, state_syn_recv, state_established, "
		       "state_fin_wait, state_close_wait, state_last_ack, "
		       "state_time_wait, state_close, state_syn_sent2 "
		       "FROM gateways ORDER BY family, ip_bin, proto");
	if (!s)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (!(r = array_add(&arr, *n, &cap, sizeof(*r))))
			break;
		column_addr(s, 0, &r->ip);
		r->proto = column_proto(s, 2);
		r->ports_in_use = (uint32_t)sqlite3_column_int64(s, 3);
		r->mappings = (uint32_t)sqlite3_column_int64(s, 4);
		r->hosts = (uint32_t)sqlite3_column_int64(s, 5);
		r->destinations = (uint32_t)sqlite3_column_int64(s, 6);
		if (sqlite3_column_type(s, 7) != SQLITE_NULL)
			ns_addr_parse((const char *)sqlite3_column_text(s, 7),
				      &r->worst_ip);
		r->worst_port = (uint16_t)sqlite3_column_int(s, 8);
		r->worst_zone = (uint16_t)sqlite3_column_int(s, 9);
		r->worst_mappings = (uint32_t)sqlite3_column_int64(s, 10);
		r->worst_capacity = (uint32_t)sqlite3_column_int64(s, 11);
		for (int i = 0; i < NS_TCP_STATES; i++)
			r->states[i] = (uint32_t)sqlite3_column_int64(s,
								      12 + i);
		(*n)++;
	}
	if (rows_done(st, s, rc, arr, "reading gateways") < 0) {
		*n = 0;
		return -1;
	}
	*rows = arr;
	return 0;
}

int store_read_top_hosts(struct store *st, const struct ns_addr *gateway,
			 uint8_t proto, unsigned k,
			 struct store_host_row **rows, size_t *n)
{
	struct store_host_row *r, *arr = NULL;
	char ip[NS_ADDR_STRLEN];
	const char *name = ns_proto_name(proto);
	size_t cap = 0;
	sqlite3_stmt *s;
	int rc;

	*rows = NULL;
	*n = 0;
	if (!ns_addr_format(gateway, ip) || !name) {
		errno = EINVAL;
		return -1;
	}
	s = store_stmt(st, STMT_READ_TOP_HOSTS,
		       "SELECT family, ip_bin, kind, mappings, ports_in_use "
		       "FROM hosts WHERE public_ip = ?1 AND proto = ?2 "
		       "ORDER BY mappings DESC, family, ip_bin LIMIT ?3");
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, ip, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, k);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *kind = (const char *)sqlite3_column_text(s, 2);

		if (!(r = array_add(&arr, *n, &cap, sizeof(*r))))
			break;
		r->gateway = *gateway;
		r->proto = proto;
		column_addr(s, 0, &r->ip);
		r->kind = kind_parse(kind);
		r->mappings = (uint32_t)sqlite3_column_int64(s, 3);
		r->ports_in_use = (uint32_t)sqlite3_column_int64(s, 4);
		(*n)++;
	}
	if (rows_done(st, s, rc, arr, "reading hosts") < 0) {
		*n = 0;
		return -1;
	}
	*rows = arr;
	return 0;
}

int store_read_gone_gateways(struct store *st, int64_t since_ms,
			     struct store_gateway_row **rows, size_t *n)
{
	struct store_gateway_row *r, *arr = NULL;
	size_t cap = 0;
	sqlite3_stmt *s;
	int rc;

	*rows = NULL;
	*n = 0;
	s = store_stmt(st, STMT_READ_GONE_GATEWAYS,
		       "SELECT DISTINCT h.family, h.ip_bin, h.proto "
		       "FROM hist_gateway h WHERE h.tier = 0 AND "
		       "h.ts_ms >= ?1 - 1000 * max(60, 10 * coalesce("
		       "(SELECT interval_s FROM status WHERE id = 1), 360)) AND "
		       "h.ts_ms + h.span_ms >= ?1 AND h.mappings_peak > 0 AND "
		       "NOT EXISTS (SELECT 1 FROM gateways g WHERE "
		       "g.public_ip = h.public_ip AND g.proto = h.proto) "
		       "ORDER BY h.family, h.ip_bin, h.proto");
	if (!s)
		return -1;
	/* a raw period lasts an interval: starting at most ten intervals
	 * (a minute at least) before since_ms bounds the scan of the index
	 * on (tier, ts_ms) to minutes instead of the day of raw history (a
	 * longer period, writes failing for that long, only costs its
	 * gateway its zeros) */
	sqlite3_bind_int64(s, 1, since_ms);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (!(r = array_add(&arr, *n, &cap, sizeof(*r))))
			break;
		column_addr(s, 0, &r->ip);
		r->proto = column_proto(s, 2);
		(*n)++;
	}
	if (rows_done(st, s, rc, arr, "reading the gateways gone") < 0) {
		*n = 0;
		return -1;
	}
	*rows = arr;
	return 0;
}

int store_read_coverage(struct store *st, struct store_coverage *c)
{
	sqlite3_stmt *s;
	int rc;

	memset(c, 0, sizeof(*c));
	s = store_stmt(st, STMT_READ_COVERAGE,
		       SQL_WITH
		       "SELECT (SELECT state FROM s) NOT IN "
		       "('starting', 'db-error') AND NOT EXISTS "
		       "(SELECT 1 FROM cov), "
		       "EXISTS (SELECT 1 FROM gaps g, s WHERE g.end_ms IS NULL "
		       "AND g.run_started_ms = s.started_ms), "
		       "(SELECT coalesce(max(g.seq), 0) FROM gaps g, s WHERE "
		       "g.run_started_ms = s.started_ms) "
		       "FROM s");
	if (!s)
		return -1;
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		if (rc == SQLITE_DONE)
			errno = ENOENT;
		else
			store_fail(st, rc, "reading the coverage");
		rc = errno;
		sqlite3_reset(s);
		errno = rc;
		return -1;
	}
	c->complete = sqlite3_column_int(s, 0) != 0;
	c->gap_open = sqlite3_column_int(s, 1) != 0;
	c->gaps_run = (uint64_t)sqlite3_column_int64(s, 2);
	sqlite3_reset(s);
	return 0;
}
