/*
 * histread.c - the read side of history (schema/004_history.sql): the
 * state at a past moment, series over a range, one host's gateways over
 * time and the incidents, each built by SQLite's JSON functions in one
 * statement (one consistent snapshot).
 *
 * Every answer says how sure it is: a period's "exact" flag comes from its
 * row, "coverage" lists the gaps (the gaps table) overlapping what the
 * answer covers, and periods natscope did not observe are absent, never
 * filled in.
 */
#include "store/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The length of a period of tier t whose raw span is span (ms). */
#define SQL_PERIOD(t, span)                                                 \
	"(CASE " t " WHEN 0 THEN " span " WHEN 1 THEN 60000 ELSE 3600000 END)"

#define SQL_TIER_NAME(t)                                                    \
	"(CASE " t " WHEN 0 THEN 'raw' WHEN 1 THEN 'minute' ELSE 'hour' END)"

#define SQL_BOOL(x) "json(CASE WHEN " x " THEN 'true' ELSE 'false' END)"

/* Rows of a tier that may overlap [lo, hi): a period is at most an hour,
 * so the index range starts an hour before lo. */
#define SQL_IN_RANGE(tab, lo, hi)                                           \
	tab ".ts_ms >= " lo " - 3600000 AND " tab ".ts_ms < " hi " AND "    \
	tab ".ts_ms + " SQL_PERIOD(tab ".tier", tab ".span_ms") " > " lo

/*
 * The gaps overlapping [lo, hi) (strictly: a gap that ended when the
 * period began does not touch it).  A gap still open belongs either to the
 * run writing now (it lasts until now) or to a run that ended without
 * closing it: that one ended at the latest when a later run started.
 */
#define SQL_GAP_END                                                         \
	"(CASE WHEN g.end_ms IS NOT NULL THEN g.end_ms "                    \
	"WHEN g.run_started_ms >= coalesce((SELECT started_ms FROM status " \
	"WHERE id = 1), 0) THEN 9000000000000000000 "                       \
	"ELSE coalesce((SELECT min(g2.run_started_ms) FROM gaps g2 WHERE "  \
	"g2.run_started_ms > g.run_started_ms), (SELECT started_ms FROM "   \
	"status WHERE id = 1)) END)"
#define SQL_GAPS_OVERLAP(lo, hi)                                            \
	"SELECT g.* FROM gaps g WHERE g.start_ms < " hi " AND " SQL_GAP_END \
	" > " lo
#define SQL_GAPS_ARRAY(cte)                                                 \
	"json((SELECT json_group_array(json(o)) FROM (SELECT "              \
	SQL_GAP_OBJECT " AS o FROM " cte                                    \
	" ORDER BY start_ms, run_started_ms, seq)))"

/*
 * The period holding ?2 (at): the finest tier first.  per has tier,
 * ts_ms, span_ms, exact, state and end_ms; no row when no period holds it.
 * has(k) says whether tier k's period has the rows the answer lists: the
 * writer keeps hosts and buckets per minute and hour only (and the newest
 * minute only in its accumulators), so a list at a moment comes from the
 * finest period that has them, and from the finest period at all when
 * none has.
 */
#define SQL_TIER_AT(t, has)                                                 \
	"SELECT k.*, " has " AS has FROM (SELECT tier, ts_ms, span_ms, "    \
	"exact, state FROM hist_kernel WHERE tier = " t " AND ts_ms <= ?2 " \
	"ORDER BY ts_ms DESC LIMIT 1) k"
#define SQL_WITH_AT_HAS(has)                                                \
	"WITH per AS (SELECT tier, ts_ms, span_ms, exact, state, ts_ms + "  \
	SQL_PERIOD("tier", "span_ms") " AS end_ms FROM ("                   \
	SQL_TIER_AT("0", has) " UNION ALL " SQL_TIER_AT("1", has)           \
	" UNION ALL " SQL_TIER_AT("2", has) ") WHERE ?2 < ts_ms + "         \
	SQL_PERIOD("tier", "span_ms") " ORDER BY has DESC, tier LIMIT 1), " \
	"cov AS (" SQL_GAPS_OVERLAP("(SELECT ts_ms FROM per)",              \
				    "(SELECT end_ms FROM per)") ") "
#define SQL_WITH_AT SQL_WITH_AT_HAS("1")
/* whether the gateway ?3/?4 has rows of tab in period k */
#define SQL_HAS_ROWS(tab)                                                   \
	"EXISTS (SELECT 1 FROM " tab " x WHERE x.public_ip = ?3 AND "       \
	"x.proto = ?4 AND x.tier = k.tier AND x.ts_ms = k.ts_ms)"

/* What an answer at a moment starts with; ex is its exact flag. */
#define SQL_HEADER_AT(ex)                                                   \
	"'generated_at', " SQL_TIME("?1") ", 'at', " SQL_TIME("?2") ", "    \
	"'as_of', " SQL_TIME("per.end_ms") ", "                             \
	"'period', json_object('start', " SQL_TIME("per.ts_ms") ", "       \
	"'end', " SQL_TIME("per.end_ms") "), "                              \
	"'resolution', " SQL_TIER_NAME("per.tier") ", "                     \
	"'resolution_seconds', (per.end_ms - per.ts_ms) / 1000.0, "         \
	"'exact', " SQL_BOOL(ex) ", "                                       \
	"'coverage', json_object('complete', " SQL_BOOL(                    \
		ex " AND NOT EXISTS (SELECT 1 FROM cov)") ", "                  \
	"'source', 'history', 'state', per.state, "                         \
	"'observed_seconds', per.span_ms / 1000.0, "                        \
	"'gaps', " SQL_GAPS_ARRAY("cov") "), "

/*
 * The periods of tier t overlapping [lo, hi) (k: tier, ts_ms, span_ms,
 * exact, end_ms), the gaps overlapping the range (cov) and the stretches
 * between periods nothing observed (holes: prev_end, ts_ms), left open
 * for a UNION with more stretches: close it with ")".
 */
