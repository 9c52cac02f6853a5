/*
 * ledger.c - live mappings and their aggregates.
 *
 * Layout (sizes per live mapping matter: 1M mappings must fit in 64 MB):
 *  - mtab: every mapping, 12 bytes, open addressing with linear probing
 *    and backward-shift deletion (no tombstones), keyed by (destination
 *    bucket index, public port).
 *  - hptab: (host index, public port) -> number of mappings, 12 bytes, so
 *    a host's distinct ports are counted exactly.
 *  - gateways (public IP, proto), hosts (gateway, host IP) and destination
 *    buckets (gateway, zone, ip, port) are interned in vectors with free
 *    lists and small hash indexes; each carries its counters, a dirty flag
 *    and sits on a dirty list when it changed since the last snapshot.
 *  - per gateway, a two-level array of port reference counts (pages of 256
 *    counters allocated on first use) gives distinct ports in use.
 * Big tables are mmap()ed so that shrinking or freeing them gives the
 * memory back.
 */
#include "collector/ledger.h"
#include "store/store.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define NONE32 0xffffffffu
#define PAGE_PORTS 256

/* ---- hashing ---- */

static inline uint32_t ledger_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return (uint32_t)x;
}

static uint32_t ledger_hash_addr(const uint8_t b[16], uint64_t seed)
{
	uint64_t w0, w1;

	memcpy(&w0, b, 8);
	memcpy(&w1, b + 8, 8);
	return ledger_mix(w0 ^ ledger_mix(w1 ^ seed));
}

/* Backward-shift deletion, shared by every open-addressing table here:
 * after emptying slot i, the entry at slot j (further along its probe
 * run) moves back into i unless its home slot lies cyclically in (i, j],
 * where it would no longer be found. */
static inline int ledger_fills_hole(uint32_t i, uint32_t j, uint32_t home)
{
	if (j > i)
		return home <= i || home > j;
	return home <= i && home > j;
}

/* ---- big zeroed allocations ---- */

static void *ledger_map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void ledger_unmap(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes);
}

/* ---- aggregates ---- */

struct ledger_gw {
	struct ns_addr ip;
	uint8_t proto;
	uint8_t live;  /* interned (else on the free list) */
	uint8_t dirty; /* on the dirty list */
	uint32_t mappings, hosts, dests, ports_in_use;
	uint32_t states[NS_TCP_STATES];
	uint32_t *pages[65536 / PAGE_PORTS]; /* port reference counts */
	uint32_t worst;			     /* snapshot scratch: dest index */
	uint32_t next_free;
};

struct ledger_host {
	uint8_t ip[16];
	uint8_t live, dirty;
	uint32_t gw;
	uint32_t mappings, local, ports;
	uint32_t next_free;
};

struct ledger_dest {
	uint8_t ip[16];
	uint8_t live, dirty;
	uint16_t zone, port;
	uint32_t gw;
	uint32_t mappings;
	uint32_t ranges[LEDGER_RANGES]; /* mappings per port range */
	uint32_t next_free;
};

/* A hash index over one aggregate vector: slots hold index + 1 (0 empty)
 * and the element's hash. */
struct ledger_islot {
	uint32_t idx1, hash;
};

struct ledger_index {
	struct ledger_islot *slots;
	uint32_t mask, used;
};

/* A list of aggregate indexes (the dirty lists). */
struct ledger_list {
	uint32_t *v;
	uint32_t n, cap;
};

/* ---- the mapping and host-port tables ---- */

#define MF_EPOCH 0x01 /* mark bit, compared with ledger.epoch */
#define MF_DEAD 0x02  /* removed during a resync: a tombstone until the sweep */
#define MF_LOCAL 0x04 /* kind LOCAL (else NAT) */
#define MF_RANGE_SHIFT 3
#define MF_RANGE(f) (((f) >> MF_RANGE_SHIFT) & 7)
#define MF_EVENTS 0x40 /* an event was seen: the kernel reports this entry */

struct ledger_mrec {
	uint32_t dest1; /* destination index + 1; 0 = empty slot */
	uint32_t host;
	uint16_t port;
	uint8_t state;
	uint8_t flags;
};

struct ledger_mtab {
	struct ledger_mrec *r;
	uint32_t mask, used;
};

struct ledger_hprec {
	uint32_t host;
	uint32_t count; /* 0 = empty slot */
	uint16_t port;
	uint16_t pad;
};

struct ledger_hptab {
	struct ledger_hprec *r;
	uint32_t mask, used;
};

struct ledger {
	struct ledger_gw *gws;
	uint32_t n_gws, cap_gws, free_gw;
	struct ledger_host *hosts;
	uint32_t n_hosts, cap_hosts, free_host;
	struct ledger_dest *dests;
	uint32_t n_dests, cap_dests, free_dest;
	struct ledger_index gw_idx, host_idx, dest_idx;
	struct ledger_list dirty_gw, dirty_host, dirty_dest;
	struct ledger_mtab mt;
	struct ledger_hptab hp;
	uint8_t epoch;	  /* current mark: 0 or MF_EPOCH */
	uint8_t resync;	  /* inside resync_begin .. resync_end */
	uint32_t n_pages; /* port pages allocated, for the byte count */
	uint64_t nat, local;
	uint64_t silent; /* live mappings without MF_EVENTS */
	uint32_t live_gws, live_hosts, live_dests;
};

