/*
 * metrics.c - /metrics: the Prometheus text exposition format 0.0.4,
 * following its conventions: one unit per family, named in its suffix
 * (_seconds, _bytes, _ports, _port, _ratio; counters end in _total),
 * enumerations as one 0/1 gauge per value, labels that are none of
 * Prometheus's own (no instance, job, host).
 *
 * Everything natscope measures comes from the store, in one read
 * snapshot: the gateway rows, the gateways that emptied within the last
 * WEB_GONE_MS (from history: reported at 0 rather than vanishing), the
 * top hosts of each gateway (WEB_TOP_HOSTS of them, so the number of
 * series stays bounded however many hosts there are), the status row and
 * the coverage.  Only process_* describe the process serving the page,
 * read from /proc/self at each scrape, as every Prometheus client does.
 * A sample whose value is not known is left out; a family whose every
 * sample is left out prints nothing, not even its # HELP.
 */
#include "web/internal.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "store/store.h"

/* Hosts exported per gateway. */
#define WEB_TOP_HOSTS 10

/* A gateway that emptied is reported at 0 this long after the end of the
 * last period of history that saw a mapping on it (status as_of). */
#define WEB_GONE_MS (10 * 60 * 1000)

void web_buf_add(struct web_buf *b, const char *s, size_t len)
{
	size_t cap;
	char *p;

	if (b->err)
		return;
	if (b->len + len + 1 > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < b->len + len + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, len);
	b->len += len;
	b->p[b->len] = '\0';
}

void web_buf_printf(struct web_buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	char *big;
	int n;

	if (b->err)
		return;
	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->err = EINVAL;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		web_buf_add(b, small, (size_t)n);
		return;
	}
	big = malloc((size_t)n + 1);
	if (!big) {
		b->err = ENOMEM;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	web_buf_add(b, big, (size_t)n);
	free(big);
}

void web_buf_free(struct web_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- one metric family at a time ---- */

#define MW_MAX_LABELS 4

struct mw {
	struct web_buf *b;
	const char *name, *type, *help;
	int head_done;
};

struct mlabels {
	int n;
	const char *k[MW_MAX_LABELS];
	const char *v[MW_MAX_LABELS];
};

/* Starts a family; its # HELP and # TYPE lines are written with its first
 * sample, so a family without samples prints nothing. */
static void mw_family(struct mw *m, const char *name, const char *type,
		      const char *help)
{
	m->name = name;
	m->type = type;
	m->help = help;
	m->head_done = 0;
}

/* A label value in the exposition format: \ " and newline escaped. */
static void mw_label_value(struct web_buf *b, const char *v)
{
	const char *run = v;

	for (; *v; v++) {
		const char *esc;

		if (*v == '\\')
			esc = "\\\\";
		else if (*v == '"')
			esc = "\\\"";
		else if (*v == '\n')
			esc = "\\n";
		else
			continue;
		web_buf_add(b, run, (size_t)(v - run));
		web_buf_add(b, esc, 2);
		run = v + 1;
	}
	web_buf_add(b, run, (size_t)(v - run));
}

static void mw_str(struct web_buf *b, const char *s)
{
	web_buf_add(b, s, strlen(s));
}

/* Writes one sample line of the current family: its name plus suffix
 * ("_bucket", "_count", "_sum" of a histogram; "" otherwise).  Plain
 * appends, not printf: /metrics has a line per gateway, state and top
 * host, and this is most of its own cost. */
static void mw_sample_as(struct mw *m, const char *suffix,
			 const struct mlabels *l, const char *value)
{
	struct web_buf *b = m->b;

	if (!m->head_done) {
		/* help texts are constants without \ or newline */
		web_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m->name,
			       m->help, m->name, m->type);
		m->head_done = 1;
	}
	mw_str(b, m->name);
	mw_str(b, suffix);
	for (int i = 0; l && i < l->n; i++) {
		mw_str(b, i ? "," : "{");
		mw_str(b, l->k[i]);
		mw_str(b, "=\"");
		mw_label_value(b, l->v[i]);
		mw_str(b, "\"");
	}
	if (l && l->n)
		mw_str(b, "}");
	mw_str(b, " ");
	mw_str(b, value);
	mw_str(b, "\n");
}

