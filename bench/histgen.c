/*
 * histgen.c - the history budget of issue 7, measured: builds the
 * database natscope would hold after N days (default 30) at a given size
 * (64 public IPs, 5,000 active internal hosts) through the real write path
 * (store_open, store_begin_run, store_write with struct store_batch filled
 * as collector/ledger.c fills it), in simulated time, and reports its size,
 * its rows per table and tier, the CPU of the writes, and (--queries) the
 * latency of the questions the history API answers.
 *
 *   build/histgen --db FILE [--days 30] [--gateways 64] [--hosts 5000]
 *                 [--dests 300] [--interval 5] [--fine-days 1]
 *                 [--mid-interval 60] [--old-interval 3600] [--seed 1]
 *                 [--max-size MIB (the history limit; default 1 GiB)]
 *                 [--queries N] [--no-write] [--no-live] [--json]
 *
 * Time is simulated: no sleeping, every period is stamped with its
 * simulated start and end, the last ending "now" (the real clock).
 *
 * Resolution of the simulation.  Only the newest day is kept raw (tier 0),
 * so only the last --fine-days days are written at --interval, period by
 * period, as natscope would write them.  The days before, back to the
 * minute tier's retention (7 days by default), are written one period per
 * --mid-interval (60 s: one period per minute, so every gateway's minute
 * row exists as it would; hosts and buckets only in the first period of
 * each hour when --fine-days covers their minutes' retention, a day:
 * older minutes of theirs are trimmed, and their hour rows are one per
 * host or bucket whichever minutes they come from); older days, of which only hour
 * rows survive, one period per --old-interval (3600 s).  Coarser periods
 * give the same rows in the minute and hour tiers (one per gateway, host
 * or bucket and period; their spans add up to the same minutes and hours)
 * at a fraction of the writes; the raw rows they leave are gone by the end.
 * --fine-days equal to --days simulates every interval.  The CPU figures
 * are per write of each phase: the steady state is the last day's.
 *
 * The traffic: each host uses its primary public IP over TCP, half of them
 * UDP too, 30% a second public IP and 5% a third; its mappings wander
 * around a level drawn from a wide distribution (median ~12, a few
 * hundred for heavy hosts) with a new-mapping rate of level / 30 s; half
 * of the hosts change in a 5 s interval (every one in a coarser period).
 * Each gateway talks to ~30 of --dests destinations (TCP, weighted) and 4
 * DNS servers (UDP).  Bursts (~4 an hour over all gateways) push one host
 * toward one destination by 5,000-64,000 mappings for 1-24 intervals; the
 * largest saturate the bucket (incidents, insert_failed rising), and about
 * one a day pushes its gateway past 70% of its ports.
 *
 * The queries (--queries N: each N times with random parameters; p50/p99
 * in ms) are SQL that answers what the HTTP endpoints of issue 7 answer,
 * directly on the database: see struct hg_query below.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "common/common.h"
#include "store/store.h"

#define HG_DAY_MS (24LL * 3600 * 1000)
#define HG_TCP_DESTS 30
#define HG_UDP_DESTS 4
#define HG_NAT_CAPACITY 64512 /* ports 1024-65535 */

/* ---- random numbers (xorshift64*, seeded: runs are reproducible) ---- */

static uint64_t hg_rng = 88172645463325252ULL;

static uint64_t hg_rand(void)
{
	hg_rng ^= hg_rng >> 12;
	hg_rng ^= hg_rng << 25;
	hg_rng ^= hg_rng >> 27;
	return hg_rng * 2685821657736338717ULL;
}

/* Uniform in [0, 1). */
static double hg_unif(void)
{
	return (double)(hg_rand() >> 11) / 9007199254740992.0;
}

