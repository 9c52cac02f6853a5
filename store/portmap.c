/*
 * portmap.c - one public IP's port occupancy from the mapping log
 * (store_json_ports(), store.h): who holds which of its ports, live (the
 * open blocks: exactly the mappings open at the log's last write) or at a
 * past moment (every block whose time range holds it), for the
 * dashboard's port map.
 *
 * The blocks are decoded once each into a flat list of (port, host,
 * bucket) items; hosts and destination buckets are interned through
 * seeded hash indexes; radix sorts of packed keys then give each host's
 * distinct ports and the runs (consecutive ports of one host toward one
 * bucket).  The hosts and buckets are printed here (numbers and
 * canonical addresses only) and the document is assembled, validated
 * and given its uncertainty by SQLite's JSON functions, as every other
 * answer; only the runs, digits and punctuation, are spliced in here
 * (at 60,000 ports, parsing and printing them again took SQLite twice
 * as long as everything else).
 */
#include "store/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <netinet/in.h>

#define PM_OPEN_T_LAST INT64_MAX /* t_last of an open block (maplog.c) */
#define PM_PORTS 65536

/* ---- a growing text buffer ---- */

struct pm_buf {
	char *p;
	size_t n, cap;
	int failed;
};

static void pm_printf(struct pm_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void pm_printf(struct pm_buf *b, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (b->failed)
		return;
	for (;;) {
		size_t room = b->cap - b->n;

		va_start(ap, fmt);
		k = vsnprintf(b->p ? b->p + b->n : NULL, room, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->failed = 1;
			return;
		}
		if ((size_t)k < room) {
			b->n += (size_t)k;
			return;
		}
		size_t ncap = b->cap ? b->cap * 2 : 4096;
		char *np;

		while (ncap < b->n + (size_t)k + 1)
			ncap *= 2;
		if (!(np = realloc(b->p, ncap))) {
			b->failed = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

/* ---- interning hosts and buckets ---- */

/* A host: internal address and kind (a local connection's host is the
 * public IP itself). */
struct pm_host {
	uint8_t ip[16];
	uint8_t kind; /* enum ns_kind */
	uint32_t ports, mappings;
	uint32_t rank; /* its index in the answer */
};

/* A destination bucket (the public IP and proto are the answer's). */
struct pm_dest {
	uint8_t ip[16];
	uint16_t port, zone;
	uint32_t mappings;
	uint32_t lo, hi; /* the widest port range its mappings draw from */
	uint32_t rank;
};

/* One mapping held at the moment, with its TCP state then (a kernel
 * number, PM_STATE_NONE when not known or not TCP). */
struct pm_item {
	uint32_t host, dest;
	uint16_t port;
	uint8_t state;
};

#define PM_STATE_NONE 0xf

/* Open addressing over indexes into a key array (slot value index + 1,
 * 0 empty); keys are compared whole. */
struct pm_index {
	uint32_t *slot;
	size_t mask, n;
	uint64_t seed;
};

static uint64_t pm_hash(uint64_t seed, const uint8_t *key, size_t len)
{
	uint64_t h = seed ^ (len * 0x9e3779b97f4a7c15ULL);

	for (size_t i = 0; i < len; i += 8) {
		uint64_t w = 0;

		memcpy(&w, key + i, len - i < 8 ? len - i : 8);
		h ^= w;
		h *= 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	h *= 0xc4ceb9fe1a85ec53ULL;
	return h ^ (h >> 29);
}

struct pm_state {
	struct pm_host *hosts;
	size_t n_hosts, cap_hosts;
	struct pm_dest *dests;
	size_t n_dests, cap_dests;
	struct pm_item *items;
	size_t n_items, cap_items;
	struct pm_index hidx, didx;
	uint64_t start_unknown; /* mappings shown first seen by a dump */
	/* TCP: mappings in each state at the moment, and those whose state
	 * the log does not know then */
	uint32_t states[NS_TCP_STATES], state_unknown;
	/* a JSON array: end ms of the shown mappings whose end was not
	 * reported (at= only) */
	struct pm_buf ends;
	size_t n_ends;
	uint32_t local_lo, local_hi; /* ip_local_port_range */
};

static int pm_index_grow(struct pm_index *x, const void *keys, size_t stride,
			 size_t keylen)
{
	size_t ncap = x->slot ? (x->mask + 1) * 2 : 1024;
	uint32_t *ns;

	if (!(ns = calloc(ncap, sizeof(*ns)))) {
		log_warn("store: port map: an index of %zu slots", ncap);
		return -1;
	}
	for (size_t i = 0; x->slot && i <= x->mask; i++) {
		uint32_t v = x->slot[i];
		size_t j;

		if (!v)
			continue;
		j = pm_hash(x->seed, (const uint8_t *)keys + (v - 1) * stride,
			    keylen) & (ncap - 1);
		while (ns[j])
			j = (j + 1) & (ncap - 1);
		ns[j] = v;
	}
	free(x->slot);
	x->slot = ns;
	x->mask = ncap - 1;
	return 0;
}

/* The index of key (keylen bytes at the start of an element of stride
 * bytes) in *arr, appended (zeroed, key copied) when new.  Returns it,
 * or -1 with ENOMEM. */
static int64_t pm_intern(struct pm_index *x, void *arr, size_t *n,
			 size_t *cap, size_t stride, const void *key,
			 size_t keylen)
{
	char **a = arr;
	size_t i;

	if (!x->slot || (x->n + 1) * 2 > x->mask + 1) {
		if (pm_index_grow(x, *a, stride, keylen) < 0)
			return -1;
	}
	for (i = pm_hash(x->seed, key, keylen) & x->mask; x->slot[i];
	     i = (i + 1) & x->mask) {
		uint32_t v = x->slot[i] - 1;

		if (!memcmp(*a + (size_t)v * stride, key, keylen))
			return v;
	}
	if (store_grow(arr, *n, cap, stride) < 0)
		return -1;
	memset(*a + *n * stride, 0, stride);
	memcpy(*a + *n * stride, key, keylen);
	x->slot[i] = (uint32_t)(*n + 1);
	x->n++;
	return (int64_t)(*n)++;
}

/* The port range a mapping was drawn from (as the collector's buckets
 * count capacity: collector/classify.c, tracker.c). */
static void pm_range(const struct pm_state *ps, uint8_t proto,
		     const struct store_maplog_entry *e, uint32_t *lo,
		     uint32_t *hi)
{
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		*lo = 0;
		*hi = 65535;
	} else if (e->flags & STORE_MAPLOG_LOCAL) {
		*lo = ps->local_lo;
		*hi = ps->local_hi;
	} else if (e->host_port < 512) {
		*lo = 1;
		*hi = 511;
	} else if (e->host_port < 1024) {
		*lo = 600;
		*hi = 1023;
	} else {
		*lo = 1024;
		*hi = 65535;
	}
}

/* Adds one mapping held at the moment (at_ms). */
static int pm_add(struct pm_state *ps, uint8_t proto, unsigned alen,
		  const struct store_maplog_entry *e, int live, int64_t at_ms)
{
	struct store_maplog_state sa;
	struct { uint8_t ip[16]; uint8_t kind; } hk;
	struct { uint8_t ip[16]; uint16_t port, zone; } dk;
	struct pm_item *it;
	struct pm_dest *d;
	int64_t h, di;
	uint32_t lo, hi;

	memset(&hk, 0, sizeof(hk));
	memcpy(hk.ip, e->host_ip, alen);
	hk.kind = e->flags & STORE_MAPLOG_LOCAL ? NS_KIND_LOCAL : NS_KIND_NAT;
	memset(&dk, 0, sizeof(dk));
	memcpy(dk.ip, e->dest_ip, alen);
	dk.port = e->dest_port;
	dk.zone = e->zone;
	if ((h = pm_intern(&ps->hidx, &ps->hosts, &ps->n_hosts,
			   &ps->cap_hosts, sizeof(*ps->hosts), &hk,
			   17)) < 0 ||
	    (di = pm_intern(&ps->didx, &ps->dests, &ps->n_dests,
			    &ps->cap_dests, sizeof(*ps->dests), &dk,
			    20)) < 0 ||
	    store_grow(&ps->items, ps->n_items, &ps->cap_items,
		       sizeof(*ps->items)) < 0)
		return -1;
	it = &ps->items[ps->n_items++];
	it->host = (uint32_t)h;
	it->dest = (uint32_t)di;
	it->port = e->public_port;
	it->state = PM_STATE_NONE;
	if (proto == IPPROTO_TCP) {
		store_maplog_state_at(e, proto, at_ms, &sa);
		if (sa.state < NS_TCP_STATES) {
			it->state = sa.state;
			ps->states[sa.state]++;
		} else {
			ps->state_unknown++;
		}
	}
	ps->hosts[h].mappings++;
	d = &ps->dests[di];
	d->mappings++;
	pm_range(ps, proto, e, &lo, &hi);
	if (!d->hi || hi - lo > d->hi - d->lo) {
		d->lo = lo;
		d->hi = hi;
	}
	if (e->flags & STORE_MAPLOG_START_UNKNOWN)
		ps->start_unknown++;
	if (!live && e->end_ms && (e->flags & STORE_MAPLOG_END_UNCERTAIN)) {
		pm_printf(&ps->ends, "%s%lld", ps->n_ends ? "," : "",
			  (long long)e->end_ms);
		ps->n_ends++;
	}
	return 0;
}

static void pm_free(struct pm_state *ps)
{
	free(ps->hosts);
	free(ps->dests);
	free(ps->items);
	free(ps->hidx.slot);
	free(ps->didx.slot);
	free(ps->ends.p);
}

/* ---- ordering ---- */

static int pm_host_cmp(const void *a, const void *b, void *ctx)
{
	const struct pm_host *hosts = ctx;
	const struct pm_host *x = &hosts[*(const uint32_t *)a];
	const struct pm_host *y = &hosts[*(const uint32_t *)b];
	int c;

	if (x->ports != y->ports)
		return x->ports > y->ports ? -1 : 1;
	if (x->mappings != y->mappings)
		return x->mappings > y->mappings ? -1 : 1;
	if ((c = memcmp(x->ip, y->ip, 16)))
		return c;
	return (int)x->kind - (int)y->kind;
}

static int pm_dest_cmp(const void *a, const void *b, void *ctx)
{
	const struct pm_dest *dests = ctx;
	const struct pm_dest *x = &dests[*(const uint32_t *)a];
	const struct pm_dest *y = &dests[*(const uint32_t *)b];
	int c;

	if (x->mappings != y->mappings)
		return x->mappings > y->mappings ? -1 : 1;
	if ((c = memcmp(x->ip, y->ip, 16)))
		return c;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	return (int)x->zone - (int)y->zone;
}

/* A sort key and what travels with it. */
struct pm_kv {
	uint64_t k;
	uint32_t v;
};

/* Sorts v[0..n) by key (LSD radix, 11 bits a pass, only the passes the
 * largest key needs), using tmp (n elements) as scratch. */
static void pm_radix(struct pm_kv *v, struct pm_kv *tmp, size_t n)
{
	struct pm_kv *src = v, *dst = tmp, *t;
	uint64_t max = 0;
	size_t count[2048];

	for (size_t i = 0; i < n; i++)
		if (v[i].k > max)
			max = v[i].k;
	for (unsigned shift = 0; shift < 64 && (max >> shift); shift += 11) {
		size_t sum = 0;

		memset(count, 0, sizeof(count));
		for (size_t i = 0; i < n; i++)
			count[(src[i].k >> shift) & 2047]++;
		for (size_t d = 0; d < 2048; d++) {
			size_t c = count[d];

			count[d] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			dst[count[(src[i].k >> shift) & 2047]++] = src[i];
		t = src;
		src = dst;
		dst = t;
	}
	if (src != v)
		memcpy(v, src, n * sizeof(*v));
}

/* Ranks hosts (most ports first) and buckets (most mappings first):
 * fills each one's rank.  Returns 0, or -1 with ENOMEM. */
static int pm_rank(struct pm_state *ps, uint32_t **horder, uint32_t **dorder)
{
	*horder = malloc((ps->n_hosts + 1) * sizeof(**horder));
	*dorder = malloc((ps->n_dests + 1) * sizeof(**dorder));
	if (!*horder || !*dorder) {
		log_warn("store: port map");
		return -1;
	}
	for (size_t i = 0; i < ps->n_hosts; i++)
		(*horder)[i] = (uint32_t)i;
	for (size_t i = 0; i < ps->n_dests; i++)
		(*dorder)[i] = (uint32_t)i;
	qsort_r(*horder, ps->n_hosts, sizeof(**horder), pm_host_cmp, ps->hosts);
	qsort_r(*dorder, ps->n_dests, sizeof(**dorder), pm_dest_cmp, ps->dests);
	for (size_t i = 0; i < ps->n_hosts; i++)
		ps->hosts[(*horder)[i]].rank = (uint32_t)i;
	for (size_t i = 0; i < ps->n_dests; i++)
		ps->dests[(*dorder)[i]].rank = (uint32_t)i;
	return 0;
}

/* Appends "[a,b,c,d]", or "[a,b,c,d,s]" with a state s (a number, or
 * null for PM_STATE_NONE) when with_state, with a comma before all but
 * the first, without printf: the runs are most of a big answer. */
static void pm_put_run(struct pm_buf *b, int first, const uint32_t x[4],
		       int with_state, unsigned state)
{
	char tmp[64], *p = tmp;

	if (b->failed)
		return;
	if (b->cap - b->n < sizeof(tmp)) {
		size_t ncap = b->cap ? b->cap * 2 : 4096;
		char *np = realloc(b->p, ncap);

		if (!np) {
			b->failed = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	if (!first)
		*p++ = ',';
	*p++ = '[';
	for (int i = 0; i < 4; i++) {
		char d[10];
		int k = 0;
		uint32_t v = x[i];

		do {
			d[k++] = (char)('0' + v % 10);
			v /= 10;
		} while (v);
		while (k)
			*p++ = d[--k];
		*p++ = i < 3 || with_state ? ',' : ']';
	}
	if (with_state) {
		if (state < NS_TCP_STATES) {
			*p++ = (char)('0' + state); /* (one digit) */
		} else {
			memcpy(p, "null", 4);
			p += 4;
		}
		*p++ = ']';
	}
	memcpy(b->p + b->n, tmp, (size_t)(p - tmp));
	b->n += (size_t)(p - tmp);
	b->p[b->n] = '\0';
}

/* The figures of the whole IP, the hosts' ports, and the JSON arrays of
 * hosts, destinations and runs (in their answer order). */
struct pm_out {
	uint32_t ports_in_use, shared_ports, multi_host_ports;
	struct pm_buf hosts, dests, runs;
	struct pm_buf names, counts; /* TCP: "tcp_states", "states" */
};

/* Key bits: a host or bucket index takes at most 32 bits, but there are
 * fewer of them than items (at most a few million), so 24 bits of each
 * suffice below PM_INDEX_MAX. */
#define PM_INDEX_BITS 24
#define PM_INDEX_MAX (1u << PM_INDEX_BITS)

/* A run's count and its state travel in one pm_kv.v. */
#define PM_RUN_COUNT(v) ((v) & 0xffffff)
#define PM_RUN_STATE(v) ((v) >> 24)

static int pm_build(struct pm_state *ps, unsigned family, uint8_t proto,
		    struct pm_out *o)
{
	uint16_t *per_port = NULL;    /* mappings on each port (saturating) */
	uint32_t *port_host = NULL;   /* the first host seen on it, + 1 */
	uint8_t *multi = NULL;	      /* more than one host on it */
	uint32_t *horder = NULL, *dorder = NULL;
	struct pm_kv *kv = NULL, *tmp = NULL, *runs = NULL;
	size_t n = ps->n_items, n_runs = 0;
	struct ns_addr a = { .family = (uint8_t)family };
	char text[NS_ADDR_STRLEN];
	int ret = -1;

	if (ps->n_hosts >= PM_INDEX_MAX || ps->n_dests >= PM_INDEX_MAX) {
		errno = E2BIG;
		log_warnx("store: port map: %zu hosts and %zu buckets on one "
			  "public IP", ps->n_hosts, ps->n_dests);
		return -1;
	}
	per_port = calloc(PM_PORTS, sizeof(*per_port));
	port_host = calloc(PM_PORTS, sizeof(*port_host));
	multi = calloc(PM_PORTS, 1);
	kv = malloc((n + 1) * sizeof(*kv));
	tmp = malloc((n + 1) * sizeof(*tmp));
	runs = malloc((n + 1) * sizeof(*runs));
	if (!per_port || !port_host || !multi || !kv || !tmp || !runs) {
		log_warn("store: port map");
		goto out;
	}
	/* the IP's ports, and each host's distinct ports: items by (host,
	 * port) */
	for (size_t i = 0; i < n; i++) {
		const struct pm_item *it = &ps->items[i];

		if (per_port[it->port] < UINT16_MAX)
			per_port[it->port]++;
		if (per_port[it->port] == 1)
			o->ports_in_use++;
		else if (per_port[it->port] == 2)
			o->shared_ports++;
		if (!port_host[it->port])
			port_host[it->port] = it->host + 1;
		else if (port_host[it->port] != it->host + 1 &&
			 !multi[it->port]) {
			multi[it->port] = 1;
			o->multi_host_ports++;
		}
		kv[i].k = (uint64_t)it->host << 16 | it->port;
		kv[i].v = (uint32_t)i;
	}
	pm_radix(kv, tmp, n);
	for (size_t i = 0; i < n; i++)
		if (i == 0 || kv[i].k != kv[i - 1].k)
			ps->hosts[kv[i].k >> 16].ports++;
	if (pm_rank(ps, &horder, &dorder) < 0)
		goto out;
	/* runs: consecutive ports of one host toward one bucket in one
	 * state, each (port, host, bucket) once; items by (bucket, host,
	 * port) in answer ranks */
	for (size_t i = 0; i < n; i++) {
		const struct pm_item *it = &ps->items[i];

		kv[i].k = (uint64_t)ps->dests[it->dest].rank << 40 |
			  (uint64_t)ps->hosts[it->host].rank << 16 | it->port;
	}
	pm_radix(kv, tmp, n);
	for (size_t i = 0; i < n; i++) {
		uint64_t k = kv[i].k;
		struct pm_kv *r = n_runs ? &runs[n_runs - 1] : NULL;

		uint32_t state = ps->items[kv[i].v].state;

		if (i && k == kv[i - 1].k)
			continue; /* the same port again */
		if (r && k == kv[i - 1].k + 1 && (k & 0xffff) != 0 &&
		    PM_RUN_STATE(r->v) == state) {
			r->v++;
			continue;
		}
		runs[n_runs].k = k;
		runs[n_runs++].v = 1 | state << 24;
	}
	/* runs by (first port, bucket, host) */
	for (size_t i = 0; i < n_runs; i++) {
		uint64_t k = runs[i].k;

		runs[i].k = (k & 0xffff) << 48 | (k >> 40) << 24 |
			    ((k >> 16) & (PM_INDEX_MAX - 1));
	}
	pm_radix(runs, tmp, n_runs);

	pm_printf(&o->hosts, "[");
	for (size_t i = 0; i < ps->n_hosts; i++) {
		const struct pm_host *h = &ps->hosts[horder[i]];

		memcpy(a.bytes, h->ip, 16);
		ns_addr_format(&a, text);
		pm_printf(&o->hosts,
			  "%s{\"ip\":\"%s\",\"kind\":\"%s\",\"ports\":%u,"
			  "\"mappings\":%u}", i ? "," : "", text,
			  h->kind == NS_KIND_LOCAL ? "local" : "nat",
			  h->ports, h->mappings);
	}
	pm_printf(&o->hosts, "]");
	pm_printf(&o->dests, "[");
	for (size_t i = 0; i < ps->n_dests; i++) {
		const struct pm_dest *d = &ps->dests[dorder[i]];

		memcpy(a.bytes, d->ip, 16);
		ns_addr_format(&a, text);
		pm_printf(&o->dests,
			  "%s{\"ip\":\"%s\",\"port\":%u,\"zone\":%u,"
			  "\"mappings\":%u,\"capacity\":%u,\"range\":[%u,%u]}",
			  i ? "," : "", text, d->port, d->zone, d->mappings,
			  d->hi - d->lo + 1, d->lo, d->hi);
	}
	pm_printf(&o->dests, "]");
	pm_printf(&o->runs, "[");
	for (size_t i = 0; i < n_runs; i++) {
		uint64_t k = runs[i].k;
		uint32_t x[4] = { (uint32_t)(k >> 48), PM_RUN_COUNT(runs[i].v),
				  (uint32_t)(k & (PM_INDEX_MAX - 1)),
				  (uint32_t)((k >> 24) & (PM_INDEX_MAX - 1)) };

		pm_put_run(&o->runs, i == 0, x, proto == IPPROTO_TCP,
			   PM_RUN_STATE(runs[i].v));
	}
	pm_printf(&o->runs, "]");
	if (o->hosts.failed || o->dests.failed || o->runs.failed) {
		errno = ENOMEM;
		log_warn("store: port map");
		goto out;
	}
	ret = 0;
out:
	free(per_port);
	free(port_host);
	free(multi);
	free(horder);
	free(dorder);
	free(kv);
	free(tmp);
	free(runs);
	return ret;
}

/* The TCP state names (the runs' state numbers index them) and the
 * mappings in each state, as JSON, for TCP.  Returns 0, or -1 with
 * ENOMEM. */
static int pm_states(const struct pm_state *ps, uint8_t proto,
		     struct pm_out *o)
{
	int any = 0;

	if (proto != IPPROTO_TCP)
		return 0;
	pm_printf(&o->names, "[");
	pm_printf(&o->counts, "{");
	for (unsigned i = 0; i < NS_TCP_STATES; i++) {
		pm_printf(&o->names, "%s\"%s\"", i ? "," : "",
			  ns_tcp_state_name(i));
		if (ps->states[i])
			pm_printf(&o->counts, "%s\"%s\":%u", any++ ? "," : "",
				  ns_tcp_state_name(i), ps->states[i]);
	}
	pm_printf(&o->names, "]");
	pm_printf(&o->counts, "}");
	if (o->names.failed || o->counts.failed) {
		errno = ENOMEM;
		log_warn("store: port map");
		return -1;
	}
	return 0;
}

/* ---- the answer ---- */

/* A gap's end for coverage: its end, else (open) its run's last write,
 * else now (?1), as the lookup reads it (maplog.c). */
#define SQL_PM_GAP_END                                                      \
	"coalesce(g.end_ms, (SELECT last_ms FROM maplog_runs "              \
	"WHERE started_ms = g.run_started_ms), ?1)"
#define SQL_PM_COVERS(t) "g.start_ms <= " t " AND " SQL_PM_GAP_END " >= " t
#define SQL_PM_GAP_TEXT                                                     \
	"'gap ' || g.seq || ' (' || g.reason || ', ' || "                   \
	SQL_TIME("g.start_ms") " || ' to ' || coalesce(" SQL_TIME("g.end_ms") \
	", 'open') || ')'"

/* ?1 now, ?2 public ip text, ?3 proto name, ?4 the moment (at, or the
 * log's last write), ?5 live (1) or at= (0), ?6 hosts, ?7 destinations,
 * ?8 the TCP state names (TCP only, else NULL), ?15 the mappings in each
 * state, ?16 those whose state is not known, ?9 ports in use, ?10
 * mappings, ?11 shared
 * ports, ?12 ports of several hosts, ?13 mappings with an unknown start,
 * ?14 the ends (ms) of shown mappings whose end was not reported, as a
 * JSON array.  Such a mapping was certainly held at ?4 when a gap
 * covering its end began after ?4 (figures are exact until a gap
 * starts); otherwise it may have ended before.  A run's log is whole
 * from the end of its start-up dump, when its history begins (its first
 * raw period; else the end of its first minute): before, mappings the
 * dump had not read yet are missing.  "runs" is last and
 * empty: pm_splice_runs() puts the runs (digits and punctuation only,
 * most of a big answer's bytes) there, which spares SQLite parsing and
 * printing them again. */
static const char sql_json_ports[] =
	"WITH s AS (SELECT * FROM status WHERE id = 1), "
	"lastw AS (SELECT max(last_ms) AS ms FROM maplog_runs), "
	"unrep AS (SELECT count(*) AS n FROM json_each(?14) AS e WHERE NOT "
	"EXISTS (SELECT 1 FROM gaps g WHERE g.start_ms > ?4 AND "
	SQL_PM_COVERS("e.value") ")), "
	"boot AS (SELECT coalesce((SELECT min(ts_ms) FROM hist_kernel WHERE "
	"tier = 0 AND ts_ms >= r.started_ms AND ts_ms <= r.last_ms), "
	"(SELECT min(ts_ms) + 60000 FROM hist_kernel WHERE tier = 1 AND "
	"ts_ms + 60000 > r.started_ms AND ts_ms <= r.last_ms)) AS first "
	"FROM maplog_runs r WHERE r.started_ms <= ?4 AND r.last_ms >= ?4), "
	"top AS (SELECT json_group_array(r) AS r FROM ("
	"SELECT " SQL_PM_GAP_TEXT " || ' covers this moment: ports may be "
	"missing, or shown held after they were freed' AS r FROM gaps g "
	"WHERE " SQL_PM_COVERS("?4") " "
	"UNION ALL SELECT CASE s.state "
	"WHEN 'db-error' THEN 'writes to the database fail (state db-error)' "
	"WHEN 'starting' THEN 'natscope is starting (its first table dump "
	"is not written yet)' "
	"ELSE 'natscope is not running (state ' || s.state || ')' END || "
	"': this is the log as of its last write, ' || "
	"printf('%.1f', (?1 - ?4) / 1000.0) || ' s ago' FROM s "
	"WHERE ?5 AND s.state NOT IN ('running', 'resyncing') "
	"UNION ALL SELECT 'the log''s last write was ' || "
	"printf('%.1f', (?1 - ?4) / 1000.0) || ' s ago, more than two "
	"intervals: mappings since then are not in it' FROM s WHERE ?5 AND "
	"s.state IN ('running', 'resyncing') AND "
	"?1 - ?4 > 2 * s.interval_s * 1000 + 1000 "
	"UNION ALL SELECT 'after the log''s last write (' || "
	SQL_TIME("lastw.ms") " || '): later mappings are not in it yet' "
	"FROM lastw WHERE NOT ?5 AND ?4 > lastw.ms "
	"UNION ALL SELECT 'natscope was not logging mappings at this moment' "
	"WHERE NOT ?5 AND NOT EXISTS (SELECT 1 FROM maplog_runs WHERE "
	"started_ms <= ?4 AND last_ms >= ?4) AND NOT ?4 > coalesce((SELECT "
	"ms FROM lastw), ?4) "
	"UNION ALL SELECT 'natscope was starting: its first table dump ended "
	"at ' || " SQL_TIME("first") " || ', and mappings that existed "
	"before it are logged from when it read them: some held at this "
	"moment may be missing' FROM boot WHERE NOT ?5 AND ?4 < first "
	"UNION ALL SELECT 'retention removed mappings that ended by ' || "
	SQL_TIME("trimmed_ms") " || ': ports held at this moment may be "
	"missing' FROM maplog_meta WHERE NOT ?5 AND trimmed_ms > 0 AND "
	"trimmed_ms >= ?4 "
	"UNION ALL SELECT records || ' mapping-log records of ' || "
	SQL_TIME("start_ms") " || ' to ' || " SQL_TIME("end_ms") " || "
	"' were lost: ports may be missing or wrong' FROM maplog_losses "
	"WHERE start_ms <= ?4 AND end_ms >= ?4 "
	"UNION ALL SELECT n || ' mappings shown were found gone later with "
	"no reported end (their DESTROY was lost): they may have ended "
	"before this moment' FROM unrep WHERE n > 0)) "
	"SELECT json_object('generated_at', " SQL_TIME("?1") ", "
	"'public_ip', ?2, 'proto', ?3, "
	"'live', json(CASE WHEN ?5 THEN 'true' ELSE 'false' END), "
	"'at', " SQL_TIME("?4") ", 'as_of', " SQL_TIME("?4") ", "
	"'age_seconds', CASE WHEN ?5 THEN round((?1 - ?4) / 1000.0, 3) END, "
	"'state', CASE WHEN ?5 THEN (SELECT state FROM s) END, "
	"'uncertain', json(CASE WHEN json_array_length(top.r) > 0 "
	"THEN 'true' ELSE 'false' END), "
	"'reasons', json(top.r), "
	"'coverage', json_object('complete', json(CASE WHEN "
	"json_array_length(top.r) > 0 THEN 'false' ELSE 'true' END), "
	"'gaps', json((SELECT json_group_array(json(o)) FROM (SELECT "
	SQL_GAP_OBJECT " AS o FROM gaps g WHERE " SQL_PM_COVERS("?4") " "
	"ORDER BY start_ms, run_started_ms, seq)))), "
	"'log', json_object('from', " SQL_TIME("max((SELECT min(started_ms) "
	"FROM maplog_runs), coalesce((SELECT trimmed_ms + 1 FROM maplog_meta "
	"WHERE trimmed_ms > 0), 0))") ", 'to', (SELECT " SQL_TIME("ms")
	" FROM lastw)), "
	"'port_space', 65535, 'ports_in_use', ?9, 'mappings', ?10, "
	"'shared_ports', ?11, 'multi_host_ports', ?12, "
	"'start_unknown', ?13, "
	"'tcp_states', json(?8), 'states', json(?15), 'state_unknown', ?16, "
	"'hosts', json(?6), 'destinations', json(?7), 'runs', json('[]')) "
	"FROM top";

/* *out = doc (ending in "runs":[]}) with runs in place of its empty
 * array.  Returns 0, or -1 with errno (ENOMEM, EIO for a document of
 * another shape). */
static int pm_splice_runs(const char *doc, const struct pm_buf *runs,
			  char **out)
{
	static const char tail[] = "\"runs\":[]}";
	size_t len = strlen(doc), keep;

	if (len < sizeof(tail) - 1 ||
	    strcmp(doc + len - (sizeof(tail) - 1), tail) != 0) {
		errno = EIO;
		log_warnx("store: port map: the document does not end with "
			  "its runs");
		return -1;
	}
	keep = len - 3; /* up to "runs": */
	if (!(*out = malloc(keep + runs->n + 2))) {
		log_warn("store: port map");
		return -1;
	}
	memcpy(*out, doc, keep);
	memcpy(*out + keep, runs->p, runs->n);
	memcpy(*out + keep + runs->n, "}", 2);
	return 0;
}

/* Reads the log's last write (-1 when it has none) and this host's
 * ip_local_port_range from the status row (the kernel default without
 * one). */
static int pm_context(struct store *st, int64_t *last, struct pm_state *ps)
{
	sqlite3_stmt *s;
	int rc;

	*last = -1;
	ps->local_lo = NS_LOCAL_PORT_LO;
	ps->local_hi = NS_LOCAL_PORT_HI;
	rc = sqlite3_prepare_v2(st->db,
		"SELECT (SELECT max(last_ms) FROM maplog_runs), "
		"(SELECT sysctl_port_range_lo FROM status WHERE id = 1), "
		"(SELECT sysctl_port_range_hi FROM status WHERE id = 1)",
		-1, &s, NULL);
	if (rc != SQLITE_OK)
		return store_fail(st, rc, "reading the mapping log");
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		int64_t lo = sqlite3_column_int64(s, 1);
		int64_t hi = sqlite3_column_int64(s, 2);

		if (sqlite3_column_type(s, 0) != SQLITE_NULL)
			*last = sqlite3_column_int64(s, 0);
		if (sqlite3_column_type(s, 1) != SQLITE_NULL &&
		    sqlite3_column_type(s, 2) != SQLITE_NULL && lo >= 0 &&
		    hi >= lo && hi <= 65535) {
			ps->local_lo = (uint32_t)lo;
			ps->local_hi = (uint32_t)hi;
		}
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW)
		return store_fail(st, rc, "reading the mapping log");
	return 0;
}

/* Decodes the blocks that may hold the moment and adds what is held. */
static int pm_collect(struct store *st, struct pm_state *ps,
		      const struct ns_addr *ip, uint8_t proto, int64_t at_ms,
		      int live)
{
	unsigned alen = ip->family == AF_INET ? 4 : 16;
	sqlite3_stmt *s;
	int rc;

	s = store_stmt(st, STMT_PORTS_FIND,
		       "SELECT data FROM maplog_blocks WHERE ip_bin = ?1 AND "
		       "proto = ?2 AND t_last >= ?3 AND t_first <= ?4 AND "
		       "family = ?5 AND (?6 = 0 OR open = 1)");
	if (!s)
		return -1;
	sqlite3_bind_blob(s, 1, ip->bytes, (int)alen, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, proto);
	sqlite3_bind_int64(s, 3, live ? PM_OPEN_T_LAST : at_ms);
	sqlite3_bind_int64(s, 4, live ? PM_OPEN_T_LAST : at_ms);
	sqlite3_bind_int(s, 5, ip->family == AF_INET ? 4 : 6);
	sqlite3_bind_int(s, 6, live);
	pm_printf(&ps->ends, "[");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_maplog_entry *e;
		size_t n;

		if (store_maplog_decode(sqlite3_column_blob(s, 0),
					(size_t)sqlite3_column_bytes(s, 0),
					&e, &n) < 0) {
			sqlite3_reset(s);
			return -1;
		}
		for (size_t i = 0; i < n; i++) {
			if (!live && (e[i].start_ms > at_ms ||
				      (e[i].end_ms && e[i].end_ms < at_ms)))
				continue;
			if (pm_add(ps, proto, alen, &e[i], live, at_ms) < 0) {
				free(e);
				sqlite3_reset(s);
				return -1;
			}
		}
		free(e);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_fail(st, rc, "reading the mapping log");
	pm_printf(&ps->ends, "]");
	if (ps->ends.failed) {
		errno = ENOMEM;
		log_warn("store: port map");
		return -1;
	}
	return 0;
}

int store_json_ports(struct store *st, const struct ns_addr *public_ip,
		     uint8_t proto, int64_t at_ms, int64_t now_ms, char **out)
{
	char ip[NS_ADDR_STRLEN];
	const char *name = ns_proto_name(proto);
	struct pm_state ps;
	struct pm_out o;
	int live = at_ms == STORE_PORTS_LIVE;
	int64_t last, moment;
	sqlite3_stmt *s;
	int own = 0, rc, ret = -1;

	*out = NULL;
	memset(&ps, 0, sizeof(ps));
	memset(&o, 0, sizeof(o));
	if (!ns_addr_format(public_ip, ip) || !name ||
	    (!live && at_ms < 0)) {
		errno = EINVAL;
		return -1;
	}
	if (getrandom(&ps.hidx.seed, sizeof(ps.hidx.seed), 0) !=
	    sizeof(ps.hidx.seed))
		ps.hidx.seed = (uint64_t)ns_mono_ns() * 0x9e3779b97f4a7c15ULL;
	ps.didx.seed = ps.hidx.seed ^ 0x5bd1e9955bd1e995ULL;
	if (sqlite3_get_autocommit(st->db)) {
		if (store_exec(st, "BEGIN DEFERRED", "starting a port map") < 0)
			return -1;
		own = 1;
	}
	if (pm_context(st, &last, &ps) < 0)
		goto out;
	if (last < 0) {
		errno = ENOENT; /* nothing was ever logged */
		goto out;
	}
	moment = live ? last : at_ms;
	if (pm_collect(st, &ps, public_ip, proto, moment, live) < 0 ||
	    pm_build(&ps, public_ip->family, proto, &o) < 0 ||
	    pm_states(&ps, proto, &o) < 0)
		goto out;
	if (!(s = store_stmt(st, STMT_PORTS_JSON, sql_json_ports)))
		goto out;
	sqlite3_bind_int64(s, 1, now_ms);
	sqlite3_bind_text(s, 2, ip, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, moment);
	sqlite3_bind_int(s, 5, live);
	sqlite3_bind_text(s, 6, o.hosts.p, (int)o.hosts.n, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, o.dests.p, (int)o.dests.n, SQLITE_STATIC);
	sqlite3_bind_int64(s, 9, o.ports_in_use);
	sqlite3_bind_int64(s, 10, (int64_t)ps.n_items);
	sqlite3_bind_int64(s, 11, o.shared_ports);
	sqlite3_bind_int64(s, 12, o.multi_host_ports);
	sqlite3_bind_int64(s, 13, (int64_t)ps.start_unknown);
	sqlite3_bind_text(s, 14, ps.ends.p, (int)ps.ends.n, SQLITE_STATIC);
	if (proto == IPPROTO_TCP) {
		sqlite3_bind_text(s, 8, o.names.p, (int)o.names.n,
				  SQLITE_STATIC);
		sqlite3_bind_text(s, 15, o.counts.p, (int)o.counts.n,
				  SQLITE_STATIC);
		sqlite3_bind_int64(s, 16, ps.state_unknown);
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_text(s, 0)) {
		if (pm_splice_runs((const char *)sqlite3_column_text(s, 0),
				   &o.runs, out) == 0)
			ret = 0;
	} else {
		store_fail(st, rc == SQLITE_ROW ? SQLITE_NOMEM : rc,
			   "building a port map");
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	pm_free(&ps);
	free(o.hosts.p);
	free(o.dests.p);
	free(o.runs.p);
	free(o.names.p);
	free(o.counts.p);
	if (own) {
		int err = errno;

		store_exec(st, "COMMIT", "ending a port map");
		errno = err;
	}
	return ret;
}
