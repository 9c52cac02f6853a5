/*
 * history.c - the history tables (schema/004_history.sql): each write's
 * period goes in raw (gateways, the kernel); hosts and buckets gather in
 * TEMP accumulators until their minute is over; minutes and hours are
 * rolled up from the finer tier when they end; retention by age, then by
 * size.  Everything here runs inside store_write()'s transaction, so a
 * failed write leaves no half of a period behind (and the accumulators,
 * being tables of the same connection, roll back with it).
 */
#include "store/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const int64_t tier_ms[STORE_TIERS] = { 0, 60000, 3600000 };

void store_history_defaults(struct store_history_config *cfg)
{
	cfg->keep_ms[0] = 24LL * 3600 * 1000;	    /* raw: a day */
	cfg->keep_ms[1] = 7LL * 24 * 3600 * 1000;   /* minutes: a week */
	cfg->keep_ms[2] = 90LL * 24 * 3600 * 1000;  /* hours: 90 days */
	cfg->max_bytes = 1ULL << 30;
	cfg->keep_top_minute_ms = 24LL * 3600 * 1000; /* a day, as raw */
	cfg->top = 10;
	cfg->warn = 0.7;
	cfg->critical = 0.9;
}

int store_history_configure(struct store *st,
			    const struct store_history_config *cfg)
{
	if (cfg->top < 1 || cfg->max_bytes < (1ULL << 20) ||
	    !(cfg->warn > 0 && cfg->warn <= cfg->critical &&
	      cfg->critical <= 1)) {
		errno = EINVAL;
		return -1;
	}
	if (cfg->keep_top_minute_ms < 0) {
		errno = EINVAL;
		return -1;
	}
	for (int i = 0; i < STORE_TIERS; i++)
		if (cfg->keep_ms[i] < 0) {
			errno = EINVAL;
			return -1;
		}
	st->hist_cfg = *cfg;
	st->hist_configured = 1;
	return 0;
}

/* ---- the accumulators of the open minute ---- */

static const char sql_acc[] =
	"CREATE TEMP TABLE IF NOT EXISTS acc_host ("
	" public_ip TEXT NOT NULL, proto TEXT NOT NULL, ip TEXT NOT NULL,"
	" kind TEXT NOT NULL, family INTEGER NOT NULL, ip_bin BLOB NOT NULL,"
	" span_ms INTEGER NOT NULL, mappings INTEGER NOT NULL,"
	" mappings_peak INTEGER NOT NULL, ports_in_use INTEGER NOT NULL,"
	" new_mappings INTEGER NOT NULL,"
	" PRIMARY KEY (public_ip, proto, ip)) WITHOUT ROWID;"
	"CREATE TEMP TABLE IF NOT EXISTS acc_dest ("
	" public_ip TEXT NOT NULL, proto TEXT NOT NULL, zone INTEGER NOT NULL,"
	" ip TEXT NOT NULL, port INTEGER NOT NULL, family INTEGER NOT NULL,"
	" ip_bin BLOB NOT NULL, span_ms INTEGER NOT NULL,"
	" capacity INTEGER NOT NULL, mappings INTEGER NOT NULL,"
	" mappings_peak INTEGER NOT NULL, new_mappings INTEGER NOT NULL,"
	" PRIMARY KEY (public_ip, proto, zone, ip, port)) WITHOUT ROWID;"
	"CREATE TEMP TABLE IF NOT EXISTS cur_sat ("
	" public_ip TEXT, proto TEXT, zone INTEGER, ip TEXT, port INTEGER,"
	" mappings INTEGER, peak INTEGER, capacity INTEGER, new_per_second REAL);";

#define SQL_ACC_HOST                                                        \
	"INSERT INTO acc_host VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "  \
	"?10, ?11) ON CONFLICT DO UPDATE SET kind = ?4, "                   \
	"span_ms = span_ms + ?7, mappings = ?8, "                           \
	"mappings_peak = max(mappings_peak, ?9), ports_in_use = ?10, "      \
	"new_mappings = new_mappings + ?11"

#define SQL_ACC_DEST                                                        \
	"INSERT INTO acc_dest VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "  \
	"?10, ?11, ?12) ON CONFLICT DO UPDATE SET span_ms = span_ms + ?8, " \
	"capacity = ?9, mappings = ?10, "                                   \
	"mappings_peak = max(mappings_peak, ?11), "                         \
	"new_mappings = new_mappings + ?12"