static double hg_normal(void)
{
	double u = hg_unif() + 1e-12, v = hg_unif();

	return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* ---- the simulated network ---- */

struct hg_gw {			/* one (public IP, protocol) */
	struct ns_addr ip;
	uint8_t proto;
	uint32_t first_dest, n_dests; /* its buckets: bkt[first..+n) */
	uint32_t mappings, hosts, ports_peak, mappings_peak, new_mappings;
	uint32_t states[NS_TCP_STATES];
	/* the burst under way: host pair, bucket, size, intervals left */
	uint32_t burst_ports;
	int burst_left, burst_now; /* burst_now: it applies to this period */
	uint32_t burst_pair, burst_bkt, burst_size;
};

struct hg_pair {		/* one host's use of one gateway */
	uint32_t gw;
	struct ns_addr ip;
	double level, rate;	/* mean mappings, new mappings per second */
	uint32_t mappings, peak, new_mappings;
	uint8_t dirty, pick; /* pick: among its gateway's top this period */
};

struct hg_bkt {			/* one destination bucket of a gateway */
	uint32_t gw;
	struct ns_addr ip;
	uint16_t port;
	double weight;		/* share of its gateway's mappings */
	uint32_t mappings, peak, new_mappings;
	uint8_t dirty, pick;
};

struct hg_model {
	struct hg_gw *gw;
	size_t n_gw;
	struct hg_pair *pair;
	size_t n_pair;
	struct hg_bkt *bkt;
	size_t n_bkt;
	unsigned hosts;
	int64_t insert_failed, drop, early_drop;
};

static void hg_addr4(struct ns_addr *a, uint32_t v)
{
	memset(a, 0, sizeof(*a));
	a->family = AF_INET;
	a->bytes[0] = (uint8_t)(v >> 24);
	a->bytes[1] = (uint8_t)(v >> 16);
	a->bytes[2] = (uint8_t)(v >> 8);
	a->bytes[3] = (uint8_t)v;
}

static void *hg_grow(void *p, size_t n, size_t size)
{
	void *q = realloc(p, (n + 1) * size);

	if (!q) {
		fprintf(stderr, "histgen: out of memory\n");
		exit(1);
	}
	return q;
}

static void hg_add_pair(struct hg_model *m, uint32_t gw, uint32_t host)
{
	struct hg_pair *p;

	m->pair = hg_grow(m->pair, m->n_pair, sizeof(*m->pair));
	p = &m->pair[m->n_pair++];
	memset(p, 0, sizeof(*p));
	p->gw = gw;
	hg_addr4(&p->ip, 0x0a000000u + 2 + host); /* 10.0.0.2 ... */
	p->level = exp(2.5 + 1.2 * hg_normal());
	if (p->level > 3000)
		p->level = 3000;
	if (m->gw[gw].proto == IPPROTO_UDP)
		p->level = p->level / 4 + 1;
	p->rate = p->level / 30.0;
	p->mappings = (uint32_t)p->level;
}

/* 2 * gateways (public IP, protocol) with their buckets, and the hosts'
 * pairs. */
static void hg_model_init(struct hg_model *m, unsigned gateways,
			  unsigned hosts, unsigned dests)
{
	memset(m, 0, sizeof(*m));
	m->hosts = hosts;
	m->n_gw = 2 * (size_t)gateways;
	m->gw = calloc(m->n_gw, sizeof(*m->gw));
	if (!m->gw)
		exit(1);
	for (size_t g = 0; g < m->n_gw; g++) {
		struct hg_gw *w = &m->gw[g];
		unsigned n = g % 2 ? HG_UDP_DESTS : HG_TCP_DESTS;
		double sum = 0;

		hg_addr4(&w->ip, 0x64400000u + 1 + (uint32_t)(g / 2)); /* 100.64.0.1 */
		w->proto = g % 2 ? IPPROTO_UDP : IPPROTO_TCP;
		w->first_dest = (uint32_t)m->n_bkt;
		w->n_dests = n;
		for (unsigned i = 0; i < n; i++) {
			struct hg_bkt *b;

			m->bkt = hg_grow(m->bkt, m->n_bkt, sizeof(*m->bkt));
			b = &m->bkt[m->n_bkt++];
			memset(b, 0, sizeof(*b));
			b->gw = (uint32_t)g;
			if (w->proto == IPPROTO_UDP) {
				hg_addr4(&b->ip, 0xc6120000u + 53 + i); /* DNS */
				b->port = 53;
			} else {
				/* zipf-like popularity over --dests */
				uint32_t d = (uint32_t)(pow(hg_unif(), 2.0) * dests);

				hg_addr4(&b->ip, 0xc6120100u + d / 3);
				b->port = (uint16_t)(d % 3 == 0 ? 443 : d % 3 == 1 ?
						     80 : 8443);
				for (unsigned j = 0; j < i; j++)
					if (!memcmp(&m->bkt[w->first_dest + j].ip,
						    &b->ip, sizeof(b->ip)) &&
					    m->bkt[w->first_dest + j].port ==
						    b->port)
						b->port = (uint16_t)(10000 + i);
			}
			b->weight = 1.0 / (i + 1);
			sum += b->weight;
		}
		for (unsigned i = 0; i < n; i++)
			m->bkt[w->first_dest + i].weight /= sum;
	}
	for (unsigned h = 0; h < hosts; h++) {
		uint32_t prim = h % gateways;

		hg_add_pair(m, 2 * prim, h);
		if (hg_unif() < 0.5)
			hg_add_pair(m, 2 * prim + 1, h);
		if (hg_unif() < 0.3)
			hg_add_pair(m, 2 * ((prim + 1 + hg_rand() %
					     (gateways - 1 ? gateways - 1 : 1)) %
					    gateways), h);
		if (hg_unif() < 0.05)
			hg_add_pair(m, 2 * ((prim + gateways / 2) % gateways), h);
	}
}

/* One period of secs seconds: who changed, peaks, bursts. */
static void hg_model_step(struct hg_model *m, double secs, double dirty_share)
{
	double p_dirty = 1 - pow(1 - dirty_share, secs / 5.0);
	/* ~4 bursts an hour over all TCP gateways */
	double p_burst = 4.0 / 3600 * secs / (double)(m->n_gw / 2);

	for (size_t g = 0; g < m->n_gw; g++) {
		struct hg_gw *w = &m->gw[g];

		w->mappings = w->hosts = w->new_mappings = 0;
		w->mappings_peak = 0;
	}
	for (size_t i = 0; i < m->n_pair; i++) {
		struct hg_pair *p = &m->pair[i];
		double v;

		p->dirty = hg_unif() < p_dirty;
		if (p->dirty) {
			v = p->level * (1 + 0.3 * hg_normal());
			p->mappings = v < 0 ? 0 : (uint32_t)v;
			v = p->rate * secs * (0.5 + hg_unif());
			p->new_mappings = (uint32_t)v;
			p->peak = p->mappings + p->new_mappings / 4;
		} else {
			p->new_mappings = 0;
			p->peak = p->mappings;
		}
		m->gw[p->gw].mappings += p->mappings;
		m->gw[p->gw].mappings_peak += p->peak;
		m->gw[p->gw].new_mappings += p->new_mappings;
		m->gw[p->gw].hosts += p->mappings > 0;
	}
	for (size_t g = 0; g < m->n_gw; g++) {
		struct hg_gw *w = &m->gw[g];

		if (w->proto == IPPROTO_TCP && !w->burst_left &&
		    hg_unif() < p_burst) {
			double r = hg_unif();
			size_t n = 0, pick;

			for (size_t i = 0; i < m->n_pair; i++)
				n += m->pair[i].gw == g;
			pick = n ? hg_rand() % n : 0;
			for (size_t i = 0; i < m->n_pair; i++)
				if (m->pair[i].gw == g && pick-- == 0) {
					w->burst_pair = (uint32_t)i;
					break;
				}
			w->burst_bkt = w->first_dest +
				       (uint32_t)(hg_rand() % w->n_dests);
			/* 70%: 5k-30k (no incident); 28%: 46k-64k, the
			 * bucket saturates; 2%: 48k + most of the ports */
			w->burst_size = r < 0.7 ? 5000 + (uint32_t)(hg_unif() * 25000) :
					r < 0.98 ? 46000 + (uint32_t)(hg_unif() * 18500) :
						   60000;
			w->burst_left = 1 + (int)(hg_rand() % 24);
			if (secs > 5) /* coarse periods: one period of it */
				w->burst_left = 1;
		}
		w->burst_now = w->burst_left > 0;
		if (w->burst_left) {
			struct hg_pair *p = &m->pair[w->burst_pair];
			uint32_t add = w->burst_size;

			p->dirty = 1;
			p->peak += add;
			p->mappings += add / 2;
			p->new_mappings += add;
			w->mappings += add / 2;
			w->mappings_peak += add;
			/* ports: a burst toward one destination may reuse
			 * ports other destinations hold; the largest take
			 * fresh ones */
			w->burst_ports = add < 60000 ? add * 6 / 10 : add;
			w->new_mappings += add;
			w->burst_left--;
		}
		w->ports_peak = w->mappings_peak - (w->burst_now ?
				w->burst_size - w->burst_ports : 0);
		if (w->ports_peak > 65000)
			w->ports_peak = 65000;
		memset(w->states, 0, sizeof(w->states));
		if (w->proto == IPPROTO_TCP) {
			w->states[3] = w->mappings * 6 / 10;	 /* ESTABLISHED */
			w->states[NS_TCP_TIME_WAIT] = w->mappings * 35 / 100;
			w->states[1] = w->mappings - w->states[3] -
				       w->states[NS_TCP_TIME_WAIT]; /* SYN_SENT */
		}
	}
	for (size_t i = 0; i < m->n_bkt; i++) {
		struct hg_bkt *b = &m->bkt[i];
		const struct hg_gw *w = &m->gw[b->gw];
		double gm = w->mappings, gp = w->mappings_peak, gn = w->new_mappings;

		if (w->burst_now) {
			/* the burst's part goes to its bucket alone */
			gm -= w->burst_size / 2.0;
			gp -= w->burst_size;
			gn -= w->burst_size;
		}
		b->mappings = (uint32_t)(gm > 0 ? gm * b->weight : 0);
		b->peak = (uint32_t)(gp > 0 ? gp * b->weight : 0);
		b->new_mappings = (uint32_t)(gn > 0 ? gn * b->weight : 0);
		b->dirty = hg_unif() < (p_dirty > 0.8 ? p_dirty : 0.8);
	}
	for (size_t g = 0; g < m->n_gw; g++) {
		struct hg_gw *w = &m->gw[g];

		if (w->burst_now) {
			struct hg_bkt *b = &m->bkt[w->burst_bkt];
			uint32_t add = w->burst_size;

			b->peak += add;
			b->mappings += add / 2;
			b->new_mappings += add;
			b->dirty = 1;
			if (b->peak > HG_NAT_CAPACITY) {
				m->insert_failed += b->peak - HG_NAT_CAPACITY;
				b->peak = HG_NAT_CAPACITY;
			}
		}
	}
}

/* ---- batches, as the collector fills them ---- */

static void hg_fail(const char *what)
{
	fprintf(stderr, "histgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* The values ranked by hg_top(): a host's or bucket's peak or new
 * mappings (every bucket of the model has the same capacity, so peak
 * ranks buckets as peak / capacity does). */
static uint32_t *hg_key;

static int hg_cmp_key(const void *a, const void *b)
{
	uint32_t x = hg_key[*(const uint32_t *)a];
	uint32_t y = hg_key[*(const uint32_t *)b];

	return x > y ? -1 : x < y;
}

/* Marks pick on the hosts and buckets the collector hands the writer for
 * a period (ledger_history_top() on main): per gateway, the top `top` live
 * ones by peak and the top `top` by new mappings. */
static void hg_top(struct hg_model *m, unsigned top)
{
	size_t nmax = m->n_pair > m->n_bkt ? m->n_pair : m->n_bkt;
	uint32_t *idx = malloc(nmax * sizeof(uint32_t));
	uint32_t *peak = malloc(nmax * sizeof(uint32_t));
	uint32_t *created = malloc(nmax * sizeof(uint32_t));

	if (!idx || !peak || !created)
		hg_fail("memory");
	for (size_t i = 0; i < m->n_pair; i++) {
		m->pair[i].pick = 0;
		peak[i] = m->pair[i].peak;
		created[i] = m->pair[i].new_mappings;
	}
	for (size_t g = 0; g < m->n_gw; g++) {
		size_t n = 0;

		for (size_t i = 0; i < m->n_pair; i++)
			if (m->pair[i].gw == g)
				idx[n++] = (uint32_t)i;
		for (int by = 0; by < 2; by++) {
			hg_key = by ? created : peak;
			qsort(idx, n, sizeof(*idx), hg_cmp_key);
			for (size_t k = 0; k < n && k < top; k++)
				if (hg_key[idx[k]])
					m->pair[idx[k]].pick = 1;
		}
	}
	for (size_t i = 0; i < m->n_bkt; i++) {
		m->bkt[i].pick = 0;
		peak[i] = m->bkt[i].peak;
		created[i] = m->bkt[i].new_mappings;
	}
	for (size_t g = 0; g < m->n_gw; g++) {
		const struct hg_gw *w = &m->gw[g];
		size_t n = w->n_dests;

		for (size_t k = 0; k < n; k++)
			idx[k] = w->first_dest + (uint32_t)k;
		for (int by = 0; by < 2; by++) {
			hg_key = by ? created : peak;
			qsort(idx, n, sizeof(*idx), hg_cmp_key);
			for (size_t k = 0; k < n && k < top; k++)
				if (hg_key[idx[k]])
					m->bkt[idx[k]].pick = 1;
		}
	}
	free(idx);
	free(peak);
	free(created);
}

static void hg_status(struct store_status *x, const struct hg_model *m,
		      int64_t started, int64_t as_of, unsigned interval)
{
	uint64_t nat = 0;

	for (size_t g = 0; g < m->n_gw; g++)
		nat += m->gw[g].mappings;
	x->started_ms = started;
	x->interval_s = interval;
	x->state = STORE_STATE_RUNNING;
	x->follow = STORE_FOLLOW_EVENTS;
	x->as_of_ms = as_of;
	x->mappings_nat = nat;
	x->gateways = m->n_gw;
	x->hosts = m->n_pair;
	x->destinations = m->n_bkt;
	x->resync_count = 1;
	x->conntrack_count = (int64_t)nat + 1000;
	x->conntrack_max = 1048576;
	x->conntrack_insert_failed = m->insert_failed;
	x->conntrack_drop = m->drop;
	x->conntrack_early_drop = m->early_drop;
	x->conntrack_clash_resolve = 0;
	x->sysctl_port_range_lo = 32768;
	x->sysctl_port_range_hi = 60999;
	x->sysctl_tcp_tw_reuse = 2;
	x->sysctl_tcp_fin_timeout = 60;
	x->sysctl_tcp_timeout_time_wait = 120;
	x->sysctl_conntrack_events = 1;
}

/* Fills b with the period [start, end): the live deltas (unless no_live)
 * and the history, as ledger_snapshot() and ledger_history() do. */
static void hg_batch(struct store_batch *b, struct hg_model *m,
		     int64_t started, int64_t start, int64_t end,
		     unsigned interval, int full, int no_live, int lists)
{
	struct store_history *h = &b->hist;

	store_batch_clear(b);
	b->full = full;
	store_status_init(&b->status);
	hg_status(&b->status, m, started, end, interval);
	h->start_ms = start;
	h->end_ms = end;
	h->exact = 1;
	h->state = STORE_STATE_RUNNING;
	hg_top(m, 20);
	for (size_t g = 0; g < m->n_gw; g++) {
		const struct hg_gw *w = &m->gw[g];
		const struct hg_bkt *worst = NULL;
		struct store_hist_gateway *r;
		struct store_gateway_row *lr;

		for (uint32_t i = 0; i < w->n_dests; i++)
			if (!worst || m->bkt[w->first_dest + i].peak > worst->peak)
				worst = &m->bkt[w->first_dest + i];
		if (!(r = store_batch_add_hist_gateway(b)))
			hg_fail("batch");
		r->end.ip = w->ip;
		r->end.proto = w->proto;
		r->end.ports_in_use = w->mappings > 65000 ? 65000 : w->mappings;
		r->end.mappings = w->mappings;
		r->end.hosts = w->hosts;
		r->end.destinations = w->n_dests;
		if (worst && worst->peak) {
			r->end.worst_ip = worst->ip;
			r->end.worst_port = worst->port;
			r->end.worst_mappings = worst->peak;
			r->end.worst_capacity = HG_NAT_CAPACITY;
		}
		memcpy(r->end.states, w->states, sizeof(w->states));
		r->ports_peak = w->ports_peak;
		r->mappings_peak = w->mappings_peak;
		r->time_wait_peak = w->states[NS_TCP_TIME_WAIT] +
				    w->new_mappings / 8;
		r->new_mappings = w->new_mappings;
		if (!no_live) {
			if (!(lr = store_batch_add_gateway(b)))
				hg_fail("batch");
			*lr = r->end;
		}
	}
	for (size_t i = 0; i < m->n_pair; i++) {
		const struct hg_pair *p = &m->pair[i];
		struct store_hist_host *r;
		struct store_host_row *lr;

		if (p->pick && lists) {
			if (!(r = store_batch_add_hist_host(b)))
				hg_fail("batch");
			r->end.gateway = m->gw[p->gw].ip;
			r->end.proto = m->gw[p->gw].proto;
			r->end.kind = NS_KIND_NAT;
			r->end.ip = p->ip;
			r->end.mappings = p->mappings;
			r->end.ports_in_use = p->mappings;
			r->mappings_peak = p->peak;
			r->new_mappings = p->new_mappings;
		}
		if (!no_live && (p->dirty || full)) {
			if (!(lr = store_batch_add_host(b)))
				hg_fail("batch");
			lr->gateway = m->gw[p->gw].ip;
			lr->proto = m->gw[p->gw].proto;
			lr->kind = NS_KIND_NAT;
			lr->ip = p->ip;
			lr->mappings = p->mappings ? p->mappings : 0;
			lr->ports_in_use = p->mappings;
		}
	}
	for (size_t i = 0; i < m->n_bkt; i++) {
		const struct hg_bkt *k = &m->bkt[i];
		struct store_hist_dest *r;
		struct store_dest_row *lr;

		if (k->pick && lists) {
			if (!(r = store_batch_add_hist_dest(b)))
				hg_fail("batch");
			r->end.gateway = m->gw[k->gw].ip;
			r->end.proto = m->gw[k->gw].proto;
			r->end.ip = k->ip;
			r->end.port = k->port;
			r->end.mappings = k->mappings;
			r->end.capacity = HG_NAT_CAPACITY;
			r->mappings_peak = k->peak;
			r->new_mappings = k->new_mappings;
		}
		if (!no_live && (k->dirty || full) && k->mappings) {
			if (!(lr = store_batch_add_dest(b)))
				hg_fail("batch");
			lr->gateway = m->gw[k->gw].ip;
			lr->proto = m->gw[k->gw].proto;
			lr->ip = k->ip;
			lr->port = k->port;
			lr->mappings = k->mappings;
			lr->capacity = HG_NAT_CAPACITY;
		}
	}
}

/* ---- measuring ---- */

static double hg_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double hg_mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int hg_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The q-quantile (0-1) of v[n], sorted in place. */
static double hg_quantile(double *v, size_t n, double q)
{
	size_t i;

	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), hg_cmp_double);
	i = (size_t)ceil(q * (double)n);
	return v[i ? i - 1 : 0];
}

/* What one phase of writes cost. */
struct hg_phase {
	const char *name;
	unsigned interval;	/* seconds per period */
	double days;
	size_t writes;
	double cpu_s, wall_s, max_cpu_s;
	double *per;		/* CPU of each write */
	size_t n_per;
	double p99_cpu_s;
	/* hosts and buckets only in a period that starts an hour: their
	 * minutes this old are trimmed (kept a day), their hours are one
	 * row per host or bucket whichever minutes they come from */
	int lists_hourly;
};

/* Writes `days` days of periods of `interval` seconds from *t, through
 * store_write(). */
static void hg_run_phase(struct store *st, struct hg_model *m,
			 struct store_batch *b, struct hg_phase *ph,
			 int64_t started, int64_t *t, int *first,
			 unsigned report_interval, int no_live)
{
	int64_t end = *t + (int64_t)(ph->days * HG_DAY_MS);
	int64_t step = (int64_t)ph->interval * 1000;
	size_t cap = (size_t)((end - *t) / step) + 2;
	double w0 = hg_mono_s();

	ph->per = calloc(cap, sizeof(double));
	if (!ph->per)
		hg_fail("memory");
	int64_t hour = -1;

	while (*t + step <= end) {
		int lists = !ph->lists_hourly || *t / 3600000 != hour;
		double c0, c;

		hour = *t / 3600000;
		hg_model_step(m, (double)ph->interval, 0.5);
		hg_batch(b, m, started, *t, *t + step, report_interval, *first,
			 no_live, lists);
		c0 = hg_cpu_s();
		if (store_write(st, b) < 0)
			hg_fail("store_write");
		c = hg_cpu_s() - c0;
		*first = 0;
		ph->cpu_s += c;
		if (c > ph->max_cpu_s)
			ph->max_cpu_s = c;
		if (ph->n_per < cap)
			ph->per[ph->n_per++] = c;
		ph->writes++;
		*t += step;
	}
	ph->wall_s = hg_mono_s() - w0;
	ph->p99_cpu_s = hg_quantile(ph->per, ph->n_per, 0.99);
}

/* ---- the database afterwards ---- */

static long long hg_file_size(const char *path, const char *suffix)
{
	char p[4096];
	struct stat sb;

	snprintf(p, sizeof(p), "%s%s", path, suffix);
	return stat(p, &sb) == 0 ? (long long)sb.st_size : 0;
}

static long long hg_q_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s;
	long long v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "histgen: %s: %s\n", sql, sqlite3_errmsg(db));
		return -1;
	}
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* ---- the queries ---- */