#define SQL_WITH_RANGE(t, lo, hi)                                           \
	"WITH k AS (SELECT tier, ts_ms, span_ms, exact, ts_ms + "           \
	SQL_PERIOD("tier", "span_ms") " AS end_ms FROM hist_kernel k WHERE " \
	"k.tier = " t " AND " SQL_IN_RANGE("k", lo, hi) "), "                \
	"cov AS (" SQL_GAPS_OVERLAP(lo, hi) "), "                           \
	"holes AS (SELECT prev_end, ts_ms FROM (SELECT ts_ms, lag(end_ms) "  \
	"OVER (ORDER BY ts_ms) AS prev_end FROM k) WHERE prev_end < ts_ms "

/* The TCP states of a row; x is its table prefix ("h."), NULL as 0. */
#define SQL_ST(x, n) "'" n "', coalesce(" x "state_" n ", 0)"
#define SQL_STATES(x)                                                       \
	"json_object(" SQL_ST(x, "none") ", " SQL_ST(x, "syn_sent") ", "    \
	SQL_ST(x, "syn_recv") ", " SQL_ST(x, "established") ", "            \
	SQL_ST(x, "fin_wait") ", " SQL_ST(x, "close_wait") ", "             \
	SQL_ST(x, "last_ack") ", " SQL_ST(x, "time_wait") ", "              \
	SQL_ST(x, "close") ", " SQL_ST(x, "syn_sent2") ")"

#define SQL_RATE(n, span) "round(" n " * 1000.0 / max(" span ", 1), 3)"

/* One hist_gateway row (h) at a moment, in the live answer's shape plus
 * its peaks, averages, new mappings and exact flag. */
#define SQL_GATEWAY_AT                                                      \
	"json_object('public_ip', h.public_ip, 'proto', h.proto, "          \
	"'exact', " SQL_BOOL("h.exact") ", "                                \
	"'ports_in_use', h.ports_in_use, 'ports_peak', h.ports_peak, "      \
	"'ports_avg', round(h.ports_avg, 1), "                              \
	"'port_space', ns_port_space(h.proto), "                        \
	"'mappings', h.mappings, 'mappings_peak', h.mappings_peak, "        \
	"'mappings_avg', round(h.mappings_avg, 1), 'hosts', h.hosts, "      \
	"'destinations', h.destinations, 'new_mappings', h.new_mappings, "  \
	"'new_per_second', " SQL_RATE("h.new_mappings", "h.span_ms") ", "   \
	"'worst_destination', json(CASE WHEN h.worst_peak > 0 THEN "        \
	"json_object('ip', h.worst_ip, 'port', h.worst_port, 'zone', "      \
	"h.worst_zone, 'peak', h.worst_peak, 'capacity', h.worst_capacity) " \
	"END))"

static const char sql_gateways_at[] =
	SQL_WITH_AT
	"SELECT NOT EXISTS (SELECT 1 FROM per), (SELECT json_object("
	SQL_HEADER_AT("per.exact")
	"'gateways', json((SELECT json_group_array(json(o)) FROM ("
	"SELECT CASE WHEN h.proto = 'tcp' THEN json_set(" SQL_GATEWAY_AT
	", '$.states', " SQL_STATES("h.") ", '$.time_wait_peak', "
	"h.time_wait_peak) ELSE " SQL_GATEWAY_AT " END AS o "
	"FROM hist_gateway h WHERE h.tier = per.tier AND h.ts_ms = per.ts_ms "
	"ORDER BY h.family, h.ip_bin, h.proto)))) FROM per)";

/*
 * Every gateway over [?2, ?3) at tier ?4 (?1 now): its peaks (and when),
 * the bucket that came closest to full (and when), totals and rates.
 * One grouping of the rows (read along the table's key) takes each
 * gateway's maxima; the period of the ports' peak and of the worst
 * bucket's (the latest of those that tie) ride in the low digits of
 * integer keys, and the worst bucket's row is then read by its key.
 */
