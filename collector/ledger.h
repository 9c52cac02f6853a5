/*
 * ledger.h - the live mappings and every aggregate the API shows, updated
 * in O(1) per event, with no allocation on the hot path beyond amortised
 * table growth.
 *
 * A mapping is identified by its public side and destination: (family,
 * proto, zone, public ip, public port, destination ip, destination port) -
 * the reply tuple, which the kernel keeps unique.  Adding a mapping whose
 * key exists replaces it (a duplicate NEW changes nothing); removing an
 * unknown key changes nothing.
 *
 * Entries of kind OTHER (they hold no port of ours) are kept too, as a
 * set of 61-bit fingerprints of the same key (8 bytes each, no
 * aggregates), so that the ledger knows the exact number of entries it
 * follows and can be audited against the kernel's count.  A key is
 * classified once: an entry first seen as LOCAL stays LOCAL when the
 * address set changes, and likewise for OTHER.
 *
 * Resync: ledger_resync_begin() starts a mark phase; everything upserted
 * or removed after it is marked, dump records never override what an event
 * marked, a removal leaves a tombstone (a fingerprint, freed at the end)
 * so an older dump record cannot bring the entry back, and
 * ledger_resync_end() sweeps what was not seen.  ledger_resync_abort()
 * ends the phase without sweeping (a failed dump).  See tracker.c for why
 * this makes a dump racing with events exact.
 *
 * Memory stays proportional to the live entries: tombstones live only
 * during a resync, and tables and aggregate vectors shrink back when most
 * of what they held is gone.  Every hash is seeded per ledger from
 * getrandom(), so addresses and ports chosen by clients cannot force long
 * probe chains.
 *
 * Single-threaded: only the collector's thread touches a ledger.
 */
#ifndef NATSCOPE_LEDGER_H
#define NATSCOPE_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct store_batch;
struct ledger;

/* Where a mapping's port was drawn from: decides its bucket's capacity. */
enum ledger_range {
	LEDGER_RANGE_NAT_LOW = 0, /* SNAT, original port < 512: 1-511 */
	LEDGER_RANGE_NAT_MID,	  /* SNAT, original port 512-1023: 600-1023 */
	LEDGER_RANGE_NAT_HIGH,	  /* SNAT, original port >= 1024: 1024-65535 */
	LEDGER_RANGE_ICMP,	  /* ICMP echo ids: 0-65535 */
	LEDGER_RANGE_LOCAL,	  /* ip_local_port_range */
	LEDGER_RANGES
};

/* One classified conntrack entry (see classify.h). */
struct ledger_mapping {
	uint8_t family;
	uint8_t proto;
	uint8_t kind;	   /* enum ns_kind */
	uint8_t range;	   /* enum ledger_range */
	uint8_t tcp_state; /* or NS_TCP_STATE_UNKNOWN: keep what is known */
	uint16_t zone;
	uint16_t public_port;
	uint16_t dest_port;
	uint8_t public_ip[16];
	uint8_t host_ip[16];
	uint8_t dest_ip[16];
	uint8_t silent; /* out (ledger_sample, ledger_lookup): no event yet */
};

/* What ledger_upsert() did. */
enum ledger_result {
	LEDGER_ADDED = 0,
	LEDGER_UNCHANGED, /* same mapping already there */
	LEDGER_CHANGED,	  /* existed; host, range or state replaced */
	LEDGER_KEPT,	  /* dump record ignored: an event already marked it */
};

struct ledger_stats {
	uint64_t mappings_nat;
	uint64_t mappings_local;
	uint64_t entries_other; /* entries of kind OTHER */
	/* Entries (of every kind) known only from dumps: no event was ever
	 * seen for them.  With nf_conntrack_events=2 (the default) the kernel
	 * sends no events at all for entries created while nobody listened,
	 * so these change and vanish silently; only a new dump or a GET shows
	 * it. */
	uint64_t mappings_silent;
	uint64_t tombstones; /* during a resync */
	uint32_t gateways;
	uint32_t hosts;
	uint32_t destinations;
	size_t bytes; /* memory held by tables and aggregates */
};

/* Returns a new empty ledger with its own random hash seed, or NULL with
 * ENOMEM. */
struct ledger *ledger_new(void);
void ledger_free(struct ledger *l);

/* Where an upserted mapping was read. */
enum ledger_source {
	LEDGER_EVENT = 0, /* a NEW or UPDATE event */
	LEDGER_DUMP = 1,  /* a dump record; the kernel may never report this
			     entry (it may predate every listener) */
	LEDGER_DUMP_REPORTED = 2, /* a dump record of an entry created while
				     we listened: the kernel reports it */
	LEDGER_EVENT_NEW = 3, /* a NEW event: as LEDGER_EVENT, and the
				 mapping counts as created (history's rates),
				 even if a dump read it first */
};

/* Adds or updates an entry of any kind (for OTHER only the key fields
 * are read).  A dump record (source LEDGER_DUMP*) must not override,
 * during a resync, an entry an event already touched or removed.  An
 * entry first read with LEDGER_DUMP counts as silent (see ledger_stats)
 * until an event shows up for it.  Returns an enum ledger_result, or -1
 * with ENOMEM (the ledger is unchanged) or EINVAL (bad kind or range). */