/* The parameters of one run of a query, drawn at random: a moment, a
 * range, a public IP and protocol, an internal host. */
struct hg_params {
	int64_t at, from, to;
	int tier;
	char public_ip[NS_ADDR_STRLEN], proto[8], host[NS_ADDR_STRLEN];
};

/* One question of the history API and the SQL that answers it on the
 * database (?1 at or from, ?2 to, ?3 tier, ?4 public IP, ?5 proto, ?6
 * host).  range_ms: the range asked (0: a moment).  To measure the real
 * endpoints later, the same parameters fill `endpoint`. */
struct hg_query {
	const char *name;
	const char *endpoint;
	int64_t range_ms;
	const char *sql;
};

static const struct hg_query hg_queries[] = {
	{ "gateways_at", "/api/v1/gateways?at=", 0,
	  "SELECT public_ip, proto, ts_ms, span_ms, exact, ports_in_use,"
	  " ports_peak, mappings, mappings_peak, hosts, destinations,"
	  " new_mappings, worst_ip, worst_port, worst_peak, worst_capacity,"
	  " state_established, state_time_wait, time_wait_peak"
	  " FROM hist_gateway WHERE tier = ?3 AND ts_ms = (SELECT max(ts_ms)"
	  " FROM hist_gateway WHERE tier = ?3 AND ts_ms <= ?1)"
	  " ORDER BY public_ip, proto" },
	{ "series_1h_raw", "/api/v1/series?public_ip=&proto=&from=&to=",
	  3600000,
	  "SELECT ts_ms, span_ms, exact, ports_in_use, ports_peak, mappings,"
	  " mappings_peak, new_mappings, worst_ip, worst_port, worst_peak,"
	  " worst_capacity, state_established, state_time_wait, time_wait_peak"
	  " FROM hist_gateway WHERE public_ip = ?4 AND proto = ?5 AND"
	  " tier = ?3 AND ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms" },
	{ "series_1d_minute", "/api/v1/series?public_ip=&proto=&from=&to=",
	  HG_DAY_MS,
	  "SELECT ts_ms, span_ms, exact, ports_in_use, ports_peak, mappings,"
	  " mappings_peak, new_mappings, worst_ip, worst_port, worst_peak,"
	  " worst_capacity, state_established, state_time_wait, time_wait_peak"
	  " FROM hist_gateway WHERE public_ip = ?4 AND proto = ?5 AND"
	  " tier = ?3 AND ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms" },
	{ "series_30d_hour", "/api/v1/series?public_ip=&proto=&from=&to=",
	  30 * HG_DAY_MS,
	  "SELECT ts_ms, span_ms, exact, ports_in_use, ports_peak, mappings,"
	  " mappings_peak, new_mappings, worst_ip, worst_port, worst_peak,"
	  " worst_capacity, state_established, state_time_wait, time_wait_peak"
	  " FROM hist_gateway WHERE public_ip = ?4 AND proto = ?5 AND"
	  " tier = ?3 AND ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms" },
	{ "series_1d_top_hosts", "/api/v1/series?public_ip=&proto=&from=&to=",
	  HG_DAY_MS,
	  "SELECT ip, max(mappings_peak) AS peak, sum(new_mappings) AS new,"
	  " sum(span_ms) AS span FROM hist_host WHERE public_ip = ?4 AND"
	  " proto = ?5 AND tier = ?3 AND ts_ms >= ?1 AND ts_ms < ?2"
	  " GROUP BY ip ORDER BY peak DESC LIMIT 20" },
	{ "host_7d", "/api/v1/hosts/{ip}?from=&to=", 7 * HG_DAY_MS,
	  "SELECT public_ip, proto, ts_ms, span_ms, mappings, mappings_peak,"
	  " ports_in_use, new_mappings FROM hist_host WHERE ip = ?6 AND"
	  " tier = ?3 AND ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms" },
	{ "host_1d_minute", "/api/v1/hosts/{ip}?from=&to=", HG_DAY_MS,
	  "SELECT public_ip, proto, ts_ms, span_ms, mappings, mappings_peak,"
	  " ports_in_use, new_mappings FROM hist_host WHERE ip = ?6 AND"
	  " tier = ?3 AND ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms" },
	{ "incidents_30d", "/api/v1/incidents?from=&to=", 30 * HG_DAY_MS,
	  "SELECT id, kind, severity, public_ip, proto, zone, dest_ip,"
	  " dest_port, capacity, opened_ms, closed_ms, peak_ms, peak_mappings,"
	  " insert_failed, drop_count, early_drop FROM incident WHERE"
	  " opened_ms < ?2 AND (closed_ms IS NULL OR closed_ms >= ?1)"
	  " ORDER BY opened_ms" },
};