static void mw_u64_as(struct mw *m, const char *suffix,
		      const struct mlabels *l, uint64_t v)
{
	char t[24], *p = t + sizeof(t) - 1;

	*p = '\0';
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	mw_sample_as(m, suffix, l, p);
}

/* The shortest text that reads back as v exactly (as Prometheus's own
 * clients write it): a timestamp such as 1796218286.261 keeps its
 * fraction, where a fixed 9 digits would round it to 1796218290. */
static void mw_double_as(struct mw *m, const char *suffix,
			 const struct mlabels *l, double v)
{
	char t[40];

	for (int prec = 15; prec <= 17; prec++) {
		snprintf(t, sizeof(t), "%.*g", prec, v);
		if (strtod(t, NULL) == v)
			break;
	}
	mw_sample_as(m, suffix, l, t);
}

static void mw_u64(struct mw *m, const struct mlabels *l, uint64_t v)
{
	mw_u64_as(m, "", l, v);
}

static void mw_double(struct mw *m, const struct mlabels *l, double v)
{
	mw_double_as(m, "", l, v);
}

/* ---- the gateways and their top hosts ---- */

struct gw_view {
	const struct store_gateway_row *g;
	int gone; /* emptied lately: every figure reported as 0 */
	char ip[NS_ADDR_STRLEN];
	char proto[8];
	struct store_host_row *hosts; /* top WEB_TOP_HOSTS, malloc'd */
	size_t n_hosts;
};

static void gw_labels(const struct gw_view *v, struct mlabels *l)
{
	l->n = 2;
	l->k[0] = "public_ip";
	l->v[0] = v->ip;
	l->k[1] = "proto";
	l->v[1] = v->proto;
}

enum gw_field {
	GW_PORTS_IN_USE,
	GW_PORT_SPACE,
	GW_MAPPINGS,
	GW_HOSTS,
	GW_DESTINATIONS,
	GW_WORST_MAPPINGS,
	GW_WORST_CAPACITY,
	GW_WORST_RATIO,
};

static const struct {
	const char *name, *help;
} gw_families[] = {
	[GW_PORTS_IN_USE] = { "natscope_gateway_used_ports",
			      "Distinct public ports (ICMP: echo ids) of the "
			      "public IP with a mapping." },
	[GW_PORT_SPACE] = { "natscope_gateway_capacity_ports",
			    "Ports the public IP offers for the protocol: "
			    "65535 (1-65535), 65536 ICMP echo ids." },
	[GW_MAPPINGS] = { "natscope_gateway_mappings",
			  "Live mappings on the public IP." },
	[GW_HOSTS] = { "natscope_gateway_hosts",
		       "Internal hosts with at least one mapping." },
	[GW_DESTINATIONS] = { "natscope_gateway_destinations",
			      "Destination buckets with a mapping." },
	[GW_WORST_MAPPINGS] = { "natscope_gateway_worst_destination_mappings",
				"Mappings in the fullest destination bucket." },
	[GW_WORST_CAPACITY] = {
		"natscope_gateway_worst_destination_capacity_ports",
		"Ports the fullest destination bucket draws from." },
	[GW_WORST_RATIO] = {
		"natscope_gateway_worst_destination_utilization_ratio",
		"Mappings over capacity of the fullest destination bucket "
		"(0-1)." },
};