static const char sql_gateways_range[] =
	SQL_WITH_RANGE("?4", "?2", "?3")
	/* the range's start not observed; its end, in a range past by a
	 * minute (a live run writes the latest periods within seconds) */
	"UNION ALL SELECT ?2, min(ts_ms) FROM k HAVING min(ts_ms) > ?2 "
	"UNION ALL SELECT max(end_ms), ?3 FROM k HAVING max(end_ms) < ?3 "
	"AND ?3 <= ?1 - 60000), "
	/* the gateways from the time index alone, then each one's rows
	 * along the key: a range of the table, not a lookup per row */
	"h AS (SELECT h.* FROM (SELECT DISTINCT x.public_ip AS ip, x.proto AS "
	"pr FROM hist_gateway x WHERE x.tier = ?4 AND "
	SQL_IN_RANGE("x", "?2", "?3") ") AS g CROSS JOIN hist_gateway h ON "
	"h.public_ip = g.ip AND h.proto = g.pr AND h.tier = ?4 AND "
	SQL_IN_RANGE("h", "?2", "?3") "), "
	/* one pass: the period of each maximum rides in the low digits of
	 * an integer key (ts_ms < 10^13), the worst share at 10^-5 */
	"a AS (SELECT public_ip, proto, family, ip_bin, "
	"max(ports_peak) AS ports_peak, max(ports_peak * 10000000000000 + "
	"ts_ms) % 10000000000000 AS peak_ms, count(*) AS n, "
	"sum(span_ms) AS span, min(exact) AS exact, sum(ports_avg * span_ms) "
	"AS ports_sum, max(mappings_peak) AS mappings_peak, max(hosts) AS "
	"hosts, max(destinations) AS destinations, sum(new_mappings) AS "
	"new_mappings, max(time_wait_peak) AS time_wait_peak, "
	"max(CAST(worst_peak * 100000.0 / max(coalesce(worst_capacity, 1), 1) "
	"AS INTEGER) * 10000000000000 + ts_ms) % 10000000000000 AS worst_ms "
	"FROM h GROUP BY public_ip, proto) "
	"SELECT json_object('generated_at', " SQL_TIME("?1") ", "
	"'as_of', (SELECT " SQL_TIME("max(end_ms)") " FROM k), "
	"'from', " SQL_TIME("?2") ", 'to', " SQL_TIME("?3") ", "
	"'resolution', " SQL_TIER_NAME("?4") ", "
	"'resolution_seconds', CASE ?4 WHEN 0 THEN (SELECT max(span_ms) "
	"FROM k) / 1000.0 WHEN 1 THEN 60 ELSE 3600 END, "
	"'periods', (SELECT count(*) FROM k), "
	"'exact', " SQL_BOOL("NOT EXISTS (SELECT 1 FROM k WHERE NOT exact)")
	", 'coverage', json_object('complete', " SQL_BOOL(
		"NOT EXISTS (SELECT 1 FROM cov) AND NOT EXISTS (SELECT 1 FROM "
		"holes) AND NOT EXISTS (SELECT 1 FROM k WHERE NOT exact) AND "
		"EXISTS (SELECT 1 FROM k)") ", 'source', 'history', "
	"'first', (SELECT " SQL_TIME("min(ts_ms)") " FROM k), "
	"'last', (SELECT " SQL_TIME("max(end_ms)") " FROM k), "
	"'observed_seconds', (SELECT coalesce(sum(span_ms), 0) / 1000.0 "
	"FROM k), 'not_exact_periods', (SELECT count(*) FROM k WHERE NOT "
	"exact), 'unobserved', json((SELECT json_group_array(json(o)) FROM "
	"(SELECT json_object('start', " SQL_TIME("prev_end") ", 'end', "
	SQL_TIME("ts_ms") ") AS o FROM holes ORDER BY prev_end))), "
	"'gaps', " SQL_GAPS_ARRAY("cov") "), "
	"'gateways', json((SELECT json_group_array(json(o)) FROM (SELECT "
	"json_object('public_ip', a.public_ip, 'proto', a.proto, "
	"'exact', " SQL_BOOL("a.exact") ", 'periods', a.n, "
	"'observed_seconds', a.span / 1000.0, "
	"'port_space', ns_port_space(a.proto), "
	"'ports_peak', a.ports_peak, 'ports_peak_at', " SQL_TIME("a.peak_ms")
	", 'ports_avg', round(a.ports_sum / max(a.span, 1), 1), "
	"'mappings_peak', a.mappings_peak, 'hosts_max', a.hosts, "
	"'destinations_max', a.destinations, "
	"'new_mappings', a.new_mappings, 'new_per_second', "
	SQL_RATE("a.new_mappings", "a.span") ", "
	"'time_wait_peak', CASE WHEN a.proto = 'tcp' THEN a.time_wait_peak "
	"END, 'worst_destination', json((SELECT CASE WHEN w.worst_peak > 0 "
	"THEN json_object('ip', w.worst_ip, 'port', w.worst_port, 'zone', "
	"w.worst_zone, 'peak', w.worst_peak, 'capacity', w.worst_capacity, "
	"'at', " SQL_TIME("w.ts_ms") ") END FROM hist_gateway w WHERE "
	"w.public_ip = a.public_ip AND w.proto = a.proto AND w.tier = ?4 AND "
	"w.ts_ms = a.worst_ms))) AS o FROM a "
	"ORDER BY a.family, a.ip_bin, a.proto))))";

/* ?3 public_ip, ?4 proto, ?5 limit.  First column: 1 when no period
 * holds at, 2 when the gateway has no row in it, else 0. */
#define SQL_WITH_AT_GW(tab)                                                 \
	SQL_WITH_AT_HAS(SQL_HAS_ROWS(tab))                                  \
	", gw AS (SELECT h.* FROM hist_gateway h, per WHERE "               \
	"h.public_ip = ?3 AND h.proto = ?4 AND h.tier = per.tier AND "      \
	"h.ts_ms = per.ts_ms) "                                             \
	"SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM per) THEN 1 "           \
	"WHEN NOT EXISTS (SELECT 1 FROM gw) THEN 2 ELSE 0 END, "           \
	"(SELECT json_object(" SQL_HEADER_AT("per.exact AND gw.exact")      \
	"'public_ip', ?3, 'proto', ?4, "

#define SQL_RECORDED(what, tab)                                             \
	"'recorded', json_object('" what "', (SELECT count(*) FROM " tab    \
	" x WHERE x.public_ip = ?3 AND x.proto = ?4 AND x.tier = per.tier " \
	"AND x.ts_ms = per.ts_ms), 'top_only', json('true'), 'note', "     \
	"'history keeps only each period''s top " what " (by peak mappings " \
	"and by new mappings); " what " not listed were not among them, "   \
	"and total is the count at the period''s end'), "

static const char sql_hosts_at[] =
	SQL_WITH_AT_GW("hist_host")
	"'total', gw.hosts, 'limit', ?5, " SQL_RECORDED("hosts", "hist_host")
	"'hosts', json((SELECT json_group_array(json(o)) FROM ("
	"SELECT json_object('ip', x.ip, 'kind', x.kind, 'mappings', "
	"x.mappings, 'mappings_peak', x.mappings_peak, 'ports_in_use', "
	"x.ports_in_use, 'new_mappings', x.new_mappings, 'new_per_second', "
	SQL_RATE("x.new_mappings", "x.span_ms") ") AS o FROM hist_host x "
	"WHERE x.public_ip = ?3 AND x.proto = ?4 AND x.tier = per.tier AND "
	"x.ts_ms = per.ts_ms ORDER BY x.mappings_peak DESC, x.mappings DESC, "
	"x.family, x.ip_bin LIMIT ?5)))) FROM per, gw)";