static int acc_host(struct store *st, const struct store_hist_host *r,
		    int64_t span, struct store_addr_text *gw,
		    struct store_addr_text *other)
{
	sqlite3_stmt *s = store_stmt(st, STMT_HIST_ACC_HOST, SQL_ACC_HOST);

	if (!s || store_bind_addr(s, 1, 0, gw, &r->end.gateway) < 0 ||
	    store_bind_addr(s, 3, 5, other, &r->end.ip) < 0)
		return -1;
	store_bind_proto(s, 2, r->end.proto);
	sqlite3_bind_text(s, 4, ns_kind_name(r->end.kind), -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 7, span);
	sqlite3_bind_int64(s, 8, r->end.mappings);
	sqlite3_bind_int64(s, 9, r->mappings_peak);
	sqlite3_bind_int64(s, 10, r->end.ports_in_use);
	sqlite3_bind_int64(s, 11, r->new_mappings);
	return store_step_done(st, s, "history: a host");
}

static int acc_dest(struct store *st, const struct store_hist_dest *r,
		    int64_t span, struct store_addr_text *gw,
		    struct store_addr_text *other)
{
	sqlite3_stmt *s = store_stmt(st, STMT_HIST_ACC_DEST, SQL_ACC_DEST);

	if (!s || store_bind_addr(s, 1, 0, gw, &r->end.gateway) < 0 ||
	    store_bind_addr(s, 4, 6, other, &r->end.ip) < 0)
		return -1;
	store_bind_proto(s, 2, r->end.proto);
	sqlite3_bind_int(s, 3, r->end.zone);
	sqlite3_bind_int(s, 5, r->end.port);
	sqlite3_bind_int64(s, 8, span);
	sqlite3_bind_int64(s, 9, r->end.capacity);
	sqlite3_bind_int64(s, 10, r->end.mappings);
	sqlite3_bind_int64(s, 11, r->mappings_peak);
	sqlite3_bind_int64(s, 12, r->new_mappings);
	return store_step_done(st, s, "history: a bucket");
}

/* ---- raw rows ---- */

#define SQL_RAW_GW                                                          \
	"INSERT OR REPLACE INTO hist_gateway (public_ip, proto, tier, ts_ms, " \
	"span_ms, exact, family, ip_bin, ports_in_use, ports_peak, "        \
	"ports_avg, mappings, mappings_peak, mappings_avg, hosts, "         \
	"destinations, new_mappings, worst_ip, worst_port, worst_zone, "    \
	"worst_capacity, worst_peak, state_none, state_syn_sent, "          \
	"state_syn_recv, state_established, state_fin_wait, "               \
	"state_close_wait, state_last_ack, state_time_wait, state_close, "  \
	"state_syn_sent2, time_wait_peak) VALUES (?1, ?2, 0, ?3, ?4, ?5, "  \
	"?6, ?7, ?8, ?9, ?8, ?10, ?11, ?10, ?12, ?13, ?14, ?15, ?16, ?17, " \
	"?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30)"

static int raw_gateway(struct store *st, const struct store_history *h,
		       const struct store_hist_gateway *r,
		       struct store_addr_text *gw, struct store_addr_text *other)
{
	sqlite3_stmt *s = store_stmt(st, STMT_HIST_RAW_GW, SQL_RAW_GW);

	if (!s || store_bind_addr(s, 1, 6, gw, &r->end.ip) < 0)
		return -1;
	store_bind_proto(s, 2, r->end.proto);
	sqlite3_bind_int64(s, 3, h->start_ms);
	sqlite3_bind_int64(s, 4, h->end_ms - h->start_ms);
	sqlite3_bind_int(s, 5, h->exact);
	sqlite3_bind_int64(s, 8, r->end.ports_in_use);
	sqlite3_bind_int64(s, 9, r->ports_peak);
	sqlite3_bind_int64(s, 10, r->end.mappings);
	sqlite3_bind_int64(s, 11, r->mappings_peak);
	sqlite3_bind_int64(s, 12, r->end.hosts);
	sqlite3_bind_int64(s, 13, r->end.destinations);
	sqlite3_bind_int64(s, 14, r->new_mappings);
	if (r->end.worst_mappings) {
		if (store_bind_addr(s, 15, 0, other, &r->end.worst_ip) < 0)
			return -1;
		sqlite3_bind_int(s, 16, r->end.worst_port);
		sqlite3_bind_int(s, 17, r->end.worst_zone);
		sqlite3_bind_int64(s, 18, r->end.worst_capacity);
	}
	sqlite3_bind_int64(s, 19, r->end.worst_mappings);
	for (int i = 0; i < NS_TCP_STATES; i++)
		sqlite3_bind_int64(s, 20 + i, r->end.states[i]);
	sqlite3_bind_int64(s, 30, r->time_wait_peak);
	return store_step_done(st, s, "history: a gateway");
}

