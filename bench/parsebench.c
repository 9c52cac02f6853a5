/*
 * parsebench.c - the cost of parsing one conntrack event: natscope's
 * ctmsg_parse() against libnetfilter_conntrack's nfct_nlmsg_parse() (plus
 * reading back the fields natscope needs), on the same message built by
 * nfct_nlmsg_build(), in the same run.
 *
 *   build/parsebench [iterations]      (default 2000000; no root needed)
 *
 * Prints ns per message for each and the ratio, medians of 5 rounds.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

#include "collector/ctmsg.h"

#define ROUNDS 5

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* A TCP NEW event as the kernel sends it for a masqueraded flow. */
static struct nlmsghdr *build(char *buf)
{
	struct nf_conntrack *ct = nfct_new();
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfg;

	nfct_set_attr_u8(ct, ATTR_L3PROTO, AF_INET);
	nfct_set_attr_u8(ct, ATTR_L4PROTO, IPPROTO_TCP);
	nfct_set_attr_u8(ct, ATTR_REPL_L3PROTO, AF_INET);
	nfct_set_attr_u8(ct, ATTR_REPL_L4PROTO, IPPROTO_TCP);
	nfct_set_attr_u32(ct, ATTR_IPV4_SRC, inet_addr("198.18.0.2"));
	nfct_set_attr_u32(ct, ATTR_IPV4_DST, inet_addr("198.51.100.1"));
	nfct_set_attr_u32(ct, ATTR_REPL_IPV4_SRC, inet_addr("198.51.100.1"));
	nfct_set_attr_u32(ct, ATTR_REPL_IPV4_DST, inet_addr("203.0.113.1"));
	nfct_set_attr_u16(ct, ATTR_PORT_SRC, htons(40000));
	nfct_set_attr_u16(ct, ATTR_PORT_DST, htons(443));
	nfct_set_attr_u16(ct, ATTR_REPL_PORT_SRC, htons(443));
	nfct_set_attr_u16(ct, ATTR_REPL_PORT_DST, htons(40001));
	nfct_set_attr_u8(ct, ATTR_TCP_STATE, 3);
	nfct_set_attr_u32(ct, ATTR_STATUS, IPS_CONFIRMED | IPS_SRC_NAT);
	nfct_set_attr_u32(ct, ATTR_TIMEOUT, 120);
	nfct_set_attr_u32(ct, ATTR_MARK, 0);
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = AF_INET;
	nfg->version = NFNETLINK_V0;
	if (nfct_nlmsg_build(nlh, ct) < 0) {
		fputs("parsebench: nfct_nlmsg_build failed\n", stderr);
		exit(1);
	}
	mnl_attr_put_u32(nlh, CTA_ID, htonl(12345));
	nfct_destroy(ct);
	return nlh;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 2000000;
	static char buf[4096];
	struct nlmsghdr *nlh = build(buf);
	struct nf_conntrack *ct = nfct_new();
	double ours[ROUNDS], lib[ROUNDS];
	unsigned long sink = 0;
	struct ct_entry e;

	if (n < 1000)
		n = 1000;
	for (int r = 0; r < ROUNDS; r++) {
		double t = now_s();

		for (long i = 0; i < n; i++) {
			if (ctmsg_parse(nlh, &e) < 0)
				return 1;
			sink += e.reply.dport + e.orig.src[3];
		}
		ours[r] = (now_s() - t) / (double)n * 1e9;
		t = now_s();
		for (long i = 0; i < n; i++) {
			if (nfct_nlmsg_parse(nlh, ct) < 0)
				return 1;
			sink += nfct_get_attr_u16(ct, ATTR_REPL_PORT_DST) +
				nfct_get_attr_u32(ct, ATTR_IPV4_SRC);
		}
		lib[r] = (now_s() - t) / (double)n * 1e9;
	}
	qsort(ours, ROUNDS, sizeof(double), cmp_double);
	qsort(lib, ROUNDS, sizeof(double), cmp_double);
	printf("{\"message_bytes\": %u, \"iterations\": %ld, "
	       "\"ctmsg_parse_ns\": %.1f, \"nfct_nlmsg_parse_ns\": %.1f, "
	       "\"ratio\": %.2f, \"sink\": %lu}\n",
	       nlh->nlmsg_len, n, ours[ROUNDS / 2], lib[ROUNDS / 2],
	       ours[ROUNDS / 2] / lib[ROUNDS / 2], sink % 10);
	nfct_destroy(ct);
	return 0;
}