/* ---- hash indexes ---- */

typedef int (*ledger_eq_fn)(const struct ledger *l, uint32_t idx,
			    const void *key);

static int ledger_index_grow(struct ledger_index *ix)
{
	uint32_t ncap = ix->slots ? (ix->mask + 1) * 2 : 64;
	struct ledger_islot *ns = calloc(ncap, sizeof(*ns));

	if (!ns)
		return -1;
	if (ix->slots) {
		for (uint32_t i = 0; i <= ix->mask; i++) {
			struct ledger_islot s = ix->slots[i];
			uint32_t j;

			if (!s.idx1)
				continue;
			for (j = s.hash & (ncap - 1); ns[j].idx1;
			     j = (j + 1) & (ncap - 1))
				;
			ns[j] = s;
		}
		free(ix->slots);
	}
	ix->slots = ns;
	ix->mask = ncap - 1;
	return 0;
}

/* Returns the slot holding key, or the empty slot where it would go. */
static struct ledger_islot *ledger_index_probe(const struct ledger *l,
					       const struct ledger_index *ix,
					       uint32_t hash, const void *key,
					       ledger_eq_fn eq)
{
	uint32_t i = hash & ix->mask;

	for (;; i = (i + 1) & ix->mask) {
		struct ledger_islot *s = &ix->slots[i];

		if (!s->idx1 || (s->hash == hash && eq(l, s->idx1 - 1, key)))
			return s;
	}
}

static void ledger_index_delete(struct ledger_index *ix, struct ledger_islot *s)
{
	uint32_t i = (uint32_t)(s - ix->slots), j = i;

	for (;;) {
		uint32_t home;

		j = (j + 1) & ix->mask;
		if (!ix->slots[j].idx1)
			break;
		home = ix->slots[j].hash & ix->mask;
		if (ledger_fills_hole(i, j, home)) {
			ix->slots[i] = ix->slots[j];
			i = j;
		}
	}
	ix->slots[i].idx1 = 0;
	ix->used--;
}

static int ledger_list_push(struct ledger_list *ls, uint32_t idx)
{
	if (ls->n == ls->cap) {
		uint32_t ncap = ls->cap ? ls->cap * 2 : 64;
		uint32_t *p = realloc(ls->v, ncap * sizeof(*p));

		if (!p)
			return -1;
		ls->v = p;
		ls->cap = ncap;
	}
	ls->v[ls->n++] = idx;
	return 0;
}

/* ---- gateways ---- */

struct ledger_gw_key {
	uint8_t family, proto;
	const uint8_t *ip;
};

static uint32_t ledger_gw_hash(const struct ledger_gw_key *k)
{
	return ledger_hash_addr(k->ip, ((uint64_t)k->family << 8) | k->proto);
}

static int ledger_gw_eq(const struct ledger *l, uint32_t idx, const void *key)
{
	const struct ledger_gw_key *k = key;
	const struct ledger_gw *g = &l->gws[idx];

	return g->proto == k->proto && g->ip.family == k->family &&
	       memcmp(g->ip.bytes, k->ip, 16) == 0;
}

/* Every aggregate change goes through these: it lands on the dirty list
 * once.  A failed push leaves it clean; the caller's snapshot will then be
 * asked to be full by the collector, which sees the ENOMEM. */
static void ledger_touch_gw(struct ledger *l, uint32_t i)
{
	if (!l->gws[i].dirty && ledger_list_push(&l->dirty_gw, i) == 0)
		l->gws[i].dirty = 1;
}

static void ledger_touch_host(struct ledger *l, uint32_t i)
{
	if (!l->hosts[i].dirty && ledger_list_push(&l->dirty_host, i) == 0)
		l->hosts[i].dirty = 1;
}

static void ledger_touch_dest(struct ledger *l, uint32_t i)
{
	if (!l->dests[i].dirty && ledger_list_push(&l->dirty_dest, i) == 0)
		l->dests[i].dirty = 1;
}

/* Grows an aggregate vector by one element, reusing the free list first.
 * Returns the index or NONE32. */
#define LEDGER_ALLOC(l, vec, n, cap, freehead)                                 \
	({                                                                     \
		uint32_t _i = NONE32;                                          \
		if ((l)->freehead != NONE32) {                                 \
			_i = (l)->freehead;                                    \
			(l)->freehead = (l)->vec[_i].next_free;                \
		} else {                                                       \
			if ((l)->n == (l)->cap) {                              \
				uint32_t _nc = (l)->cap ? (l)->cap * 2 : 16;   \
				void *_p = realloc((l)->vec,                   \
						   _nc * sizeof(*(l)->vec));   \
				if (_p) {                                      \
					(l)->vec = _p;                         \
					(l)->cap = _nc;                        \
				}                                              \
			}                                                      \
			if ((l)->n < (l)->cap)                                 \
				_i = (l)->n++;                                 \
		}                                                              \
		if (_i != NONE32)                                              \
			memset(&(l)->vec[_i], 0, sizeof((l)->vec[_i]));        \
		_i;                                                            \
	})

