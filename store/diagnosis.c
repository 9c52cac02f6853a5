/*
 * diagnosis.c - the advice an exhaustion playbook gives, computed from one
 * gateway's own numbers (store.h, store_json_diagnosis()).
 *
 * The arithmetic operators use: a destination bucket (one public IP toward
 * one destination ip:port) has `capacity` ports; every connection that
 * closes keeps its port for the TIME_WAIT timeout, so a bucket that sees
 * R new connections a second holds about R x TIME_WAIT ports in closed
 * connections alone.  When that approaches the capacity, the bucket runs
 * out however few connections are open at once.
 *
 * The rates come from history (the newest minute that kept the bucket:
 * history keeps each minute's top buckets by peak and by rate); the live
 * figures from the live tables; the settings from the status row.  The
 * remedies and the OS defaults are tables below: the page shows them in
 * their order, each with whether it fits this gateway and why.
 */
#include "store/internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define DIAG_BUCKETS 10		 /* buckets shown, busiest first */
#define DIAG_RATE_AGE_MS 300000	 /* a minute older than this is no rate */
#define DIAG_TW_DEFAULT 120	 /* the kernel's TIME_WAIT timeout, s */
#define DIAG_WARN 0.70		 /* natscope's default thresholds */
#define DIAG_CRITICAL 0.90
#define DIAG_NAT_CAPACITY 64512	 /* ports 1024-65535 */

/* The ephemeral port ranges clients use by default. */
static const struct diag_range {
	const char *os;
	unsigned lo, hi;
} diag_os_ranges[] = {
	{ "Linux (net.ipv4.ip_local_port_range)", NS_LOCAL_PORT_LO,
	  NS_LOCAL_PORT_HI },
	{ "Windows, macOS, FreeBSD (the IANA dynamic range)", 49152, 65535 },
};

enum diag_remedy_id {
	DIAG_POOL,
	DIAG_SPREAD,
	DIAG_WIDEN,
	DIAG_TW_REUSE,
	DIAG_SHORT_TW,
	DIAG_N_REMEDIES
};

/* The remedies, safest first. */
static const struct diag_remedy {
	const char *id, *action, *detail, *tradeoff;
} diag_remedies[DIAG_N_REMEDIES] = {
	[DIAG_POOL] = { "pool",
		"Pool and reuse connections in the busiest hosts",
		"keep-alive and connection pools (HTTP clients, database "
		"drivers) make the same few connections carry many requests: "
		"fewer new connections a second means fewer ports held in "
		"TIME_WAIT",
		"none on the network; a change in the application" },
	[DIAG_SPREAD] = { "spread",
		"Add public IPs to the SNAT pool, or spread the traffic over "
		"more destination addresses or ports",
		"each public IP (and each destination ip:port) is a bucket of "
		"its own with a full port range: N public IPs give N times the "
		"ports toward the same destination",
		"more addresses to allocate and allow-list at the destination" },
	[DIAG_WIDEN] = { "widen",
		"Widen the port range",
		"masquerade and SNAT without --to-ports use 1024-65535; a "
		"narrower range (a --to-ports, or this host's "
		"ip_local_port_range for its own connections) gives fewer "
		"ports per bucket",
		"ports below 32768 may collide with services listening on the "
		"host (reserve them with ip_local_reserved_ports)" },
	[DIAG_TW_REUSE] = { "tw_reuse",
		"net.ipv4.tcp_tw_reuse = 1 for this host's own connections",
		"lets this host's outgoing connections reuse a port still in "
		"TIME_WAIT when the timestamps make it safe; it does nothing "
		"for forwarded (NATed) connections",
		"needs TCP timestamps (on by default)" },
	[DIAG_SHORT_TW] = { "short_time_wait",
		"Shorten net.netfilter.nf_conntrack_tcp_timeout_time_wait",
		"the gateway forgets a closed connection, and frees its NAT "
		"port, after this many seconds (the kernel's default is 120)",
		"a late segment of the closed connection can reach a new one "
		"that reuses the tuple: keep it at 30 s or more, and prefer "
		"the remedies above" },
};

static const char diag_never[] =
	"never enable net.ipv4.tcp_tw_recycle: it was removed in Linux 4.12 "
	"because it drops connections from clients behind NAT (their "
	"timestamps are not monotonic across hosts), which is what a NAT "
	"gateway's clients are";

/* One bucket: live figures and the newest minute's rate. */
struct diag_bucket {
	char ip[NS_ADDR_STRLEN];
	int port, zone;
	int64_t mappings, capacity;
	double rate;	    /* new mappings a second; < 0 unknown */
	int64_t rate_ts_ms; /* the minute it is from */
	double tw_ports;    /* rate x TIME_WAIT seconds; < 0 unknown */
	double pressure;    /* the larger of mappings and tw_ports, of capacity */
};