#define HG_NQUERIES (sizeof(hg_queries) / sizeof(hg_queries[0]))

struct hg_qresult {
	double p50_ms, p99_ms, max_ms, rows_avg;
};

/* The finest tier still holding the whole of [from, to) (now: the newest
 * period), the API's choice of resolution, capped by the range: a range
 * over 6 hours gets minutes, over 3 days hours. */
static int hg_tier_for(const struct store_history_config *c, int64_t now,
		       int64_t from, int64_t range)
{
	int t = range > 3 * HG_DAY_MS ? 2 : range > 6 * 3600000LL ? 1 : 0;

	while (t < 2 && from < now - c->keep_ms[t])
		t++;
	return t;
}

static void hg_run_queries(sqlite3 *db, const struct hg_model *m,
			   int64_t t0, int64_t now, unsigned n,
			   struct hg_qresult *out)
{
	struct store_history_config c;
	double *ms = calloc(n ? n : 1, sizeof(double));

	store_history_defaults(&c);
	if (!ms)
		hg_fail("memory");
	for (size_t q = 0; q < HG_NQUERIES; q++) {
		const struct hg_query *hq = &hg_queries[q];
		sqlite3_stmt *s;
		long long rows = 0;

		if (sqlite3_prepare_v2(db, hq->sql, -1, &s, NULL) != SQLITE_OK) {
			fprintf(stderr, "histgen: %s: %s\n", hq->name,
				sqlite3_errmsg(db));
			exit(1);
		}
		for (unsigned i = 0; i < n; i++) {
			struct hg_params p;
			const struct hg_pair *pr = &m->pair[hg_rand() % m->n_pair];
			int64_t span = now - t0 - hq->range_ms;
			double w0;

			memset(&p, 0, sizeof(p));
			if (!strcmp(hq->name, "incidents_30d")) {
				p.from = now - hq->range_ms;
			} else if (hq->range_ms) {
				/* a range anywhere in the kept history */
				p.from = t0 + (span > 0 ? (int64_t)(hg_unif() *
								   span) : 0);
			} else {
				p.from = t0 + (int64_t)(hg_unif() * (now - t0));
			}
			p.to = p.from + hq->range_ms;
			p.at = p.from;
			p.tier = hg_tier_for(&c, now, p.from, hq->range_ms);
			ns_addr_format(&m->gw[pr->gw].ip, p.public_ip);
			snprintf(p.proto, sizeof(p.proto), "%s",
				 ns_proto_name(m->gw[pr->gw].proto));
			ns_addr_format(&pr->ip, p.host);
			sqlite3_reset(s);
			sqlite3_bind_int64(s, 1, p.from);
			sqlite3_bind_int64(s, 2, p.to);
			sqlite3_bind_int(s, 3, p.tier);
			sqlite3_bind_text(s, 4, p.public_ip, -1, SQLITE_STATIC);
			sqlite3_bind_text(s, 5, p.proto, -1, SQLITE_STATIC);
			sqlite3_bind_text(s, 6, p.host, -1, SQLITE_STATIC);
			w0 = hg_mono_s();
			while (sqlite3_step(s) == SQLITE_ROW)
				rows++;
			ms[i] = (hg_mono_s() - w0) * 1000;
		}
		sqlite3_finalize(s);
		out[q].rows_avg = n ? (double)rows / n : 0;
		out[q].p50_ms = hg_quantile(ms, n, 0.5);
		out[q].p99_ms = hg_quantile(ms, n, 0.99);
		out[q].max_ms = n ? ms[n - 1] : 0;
	}
	free(ms);
}

