/*
 * test_ledger.c - the ledger's aggregates under NEW / UPDATE / DESTROY /
 * duplicate / unknown sequences and resyncs, checked against values worked
 * out by hand and, for long random sequences, against a brute-force model
 * that recomputes every figure from the list of live mappings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "collector/ledger.h"
#include "store/store.h"

static const uint32_t ranges[LEDGER_RANGES] = { 511, 424, 64512, 65536, 28232 };

static struct ledger_mapping mk(const char *pub, uint16_t pport,
				const char *host, const char *dst,
				uint16_t dport, uint8_t state)
{
	struct ledger_mapping m;
	struct ns_addr a;

	memset(&m, 0, sizeof(m));
	ns_addr_parse(pub, &a);
	m.family = a.family;
	memcpy(m.public_ip, a.bytes, 16);
	ns_addr_parse(host, &a);
	memcpy(m.host_ip, a.bytes, 16);
	ns_addr_parse(dst, &a);
	memcpy(m.dest_ip, a.bytes, 16);
	m.proto = IPPROTO_TCP;
	m.kind = NS_KIND_NAT;
	m.range = LEDGER_RANGE_NAT_HIGH;
	m.public_port = pport;
	m.dest_port = dport;
	m.tcp_state = state;
	return m;
}

static const struct store_gateway_row *find_gw(const struct store_batch *b,
					       const char *ip, uint8_t proto)
{
	struct ns_addr a;

	ns_addr_parse(ip, &a);
	for (size_t i = 0; i < b->n_gateways; i++)
		if (!ns_addr_cmp(&b->gateways[i].ip, &a) &&
		    b->gateways[i].proto == proto)
			return &b->gateways[i];
	return NULL;
}

static const struct store_host_row *find_host(const struct store_batch *b,
					      const char *ip)
{
	struct ns_addr a;

	ns_addr_parse(ip, &a);
	for (size_t i = 0; i < b->n_hosts; i++)
		if (!ns_addr_cmp(&b->hosts[i].ip, &a))
			return &b->hosts[i];
	return NULL;
}

static const struct store_dest_row *find_dest(const struct store_batch *b,
					      const char *ip, uint16_t port)
{
	struct ns_addr a;

	ns_addr_parse(ip, &a);
	for (size_t i = 0; i < b->n_dests; i++)
		if (!ns_addr_cmp(&b->dests[i].ip, &a) && b->dests[i].port == port)
			return &b->dests[i];
	return NULL;
}

static void snap(struct ledger *l, struct store_batch *b, int full)
{
	store_batch_clear(b);
	b->full = 0;
	assert_int_equal(ledger_snapshot(l, b, full, ranges), 0);
}

/* Three mappings on one public IP; port 40000 is used toward two
 * destinations and must count once. */
static void test_basic_aggregates(void **state)
{
	struct ledger *l = ledger_new();
	struct store_batch b;
	const struct store_gateway_row *g;
	const struct store_host_row *h;
	const struct store_dest_row *d;
	struct ledger_mapping m1 = mk("203.0.113.1", 40000, "198.18.0.2",
				      "198.51.100.7", 443, 3);
	struct ledger_mapping m2 = mk("203.0.113.1", 40000, "198.18.0.2",
				      "198.51.100.8", 443, 7);
	struct ledger_mapping m3 = mk("203.0.113.1", 40001, "198.18.0.3",
				      "198.51.100.7", 443, 3);
	struct ledger_stats st;

	(void)state;
	store_batch_init(&b);
	assert_int_equal(ledger_upsert(l, &m1, 0), LEDGER_ADDED);
	assert_int_equal(ledger_upsert(l, &m2, 0), LEDGER_ADDED);
	assert_int_equal(ledger_upsert(l, &m3, 0), LEDGER_ADDED);
	snap(l, &b, 0);
	g = find_gw(&b, "203.0.113.1", IPPROTO_TCP);
	assert_non_null(g);
	assert_int_equal(g->deleted, 0);
	assert_int_equal(g->mappings, 3);
	assert_int_equal(g->ports_in_use, 2);
	assert_int_equal(g->hosts, 2);
	assert_int_equal(g->destinations, 2);
	assert_int_equal(g->states[3], 2);
	assert_int_equal(g->states[7], 1);
	assert_int_equal(g->worst_mappings, 2);
	assert_int_equal(g->worst_capacity, 64512);
	assert_int_equal(g->worst_port, 443);
	h = find_host(&b, "198.18.0.2");
	assert_non_null(h);
	assert_int_equal(h->mappings, 2);
	assert_int_equal(h->ports_in_use, 1);
	assert_int_equal(h->kind, NS_KIND_NAT);
	d = find_dest(&b, "198.51.100.7", 443);
	assert_non_null(d);
	assert_int_equal(d->mappings, 2);
	assert_int_equal(d->capacity, 64512);
	ledger_get_stats(l, &st);
	assert_int_equal(st.mappings_nat, 3);
	assert_int_equal(st.gateways, 1);
	assert_int_equal(st.hosts, 2);
	assert_int_equal(st.destinations, 2);

	/* a snapshot with nothing changed is empty */
	snap(l, &b, 0);
	assert_int_equal(b.n_gateways + b.n_hosts + b.n_dests, 0);

	/* a duplicate NEW changes nothing and is not written again */
	assert_int_equal(ledger_upsert(l, &m1, 0), LEDGER_UNCHANGED);
	snap(l, &b, 0);
	assert_int_equal(b.n_gateways + b.n_hosts + b.n_dests, 0);

	/* an unknown DESTROY changes nothing */
	struct ledger_mapping u = mk("203.0.113.1", 40002, "198.18.0.2",
				     "198.51.100.7", 443, 3);
	assert_int_equal(ledger_remove(l, &u), 0);
	u = mk("192.0.2.99", 1, "198.18.0.2", "198.51.100.7", 443, 3);
	assert_int_equal(ledger_remove(l, &u), 0);
	snap(l, &b, 0);
	assert_int_equal(b.n_gateways + b.n_hosts + b.n_dests, 0);

	/* TCP state moves with an UPDATE; unknown state keeps it */
	m1.tcp_state = 7;
	assert_int_equal(ledger_upsert(l, &m1, 0), LEDGER_CHANGED);
	m1.tcp_state = NS_TCP_STATE_UNKNOWN;
	assert_int_equal(ledger_upsert(l, &m1, 0), LEDGER_UNCHANGED);
	snap(l, &b, 0);
	g = find_gw(&b, "203.0.113.1", IPPROTO_TCP);
	assert_non_null(g);
	assert_int_equal(g->states[3], 1);
	assert_int_equal(g->states[7], 2);
	assert_int_equal(b.n_hosts + b.n_dests, 0); /* only the gateway changed */

	/* DESTROY of m1: port 40000 still used toward .8, host keeps 1 port */
	assert_int_equal(ledger_remove(l, &m1), 1);
	assert_int_equal(ledger_remove(l, &m1), 0); /* twice: unknown */
	snap(l, &b, 0);
	g = find_gw(&b, "203.0.113.1", IPPROTO_TCP);
	assert_int_equal(g->mappings, 2);
	assert_int_equal(g->ports_in_use, 2);
	d = find_dest(&b, "198.51.100.7", 443);
	assert_int_equal(d->mappings, 1);
	h = find_host(&b, "198.18.0.2");
	assert_int_equal(h->mappings, 1);
	assert_int_equal(h->ports_in_use, 1);

	/* the rest goes: every row is written as a delete */
	assert_int_equal(ledger_remove(l, &m2), 1);
	assert_int_equal(ledger_remove(l, &m3), 1);
	snap(l, &b, 0);
	g = find_gw(&b, "203.0.113.1", IPPROTO_TCP);
	assert_non_null(g);
	assert_int_equal(g->deleted, 1);
	assert_int_equal(b.n_hosts, 2);
	assert_int_equal(b.n_dests, 2);
	for (size_t i = 0; i < b.n_hosts; i++)
		assert_int_equal(b.hosts[i].mappings, 0);
	for (size_t i = 0; i < b.n_dests; i++)
		assert_int_equal(b.dests[i].mappings, 0);
	/* and the aggregates are forgotten */
	snap(l, &b, 1);
	assert_int_equal(b.n_gateways + b.n_hosts + b.n_dests, 0);
	ledger_get_stats(l, &st);
	assert_int_equal(st.mappings_nat + st.mappings_local, 0);
	assert_int_equal(st.gateways + st.hosts + st.destinations, 0);

	store_batch_free(&b);
	ledger_free(l);
}