static const char sql_dests_at[] =
	SQL_WITH_AT_GW("hist_dest")
	"'total', gw.destinations, 'limit', ?5, "
	SQL_RECORDED("destinations", "hist_dest")
	"'destinations', json((SELECT json_group_array(json(o)) FROM ("
	"SELECT json_object('ip', x.ip, 'port', x.port, 'zone', x.zone, "
	"'mappings', x.mappings, 'mappings_peak', x.mappings_peak, "
	"'capacity', x.capacity, 'new_mappings', x.new_mappings, "
	"'new_per_second', " SQL_RATE("x.new_mappings", "x.span_ms") ") AS o "
	"FROM hist_dest x WHERE x.public_ip = ?3 AND x.proto = ?4 AND "
	"x.tier = per.tier AND x.ts_ms = per.ts_ms "
	"ORDER BY x.mappings_peak DESC, x.mappings DESC, x.family, x.ip_bin, "
	"x.port, x.zone LIMIT ?5)))) FROM per, gw)";

/* ?1 at: the oldest start and newest end, the newest end at or before at
 * and the oldest start after it, over every tier. */
static const char sql_range[] =
	"SELECT (SELECT min(ts_ms) FROM hist_kernel), "
	"(SELECT max(ts_ms + " SQL_PERIOD("tier", "span_ms") ") FROM "
	"(SELECT * FROM (SELECT tier, ts_ms, span_ms FROM hist_kernel "
	"WHERE tier = 0 ORDER BY ts_ms DESC LIMIT 1) UNION ALL "
	"SELECT * FROM (SELECT tier, ts_ms, span_ms FROM hist_kernel "
	"WHERE tier = 1 ORDER BY ts_ms DESC LIMIT 1) UNION ALL "
	"SELECT * FROM (SELECT tier, ts_ms, span_ms FROM hist_kernel "
	"WHERE tier = 2 ORDER BY ts_ms DESC LIMIT 1))), "
	"(SELECT max(e) FROM (SELECT ts_ms + span_ms AS e FROM ("
	"SELECT * FROM (SELECT ts_ms, span_ms FROM hist_kernel WHERE "
	"tier = 0 AND ts_ms <= ?1 ORDER BY ts_ms DESC LIMIT 1) UNION ALL "
	"SELECT * FROM (SELECT ts_ms, 60000 FROM hist_kernel WHERE "
	"tier = 1 AND ts_ms <= ?1 - 60000 ORDER BY ts_ms DESC LIMIT 1) "
	"UNION ALL SELECT * FROM (SELECT ts_ms, 3600000 FROM hist_kernel "
	"WHERE tier = 2 AND ts_ms <= ?1 - 3600000 ORDER BY ts_ms DESC "
	"LIMIT 1)))), "
	"(SELECT min(ts_ms) FROM (SELECT * FROM (SELECT ts_ms FROM "
	"hist_kernel WHERE tier = 0 AND ts_ms > ?1 ORDER BY ts_ms LIMIT 1) "
	"UNION ALL SELECT * FROM (SELECT ts_ms FROM hist_kernel WHERE "
	"tier = 1 AND ts_ms > ?1 ORDER BY ts_ms LIMIT 1) UNION ALL "
	"SELECT * FROM (SELECT ts_ms FROM hist_kernel WHERE tier = 2 AND "
	"ts_ms > ?1 ORDER BY ts_ms LIMIT 1)))";

/* ?1 from, ?2 to: per tier, its periods overlapping the range and where
 * the first of them begins to be observed (a rollup row of a period
 * natscope joined late is taken to start when it joined). */
#define SQL_TIER_COUNT(t)                                                   \
	"SELECT " t ", (SELECT count(*) FROM hist_kernel k WHERE k.tier = " \
	t " AND " SQL_IN_RANGE("k", "?1", "?2") "), (SELECT k.ts_ms + "     \
	SQL_PERIOD("k.tier", "k.span_ms") " - k.span_ms FROM hist_kernel k " \
	"WHERE k.tier = " t " AND " SQL_IN_RANGE("k", "?1", "?2")           \
	" ORDER BY k.ts_ms LIMIT 1)"
static const char sql_tiers[] =
	SQL_TIER_COUNT("0") " UNION ALL " SQL_TIER_COUNT("1")
	" UNION ALL " SQL_TIER_COUNT("2") " ORDER BY 1";

/* The finest tier from t up with rows of hist_host matching cond (on y)
 * in [lo, hi) - the writer keeps hosts per minute and hour only - or t. */
#define SQL_HOST_TIER(t, cond, lo, hi)                                      \
	"htier AS (SELECT coalesce((SELECT min(n.t) FROM (SELECT 0 AS t "   \
	"UNION ALL SELECT 1 UNION ALL SELECT 2) n WHERE n.t >= " t " AND "  \
	"EXISTS (SELECT 1 FROM hist_host y WHERE " cond " AND y.tier = n.t " \
	"AND " SQL_IN_RANGE("y", lo, hi) ")), " t ") AS ht), "

/*
 * ?1 now, ?2 public_ip, ?3 proto, ?4 from, ?5 to, ?6 tier, ?7 top hosts.
 * A point per period of hist_kernel (what natscope observed), with the
 * gateway's row or zeros.  First column: 1 when the gateway has no row.
 */
#define SQL_POINT                                                           \
	"json_object('ts', " SQL_TIME("kts") ", 'end', " SQL_TIME("kend")   \
	", 'span_seconds', kspan / 1000.0, "                                \
	"'exact', " SQL_BOOL("coalesce(exact, kexact)") ", "                \
	"'ports_in_use', coalesce(ports_in_use, 0), 'ports_peak', "         \
	"coalesce(ports_peak, 0), 'mappings', coalesce(mappings, 0), "      \
	"'mappings_peak', coalesce(mappings_peak, 0), 'hosts', "            \
	"coalesce(hosts, 0), 'destinations', coalesce(destinations, 0), "   \
	"'new_mappings', coalesce(new_mappings, 0), 'new_per_second', "     \
	SQL_RATE("coalesce(new_mappings, 0)", "kspan") ", "                 \
	"'worst', json(CASE WHEN worst_peak > 0 THEN json_object('ip', "    \
	"worst_ip, 'port', worst_port, 'zone', worst_zone, 'peak', "        \
	"worst_peak, 'capacity', worst_capacity) END), "                    \
	"'states', json(CASE WHEN ?3 = 'tcp' THEN " SQL_STATES("")          \
	" END), 'time_wait_peak', CASE WHEN ?3 = 'tcp' THEN "               \
	"coalesce(time_wait_peak, 0) END)"
