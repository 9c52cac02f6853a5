/*
 * histquery - times the API's history queries on a 30-day database.
 *
 *   histquery PATH [RUNS]
 *
 * If PATH does not exist it is created with natscope's schema and filled
 * with synthetic history ending at 2026-12-01T00:00:00Z: 64 public IPs
 * (tcp), 5000 internal hosts, raw 5 s periods for the last day, minutes
 * for 7 days, hours for 30 days (hist_kernel, hist_gateway in full), the
 * top 25 hosts and 10 destination buckets of every gateway in every hour
 * and in every minute of the last day (the writer keeps them per minute
 * and hour only), 1000 gaps, 2000 incidents and live hosts/gateways
 * tables.  (The minute host and bucket rows are thinned out in time only:
 * each query reads a range of one tier through an index, so what it
 * touches is what it would touch in a full database; the trees are a
 * little shallower.)
 *
 * Then every query behind the history endpoints runs RUNS times (default
 * 50) and one line per query gives its median, p99 and maximum in ms of
 * wall time, and the p99 of the thread's CPU time (what the query costs
 * when other processes compete for the cores).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "store/store.h"

#define END_MS 1796083200000LL /* 2026-12-01T00:00:00Z */
#define DAY_MS 86400000LL
#define HOUR_MS 3600000LL

static const char gen_sql[] =
	"PRAGMA journal_mode = DELETE; PRAGMA synchronous = OFF;"
	"BEGIN;"
	"CREATE TEMP TABLE gw AS WITH RECURSIVE n(g) AS (SELECT 0 UNION ALL "
	"SELECT g + 1 FROM n WHERE g < 63) SELECT g, '198.51.' || (g / 8) || "
	"'.' || (g % 8 + 1) AS ip, CAST(g AS BLOB) AS bin FROM n;"
	"CREATE TEMP TABLE per AS WITH RECURSIVE "
	"r(t) AS (SELECT :end - 86400000 UNION ALL SELECT t + 5000 FROM r "
	"WHERE t + 5000 < :end), "
	"m(t) AS (SELECT :end - 7 * 86400000 UNION ALL SELECT t + 60000 FROM m "
	"WHERE t + 60000 < :end), "
	"h(t) AS (SELECT :end - 30 * 86400000 UNION ALL SELECT t + 3600000 "
	"FROM h WHERE t + 3600000 < :end) "
	"SELECT 0 AS tier, t AS ts, 5000 AS span FROM r UNION ALL "
	"SELECT 1, t, 60000 FROM m UNION ALL SELECT 2, t, 3600000 FROM h;"
	"INSERT INTO hist_kernel (tier, ts_ms, span_ms, exact, state, "
	"mappings_nat, mappings_local, events_lost) SELECT tier, ts, span, "
	"(ts / span) % 97 != 0, 'running', 300000, 10, 0 FROM per "
	"ORDER BY tier, ts;"
	"INSERT INTO hist_gateway (public_ip, proto, tier, ts_ms, span_ms, "
	"exact, family, ip_bin, ports_in_use, ports_peak, ports_avg, mappings, "
	"mappings_peak, mappings_avg, hosts, destinations, new_mappings, "
	"worst_ip, worst_port, worst_zone, worst_capacity, worst_peak, "
	"state_established, state_time_wait, time_wait_peak) "
	"SELECT ip, 'tcp', tier, ts, span, 1, 4, bin, 20000 + (ts / span) % "
	"1000, 21000, 20000.5, 30000, 31000, 30000.5, 300, 40, span / 10, "
	"'203.0.113.7', 443, 0, 64512, 9000, 10000, 20000, 21000 "
	"FROM gw, per ORDER BY ip, tier, ts;"
	"CREATE TEMP TABLE hper AS SELECT * FROM per WHERE tier = 2 OR "
	"(tier = 1 AND ts >= :end - 86400000);"
	"CREATE TEMP TABLE slot AS WITH RECURSIVE n(j) AS (SELECT 0 UNION ALL "
	"SELECT j + 1 FROM n WHERE j < 24) SELECT j FROM n;"
	"INSERT INTO hist_host (public_ip, proto, tier, ts_ms, ip, span_ms, "
	"kind, family, ip_bin, mappings, mappings_peak, ports_in_use, "
	"new_mappings) SELECT ip, 'tcp', tier, ts, '10.0.' || (hst / 250) || "
	"'.' || (hst % 250 + 1), span, 'nat', 4, CAST(hst AS BLOB), "
	"1000 - j, 1100 - j, 900 - j, "
	"span / 100 FROM (SELECT gw.ip, tier, ts, span, j, (g * 78 + j * 7 + "
	"ts / 5000) % 5000 AS hst FROM gw, hper, slot) ORDER BY ip, tier, ts;"
	"INSERT INTO hist_dest (public_ip, proto, tier, ts_ms, zone, ip, port, "
	"span_ms, family, ip_bin, capacity, mappings, mappings_peak, "
	"new_mappings) SELECT gw.ip, 'tcp', tier, ts, 0, '203.0.113.' || "
	"(j + 1), 443, span, 4, CAST(j AS BLOB), "
	"64512, 3000 - j, 3100 - j, span / 50 FROM gw, hper, slot WHERE j < 10 "
	"ORDER BY gw.ip, tier, ts;"
	"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE "
	"i < 999) INSERT INTO gaps SELECT :end - 31 * 86400000, i + 1, "
	":end - 30 * 86400000 + i * 2592000, :end - 30 * 86400000 + i * "
	"2592000 + 4000, 10, 1, 0, 0, 0, 'enobufs' FROM n;"
	"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE "
	"i < 1999) INSERT INTO incident (kind, severity, public_ip, proto, "
	"capacity, opened_ms, closed_ms, peak_ms, peak_mappings, "
	"opened_detail, peak_detail) SELECT 'gateway', 'warn', '198.51.0.1', "
	"'tcp', 65535, :end - 30 * 86400000 + i * 1296000, :end - 30 * "
	"86400000 + i * 1296000 + 60000, :end - 30 * 86400000 + i * 1296000, "
	"50000, '{\"top\": []}', '{\"states\": {}}' FROM n;"
	"INSERT INTO hosts (public_ip, proto, ip, kind, family, ip_bin, "
	"mappings, ports_in_use) SELECT gw.ip, 'tcp', '10.0.' || (h / 250) || "
	"'.' || (h % 250 + 1), 'nat', 4, CAST(h AS BLOB), 10, 10 FROM gw, "
	"(WITH RECURSIVE n(h) AS "
	"(SELECT 0 UNION ALL SELECT h + 1 FROM n WHERE h < 4999) SELECT h "
	"FROM n) WHERE h % 32 = g % 32;"
	"COMMIT; PRAGMA journal_mode = WAL;";