/* A NEW whose reply tuple exists with another host: the old DESTROY was
 * missed; the mapping moves to the new host. */
static void test_replace_host(void **state)
{
	struct ledger *l = ledger_new();
	struct store_batch b;
	struct ledger_mapping a = mk("203.0.113.1", 5000, "198.18.0.2",
				     "198.51.100.7", 80, 1);
	struct ledger_mapping c = mk("203.0.113.1", 5000, "198.18.0.9",
				     "198.51.100.7", 80, 1);

	(void)state;
	store_batch_init(&b);
	assert_int_equal(ledger_upsert(l, &a, 0), LEDGER_ADDED);
	snap(l, &b, 0);
	assert_int_equal(ledger_upsert(l, &c, 0), LEDGER_CHANGED);
	snap(l, &b, 0);
	assert_int_equal(find_host(&b, "198.18.0.2")->mappings, 0);
	assert_int_equal(find_host(&b, "198.18.0.9")->mappings, 1);
	assert_int_equal(find_host(&b, "198.18.0.9")->ports_in_use, 1);
	assert_int_equal(find_gw(&b, "203.0.113.1", IPPROTO_TCP)->mappings, 1);
	assert_int_equal(find_gw(&b, "203.0.113.1", IPPROTO_TCP)->hosts, 1);
	store_batch_free(&b);
	ledger_free(l);
}

/* Capacity: SNAT from low ports, ICMP ids, local connections; a local
 * host's kind; IPv6 rows. */
static void test_capacity_and_kinds(void **state)
{
	struct ledger *l = ledger_new();
	struct store_batch b;
	struct ledger_mapping lo = mk("203.0.113.1", 600, "198.18.0.2",
				      "198.51.100.7", 53, 0);
	struct ledger_mapping ic = mk("203.0.113.1", 7, "198.18.0.2",
				      "198.51.100.7", 0, 0);
	struct ledger_mapping loc = mk("203.0.113.1", 40000, "203.0.113.1",
				       "198.51.100.9", 22, 3);
	struct ledger_mapping v6 = mk("2001:db8:2::1", 41000, "2001:db8:1::2",
				      "2001:db8:2::2", 443, 3);
	const struct store_dest_row *d;

	(void)state;
	store_batch_init(&b);
	lo.proto = IPPROTO_UDP;
	lo.range = LEDGER_RANGE_NAT_MID;
	ic.proto = IPPROTO_ICMP;
	ic.range = LEDGER_RANGE_ICMP;
	loc.kind = NS_KIND_LOCAL;
	loc.range = LEDGER_RANGE_LOCAL;
	assert_int_equal(ledger_upsert(l, &lo, 0), LEDGER_ADDED);
	assert_int_equal(ledger_upsert(l, &ic, 0), LEDGER_ADDED);
	assert_int_equal(ledger_upsert(l, &loc, 0), LEDGER_ADDED);
	assert_int_equal(ledger_upsert(l, &v6, 0), LEDGER_ADDED);
	snap(l, &b, 1);
	assert_int_equal(b.full, 1);
	assert_int_equal(b.n_gateways, 4); /* udp, icmp, tcp v4, tcp v6 */
	d = find_dest(&b, "198.51.100.7", 53);
	assert_int_equal(d->capacity, 424);
	d = find_dest(&b, "198.51.100.7", 0);
	assert_int_equal(d->capacity, 65536);
	d = find_dest(&b, "198.51.100.9", 22);
	assert_int_equal(d->capacity, 28232);
	assert_int_equal(find_host(&b, "203.0.113.1")->kind, NS_KIND_LOCAL);
	assert_int_equal(find_gw(&b, "2001:db8:2::1", IPPROTO_TCP)->mappings, 1);
	/* a non-TCP gateway keeps no states */
	for (int s = 0; s < NS_TCP_STATES; s++)
		assert_int_equal(find_gw(&b, "203.0.113.1", IPPROTO_UDP)->states[s], 0);
	store_batch_free(&b);
	ledger_free(l);
}

