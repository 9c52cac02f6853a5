/*
 * metrics.c - /metrics: the Prometheus text exposition format 0.0.4.
 *
 * Everything comes from the store: the gateway rows, the top hosts of
 * each gateway (WEB_TOP_HOSTS of them, so the number of series stays
 * bounded however many hosts there are) and the status row.  A sample
 * whose value the collector does not know (-1) is left out; a family
 * whose every sample is left out prints nothing, not even its # HELP.
 */
#include "web/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "store/store.h"

/* Hosts exported per gateway. */
#define WEB_TOP_HOSTS 10

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

/* Writes one sample line.  Plain appends, not printf: /metrics has a line
 * per gateway, state and top host, and this is most of its own cost. */
static void mw_sample(struct mw *m, const struct mlabels *l,
		      const char *value)
{
	struct web_buf *b = m->b;

	if (!m->head_done) {
		/* help texts are constants without \ or newline */
		web_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m->name,
			       m->help, m->name, m->type);
		m->head_done = 1;
	}
	mw_str(b, m->name);
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

static void mw_u64(struct mw *m, const struct mlabels *l, uint64_t v)
{
	char t[24], *p = t + sizeof(t) - 1;

	*p = '\0';
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	mw_sample(m, l, p);
}

static void mw_double(struct mw *m, const struct mlabels *l, double v)
{
	char t[40];

	snprintf(t, sizeof(t), "%.9g", v);
	mw_sample(m, l, t);
}

/* ---- the families ---- */

struct gw_view {
	const struct store_gateway_row *g;
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
	[GW_PORTS_IN_USE] = { "natscope_gateway_ports_in_use",
			      "Distinct public ports with a mapping." },
	[GW_PORT_SPACE] = { "natscope_gateway_port_space",
			    "Ports a public IP offers: 1-65535, ICMP echo ids 0-65535." },
	[GW_MAPPINGS] = { "natscope_gateway_mappings",
			  "Live mappings on the public IP." },
	[GW_HOSTS] = { "natscope_gateway_hosts",
		       "Internal hosts with at least one mapping." },
	[GW_DESTINATIONS] = { "natscope_gateway_destinations",
			      "Destination buckets with a mapping." },
	[GW_WORST_MAPPINGS] = { "natscope_gateway_worst_destination_mappings",
				"Mappings in the fullest destination bucket." },
	[GW_WORST_CAPACITY] = { "natscope_gateway_worst_destination_capacity",
				"Capacity of the fullest destination bucket." },
	[GW_WORST_RATIO] = {
		"natscope_gateway_worst_destination_utilization_ratio",
		"Mappings over capacity of the fullest destination bucket." },
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
				if (has_worst)
					mw_u64(m, &l, g->worst_mappings);
				break;
			case GW_WORST_CAPACITY:
				if (has_worst)
					mw_u64(m, &l, g->worst_capacity);
				break;
			case GW_WORST_RATIO:
				if (has_worst && g->worst_capacity > 0)
					mw_double(m, &l,
						  (double)g->worst_mappings /
							  g->worst_capacity);
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
				  "Mappings of the top 10 hosts of each "
				  "public IP.");
		else
			mw_family(m, "natscope_host_ports_in_use", "gauge",
				  "Public ports held by the top 10 hosts of "
				  "each public IP.");
		for (size_t i = 0; i < n; i++) {
			for (size_t j = 0; j < gv[i].n_hosts; j++) {
				const struct store_host_row *h =
					&gv[i].hosts[j];

				if (!ns_addr_format(&h->ip, host))
					continue;
				gw_labels(&gv[i], &l);
				l.n = 4;
				l.k[2] = "host";
				l.v[2] = host;
				l.k[3] = "kind";
				l.v[3] = ns_kind_name((enum ns_kind)h->kind);
				mw_u64(m, &l, f == 0 ? h->mappings :
						       h->ports_in_use);
			}
		}
	}
}

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

/* Every status field with a metric (STORE_STATUS_FIELDS): a family starts
 * where the name before '{' changes; its first row gives the help. */