static int diag_cmp(const void *a, const void *b)
{
	const struct diag_bucket *x = a, *y = b;

	if (x->pressure != y->pressure)
		return x->pressure > y->pressure ? -1 : 1;
	return (x->mappings < y->mappings) - (x->mappings > y->mappings);
}

/* ?1 public ip, ?2 proto, ?3 the oldest minute that counts: every live
 * bucket with the rate of the newest such minute that kept it. */
static const char sql_buckets[] =
	"SELECT d.ip, d.port, d.zone, d.mappings, d.capacity, "
	"h.new_mappings, h.span_ms, h.ts_ms FROM destinations d "
	"LEFT JOIN hist_dest h ON h.public_ip = d.public_ip AND "
	"h.proto = d.proto AND h.tier = 1 AND h.zone = d.zone AND "
	"h.ip = d.ip AND h.port = d.port AND h.ts_ms = (SELECT max(ts_ms) "
	"FROM hist_dest x WHERE x.public_ip = d.public_ip AND "
	"x.proto = d.proto AND x.tier = 1 AND x.zone = d.zone AND "
	"x.ip = d.ip AND x.port = d.port AND x.ts_ms >= ?3) "
	"WHERE d.public_ip = ?1 AND d.proto = ?2";

/* ?1 public ip, ?2 proto: the gateway's live row. */
static const char sql_gateway[] =
	"SELECT mappings, ports_in_use, state_time_wait FROM gateways "
	"WHERE public_ip = ?1 AND proto = ?2";

static int diag_read_buckets(struct store *st, const char *ip,
			     const char *proto, int64_t now_ms, double tw_s,
			     struct diag_bucket **out, size_t *n)
{
	struct diag_bucket *v = NULL;
	size_t cap = 0;
	sqlite3_stmt *s;
	int rc;

	*out = NULL;
	*n = 0;
	if (!(s = store_stmt(st, STMT_DIAG_BUCKETS, sql_buckets)))
		return -1;
	sqlite3_bind_text(s, 1, ip, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, proto, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now_ms - DIAG_RATE_AGE_MS);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct diag_bucket *b;

		if (store_grow(&v, *n, &cap, sizeof(*v)) < 0) {
			sqlite3_reset(s);
			free(v);
			return -1;
		}
		b = &v[(*n)++];
		memset(b, 0, sizeof(*b));
		snprintf(b->ip, sizeof(b->ip), "%s",
			 (const char *)sqlite3_column_text(s, 0));
		b->port = sqlite3_column_int(s, 1);
		b->zone = sqlite3_column_int(s, 2);
		b->mappings = sqlite3_column_int64(s, 3);
		b->capacity = sqlite3_column_int64(s, 4);
		b->rate = b->tw_ports = -1;
		if (sqlite3_column_type(s, 5) != SQLITE_NULL &&
		    sqlite3_column_int64(s, 6) > 0) {
			b->rate = sqlite3_column_int64(s, 5) * 1000.0 /
				  sqlite3_column_int64(s, 6);
			b->rate_ts_ms = sqlite3_column_int64(s, 7);
			b->tw_ports = tw_s >= 0 ? b->rate * tw_s : -1;
		}
		b->pressure = b->capacity > 0 ?
			fmax((double)b->mappings, b->tw_ports) / b->capacity : 0;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(v);
		return store_fail(st, rc, "reading the destination buckets");
	}
	if (*n)
		qsort(v, *n, sizeof(*v), diag_cmp);
	*out = v;
	return 0;
}

/* A number rounded to 2 decimals, as JSON. */
static json_t *diag_real(double v)
{
	return json_real(round(v * 100) / 100);
}