/* Worst destination: by ratio, then more mappings, then lowest address. */
static void test_worst_destination(void **state)
{
	struct ledger *l = ledger_new();
	struct store_batch b;
	const struct store_gateway_row *g;
	struct ns_addr a;
	char txt[NS_ADDR_STRLEN];

	(void)state;
	store_batch_init(&b);
	/* 3 mappings to a 64512 bucket vs 2 to a 424 bucket: the latter is
	 * fuller */
	for (uint16_t p = 0; p < 3; p++) {
		struct ledger_mapping m = mk("203.0.113.1", 2000 + p, "198.18.0.2",
					     "198.51.100.1", 443, 3);
		assert_int_equal(ledger_upsert(l, &m, 0), LEDGER_ADDED);
	}
	for (uint16_t p = 0; p < 2; p++) {
		struct ledger_mapping m = mk("203.0.113.1", 700 + p, "198.18.0.2",
					     "198.51.100.2", 443, 3);
		m.range = LEDGER_RANGE_NAT_MID;
		assert_int_equal(ledger_upsert(l, &m, 0), LEDGER_ADDED);
	}
	snap(l, &b, 0);
	g = find_gw(&b, "203.0.113.1", IPPROTO_TCP);
	a = g->worst_ip;
	assert_string_equal(ns_addr_format(&a, txt), "198.51.100.2");
	assert_int_equal(g->worst_capacity, 424);
	assert_int_equal(g->worst_mappings, 2);
	/* same ratio and count: the lower address wins */
	{
		struct ledger_mapping m = mk("203.0.113.9", 3000, "198.18.0.2",
					     "198.51.100.20", 443, 3);
		struct ledger_mapping n = mk("203.0.113.9", 3001, "198.18.0.2",
					     "198.51.100.10", 443, 3);
		assert_int_equal(ledger_upsert(l, &m, 0), LEDGER_ADDED);
		assert_int_equal(ledger_upsert(l, &n, 0), LEDGER_ADDED);
	}
	snap(l, &b, 0);
	g = find_gw(&b, "203.0.113.9", IPPROTO_TCP);
	a = g->worst_ip;
	assert_string_equal(ns_addr_format(&a, txt), "198.51.100.10");
	store_batch_free(&b);
	ledger_free(l);
}

/* Resync: dump records, events racing with them, a sweep. */
static void test_resync(void **state)
{
	struct ledger *l = ledger_new();
	struct store_batch b;
	struct ledger_mapping keep = mk("203.0.113.1", 1001, "198.18.0.2",
					"198.51.100.1", 443, 3);
	struct ledger_mapping gone = mk("203.0.113.1", 1002, "198.18.0.2",
					"198.51.100.1", 443, 3);
	struct ledger_mapping missed = mk("203.0.113.1", 1003, "198.18.0.3",
					  "198.51.100.1", 443, 3);
	struct ledger_mapping raced = mk("203.0.113.1", 1004, "198.18.0.4",
					 "198.51.100.1", 443, 3);
	struct ledger_mapping fresh = mk("203.0.113.1", 1005, "198.18.0.5",
					 "198.51.100.1", 443, 1);
	struct ledger_mapping stale = fresh;

	(void)state;
	store_batch_init(&b);
	assert_int_equal(ledger_upsert(l, &keep, 0), LEDGER_ADDED);
	assert_int_equal(ledger_upsert(l, &gone, 0), LEDGER_ADDED);
	snap(l, &b, 0);

	ledger_resync_begin(l);
	/* an event arrives before the dump reaches it: state 3 -> 7 */
	keep.tcp_state = 7;
	assert_int_equal(ledger_upsert(l, &keep, 0), LEDGER_CHANGED);
	/* the older dump record must not set it back */
	keep.tcp_state = 3;
	assert_int_equal(ledger_upsert(l, &keep, 1), LEDGER_KEPT);
	/* an entry we never heard of (NEW lost) */
	assert_int_equal(ledger_upsert(l, &missed, 1), LEDGER_ADDED);
	/* DESTROY read before the dump record taken before it */
	assert_int_equal(ledger_remove(l, &raced), 0);
	assert_int_equal(ledger_upsert(l, &raced, 1), LEDGER_KEPT);
	/* a NEW during the dump, then the dump shows it too */
	assert_int_equal(ledger_upsert(l, &fresh, 0), LEDGER_ADDED);
	stale.tcp_state = 0;
	assert_int_equal(ledger_upsert(l, &stale, 1), LEDGER_KEPT);
	/* a snapshot in the middle of the resync works too */
	snap(l, &b, 0);
	/* "gone" is not in the dump: swept */
	assert_int_equal(ledger_resync_end(l, NULL), 1);
	snap(l, &b, 1);
	{
		const struct store_gateway_row *g =
			find_gw(&b, "203.0.113.1", IPPROTO_TCP);
		assert_int_equal(g->mappings, 3); /* keep, missed, fresh */
		assert_int_equal(g->ports_in_use, 3);
		assert_int_equal(g->hosts, 3);
		assert_int_equal(g->states[7], 1);
		assert_int_equal(g->states[3], 1);
		assert_int_equal(g->states[1], 1);
		assert_null(find_host(&b, "198.18.0.4"));
	}
	/* after the resync, the tombstone's aggregates are gone for good and
	 * a dump-style upsert adds again */
	assert_int_equal(ledger_upsert(l, &raced, 0), LEDGER_ADDED);
	store_batch_free(&b);
	ledger_free(l);
}