static uint32_t ledger_gw_get(struct ledger *l, uint8_t family, uint8_t proto,
			      const uint8_t ip[16], int create)
{
	struct ledger_gw_key k = { family, proto, ip };
	uint32_t h = ledger_gw_hash(&k), i;
	struct ledger_islot *s;

	if (create && (l->gw_idx.used + 1) * 4 > (l->gw_idx.mask + 1) * 3 &&
	    ledger_index_grow(&l->gw_idx) < 0)
		return NONE32;
	s = ledger_index_probe(l, &l->gw_idx, h, &k, ledger_gw_eq);
	if (s->idx1)
		return s->idx1 - 1;
	if (!create)
		return NONE32;
	i = LEDGER_ALLOC(l, gws, n_gws, cap_gws, free_gw);
	if (i == NONE32)
		return NONE32;
	l->gws[i].ip.family = family;
	memcpy(l->gws[i].ip.bytes, ip, 16);
	l->gws[i].proto = proto;
	l->gws[i].live = 1;
	s->idx1 = i + 1;
	s->hash = h;
	l->gw_idx.used++;
	ledger_touch_gw(l, i);
	return i;
}

/* ---- hosts ---- */

struct ledger_host_key {
	uint32_t gw;
	const uint8_t *ip;
};

static int ledger_host_eq(const struct ledger *l, uint32_t idx,
			  const void *key)
{
	const struct ledger_host_key *k = key;
	const struct ledger_host *h = &l->hosts[idx];

	return h->gw == k->gw && memcmp(h->ip, k->ip, 16) == 0;
}

static uint32_t ledger_host_get(struct ledger *l, uint32_t gw,
				const uint8_t ip[16])
{
	struct ledger_host_key k = { gw, ip };
	uint32_t h = ledger_hash_addr(ip, gw), i;
	struct ledger_islot *s;

	if ((l->host_idx.used + 1) * 4 > (l->host_idx.mask + 1) * 3 &&
	    ledger_index_grow(&l->host_idx) < 0)
		return NONE32;
	s = ledger_index_probe(l, &l->host_idx, h, &k, ledger_host_eq);
	if (s->idx1)
		return s->idx1 - 1;
	i = LEDGER_ALLOC(l, hosts, n_hosts, cap_hosts, free_host);
	if (i == NONE32)
		return NONE32;
	memcpy(l->hosts[i].ip, ip, 16);
	l->hosts[i].gw = gw;
	l->hosts[i].live = 1;
	s->idx1 = i + 1;
	s->hash = h;
	l->host_idx.used++;
	ledger_touch_host(l, i);
	return i;
}

/* ---- destination buckets ---- */

struct ledger_dest_key {
	uint32_t gw;
	uint16_t zone, port;
	const uint8_t *ip;
};

static uint32_t ledger_dest_hash(const struct ledger_dest_key *k)
{
	return ledger_hash_addr(k->ip, ((uint64_t)k->gw << 32) |
					       ((uint32_t)k->zone << 16) | k->port);
}

static int ledger_dest_eq(const struct ledger *l, uint32_t idx,
			  const void *key)
{
	const struct ledger_dest_key *k = key;
	const struct ledger_dest *d = &l->dests[idx];

	return d->gw == k->gw && d->port == k->port && d->zone == k->zone &&
	       memcmp(d->ip, k->ip, 16) == 0;
}

static uint32_t ledger_dest_get(struct ledger *l, uint32_t gw, uint16_t zone,
				const uint8_t ip[16], uint16_t port, int create)
{
	struct ledger_dest_key k = { gw, zone, port, ip };
	uint32_t h = ledger_dest_hash(&k), i;
	struct ledger_islot *s;

	if (create && (l->dest_idx.used + 1) * 4 > (l->dest_idx.mask + 1) * 3 &&
	    ledger_index_grow(&l->dest_idx) < 0)
		return NONE32;
	s = ledger_index_probe(l, &l->dest_idx, h, &k, ledger_dest_eq);
	if (s->idx1)
		return s->idx1 - 1;
	if (!create)
		return NONE32;
	i = LEDGER_ALLOC(l, dests, n_dests, cap_dests, free_dest);
	if (i == NONE32)
		return NONE32;
	memcpy(l->dests[i].ip, ip, 16);
	l->dests[i].gw = gw;
	l->dests[i].zone = zone;
	l->dests[i].port = port;
	l->dests[i].live = 1;
	s->idx1 = i + 1;
	s->hash = h;
	l->dest_idx.used++;
	ledger_touch_dest(l, i);
	return i;
}

/* ---- mapping table ---- */

static inline uint32_t ledger_mhash(uint32_t dest1, uint16_t port)
{
	return ledger_mix(((uint64_t)dest1 << 16) | port);
}

static int ledger_mt_grow(struct ledger_mtab *t)
{
	uint32_t ocap = t->r ? t->mask + 1 : 0;
	uint32_t ncap = ocap ? ocap * 2 : 1024;
	struct ledger_mrec *nr = ledger_map((size_t)ncap * sizeof(*nr));

	if (!nr)
		return -1;
	for (uint32_t i = 0; i < ocap; i++) {
		struct ledger_mrec *r = &t->r[i];
		uint32_t j;

		if (!r->dest1)
			continue;
		for (j = ledger_mhash(r->dest1, r->port) & (ncap - 1); nr[j].dest1;
		     j = (j + 1) & (ncap - 1))
			;
		nr[j] = *r;
	}
	ledger_unmap(t->r, (size_t)ocap * sizeof(*t->r));
	t->r = nr;
	t->mask = ncap - 1;
	return 0;
}

