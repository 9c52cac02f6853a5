/*
 * names.c - addresses in canonical text, protocol, TCP state and kind
 * names, clocks.
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>

char *ns_addr_format(const struct ns_addr *a, char buf[NS_ADDR_STRLEN])
{
	/* glibc's inet_ntop() writes RFC 5952 text: lower case, longest
	 * zero run compressed, a single zero field never compressed. */
	if (a->family != AF_INET && a->family != AF_INET6) {
		errno = EAFNOSUPPORT;
		return NULL;
	}
	if (!inet_ntop(a->family, a->bytes, buf, NS_ADDR_STRLEN))
		return NULL;
	return buf;
}

int ns_addr_parse(const char *text, struct ns_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, text, a->bytes) == 1) {
		a->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, a->bytes) == 1) {
		a->family = AF_INET6;
		return 0;
	}
	memset(a, 0, sizeof(*a));
	errno = EINVAL;
	return -1;
}

int ns_addr_cmp(const struct ns_addr *a, const struct ns_addr *b)
{
	if (a->family != b->family)
		return a->family == AF_INET ? -1 : 1;
	return memcmp(a->bytes, b->bytes, sizeof(a->bytes));
}

/* The protocols natscope tracks, and how many public ports (or ICMP
 * echo ids) one public IP offers for each: the one place that says so
 * (ns_port_space(); the store's SQL calls it as ns_port_space(proto)). */
static const struct {
	uint8_t num;
	const char *name;
	uint32_t space;
} protos[] = {
	{ IPPROTO_TCP, "tcp", 65535 },	   /* ports 1-65535 */
	{ IPPROTO_UDP, "udp", 65535 },
	{ IPPROTO_UDPLITE, "udplite", 65535 },
	{ IPPROTO_SCTP, "sctp", 65535 },
	{ IPPROTO_DCCP, "dccp", 65535 },
	{ IPPROTO_ICMP, "icmp", 65536 },   /* echo ids 0-65535 */
	{ IPPROTO_ICMPV6, "icmpv6", 65536 },
};

uint32_t ns_port_space(uint8_t proto)
{
	for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++)
		if (protos[i].num == proto)
			return protos[i].space;
	return 0;
}

const char *ns_proto_name(uint8_t proto)
{
	for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++)
		if (protos[i].num == proto)
			return protos[i].name;
	return NULL;
}

int ns_proto_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++)
		if (strcmp(protos[i].name, name) == 0)
			return protos[i].num;
	errno = EINVAL;
	return -1;
}

int ns_proto_has_ports(uint8_t proto)
{
	return ns_proto_name(proto) != NULL;
}

const char *ns_tcp_state_name(unsigned state)
{
	static const char *names[NS_TCP_STATES] = {
		"none",	      "syn_sent", "syn_recv",  "established",
		"fin_wait",   "close_wait", "last_ack", "time_wait",
		"close",      "syn_sent2",
	};
	return state < NS_TCP_STATES ? names[state] : NULL;
}

const char *ns_kind_name(enum ns_kind kind)
{
	switch (kind) {
	case NS_KIND_NAT:
		return "nat";
	case NS_KIND_LOCAL:
		return "local";
	case NS_KIND_OTHER:
		break;
	}
	return "other";
}

int64_t ns_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ns_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