/* Mappings only ever seen in dumps are silent until an event shows up. */
static void test_silent(void **state)
{
	struct ledger *l = ledger_new();
	struct ledger_stats st;
	struct ledger_mapping a = mk("203.0.113.1", 1001, "198.18.0.2",
				     "198.51.100.1", 443, 3);
	struct ledger_mapping b = mk("203.0.113.1", 1002, "198.18.0.2",
				     "198.51.100.1", 443, 3);
	struct ledger_mapping c = mk("203.0.113.1", 1003, "198.18.0.3",
				     "198.51.100.1", 443, 3);

	(void)state;
	ledger_resync_begin(l);
	assert_int_equal(ledger_upsert(l, &a, 1), LEDGER_ADDED);
	assert_int_equal(ledger_upsert(l, &b, 1), LEDGER_ADDED);
	assert_int_equal(ledger_resync_end(l, NULL), 0);
	ledger_get_stats(l, &st);
	assert_int_equal(st.mappings_silent, 2);
	/* an UPDATE for a: it is followed by events after all */
	a.tcp_state = 4;
	assert_int_equal(ledger_upsert(l, &a, 0), LEDGER_CHANGED);
	ledger_get_stats(l, &st);
	assert_int_equal(st.mappings_silent, 1);
	/* the next dump does not make it silent again */
	ledger_resync_begin(l);
	assert_int_equal(ledger_upsert(l, &a, 1), LEDGER_UNCHANGED);
	assert_int_equal(ledger_upsert(l, &b, 1), LEDGER_UNCHANGED);
	assert_int_equal(ledger_upsert(l, &c, 1), LEDGER_ADDED);
	/* b vanished from the kernel without an event: the dump after the
	 * next one no longer shows it */
	assert_int_equal(ledger_resync_end(l, NULL), 0);
	ledger_get_stats(l, &st);
	assert_int_equal(st.mappings_silent, 2);
	ledger_resync_begin(l);
	assert_int_equal(ledger_upsert(l, &a, 1), LEDGER_UNCHANGED);
	assert_int_equal(ledger_upsert(l, &c, 1), LEDGER_UNCHANGED);
	assert_int_equal(ledger_resync_end(l, NULL), 1);
	ledger_get_stats(l, &st);
	assert_int_equal(st.mappings_silent, 1);
	assert_int_equal(st.mappings_nat, 2);
	/* a host change seen in a dump keeps the mapping silent */
	c = mk("203.0.113.1", 1003, "198.18.0.4", "198.51.100.1", 443, 3);
	ledger_resync_begin(l);
	assert_int_equal(ledger_upsert(l, &a, 1), LEDGER_UNCHANGED);
	assert_int_equal(ledger_upsert(l, &c, 1), LEDGER_CHANGED);
	assert_int_equal(ledger_resync_end(l, NULL), 0);
	ledger_get_stats(l, &st);
	assert_int_equal(st.mappings_silent, 1);
	assert_int_equal(ledger_remove(l, &c), 1);
	ledger_get_stats(l, &st);
	assert_int_equal(st.mappings_silent, 0);
	/* a repair dump finds an entry created while we listened (its NEW
	 * was lost): the kernel will report it, so it is not silent */
	ledger_resync_begin(l);
	assert_int_equal(ledger_upsert(l, &a, LEDGER_DUMP_REPORTED),
			 LEDGER_UNCHANGED);
	assert_int_equal(ledger_upsert(l, &b, LEDGER_DUMP_REPORTED),
			 LEDGER_ADDED);
	assert_int_equal(ledger_resync_end(l, NULL), 0);
	ledger_get_stats(l, &st);
	assert_int_equal(st.mappings_silent, 0);
	assert_int_equal(st.mappings_nat, 2);
	ledger_free(l);
}

/* OTHER entries: counted exactly, followed through resyncs like mappings,
 * and a key is classified once (LOCAL stays LOCAL, OTHER stays OTHER). */
static void test_other_entries(void **state)
{
	struct ledger *l = ledger_new();
	struct ledger_stats st;
	struct ledger_mapping o1 = mk("198.51.100.9", 22, "198.51.100.9",
				      "198.18.0.5", 50000, 3);
	struct ledger_mapping o2 = mk("198.51.100.9", 22, "198.51.100.9",
				      "198.18.0.6", 50000, 3);
	struct ledger_mapping loc = mk("203.0.113.1", 40000, "203.0.113.1",
				       "198.51.100.7", 443, 3);
	struct ledger_mapping as_other = loc;

	(void)state;
	o1.kind = o2.kind = NS_KIND_OTHER;
	loc.kind = NS_KIND_LOCAL;
	loc.range = LEDGER_RANGE_LOCAL;
	as_other.kind = NS_KIND_OTHER;
	assert_int_equal(ledger_upsert(l, &o1, LEDGER_EVENT), LEDGER_ADDED);
	assert_int_equal(ledger_upsert(l, &o1, LEDGER_EVENT), LEDGER_UNCHANGED);
	assert_int_equal(ledger_upsert(l, &o2, LEDGER_DUMP), LEDGER_ADDED);
	assert_int_equal(ledger_upsert(l, &loc, LEDGER_EVENT), LEDGER_ADDED);
	/* the address went away: the same key now classifies as OTHER,
	 * and it is still the one LOCAL mapping */
	assert_int_equal(ledger_upsert(l, &as_other, LEDGER_EVENT),
			 LEDGER_UNCHANGED);
	ledger_get_stats(l, &st);
	assert_int_equal(st.entries_other, 2);
	assert_int_equal(st.mappings_local, 1);
	assert_int_equal(st.mappings_silent, 1); /* o2, from a dump */
	assert_int_equal(ledger_remove(l, &as_other), 1); /* the LOCAL one */
	assert_int_equal(ledger_remove(l, &o1), 2);
	assert_int_equal(ledger_remove(l, &o1), 0);

	/* a resync: o2 is not in the dump and goes; o1 comes back from the
	 * dump; a DESTROY racing the dump keeps an older record out */
	ledger_resync_begin(l);
	assert_int_equal(ledger_remove(l, &o1), 0); /* destroyed again */
	assert_int_equal(ledger_upsert(l, &o1, LEDGER_DUMP), LEDGER_KEPT);
	ledger_get_stats(l, &st);
	assert_int_equal(st.tombstones, 1);
	{
		struct ledger_sweep sw;

		assert_int_equal(ledger_resync_end(l, &sw), 0);
		assert_int_equal(sw.others, 1); /* o2 */
		assert_int_equal(sw.others_silent, 1);
	}
	ledger_get_stats(l, &st);
	assert_int_equal(st.entries_other, 0);
	assert_int_equal(st.mappings_silent, 0);
	assert_int_equal(st.tombstones, 0);
	ledger_free(l);
}

/* A failed dump keeps what it did not reach; the next complete resync
 * still sweeps what the kernel no longer has (the mark bit must not be
 * left half flipped by the abort). */
static void test_abort(void **state)
{
	struct ledger *l = ledger_new();
	struct ledger_stats st;
	struct ledger_mapping a = mk("203.0.113.1", 1001, "198.18.0.2",
				     "198.51.100.7", 443, 3);
	struct ledger_mapping b = mk("203.0.113.1", 1002, "198.18.0.2",
				     "198.51.100.7", 443, 3);

	(void)state;
	assert_int_equal(ledger_upsert(l, &a, LEDGER_EVENT), LEDGER_ADDED);
	assert_int_equal(ledger_upsert(l, &b, LEDGER_EVENT), LEDGER_ADDED);
	/* the dump fails after reading a only: b must stay */
	ledger_resync_begin(l);
	assert_int_equal(ledger_upsert(l, &a, LEDGER_DUMP), LEDGER_UNCHANGED);
	ledger_resync_abort(l);
	ledger_get_stats(l, &st);
	assert_int_equal(st.mappings_nat, 2);
	/* b's DESTROY was lost; the retry's dump has only a */
	ledger_resync_begin(l);
	assert_int_equal(ledger_upsert(l, &a, LEDGER_DUMP), LEDGER_UNCHANGED);
	assert_int_equal(ledger_resync_end(l, NULL), 1);
	ledger_get_stats(l, &st);
	assert_int_equal(st.mappings_nat, 1);
	ledger_free(l);
}