static void emit_gateways(struct mw *m, const struct gw_view *gv, size_t n)
{
	struct mlabels l;

	for (size_t f = 0; f < sizeof(gw_families) / sizeof(gw_families[0]);
	     f++) {
		mw_family(m, gw_families[f].name, "gauge", gw_families[f].help);
		for (size_t i = 0; i < n; i++) {
			const struct store_gateway_row *g = gv[i].g;
			int has_worst = g->worst_mappings > 0;

			gw_labels(&gv[i], &l);
			switch ((enum gw_field)f) {
			case GW_PORTS_IN_USE:
				mw_u64(m, &l, g->ports_in_use);
				break;
			case GW_PORT_SPACE:
				mw_u64(m, &l, ns_port_space(g->proto));
				break;
			case GW_MAPPINGS:
				mw_u64(m, &l, g->mappings);
				break;
			case GW_HOSTS:
				mw_u64(m, &l, g->hosts);
				break;
			case GW_DESTINATIONS:
				mw_u64(m, &l, g->destinations);
				break;
			case GW_WORST_MAPPINGS:
				if (has_worst || gv[i].gone)
					mw_u64(m, &l, g->worst_mappings);
				break;
			case GW_WORST_CAPACITY:
				/* a gateway gone has no bucket to measure */
				if (has_worst)
					mw_u64(m, &l, g->worst_capacity);
				break;
			case GW_WORST_RATIO:
				if (has_worst && g->worst_capacity > 0)
					mw_double(m, &l,
						  (double)g->worst_mappings /
							  g->worst_capacity);
				else if (gv[i].gone)
					mw_u64(m, &l, 0);
				break;
			}
		}
	}

	mw_family(m, "natscope_gateway_tcp_state_mappings", "gauge",
		  "TCP mappings on the public IP by conntrack state.");
	for (size_t i = 0; i < n; i++) {
		if (gv[i].g->proto != IPPROTO_TCP)
			continue;
		gw_labels(&gv[i], &l);
		l.n = 3;
		l.k[2] = "state";
		for (unsigned s = 0; s < NS_TCP_STATES; s++) {
			l.v[2] = ns_tcp_state_name(s);
			mw_u64(m, &l, gv[i].g->states[s]);
		}
	}
}

static void emit_hosts(struct mw *m, const struct gw_view *gv, size_t n)
{
	char host[NS_ADDR_STRLEN];
	struct mlabels l;

	for (int f = 0; f < 2; f++) {
		if (f == 0)
			mw_family(m, "natscope_host_mappings", "gauge",
				  "Mappings of the top 10 internal hosts of "
				  "each public IP.");
		else
			mw_family(m, "natscope_host_used_ports",
				  "gauge",
				  "Public ports held by the top 10 internal "
				  "hosts of each public IP.");
		for (size_t i = 0; i < n; i++) {
			for (size_t j = 0; j < gv[i].n_hosts; j++) {
				const struct store_host_row *h =
					&gv[i].hosts[j];

				if (!ns_addr_format(&h->ip, host))
					continue;
				gw_labels(&gv[i], &l);
				l.n = 4;
				l.k[2] = "internal_ip";
				l.v[2] = host;
				l.k[3] = "kind";
				l.v[3] = ns_kind_name((enum ns_kind)h->kind);
				mw_u64(m, &l, f == 0 ? h->mappings :
						       h->ports_in_use);
			}
		}
	}
}

/* ---- the status row ---- */

/* One-hot gauge: 1 for the current value of an enumeration, 0 for the
 * others. */
static void emit_enum(struct mw *m, const char *name, const char *help,
		      const char *label, unsigned n, unsigned current,
		      const char *(*name_of)(unsigned))
{
	struct mlabels l = { .n = 1, .k = { label } };

	mw_family(m, name, "gauge", help);
	for (unsigned i = 0; i < n; i++) {
		l.v[0] = name_of(i);
		mw_u64(m, &l, i == current);
	}
}

static const char *state_name(unsigned i)
{
	return store_state_name((enum store_state)i);
}

static const char *follow_name(unsigned i)
{
	return store_follow_name((enum store_follow)i);
}