#define SQL_RAW_KERNEL                                                      \
	"INSERT OR REPLACE INTO hist_kernel (tier, ts_ms, span_ms, exact, "  \
	"state, mappings_nat, mappings_local, ct_count, ct_count_peak, "    \
	"ct_max, ct_insert_failed, ct_drop, ct_early_drop, "                \
	"ct_clash_resolve, events_lost, port_range_lo, port_range_hi, "     \
	"tcp_tw_reuse, tcp_fin_timeout, tcp_timeout_time_wait, ct_events) " \
	"VALUES (0, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12, " \
	"?13, ?14, ?15, ?16, ?17, ?18, ?19)"

int64_t store_history_rise(const struct store *st,
			   const struct store_status *x, int64_t now,
			   int64_t before)
{
	if (!st->hist_have_prev || st->hist_prev.started_ms != x->started_ms ||
	    now < 0 || before < 0 || now < before)
		return -1;
	return now - before;
}

static int raw_kernel(struct store *st, const struct store_history *h,
		      const struct store_status *x, int state)
{
	sqlite3_stmt *s = store_stmt(st, STMT_HIST_RAW_KERNEL, SQL_RAW_KERNEL);
	const struct store_status *p = &st->hist_prev;
	int64_t lost = store_history_rise(st, x, (int64_t)x->events_lost,
					  (int64_t)p->events_lost);

	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, h->start_ms);
	sqlite3_bind_int64(s, 2, h->end_ms - h->start_ms);
	sqlite3_bind_int(s, 3, h->exact && state == STORE_STATE_RUNNING);
	sqlite3_bind_text(s, 4, store_state_name((enum store_state)state), -1,
			  SQLITE_STATIC);
	store_bind_u64(s, 5, x->mappings_nat);
	store_bind_u64(s, 6, x->mappings_local);
	store_bind_opt(s, 7, x->conntrack_count);
	store_bind_opt(s, 8, x->conntrack_max);
	store_bind_opt(s, 9, store_history_rise(st, x, x->conntrack_insert_failed,
						p->conntrack_insert_failed));
	store_bind_opt(s, 10, store_history_rise(st, x, x->conntrack_drop,
						 p->conntrack_drop));
	store_bind_opt(s, 11, store_history_rise(st, x, x->conntrack_early_drop,
						 p->conntrack_early_drop));
	store_bind_opt(s, 12, store_history_rise(st, x,
						 x->conntrack_clash_resolve,
						 p->conntrack_clash_resolve));
	store_bind_u64(s, 13, lost > 0 ? (uint64_t)lost : 0);
	store_bind_opt(s, 14, x->sysctl_port_range_lo);
	store_bind_opt(s, 15, x->sysctl_port_range_hi);
	store_bind_opt(s, 16, x->sysctl_tcp_tw_reuse);
	store_bind_opt(s, 17, x->sysctl_tcp_fin_timeout);
	store_bind_opt(s, 18, x->sysctl_tcp_timeout_time_wait);
	store_bind_opt(s, 19, x->sysctl_conntrack_events);
	return store_step_done(st, s, "history: the kernel");
}

/* ---- rollups ---- */

/* The period a row of a tier belongs to in the next: raw rows by the end
 * of their interval (as the collector counts them), minute rows by their
 * start.  ?1 is the coarser period's length, ?2..?3 the range of
 * periods [lo, hi) to make, ?4 the finer tier, ?5 the start of the
 * finer row that holds lo (raw: its period may begin before lo): with
 * ts_ms in [?5, ?3) the index on (tier, ts_ms) bounds the scan to the
 * rows rolled up instead of the whole tier. */
#define PERIOD_OF "((CASE WHEN tier = 0 THEN ts_ms + span_ms ELSE ts_ms END) / ?1 * ?1)"