/* 100,000 DESTROYs of entries natscope never tracked, during one resync
 * (on a busy node with silent mappings this is the normal case): memory
 * grows by a fingerprint each at most, comes back after the resync, and no
 * snapshot carries a row for them. */
static void test_unknown_destroys_memory(void **state)
{
	struct ledger *l = ledger_new();
	struct ledger_stats st;
	struct store_batch b;
	size_t before;
	struct ledger_mapping keep = mk("203.0.113.1", 1001, "198.18.0.2",
					"198.51.100.7", 443, 3);

	(void)state;
	store_batch_init(&b);
	assert_int_equal(ledger_upsert(l, &keep, LEDGER_EVENT), LEDGER_ADDED);
	snap(l, &b, 1);
	ledger_get_stats(l, &st);
	before = st.bytes;
	ledger_resync_begin(l);
	for (unsigned i = 0; i < 100000; i++) {
		char pub[32], dst[32];
		struct ledger_mapping m;

		/* every one a different "public IP" and destination */
		snprintf(pub, sizeof(pub), "10.%u.%u.%u", i >> 16,
			 (i >> 8) & 255, i & 255);
		snprintf(dst, sizeof(dst), "198.51.%u.%u", (i >> 8) & 255,
			 i & 255);
		m = mk(pub, (uint16_t)(i % 60000 + 1024), pub, dst, 80, 3);
		m.kind = i % 2 ? NS_KIND_OTHER : NS_KIND_NAT;
		assert_int_equal(ledger_remove(l, &m), 0);
	}
	ledger_get_stats(l, &st);
	print_message("during the resync: %zu bytes (%zu before)\n", st.bytes,
		      before);
	assert_int_equal(st.tombstones, 100000);
	assert_true(st.bytes < before + 100000 * 24);
	store_batch_clear(&b);
	assert_int_equal(ledger_snapshot(l, &b, 0, ranges), 0);
	assert_int_equal(b.n_gateways + b.n_hosts + b.n_dests, 0);
	assert_int_equal(ledger_upsert(l, &keep, LEDGER_DUMP), LEDGER_UNCHANGED);
	assert_int_equal(ledger_resync_end(l, NULL), 0);
	snap(l, &b, 0);
	assert_int_equal(b.n_gateways + b.n_hosts + b.n_dests, 0);
	ledger_get_stats(l, &st);
	print_message("after: %zu bytes\n", st.bytes);
	assert_int_equal(st.tombstones, 0);
	assert_int_equal(st.mappings_nat, 1);
	assert_true(st.bytes <= before);
	store_batch_free(&b);
	ledger_free(l);
}

/* Memory follows the live mappings down: 300,000 mappings over many hosts
 * and buckets, then all gone, and the ledger is back to its empty size;
 * the figures of what remains stay right through the compaction. */
static void test_memory_follows_live(void **state)
{
	struct ledger *l = ledger_new();
	struct ledger_stats st;
	struct store_batch b;
	size_t empty, full = 0;
	const unsigned n = 300000;
	struct ledger_mapping last;

	(void)state;
	store_batch_init(&b);
	ledger_get_stats(l, &st);
	empty = st.bytes;
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned i = 0; i < n; i++) {
			char pub[32], dst[32], hst[32];
			struct ledger_mapping m;

			snprintf(pub, sizeof(pub), "203.0.113.%u", 1 + i % 50);
			snprintf(dst, sizeof(dst), "198.51.%u.%u", (i / 50) % 40,
				 1 + (i / 2000) % 100);
			snprintf(hst, sizeof(hst), "198.18.%u.%u", (i / 7) % 40,
				 1 + (i / 280) % 200);
			m = mk(pub, (uint16_t)(1024 + (i / 50) % 60000), hst, dst,
			       443, 3);
			if (pass == 0)
				assert_true(ledger_upsert(l, &m, LEDGER_EVENT) >= 0);
			else if (i != n - 1)
				ledger_remove(l, &m);
			last = m;
		}
		snap(l, &b, 0);
		if (pass == 0) {
			ledger_get_stats(l, &st);
			full = st.bytes;
		}
	}
	ledger_get_stats(l, &st);
	print_message("empty %zu, full %zu, one left %zu bytes\n", empty, full,
		      st.bytes);
	assert_int_equal(st.mappings_nat, 1);
	assert_int_equal(st.gateways, 1);
	assert_int_equal(st.hosts, 1);
	assert_int_equal(st.destinations, 1);
	assert_true(st.bytes < empty + 16384);
	/* what is left is still found and counted right */
	snap(l, &b, 1);
	assert_int_equal(b.n_gateways, 1);
	assert_int_equal(b.gateways[0].mappings, 1);
	assert_int_equal(b.gateways[0].ports_in_use, 1);
	assert_int_equal(b.n_hosts, 1);
	assert_int_equal(b.n_dests, 1);
	assert_int_equal(ledger_upsert(l, &last, LEDGER_EVENT), LEDGER_UNCHANGED);
	assert_int_equal(ledger_remove(l, &last), 1);
	store_batch_free(&b);
	ledger_free(l);
}

/* MurmurHash3's finalizer, unseeded: what the ledger used before, and
 * what an attacker who knows it can invert. */
