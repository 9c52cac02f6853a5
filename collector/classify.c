/*
 * classify.c - conntrack entry -> ledger mapping.
 */
#include "collector/classify.h"

#include <netinet/in.h>
#include <string.h>

static uint8_t classify_nat_range(uint16_t orig_port)
{
	/* The kernel keeps a mapped port in the class of the original one
	 * when no range is given (nf_nat_l4proto_unique_tuple()). */
	if (orig_port < 512)
		return LEDGER_RANGE_NAT_LOW;
	if (orig_port < 1024)
		return LEDGER_RANGE_NAT_MID;
	return LEDGER_RANGE_NAT_HIGH;
}

enum ns_kind classify_entry(const struct ct_entry *e,
			    const struct localaddr *la,
			    struct ledger_mapping *m)
{
	size_t alen = e->family == AF_INET ? 4 : 16;
	int icmp = e->proto == IPPROTO_ICMP || e->proto == IPPROTO_ICMPV6;
	int nat;

	memset(m, 0, sizeof(*m));
	m->family = e->family;
	m->proto = e->proto;
	m->zone = e->zone;
	m->tcp_state = e->tcp_state;
	memcpy(m->public_ip, e->reply.dst, alen);
	m->public_port = e->reply.dport;
	memcpy(m->dest_ip, e->reply.src, alen);
	m->dest_port = icmp ? 0 : e->reply.sport;
	memcpy(m->host_ip, e->orig.src, alen);

	if (!ns_proto_has_ports(e->proto))
		return m->kind = NS_KIND_OTHER;
	nat = memcmp(e->reply.dst, e->orig.src, alen) != 0 ||
	      e->reply.dport != e->orig.sport;
	if (nat) {
		m->kind = NS_KIND_NAT;
		m->range = icmp ? LEDGER_RANGE_ICMP :
				  classify_nat_range(e->orig.sport);
	} else if (la && localaddr_contains(la, e->family, e->orig.src)) {
		m->kind = NS_KIND_LOCAL;
		m->range = icmp ? LEDGER_RANGE_ICMP : LEDGER_RANGE_LOCAL;
	} else {
		m->kind = NS_KIND_OTHER;
	}
	return m->kind;
}