static const char sql_roll_gw[] =
	"INSERT OR REPLACE INTO hist_gateway (public_ip, proto, tier, ts_ms,"
	" span_ms, exact, family, ip_bin, ports_in_use, ports_peak, ports_avg,"
	" mappings, mappings_peak, mappings_avg, hosts, destinations,"
	" new_mappings, worst_ip, worst_port, worst_zone, worst_capacity,"
	" worst_peak, state_none, state_syn_sent, state_syn_recv,"
	" state_established, state_fin_wait, state_close_wait, state_last_ack,"
	" state_time_wait, state_close, state_syn_sent2, time_wait_peak) "
	"WITH r AS (SELECT *, " PERIOD_OF " AS p FROM hist_gateway"
	"  WHERE tier = ?4 AND ts_ms >= ?5 AND ts_ms < ?3 AND " PERIOD_OF
	" >= ?2 AND " PERIOD_OF " < ?3),"
	" o AS (SELECT *, row_number() OVER (PARTITION BY public_ip, proto, p"
	"  ORDER BY ts_ms DESC) AS nl, row_number() OVER (PARTITION BY"
	"  public_ip, proto, p ORDER BY CAST(worst_peak AS REAL) /"
	"  max(coalesce(worst_capacity, 1), 1) DESC, worst_peak DESC) AS nw"
	"  FROM r),"
	" a AS (SELECT public_ip, proto, p, sum(span_ms) AS span, min(exact)"
	"  AS ex, max(ports_peak) AS pp, sum(ports_avg * span_ms) /"
	"  max(sum(span_ms), 1) AS pa, max(mappings_peak) AS mp,"
	"  sum(mappings_avg * span_ms) / max(sum(span_ms), 1) AS ma,"
	"  sum(new_mappings) AS nm, max(time_wait_peak) AS tw FROM r"
	"  GROUP BY public_ip, proto, p) "
	"SELECT a.public_ip, a.proto, ?4 + 1, a.p, a.span, a.ex, l.family,"
	" l.ip_bin, l.ports_in_use, a.pp, a.pa, l.mappings, a.mp, a.ma, l.hosts,"
	" l.destinations, a.nm, w.worst_ip, w.worst_port, w.worst_zone,"
	" w.worst_capacity, w.worst_peak, l.state_none, l.state_syn_sent,"
	" l.state_syn_recv, l.state_established, l.state_fin_wait,"
	" l.state_close_wait, l.state_last_ack, l.state_time_wait, l.state_close,"
	" l.state_syn_sent2, a.tw FROM a"
	" JOIN o AS l ON l.public_ip = a.public_ip AND l.proto = a.proto AND"
	"  l.p = a.p AND l.nl = 1"
	" JOIN o AS w ON w.public_ip = a.public_ip AND w.proto = a.proto AND"
	"  w.p = a.p AND w.nw = 1";

/* state order: running < resyncing < starting < db-error < stopped */
#define STATE_RANK "(CASE state WHEN 'running' THEN 0 WHEN 'resyncing' THEN 1 " \
	"WHEN 'starting' THEN 2 WHEN 'db-error' THEN 3 ELSE 4 END)"

static const char sql_roll_kernel[] =
	"INSERT OR REPLACE INTO hist_kernel (tier, ts_ms, span_ms, exact, state,"
	" mappings_nat, mappings_local, ct_count, ct_count_peak, ct_max,"
	" ct_insert_failed, ct_drop, ct_early_drop, ct_clash_resolve,"
	" events_lost, port_range_lo, port_range_hi, tcp_tw_reuse,"
	" tcp_fin_timeout, tcp_timeout_time_wait, ct_events) "
	"WITH r AS (SELECT *, " PERIOD_OF " AS p, " STATE_RANK " AS sr"
	"  FROM hist_kernel WHERE tier = ?4 AND ts_ms >= ?5 AND ts_ms < ?3"
	"  AND " PERIOD_OF " >= ?2 AND " PERIOD_OF " < ?3),"
	" o AS (SELECT *, row_number() OVER (PARTITION BY p ORDER BY ts_ms"
	"  DESC) AS nl, row_number() OVER (PARTITION BY p ORDER BY sr DESC)"
	"  AS ns FROM r),"
	" a AS (SELECT p, sum(span_ms) AS span, min(exact) AS ex,"
	"  max(ct_count_peak) AS cp, sum(ct_insert_failed) AS f, sum(ct_drop)"
	"  AS d, sum(ct_early_drop) AS e, sum(ct_clash_resolve) AS c,"
	"  sum(events_lost) AS lost FROM r GROUP BY p) "
	"SELECT ?4 + 1, a.p, a.span, a.ex, s.state, l.mappings_nat,"
	" l.mappings_local, l.ct_count, a.cp, l.ct_max, a.f, a.d, a.e, a.c,"
	" a.lost, l.port_range_lo, l.port_range_hi, l.tcp_tw_reuse,"
	" l.tcp_fin_timeout, l.tcp_timeout_time_wait, l.ct_events FROM a"
	" JOIN o AS l ON l.p = a.p AND l.nl = 1"
	" JOIN o AS s ON s.p = a.p AND s.ns = 1";