/* The buckets as JSON, with their verdicts. */
static json_t *diag_buckets_json(const struct diag_bucket *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n && i < DIAG_BUCKETS; i++) {
		const struct diag_bucket *b = &v[i];
		const char *verdict = b->pressure >= 1 ? "runs out" :
				      b->pressure >= DIAG_CRITICAL ? "critical" :
				      b->pressure >= DIAG_WARN ? "warn" : "ok";
		char ts[NS_TIME_STRLEN];
		json_t *o;

		o = json_pack("{s:{s:s, s:i, s:i}, s:I, s:I, s:o, s:o, s:o, "
			      "s:o, s:o, s:s}",
			      "destination", "ip", b->ip, "port", b->port,
			      "zone", b->zone,
			      "mappings", (json_int_t)b->mappings,
			      "capacity", (json_int_t)b->capacity,
			      "fill", diag_real(b->capacity ?
						(double)b->mappings /
						b->capacity : 0),
			      "new_per_second", b->rate < 0 ? json_null() :
			      diag_real(b->rate),
			      "rate_minute", b->rate < 0 ? json_null() :
			      json_string(ns_time_format(b->rate_ts_ms, ts)),
			      "time_wait_ports", b->tw_ports < 0 ? json_null()
			      : json_integer((json_int_t)llround(b->tw_ports)),
			      "time_wait_fill", b->tw_ports < 0 ||
			      !b->capacity ? json_null() :
			      diag_real(b->tw_ports / b->capacity),
			      "verdict", verdict);
		if (!o || json_array_append_new(a, o) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* Whether each remedy fits this gateway, and why, from its numbers. */
static json_t *diag_remedies_json(const struct diag_bucket *v, size_t n,
				  double tw_s, int tw_known, int64_t tw_reuse,
				  int local)
{
	const struct diag_bucket *w = n ? &v[0] : NULL;
	json_t *a = json_array();
	char why[512];

	for (int r = 0; a && r < DIAG_N_REMEDIES; r++) {
		int fits = 0;
		json_t *o;

		why[0] = '\0';
		switch (r) {
		case DIAG_POOL:
			fits = w && w->tw_ports >= 0 &&
			       w->tw_ports >= 0.3 * w->capacity;
			if (w && w->tw_ports >= 0)
				snprintf(why, sizeof(why), "toward %s:%d, %.1f "
					 "new connections a second hold ~%.0f "
					 "of its %lld ports in TIME_WAIT alone",
					 w->ip, w->port, w->rate, w->tw_ports,
					 (long long)w->capacity);
			break;
		case DIAG_SPREAD:
			fits = w && w->pressure >= DIAG_WARN;
			if (w && w->capacity)
				snprintf(why, sizeof(why), "%s:%d needs %.0f "
					 "public IP%s to stay under %.0f%%",
					 w->ip, w->port,
					 fmax(1, ceil(w->pressure / DIAG_WARN)),
					 ceil(w->pressure / DIAG_WARN) > 1 ?
					 "s" : "", DIAG_WARN * 100);
			break;
		case DIAG_WIDEN:
			fits = w && w->capacity < DIAG_NAT_CAPACITY &&
			       w->pressure >= DIAG_WARN;
			if (w)
				snprintf(why, sizeof(why), "the busiest "
					 "bucket draws from %lld ports%s",
					 (long long)w->capacity,
					 w->capacity < DIAG_NAT_CAPACITY ?
					 "" : ", already 1024-65535");
			break;
		case DIAG_TW_REUSE:
			fits = local && tw_reuse != 1;
			snprintf(why, sizeof(why), "%s; tcp_tw_reuse is %s",
				 local ? "this host's own connections use "
					 "busy buckets" :
					 "no busy bucket is this host's own",
				 tw_reuse < 0 ? "unknown" :
				 tw_reuse == 1 ? "on" :
				 tw_reuse == 2 ? "on for loopback only" : "off");
			break;
		case DIAG_SHORT_TW:
			fits = tw_known && tw_s > 60 && w && w->tw_ports >= 0 &&
			       w->tw_ports >= DIAG_WARN * w->capacity;
			if (w && w->tw_ports >= 0)
				snprintf(why, sizeof(why), "now %.0f s%s: at "
					 "60 s %s:%d would hold ~%.0f ports "
					 "in TIME_WAIT", tw_s,
					 tw_known ? "" : " (assumed)", w->ip,
					 w->port, w->rate * 60);
			break;
		}
		o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:b, s:s?}",
			      "rank", r + 1, "id", diag_remedies[r].id,
			      "action", diag_remedies[r].action,
			      "detail", diag_remedies[r].detail,
			      "tradeoff", diag_remedies[r].tradeoff,
			      "fits", fits, "because", why[0] ? why : NULL);
		if (!o || json_array_append_new(a, o) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

int store_json_diagnosis(struct store *st, const struct ns_addr *gateway,
			 uint8_t proto, int64_t now_ms, char **out)
{
	char ip[NS_ADDR_STRLEN], now[NS_TIME_STRLEN], asof[NS_TIME_STRLEN];
	const char *pname = ns_proto_name(proto);
	struct store_status s;
	struct diag_bucket *v = NULL;
	size_t n = 0;
	int64_t mappings = 0, ports = 0, tw_now = 0;
	double tw_s;
	int tw_known, local, rc, ret = -1;
	json_t *doc = NULL, *ranges;
	sqlite3_stmt *g;

	*out = NULL;
	if (!ns_addr_format(gateway, ip) || !pname) {
		errno = EINVAL;
		return -1;
	}
	if (store_read_begin(st) == -1)
		return -1;
	if (store_read_status(st, &s) == -1)
		goto out;
	tw_known = s.sysctl_tcp_timeout_time_wait >= 0;
	tw_s = tw_known ? (double)s.sysctl_tcp_timeout_time_wait :
			  DIAG_TW_DEFAULT;
	if (!(g = store_stmt(st, STMT_DIAG_GATEWAY, sql_gateway)))
		goto out;
	sqlite3_bind_text(g, 1, ip, -1, SQLITE_STATIC);
	sqlite3_bind_text(g, 2, pname, -1, SQLITE_STATIC);
	rc = sqlite3_step(g);
	if (rc == SQLITE_ROW) {
		mappings = sqlite3_column_int64(g, 0);
		ports = sqlite3_column_int64(g, 1);
		tw_now = sqlite3_column_int64(g, 2);
	}
	sqlite3_reset(g);
	if (rc == SQLITE_DONE) {
		errno = ENOENT;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		store_fail(st, rc, "reading a gateway");
		goto out;
	}
	/* TIME_WAIT is TCP's: other protocols' entries end by their own
	 * timeouts after the last packet, which the status does not hold */
	if (diag_read_buckets(st, ip, pname, now_ms,
			      proto == IPPROTO_TCP ? tw_s : -1, &v, &n) < 0)
		goto out;
	/* a bucket of this host's own connections draws from its
	 * ip_local_port_range, not 1024-65535 */
	local = 0;
	for (size_t i = 0; i < n && i < DIAG_BUCKETS; i++)
		if (v[i].pressure >= DIAG_WARN && s.sysctl_port_range_lo >= 0 &&
		    v[i].capacity == s.sysctl_port_range_hi -
				     s.sysctl_port_range_lo + 1)
			local = 1;
	ranges = json_array();
	for (size_t i = 0; ranges && i < sizeof(diag_os_ranges) /
				       sizeof(diag_os_ranges[0]); i++)
		json_array_append_new(ranges, json_pack(
			"{s:s, s:i, s:i, s:i}", "os", diag_os_ranges[i].os,
			"lo", diag_os_ranges[i].lo, "hi", diag_os_ranges[i].hi,
			"ports", diag_os_ranges[i].hi - diag_os_ranges[i].lo + 1));
	doc = json_pack(
		"{s:s, s:s, s:s, s:s?, "
		"s:{s:I, s:I, s:I, s:o}, "
		"s:{s:o, s:o, s:s}, "
		"s:{s:f, s:b, s:o, s:s}, "
		"s:{s:f, s:f, s:s}, "
		"s:o, s:o, s:[s]}",
		"generated_at", ns_time_format(now_ms, now),
		"public_ip", ip, "proto", pname,
		"as_of", s.as_of_ms > 0 ? ns_time_format(s.as_of_ms, asof) : NULL,
		"gateway", "mappings", (json_int_t)mappings,
		"ports_in_use", (json_int_t)ports,
		"time_wait", (json_int_t)tw_now,
		"time_wait_share", mappings ? diag_real((double)tw_now /
							  (double)mappings)
					    : json_null(),
		"port_range",
		"this_host", s.sysctl_port_range_lo < 0 ? json_null() :
		json_pack("{s:I, s:I, s:I}", "lo",
			  (json_int_t)s.sysctl_port_range_lo, "hi",
			  (json_int_t)s.sysctl_port_range_hi, "ports",
			  (json_int_t)(s.sysctl_port_range_hi -
				       s.sysctl_port_range_lo + 1)),
		"os_defaults", ranges ? ranges : json_null(),
		"note", "masquerade and SNAT without --to-ports draw from "
			"1024-65535 (64,512 ports per bucket); this host's own "
			"connections from its ip_local_port_range",
		"time_wait_timeout", "seconds", tw_s, "known", tw_known,
		"tcp_tw_reuse", s.sysctl_tcp_tw_reuse < 0 ? json_null() :
		json_integer(s.sysctl_tcp_tw_reuse),
		"arithmetic", proto == IPPROTO_TCP ?
		"new connections a second x TIME_WAIT seconds = ports held by "
		"closed connections" :
		"TCP's only: other protocols' entries end by their own "
		"timeouts after their last packet",
		"thresholds", "warn", DIAG_WARN, "critical", DIAG_CRITICAL,
		"note", "natscope's defaults (run --warn/--critical set the "
			"incidents' own)",
		"buckets", diag_buckets_json(v, n),
		"remedies", diag_remedies_json(v, n, tw_s, tw_known,
					       s.sysctl_tcp_tw_reuse, local),
		"warnings", diag_never);
	if (!doc || !(*out = json_dumps(doc, JSON_COMPACT))) {
		errno = ENOMEM;
		log_warnx("store: a diagnosis: out of memory");
		goto out;
	}
	ret = 0;
out:
	json_decref(doc);
	free(v);
	store_read_end(st);
	return ret;
}