/* Whether name ends in suffix; *base gets name without it. */
static int has_suffix(const char *name, const char *suffix, char *base,
		      size_t n)
{
	size_t a = strlen(name), b = strlen(suffix);

	if (a <= b || strcmp(name + a - b, suffix) != 0)
		return 0;
	snprintf(base, n, "%.*s", (int)(a - b), name);
	return 1;
}

/* A status row's labels "{key=\"value\"}" split into *key and *value
 * (pointers into buf).  Returns 0, or -1 for a spec without a label. */
static int status_label(const char *brace, char *buf, size_t n,
			const char **key, const char **value)
{
	char *eq, *end;

	snprintf(buf, n, "%s", brace + 1);
	eq = strchr(buf, '=');
	end = strrchr(buf, '"');
	if (!eq || !end || eq[1] != '"' || end <= eq + 1)
		return -1;
	*eq = *end = '\0';
	*key = buf;
	*value = eq + 2;
	return 0;
}

/* An enumeration row: value "a|b|c", one 0/1 sample per name, 1 for the
 * one whose index is v (none when v is out of range). */
static void emit_status_enum(struct mw *m, const char *key, const char *alts,
			     double v)
{
	struct mlabels l = { .n = 1, .k = { key } };
	char name[64];
	unsigned i = 0;

	for (const char *p = alts; *p; i++) {
		size_t len = strcspn(p, "|");

		snprintf(name, sizeof(name), "%.*s", (int)len, p);
		l.v[0] = name;
		mw_u64(m, &l, (double)i == v);
		p += len;
		if (*p == '|')
			p++;
	}
}

/* Every status field with a metric (STORE_STATUS_FIELDS): a family starts
 * where the name before '{' changes (a histogram's _bucket, _count and
 * _sum rows are one family); its first row gives the help. */
static void emit_status(struct mw *m, const struct store_status *s)
{
	char name[128], family[128] = "", labels[128], base[128];
	int histogram = 0;

	for (size_t i = 0; i < store_status_nfields; i++) {
		const struct store_field *f = &store_status_fields[i];
		const char *brace = strchr(f->metric, '{');
		size_t flen = brace ? (size_t)(brace - f->metric)
				    : strlen(f->metric);
		const char *suffix = "", *key = NULL, *value = NULL;
		struct mlabels l = { 0 };
		double v;

		if (!*f->metric)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)flen, f->metric);
		if (has_suffix(name, "_bucket", base, sizeof(base)) ||
		    (histogram && (has_suffix(name, "_count", base,
					      sizeof(base)) ||
				   has_suffix(name, "_sum", base,
					      sizeof(base))) &&
		     !strcmp(base, family))) {
			suffix = name + strlen(base);
			if (strcmp(base, family) != 0) {
				snprintf(family, sizeof(family), "%s", base);
				mw_family(m, family, "histogram", f->help);
				histogram = 1;
			}
		} else if (strcmp(name, family) != 0) {
			size_t n = strlen(name);

			snprintf(family, sizeof(family), "%s", name);
			histogram = 0;
			mw_family(m, family,
				  n > 6 && !strcmp(name + n - 6, "_total")
					  ? "counter" : "gauge",
				  f->help);
		}
		if (store_field_value(f, s, &v) < 0) {
			if (!histogram)
				continue;
			v = 0; /* a histogram has all its samples */
		}
		if (brace && status_label(brace, labels, sizeof(labels), &key,
					  &value) < 0)
			continue;
		if (value && strchr(value, '|')) {
			emit_status_enum(m, key, value, v);
			continue;
		}
		if (key) {
			l.n = 1;
			l.k[0] = key;
			l.v[0] = value;
		}
		if (histogram && !strcmp(suffix, "_count")) {
			struct mlabels inf = { .n = 1, .k = { "le" },
					       .v = { "+Inf" } };

			mw_u64_as(m, "_bucket", &inf, (uint64_t)v);
		}
		if (f->type == STORE_F_U64 || f->type == STORE_F_OPT ||
		    f->type == STORE_F_BOOL)
			mw_u64_as(m, suffix, &l, (uint64_t)v);
		else
			mw_double_as(m, suffix, &l, v);
	}
	emit_enum(m, "natscope_collector_state",
		  "1 for the collector's current state, 0 for the others.",
		  "state", STORE_STATES, s->state, state_name);
	emit_enum(m, "natscope_follow_mode",
		  "1 for how the collector follows the table now: events, "
		  "events+dumps or dumps.",
		  "mode", STORE_FOLLOWS, s->follow, follow_name);
}

