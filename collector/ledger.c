/*
 * ledger.c - live mappings and their aggregates.
 *
 * Layout (sizes per live mapping matter: 1M mappings must fit in 64 MB):
 *  - mtab: every mapping, 12 bytes, open addressing with linear probing
 *    and backward-shift deletion, keyed by (destination bucket index,
 *    public port).
 *  - fpset: entries of kind OTHER and, during a resync, tombstones: a
 *    64-bit word each (61-bit fingerprint of the whole key + 3 flags), no
 *    aggregates, so a flood of DESTROYs for unknown entries costs 8 bytes
 *    each, and only until the resync ends.
 *  - hptab: (host index, public port) -> number of mappings, 12 bytes, so
 *    a host's distinct ports are counted exactly.
 *  - gateways (public IP, proto), hosts (gateway, host IP) and destination
 *    buckets (gateway, zone, ip, port) are interned in vectors with free
 *    lists and small hash indexes; each carries its counters, a dirty flag
 *    and sits on a dirty list when it changed since the last snapshot.
 *  - per gateway, a two-level array of port reference counts (pages of 256
 *    counters allocated on first use) gives distinct ports in use.
 * Big tables are mmap()ed so that shrinking or freeing them gives the
 * memory back.  After a snapshot (outside a resync) ledger_trim() shrinks
 * tables below 1/8 full and compacts the aggregate vectors when 3/4 of
 * their slots are free, renumbering every reference, so memory follows the
 * live entries down as well as up.
 *
 * Hashes: the 64-bit finalizer of MurmurHash3 over the key words XORed
 * with a per-ledger random seed (getrandom()).  The finalizer alone is
 * invertible, so without the seed anyone who chooses addresses and ports
 * (a client behind the NAT) could aim many keys at one slot; with it they
 * cannot predict where a key lands.
 */
#include "collector/ledger.h"
#include "store/store.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/random.h>

#define NONE32 0xffffffffu
#define PAGE_PORTS 256
#define N_PAGES (65536 / PAGE_PORTS)
#define TABLE_MIN 1024 /* slots: tables never shrink below this */

/* ---- hashing ---- */