/* Returns the record with the key, or the empty slot where it would go. */
static struct ledger_mrec *ledger_mt_probe(const struct ledger_mtab *t,
					   uint32_t dest1, uint16_t port)
{
	uint32_t i = ledger_mhash(dest1, port) & t->mask;

	for (;; i = (i + 1) & t->mask) {
		struct ledger_mrec *r = &t->r[i];

		if (!r->dest1 || (r->dest1 == dest1 && r->port == port))
			return r;
	}
}

static void ledger_mt_delete(struct ledger_mtab *t, struct ledger_mrec *hole)
{
	uint32_t i = (uint32_t)(hole - t->r), j = i;

	for (;;) {
		uint32_t home;

		j = (j + 1) & t->mask;
		if (!t->r[j].dest1)
			break;
		home = ledger_mhash(t->r[j].dest1, t->r[j].port) & t->mask;
		if (ledger_fills_hole(i, j, home)) {
			t->r[i] = t->r[j];
			i = j;
		}
	}
	memset(&t->r[i], 0, sizeof(t->r[i]));
	t->used--;
}

/* ---- host-port table ---- */

static inline uint32_t ledger_hphash(uint32_t host, uint16_t port)
{
	return ledger_mix(((uint64_t)host << 16) | port | (1ULL << 63));
}

static int ledger_hp_grow(struct ledger_hptab *t)
{
	uint32_t ocap = t->r ? t->mask + 1 : 0;
	uint32_t ncap = ocap ? ocap * 2 : 1024;
	struct ledger_hprec *nr = ledger_map((size_t)ncap * sizeof(*nr));

	if (!nr)
		return -1;
	for (uint32_t i = 0; i < ocap; i++) {
		struct ledger_hprec *r = &t->r[i];
		uint32_t j;

		if (!r->count)
			continue;
		for (j = ledger_hphash(r->host, r->port) & (ncap - 1);
		     nr[j].count; j = (j + 1) & (ncap - 1))
			;
		nr[j] = *r;
	}
	ledger_unmap(t->r, (size_t)ocap * sizeof(*t->r));
	t->r = nr;
	t->mask = ncap - 1;
	return 0;
}

static struct ledger_hprec *ledger_hp_probe(const struct ledger_hptab *t,
					    uint32_t host, uint16_t port)
{
	uint32_t i = ledger_hphash(host, port) & t->mask;

	for (;; i = (i + 1) & t->mask) {
		struct ledger_hprec *r = &t->r[i];

		if (!r->count || (r->host == host && r->port == port))
			return r;
	}
}

static void ledger_hp_delete(struct ledger_hptab *t, struct ledger_hprec *hole)
{
	uint32_t i = (uint32_t)(hole - t->r), j = i;

	for (;;) {
		uint32_t home;

		j = (j + 1) & t->mask;
		if (!t->r[j].count)
			break;
		home = ledger_hphash(t->r[j].host, t->r[j].port) & t->mask;
		if (ledger_fills_hole(i, j, home)) {
			t->r[i] = t->r[j];
			i = j;
		}
	}
	memset(&t->r[i], 0, sizeof(t->r[i]));
	t->used--;
}

/* ---- contributions of one mapping to every aggregate ---- */

/* Makes sure adding one mapping cannot fail half way: room in both tables
 * and the gateway's port page. */
static int ledger_reserve(struct ledger *l, uint32_t gw, uint16_t port)
{
	struct ledger_gw *g = &l->gws[gw];

	if ((l->mt.used + 1) * 4 > (l->mt.mask + 1) * 3 && ledger_mt_grow(&l->mt) < 0)
		return -1;
	if ((l->hp.used + 1) * 4 > (l->hp.mask + 1) * 3 && ledger_hp_grow(&l->hp) < 0)
		return -1;
	if (!g->pages[port / PAGE_PORTS]) {
		g->pages[port / PAGE_PORTS] = calloc(PAGE_PORTS, sizeof(uint32_t));
		if (!g->pages[port / PAGE_PORTS])
			return -1;
		l->n_pages++;
	}
	return 0;
}

static void ledger_add_counts(struct ledger *l, uint32_t gwi, uint32_t di,
			      uint32_t hi, uint16_t port, uint8_t state,
			      uint8_t flags)
{
	struct ledger_gw *g = &l->gws[gwi];
	struct ledger_dest *d = &l->dests[di];
	struct ledger_host *h = &l->hosts[hi];
	struct ledger_hprec *hp;
	uint32_t *ref = &g->pages[port / PAGE_PORTS][port % PAGE_PORTS];

	if (g->mappings++ == 0)
		l->live_gws++;
	if ((*ref)++ == 0)
		g->ports_in_use++;
	if (g->proto == IPPROTO_TCP)
		g->states[state]++;
	if (d->mappings++ == 0) {
		g->dests++;
		l->live_dests++;
	}
	d->ranges[MF_RANGE(flags)]++;
	if (h->mappings++ == 0) {
		g->hosts++;
		l->live_hosts++;
	}
	if (flags & MF_LOCAL) {
		h->local++;
		l->local++;
	} else {
		l->nat++;
	}
	if (!(flags & MF_EVENTS))
		l->silent++;
	hp = ledger_hp_probe(&l->hp, hi, port);
	if (hp->count == 0) {
		hp->host = hi;
		hp->port = port;
		l->hp.used++;
		h->ports++;
	}
	hp->count++;
	ledger_touch_gw(l, gwi);
	ledger_touch_dest(l, di);
	ledger_touch_host(l, hi);
}