/* What every API answer's "coverage" says, and the gaps of this run. */
static void emit_coverage(struct mw *m, const struct store_coverage *c)
{
	mw_family(m, "natscope_coverage_complete", "gauge",
		  "1 when the figures are known exact (the API's "
		  "coverage.complete): running or stopped, no gap open or "
		  "in the last interval.");
	mw_u64(m, NULL, (uint64_t)c->complete);
	mw_family(m, "natscope_gap_open", "gauge",
		  "1 while events are known lost and a resync has not yet "
		  "repaired the figures.");
	mw_u64(m, NULL, (uint64_t)c->gap_open);
	mw_family(m, "natscope_gaps_total", "counter",
		  "Gaps (periods the figures were not exact) this run "
		  "opened.");
	mw_u64(m, NULL, c->gaps_run);
}

/* ---- the serving process, from /proc/self ---- */

/* The clock ticks since boot at which this process started (field 22 of
 * /proc/self/stat), or -1. */
static long long proc_start_ticks(void)
{
	char buf[1024], *p;
	long long v = -1;
	size_t n;
	FILE *f = fopen("/proc/self/stat", "re");

	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the command name may hold spaces and ')': fields 3.. follow the
	 * last ')' */
	if (!(p = strrchr(buf, ')')))
		return -1;
	p++;
	for (int field = 3; field < 22 && p; field++) /* p: before field */
		p = strchr(p + 1, ' ');
	if (p && sscanf(p, " %lld", &v) != 1)
		v = -1;
	return v;
}

/* The boot time in seconds since the epoch (btime of /proc/stat), or -1. */
static long long proc_boot_time(void)
{
	char line[256];
	long long v = -1;
	FILE *f = fopen("/proc/stat", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %lld", &v) == 1)
			break;
	fclose(f);
	return v;
}

static long long proc_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long long n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void emit_process(struct mw *m)
{
	long long ticks = proc_start_ticks(), boot = proc_boot_time();
	long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	long long fds = proc_open_fds();
	unsigned long long vsz, rss;
	struct timespec ts;
	struct rlimit rl;
	FILE *f;

	mw_family(m, "process_start_time_seconds", "gauge",
		  "Start time of the process serving this page since the "
		  "epoch, seconds.");
	if (ticks >= 0 && boot > 0 && hz > 0)
		mw_double(m, NULL, (double)boot + (double)ticks / (double)hz);
	mw_family(m, "process_cpu_seconds_total", "counter",
		  "CPU time the process serving this page used, seconds.");
	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0)
		mw_double(m, NULL, (double)ts.tv_sec + ts.tv_nsec / 1e9);
	if ((f = fopen("/proc/self/statm", "re"))) {
		if (fscanf(f, "%llu %llu", &vsz, &rss) == 2 && page > 0) {
			mw_family(m, "process_resident_memory_bytes", "gauge",
				  "Resident memory of the process serving "
				  "this page, bytes.");
			mw_u64(m, NULL, rss * (unsigned long long)page);
			mw_family(m, "process_virtual_memory_bytes", "gauge",
				  "Virtual memory of the process serving this "
				  "page, bytes.");
			mw_u64(m, NULL, vsz * (unsigned long long)page);
		}
		fclose(f);
	}
	mw_family(m, "process_open_fds", "gauge",
		  "File descriptors the process serving this page has open.");
	if (fds >= 0)
		mw_u64(m, NULL, (uint64_t)fds);
	mw_family(m, "process_max_fds", "gauge",
		  "Its limit of open file descriptors (RLIMIT_NOFILE).");
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		mw_u64(m, NULL, (uint64_t)rl.rlim_cur);
}