/* Hosts and buckets of the minute that ended, from the accumulators: the
 * top ?2 of each gateway by peak, and by new mappings.  ?1 the minute. */
static const char sql_close_hosts[] =
	"INSERT OR REPLACE INTO hist_host (public_ip, proto, tier, ts_ms, ip,"
	" span_ms, kind, family, ip_bin, mappings, mappings_peak, ports_in_use,"
	" new_mappings) "
	"SELECT public_ip, proto, 1, ?1, ip, span_ms, kind, family, ip_bin,"
	" mappings, mappings_peak, ports_in_use, new_mappings FROM"
	" (SELECT *, row_number() OVER (PARTITION BY public_ip, proto ORDER BY"
	"  mappings_peak DESC, new_mappings DESC, ip) AS np, row_number() OVER"
	"  (PARTITION BY public_ip, proto ORDER BY new_mappings DESC,"
	"  mappings_peak DESC, ip) AS nn FROM acc_host)"
	" WHERE (np <= ?2 AND mappings_peak > 0) OR (nn <= ?2 AND"
	" new_mappings > 0);"
	"DELETE FROM acc_host";

static const char sql_close_dests[] =
	"INSERT OR REPLACE INTO hist_dest (public_ip, proto, tier, ts_ms, zone,"
	" ip, port, span_ms, family, ip_bin, capacity, mappings, mappings_peak,"
	" new_mappings) "
	"SELECT public_ip, proto, 1, ?1, zone, ip, port, span_ms, family,"
	" ip_bin, capacity, mappings, mappings_peak, new_mappings FROM"
	" (SELECT *, row_number() OVER (PARTITION BY public_ip, proto ORDER BY"
	"  CAST(mappings_peak AS REAL) / max(capacity, 1) DESC, mappings_peak"
	"  DESC, ip, port) AS np, row_number() OVER (PARTITION BY public_ip,"
	"  proto ORDER BY new_mappings DESC, mappings_peak DESC, ip, port) AS nn"
	"  FROM acc_dest)"
	" WHERE (np <= ?2 AND mappings_peak > 0) OR (nn <= ?2 AND"
	" new_mappings > 0);"
	"DELETE FROM acc_dest";

/* Hours of hosts and buckets from their minutes: ?1 = 3600000, [?2, ?3)
 * the hours, ?4 the top.  hist_host and hist_dest are keyed by (public_ip,
 * proto, tier, ts_ms, ...): their minutes are found gateway by gateway
 * (every minute row of a host or bucket has its gateway's minute row), so
 * the search is a range of the key for each, not a scan of the table. */
#define HOURS_GW "(SELECT DISTINCT public_ip, proto FROM hist_gateway" \
	" WHERE tier = 1 AND ts_ms >= ?2 AND ts_ms < ?3) AS g"