static const char sql_series[] =
	SQL_WITH_RANGE("?6", "?4", "?5") "), "
	SQL_HOST_TIER("?6", "y.public_ip = ?2 AND y.proto = ?3", "?4", "?5")
	"hh AS (SELECT x.* FROM hist_host x WHERE x.public_ip = ?2 AND "
	"x.proto = ?3 AND x.tier = (SELECT ht FROM htier) AND "
	SQL_IN_RANGE("x", "?4", "?5") ") "
	"SELECT NOT EXISTS (SELECT 1 FROM hist_gateway h WHERE h.public_ip = ?2 "
	"AND h.proto = ?3 AND h.tier = ?6 AND " SQL_IN_RANGE("h", "?4", "?5")
	"), json_object('generated_at', " SQL_TIME("?1") ", "
	"'as_of', (SELECT " SQL_TIME("max(end_ms)") " FROM k), "
	"'public_ip', ?2, 'proto', ?3, 'from', " SQL_TIME("?4") ", "
	"'to', " SQL_TIME("?5") ", 'resolution', " SQL_TIER_NAME("?6") ", "
	"'resolution_seconds', CASE ?6 WHEN 0 THEN (SELECT max(span_ms) "
	"FROM k) / 1000.0 WHEN 1 THEN 60 ELSE 3600 END, "
	"'coverage', json_object('complete', " SQL_BOOL(
		"NOT EXISTS (SELECT 1 FROM cov) AND NOT EXISTS (SELECT 1 FROM "
		"holes) AND NOT EXISTS (SELECT 1 FROM k WHERE NOT exact) AND "
		"EXISTS (SELECT 1 FROM k)") ", "
	"'first', (SELECT " SQL_TIME("min(ts_ms)") " FROM k), "
	"'last', (SELECT " SQL_TIME("max(end_ms)") " FROM k), "
	"'not_exact_points', (SELECT count(*) FROM k WHERE NOT exact), "
	"'unobserved', json((SELECT json_group_array(json(o)) FROM (SELECT "
	"json_object('start', " SQL_TIME("prev_end") ", 'end', "
	SQL_TIME("ts_ms") ") AS o FROM holes ORDER BY ts_ms))), "
	"'gaps', " SQL_GAPS_ARRAY("cov") "), "
	/* built in the aggregate, so that no point is parsed again */
	"'points', (SELECT json_group_array(" SQL_POINT ") FROM (SELECT "
	"k.ts_ms AS kts, k.end_ms AS kend, k.span_ms AS kspan, k.exact AS "
	"kexact, h.* FROM k LEFT JOIN hist_gateway h ON h.public_ip = ?2 AND "
	"h.proto = ?3 AND h.tier = k.tier AND h.ts_ms = k.ts_ms "
	"ORDER BY k.ts_ms)), "
	"'recorded', json_object('resolution', "
	SQL_TIER_NAME("(SELECT ht FROM htier)") ", 'top_only', json('true'), "
	"'note', "
	"'history keeps only each period''s top hosts (by peak mappings and "
	"by new mappings): a host''s figures cover the periods it was among "
	"them (recorded_seconds)'), "
	"'top_hosts', json((SELECT json_group_array(json(o)) FROM (SELECT "
	"json_object('ip', ip, 'kind', max(kind), 'mappings_peak', "
	"max(mappings_peak), 'ports_in_use_max', max(ports_in_use), "
	"'new_mappings', sum(new_mappings), 'recorded_seconds', "
	"sum(span_ms) / 1000.0, 'new_per_second', "
	SQL_RATE("sum(new_mappings)", "sum(span_ms)") ", 'periods', count(*), "
	/* its own points, for a chart stacked by host */
	"'series', json((SELECT json_group_array(json_array(z.ts_ms / 1000.0, "
	"z.mappings_peak, z.ports_in_use)) FROM (SELECT ts_ms, mappings_peak, "
	"ports_in_use FROM hh z WHERE z.ip = hg.ip ORDER BY ts_ms) z))) "
	"AS o FROM hh hg GROUP BY hg.ip ORDER BY max(mappings_peak) DESC, "
	"sum(new_mappings) DESC, hg.ip LIMIT ?7))))";

/*
 * ?1 now, ?2 host ip, ?3 from, ?4 to, ?5 the finest tier to read (the
 * first from it up that holds this host is read).
 */