static void ledger_sub_counts(struct ledger *l, uint32_t di,
			      const struct ledger_mrec *r)
{
	struct ledger_dest *d = &l->dests[di];
	uint32_t gwi = d->gw;
	struct ledger_gw *g = &l->gws[gwi];
	struct ledger_host *h = &l->hosts[r->host];
	struct ledger_hprec *hp;
	uint32_t *ref = &g->pages[r->port / PAGE_PORTS][r->port % PAGE_PORTS];

	if (--g->mappings == 0)
		l->live_gws--;
	if (--(*ref) == 0)
		g->ports_in_use--;
	if (g->proto == IPPROTO_TCP)
		g->states[r->state]--;
	if (--d->mappings == 0) {
		g->dests--;
		l->live_dests--;
	}
	d->ranges[MF_RANGE(r->flags)]--;
	if (--h->mappings == 0) {
		g->hosts--;
		l->live_hosts--;
	}
	if (r->flags & MF_LOCAL) {
		h->local--;
		l->local--;
	} else {
		l->nat--;
	}
	if (!(r->flags & MF_EVENTS))
		l->silent--;
	hp = ledger_hp_probe(&l->hp, r->host, r->port);
	if (--hp->count == 0) {
		h->ports--;
		ledger_hp_delete(&l->hp, hp);
	}
	ledger_touch_gw(l, gwi);
	ledger_touch_dest(l, di);
	ledger_touch_host(l, r->host);
}

/* ---- public interface ---- */

struct ledger *ledger_new(void)
{
	struct ledger *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->free_gw = l->free_host = l->free_dest = NONE32;
	if (ledger_mt_grow(&l->mt) < 0 || ledger_hp_grow(&l->hp) < 0 ||
	    ledger_index_grow(&l->gw_idx) < 0 ||
	    ledger_index_grow(&l->host_idx) < 0 ||
	    ledger_index_grow(&l->dest_idx) < 0) {
		ledger_free(l);
		errno = ENOMEM;
		return NULL;
	}
	return l;
}

void ledger_free(struct ledger *l)
{
	if (!l)
		return;
	for (uint32_t i = 0; i < l->n_gws; i++)
		for (unsigned p = 0; p < 65536 / PAGE_PORTS; p++)
			free(l->gws[i].pages[p]);
	free(l->gws);
	free(l->hosts);
	free(l->dests);
	free(l->gw_idx.slots);
	free(l->host_idx.slots);
	free(l->dest_idx.slots);
	free(l->dirty_gw.v);
	free(l->dirty_host.v);
	free(l->dirty_dest.v);
	if (l->mt.r)
		ledger_unmap(l->mt.r, (size_t)(l->mt.mask + 1) * sizeof(*l->mt.r));
	if (l->hp.r)
		ledger_unmap(l->hp.r, (size_t)(l->hp.mask + 1) * sizeof(*l->hp.r));
	free(l);
}

static uint8_t ledger_flags(const struct ledger *l, const struct ledger_mapping *m)
{
	return (uint8_t)(l->epoch | (m->kind == NS_KIND_LOCAL ? MF_LOCAL : 0) |
			 (m->range << MF_RANGE_SHIFT));
}

int ledger_upsert(struct ledger *l, const struct ledger_mapping *m,
		  int source)
{
	uint32_t gwi, di, hi;
	struct ledger_mrec *r;
	uint8_t flags, state;
	int had, from_dump = source != LEDGER_EVENT;

	if ((m->kind != NS_KIND_NAT && m->kind != NS_KIND_LOCAL) ||
	    m->range >= LEDGER_RANGES) {
		errno = EINVAL;
		return -1;
	}
	gwi = ledger_gw_get(l, m->family, m->proto, m->public_ip, 1);
	if (gwi == NONE32)
		goto nomem;
	di = ledger_dest_get(l, gwi, m->zone, m->dest_ip, m->dest_port, 1);
	if (di == NONE32)
		goto nomem;
	r = ledger_mt_probe(&l->mt, di + 1, m->public_port);
	had = r->dest1 && !(r->flags & MF_DEAD);
	if (r->dest1 && from_dump && l->resync &&
	    (r->flags & MF_EPOCH) == l->epoch)
		return LEDGER_KEPT; /* an event (or the dump) got here first */

	hi = ledger_host_get(l, gwi, m->host_ip);
	if (hi == NONE32)
		goto nomem;
	flags = ledger_flags(l, m);
	/* A mapping first read from a dump may belong to an entry the kernel
	 * sends no events for; the first event proves otherwise. */
	if (!from_dump)
		flags |= MF_EVENTS;
	else if (had)
		flags |= r->flags & MF_EVENTS;
	else if (source == LEDGER_DUMP_REPORTED)
		flags |= MF_EVENTS;
	state = m->tcp_state < NS_TCP_STATES ? m->tcp_state : 0;
	if (had) {
		/* Same reply tuple: either the same entry (a duplicate or an
		 * update) or a newer one whose DESTROY we missed. */
		if (m->tcp_state == NS_TCP_STATE_UNKNOWN)
			state = r->state;
		if (r->host == hi && (r->flags & ~(MF_EPOCH | MF_EVENTS)) ==
					     (flags & ~(MF_EPOCH | MF_EVENTS))) {
			int changed = r->state != state;

			if ((flags & MF_EVENTS) && !(r->flags & MF_EVENTS))
				l->silent--;

			if (changed && l->gws[gwi].proto == IPPROTO_TCP) {
				l->gws[gwi].states[r->state]--;
				l->gws[gwi].states[state]++;
				ledger_touch_gw(l, gwi);
			}
			r->state = state;
			r->flags = flags;
			return changed ? LEDGER_CHANGED : LEDGER_UNCHANGED;
		}
	}
	/* From here nothing may fail half way. */
	if (ledger_reserve(l, gwi, m->public_port) < 0)
		goto nomem;
	r = ledger_mt_probe(&l->mt, di + 1, m->public_port); /* may have moved */
	if (had) {
		ledger_sub_counts(l, di, r);
	} else if (!r->dest1) {
		r->dest1 = di + 1;
		r->port = m->public_port;
		l->mt.used++;
	}
	r->host = hi;
	r->state = state;
	r->flags = flags;
	ledger_add_counts(l, gwi, di, hi, m->public_port, state, flags);
	return had ? LEDGER_CHANGED : LEDGER_ADDED;
nomem:
	errno = ENOMEM;
	return -1;
}