static uint64_t fmix_unseeded(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* Clients choose destinations and (through port-preserving SNAT or their
 * own connections) ports.  Keys chosen so that the unseeded hash puts
 * them all at the start of a 2^20-slot table would make one probe run of
 * thousands; with the per-ledger seed they spread out. */
static void test_hash_flooding(void **state)
{
	struct ledger *l = ledger_new();
	const uint32_t mask = (1u << 20) - 1;
	unsigned dests = 2048, aimed = 0;

	(void)state;
	assert_int_equal(ledger_expect(l, 700000), 0);
	/* create the buckets in order, so bucket i gets index i */
	for (unsigned d = 0; d < dests; d++) {
		char dst[32];
		struct ledger_mapping m;

		snprintf(dst, sizeof(dst), "198.51.%u.%u", d >> 8, d & 255);
		m = mk("203.0.113.1", 1, "198.18.0.2", dst, 443, 3);
		assert_int_equal(ledger_upsert(l, &m, LEDGER_EVENT), LEDGER_ADDED);
	}
	for (unsigned d = 0; d < dests; d++) {
		for (uint32_t p = 2; p < 65536; p++) {
			uint32_t home = (uint32_t)fmix_unseeded(
						((uint64_t)(d + 1) << 16) | p) & mask;
			char dst[32];
			struct ledger_mapping m;

			if (home >= 128)
				continue;
			snprintf(dst, sizeof(dst), "198.51.%u.%u", d >> 8,
				 d & 255);
			m = mk("203.0.113.1", (uint16_t)p, "198.18.0.2", dst, 443,
			       3);
			assert_int_equal(ledger_upsert(l, &m, LEDGER_EVENT),
					 LEDGER_ADDED);
			aimed++;
		}
	}
	print_message("%u keys aimed at 128 slots; longest probe run %u\n",
		      aimed, ledger_probe_max(l));
	assert_true(aimed > 10000);
	assert_true(ledger_probe_max(l) < 64);
	ledger_free(l);
}

/* The sampler's walk visits every mapping once per round, and lookups
 * give back what was stored. */
static void test_sample_and_lookup(void **state)
{
	struct ledger *l = ledger_new();
	const unsigned n = 5000;
	static uint8_t seen[5000];
	struct ledger_mapping out[128];
	uint32_t cursor = 0;
	unsigned total = 0;

	(void)state;
	for (unsigned i = 0; i < n; i++) {
		char dst[32];
		struct ledger_mapping m;

		snprintf(dst, sizeof(dst), "198.51.100.%u", 1 + i % 200);
		m = mk("203.0.113.1", (uint16_t)(1024 + i), "198.18.0.2", dst,
		       443, (uint8_t)(i % NS_TCP_STATES));
		assert_int_equal(ledger_upsert(l, &m, i % 3 ? LEDGER_EVENT :
							       LEDGER_DUMP),
				 LEDGER_ADDED);
	}
	while (total < n) {
		unsigned got = ledger_sample(l, &cursor, out, 128);

		assert_true(got > 0);
		for (unsigned k = 0; k < got && total < n; k++, total++) {
			unsigned i = out[k].public_port - 1024u;
			struct ledger_mapping back;

			assert_true(i < n);
			assert_int_equal(seen[i], 0);
			seen[i] = 1;
			assert_int_equal(out[k].tcp_state, i % NS_TCP_STATES);
			assert_int_equal(out[k].silent, i % 3 == 0);
			assert_int_equal(out[k].kind, NS_KIND_NAT);
			assert_int_equal(ledger_lookup(l, &out[k], &back), 1);
			assert_memory_equal(&back, &out[k], sizeof(back));
		}
	}
	ledger_free(l);
}

/* ---- brute-force model ---- */

#define KEYS 600

struct model_map {
	int live;
	struct ledger_mapping m;
};

static uint32_t rng_state = 12345;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* Key k -> a distinct reply tuple: 3 public IPs x 6 destination IPs x 2
 * destination ports x 2 protos x 9 public ports, so public ports are shared
 * across destinations; the host and state vary per call. */
static struct ledger_mapping model_mapping(unsigned k, unsigned host,
					   uint8_t state)
{
	char pub[32], dst[32], hst[32];
	struct ledger_mapping m;

	snprintf(pub, sizeof(pub), "203.0.113.%u", 1 + k % 3);
	snprintf(dst, sizeof(dst), "198.51.100.%u", 1 + (k / 3) % 6);
	snprintf(hst, sizeof(hst), "198.18.0.%u", 1 + host % 7);
	m = mk(pub, (uint16_t)(30000 + k / 72), hst, dst,
	       (uint16_t)(443 + (k / 18) % 2), state);
	m.proto = (k / 36) % 2 ? IPPROTO_UDP : IPPROTO_TCP;
	if (k % 10 == 9) { /* holds no port: an OTHER entry */
		m.kind = NS_KIND_OTHER;
		m.range = 0;
	} else if (host % 7 == 6) {
		m.kind = NS_KIND_LOCAL;
		m.range = LEDGER_RANGE_LOCAL;
	}
	return m;
}

/* Compares a full snapshot with figures recomputed from the model. */
static void model_check(struct ledger *l, struct model_map *mm, unsigned n)
{
	struct store_batch b;
	unsigned total = 0;

	struct ledger_stats st;
	unsigned others = 0;

	store_batch_init(&b);
	assert_int_equal(ledger_snapshot(l, &b, 1, ranges), 0);
	for (unsigned i = 0; i < n; i++) {
		if (mm[i].m.kind == NS_KIND_OTHER)
			others += mm[i].live;
		else
			total += mm[i].live;
	}
	ledger_get_stats(l, &st);
	assert_int_equal(st.entries_other, others);
	assert_int_equal(st.mappings_nat + st.mappings_local, total);
	assert_int_equal(st.tombstones, 0);
	{
		unsigned sum = 0;
		for (size_t g = 0; g < b.n_gateways; g++)
			sum += b.gateways[g].mappings;
		assert_int_equal(sum, total);
	}
	for (size_t g = 0; g < b.n_gateways; g++) {
		const struct store_gateway_row *gw = &b.gateways[g];
		unsigned maps = 0, ports = 0, hosts = 0, dests = 0;
		unsigned states[NS_TCP_STATES] = { 0 };
		uint8_t seen_port[65536 / 8] = { 0 };
		struct ledger_mapping seen_h[KEYS], seen_d[KEYS];
		unsigned nh = 0, nd = 0;

		for (unsigned i = 0; i < n; i++) {
			const struct ledger_mapping *m = &mm[i].m;
			unsigned j;

			if (!mm[i].live || m->proto != gw->proto ||
			    m->kind == NS_KIND_OTHER ||
			    memcmp(m->public_ip, gw->ip.bytes, 16))
				continue;
			maps++;
			if (!(seen_port[m->public_port / 8] & (1 << (m->public_port % 8)))) {
				seen_port[m->public_port / 8] |= 1 << (m->public_port % 8);
				ports++;
			}
			if (m->proto == IPPROTO_TCP)
				states[m->tcp_state]++;
			for (j = 0; j < nh; j++)
				if (!memcmp(seen_h[j].host_ip, m->host_ip, 16))
					break;
			if (j == nh) {
				seen_h[nh++] = *m;
				hosts++;
			}
			for (j = 0; j < nd; j++)
				if (!memcmp(seen_d[j].dest_ip, m->dest_ip, 16) &&
				    seen_d[j].dest_port == m->dest_port)
					break;
			if (j == nd) {
				seen_d[nd++] = *m;
				dests++;
			}
		}
		assert_int_equal(gw->mappings, maps);
		assert_int_equal(gw->ports_in_use, ports);
		assert_int_equal(gw->hosts, hosts);
		assert_int_equal(gw->destinations, dests);
		for (int s = 0; s < NS_TCP_STATES; s++)
			assert_int_equal(gw->states[s], states[s]);
	}
	/* every host row: mappings and distinct ports */
	for (size_t h = 0; h < b.n_hosts; h++) {
		const struct store_host_row *hr = &b.hosts[h];
		unsigned maps = 0, ports = 0, local = 0;
		uint8_t seen_port[65536 / 8] = { 0 };

		for (unsigned i = 0; i < n; i++) {
			const struct ledger_mapping *m = &mm[i].m;

			if (!mm[i].live || m->proto != hr->proto ||
			    m->kind == NS_KIND_OTHER ||
			    memcmp(m->public_ip, hr->gateway.bytes, 16) ||
			    memcmp(m->host_ip, hr->ip.bytes, 16))
				continue;
			maps++;
			local += m->kind == NS_KIND_LOCAL;
			if (!(seen_port[m->public_port / 8] & (1 << (m->public_port % 8)))) {
				seen_port[m->public_port / 8] |= 1 << (m->public_port % 8);
				ports++;
			}
		}
		assert_int_equal(hr->mappings, maps);
		assert_int_equal(hr->ports_in_use, ports);
		assert_int_equal(hr->kind, local ? NS_KIND_LOCAL : NS_KIND_NAT);
	}
	for (size_t d = 0; d < b.n_dests; d++) {
		const struct store_dest_row *dr = &b.dests[d];
		unsigned maps = 0, cap = 0;

		for (unsigned i = 0; i < n; i++) {
			const struct ledger_mapping *m = &mm[i].m;

			if (!mm[i].live || m->proto != dr->proto ||
			    m->kind == NS_KIND_OTHER ||
			    memcmp(m->public_ip, dr->gateway.bytes, 16) ||
			    memcmp(m->dest_ip, dr->ip.bytes, 16) ||
			    m->dest_port != dr->port)
				continue;
			maps++;
			if (ranges[m->range] > cap)
				cap = ranges[m->range];
		}
		assert_int_equal(dr->mappings, maps);
		assert_int_equal(dr->capacity, cap);
	}
	store_batch_free(&b);
}

/* A resync against the model: the "kernel" is mm; its dump is read in
 * pieces with events in between.  The dump ends after `upto` records:
 * before the end it is a failed dump and the mark phase is aborted. */
static void model_resync(struct ledger *l, struct model_map *mm,
			 struct store_batch *b, unsigned upto)
{
	static struct model_map snapshot[KEYS];

	memcpy(snapshot, mm, sizeof(snapshot));
	ledger_resync_begin(l);
	for (unsigned k = 0; k < upto; k++) {
		if (rnd() % 8 == 0) { /* an event during the dump */
			unsigned e = rnd() % KEYS;

			if (mm[e].live && rnd() % 2) {
				ledger_remove(l, &mm[e].m);
				mm[e].live = 0;
			} else {
				struct ledger_mapping m =
					model_mapping(e, rnd(), 3);
				assert_true(ledger_upsert(l, &m, 0) >= 0);
				mm[e].m = m;
				mm[e].live = 1;
			}
		}
		/* the dump shows the table as it was when the dump
		 * started */
		if (snapshot[k].live)
			assert_true(ledger_upsert(l, &snapshot[k].m, 1) >= 0);
		if (k % 200 == 0) {
			store_batch_clear(b);
			assert_int_equal(ledger_snapshot(l, b, 0, ranges), 0);
		}
	}
	if (upto < KEYS)
		ledger_resync_abort(l);
	else
		ledger_resync_end(l, NULL);
}

/* Random NEW/UPDATE/DESTROY (known and unknown, duplicated), with host
 * changes and resyncs whose dumps race with events, against the model. */
static void test_random_against_model(void **state)
{
	struct ledger *l = ledger_new();
	static struct model_map mm[KEYS];
	struct store_batch b;

	(void)state;
	store_batch_init(&b);
	memset(mm, 0, sizeof(mm));
	for (unsigned i = 0; i < KEYS; i++)
		mm[i].m = model_mapping(i, 0, 0);
	for (int round = 0; round < 40; round++) {
		for (int op = 0; op < 2000; op++) {
			unsigned k = rnd() % KEYS;
			unsigned what = rnd() % 10;

			if (what < 5) { /* NEW or UPDATE, maybe a new host */
				unsigned host = mm[k].live && rnd() % 4 ?
						       0 : rnd();
				struct ledger_mapping m;

				if (mm[k].live && !host) {
					m = mm[k].m;
					m.tcp_state = (uint8_t)(rnd() % NS_TCP_STATES);
				} else {
					m = model_mapping(k, host,
							  (uint8_t)(rnd() % NS_TCP_STATES));
				}
				assert_true(ledger_upsert(l, &m, 0) >= 0);
				mm[k].m = m;
				mm[k].live = 1;
			} else {
				int was = !mm[k].live ? 0 :
					  mm[k].m.kind == NS_KIND_OTHER ? 2 : 1;

				assert_int_equal(ledger_remove(l, &mm[k].m), was);
				mm[k].live = 0;
			}
			if (op % 500 == 0) {
				store_batch_clear(&b);
				assert_int_equal(ledger_snapshot(l, &b, 0, ranges), 0);
			}
		}
		model_check(l, mm, KEYS);

		/* a resync: the "kernel" is the model; its dump is read in
		 * pieces with events in between.  Some ledger mappings are
		 * made stale first, as if DESTROY/NEW events were lost. */
		for (int lost = 0; lost < 20; lost++) {
			unsigned k = rnd() % KEYS;

			if (mm[k].live && rnd() % 2) {
				mm[k].live = 0; /* DESTROY lost */
			} else if (!mm[k].live) {
				mm[k].m = model_mapping(k, rnd(), 1);
				mm[k].live = 1; /* NEW lost */
			}
		}
		/* now and then a dump fails half way (nothing may be swept)
		 * and is retried, as the tracker does */
		if (rnd() % 3 == 0)
			model_resync(l, mm, &b, KEYS / 2);
		model_resync(l, mm, &b, KEYS);
		model_check(l, mm, KEYS);
	}
	store_batch_free(&b);
	ledger_free(l);
}

/* 1M mappings: the ledger's own tables stay under 64 bytes a mapping. */
static void test_memory_per_mapping(void **state)
{
	struct ledger *l = ledger_new();
	struct ledger_stats st;
	const unsigned n = 1000000;

	(void)state;
	for (unsigned i = 0; i < n; i++) {
		struct ledger_mapping m;
		char pub[32], dst[32], hst[32];

		snprintf(pub, sizeof(pub), "203.0.113.%u", 1 + i % 4);
		snprintf(dst, sizeof(dst), "198.51.100.%u", 1 + (i / 4) % 100);
		snprintf(hst, sizeof(hst), "198.18.%u.%u", (i / 400) % 4,
			 1 + (i / 1600) % 250);
		m = mk(pub, (uint16_t)(1024 + (i / 400) % 64000), hst, dst,
		       (uint16_t)(443 + (i / 25600000) % 2), 3);
		assert_int_equal(ledger_upsert(l, &m, 0), LEDGER_ADDED);
	}
	ledger_get_stats(l, &st);
	assert_int_equal(st.mappings_nat, n);
	print_message("ledger: %zu bytes for %u mappings = %.1f B/mapping\n",
		      st.bytes, n, (double)st.bytes / n);
	assert_true(st.bytes / n <= 64);
	ledger_free(l);
}

/* Peaks, not samples: a burst that opens and closes 20,000 mappings
 * within one period shows in that period's history (the gateway's ports
 * and mappings, the bucket, the host that came and went, the mappings
 * created), then the next period starts again from what is held. */
static void test_history_peaks(void **state)
{
	struct ledger *l = ledger_new();
	struct store_batch b;
	struct ledger_mapping m;
	const struct store_hist_gateway *g;
	struct ns_addr a;
	int saw_burst_host = 0;

	(void)state;
	store_batch_init(&b);
	for (uint16_t p = 0; p < 100; p++) {
		m = mk("203.0.113.1", (uint16_t)(2000 + p), "198.18.0.1",
		       "198.51.100.1", 443, 3);
		assert_int_equal(ledger_upsert(l, &m, LEDGER_DUMP), LEDGER_ADDED);
	}
	assert_int_equal(ledger_history(l, &b, 20, ranges), 0);
	assert_int_equal(b.hist.n_gateways, 1);
	assert_int_equal(b.hist.gateways[0].new_mappings, 0); /* dumped */
	snap(l, &b, 0);
	/* the burst: 20,000 mappings of another host toward another
	 * bucket, all gone again before the next snapshot */
	store_batch_clear(&b);
	for (unsigned i = 0; i < 20000; i++) {
		m = mk("203.0.113.1", (uint16_t)(10000 + i), "198.18.0.9",
		       "198.51.100.2", 80, 7);
		assert_int_equal(ledger_upsert(l, &m, LEDGER_EVENT_NEW),
				 LEDGER_ADDED);
		/* an UPDATE is no new connection */
		assert_int_equal(ledger_upsert(l, &m, LEDGER_EVENT),
				 LEDGER_UNCHANGED);
	}
	for (unsigned i = 0; i < 20000; i++) {
		m = mk("203.0.113.1", (uint16_t)(10000 + i), "198.18.0.9",
		       "198.51.100.2", 80, 7);
		assert_int_equal(ledger_remove(l, &m), 1);
	}
	assert_int_equal(ledger_history(l, &b, 20, ranges), 0);
	assert_int_equal(b.hist.n_gateways, 1);
	g = &b.hist.gateways[0];
	assert_int_equal(g->end.ports_in_use, 100);
	assert_int_equal(g->end.mappings, 100);
	assert_int_equal(g->ports_peak, 20100);
	assert_int_equal(g->mappings_peak, 20100);
	assert_int_equal(g->time_wait_peak, 20000);
	assert_int_equal(g->end.states[NS_TCP_TIME_WAIT], 0);
	assert_int_equal(g->new_mappings, 20000);
	ns_addr_parse("198.51.100.2", &a);
	assert_int_equal(ns_addr_cmp(&g->end.worst_ip, &a), 0);
	assert_int_equal(g->end.worst_mappings, 20000);
	assert_int_equal(g->end.worst_capacity, 64512);
	ns_addr_parse("198.18.0.9", &a);
	for (size_t i = 0; i < b.hist.n_hosts; i++) {
		const struct store_hist_host *h = &b.hist.hosts[i];

		if (ns_addr_cmp(&h->end.ip, &a))
			continue;
		saw_burst_host = 1;
		assert_int_equal(h->end.mappings, 0);
		assert_int_equal(h->mappings_peak, 20000);
		assert_int_equal(h->new_mappings, 20000);
	}
	assert_true(saw_burst_host);
	snap(l, &b, 0); /* forgets the emptied host and bucket */
	/* the next period starts from what is held */
	store_batch_clear(&b);
	assert_int_equal(ledger_history(l, &b, 20, ranges), 0);
	assert_int_equal(b.hist.n_gateways, 1);
	assert_int_equal(b.hist.gateways[0].ports_peak, 100);
	assert_int_equal(b.hist.gateways[0].new_mappings, 0);
	assert_int_equal(b.hist.n_hosts, 1); /* the one left, by its peak */
	assert_int_equal(b.hist.hosts[0].mappings_peak, 100);
	assert_int_equal(b.hist.n_dests, 1);
	/* the top: 30 hosts, one new mapping each but host 29 with 5; the
	 * top 2 by peak are the old host and host 29, by rate host 29 and
	 * host 0 (ties go to the higher peak, then the scan order) */
	for (unsigned i = 0; i < 30; i++)
		for (unsigned k = 0; k < (i == 29 ? 5u : 1u); k++) {
			char host[32];

			snprintf(host, sizeof(host), "198.18.1.%u", i + 1);
			m = mk("203.0.113.1", (uint16_t)(30000 + i * 8 + k), host,
			       "198.51.100.3", 443, 3);
			assert_int_equal(ledger_upsert(l, &m, LEDGER_EVENT_NEW),
					 LEDGER_ADDED);
		}
	store_batch_clear(&b);
	assert_int_equal(ledger_history(l, &b, 2, ranges), 0);
	assert_int_equal(b.hist.n_hosts, 3);
	assert_int_equal(b.hist.hosts[0].mappings_peak, 100);
	assert_int_equal(b.hist.hosts[1].mappings_peak, 5);
	assert_int_equal(b.hist.hosts[1].new_mappings, 5);
	assert_int_equal(b.hist.hosts[2].new_mappings, 1);
	assert_int_equal(b.hist.n_dests, 2);
	store_batch_free(&b);
	ledger_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_aggregates),
		cmocka_unit_test(test_replace_host),
		cmocka_unit_test(test_capacity_and_kinds),
		cmocka_unit_test(test_worst_destination),
		cmocka_unit_test(test_resync),
		cmocka_unit_test(test_silent),
		cmocka_unit_test(test_random_against_model),
		cmocka_unit_test(test_memory_per_mapping),
		cmocka_unit_test(test_other_entries),
		cmocka_unit_test(test_abort),
		cmocka_unit_test(test_unknown_destroys_memory),
		cmocka_unit_test(test_memory_follows_live),
		cmocka_unit_test(test_hash_flooding),
		cmocka_unit_test(test_sample_and_lookup),
		cmocka_unit_test(test_history_peaks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