static const char sql_host[] =
	"WITH " SQL_HOST_TIER("?5", "y.ip = ?2", "?3", "?4")
	"hh AS (SELECT x.*, k.exact AS kexact FROM hist_host x JOIN "
	"hist_kernel k ON k.tier = x.tier AND k.ts_ms = x.ts_ms WHERE "
	"x.ip = ?2 AND x.tier = (SELECT ht FROM htier) AND "
	SQL_IN_RANGE("x", "?3", "?4") "), "
	"k AS (SELECT * FROM hist_kernel k WHERE k.tier = (SELECT ht FROM "
	"htier) AND " SQL_IN_RANGE("k", "?3", "?4") "), "
	"cov AS (" SQL_GAPS_OVERLAP("?3", "?4") "), "
	"s AS (SELECT * FROM status WHERE id = 1), "
	"lcov AS (SELECT g.* FROM gaps g, s WHERE "
	"(g.end_ms IS NULL AND g.run_started_ms = s.started_ms) OR "
	"(g.end_ms IS NOT NULL AND g.start_ms <= s.as_of_ms AND "
	"g.end_ms >= s.as_of_ms - s.interval_s * 1000)) "
	"SELECT json_object('generated_at', " SQL_TIME("?1") ", "
	"'as_of', (SELECT " SQL_TIME("max(ts_ms + "
				     SQL_PERIOD("tier", "span_ms") ")")
	" FROM k), 'ip', ?2, "
	"'from', " SQL_TIME("?3") ", 'to', " SQL_TIME("?4") ", "
	"'resolution', " SQL_TIER_NAME("(SELECT ht FROM htier)") ", "
	"'coverage', json_object('complete', " SQL_BOOL(
		"NOT EXISTS (SELECT 1 FROM cov) AND NOT EXISTS (SELECT 1 FROM k "
		"WHERE NOT exact) AND EXISTS (SELECT 1 FROM k)") ", "
	"'source', 'history', "
	"'first', (SELECT " SQL_TIME("min(ts_ms)") " FROM k), "
	"'last', (SELECT " SQL_TIME("max(ts_ms + "
				    SQL_PERIOD("tier", "span_ms") ")")
	" FROM k), 'not_exact_periods', (SELECT count(*) FROM k WHERE "
	"NOT exact), 'gaps', " SQL_GAPS_ARRAY("cov") "), "
	"'recorded', json_object('top_only', json('true'), 'note', "
	"'history keeps only each period''s top hosts of each gateway (by "
	"peak mappings and by new mappings): figures cover the periods this "
	"host was among them (recorded_seconds)'), "
	"'gateways', json((SELECT json_group_array(json(o)) FROM (SELECT "
	"json_object('public_ip', public_ip, 'proto', proto, 'kind', "
	"max(kind), 'first_seen', " SQL_TIME("min(ts_ms)") ", 'last_seen', "
	SQL_TIME("max(ts_ms + " SQL_PERIOD("tier", "span_ms") ")") ", "
	"'periods', count(*), 'exact', " SQL_BOOL("min(kexact)") ", "
	"'mappings_peak', max(mappings_peak), 'ports_in_use_max', "
	"max(ports_in_use), 'new_mappings', sum(new_mappings), "
	"'recorded_seconds', sum(span_ms) / 1000.0, 'new_per_second', "
	SQL_RATE("sum(new_mappings)", "sum(span_ms)") ") AS o FROM hh "
	"GROUP BY public_ip, proto ORDER BY max(mappings_peak) DESC, "
	"public_ip, proto))), "
	"'live', json_object('as_of', (SELECT " SQL_TIME("as_of_ms")
	" FROM s), 'coverage', json_object('complete', " SQL_BOOL(
		"(SELECT state FROM s) NOT IN ('starting', 'db-error') AND NOT "
		"EXISTS (SELECT 1 FROM lcov)") ", 'follow', (SELECT follow FROM "
	"s), 'gaps', " SQL_GAPS_ARRAY("lcov") "), "
	"'gateways', json((SELECT json_group_array(json(o)) FROM (SELECT "
	"json_object('public_ip', public_ip, 'proto', proto, 'kind', kind, "
	"'mappings', mappings, 'ports_in_use', ports_in_use) AS o FROM hosts "
	"WHERE ip = ?2 ORDER BY mappings DESC, public_ip, proto)))), "
	/* ?6: store_maplog_host_dests() */
	"'destinations', json_extract(?6, '$.list'), "
	"'destinations_coverage', json_remove(?6, '$.list'))";

/* An incident row as a JSON object (the list's shape). */
#define SQL_INCIDENT                                                        \
	"json_object('id', id, 'kind', kind, 'severity', severity, "        \
	"'public_ip', public_ip, 'proto', proto, 'destination', json(CASE " \
	"WHEN kind = 'bucket' THEN json_object('ip', dest_ip, 'port', "     \
	"dest_port, 'zone', zone) END), 'capacity', capacity, "             \
	"'opened', " SQL_TIME("opened_ms") ", 'closed', "                   \
	SQL_TIME("closed_ms") ", 'open', " SQL_BOOL("closed_ms IS NULL")    \
	", 'duration_seconds', (coalesce(closed_ms, ?1) - opened_ms) / "    \
	"1000.0, 'peak_at', " SQL_TIME("peak_ms") ", 'peak_mappings', "     \
	"peak_mappings, 'peak_ratio', CASE WHEN capacity > 0 THEN "         \
	"round(peak_mappings * 1.0 / capacity, 4) END, 'insert_failed', "   \
	"insert_failed, 'drop', drop_count, 'early_drop', early_drop)"

/* ?1 now, ?2 from, ?3 to, ?4 limit: incidents open at any moment of the
 * range (an open one lasts until now). */
#define SQL_INCIDENTS_IN                                                    \
	"FROM incident WHERE opened_ms < ?3 AND (closed_ms IS NULL OR "     \
	"closed_ms > ?2)"
static const char sql_incidents[] =
	"WITH cov AS (" SQL_GAPS_OVERLAP("?2", "?3") ") "
	"SELECT json_object('generated_at', " SQL_TIME("?1") ", "
	"'from', " SQL_TIME("?2") ", 'to', " SQL_TIME("?3") ", "
	"'coverage', json_object('complete', "
	SQL_BOOL("NOT EXISTS (SELECT 1 FROM cov)") ", 'note', "
	"'incidents are opened from what natscope observed: during a gap "
	"one may be missing or late', 'gaps', " SQL_GAPS_ARRAY("cov") "), "
	"'total', (SELECT count(*) " SQL_INCIDENTS_IN "), 'limit', ?4, "
	"'incidents', json((SELECT json_group_array(json(o)) FROM (SELECT "
	SQL_INCIDENT " AS o " SQL_INCIDENTS_IN
	" ORDER BY opened_ms DESC, id DESC LIMIT ?4))))";

/* A detail column: embedded as JSON, or as a string if it is not JSON. */
#define SQL_DETAIL(c)                                                       \
	"json(CASE WHEN json_valid(" c ") THEN " c " ELSE json_quote(" c    \
	") END)"