int ledger_upsert(struct ledger *l, const struct ledger_mapping *m,
		  int source);

/* Whether the last ledger_upsert() changed an existing mapping's TCP
 * state (0 for an added one, another protocol, an unknown state, a
 * refusal or an error): the mapping log's state changes. */
int ledger_state_changed(const struct ledger *l);

/* Starts loading the table slots an upsert or remove of m will touch into
 * the cache.  The collector calls it for a batch of entries before
 * applying them, so the cache misses of a 1M-entry table overlap instead of
 * adding up.  Changes nothing. */
void ledger_prefetch(struct ledger *l, const struct ledger_mapping *m);

/* Removes the entry with m's key (only the key fields are read), whatever
 * its kind.  Returns 1 if it was a mapping (NAT or LOCAL), 2 if it was an
 * OTHER entry, 0 if unknown. */
int ledger_remove(struct ledger *l, const struct ledger_mapping *m);

/* Looks up the mapping (NAT or LOCAL) with m's key and fills *out with
 * everything the ledger knows of it.  Returns 1, or 0 if there is none. */
int ledger_lookup(const struct ledger *l, const struct ledger_mapping *m,
		  struct ledger_mapping *out);

/* Copies up to n mappings (NAT and LOCAL) into out[], walking the table
 * from slot *cursor on and wrapping; *cursor is left where the next call
 * goes on, so that calls in turn visit every mapping.  Returns how many
 * were copied (fewer than n only when the table holds fewer). */
unsigned ledger_sample(const struct ledger *l, uint32_t *cursor,
		       struct ledger_mapping *out, unsigned n);

/* A 61-bit fingerprint of m's key (seeded: stable within one ledger),
 * never 0.  Two different keys share one with probability 2^-61. */
uint64_t ledger_fingerprint(const struct ledger *l,
			    const struct ledger_mapping *m);

/* The longest probe run in the mapping table: how many slots a lookup
 * may visit (tests). */
uint32_t ledger_probe_max(const struct ledger *l);

/* Sizes the mapping table for this many mappings now, instead of growing
 * it step by step while a large dump is read.  Returns 0, or -1 with
 * ENOMEM (the ledger still works and grows as needed). */
int ledger_expect(struct ledger *l, uint64_t mappings);

/* Starts a mark phase (a resync dump is about to be read). */
void ledger_resync_begin(struct ledger *l);

/* What the sweep at the end of a resync removed. */
struct ledger_sweep {
	uint64_t mappings;	  /* NAT and LOCAL */
	uint64_t mappings_silent; /* of which known only from dumps */
	uint64_t others;	  /* OTHER entries */
	uint64_t others_silent;
};

/* Ends it: removes every entry neither seen in the dump nor touched by
 * an event since ledger_resync_begin(), and the tombstones.  Returns how
 * many mappings (NAT and LOCAL) were removed; *sw (may be NULL) gets the
 * details. */
uint64_t ledger_resync_end(struct ledger *l, struct ledger_sweep *sw);

/* maplog (issue 7): fn(arg, m) is called for each mapping (NAT or LOCAL)
 * ledger_resync_end() sweeps, before it is removed.  NULL fn: none. */
typedef void (*ledger_sweep_fn)(void *arg, const struct ledger_mapping *m);
void ledger_set_sweep_hook(struct ledger *l, ledger_sweep_fn fn, void *arg);

/* Ends the mark phase without sweeping: what the dump did not reach is
 * kept (a failed dump says nothing about it).  Tombstones are dropped. */
void ledger_resync_abort(struct ledger *l);

/* Appends to b one row per aggregate changed since the last snapshot (all
 * live ones if full), with capacities computed from range_size[] (the size
 * of each enum ledger_range), and forgets aggregates that emptied; outside
 * a resync it then gives back memory (shrinks tables, compacts the
 * aggregates) when most of it is unused.  Returns 0, or -1 with ENOMEM
 * (then the next snapshot must be full). */
int ledger_snapshot(struct ledger *l, struct store_batch *b, int full,
		    const uint32_t range_size[LEDGER_RANGES]);

/* Appends to b->hist what happened since the last call, for history: one
 * row per gateway that is live or changed, with its figures now and the
 * highest values reached at any moment since (ports in use, mappings,
 * TIME_WAIT, each bucket's occupancy: a burst that came and went within
 * the period shows), and the mappings created by NEW events; and per
 * gateway the top hosts and the top buckets by peak and, again, by
 * mappings created (top of each, the two lists merged).  Then every peak
 * starts again from the value now and the counts from 0.  Call it before
 * ledger_snapshot(), which forgets the aggregates that emptied.  Returns
 * 0, or -1 with ENOMEM (b->hist holds no rows; peaks are kept and carry
 * into the next period). */
int ledger_history(struct ledger *l, struct store_batch *b, unsigned top,
		   const uint32_t range_size[LEDGER_RANGES]);

void ledger_get_stats(const struct ledger *l, struct ledger_stats *st);

#endif