static inline uint64_t ledger_fmix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* A 16-byte address with a 64-bit parameter, under seed k. */
static inline uint32_t ledger_hash_addr(const uint64_t k[2],
					const uint8_t b[16], uint64_t param)
{
	uint64_t w0, w1;

	memcpy(&w0, b, 8);
	memcpy(&w1, b + 8, 8);
	return (uint32_t)ledger_fmix(w0 ^ k[0] ^
				     ledger_fmix(w1 ^ k[1] ^ param));
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

/* Slots for n elements at a load of at most 1/2: a power of two. */
static uint32_t ledger_fit(uint64_t n)
{
	uint64_t cap = TABLE_MIN;

	while (cap < n * 2 && cap < (1ULL << 31))
		cap *= 2;
	return (uint32_t)cap;
}

/* Slots of an aggregate index for n elements: a power of two >= 64. */
static uint32_t ledger_index_fit(uint32_t n)
{
	uint32_t cap = 64;

	while (cap < (uint64_t)n * 2)
		cap *= 2;
	return cap;
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
	/* since the last ledger_history(): highest values reached, and
	 * mappings created by events */
	uint32_t peak_ports, peak_mappings, peak_tw, created;
	uint32_t *pages[N_PAGES];    /* port reference counts */
	uint16_t page_used[N_PAGES]; /* ports in use per page */
	uint32_t worst;		     /* snapshot scratch: dest index */
	uint32_t next_free;
};

struct ledger_host {
	uint8_t ip[16];
	uint8_t live, dirty;
	uint32_t gw;
	uint32_t mappings, local, ports;
	uint32_t peak, created; /* as ledger_gw's */
	uint32_t next_free;
};

struct ledger_dest {
	uint8_t ip[16];
	uint8_t live, dirty;
	uint16_t zone, port;
	uint32_t gw;
	uint32_t mappings;
	uint32_t ranges[LEDGER_RANGES]; /* mappings per port range */
	uint32_t peak, created; /* as ledger_gw's */
	uint8_t ranges_seen; /* bit per range used since ledger_history() */
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
	uint64_t seed;
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
	uint64_t seed;
};

/* The fingerprint set: a slot is 0 (empty) or a fingerprint (low 61 bits,
 * never 0) with flags in the top bits. */
#define FP_EPOCH (1ULL << 63)  /* mark, as MF_EPOCH */
#define FP_EVENTS (1ULL << 62) /* an event was seen */
#define FP_DEAD (1ULL << 61)   /* a tombstone (during a resync only) */
#define FP_MASK (FP_DEAD - 1)

struct ledger_fpset {
	uint64_t *v;
	uint32_t mask, used, dead;
};

struct ledger {
	uint64_t seed[2];
	int state_changed; /* ledger_state_changed() */
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
	struct ledger_fpset fp;
	uint8_t epoch;	  /* current mark: 0 or MF_EPOCH */
	uint8_t resync;	  /* inside resync_begin .. resync_end */
	uint32_t n_pages; /* port pages allocated, for the byte count */
	uint64_t nat, local, other;
	uint64_t silent; /* live entries without MF_EVENTS / FP_EVENTS */
	uint32_t live_gws, live_hosts, live_dests;
	ledger_sweep_fn sweep_fn; /* maplog: told of each swept mapping */
	void *sweep_arg;
};

/* ---- hash indexes ---- */

typedef int (*ledger_eq_fn)(const struct ledger *l, uint32_t idx,
			    const void *key);

/* Rebuilds ix with ncap slots (a power of two), rehashing what it holds.
 * Returns 0, or -1 (ix unchanged). */
static int ledger_index_resize(struct ledger_index *ix, uint32_t ncap)
{
	struct ledger_islot *ns = calloc(ncap, sizeof(*ns));

	if (!ns)
		return -1;
	for (uint32_t i = 0; ix->slots && i <= ix->mask; i++) {
		struct ledger_islot s = ix->slots[i];
		uint32_t j;

		if (!s.idx1)
			continue;
		for (j = s.hash & (ncap - 1); ns[j].idx1; j = (j + 1) & (ncap - 1))
			;
		ns[j] = s;
	}
	free(ix->slots);
	ix->slots = ns;
	ix->mask = ncap - 1;
	return 0;
}

static int ledger_index_grow(struct ledger_index *ix)
{
	return ledger_index_resize(ix, ix->slots ? (ix->mask + 1) * 2 : 64);
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

/* Adds element idx, known not to be there yet. */
static void ledger_index_insert(struct ledger_index *ix, uint32_t hash,
				uint32_t idx)
{
	uint32_t j;

	for (j = hash & ix->mask; ix->slots[j].idx1; j = (j + 1) & ix->mask)
		;
	ix->slots[j].idx1 = idx + 1;
	ix->slots[j].hash = hash;
	ix->used++;
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

static uint32_t ledger_gw_hash(const struct ledger *l,
			       const struct ledger_gw_key *k)
{
	return ledger_hash_addr(l->seed, k->ip,
				((uint64_t)k->family << 8) | k->proto);
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
				uint32_t _nc = (l)->cap ? (l)->cap * 2 : 4;    \
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

static uint32_t ledger_gw_get(const struct ledger *cl, uint8_t family,
			      uint8_t proto, const uint8_t ip[16], int create)
{
	struct ledger *l = (struct ledger *)cl; /* only written when create */
	struct ledger_gw_key k = { family, proto, ip };
	uint32_t h = ledger_gw_hash(l, &k), i;
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

static uint32_t ledger_host_hash(const struct ledger *l, uint32_t gw,
				 const uint8_t ip[16])
{
	return ledger_hash_addr(l->seed, ip, gw);
}

static uint32_t ledger_host_get(struct ledger *l, uint32_t gw,
				const uint8_t ip[16])
{
	struct ledger_host_key k = { gw, ip };
	uint32_t h = ledger_host_hash(l, gw, ip), i;
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

static uint32_t ledger_dest_hash(const struct ledger *l,
				 const struct ledger_dest_key *k)
{
	return ledger_hash_addr(l->seed, k->ip,
				((uint64_t)k->gw << 32) |
					((uint32_t)k->zone << 16) | k->port);
}

/* The index hash of element i of each vector. */
static uint32_t ledger_gw_hash_of(const struct ledger *l, uint32_t i)
{
	const struct ledger_gw *g = &l->gws[i];
	struct ledger_gw_key k = { g->ip.family, g->proto, g->ip.bytes };

	return ledger_gw_hash(l, &k);
}

static uint32_t ledger_host_hash_of(const struct ledger *l, uint32_t i)
{
	return ledger_host_hash(l, l->hosts[i].gw, l->hosts[i].ip);
}

static uint32_t ledger_dest_hash_of(const struct ledger *l, uint32_t i)
{
	const struct ledger_dest *d = &l->dests[i];
	struct ledger_dest_key k = { d->gw, d->zone, d->port, d->ip };

	return ledger_dest_hash(l, &k);
}

static int ledger_dest_eq(const struct ledger *l, uint32_t idx,
			  const void *key)
{
	const struct ledger_dest_key *k = key;
	const struct ledger_dest *d = &l->dests[idx];

	return d->gw == k->gw && d->port == k->port && d->zone == k->zone &&
	       memcmp(d->ip, k->ip, 16) == 0;
}

static uint32_t ledger_dest_get(const struct ledger *cl, uint32_t gw,
				uint16_t zone, const uint8_t ip[16],
				uint16_t port, int create)
{
	struct ledger *l = (struct ledger *)cl; /* only written when create */
	struct ledger_dest_key k = { gw, zone, port, ip };
	uint32_t h = ledger_dest_hash(l, &k), i;
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

static inline uint32_t ledger_mhash(uint64_t seed, uint32_t dest1,
				    uint16_t port)
{
	return (uint32_t)ledger_fmix((((uint64_t)dest1 << 16) | port) ^ seed);
}

/* Rebuilds the table with ncap slots (a power of two, > used).  Returns
 * 0, or -1 (t unchanged). */
static int ledger_mt_resize(struct ledger_mtab *t, uint32_t ncap)
{
	uint32_t ocap = t->r ? t->mask + 1 : 0;
	struct ledger_mrec *nr = ledger_map((size_t)ncap * sizeof(*nr));

	if (!nr)
		return -1;
	for (uint32_t i = 0; i < ocap; i++) {
		struct ledger_mrec *r = &t->r[i];
		uint32_t j;

		if (!r->dest1)
			continue;
		for (j = ledger_mhash(t->seed, r->dest1, r->port) & (ncap - 1);
		     nr[j].dest1; j = (j + 1) & (ncap - 1))
			;
		nr[j] = *r;
	}
	ledger_unmap(t->r, (size_t)ocap * sizeof(*t->r));
	t->r = nr;
	t->mask = ncap - 1;
	return 0;
}

static int ledger_mt_grow(struct ledger_mtab *t)
{
	return ledger_mt_resize(t, t->r ? (t->mask + 1) * 2 : TABLE_MIN);
}

/* Returns the record with the key, or the empty slot where it would go. */
static struct ledger_mrec *ledger_mt_probe(const struct ledger_mtab *t,
					   uint32_t dest1, uint16_t port)
{
	uint32_t i = ledger_mhash(t->seed, dest1, port) & t->mask;

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
		home = ledger_mhash(t->seed, t->r[j].dest1, t->r[j].port) &
		       t->mask;
		if (ledger_fills_hole(i, j, home)) {
			t->r[i] = t->r[j];
			i = j;
		}
	}
	memset(&t->r[i], 0, sizeof(t->r[i]));
	t->used--;
}

/* ---- host-port table ---- */

static inline uint32_t ledger_hphash(uint64_t seed, uint32_t host,
				     uint16_t port)
{
	return (uint32_t)ledger_fmix((((uint64_t)host << 16) | port) ^ seed);
}

static int ledger_hp_resize(struct ledger_hptab *t, uint32_t ncap)
{
	uint32_t ocap = t->r ? t->mask + 1 : 0;
	struct ledger_hprec *nr = ledger_map((size_t)ncap * sizeof(*nr));

	if (!nr)
		return -1;
	for (uint32_t i = 0; i < ocap; i++) {
		struct ledger_hprec *r = &t->r[i];
		uint32_t j;

		if (!r->count)
			continue;
		for (j = ledger_hphash(t->seed, r->host, r->port) & (ncap - 1);
		     nr[j].count; j = (j + 1) & (ncap - 1))
			;
		nr[j] = *r;
	}
	ledger_unmap(t->r, (size_t)ocap * sizeof(*t->r));
	t->r = nr;
	t->mask = ncap - 1;
	return 0;
}

static int ledger_hp_grow(struct ledger_hptab *t)
{
	return ledger_hp_resize(t, t->r ? (t->mask + 1) * 2 : TABLE_MIN);
}

static struct ledger_hprec *ledger_hp_probe(const struct ledger_hptab *t,
					    uint32_t host, uint16_t port)
{
	uint32_t i = ledger_hphash(t->seed, host, port) & t->mask;

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
		home = ledger_hphash(t->seed, t->r[j].host, t->r[j].port) &
		       t->mask;
		if (ledger_fills_hole(i, j, home)) {
			t->r[i] = t->r[j];
			i = j;
		}
	}
	memset(&t->r[i], 0, sizeof(t->r[i]));
	t->used--;
}

/* ---- fingerprint set ---- */

static int ledger_fp_resize(struct ledger_fpset *t, uint32_t ncap)
{
	uint32_t ocap = t->v ? t->mask + 1 : 0;
	uint64_t *nv = ledger_map((size_t)ncap * sizeof(*nv));

	if (!nv)
		return -1;
	for (uint32_t i = 0; i < ocap; i++) {
		uint32_t j;

		if (!t->v[i])
			continue;
		for (j = (uint32_t)(t->v[i] & FP_MASK) & (ncap - 1); nv[j];
		     j = (j + 1) & (ncap - 1))
			;
		nv[j] = t->v[i];
	}
	ledger_unmap(t->v, (size_t)ocap * sizeof(*t->v));
	t->v = nv;
	t->mask = ncap - 1;
	return 0;
}

/* Returns the slot holding fp, or the empty slot where it would go. */
static uint64_t *ledger_fp_probe(const struct ledger_fpset *t, uint64_t fp)
{
	uint32_t i = (uint32_t)fp & t->mask;

	for (;; i = (i + 1) & t->mask)
		if (!t->v[i] || (t->v[i] & FP_MASK) == fp)
			return &t->v[i];
}

/* Makes room for one more slot.  Returns 0, or -1 (nothing changed). */
static int ledger_fp_reserve(struct ledger_fpset *t)
{
	if ((t->used + 1) * 4 > (t->mask + 1) * 3)
		return ledger_fp_resize(t, (t->mask + 1) * 2);
	return 0;
}

static void ledger_fp_delete(struct ledger_fpset *t, uint64_t *hole)
{
	uint32_t i = (uint32_t)(hole - t->v), j = i;

	if (*hole & FP_DEAD)
		t->dead--;
	for (;;) {
		uint32_t home;

		j = (j + 1) & t->mask;
		if (!t->v[j])
			break;
		home = (uint32_t)(t->v[j] & FP_MASK) & t->mask;
		if (ledger_fills_hole(i, j, home)) {
			t->v[i] = t->v[j];
			i = j;
		}
	}
	t->v[i] = 0;
	t->used--;
}

/* Leaves a tombstone for fp (during a resync).  A tombstone that cannot be
 * stored (ENOMEM) only costs exactness of this resync: the caller's resync
 * will be repeated by the collector, which sees the error. */
static int ledger_fp_bury(struct ledger_fpset *t, uint64_t fp)
{
	uint64_t *s;

	if (ledger_fp_reserve(t) < 0)
		return -1;
	s = ledger_fp_probe(t, fp);
	if (!*s) { /* a live or dead entry of that key stays as it is */
		*s = fp | FP_DEAD;
		t->used++;
		t->dead++;
	}
	return 0;
}

uint64_t ledger_fingerprint(const struct ledger *l,
			    const struct ledger_mapping *m)
{
	uint64_t w[5], h = l->seed[1];

	memcpy(&w[0], m->public_ip, 8);
	memcpy(&w[1], m->public_ip + 8, 8);
	memcpy(&w[2], m->dest_ip, 8);
	memcpy(&w[3], m->dest_ip + 8, 8);
	w[4] = (uint64_t)m->family << 56 | (uint64_t)m->proto << 48 |
	       (uint64_t)m->zone << 32 | (uint64_t)m->public_port << 16 |
	       m->dest_port;
	/* each step is a bijection of h for a given word, so two different
	 * keys of this fixed length never collide before truncation */
	for (int i = 0; i < 5; i++)
		h = ledger_fmix(h ^ w[i] ^ l->seed[0]);
	h &= FP_MASK;
	return h ? h : 1;
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

/* Raises the gateway's high-water marks to what it holds now. */
static inline void ledger_peak_gw(struct ledger_gw *g)
{
	if (g->ports_in_use > g->peak_ports)
		g->peak_ports = g->ports_in_use;
	if (g->mappings > g->peak_mappings)
		g->peak_mappings = g->mappings;
	if (g->states[NS_TCP_TIME_WAIT] > g->peak_tw)
		g->peak_tw = g->states[NS_TCP_TIME_WAIT];
}

/* A connection made while we listened (a NEW event), for the rates. */
static void ledger_created(struct ledger *l, uint32_t gwi, uint32_t di,
			   uint32_t hi)
{
	l->gws[gwi].created++;
	l->dests[di].created++;
	l->hosts[hi].created++;
	ledger_touch_gw(l, gwi);
	ledger_touch_dest(l, di);
	ledger_touch_host(l, hi);
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
	if ((*ref)++ == 0) {
		g->ports_in_use++;
		g->page_used[port / PAGE_PORTS]++;
	}
	if (g->proto == IPPROTO_TCP)
		g->states[state]++;
	if (d->mappings++ == 0) {
		g->dests++;
		l->live_dests++;
	}
	d->ranges[MF_RANGE(flags)]++;
	d->ranges_seen |= (uint8_t)(1u << MF_RANGE(flags));
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
	ledger_peak_gw(g);
	if (d->mappings > d->peak)
		d->peak = d->mappings;
	if (h->mappings > h->peak)
		h->peak = h->mappings;
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
	unsigned page = r->port / PAGE_PORTS;
	uint32_t *ref = &g->pages[page][r->port % PAGE_PORTS];

	if (--g->mappings == 0)
		l->live_gws--;
	if (--(*ref) == 0) {
		g->ports_in_use--;
		g->page_used[page]--; /* freed when empty, at the snapshot */
	}
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

static void ledger_seed(uint64_t seed[2])
{
	if (getrandom(seed, 2 * sizeof(seed[0]), GRND_NONBLOCK) !=
	    (ssize_t)(2 * sizeof(seed[0]))) {
		/* no entropy yet (early boot): still unpredictable enough
		 * to an outsider, and never the same twice */
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		seed[0] = ledger_fmix((uint64_t)ts.tv_nsec ^
				      ((uint64_t)getpid() << 32));
		seed[1] = ledger_fmix((uint64_t)ts.tv_sec ^
				      (uint64_t)(uintptr_t)seed);
	}
}

struct ledger *ledger_new(void)
{
	struct ledger *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	ledger_seed(l->seed);
	l->mt.seed = ledger_fmix(l->seed[0] + 1);
	l->hp.seed = ledger_fmix(l->seed[1] + 2);
	l->free_gw = l->free_host = l->free_dest = NONE32;
	if (ledger_mt_grow(&l->mt) < 0 || ledger_hp_grow(&l->hp) < 0 ||
	    ledger_fp_resize(&l->fp, TABLE_MIN) < 0 ||
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
		for (unsigned p = 0; p < N_PAGES; p++)
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
	if (l->fp.v)
		ledger_unmap(l->fp.v, (size_t)(l->fp.mask + 1) * sizeof(*l->fp.v));
	free(l);
}

static uint8_t ledger_flags(const struct ledger *l, const struct ledger_mapping *m)
{
	return (uint8_t)(l->epoch | (m->kind == NS_KIND_LOCAL ? MF_LOCAL : 0) |
			 (m->range << MF_RANGE_SHIFT));
}

/* The mapping record with m's key, or NULL; *di gets its bucket. */
static struct ledger_mrec *ledger_find(const struct ledger *l,
				       const struct ledger_mapping *m,
				       uint32_t *di)
{
	uint32_t gwi;
	struct ledger_mrec *r;

	gwi = ledger_gw_get(l, m->family, m->proto, m->public_ip, 0);
	if (gwi == NONE32)
		return NULL;
	*di = ledger_dest_get(l, gwi, m->zone, m->dest_ip, m->dest_port, 0);
	if (*di == NONE32)
		return NULL;
	r = ledger_mt_probe(&l->mt, *di + 1, m->public_port);
	return r->dest1 ? r : NULL;
}

/* Marks an existing mapping record as seen now (by an event, or by a dump
 * record that may not override it), without changing what it counts. */
static int ledger_mark(struct ledger *l, struct ledger_mrec *r, int from_dump)
{
	if (from_dump && l->resync && (r->flags & MF_EPOCH) == l->epoch)
		return LEDGER_KEPT;
	if (!from_dump && !(r->flags & MF_EVENTS)) {
		r->flags |= MF_EVENTS;
		l->silent--;
	}
	r->flags = (uint8_t)((r->flags & ~MF_EPOCH) | l->epoch);
	return LEDGER_UNCHANGED;
}

/* An OTHER entry: kept as a fingerprint. */
static int ledger_upsert_other(struct ledger *l, const struct ledger_mapping *m,
			       int source)
{
	int from_dump = source == LEDGER_DUMP || source == LEDGER_DUMP_REPORTED;
	uint64_t fp = ledger_fingerprint(l, m), epoch, *s;
	uint32_t di;
	struct ledger_mrec *r;

	/* classified once: a key known as a mapping stays one */
	if ((r = ledger_find(l, m, &di)))
		return ledger_mark(l, r, from_dump);
	if (ledger_fp_reserve(&l->fp) < 0) {
		errno = ENOMEM;
		return -1;
	}
	epoch = l->epoch ? FP_EPOCH : 0;
	s = ledger_fp_probe(&l->fp, fp);
	if (*s && !(*s & FP_DEAD)) {
		if (from_dump && l->resync && (*s & FP_EPOCH) == epoch)
			return LEDGER_KEPT;
		if (!from_dump && !(*s & FP_EVENTS)) {
			*s |= FP_EVENTS;
			l->silent--;
		}
		*s = (*s & ~FP_EPOCH) | epoch;
		return LEDGER_UNCHANGED;
	}
	if (*s && from_dump)
		return LEDGER_KEPT; /* destroyed after this record was read */
	if (*s)
		l->fp.dead--; /* a NEW after the DESTROY: alive again */
	else
		l->fp.used++;
	*s = fp | epoch;
	if (!from_dump || source == LEDGER_DUMP_REPORTED)
		*s |= FP_EVENTS;
	else
		l->silent++;
	l->other++;
	return LEDGER_ADDED;
}

int ledger_state_changed(const struct ledger *l)
{
	return l->state_changed;
}

int ledger_upsert(struct ledger *l, const struct ledger_mapping *m,
		  int source)
{
	uint32_t gwi, di, hi;
	struct ledger_mrec *r;
	uint8_t flags, state;
	int had, from_dump = source == LEDGER_DUMP ||
			     source == LEDGER_DUMP_REPORTED;
	int rc;

	l->state_changed = 0;
	if (m->kind == NS_KIND_OTHER)
		return ledger_upsert_other(l, m, source);
	if (m->kind != NS_KIND_NAT && m->kind != NS_KIND_LOCAL) {
		errno = EINVAL;
		return -1;
	}
	if (m->range >= LEDGER_RANGES) {
		errno = EINVAL;
		return -1;
	}
	if (m->kind == NS_KIND_LOCAL && l->other) {
		/* classified once: an OTHER entry stays OTHER when its
		 * address becomes one of ours */
		uint64_t *s = ledger_fp_probe(&l->fp, ledger_fingerprint(l, m));

		if (*s && !(*s & FP_DEAD)) {
			struct ledger_mapping o = *m;

			o.kind = NS_KIND_OTHER;
			return ledger_upsert_other(l, &o, source);
		}
	}
	gwi = ledger_gw_get(l, m->family, m->proto, m->public_ip, 1);
	if (gwi == NONE32)
		goto nomem;
	di = ledger_dest_get(l, gwi, m->zone, m->dest_ip, m->dest_port, 1);
	if (di == NONE32)
		goto nomem;
	r = ledger_mt_probe(&l->mt, di + 1, m->public_port);
	had = r->dest1 != 0;
	if (had && from_dump && l->resync &&
	    (r->flags & MF_EPOCH) == l->epoch)
		return LEDGER_KEPT; /* an event (or the dump) got here first */
	if (!had && from_dump && l->resync && l->fp.dead) {
		uint64_t *s = ledger_fp_probe(&l->fp, ledger_fingerprint(l, m));

		if (*s & FP_DEAD)
			return LEDGER_KEPT; /* destroyed after it was dumped */
	}

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
				ledger_peak_gw(&l->gws[gwi]);
				ledger_touch_gw(l, gwi);
			}
			r->state = state;
			r->flags = flags;
			l->state_changed = changed;
			if (source == LEDGER_EVENT_NEW)
				ledger_created(l, gwi, di, hi);
			return changed ? LEDGER_CHANGED : LEDGER_UNCHANGED;
		}
	}
	/* From here nothing may fail half way. */
	if (ledger_reserve(l, gwi, m->public_port) < 0)
		goto nomem;
	r = ledger_mt_probe(&l->mt, di + 1, m->public_port); /* may have moved */
	if (had) {
		l->state_changed = r->state != state;
		ledger_sub_counts(l, di, r);
	} else {
		r->dest1 = di + 1;
		r->port = m->public_port;
		l->mt.used++;
	}
	r->host = hi;
	r->state = state;
	r->flags = flags;
	ledger_add_counts(l, gwi, di, hi, m->public_port, state, flags);
	rc = had ? LEDGER_CHANGED : LEDGER_ADDED;
	if (source == LEDGER_EVENT_NEW)
		ledger_created(l, gwi, di, hi);
	return rc;
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
	__builtin_prefetch(&l->mt.r[ledger_mhash(l->mt.seed, di + 1,
						 m->public_port) &
				    l->mt.mask]);
	hk = (struct ledger_host_key){ gwi, m->host_ip };
	h = ledger_host_hash(l, gwi, m->host_ip);
	s = ledger_index_probe(l, &l->host_idx, h, &hk, ledger_host_eq);
	if (s->idx1)
		__builtin_prefetch(&l->hp.r[ledger_hphash(l->hp.seed,
							  s->idx1 - 1,
							  m->public_port) &
					    l->hp.mask]);
}

int ledger_remove(struct ledger *l, const struct ledger_mapping *m)
{
	uint32_t di;
	struct ledger_mrec *r = ledger_find(l, m, &di);
	uint64_t fp, *s;

	/* Inside a resync every removal leaves a tombstone, so that a dump
	 * record read after this DESTROY (but taken before it) cannot bring
	 * the entry back; it is a fingerprint, whatever the kind, and it
	 * goes at the end of the resync. */
	if (r) {
		ledger_sub_counts(l, di, r);
		ledger_mt_delete(&l->mt, r);
		if (l->resync)
			ledger_fp_bury(&l->fp, ledger_fingerprint(l, m));
		return 1;
	}
	fp = ledger_fingerprint(l, m);
	s = ledger_fp_probe(&l->fp, fp);
	if (*s && !(*s & FP_DEAD)) {
		if (!(*s & FP_EVENTS))
			l->silent--;
		l->other--;
		if (l->resync) {
			*s = fp | FP_DEAD;
			l->fp.dead++;
		} else {
			ledger_fp_delete(&l->fp, s);
		}
		return 2;
	}
	if (l->resync && !*s)
		ledger_fp_bury(&l->fp, fp);
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

/* Walks the fingerprint set, deleting the tombstones and, when sweep is
 * set, the unmarked entries (counted in *sw), else marking every
 * entry with the current epoch.  Deleting shifts later slots back into
 * slot i, so i is examined again after each deletion. */
static void ledger_fp_settle(struct ledger *l, int sweep,
			     struct ledger_sweep *sw)
{
	uint64_t epoch = l->epoch ? FP_EPOCH : 0;
	uint32_t i = 0, cap = l->fp.mask + 1;

	while (i < cap) {
		uint64_t *s = &l->fp.v[i];

		if (*s && ((*s & FP_DEAD) ||
			   (sweep && (*s & FP_EPOCH) != epoch))) {
			if (!(*s & FP_DEAD)) {
				if (!(*s & FP_EVENTS)) {
					l->silent--;
					sw->others_silent++;
				}
				l->other--;
				sw->others++;
			}
			ledger_fp_delete(&l->fp, s);
			continue;
		}
		if (*s)
			*s = (*s & ~FP_EPOCH) | epoch;
		i++;
	}
}

/* ---- maplog (issue 7): swept mappings are reported ---- */

void ledger_set_sweep_hook(struct ledger *l, ledger_sweep_fn fn, void *arg)
{
	l->sweep_fn = fn;
	l->sweep_arg = arg;
}

static void ledger_report_sweep(struct ledger *l, const struct ledger_mrec *r)
{
	const struct ledger_dest *d = &l->dests[r->dest1 - 1];
	struct ledger_mapping key, m;

	memset(&key, 0, sizeof(key));
	key.family = l->gws[d->gw].ip.family;
	key.proto = l->gws[d->gw].proto;
	key.zone = d->zone;
	key.public_port = r->port;
	key.dest_port = d->port;
	memcpy(key.public_ip, l->gws[d->gw].ip.bytes, 16);
	memcpy(key.dest_ip, d->ip, 16);
	if (ledger_lookup(l, &key, &m))
		l->sweep_fn(l->sweep_arg, &m);
}

/* ---- end maplog ---- */

uint64_t ledger_resync_end(struct ledger *l, struct ledger_sweep *out)
{
	struct ledger_sweep sw = { 0 };
	uint32_t i = 0, cap = l->mt.mask + 1;

	/* Deleting shifts later records back into slot i, so i is examined
	 * again after each deletion; records that wrap round from the start
	 * of the table were already examined and kept. */
	while (i < cap) {
		struct ledger_mrec *r = &l->mt.r[i];

		if (r->dest1 && (r->flags & MF_EPOCH) != l->epoch) {
			if (l->sweep_fn) /* maplog */
				ledger_report_sweep(l, r);
			sw.mappings_silent += !(r->flags & MF_EVENTS);
			ledger_sub_counts(l, r->dest1 - 1, r);
			ledger_mt_delete(&l->mt, r);
			sw.mappings++;
			continue;
		}
		i++;
	}
	ledger_fp_settle(l, 1, &sw);
	if (out)
		*out = sw;
	l->resync = 0;
	return sw.mappings;
}

void ledger_resync_abort(struct ledger *l)
{
	struct ledger_sweep none = { 0 };

	/* Everything gets the current mark, so that the next mark phase
	 * starts with every entry unmarked as usual. */
	for (uint32_t i = 0; i <= l->mt.mask; i++)
		if (l->mt.r[i].dest1)
			l->mt.r[i].flags = (uint8_t)((l->mt.r[i].flags & ~MF_EPOCH) |
						     l->epoch);
	ledger_fp_settle(l, 0, &none);
	l->resync = 0;
}

int ledger_lookup(const struct ledger *l, const struct ledger_mapping *m,
		  struct ledger_mapping *out)
{
	uint32_t di;
	const struct ledger_mrec *r = ledger_find(l, m, &di);
	const struct ledger_dest *d;
	const struct ledger_gw *g;

	if (!r)
		return 0;
	d = &l->dests[di];
	g = &l->gws[d->gw];
	memset(out, 0, sizeof(*out));
	out->family = g->ip.family;
	out->proto = g->proto;
	out->kind = r->flags & MF_LOCAL ? NS_KIND_LOCAL : NS_KIND_NAT;
	out->range = (uint8_t)MF_RANGE(r->flags);
	out->tcp_state = g->proto == IPPROTO_TCP ? r->state
						 : NS_TCP_STATE_UNKNOWN;
	out->zone = d->zone;
	out->public_port = r->port;
	out->dest_port = d->port;
	memcpy(out->public_ip, g->ip.bytes, 16);
	memcpy(out->host_ip, l->hosts[r->host].ip, 16);
	memcpy(out->dest_ip, d->ip, 16);
	out->silent = !(r->flags & MF_EVENTS);
	return 1;
}

unsigned ledger_sample(const struct ledger *l, uint32_t *cursor,
		       struct ledger_mapping *out, unsigned n)
{
	uint32_t cap = l->mt.mask + 1, i = *cursor & l->mt.mask;
	unsigned got = 0;

	for (uint32_t seen = 0; got < n && seen < cap; seen++) {
		const struct ledger_mrec *r = &l->mt.r[i];

		i = (i + 1) & l->mt.mask;
		if (!r->dest1)
			continue;
		{
			const struct ledger_dest *d = &l->dests[r->dest1 - 1];
			const struct ledger_gw *g = &l->gws[d->gw];
			struct ledger_mapping key;

			memset(&key, 0, sizeof(key));
			key.family = g->ip.family;
			key.proto = g->proto;
			key.zone = d->zone;
			key.public_port = r->port;
			key.dest_port = d->port;
			memcpy(key.public_ip, g->ip.bytes, 16);
			memcpy(key.dest_ip, d->ip, 16);
			ledger_lookup(l, &key, &out[got++]);
		}
	}
	*cursor = i;
	return got;
}

uint32_t ledger_probe_max(const struct ledger *l)
{
	uint32_t worst = 0;

	for (uint32_t i = 0; i <= l->mt.mask; i++) {
		const struct ledger_mrec *r = &l->mt.r[i];
		uint32_t home, dist;

		if (!r->dest1)
			continue;
		home = ledger_mhash(l->mt.seed, r->dest1, r->port) & l->mt.mask;
		dist = (i - home) & l->mt.mask;
		if (dist + 1 > worst)
			worst = dist + 1;
	}
	return worst;
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
		l, &l->host_idx, ledger_host_hash(l, h->gw, h->ip), &k,
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
		l, &l->dest_idx, ledger_dest_hash(l, &k), &k, ledger_dest_eq);

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
		l, &l->gw_idx, ledger_gw_hash(l, &k), &k, ledger_gw_eq);

	ledger_index_delete(&l->gw_idx, s);
	for (unsigned p = 0; p < N_PAGES; p++) {
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

/* Clears the dirty lists and forgets the aggregates that emptied: nothing
 * points at an empty aggregate (tombstones are fingerprints), so this is
 * safe during a resync too.  Hosts and buckets go before their gateway. */
static void ledger_settle(struct ledger *l)
{
	for (uint32_t k = 0; k < l->dirty_host.n; k++) {
		uint32_t i = l->dirty_host.v[k];

		l->hosts[i].dirty = 0;
		if (l->hosts[i].mappings == 0)
			ledger_free_host(l, i);
	}
	l->dirty_host.n = 0;
	for (uint32_t k = 0; k < l->dirty_dest.n; k++) {
		uint32_t i = l->dirty_dest.v[k];

		l->dests[i].dirty = 0;
		if (l->dests[i].mappings == 0)
			ledger_free_dest(l, i);
	}
	l->dirty_dest.n = 0;
	for (uint32_t k = 0; k < l->dirty_gw.n; k++) {
		uint32_t i = l->dirty_gw.v[k];
		struct ledger_gw *g = &l->gws[i];

		g->dirty = 0;
		if (g->mappings == 0) {
			ledger_free_gw(l, i);
			continue;
		}
		/* empty port pages go back: memory follows live ports */
		for (unsigned p = 0; p < N_PAGES; p++) {
			if (g->pages[p] && !g->page_used[p]) {
				free(g->pages[p]);
				g->pages[p] = NULL;
				l->n_pages--;
			}
		}
	}
	l->dirty_gw.n = 0;
}

/* ---- giving memory back ---- */

/* Moves the live elements of an aggregate vector into nv (allocated by the
 * caller with room for them), writing old index -> new index into map[]. */
#define LEDGER_COMPACT(l, vec, n, cap, freehead, nv, ncap, map)               \
	do {                                                                   \
		uint32_t _j = 0;                                               \
		for (uint32_t _i = 0; _i < (l)->n; _i++) {                     \
			(map)[_i] = NONE32;                                    \
			if (!(l)->vec[_i].live)                                \
				continue;                                      \
			(map)[_i] = _j;                                        \
			(nv)[_j++] = (l)->vec[_i];                             \
		}                                                              \
		free((l)->vec);                                                \
		(l)->vec = (nv);                                               \
		(l)->n = _j;                                                   \
		(l)->cap = (ncap);                                             \
		(l)->freehead = NONE32;                                        \
	} while (0)

/* Renumbers the aggregates densely and rebuilds every table that refers
 * to them, at fitting sizes.  Only when no dirty list is pending (after a
 * settle) and no resync runs.  Returns 0, or -1 with nothing changed. */
static int ledger_compact(struct ledger *l)
{
	uint32_t ng = l->live_gws + l->live_gws / 2 + 4;
	uint32_t nh = l->live_hosts + l->live_hosts / 2 + 4;
	uint32_t nd = l->live_dests + l->live_dests / 2 + 4;
	uint32_t *mg = malloc((l->n_gws + 1) * sizeof(*mg));
	uint32_t *mh = malloc((l->n_hosts + 1) * sizeof(*mh));
	uint32_t *md = malloc((l->n_dests + 1) * sizeof(*md));
	struct ledger_gw *vg = calloc(ng, sizeof(*vg));
	struct ledger_host *vh = calloc(nh, sizeof(*vh));
	struct ledger_dest *vd = calloc(nd, sizeof(*vd));
	struct ledger_mtab nmt = { .seed = l->mt.seed };
	struct ledger_hptab nhp = { .seed = l->hp.seed };
	struct ledger_index ngi = { 0 }, nhi = { 0 }, ndi = { 0 };
	int rc = -1;

	/* everything new first, so that a failure changes nothing */
	if (!mg || !mh || !md || !vg || !vh || !vd ||
	    ledger_mt_resize(&nmt, ledger_fit(l->mt.used)) < 0 ||
	    ledger_hp_resize(&nhp, ledger_fit(l->hp.used)) < 0 ||
	    ledger_index_resize(&ngi, ledger_index_fit(l->live_gws)) < 0 ||
	    ledger_index_resize(&nhi, ledger_index_fit(l->live_hosts)) < 0 ||
	    ledger_index_resize(&ndi, ledger_index_fit(l->live_dests)) < 0) {
		free(vg);
		free(vh);
		free(vd);
		ledger_unmap(nmt.r, nmt.r ? (size_t)(nmt.mask + 1) *
						    sizeof(*nmt.r) : 0);
		ledger_unmap(nhp.r, nhp.r ? (size_t)(nhp.mask + 1) *
						    sizeof(*nhp.r) : 0);
		free(ngi.slots);
		free(nhi.slots);
		free(ndi.slots);
		goto out;
	}
	LEDGER_COMPACT(l, gws, n_gws, cap_gws, free_gw, vg, ng, mg);
	LEDGER_COMPACT(l, hosts, n_hosts, cap_hosts, free_host, vh, nh, mh);
	LEDGER_COMPACT(l, dests, n_dests, cap_dests, free_dest, vd, nd, md);
	for (uint32_t i = 0; i < l->n_hosts; i++)
		l->hosts[i].gw = mg[l->hosts[i].gw];
	for (uint32_t i = 0; i < l->n_dests; i++)
		l->dests[i].gw = mg[l->dests[i].gw];
	for (uint32_t i = 0; i <= l->mt.mask; i++) {
		struct ledger_mrec r = l->mt.r[i];
		uint32_t j;

		if (!r.dest1)
			continue;
		r.dest1 = md[r.dest1 - 1] + 1;
		r.host = mh[r.host];
		for (j = ledger_mhash(nmt.seed, r.dest1, r.port) & nmt.mask;
		     nmt.r[j].dest1; j = (j + 1) & nmt.mask)
			;
		nmt.r[j] = r;
		nmt.used++;
	}
	for (uint32_t i = 0; i <= l->hp.mask; i++) {
		struct ledger_hprec r = l->hp.r[i];
		uint32_t j;

		if (!r.count)
			continue;
		r.host = mh[r.host];
		for (j = ledger_hphash(nhp.seed, r.host, r.port) & nhp.mask;
		     nhp.r[j].count; j = (j + 1) & nhp.mask)
			;
		nhp.r[j] = r;
		nhp.used++;
	}
	ledger_unmap(l->mt.r, (size_t)(l->mt.mask + 1) * sizeof(*l->mt.r));
	ledger_unmap(l->hp.r, (size_t)(l->hp.mask + 1) * sizeof(*l->hp.r));
	l->mt = nmt;
	l->hp = nhp;
	free(l->gw_idx.slots);
	free(l->host_idx.slots);
	free(l->dest_idx.slots);
	l->gw_idx = ngi;
	l->host_idx = nhi;
	l->dest_idx = ndi;
	for (uint32_t i = 0; i < l->n_gws; i++)
		ledger_index_insert(&l->gw_idx, ledger_gw_hash_of(l, i), i);
	for (uint32_t i = 0; i < l->n_hosts; i++)
		ledger_index_insert(&l->host_idx, ledger_host_hash_of(l, i), i);
	for (uint32_t i = 0; i < l->n_dests; i++)
		ledger_index_insert(&l->dest_idx, ledger_dest_hash_of(l, i), i);
	rc = 0;
out:
	free(mg);
	free(mh);
	free(md);
	return rc;
}

/* Gives memory back after mass removals: compacts the aggregates when 3/4
 * of their slots are free, and shrinks a table that is below 1/8 full.
 * Failures only mean the memory stays for now. */
static void ledger_trim(struct ledger *l)
{
	struct ledger_list *lists[] = { &l->dirty_gw, &l->dirty_host,
					&l->dirty_dest };

	for (int i = 0; i < 3; i++) { /* empty after a settle */
		if (lists[i]->cap > 1024) {
			free(lists[i]->v);
			lists[i]->v = NULL;
			lists[i]->cap = 0;
		}
	}
	if ((l->cap_hosts > 256 && (uint64_t)l->live_hosts * 4 < l->cap_hosts) ||
	    (l->cap_dests > 256 && (uint64_t)l->live_dests * 4 < l->cap_dests) ||
	    (l->cap_gws > 64 && (uint64_t)l->live_gws * 4 < l->cap_gws)) {
		if (ledger_compact(l) == 0)
			return; /* rebuilt every table at its fitting size */
	}
	if (l->mt.mask + 1 > TABLE_MIN && (uint64_t)l->mt.used * 8 < l->mt.mask + 1)
		ledger_mt_resize(&l->mt, ledger_fit(l->mt.used));
	if (l->hp.mask + 1 > TABLE_MIN && (uint64_t)l->hp.used * 8 < l->hp.mask + 1)
		ledger_hp_resize(&l->hp, ledger_fit(l->hp.used));
	if (l->fp.mask + 1 > TABLE_MIN && (uint64_t)l->fp.used * 8 < l->fp.mask + 1)
		ledger_fp_resize(&l->fp, ledger_fit(l->fp.used));
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
	if (!l->resync)
		ledger_trim(l);
	return 0;
nomem:
	/* Nothing was forgotten: the dirty lists are intact for next time,
	 * which must be a full snapshot since this batch is partial. */
	errno = ENOMEM;
	return -1;
}

/* ---- history ---- */

/* A bucket's capacity over the period: the largest range any of its
 * mappings used since ledger_history() (it may hold none now). */
static uint32_t ledger_capacity_seen(const struct ledger_dest *d,
				     const uint32_t range_size[LEDGER_RANGES])
{
	uint32_t cap = ledger_capacity(d, range_size);

	for (int r = 0; r < LEDGER_RANGES; r++)
		if ((d->ranges_seen >> r & 1) && range_size[r] > cap)
			cap = range_size[r];
	return cap;
}

/* Is bucket a's peak closer to full than bucket b's? */
static int ledger_peak_worse(const struct ledger *l, uint32_t a, uint32_t b,
			     const uint32_t range_size[LEDGER_RANGES])
{
	const struct ledger_dest *da = &l->dests[a], *db;
	uint64_t lhs, rhs;

	if (b == NONE32)
		return 1;
	db = &l->dests[b];
	lhs = (uint64_t)da->peak * ledger_capacity_seen(db, range_size);
	rhs = (uint64_t)db->peak * ledger_capacity_seen(da, range_size);
	if (lhs != rhs)
		return lhs > rhs;
	return da->peak > db->peak;
}

/* Per gateway, a list of the best `top` aggregates of one period by one
 * key, best first: lists[g * top ...], n[g] used. */
struct ledger_toplist {
	uint32_t *v, *n;
	unsigned top;
	/* is aggregate a better than b? */
	int (*better)(const struct ledger *l, uint32_t a, uint32_t b,
		      const uint32_t *range_size);
};

static void ledger_top_add(const struct ledger *l, struct ledger_toplist *t,
			   uint32_t gw, uint32_t i, const uint32_t *rs)
{
	uint32_t *v = t->v + (size_t)gw * t->top, n = t->n[gw], j;

	if (n == t->top) {
		if (!t->better(l, i, v[n - 1], rs))
			return;
		n--; /* the last goes */
	}
	for (j = n; j > 0 && t->better(l, i, v[j - 1], rs); j--)
		v[j] = v[j - 1];
	v[j] = i;
	t->n[gw] = n + 1;
}

static int ledger_top_has(const struct ledger_toplist *t, uint32_t gw,
			  uint32_t i)
{
	for (uint32_t j = 0; j < t->n[gw]; j++)
		if (t->v[(size_t)gw * t->top + j] == i)
			return 1;
	return 0;
}

static int ledger_host_by_peak(const struct ledger *l, uint32_t a, uint32_t b,
			       const uint32_t *rs)
{
	const struct ledger_host *x = &l->hosts[a], *y = &l->hosts[b];

	(void)rs;
	if (x->peak != y->peak)
		return x->peak > y->peak;
	return x->created > y->created;
}

static int ledger_host_by_rate(const struct ledger *l, uint32_t a, uint32_t b,
			       const uint32_t *rs)
{
	const struct ledger_host *x = &l->hosts[a], *y = &l->hosts[b];

	(void)rs;
	if (x->created != y->created)
		return x->created > y->created;
	return x->peak > y->peak;
}

static int ledger_dest_by_peak(const struct ledger *l, uint32_t a, uint32_t b,
			       const uint32_t *rs)
{
	return ledger_peak_worse(l, a, b, rs);
}

static int ledger_dest_by_rate(const struct ledger *l, uint32_t a, uint32_t b,
			       const uint32_t *rs)
{
	const struct ledger_dest *x = &l->dests[a], *y = &l->dests[b];

	if (x->created != y->created)
		return x->created > y->created;
	return ledger_peak_worse(l, a, b, rs);
}

/* The hosts and buckets of one period worth keeping: per gateway, the top
 * by peak and the top by new mappings (a host that came and went within
 * the period is among them by its peak). */
static int ledger_history_top(struct ledger *l, struct store_batch *b,
			      unsigned top, const uint32_t *rs)
{
	size_t slots = (size_t)l->n_gws * top;
	uint32_t *mem = malloc((slots + l->n_gws) * 4 * sizeof(uint32_t));
	struct ledger_toplist t[4] = {
		{ mem, mem + 4 * slots, top, ledger_host_by_peak },
		{ mem + slots, mem + 4 * slots + l->n_gws, top,
		  ledger_host_by_rate },
		{ mem + 2 * slots, mem + 4 * slots + 2 * l->n_gws, top,
		  ledger_dest_by_peak },
		{ mem + 3 * slots, mem + 4 * slots + 3 * l->n_gws, top,
		  ledger_dest_by_rate },
	};
	int rc = -1;

	if (!l->n_gws) {
		free(mem);
		return 0;
	}
	if (!mem || !top)
		goto out;
	memset(mem + 4 * slots, 0, 4 * l->n_gws * sizeof(uint32_t));
	for (uint32_t i = 0; i < l->n_hosts; i++) {
		const struct ledger_host *ho = &l->hosts[i];

		if (!ho->live)
			continue;
		if (ho->peak)
			ledger_top_add(l, &t[0], ho->gw, i, rs);
		if (ho->created)
			ledger_top_add(l, &t[1], ho->gw, i, rs);
	}
	for (uint32_t i = 0; i < l->n_dests; i++) {
		const struct ledger_dest *d = &l->dests[i];

		if (!d->live)
			continue;
		if (d->peak)
			ledger_top_add(l, &t[2], d->gw, i, rs);
		if (d->created)
			ledger_top_add(l, &t[3], d->gw, i, rs);
	}
	for (uint32_t gw = 0; gw < l->n_gws; gw++) {
		const struct ledger_gw *g = &l->gws[gw];

		for (int list = 0; list < 2; list++)
		for (uint32_t k = 0; k < t[list].n[gw]; k++) {
			uint32_t i = t[list].v[(size_t)gw * top + k];
			const struct ledger_host *ho = &l->hosts[i];
			struct store_hist_host *row;

			if (list == 1 && ledger_top_has(&t[0], gw, i))
				continue;
			if (!(row = store_batch_add_hist_host(b)))
				goto out;
			row->end.gateway = g->ip;
			row->end.proto = g->proto;
			row->end.kind = ho->local ? NS_KIND_LOCAL : NS_KIND_NAT;
			ledger_addr(&row->end.ip, g->ip.family, ho->ip);
			row->end.mappings = ho->mappings;
			row->end.ports_in_use = ho->ports;
			row->mappings_peak = ho->peak;
			row->new_mappings = ho->created;
		}
		for (int list = 2; list < 4; list++)
		for (uint32_t k = 0; k < t[list].n[gw]; k++) {
			uint32_t i = t[list].v[(size_t)gw * top + k];
			const struct ledger_dest *d = &l->dests[i];
			struct store_hist_dest *row;

			if (list == 3 && ledger_top_has(&t[2], gw, i))
				continue;
			if (!(row = store_batch_add_hist_dest(b)))
				goto out;
			row->end.gateway = g->ip;
			row->end.proto = g->proto;
			row->end.zone = d->zone;
			ledger_addr(&row->end.ip, g->ip.family, d->ip);
			row->end.port = d->port;
			row->end.mappings = d->mappings;
			row->end.capacity = ledger_capacity_seen(d, rs);
			row->mappings_peak = d->peak;
			row->new_mappings = d->created;
		}
	}
	rc = 0;
out:
	free(mem);
	if (rc < 0)
		errno = ENOMEM;
	return rc;
}

int ledger_history(struct ledger *l, struct store_batch *b, unsigned top,
		   const uint32_t range_size[LEDGER_RANGES])
{
	struct store_history *h = &b->hist;

	/* the bucket of each gateway whose peak came closest to full */
	for (uint32_t i = 0; i < l->n_gws; i++)
		l->gws[i].worst = NONE32;
	for (uint32_t i = 0; i < l->n_dests; i++) {
		const struct ledger_dest *d = &l->dests[i];

		if (d->live && d->peak &&
		    ledger_peak_worse(l, i, l->gws[d->gw].worst, range_size))
			l->gws[d->gw].worst = i;
	}
	for (uint32_t i = 0; i < l->n_gws; i++) {
		struct ledger_gw *g = &l->gws[i];
		struct store_hist_gateway *row;

		if (!g->live || (!g->mappings && !g->dirty))
			continue;
		if (!(row = store_batch_add_hist_gateway(b)))
			goto nomem;
		row->end.ip = g->ip;
		row->end.proto = g->proto;
		row->end.ports_in_use = g->ports_in_use;
		row->end.mappings = g->mappings;
		row->end.hosts = g->hosts;
		row->end.destinations = g->dests;
		if (g->worst != NONE32) {
			const struct ledger_dest *d = &l->dests[g->worst];

			ledger_addr(&row->end.worst_ip, g->ip.family, d->ip);
			row->end.worst_port = d->port;
			row->end.worst_zone = d->zone;
			row->end.worst_mappings = d->peak;
			row->end.worst_capacity =
				ledger_capacity_seen(d, range_size);
		}
		if (g->proto == IPPROTO_TCP)
			memcpy(row->end.states, g->states, sizeof(g->states));
		row->ports_peak = g->peak_ports;
		row->mappings_peak = g->peak_mappings;
		row->time_wait_peak = g->peak_tw;
		row->new_mappings = g->created;
	}
	if (ledger_history_top(l, b, top, range_size) < 0)
		goto nomem;
	/* a new period starts from what is held now */
	for (uint32_t k = 0; k < l->dirty_gw.n; k++) {
		struct ledger_gw *g = &l->gws[l->dirty_gw.v[k]];

		g->peak_ports = g->ports_in_use;
		g->peak_mappings = g->mappings;
		g->peak_tw = g->states[NS_TCP_TIME_WAIT];
		g->created = 0;
	}
	for (uint32_t k = 0; k < l->dirty_host.n; k++) {
		struct ledger_host *ho = &l->hosts[l->dirty_host.v[k]];

		ho->peak = ho->mappings;
		ho->created = 0;
	}
	for (uint32_t k = 0; k < l->dirty_dest.n; k++) {
		struct ledger_dest *d = &l->dests[l->dirty_dest.v[k]];

		d->peak = d->mappings;
		d->created = 0;
		d->ranges_seen = 0;
		for (int r = 0; r < LEDGER_RANGES; r++)
			if (d->ranges[r])
				d->ranges_seen |= (uint8_t)(1u << r);
	}
	return 0;
nomem:
	h->n_gateways = h->n_hosts = h->n_dests = 0;
	errno = ENOMEM;
	return -1;
}

void ledger_get_stats(const struct ledger *l, struct ledger_stats *st)
{
	st->mappings_nat = l->nat;
	st->mappings_local = l->local;
	st->entries_other = l->other;
	st->mappings_silent = l->silent;
	st->tombstones = l->fp.dead;
	st->gateways = l->live_gws;
	st->hosts = l->live_hosts;
	st->destinations = l->live_dests;
	st->bytes = (size_t)(l->mt.mask + 1) * sizeof(*l->mt.r) +
		    (size_t)(l->hp.mask + 1) * sizeof(*l->hp.r) +
		    (size_t)(l->fp.mask + 1) * sizeof(*l->fp.v) +
		    (size_t)l->cap_gws * sizeof(*l->gws) +
		    (size_t)l->cap_hosts * sizeof(*l->hosts) +
		    (size_t)l->cap_dests * sizeof(*l->dests) +
		    (size_t)(l->gw_idx.mask + l->host_idx.mask +
			     l->dest_idx.mask + 3) * sizeof(struct ledger_islot) +
		    (size_t)(l->dirty_gw.cap + l->dirty_host.cap +
			     l->dirty_dest.cap) * sizeof(uint32_t) +
		    (size_t)l->n_pages * PAGE_PORTS * sizeof(uint32_t);
}