/* ---- main ---- */

static void hg_usage(FILE *f)
{
	fprintf(f, "usage: histgen --db FILE [--days N] [--gateways N] "
		   "[--hosts N] [--dests N]\n"
		   "               [--interval S] [--fine-days N] "
		   "[--mid-interval S] [--old-interval S]\n"
		   "               [--seed N] [--max-size MIB] [--queries N] "
		   "[--no-write]\n               "
		   "[--no-live] [--json] [--continue MINUTES]\n");
}

static const char *const hg_tables[] = { "hist_gateway", "hist_host",
					 "hist_dest", "hist_kernel" };

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "days", required_argument, NULL, 'D' },
		{ "gateways", required_argument, NULL, 'g' },
		{ "hosts", required_argument, NULL, 'H' },
		{ "dests", required_argument, NULL, 'k' },
		{ "interval", required_argument, NULL, 'i' },
		{ "fine-days", required_argument, NULL, 'f' },
		{ "mid-interval", required_argument, NULL, 'm' },
		{ "old-interval", required_argument, NULL, 'o' },
		{ "seed", required_argument, NULL, 's' },
		{ "max-size", required_argument, NULL, 'M' },
		{ "queries", required_argument, NULL, 'q' },
		{ "no-write", no_argument, NULL, 'W' },
		{ "no-live", no_argument, NULL, 'L' },
		{ "continue", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *db_path = NULL;
	double days = 30, fine_days = 1;
	unsigned gateways = 64, hosts = 5000, dests = 300, interval = 5;
	unsigned mid_interval = 60, old_interval = 3600, queries = 0;
	int json = 0, no_write = 0, no_live = 0, c;
	unsigned long long seed = 1;
	double max_mib = 0; /* 0: the default (1 GiB) */
	double cont_min = 0; /* --continue: minutes on top of the file */
	struct store_history_config cfg;
	struct hg_model m;
	struct hg_phase ph[3];
	size_t n_ph = 0;
	struct hg_qresult qr[HG_NQUERIES];
	int64_t now, t0, t;
	sqlite3 *db;
	long long rows[4][STORE_TIERS], bytes[6], incidents, incidents_by[3];
	long long fsize, wsize;
	double held_days[STORE_TIERS], periods[STORE_TIERS];
	double projected = 0, proj_table[4];

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd': db_path = optarg; break;
		case 'D': days = atof(optarg); break;
		case 'g': gateways = (unsigned)atoi(optarg); break;
		case 'H': hosts = (unsigned)atoi(optarg); break;
		case 'k': dests = (unsigned)atoi(optarg); break;
		case 'i': interval = (unsigned)atoi(optarg); break;
		case 'f': fine_days = atof(optarg); break;
		case 'm': mid_interval = (unsigned)atoi(optarg); break;
		case 'o': old_interval = (unsigned)atoi(optarg); break;
		case 's': seed = strtoull(optarg, NULL, 10); break;
		case 'M': max_mib = atof(optarg); break;
		case 'q': queries = (unsigned)atoi(optarg); break;
		case 'W': no_write = 1; break;
		case 'L': no_live = 1; break;
		case 'C': cont_min = atof(optarg); break;
		case 'j': json = 1; break;
		case 'h': hg_usage(stdout); return 0;
		default: hg_usage(stderr); return 2;
		}
	}
	if (!db_path || days <= 0 || gateways < 1 || hosts < 1 || dests < 1 ||
	    interval < 1 || mid_interval < interval ||
	    old_interval < mid_interval || fine_days < 0 || optind != argc) {
		hg_usage(stderr);
		return 2;
	}
	log_init("histgen", NS_LOG_WARN);
	hg_rng ^= seed * 0x9E3779B97F4A7C15ULL;
	if (!hg_rng)
		hg_rng = 1;
	hg_model_init(&m, gateways, hosts, dests);
	store_history_defaults(&cfg);
	if (max_mib > 0)
		cfg.max_bytes = (uint64_t)(max_mib * 1048576);
	/* the periods end now: the history is as old as it would be */
	now = ns_now_ms() / 1000 * 1000;
	now -= now % ((int64_t)interval * 1000);
	t0 = now - (int64_t)(days * HG_DAY_MS);
	memset(ph, 0, sizeof(ph));
	if (!no_write) {
		struct store *st;
		struct store_batch b;
		struct store_status s0;
		double fine = fine_days < days ? fine_days : days;
		double mid = (double)cfg.keep_ms[1] / HG_DAY_MS - fine;
		int first = 1;

		if (mid > days - fine)
			mid = days - fine;
		if (mid < 0 || mid_interval == interval)
			mid = mid < 0 ? 0 : mid;
		if (cont_min > 0) {
			/* writes at --interval on top of an existing file,
			 * from its last period on: the steady state at its
			 * size (a new run: what the last left open closes) */
			sqlite3 *q;

			if (sqlite3_open_v2(db_path, &q, SQLITE_OPEN_READONLY,
					    NULL) != SQLITE_OK)
				hg_fail(db_path);
			t0 = hg_q_int(q, "SELECT max(ts_ms + span_ms) FROM "
					 "hist_kernel WHERE tier = 0");
			sqlite3_close(q);
			if (t0 <= 0)
				hg_fail("--continue: no raw period in the file");
			fine = cont_min / 1440.0;
			mid = 0;
			days = fine;
		} else {
			remove(db_path);
		}
		if (cont_min <= 0) {
			char p[4096];

			snprintf(p, sizeof(p), "%s-wal", db_path);
			remove(p);
			snprintf(p, sizeof(p), "%s-shm", db_path);
			remove(p);
		}
		if (!(st = store_open(db_path, STORE_READ_WRITE)))
			hg_fail(db_path);
		if (store_history_configure(st, &cfg) < 0)
			hg_fail("configure");
		store_status_init(&s0);
		s0.started_ms = t0;
		s0.interval_s = interval;
		if (store_begin_run(st, &s0) < 0)
			hg_fail("begin run");
		store_batch_init(&b);
		t = t0;
		if (days - fine - mid > 0) {
			ph[n_ph].name = "old";
			ph[n_ph].interval = old_interval;
			ph[n_ph++].days = days - fine - mid;
		}
		if (mid > 0) {
			ph[n_ph].name = "mid";
			ph[n_ph].interval = mid_interval;
			ph[n_ph].lists_hourly = fine * HG_DAY_MS >=
				(double)cfg.keep_top_minute_ms;
			ph[n_ph++].days = mid;
		}
		if (fine > 0) {
			ph[n_ph].name = "fine";
			ph[n_ph].interval = interval;
			ph[n_ph++].days = fine;
		}
		for (size_t i = 0; i < n_ph; i++) {
			if (!json)
				fprintf(stderr, "histgen: %s: %.2f days of %u s "
					"periods\n", ph[i].name, ph[i].days,
					ph[i].interval);
			hg_run_phase(st, &m, &b, &ph[i], t0, &t, &first,
				     interval, no_live);
		}
		store_batch_free(&b);
		store_close(st);
	}
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK) {
		fprintf(stderr, "histgen: %s: %s\n", db_path,
			sqlite3_errmsg(db));
		return 1;
	}
	sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
	fsize = hg_file_size(db_path, "");
	wsize = hg_file_size(db_path, "-wal");
	for (size_t i = 0; i < 4; i++)
		for (int tier = 0; tier < STORE_TIERS; tier++) {
			char sql[160];

			snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE "
				 "tier = %d", hg_tables[i], tier);
			rows[i][tier] = hg_q_int(db, sql);
		}
	for (size_t i = 0; i < 4; i++) {
		char sql[200];

		snprintf(sql, sizeof(sql), "SELECT sum(pgsize) FROM dbstat "
			 "WHERE name = '%s'", hg_tables[i]);
		bytes[i] = hg_q_int(db, sql);
	}
	bytes[4] = hg_q_int(db, "SELECT sum(pgsize) FROM dbstat WHERE name IN "
				"('hist_gateway_time', 'hist_host_ip')");
	bytes[5] = hg_q_int(db, "SELECT sum(pgsize) FROM dbstat WHERE name IN "
				"('incident', 'incident_time', 'incident_open')");
	if (no_write) {
		/* an existing database: its newest period ends "now" */
		long long end = hg_q_int(db, "SELECT max(ts_ms + span_ms) FROM "
					 "hist_kernel WHERE tier = 0");

		if (end > 0)
			now = end;
	}
	/* what each tier holds (periods, days back), and the size the same
	 * rows would take with every tier at its full age (no size cap):
	 * rows per period x periods kept x bytes per row, indexes counted
	 * with their table */
	for (int tier = 0; tier < STORE_TIERS; tier++) {
		char sql[200];
		long long lo, hi;
		double len = tier == 0 ? interval : tier == 1 ? 60 : 3600;
		double keep_s = (double)cfg.keep_ms[tier] / 1000;

		snprintf(sql, sizeof(sql), "SELECT count(*) FROM hist_kernel "
			 "WHERE tier = %d", tier);
		periods[tier] = (double)hg_q_int(db, sql);
		snprintf(sql, sizeof(sql), "SELECT min(ts_ms) FROM hist_kernel "
			 "WHERE tier = %d", tier);
		lo = hg_q_int(db, sql);
		snprintf(sql, sizeof(sql), "SELECT max(ts_ms) FROM hist_kernel "
			 "WHERE tier = %d", tier);
		hi = hg_q_int(db, sql);
		held_days[tier] = periods[tier] > 0 ?
			(double)(now - lo) / HG_DAY_MS : 0;
		(void)hi;
		if (keep_s > days * 86400)
			keep_s = days * 86400;
		periods[tier] = periods[tier] > 0 ? keep_s / len /
			periods[tier] : 0; /* now: scale to the full age */
	}
	for (size_t i = 0; i < 4; i++) {
		long long n = rows[i][0] + rows[i][1] + rows[i][2];
		double per = n ? (double)(bytes[i] + (i == 0 ? hg_q_int(db,
			"SELECT sum(pgsize) FROM dbstat WHERE name = "
			"'hist_gateway_time'") : i == 1 ? hg_q_int(db,
			"SELECT sum(pgsize) FROM dbstat WHERE name = "
			"'hist_host_ip'") : 0)) / (double)n : 0;

		proj_table[i] = 0;
		for (int tier = 0; tier < STORE_TIERS; tier++)
			proj_table[i] += (double)rows[i][tier] * periods[tier] *
					 per;
		projected += proj_table[i];
	}
	incidents = hg_q_int(db, "SELECT count(*) FROM incident");
	incidents_by[0] = hg_q_int(db, "SELECT count(*) FROM incident WHERE kind = 'gateway'");
	incidents_by[1] = hg_q_int(db, "SELECT count(*) FROM incident WHERE kind = 'bucket'");
	incidents_by[2] = hg_q_int(db, "SELECT count(*) FROM incident WHERE kind = 'kernel'");
	{
		/* the history actually held: the oldest hour row */
		long long oldest = hg_q_int(db, "SELECT min(ts_ms) FROM "
					    "hist_kernel");

		if (oldest > 0)
			t0 = oldest;
	}
	if (queries)
		hg_run_queries(db, &m, t0, now, queries, qr);
	sqlite3_close(db);

	if (json) {
		double steady = 0;

		printf("{\"days\": %g, \"gateways\": %u, \"hosts\": %u, "
		       "\"host_pairs\": %zu, \"buckets\": %zu, \"interval\": %u, "
		       "\"live\": %s, \"file_bytes\": %lld, \"wal_bytes\": %lld, "
		       "\"db_bytes\": %lld",
		       days, gateways, hosts, m.n_pair, m.n_bkt, interval,
		       no_live ? "false" : "true", fsize, wsize, fsize + wsize);
		for (size_t i = 0; i < 4; i++) {
			printf(", \"%s_rows\": [%lld, %lld, %lld], \"%s_bytes\": %lld",
			       hg_tables[i], rows[i][0], rows[i][1], rows[i][2],
			       hg_tables[i], bytes[i]);
		}
		printf(", \"held_days\": [%.2f, %.2f, %.2f], "
		       "\"projected_bytes\": %.0f, \"projected_table_bytes\": "
		       "[%.0f, %.0f, %.0f, %.0f]", held_days[0], held_days[1],
		       held_days[2], projected, proj_table[0], proj_table[1],
		       proj_table[2], proj_table[3]);
		printf(", \"index_bytes\": %lld, \"incident_bytes\": %lld, "
		       "\"incidents\": %lld, \"incidents_gateway\": %lld, "
		       "\"incidents_bucket\": %lld, \"incidents_kernel\": %lld",
		       bytes[4], bytes[5], incidents, incidents_by[0],
		       incidents_by[1], incidents_by[2]);
		if (n_ph) {
			double cpu = 0;
			size_t w = 0;

			for (size_t i = 0; i < n_ph; i++) {
				printf(", \"%s_interval\": %u, \"%s_days\": %g, "
				       "\"%s_writes\": %zu, \"%s_cpu_s\": %.3f, "
				       "\"%s_wall_s\": %.1f, "
				       "\"%s_cpu_ms_per_write\": %.3f, "
				       "\"%s_p99_cpu_ms\": %.3f, "
				       "\"%s_max_cpu_ms\": %.3f",
				       ph[i].name, ph[i].interval, ph[i].name,
				       ph[i].days, ph[i].name, ph[i].writes,
				       ph[i].name, ph[i].cpu_s, ph[i].name,
				       ph[i].wall_s, ph[i].name,
				       ph[i].writes ? 1000 * ph[i].cpu_s /
							     ph[i].writes : 0,
				       ph[i].name, 1000 * ph[i].p99_cpu_s,
				       ph[i].name, 1000 * ph[i].max_cpu_s);
				cpu += ph[i].cpu_s;
				w += ph[i].writes;
			}
			steady = ph[n_ph - 1].writes ? ph[n_ph - 1].cpu_s /
				 ph[n_ph - 1].writes : 0;
			printf(", \"writes\": %zu, \"cpu_s\": %.3f, "
			       "\"cpu_ms_per_write\": %.3f, "
			       "\"steady_cpu_ms_per_write\": %.3f, "
			       "\"steady_core_pct\": %.3f",
			       w, cpu, w ? 1000 * cpu / w : 0, 1000 * steady,
			       100 * steady / ph[n_ph - 1].interval);
		}
		if (queries) {
			printf(", \"queries\": %u", queries);
			for (size_t q = 0; q < HG_NQUERIES; q++)
				printf(", \"q_%s_p50_ms\": %.3f, \"q_%s_p99_ms\": "
				       "%.3f, \"q_%s_max_ms\": %.3f, "
				       "\"q_%s_rows\": %.1f",
				       hg_queries[q].name, qr[q].p50_ms,
				       hg_queries[q].name, qr[q].p99_ms,
				       hg_queries[q].name, qr[q].max_ms,
				       hg_queries[q].name, qr[q].rows_avg);
		}
		printf("}\n");
		return 0;
	}
	printf("model: %u public IPs (x tcp, udp: %zu gateways), %u hosts "
	       "(%zu host pairs), %zu buckets\n", gateways, m.n_gw, hosts,
	       m.n_pair, m.n_bkt);
	printf("database: %lld bytes (file %lld + wal %lld) = %.1f MiB\n",
	       fsize + wsize, fsize, wsize, (fsize + wsize) / 1048576.0);
	for (size_t i = 0; i < 4; i++)
		printf("  %-13s rows raw %lld, minute %lld, hour %lld; %lld "
		       "bytes, %.1f B/row\n", hg_tables[i], rows[i][0],
		       rows[i][1], rows[i][2], bytes[i],
		       (double)bytes[i] / (double)(rows[i][0] + rows[i][1] +
						  rows[i][2] + !(rows[i][0] +
								 rows[i][1] +
								 rows[i][2])));
	printf("  indexes (hist_gateway_time, hist_host_ip) %lld bytes; "
	       "incidents %lld (%lld gateway, %lld bucket, %lld kernel), "
	       "%lld bytes\n", bytes[4], incidents, incidents_by[0],
	       incidents_by[1], incidents_by[2], bytes[5]);
	printf("held: raw %.2f days, minutes %.2f days, hours %.2f days\n",
	       held_days[0], held_days[1], held_days[2]);
	printf("projected with every tier at its full age and no size cap: "
	       "%.1f MiB (gateway %.1f, host %.1f, dest %.1f, kernel %.1f, "
	       "indexes included)\n", projected / 1048576,
	       proj_table[0] / 1048576, proj_table[1] / 1048576,
	       proj_table[2] / 1048576, proj_table[3] / 1048576);
	for (size_t i = 0; i < n_ph; i++)
		printf("writes %-4s %7zu periods of %4u s over %5.2f days: "
		       "CPU %.1f s, %.3f ms/write (p99 %.3f, max %.3f), wall "
		       "%.0f s\n", ph[i].name, ph[i].writes, ph[i].interval,
		       ph[i].days, ph[i].cpu_s,
		       ph[i].writes ? 1000 * ph[i].cpu_s / ph[i].writes : 0,
		       1000 * ph[i].p99_cpu_s, 1000 * ph[i].max_cpu_s,
		       ph[i].wall_s);
	if (n_ph) {
		const struct hg_phase *l = &ph[n_ph - 1];
		double per = l->writes ? l->cpu_s / l->writes : 0;

		printf("steady state (last phase): %.3f ms CPU per %u s "
		       "interval = %.2f%% of one core\n", 1000 * per,
		       l->interval, 100 * per / l->interval);
	}
	for (size_t q = 0; queries && q < HG_NQUERIES; q++)
		printf("query %-20s p50 %8.3f ms  p99 %8.3f ms  max %8.3f ms  "
		       "(%.0f rows; %s)\n", hg_queries[q].name, qr[q].p50_ms,
		       qr[q].p99_ms, qr[q].max_ms, qr[q].rows_avg,
		       hg_queries[q].endpoint);
	return 0;
}