/* ?1 now, ?2 id. */
static const char sql_incident[] =
	"WITH i AS (SELECT * FROM incident WHERE id = ?2), "
	"cov AS (" SQL_GAPS_OVERLAP("(SELECT opened_ms FROM i)",
				    "(SELECT coalesce(closed_ms, ?1) FROM i)")
	") SELECT json_set(" SQL_INCIDENT ", '$.generated_at', "
	SQL_TIME("?1") ", '$.coverage', json_object('complete', "
	SQL_BOOL("NOT EXISTS (SELECT 1 FROM cov)") ", 'gaps', "
	SQL_GAPS_ARRAY("cov") "), '$.opened_detail', "
	SQL_DETAIL("opened_detail") ", '$.peak_detail', "
	SQL_DETAIL("peak_detail") ") FROM i";

/* Steps s, whose column 0 is a code (0: the document is in column 1;
 * code_errs[code - 1]: fail with that errno) when codes is set, else
 * column 0 is the document (no row: ENOENT). */
static int hist_answer(struct store *st, sqlite3_stmt *s, const int *codes,
		       size_t ncodes, const char *what, char **out)
{
	int rc, ret = -1, code;

	*out = NULL;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		code = codes ? sqlite3_column_int(s, 0) : 0;
		if (code > 0 && (size_t)code <= ncodes)
			errno = codes[code - 1];
		else
			ret = store_column_dup(s, codes ? 1 : 0, out);
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

int store_json_gateways_at(struct store *st, int64_t at_ms, int64_t now_ms,
			   char **out)
{
	static const int codes[] = { ERANGE };
	sqlite3_stmt *s;

	*out = NULL;
	if (!(s = store_stmt(st, STMT_HIST_GATEWAYS, sql_gateways_at)))
		return -1;
	sqlite3_bind_int64(s, 1, now_ms);
	sqlite3_bind_int64(s, 2, at_ms);
	return hist_answer(st, s, codes, 1, "reading history", out);
}

static int hist_gateway_list(struct store *st, enum store_stmt id,
			     const char *sql, const struct ns_addr *gateway,
			     uint8_t proto, unsigned limit, int64_t at_ms,
			     int64_t now_ms, char **out)
{
	static const int codes[] = { ERANGE, ENOENT };
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
	sqlite3_bind_int64(s, 2, at_ms);
	sqlite3_bind_text(s, 3, ip, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, limit);
	return hist_answer(st, s, codes, 2, "reading history", out);
}

int store_json_hosts_at(struct store *st, const struct ns_addr *gateway,
			uint8_t proto, unsigned limit, int64_t at_ms,
			int64_t now_ms, char **out)
{
	return hist_gateway_list(st, STMT_HIST_HOSTS, sql_hosts_at, gateway,
				 proto, limit, at_ms, now_ms, out);
}

int store_json_destinations_at(struct store *st, const struct ns_addr *gateway,
			       uint8_t proto, unsigned limit, int64_t at_ms,
			       int64_t now_ms, char **out)
{
	return hist_gateway_list(st, STMT_HIST_DESTS, sql_dests_at, gateway,
				 proto, limit, at_ms, now_ms, out);
}

int store_history_range(struct store *st, int64_t at_ms,
			struct store_hist_range *r)
{
	sqlite3_stmt *s;
	int rc, err;

	r->first_ms = r->end_ms = r->before_ms = r->after_ms = -1;
	if (!(s = store_stmt(st, STMT_HIST_RANGE, sql_range)))
		return -1;
	sqlite3_bind_int64(s, 1, at_ms);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		store_fail(st, rc, "reading the range of history");
		err = errno;
		sqlite3_reset(s);
		errno = err;
		return -1;
	}
	if (sqlite3_column_type(s, 0) != SQLITE_NULL) {
		r->first_ms = sqlite3_column_int64(s, 0);
		r->end_ms = sqlite3_column_int64(s, 1);
	}
	if (sqlite3_column_type(s, 2) != SQLITE_NULL)
		r->before_ms = sqlite3_column_int64(s, 2);
	if (sqlite3_column_type(s, 3) != SQLITE_NULL)
		r->after_ms = sqlite3_column_int64(s, 3);
	sqlite3_reset(s);
	return 0;
}

/* Per tier, its periods overlapping [from, to) and when the first of
 * them begins to be observed. */
struct hist_tiers {
	int64_t count[3];
	int64_t first[3]; /* -1: none */
};

static int hist_tiers(struct store *st, int64_t from_ms, int64_t to_ms,
		      struct hist_tiers *t)
{
	sqlite3_stmt *s;
	int rc, err;

	if (!(s = store_stmt(st, STMT_HIST_TIERS, sql_tiers)))
		return -1;
	sqlite3_bind_int64(s, 1, from_ms);
	sqlite3_bind_int64(s, 2, to_ms);
	for (int i = 0; i < 3; i++) {
		if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
			store_fail(st, rc, "reading history tiers");
			err = errno;
			sqlite3_reset(s);
			errno = err;
			return -1;
		}
		t->count[i] = sqlite3_column_int64(s, 1);
		t->first[i] = sqlite3_column_type(s, 2) == SQLITE_NULL
				      ? -1
				      : sqlite3_column_int64(s, 2);
	}
	sqlite3_reset(s);
	return 0;
}

/* How much later than the earliest a tier's history in a range may begin
 * and still count as covering it (raw rows start on snapshots, not on
 * the minute). */
#define HIST_COVER_SLACK_MS 60000

/*
 * The finest tier whose history in [from, to) begins as early as any
 * tier's does (so raw is not picked for a range only its last part of
 * which raw retention still holds), with at most fit periods there (fit
 * 0: any number); else the coarsest that has periods there, else hour.
 */