static void emit_status(struct mw *m, const struct store_status *s)
{
	char family[128], labels[128], prev[128] = "";

	for (size_t i = 0; i < store_status_nfields; i++) {
		const struct store_field *f = &store_status_fields[i];
		const char *brace = strchr(f->metric, '{');
		size_t flen = brace ? (size_t)(brace - f->metric)
				    : strlen(f->metric);
		struct mlabels l = { 0 };
		double v;

		if (!*f->metric)
			continue;
		snprintf(family, sizeof(family), "%.*s", (int)flen, f->metric);
		if (strcmp(family, prev) != 0) {
			size_t n = strlen(family);
			const char *type = n > 6 &&
						   !strcmp(family + n - 6, "_total")
					   ? "counter" : "gauge";

			snprintf(prev, sizeof(prev), "%s", family);
			mw_family(m, prev, type, f->help);
		}
		if (store_field_value(f, s, &v) < 0)
			continue;
		if (brace) {
			/* {key="value"}: the value holds no quote */
			char *eq, *end;

			snprintf(labels, sizeof(labels), "%s", brace + 1);
			eq = strchr(labels, '=');
			end = strrchr(labels, '"');
			if (!eq || !end || eq[1] != '"' || end <= eq + 1)
				continue;
			*eq = *end = '\0';
			l.n = 1;
			l.k[0] = labels;
			l.v[0] = eq + 2;
		}
		if (f->type == STORE_F_U64 || f->type == STORE_F_OPT ||
		    f->type == STORE_F_BOOL)
			mw_u64(m, &l, (uint64_t)v);
		else
			mw_double(m, &l, v);
	}
	emit_enum(m, "natscope_collector_state",
		  "1 for the collector's current state, 0 for the others.",
		  "state", STORE_STATES, s->state, state_name);
	emit_enum(m, "natscope_follow_mode",
		  "1 for how the collector follows the table now: events, "
		  "events+dumps or dumps.",
		  "mode", STORE_FOLLOWS, s->follow, follow_name);
}

char *web_metrics(struct store *st, size_t *len)
{
	struct store_gateway_row *rows = NULL;
	struct gw_view *gv = NULL;
	struct web_buf b = { 0 };
	struct store_status s;
	struct mw m = { .b = &b };
	struct mlabels l = { .n = 1, .k = { "version" }, .v = { NS_VERSION } };
	size_t n = 0;
	int have_status, reading = 1;
	int saved;

	/* one snapshot for every figure, however many reads it takes */
	if (store_read_begin(st) == -1)
		return NULL;
	if (store_read_gateways(st, &rows, &n) == -1) {
		store_read_end(st);
		return NULL;
	}
	if (n > 0 && !(gv = calloc(n, sizeof(*gv)))) {
		log_warn("web: metrics");
		goto err;
	}
	for (size_t i = 0; i < n; i++) {
		const char *p = ns_proto_name(rows[i].proto);

		gv[i].g = &rows[i];
		if (!ns_addr_format(&rows[i].ip, gv[i].ip))
			strcpy(gv[i].ip, "?");
		snprintf(gv[i].proto, sizeof(gv[i].proto), "%s",
			 p ? p : "?");
		if (store_read_top_hosts(st, &rows[i].ip, rows[i].proto,
					 WEB_TOP_HOSTS, &gv[i].hosts,
					 &gv[i].n_hosts) == -1) {
			if (errno != ENOENT)
				goto err;
			gv[i].hosts = NULL;
			gv[i].n_hosts = 0;
		}
	}
	have_status = store_read_status(st, &s) == 0;
	if (!have_status && errno != ENOENT)
		goto err;
	store_read_end(st);
	reading = 0;

	emit_gateways(&m, gv, n);
	emit_hosts(&m, gv, n);
	if (have_status)
		emit_status(&m, &s);
	mw_family(&m, "natscope_build_info", "gauge",
		  "Always 1; the version label names the build serving.");
	mw_u64(&m, &l, 1);
	if (b.err) {
		errno = b.err;
		log_warn("web: metrics");
		goto err;
	}

	for (size_t i = 0; i < n; i++)
		free(gv[i].hosts);
	free(gv);
	free(rows);
	*len = b.len;
	return b.p;

err:
	saved = errno;
	if (reading)
		store_read_end(st);
	for (size_t i = 0; gv && i < n; i++)
		free(gv[i].hosts);
	free(gv);
	free(rows);
	web_buf_free(&b);
	errno = saved;
	return NULL;
}