static const char sql_roll_hosts[] =
	"INSERT OR REPLACE INTO hist_host (public_ip, proto, tier, ts_ms, ip,"
	" span_ms, kind, family, ip_bin, mappings, mappings_peak, ports_in_use,"
	" new_mappings) "
	"WITH r AS (SELECT h.*, h.ts_ms / ?1 * ?1 AS p FROM " HOURS_GW
	"  CROSS JOIN hist_host AS h ON h.public_ip = g.public_ip AND"
	"  h.proto = g.proto AND h.tier = 1 AND h.ts_ms >= ?2 AND"
	"  h.ts_ms < ?3),"
	" a AS (SELECT public_ip, proto, ip, p, sum(span_ms) AS span,"
	"  max(mappings_peak) AS mp, sum(new_mappings) AS nm, max(ts_ms) AS"
	"  last FROM r GROUP BY public_ip, proto, ip, p),"
	" t AS (SELECT a.*, l.kind, l.family, l.ip_bin, l.mappings,"
	"  l.ports_in_use, row_number() OVER (PARTITION BY a.public_ip,"
	"  a.proto, a.p ORDER BY a.mp DESC, a.nm DESC, a.ip) AS np,"
	"  row_number() OVER (PARTITION BY a.public_ip, a.proto, a.p ORDER BY"
	"  a.nm DESC, a.mp DESC, a.ip) AS nn FROM a JOIN r AS l ON"
	"  l.public_ip = a.public_ip AND l.proto = a.proto AND l.ip = a.ip AND"
	"  l.ts_ms = a.last) "
	"SELECT public_ip, proto, 2, p, ip, span, kind, family, ip_bin,"
	" mappings, mp, ports_in_use, nm FROM t WHERE np <= ?4 OR"
	" (nn <= ?4 AND nm > 0)";

static const char sql_roll_dests[] =
	"INSERT OR REPLACE INTO hist_dest (public_ip, proto, tier, ts_ms, zone,"
	" ip, port, span_ms, family, ip_bin, capacity, mappings, mappings_peak,"
	" new_mappings) "
	"WITH r AS (SELECT h.*, h.ts_ms / ?1 * ?1 AS p FROM " HOURS_GW
	"  CROSS JOIN hist_dest AS h ON h.public_ip = g.public_ip AND"
	"  h.proto = g.proto AND h.tier = 1 AND h.ts_ms >= ?2 AND"
	"  h.ts_ms < ?3),"
	" a AS (SELECT public_ip, proto, zone, ip, port, p, sum(span_ms) AS"
	"  span, max(mappings_peak) AS mp, max(capacity) AS cap,"
	"  sum(new_mappings) AS nm, max(ts_ms) AS last FROM r"
	"  GROUP BY public_ip, proto, zone, ip, port, p),"
	" t AS (SELECT a.*, l.family, l.ip_bin, l.mappings, row_number() OVER"
	"  (PARTITION BY a.public_ip, a.proto, a.p ORDER BY CAST(a.mp AS REAL)"
	"  / max(a.cap, 1) DESC, a.mp DESC, a.ip, a.port) AS np, row_number()"
	"  OVER (PARTITION BY a.public_ip, a.proto, a.p ORDER BY a.nm DESC,"
	"  a.mp DESC, a.ip, a.port) AS nn FROM a JOIN r AS l ON"
	"  l.public_ip = a.public_ip AND l.proto = a.proto AND"
	"  l.zone = a.zone AND l.ip = a.ip AND l.port = a.port AND"
	"  l.ts_ms = a.last) "
	"SELECT public_ip, proto, 2, p, zone, ip, port, span, family, ip_bin,"
	" cap, mappings, mp, nm FROM t WHERE np <= ?4 OR (nn <= ?4 AND nm > 0)";

/* Runs a rollup statement (one, prepared fresh: they run once a minute)
 * with its parameters. */
static int roll(struct store *st, const char *sql, int64_t p1, int64_t p2,
		int64_t p3, int64_t p4, int64_t p5, const char *what)
{
	const int64_t p[] = { p1, p2, p3, p4, p5 };
	sqlite3_stmt *s;
	const char *tail = sql;
	int rc;

	while (tail && *tail) {
		rc = sqlite3_prepare_v2(st->db, tail, -1, &s, &tail);
		if (rc != SQLITE_OK)
			return store_fail(st, rc, what);
		if (!s)
			break;
		for (int i = 1; i <= sqlite3_bind_parameter_count(s) && i <= 5;
		     i++)
			sqlite3_bind_int64(s, i, p[i - 1]);
		rc = sqlite3_step(s);
		sqlite3_finalize(s);
		if (rc != SQLITE_DONE)
			return store_fail(st, rc, what);
	}
	return 0;
}

/* The newest (newest 1) or oldest (0) period of a tier, or -1 if it has
 * none (a period has a kernel row whatever else it holds). */