void ledger_prefetch(struct ledger *l, const struct ledger_mapping *m)
{
	struct ledger_host_key hk;
	struct ledger_islot *s;
	uint32_t gwi, di, h;

	gwi = ledger_gw_get(l, m->family, m->proto, m->public_ip, 0);
	if (gwi == NONE32)
		return;
	di = ledger_dest_get(l, gwi, m->zone, m->dest_ip, m->dest_port, 0);
	if (di == NONE32)
		return;
	__builtin_prefetch(&l->mt.r[ledger_mhash(di + 1, m->public_port) &
				    l->mt.mask]);
	hk = (struct ledger_host_key){ gwi, m->host_ip };
	h = ledger_hash_addr(m->host_ip, gwi);
	s = ledger_index_probe(l, &l->host_idx, h, &hk, ledger_host_eq);
	if (s->idx1)
		__builtin_prefetch(&l->hp.r[ledger_hphash(s->idx1 - 1,
							  m->public_port) &
					    l->hp.mask]);
}

int ledger_remove(struct ledger *l, const struct ledger_mapping *m)
{
	uint32_t gwi, di;
	struct ledger_mrec *r;

	/* Outside a resync an unknown key needs nothing; inside one it gets
	 * a tombstone so that a dump record read after this DESTROY (but
	 * taken before it) cannot bring the entry back. */
	gwi = ledger_gw_get(l, m->family, m->proto, m->public_ip, l->resync);
	if (gwi == NONE32)
		return 0;
	di = ledger_dest_get(l, gwi, m->zone, m->dest_ip, m->dest_port,
			     l->resync);
	if (di == NONE32)
		return 0;
	r = ledger_mt_probe(&l->mt, di + 1, m->public_port);
	if (r->dest1 && !(r->flags & MF_DEAD)) {
		ledger_sub_counts(l, di, r);
		if (l->resync) {
			r->flags = (uint8_t)(l->epoch | MF_DEAD);
		} else {
			ledger_mt_delete(&l->mt, r);
		}
		return 1;
	}
	if (l->resync) {
		if (!r->dest1) {
			if ((l->mt.used + 1) * 4 > (l->mt.mask + 1) * 3) {
				if (ledger_mt_grow(&l->mt) < 0)
					return 0;
				r = ledger_mt_probe(&l->mt, di + 1, m->public_port);
			}
			r->dest1 = di + 1;
			r->port = m->public_port;
			r->host = NONE32;
			l->mt.used++;
		}
		r->flags = (uint8_t)(l->epoch | MF_DEAD);
	}
	return 0;
}

int ledger_expect(struct ledger *l, uint64_t mappings)
{
	while ((uint64_t)(l->mt.mask + 1) * 3 < mappings * 4 &&
	       l->mt.mask < 0x7fffffffu)
		if (ledger_mt_grow(&l->mt) < 0) {
			errno = ENOMEM;
			return -1;
		}
	return 0;
}

void ledger_resync_begin(struct ledger *l)
{
	l->epoch ^= MF_EPOCH;
	l->resync = 1;
}

uint64_t ledger_resync_end(struct ledger *l)
{
	uint64_t removed = 0;
	uint32_t i = 0, cap = l->mt.mask + 1;

	/* Deleting shifts later records back into slot i, so i is examined
	 * again after each deletion; records that wrap round from the start
	 * of the table were already examined and kept. */
	while (i < cap) {
		struct ledger_mrec *r = &l->mt.r[i];

		if (r->dest1 && ((r->flags & MF_DEAD) ||
				 (r->flags & MF_EPOCH) != l->epoch)) {
			if (!(r->flags & MF_DEAD)) {
				ledger_sub_counts(l, r->dest1 - 1, r);
				removed++;
			}
			ledger_mt_delete(&l->mt, r);
			continue;
		}
		i++;
	}
	l->resync = 0;
	return removed;
}