/* ---- the page ---- */

static void free_views(struct gw_view *gv, size_t n)
{
	for (size_t i = 0; gv && i < n; i++)
		free(gv[i].hosts);
	free(gv);
}

/* Fills gv[i] for row g (gone: emptied lately, no hosts). */
static int view_fill(struct store *st, struct gw_view *v,
		     const struct store_gateway_row *g, int gone)
{
	const char *p = ns_proto_name(g->proto);

	v->g = g;
	v->gone = gone;
	if (!ns_addr_format(&g->ip, v->ip))
		strcpy(v->ip, "?");
	snprintf(v->proto, sizeof(v->proto), "%s", p ? p : "?");
	if (gone)
		return 0;
	if (store_read_top_hosts(st, &g->ip, g->proto, WEB_TOP_HOSTS,
				 &v->hosts, &v->n_hosts) == -1) {
		v->hosts = NULL;
		v->n_hosts = 0;
		if (errno != ENOENT)
			return -1;
	}
	return 0;
}

char *web_metrics(struct store *st, size_t *len)
{
	struct store_gateway_row *rows = NULL, *gone = NULL;
	struct gw_view *gv = NULL;
	struct web_buf b = { 0 };
	struct store_status s;
	struct store_coverage cov;
	struct mw m = { .b = &b };
	struct mlabels l = { .n = 1, .k = { "version" }, .v = { NS_VERSION } };
	size_t n = 0, n_gone = 0;
	int have_status, have_cov = 0, reading = 1;
	int saved;

	/* one snapshot for every figure, however many reads it takes */
	if (store_read_begin(st) == -1)
		return NULL;
	have_status = store_read_status(st, &s) == 0;
	if (!have_status && errno != ENOENT)
		goto err;
	if (store_read_gateways(st, &rows, &n) == -1)
		goto err;
	/* The gap log and history only add to the page: when they cannot be
	 * read (a damaged table, logged by the store) the page goes without
	 * the coverage families and the gateways that emptied, since it is
	 * most wanted when something is wrong (a db-error). */
	if (have_status && s.as_of_ms > 0 &&
	    store_read_gone_gateways(st, s.as_of_ms - WEB_GONE_MS, &gone,
				     &n_gone) == -1) {
		if (errno == ENOMEM)
			goto err;
		gone = NULL;
		n_gone = 0;
	}
	if (have_status && store_read_coverage(st, &cov) == 0)
		have_cov = 1;
	else if (have_status && errno == ENOMEM)
		goto err;
	if (n + n_gone > 0 && !(gv = calloc(n + n_gone, sizeof(*gv)))) {
		log_warn("web: metrics");
		goto err;
	}
	for (size_t i = 0; i < n; i++)
		if (view_fill(st, &gv[i], &rows[i], 0) == -1)
			goto err;
	for (size_t i = 0; i < n_gone; i++)
		view_fill(st, &gv[n + i], &gone[i], 1);
	store_read_end(st);
	reading = 0;

	emit_gateways(&m, gv, n + n_gone);
	emit_hosts(&m, gv, n + n_gone);
	if (have_status)
		emit_status(&m, &s);
	if (have_cov)
		emit_coverage(&m, &cov);
	emit_process(&m);
	mw_family(&m, "natscope_build_info", "gauge",
		  "Always 1; the version label names the build serving.");
	mw_u64(&m, &l, 1);
	if (b.err) {
		errno = b.err;
		log_warn("web: metrics");
		goto err;
	}

	free_views(gv, n + n_gone);
	free(rows);
	free(gone);
	*len = b.len;
	return b.p;

err:
	saved = errno;
	if (reading)
		store_read_end(st);
	free_views(gv, n + n_gone);
	free(rows);
	free(gone);
	web_buf_free(&b);
	errno = saved;
	return NULL;
}