/* Replaces every ":end" in gen_sql by END_MS.  Caller frees. */
static char *gen_text(void)
{
	char num[32], *out, *o;
	size_t n = 0, nl;
	const char *p;

	nl = (size_t)snprintf(num, sizeof(num), "%lld", (long long)END_MS);
	for (p = gen_sql; (p = strstr(p, ":end")); p += 4)
		n++;
	out = malloc(sizeof(gen_sql) + n * nl);
	if (!out)
		return NULL;
	for (p = gen_sql, o = out; *p;) {
		if (strncmp(p, ":end", 4) == 0) {
			memcpy(o, num, nl);
			o += nl;
			p += 4;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

static double cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

enum query {
	Q_GATEWAYS_RAW, Q_GATEWAYS_MINUTE, Q_GATEWAYS_HOUR, Q_HOSTS_AT,
	Q_DESTS_AT, Q_NO_HISTORY, Q_SERIES_1H, Q_SERIES_6H, Q_SERIES_30D,
	Q_SERIES_RAW_4H, Q_SERIES_CSV_30D, Q_HOST_1H, Q_HOST_1D, Q_HOST_30D,
	Q_INCIDENTS_30D, Q_INCIDENT, Q__COUNT
};

static const char *const names[Q__COUNT] = {
	"gateways at= (raw)", "gateways at= (minute)", "gateways at= (hour)",
	"gateways/{ip}/hosts at=", "gateways/{ip}/destinations at=",
	"no history at= (404 range)", "series 1 h (raw, 720)",
	"series 6 h (minute, 360)", "series 30 d (hour, 720)",
	"series 4 h resolution=raw (2880)", "series 30 d as CSV",
	"hosts/{ip} 1 h", "hosts/{ip} 1 day", "hosts/{ip} 30 days",
	"incidents 30 days (limit 100)", "incidents/{id}",
};

static int run(struct store *st, enum query q, char **out)
{
	struct ns_addr gw, host;
	struct store_hist_range r;
	char *json = NULL;
	int rc;

	ns_addr_parse("198.51.3.4", &gw);
	ns_addr_parse("10.0.7.9", &host);
	*out = NULL;
	switch (q) {
	case Q_GATEWAYS_RAW:
		return store_json_gateways_at(st, END_MS - HOUR_MS, END_MS, out);
	case Q_GATEWAYS_MINUTE:
		return store_json_gateways_at(st, END_MS - 3 * DAY_MS, END_MS,
					      out);
	case Q_GATEWAYS_HOUR:
		return store_json_gateways_at(st, END_MS - 20 * DAY_MS, END_MS,
					      out);
	case Q_HOSTS_AT:
		return store_json_hosts_at(st, &gw, 6, 50, END_MS - 600000,
					   END_MS, out);
	case Q_DESTS_AT:
		return store_json_destinations_at(st, &gw, 6, 50,
						  END_MS - 20 * DAY_MS, END_MS,
						  out);
	case Q_NO_HISTORY:
		rc = store_json_gateways_at(st, END_MS - 40 * DAY_MS, END_MS,
					    out);
		if (rc == -1 && errno == ERANGE)
			return store_history_range(st, END_MS - 40 * DAY_MS,
						   &r);
		return -1;
	case Q_SERIES_1H:
		return store_json_series(st, &gw, 6, END_MS - HOUR_MS, END_MS,
					 STORE_TIER_AUTO, 10, END_MS, out);
	case Q_SERIES_6H:
		return store_json_series(st, &gw, 6, END_MS - 6 * HOUR_MS,
					 END_MS, STORE_TIER_AUTO, 10, END_MS,
					 out);
	case Q_SERIES_30D:
		return store_json_series(st, &gw, 6, END_MS - 30 * DAY_MS,
					 END_MS, STORE_TIER_AUTO, 10, END_MS,
					 out);
	case Q_SERIES_RAW_4H:
		return store_json_series(st, &gw, 6, END_MS - 4 * HOUR_MS,
					 END_MS, STORE_TIER_RAW, 10, END_MS,
					 out);
	case Q_SERIES_CSV_30D:
		if (store_json_series(st, &gw, 6, END_MS - 30 * DAY_MS, END_MS,
				      STORE_TIER_AUTO, 10, END_MS, &json) == -1)
			return -1;
		rc = store_json_csv(st, json, "$.points", out);
		free(json);
		return rc;
	case Q_HOST_1H:
		return store_json_host_history(st, &host, END_MS - HOUR_MS,
					       END_MS, END_MS, out);
	case Q_HOST_1D:
		return store_json_host_history(st, &host, END_MS - DAY_MS,
					       END_MS, END_MS, out);
	case Q_HOST_30D:
		return store_json_host_history(st, &host, END_MS - 30 * DAY_MS,
					       END_MS, END_MS, out);
	case Q_INCIDENTS_30D:
		return store_json_incidents(st, END_MS - 30 * DAY_MS, END_MS,
					    100, END_MS, out);
	case Q_INCIDENT:
		return store_json_incident(st, 1000, END_MS, out);
	case Q__COUNT:
		break;
	}
	errno = EINVAL;
	return -1;
}

int main(int argc, char **argv)
{
	int runs = argc > 2 ? atoi(argv[2]) : 50;
	struct store *st;
	double *t, *c;

	if (argc < 2 || runs < 1) {
		fprintf(stderr, "usage: histquery PATH [RUNS]\n");
		return 2;
	}
	log_init("histquery", NS_LOG_WARN);
	if (access(argv[1], F_OK) == -1) {
		char *sql = gen_text();
		int64_t t0 = ns_mono_ns();

		st = store_open(argv[1], STORE_READ_WRITE);
		if (!st || !sql || store_test_exec(st, sql) == -1)
			return 1;
		store_close(st);
		free(sql);
		fprintf(stderr, "histquery: %s made in %.1f s\n", argv[1],
			(double)(ns_mono_ns() - t0) / 1e9);
	}
	if (!(st = store_open(argv[1], STORE_READ_ONLY)))
		return 1;
	if (!(t = calloc((size_t)runs, sizeof(*t))) ||
	    !(c = calloc((size_t)runs, sizeof(*c))))
		return 1;
	printf("%-36s %9s %9s %9s %9s %9s\n", "query", "p50 ms", "p99 ms",
	       "max ms", "cpu p99", "bytes");
	for (int q = 0; q < Q__COUNT; q++) {
		size_t bytes = 0;

		for (int i = 0; i < runs; i++) {
			int64_t t0 = ns_mono_ns();
			double c0 = cpu_ms();
			char *out;

			if (run(st, (enum query)q, &out) == -1) {
				fprintf(stderr, "histquery: %s: %s\n",
					names[q], strerror(errno));
				return 1;
			}
			t[i] = (double)(ns_mono_ns() - t0) / 1e6;
			c[i] = cpu_ms() - c0;
			bytes = out ? strlen(out) : 0;
			free(out);
		}
		qsort(t, (size_t)runs, sizeof(*t), cmp_double);
		qsort(c, (size_t)runs, sizeof(*c), cmp_double);
		printf("%-36s %9.2f %9.2f %9.2f %9.2f %9zu\n", names[q],
		       t[runs / 2], t[(runs * 99 - 1) / 100], t[runs - 1],
		       c[(runs * 99 - 1) / 100], bytes);
	}
	free(t);
	free(c);
	store_close(st);
	return 0;
}