static enum store_tier hist_pick_tier(const struct hist_tiers *t,
				      int64_t from_ms, int64_t fit)
{
	int64_t begin[3], earliest = -1;

	for (int i = 0; i < 3; i++) {
		begin[i] = t->first[i] > from_ms ? t->first[i] : from_ms;
		if (t->count[i] > 0 && (earliest < 0 || begin[i] < earliest))
			earliest = begin[i];
	}
	for (int i = 0; i < 3; i++)
		if (t->count[i] > 0 &&
		    begin[i] <= earliest + HIST_COVER_SLACK_MS &&
		    (fit == 0 || t->count[i] <= fit))
			return (enum store_tier)i;
	for (int i = 2; i >= 0; i--)
		if (t->count[i] > 0)
			return (enum store_tier)i;
	return STORE_TIER_HOUR;
}

int store_json_gateways_range(struct store *st, int64_t from_ms,
			      int64_t to_ms, int64_t now_ms, char **out)
{
	struct hist_tiers t;
	sqlite3_stmt *s;
	int rc;

	*out = NULL;
	if (from_ms >= to_ms) {
		errno = EINVAL;
		return -1;
	}
	if (store_read_begin(st) == -1) /* the tier and the rows agree */
		return -1;
	if (hist_tiers(st, from_ms, to_ms, &t) == -1 ||
	    !(s = store_stmt(st, STMT_HIST_GATEWAYS_RANGE,
			     sql_gateways_range))) {
		store_read_end(st);
		return -1;
	}
	sqlite3_bind_int64(s, 1, now_ms);
	sqlite3_bind_int64(s, 2, from_ms);
	sqlite3_bind_int64(s, 3, to_ms);
	/* every gateway's rows of the range are read (128 gateways x 720
	 * raw periods of an hour: 0.6 s): the coarser tier with at most
	 * 100 periods gives the same peaks, its edges a minute or an hour
	 * wide ("first" and "last" say) */
	sqlite3_bind_int(s, 4, hist_pick_tier(&t, from_ms, 100));
	rc = hist_answer(st, s, NULL, 0, "reading history", out);
	store_read_end(st);
	return rc;
}

int store_json_series(struct store *st, const struct ns_addr *gateway,
		      uint8_t proto, int64_t from_ms, int64_t to_ms,
		      enum store_tier tier, unsigned top_hosts, int64_t now_ms,
		      char **out)
{
	static const int codes[] = { ENOENT };
	char ip[NS_ADDR_STRLEN];
	const char *name = ns_proto_name(proto);
	struct hist_tiers t;
	sqlite3_stmt *s;
	int rc;

	*out = NULL;
	if (!ns_addr_format(gateway, ip) || !name || from_ms >= to_ms) {
		errno = EINVAL;
		return -1;
	}
	if (store_read_begin(st) == -1) /* the tier and the points agree */
		return -1;
	if (hist_tiers(st, from_ms, to_ms, &t) == -1)
		goto fail;
	if (tier == STORE_TIER_AUTO) {
		tier = hist_pick_tier(&t, from_ms, STORE_SERIES_FIT_POINTS);
	} else if (t.count[tier] > STORE_SERIES_MAX_POINTS) {
		errno = E2BIG;
		goto fail;
	}
	if (!(s = store_stmt(st, STMT_HIST_SERIES, sql_series)))
		goto fail;
	sqlite3_bind_int64(s, 1, now_ms);
	sqlite3_bind_text(s, 2, ip, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, from_ms);
	sqlite3_bind_int64(s, 5, to_ms);
	sqlite3_bind_int(s, 6, tier);
	sqlite3_bind_int64(s, 7, top_hosts);
	rc = hist_answer(st, s, codes, 1, "reading a series", out);
	store_read_end(st);
	return rc;
fail:
	store_read_end(st);
	return -1;
}

int store_json_host_history(struct store *st, const struct ns_addr *host,
			    int64_t from_ms, int64_t to_ms, int64_t now_ms,
			    char **out)
{
	char ip[NS_ADDR_STRLEN], *dests = NULL;
	struct hist_tiers t;
	sqlite3_stmt *s;
	int rc;

	*out = NULL;
	if (!ns_addr_format(host, ip) || from_ms >= to_ms) {
		errno = EINVAL;
		return -1;
	}
	if (store_read_begin(st) == -1)
		return -1;
	if (hist_tiers(st, from_ms, to_ms, &t) == -1 ||
	    store_maplog_host_dests(st, host, from_ms, to_ms, now_ms,
				    &dests) == -1 ||
	    !(s = store_stmt(st, STMT_HIST_HOST, sql_host))) {
		free(dests);
		store_read_end(st);
		return -1;
	}
	sqlite3_bind_int64(s, 1, now_ms);
	sqlite3_bind_text(s, 2, ip, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, from_ms);
	sqlite3_bind_int64(s, 4, to_ms);
	sqlite3_bind_int(s, 5, hist_pick_tier(&t, from_ms, 0));
	sqlite3_bind_text(s, 6, dests, -1, SQLITE_STATIC);
	rc = hist_answer(st, s, NULL, 0, "reading a host's history", out);
	free(dests);
	store_read_end(st);
	return rc;
}

int store_json_incidents(struct store *st, int64_t from_ms, int64_t to_ms,
			 unsigned limit, int64_t now_ms, char **out)
{
	sqlite3_stmt *s;

	*out = NULL;
	if (!(s = store_stmt(st, STMT_HIST_INCIDENTS, sql_incidents)))
		return -1;
	sqlite3_bind_int64(s, 1, now_ms);
	sqlite3_bind_int64(s, 2, from_ms);
	sqlite3_bind_int64(s, 3, to_ms);
	sqlite3_bind_int64(s, 4, limit);
	return hist_answer(st, s, NULL, 0, "reading incidents", out);
}

int store_json_incident(struct store *st, int64_t id, int64_t now_ms,
			char **out)
{
	sqlite3_stmt *s;

	*out = NULL;
	if (!(s = store_stmt(st, STMT_HIST_INCIDENT, sql_incident)))
		return -1;
	sqlite3_bind_int64(s, 1, now_ms);
	sqlite3_bind_int64(s, 2, id);
	return hist_answer(st, s, NULL, 0, "reading an incident", out);
}