static int64_t tier_edge(struct store *st, int tier, int newest)
{
	sqlite3_stmt *s;
	int64_t v = -1;

	if (sqlite3_prepare_v2(st->db, newest ?
				       "SELECT max(ts_ms) FROM hist_kernel WHERE tier = ?1" :
				       "SELECT min(ts_ms) FROM hist_kernel WHERE tier = ?1",
			       -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int(s, 1, tier);
	if (sqlite3_step(s) == SQLITE_ROW &&
	    sqlite3_column_type(s, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* Where the finer rows that roll up into periods from lo on begin: lo
 * for minute rows (a minute row's period is its start); for raw rows,
 * the start of the last one beginning before lo, which may end after it
 * (raw periods follow one another without overlapping, so none earlier
 * does). */
static int64_t rows_from(struct store *st, int finer, int64_t lo)
{
	sqlite3_stmt *s;
	int64_t v = lo;

	if (finer > 0)
		return lo;
	if (sqlite3_prepare_v2(st->db, "SELECT max(ts_ms) FROM hist_kernel "
				       "WHERE tier = 0 AND ts_ms < ?1", -1, &s,
			       NULL) != SQLITE_OK)
		return INT64_MIN; /* no bound: correct, only slower */
	sqlite3_bind_int64(s, 1, lo);
	if (sqlite3_step(s) == SQLITE_ROW &&
	    sqlite3_column_type(s, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* Makes the rows of tier (1 or 2) for every period that ended before
 * `before` and is not made yet (a restart leaves the last minute of the
 * previous run unmade: it is made now, without its hosts). */
static int catch_up(struct store *st, int tier, int64_t before)
{
	int64_t p = tier_ms[tier];
	int64_t hi = before / p * p, lo = tier_edge(st, tier, 1), from;

	lo = lo < 0 ? hi - st->hist_cfg.keep_ms[tier - 1] : lo + p;
	lo = lo / p * p;
	if (lo >= hi)
		return 0;
	from = rows_from(st, tier - 1, lo);
	if (roll(st, sql_roll_gw, p, lo, hi, tier - 1, from, "history: rollup "
		 "of gateways") < 0 ||
	    roll(st, sql_roll_kernel, p, lo, hi, tier - 1, from, "history: "
		 "rollup of the kernel") < 0)
		return -1;
	if (tier == 2 &&
	    (roll(st, sql_roll_hosts, p, lo, hi, st->hist_cfg.top, 0,
		  "history: rollup of hosts") < 0 ||
	     roll(st, sql_roll_dests, p, lo, hi, st->hist_cfg.top, 0,
		  "history: rollup of buckets") < 0))
		return -1;
	return 0;
}

/* ---- retention ---- */

/* hist_host and hist_dest first: their rows are found through the
 * gateway rows of the same periods (see HOURS_GW), which go after them. */
static const char *const hist_tables[] = { "hist_host", "hist_dest",
					   "hist_gateway", "hist_kernel" };

/* Deletes a tier's periods before `before`: of every table, or (top_only)
 * of hist_host and hist_dest alone. */
static int trim_before(struct store *st, int tier, int64_t before,
		       int top_only)
{
	char sql[400];

	for (size_t i = 0; i < (top_only ? 2 : sizeof(hist_tables) /
					       sizeof(hist_tables[0]));
	     i++) {
		if (i < 2) /* a range of the key per gateway, not a scan */
			snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE "
				 "(public_ip, proto) IN (SELECT DISTINCT "
				 "public_ip, proto FROM hist_gateway WHERE "
				 "tier = %d AND ts_ms < %lld) AND tier = %d AND "
				 "ts_ms < %lld", hist_tables[i], tier,
				 (long long)before, tier, (long long)before);
		else
			snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE tier "
				 "= %d AND ts_ms < %lld", hist_tables[i], tier,
				 (long long)before);
		if (store_exec(st, sql, "history: retention") < 0)
			return -1;
	}
	return 0;
}

/* Bytes the database's pages hold (free pages not counted). */
static int64_t used_bytes(struct store *st)
{
	sqlite3_stmt *s;
	int64_t v = -1;

	if (sqlite3_prepare_v2(st->db, "SELECT (SELECT page_count FROM "
				       "pragma_page_count) - (SELECT "
				       "freelist_count FROM pragma_freelist_count), "
				       "(SELECT page_size FROM pragma_page_size)",
			       -1, &s, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0) * sqlite3_column_int64(s, 1);
	sqlite3_finalize(s);
	return v;
}

/* Age first; then, while the file holds more than max_bytes, the oldest
 * quarter of the tier that reaches furthest back relative to its
 * retention goes (hours are the last to give way). */
static int retain(struct store *st, int64_t now)
{
	const struct store_history_config *c = &st->hist_cfg;

	for (int t = 0; t < STORE_TIERS; t++)
		if (trim_before(st, t, now - c->keep_ms[t], 0) < 0)
			return -1;
	/* per-minute hosts and buckets are most of the file: their own age */
	if (c->keep_top_minute_ms < c->keep_ms[1] &&
	    trim_before(st, 1, now - c->keep_top_minute_ms, 1) < 0)
		return -1;
	for (int round = 0; round < 12; round++) {
		int64_t used = used_bytes(st), first;
		int t;

		if (used < 0 || (uint64_t)used <= c->max_bytes)
			return 0;
		for (t = 0; t < STORE_TIERS; t++)
			if ((first = tier_edge(st, t, 0)) >= 0 &&
			    now - first > tier_ms[t + (t < 2)] * 2)
				break;
		if (t == STORE_TIERS)
			return 0; /* nothing left worth trimming */
		if (!st->hist_size_warned) {
			log_warnx("store: %s: history holds %lld bytes, over "
				  "its limit of %llu: the oldest periods go "
				  "before their age", st->path, (long long)used,
				  (unsigned long long)c->max_bytes);
			st->hist_size_warned = 1;
		}
		if (trim_before(st, t, first + (now - first) / 4, 0) < 0)
			return -1;
	}
	return 0;
}

/* ---- one write's period ---- */

int store_history_write(struct store *st, const struct store_batch *b)
{
	const struct store_history *h = &b->hist;
	struct store_addr_text gw = { 0 }, other = { 0 };
	int64_t minute, span = h->end_ms - h->start_ms;
	int state = h->state;
	size_t i;

	if (!st->hist_configured)
		store_history_defaults(&st->hist_cfg), st->hist_configured = 1;
	store_incidents_save(st);
	if (h->start_ms <= 0 || span <= 0)
		return 0;
	if (store_exec(st, sql_acc, "history: accumulators") < 0)
		return -1;
	if (b->status.state == STORE_STATE_DB_ERROR || st->writes_failed_run)
		state = STORE_STATE_DB_ERROR; /* a write was lost before */
	minute = h->end_ms / 60000 * 60000;
	if (minute != st->hist_minute) {
		/* the accumulators' minute is over (or this process just
		 * started: they are empty) */
		if (st->hist_minute > 0) {
			if (roll(st, sql_close_hosts, st->hist_minute,
				 st->hist_cfg.top, 0, 0, 0, "history: hosts of a "
				 "minute") < 0 ||
			    roll(st, sql_close_dests, st->hist_minute,
				 st->hist_cfg.top, 0, 0, 0, "history: buckets "
				 "of a minute") < 0)
				return -1;
		}
		if (catch_up(st, 1, minute) < 0 || catch_up(st, 2, minute) < 0 ||
		    retain(st, h->end_ms) < 0)
			return -1;
		st->hist_minute_next = minute;
	}
	for (i = 0; i < h->n_gateways; i++)
		if (raw_gateway(st, h, &h->gateways[i], &gw, &other) < 0)
			return -1;
	if (raw_kernel(st, h, &b->status, state) < 0)
		return -1;
	for (i = 0; i < h->n_hosts; i++)
		if (acc_host(st, &h->hosts[i], span, &gw, &other) < 0)
			return -1;
	for (i = 0; i < h->n_dests; i++)
		if (acc_dest(st, &h->dests[i], span, &gw, &other) < 0)
			return -1;
	if (store_incidents_judge(st, b) < 0)
		return -1;
	st->hist_pending = 1;
	return 0;
}

void store_history_committed(struct store *st, const struct store_batch *b,
			     int ok)
{
	int had = st->hist_pending;

	st->hist_pending = 0;
	if (!ok) {
		/* lost (rolled back: the accumulators and incidents too):
		 * the next period says db-error */
		store_incidents_rollback(st);
		if (b->hist.start_ms > 0)
			st->writes_failed_run = 1;
		return;
	}
	if (!had)
		return;
	st->hist_minute = st->hist_minute_next;
	st->hist_prev = b->status;
	st->hist_have_prev = 1;
	st->writes_failed_run = 0;
}