/* ---- snapshots ---- */

static uint32_t ledger_capacity(const struct ledger_dest *d,
				const uint32_t range_size[LEDGER_RANGES])
{
	uint32_t cap = 0;

	for (int r = 0; r < LEDGER_RANGES; r++)
		if (d->ranges[r] && range_size[r] > cap)
			cap = range_size[r];
	return cap;
}

static void ledger_addr(struct ns_addr *out, uint8_t family,
			const uint8_t bytes[16])
{
	memset(out, 0, sizeof(*out));
	out->family = family;
	memcpy(out->bytes, bytes, family == AF_INET ? 4 : 16);
}

/* Is dest a worse (fuller) bucket than the gateway's current worst? */
static int ledger_worse(const struct ledger *l, const struct ledger_dest *a,
			uint32_t cap_a, uint32_t b_idx,
			const uint32_t range_size[LEDGER_RANGES])
{
	const struct ledger_dest *b;
	uint64_t lhs, rhs;
	int c;

	if (b_idx == NONE32)
		return 1;
	b = &l->dests[b_idx];
	lhs = (uint64_t)a->mappings * ledger_capacity(b, range_size);
	rhs = (uint64_t)b->mappings * cap_a;
	if (lhs != rhs)
		return lhs > rhs;
	if (a->mappings != b->mappings)
		return a->mappings > b->mappings;
	c = memcmp(a->ip, b->ip, 16);
	if (c)
		return c < 0;
	if (a->port != b->port)
		return a->port < b->port;
	return a->zone < b->zone;
}

static int ledger_emit_gw(struct ledger *l, struct store_batch *b, uint32_t i,
			  const uint32_t range_size[LEDGER_RANGES])
{
	struct ledger_gw *g = &l->gws[i];
	struct store_gateway_row *row = store_batch_add_gateway(b);

	if (!row)
		return -1;
	row->ip = g->ip;
	row->proto = g->proto;
	row->deleted = g->mappings == 0;
	row->ports_in_use = g->ports_in_use;
	row->mappings = g->mappings;
	row->hosts = g->hosts;
	row->destinations = g->dests;
	if (g->worst != NONE32) {
		const struct ledger_dest *d = &l->dests[g->worst];

		ledger_addr(&row->worst_ip, g->ip.family, d->ip);
		row->worst_port = d->port;
		row->worst_zone = d->zone;
		row->worst_mappings = d->mappings;
		row->worst_capacity = ledger_capacity(d, range_size);
	}
	if (g->proto == IPPROTO_TCP)
		memcpy(row->states, g->states, sizeof(row->states));
	return 0;
}

static int ledger_emit_host(struct ledger *l, struct store_batch *b, uint32_t i)
{
	const struct ledger_host *h = &l->hosts[i];
	const struct ledger_gw *g = &l->gws[h->gw];
	struct store_host_row *row = store_batch_add_host(b);

	if (!row)
		return -1;
	row->gateway = g->ip;
	row->proto = g->proto;
	row->kind = h->local ? NS_KIND_LOCAL : NS_KIND_NAT;
	ledger_addr(&row->ip, g->ip.family, h->ip);
	row->mappings = h->mappings;
	row->ports_in_use = h->ports;
	return 0;
}

static int ledger_emit_dest(struct ledger *l, struct store_batch *b, uint32_t i,
			    const uint32_t range_size[LEDGER_RANGES])
{
	const struct ledger_dest *d = &l->dests[i];
	const struct ledger_gw *g = &l->gws[d->gw];
	struct store_dest_row *row = store_batch_add_dest(b);

	if (!row)
		return -1;
	row->gateway = g->ip;
	row->proto = g->proto;
	row->zone = d->zone;
	ledger_addr(&row->ip, g->ip.family, d->ip);
	row->port = d->port;
	row->mappings = d->mappings;
	row->capacity = ledger_capacity(d, range_size);
	return 0;
}

static void ledger_free_host(struct ledger *l, uint32_t i)
{
	struct ledger_host *h = &l->hosts[i];
	struct ledger_host_key k = { h->gw, h->ip };
	struct ledger_islot *s = ledger_index_probe(
		l, &l->host_idx, ledger_hash_addr(h->ip, h->gw), &k,
		ledger_host_eq);

	ledger_index_delete(&l->host_idx, s);
	h->live = 0;
	h->next_free = l->free_host;
	l->free_host = i;
}

static void ledger_free_dest(struct ledger *l, uint32_t i)
{
	struct ledger_dest *d = &l->dests[i];
	struct ledger_dest_key k = { d->gw, d->zone, d->port, d->ip };
	struct ledger_islot *s = ledger_index_probe(
		l, &l->dest_idx, ledger_dest_hash(&k), &k, ledger_dest_eq);

	ledger_index_delete(&l->dest_idx, s);
	d->live = 0;
	d->next_free = l->free_dest;
	l->free_dest = i;
}

static void ledger_free_gw(struct ledger *l, uint32_t i)
{
	struct ledger_gw *g = &l->gws[i];
	struct ledger_gw_key k = { g->ip.family, g->proto, g->ip.bytes };
	struct ledger_islot *s = ledger_index_probe(
		l, &l->gw_idx, ledger_gw_hash(&k), &k, ledger_gw_eq);

	ledger_index_delete(&l->gw_idx, s);
	for (unsigned p = 0; p < 65536 / PAGE_PORTS; p++) {
		if (g->pages[p]) {
			free(g->pages[p]);
			g->pages[p] = NULL;
			l->n_pages--;
		}
	}
	g->live = 0;
	g->next_free = l->free_gw;
	l->free_gw = i;
}

/* Clears the dirty lists.  Aggregates that emptied are forgotten, except
 * during a resync: tombstones may still point at them, so they stay (and
 * stay dirty, to be looked at again next time). */
static void ledger_settle(struct ledger *l)
{
	uint32_t keep;

	keep = 0;
	for (uint32_t k = 0; k < l->dirty_host.n; k++) {
		uint32_t i = l->dirty_host.v[k];

		if (l->hosts[i].mappings == 0 && l->resync) {
			l->dirty_host.v[keep++] = i;
			continue;
		}
		l->hosts[i].dirty = 0;
		if (l->hosts[i].mappings == 0)
			ledger_free_host(l, i);
	}
	l->dirty_host.n = keep;
	keep = 0;
	for (uint32_t k = 0; k < l->dirty_dest.n; k++) {
		uint32_t i = l->dirty_dest.v[k];

		if (l->dests[i].mappings == 0 && l->resync) {
			l->dirty_dest.v[keep++] = i;
			continue;
		}
		l->dests[i].dirty = 0;
		if (l->dests[i].mappings == 0)
			ledger_free_dest(l, i);
	}
	l->dirty_dest.n = keep;
	keep = 0;
	for (uint32_t k = 0; k < l->dirty_gw.n; k++) {
		uint32_t i = l->dirty_gw.v[k];

		if (l->gws[i].mappings == 0 && l->resync) {
			l->dirty_gw.v[keep++] = i;
			continue;
		}
		l->gws[i].dirty = 0;
		if (l->gws[i].mappings == 0)
			ledger_free_gw(l, i);
	}
	l->dirty_gw.n = keep;
}

int ledger_snapshot(struct ledger *l, struct store_batch *b, int full,
		    const uint32_t range_size[LEDGER_RANGES])
{
	/* The worst bucket of each gateway: one pass over the buckets. */
	for (uint32_t i = 0; i < l->n_gws; i++)
		l->gws[i].worst = NONE32;
	for (uint32_t i = 0; i < l->n_dests; i++) {
		const struct ledger_dest *d = &l->dests[i];
		struct ledger_gw *g;

		if (!d->live || !d->mappings)
			continue;
		g = &l->gws[d->gw];
		if (ledger_worse(l, d, ledger_capacity(d, range_size), g->worst,
				 range_size))
			g->worst = i;
	}

	if (full) {
		b->full = 1;
		for (uint32_t i = 0; i < l->n_gws; i++)
			if (l->gws[i].live && l->gws[i].mappings &&
			    ledger_emit_gw(l, b, i, range_size) < 0)
				goto nomem;
		for (uint32_t i = 0; i < l->n_hosts; i++)
			if (l->hosts[i].live && l->hosts[i].mappings &&
			    ledger_emit_host(l, b, i) < 0)
				goto nomem;
		for (uint32_t i = 0; i < l->n_dests; i++)
			if (l->dests[i].live && l->dests[i].mappings &&
			    ledger_emit_dest(l, b, i, range_size) < 0)
				goto nomem;
	} else {
		for (uint32_t k = 0; k < l->dirty_gw.n; k++)
			if (ledger_emit_gw(l, b, l->dirty_gw.v[k], range_size) < 0)
				goto nomem;
		for (uint32_t k = 0; k < l->dirty_host.n; k++)
			if (ledger_emit_host(l, b, l->dirty_host.v[k]) < 0)
				goto nomem;
		for (uint32_t k = 0; k < l->dirty_dest.n; k++)
			if (ledger_emit_dest(l, b, l->dirty_dest.v[k],
					     range_size) < 0)
				goto nomem;
	}
	ledger_settle(l);
	return 0;
nomem:
	/* Nothing was forgotten: the dirty lists are intact for next time,
	 * which must be a full snapshot since this batch is partial. */
	errno = ENOMEM;
	return -1;
}

void ledger_get_stats(const struct ledger *l, struct ledger_stats *st)
{
	st->mappings_nat = l->nat;
	st->mappings_local = l->local;
	st->mappings_silent = l->silent;
	st->gateways = l->live_gws;
	st->hosts = l->live_hosts;
	st->destinations = l->live_dests;
	st->bytes = (size_t)(l->mt.mask + 1) * sizeof(*l->mt.r) +
		    (size_t)(l->hp.mask + 1) * sizeof(*l->hp.r) +
		    (size_t)l->cap_gws * sizeof(*l->gws) +
		    (size_t)l->cap_hosts * sizeof(*l->hosts) +
		    (size_t)l->cap_dests * sizeof(*l->dests) +
		    (size_t)(l->gw_idx.mask + l->host_idx.mask +
			     l->dest_idx.mask + 3) * sizeof(struct ledger_islot) +
		    (size_t)l->n_pages * PAGE_PORTS * sizeof(uint32_t);
}
