/*
 * test_ctmsg.c - the ctnetlink parser against libnetfilter_conntrack.
 *
 * Every entry of the real capture tests/fixtures/conntrack-L-extended-id.txt
 * is turned into a netlink message by libnetfilter_conntrack's own builder
 * (nfct_nlmsg_build), parsed by ctmsg_parse() and compared both with the
 * text and with libnetfilter_conntrack's parser (nfct_nlmsg_parse).  Then
 * each message is truncated at every length and bit-flipped many times:
 * the parser must reject or accept, never read out of bounds (run under
 * ASan in CI).  Classification is checked on the same capture.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

#include "collector/classify.h"
#include "collector/ctmsg.h"
#include "collector/ledger.h"
#include "collector/localaddr.h"

/* One entry as conntrack -L -o extended,id prints it. */
struct text_entry {
	int family, proto, state; /* state: -1 if none printed */
	char src[2][64], dst[2][64];
	unsigned sport[2], dport[2]; /* ICMP: the id in both */
	unsigned zone, id;
};

static int state_num(const char *s)
{
	static const char *names[] = { "NONE", "SYN_SENT", "SYN_RECV",
				       "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
				       "LAST_ACK", "TIME_WAIT", "CLOSE",
				       "SYN_SENT2" };
	for (int i = 0; i < 10; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

static int parse_text(char *line, struct text_entry *t)
{
	int n_src = 0, n_dst = 0, n_sport = 0, n_dport = 0, n_id = 0, field = 0;
	char *save = NULL;

	memset(t, 0, sizeof(*t));
	t->state = -1;
	for (char *tok = strtok_r(line, " \t\n", &save); tok;
	     tok = strtok_r(NULL, " \t\n", &save), field++) {
		char *eq = strchr(tok, '=');

		if (field == 0)
			t->family = !strcmp(tok, "ipv6") ? AF_INET6 : AF_INET;
		else if (field == 3)
			t->proto = atoi(tok);
		else if (field == 5 && !eq && tok[0] != '[')
			t->state = state_num(tok);
		if (!eq)
			continue;
		*eq = '\0';
		if (!strcmp(tok, "src") && n_src < 2)
			snprintf(t->src[n_src++], 64, "%s", eq + 1);
		else if (!strcmp(tok, "dst") && n_dst < 2)
			snprintf(t->dst[n_dst++], 64, "%s", eq + 1);
		else if (!strcmp(tok, "sport") && n_sport < 2)
			t->sport[n_sport++] = (unsigned)atoi(eq + 1);
		else if (!strcmp(tok, "dport") && n_dport < 2)
			t->dport[n_dport++] = (unsigned)atoi(eq + 1);
		else if (!strcmp(tok, "zone"))
			t->zone = (unsigned)atoi(eq + 1);
		else if (!strcmp(tok, "id")) {
			/* ICMP prints the echo id in each tuple, then the
			 * entry id; others only the entry id */
			unsigned v = (unsigned)strtoul(eq + 1, NULL, 10);

			if (t->proto == IPPROTO_ICMP && n_id < 2) {
				t->sport[n_id] = t->dport[n_id] = v;
				n_id++;
			} else {
				t->id = v;
			}
		}
	}
	return n_src == 2 && n_dst == 2 ? 0 : -1;
}

static void set_ip(struct nf_conntrack *ct, int family, int attr4, int attr6,
		   const char *text)
{
	uint8_t buf[16];

	assert_int_equal(inet_pton(family, text, buf), 1);
	nfct_set_attr(ct, family == AF_INET ? attr4 : attr6, buf);
}

/* Builds the netlink message libnetfilter_conntrack would send for t. */
static size_t build_msg(const struct text_entry *t, void *buf, uint16_t type,
			uint16_t flags)
{
	struct nf_conntrack *ct = nfct_new();
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfg;

	assert_non_null(ct);
	nfct_set_attr_u8(ct, ATTR_L3PROTO, (uint8_t)t->family);
	nfct_set_attr_u8(ct, ATTR_L4PROTO, (uint8_t)t->proto);
	nfct_set_attr_u8(ct, ATTR_REPL_L3PROTO, (uint8_t)t->family);
	nfct_set_attr_u8(ct, ATTR_REPL_L4PROTO, (uint8_t)t->proto);
	set_ip(ct, t->family, ATTR_IPV4_SRC, ATTR_IPV6_SRC, t->src[0]);
	set_ip(ct, t->family, ATTR_IPV4_DST, ATTR_IPV6_DST, t->dst[0]);
	set_ip(ct, t->family, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC, t->src[1]);
	set_ip(ct, t->family, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST, t->dst[1]);
	if (t->proto == IPPROTO_ICMP) {
		nfct_set_attr_u8(ct, ATTR_ICMP_TYPE, 8);
		nfct_set_attr_u8(ct, ATTR_ICMP_CODE, 0);
		nfct_set_attr_u16(ct, ATTR_ICMP_ID, htons((uint16_t)t->sport[0]));
	} else {
		nfct_set_attr_u16(ct, ATTR_PORT_SRC, htons((uint16_t)t->sport[0]));
		nfct_set_attr_u16(ct, ATTR_PORT_DST, htons((uint16_t)t->dport[0]));
		nfct_set_attr_u16(ct, ATTR_REPL_PORT_SRC, htons((uint16_t)t->sport[1]));
		nfct_set_attr_u16(ct, ATTR_REPL_PORT_DST, htons((uint16_t)t->dport[1]));
	}
	if (t->state >= 0)
		nfct_set_attr_u8(ct, ATTR_TCP_STATE, (uint8_t)t->state);
	if (t->zone)
		nfct_set_attr_u16(ct, ATTR_ZONE, (uint16_t)t->zone);
	nfct_set_attr_u32(ct, ATTR_STATUS, IPS_CONFIRMED | IPS_SRC_NAT);

	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (uint16_t)((NFNL_SUBSYS_CTNETLINK << 8) | type);
	nlh->nlmsg_flags = flags;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = (uint8_t)t->family;
	nfg->version = NFNETLINK_V0;
	assert_int_equal(nfct_nlmsg_build(nlh, ct), 0);
	/* the builder leaves CTA_ID out (requests do not carry it); the
	 * kernel's events and dumps do */
	mnl_attr_put_u32(nlh, CTA_ID, htonl(t->id));
	nfct_destroy(ct);
	return nlh->nlmsg_len;
}

static FILE *open_fixture(const char *name)
{
	const char *dir = getenv("NATSCOPE_FIXTURES");
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/fixtures", name);
	f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open fixture %s", path);
	return f;
}

static void addr_text(int family, const uint8_t *b, char *out)
{
	inet_ntop(family, b, out, 64);
}

static void test_fixture_roundtrip(void **state)
{
	FILE *f = open_fixture("conntrack-L-extended-id.txt");
	char line[1024];
	unsigned n = 0;
	struct nf_conntrack *oracle = nfct_new();

	(void)state;
	while (fgets(line, sizeof(line), f)) {
		struct text_entry t;
		uint8_t buf[4096];
		struct ct_entry e;
		char txt[64];
		size_t len;

		if (parse_text(line, &t) < 0)
			continue;
		len = build_msg(&t, buf, IPCTNL_MSG_CT_NEW,
				NLM_F_CREATE | NLM_F_EXCL);
		assert_true(len > 0);
		assert_int_equal(ctmsg_parse((struct nlmsghdr *)buf, &e), 0);
		assert_int_equal(e.type, CTMSG_NEW);
		assert_int_equal(e.family, t.family);
		assert_int_equal(e.proto, t.proto);
		addr_text(e.family, e.orig.src, txt);
		assert_string_equal(txt, t.src[0]);
		addr_text(e.family, e.orig.dst, txt);
		assert_string_equal(txt, t.dst[0]);
		addr_text(e.family, e.reply.src, txt);
		assert_string_equal(txt, t.src[1]);
		addr_text(e.family, e.reply.dst, txt);
		assert_string_equal(txt, t.dst[1]);
		assert_int_equal(e.orig.sport, t.sport[0]);
		assert_int_equal(e.reply.dport, t.dport[1]);
		if (t.proto != IPPROTO_ICMP) {
			assert_int_equal(e.orig.dport, t.dport[0]);
			assert_int_equal(e.reply.sport, t.sport[1]);
		}
		assert_int_equal(e.tcp_state,
				 t.state >= 0 ? t.state : NS_TCP_STATE_UNKNOWN);
		assert_int_equal(e.zone, t.zone);
		assert_int_equal(e.id, t.id);
		assert_int_equal(e.status, IPS_CONFIRMED | IPS_SRC_NAT);

		/* libnetfilter_conntrack reads the same message the same way */
		assert_int_equal(nfct_nlmsg_parse((struct nlmsghdr *)buf, oracle), 0);
		assert_int_equal(nfct_get_attr_u8(oracle, ATTR_L4PROTO), e.proto);
		assert_int_equal(nfct_get_attr_u32(oracle, ATTR_ID), e.id);
		if (t.proto != IPPROTO_ICMP)
			assert_int_equal(ntohs(nfct_get_attr_u16(oracle,
								 ATTR_REPL_PORT_DST)),
					 e.reply.dport);
		assert_memory_equal(nfct_get_attr(oracle, e.family == AF_INET ?
								  ATTR_REPL_IPV4_DST :
								  ATTR_REPL_IPV6_DST),
				    e.reply.dst, e.family == AF_INET ? 4 : 16);
		n++;
	}
	fclose(f);
	nfct_destroy(oracle);
	assert_int_equal(n, 1407);
}

static void test_message_types(void **state)
{
	struct text_entry t = { .family = AF_INET, .proto = IPPROTO_TCP,
				.state = 3, .sport = { 40000, 443 },
				.dport = { 443, 41000 }, .id = 7 };
	uint8_t buf[4096];
	struct ct_entry e;
	struct nlmsghdr *nlh = (struct nlmsghdr *)buf;

	(void)state;
	strcpy(t.src[0], "198.18.0.2");
	strcpy(t.dst[0], "198.51.100.7");
	strcpy(t.src[1], "198.51.100.7");
	strcpy(t.dst[1], "203.0.113.1");
	build_msg(&t, buf, IPCTNL_MSG_CT_NEW, 0);
	assert_int_equal(ctmsg_parse(nlh, &e), 0);
	assert_int_equal(e.type, CTMSG_UPDATE);
	build_msg(&t, buf, IPCTNL_MSG_CT_NEW, NLM_F_MULTI);
	assert_int_equal(ctmsg_parse(nlh, &e), 0);
	assert_int_equal(e.type, CTMSG_DUMP);
	build_msg(&t, buf, IPCTNL_MSG_CT_DELETE, 0);
	assert_int_equal(ctmsg_parse(nlh, &e), 0);
	assert_int_equal(e.type, CTMSG_DESTROY);
	assert_int_equal(e.reply.dport, 41000);

	/* not a conntrack entry: skipped, not an error */
	build_msg(&t, buf, IPCTNL_MSG_CT_GET_STATS, 0);
	assert_int_equal(ctmsg_parse(nlh, &e), -1);
	assert_int_equal(errno, ENOENT);
	nlh->nlmsg_type = NLMSG_DONE;
	assert_int_equal(ctmsg_parse(nlh, &e), -1);
	assert_int_equal(errno, ENOENT);

	/* a family the tuples do not match */
	build_msg(&t, buf, IPCTNL_MSG_CT_NEW, 0);
	((struct nfgenmsg *)mnl_nlmsg_get_payload(nlh))->nfgen_family = AF_INET6;
	assert_int_equal(ctmsg_parse(nlh, &e), -1);
	assert_int_equal(errno, EBADMSG);
	((struct nfgenmsg *)mnl_nlmsg_get_payload(nlh))->nfgen_family = 99;
	assert_int_equal(ctmsg_parse(nlh, &e), -1);
	assert_int_equal(errno, EBADMSG);

	/* the dump request is what the kernel expects */
	{
		size_t len = ctmsg_build_dump(buf, 42);
		assert_int_equal(len, NLMSG_HDRLEN + sizeof(struct nfgenmsg));
		assert_int_equal(nlh->nlmsg_type,
				 (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET);
		assert_true(nlh->nlmsg_flags & NLM_F_DUMP);
		assert_int_equal(nlh->nlmsg_seq, 42);
	}
}

/* Truncations and bit flips of real messages never crash the parser, and
 * a message missing either tuple is rejected. */
static void test_malformed(void **state)
{
	FILE *f = open_fixture("conntrack-L-extended-id.txt");
	char line[1024];
	unsigned seed = 1, lines = 0, rejected = 0, flips = 0;

	(void)state;
	while (fgets(line, sizeof(line), f) && lines < 60) {
		struct text_entry t;
		uint8_t buf[4096], copy[4096];
		struct ct_entry e;
		size_t len;

		if (parse_text(line, &t) < 0)
			continue;
		lines++;
		len = build_msg(&t, buf, IPCTNL_MSG_CT_NEW, NLM_F_CREATE);
		/* truncated: the header claims less, the bytes stop there */
		for (size_t cut = 0; cut < len; cut++) {
			uint8_t *p = malloc(cut ? cut : 1);
			struct nlmsghdr *nlh = (struct nlmsghdr *)p;

			memcpy(p, buf, cut);
			if (cut >= sizeof(*nlh)) {
				nlh->nlmsg_len = (uint32_t)cut;
				if (ctmsg_parse(nlh, &e) < 0) {
					assert_true(errno == EBADMSG || errno == ENOENT);
					rejected++;
				}
			}
			free(p);
		}
		/* flipped bits, length field kept honest */
		for (int k = 0; k < 400; k++) {
			memcpy(copy, buf, len);
			for (int b = 0; b < 3; b++) {
				seed = seed * 1103515245 + 12345;
				size_t at = sizeof(struct nlmsghdr) +
					    (seed >> 8) % (len - sizeof(struct nlmsghdr));
				copy[at] ^= (uint8_t)(1u << ((seed >> 4) % 8));
			}
			if (ctmsg_parse((struct nlmsghdr *)copy, &e) < 0)
				flips++;
		}
	}
	fclose(f);
	assert_int_equal(lines, 60);
	assert_true(rejected > 60 * 20); /* nearly every cut loses a tuple */
	assert_true(flips > 0);
}

/* The capture came from a lab with public addresses 203.0.113.1 and .9
 * and 2001:db8:2::1 on the gateway.  Expected counts were worked out with
 * a separate script over the text (reply dst != orig src, or port/id
 * changed: nat; else original source local: local). */
static void test_classify_fixture(void **state)
{
	FILE *f = open_fixture("conntrack-L-extended-id.txt");
	struct localaddr *la = localaddr_new();
	struct ns_addr a;
	char line[1024];
	unsigned nat = 0, local = 0, other = 0, gw1_tcp = 0, gw9_udp = 0;
	unsigned v6 = 0, icmp = 0;

	(void)state;
	ns_addr_parse("203.0.113.1", &a);
	localaddr_add(la, &a);
	ns_addr_parse("203.0.113.9", &a);
	localaddr_add(la, &a);
	ns_addr_parse("2001:db8:2::1", &a);
	localaddr_add(la, &a);
	ns_addr_parse("127.0.0.1", &a);
	localaddr_add(la, &a); /* loopback is never local */
	assert_int_equal(localaddr_count(la), 3);
	while (fgets(line, sizeof(line), f)) {
		struct text_entry t;
		uint8_t buf[4096];
		struct ct_entry e;
		struct ledger_mapping m;
		char pub[64];

		if (parse_text(line, &t) < 0)
			continue;
		build_msg(&t, buf, IPCTNL_MSG_CT_NEW, NLM_F_CREATE);
		assert_int_equal(ctmsg_parse((struct nlmsghdr *)buf, &e), 0);
		switch (classify_entry(&e, la, &m)) {
		case NS_KIND_NAT:
			nat++;
			break;
		case NS_KIND_LOCAL:
			local++;
			assert_memory_equal(m.host_ip, m.public_ip, 16);
			assert_int_equal(m.range, LEDGER_RANGE_LOCAL);
			break;
		default:
			other++;
			continue;
		}
		addr_text(m.family, m.public_ip, pub);
		if (!strcmp(pub, "203.0.113.1") && m.proto == IPPROTO_TCP)
			gw1_tcp++;
		if (!strcmp(pub, "203.0.113.9") && m.proto == IPPROTO_UDP)
			gw9_udp++;
		if (!strcmp(pub, "2001:db8:2::1"))
			v6++;
		if (m.proto == IPPROTO_ICMP) {
			icmp++;
			assert_int_equal(m.dest_port, 0);
			assert_int_equal(m.range, LEDGER_RANGE_ICMP);
		}
	}
	fclose(f);
	localaddr_close(la);
	assert_int_equal(nat, 1382);
	assert_int_equal(local, 25);
	assert_int_equal(other, 0);
	assert_int_equal(gw1_tcp, 705);
	assert_int_equal(gw9_udp, 395);
	assert_int_equal(v6, 62);
	assert_int_equal(icmp, 5);
}

/* Hand-made tuples for the cases the capture lacks. */
static void test_classify_cases(void **state)
{
	struct localaddr *la = localaddr_new();
	struct ct_entry e;
	struct ledger_mapping m;
	struct ns_addr a;

	(void)state;
	ns_addr_parse("203.0.113.1", &a);
	localaddr_add(la, &a);
	memset(&e, 0, sizeof(e));
	e.family = AF_INET;
	e.proto = IPPROTO_TCP;
	/* routed without NAT: reply dst == orig src, source not local */
	inet_pton(AF_INET, "198.18.0.2", e.orig.src);
	inet_pton(AF_INET, "198.51.100.7", e.orig.dst);
	e.orig.sport = 40000;
	e.orig.dport = 443;
	memcpy(e.reply.src, e.orig.dst, 4);
	memcpy(e.reply.dst, e.orig.src, 4);
	e.reply.sport = 443;
	e.reply.dport = 40000;
	assert_int_equal(classify_entry(&e, la, &m), NS_KIND_OTHER);
	/* same addresses, port changed: SNAT of the port only */
	e.reply.dport = 40001;
	assert_int_equal(classify_entry(&e, la, &m), NS_KIND_NAT);
	assert_int_equal(m.public_port, 40001);
	assert_int_equal(m.range, LEDGER_RANGE_NAT_HIGH);
	/* low original ports keep their class */
	e.orig.sport = 80;
	assert_int_equal(classify_entry(&e, la, &m), NS_KIND_NAT);
	assert_int_equal(m.range, LEDGER_RANGE_NAT_LOW);
	e.orig.sport = 700;
	assert_int_equal(classify_entry(&e, la, &m), NS_KIND_NAT);
	assert_int_equal(m.range, LEDGER_RANGE_NAT_MID);
	/* DNAT + SNAT: the destination is where packets really go */
	inet_pton(AF_INET, "198.51.100.99", e.reply.src);
	e.reply.sport = 8443;
	assert_int_equal(classify_entry(&e, la, &m), NS_KIND_NAT);
	{
		char txt[64];
		addr_text(AF_INET, m.dest_ip, txt);
		assert_string_equal(txt, "198.51.100.99");
		assert_int_equal(m.dest_port, 8443);
	}
	/* inbound to this host (DNAT only or plain): other */
	memset(&e, 0, sizeof(e));
	e.family = AF_INET;
	e.proto = IPPROTO_TCP;
	inet_pton(AF_INET, "198.51.100.7", e.orig.src);
	inet_pton(AF_INET, "203.0.113.1", e.orig.dst);
	e.orig.sport = 50000;
	e.orig.dport = 22;
	memcpy(e.reply.src, e.orig.dst, 4);
	memcpy(e.reply.dst, e.orig.src, 4);
	e.reply.sport = 22;
	e.reply.dport = 50000;
	assert_int_equal(classify_entry(&e, la, &m), NS_KIND_OTHER);
	/* originated here */
	memset(&e, 0, sizeof(e));
	e.family = AF_INET;
	e.proto = IPPROTO_UDP;
	inet_pton(AF_INET, "203.0.113.1", e.orig.src);
	inet_pton(AF_INET, "198.51.100.7", e.orig.dst);
	e.orig.sport = 33333;
	e.orig.dport = 53;
	memcpy(e.reply.src, e.orig.dst, 4);
	memcpy(e.reply.dst, e.orig.src, 4);
	e.reply.sport = 53;
	e.reply.dport = 33333;
	assert_int_equal(classify_entry(&e, la, &m), NS_KIND_LOCAL);
	assert_int_equal(m.public_port, 33333);
	/* ... until the address goes away */
	localaddr_del(la, &a);
	assert_int_equal(classify_entry(&e, la, &m), NS_KIND_OTHER);
	/* a protocol without ports consumes none */
	e.proto = 47; /* GRE */
	assert_int_equal(classify_entry(&e, la, &m), NS_KIND_OTHER);
	localaddr_close(la);
}

/* ---- the end of a dump, and GET requests ---- */

/* Appends a netlink message of type with a payload of plen bytes (an
 * nlmsgerr's error for NLMSG_ERROR when plen >= 4). */
static size_t put_msg(uint8_t *buf, size_t off, uint16_t type, uint32_t seq,
		      int error, size_t plen)
{
	struct nlmsghdr *nlh = (struct nlmsghdr *)(buf + off);

	memset(nlh, 0, NLMSG_ALIGN(NLMSG_HDRLEN + plen));
	nlh->nlmsg_len = (uint32_t)(NLMSG_HDRLEN + plen);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_MULTI;
	nlh->nlmsg_seq = seq;
	if (type == NLMSG_ERROR && plen >= sizeof(int))
		memcpy(NLMSG_DATA(nlh), &error, sizeof(int));
	return off + NLMSG_ALIGN(nlh->nlmsg_len);
}

/* One rule decides how a dump ended: DONE of its own sequence, an error
 * answer (with its errno), a short error message (EBADMSG, never read past
 * its end), a chunk cut short; messages of other sequences never end it. */
static void test_dump_end(void **state)
{
	uint8_t buf[1024];
	size_t off;
	int err;

	(void)state;
	off = put_msg(buf, 0, NLMSG_DONE, 7, 0, 4);
	assert_int_equal(ctmsg_dump_end(buf, off, 8, &err), CTMSG_DUMP_MORE);
	off = put_msg(buf, off, NLMSG_DONE, 8, 0, 4);
	assert_int_equal(ctmsg_dump_end(buf, off, 8, &err), CTMSG_DUMP_DONE);
	assert_int_equal(err, 0);

	off = put_msg(buf, 0, NLMSG_ERROR, 8, -EINTR,
		      sizeof(struct nlmsgerr));
	assert_int_equal(ctmsg_dump_end(buf, off, 8, &err), CTMSG_DUMP_FAILED);
	assert_int_equal(err, EINTR);
	off = put_msg(buf, 0, NLMSG_ERROR, 8, 0, sizeof(struct nlmsgerr));
	assert_int_equal(ctmsg_dump_end(buf, off, 8, &err), CTMSG_DUMP_MORE);

	/* an error message with only 2 bytes of payload: too short to hold
	 * its error; it fails the dump without reading beyond */
	off = put_msg(buf, 0, NLMSG_ERROR, 8, 0, 2);
	{
		uint8_t *exact = malloc(off); /* ASan sees any over-read */

		memcpy(exact, buf, off);
		assert_int_equal(ctmsg_dump_end(exact, off, 8, &err),
				 CTMSG_DUMP_FAILED);
		assert_int_equal(err, EBADMSG);
		assert_int_equal(ctmsg_error((const struct nlmsghdr *)exact), -1);
		assert_int_equal(errno, EBADMSG);
		free(exact);
	}
	/* a chunk whose last message is cut short */
	off = put_msg(buf, 0, NLMSG_DONE, 9, 0, 4);
	assert_int_equal(ctmsg_dump_end(buf, off - 2, 8, &err),
			 CTMSG_DUMP_FAILED);
	assert_int_equal(err, EBADMSG);
}

/* The attribute of type among those from start to end, or NULL. */
static const struct nlattr *find_attr(const void *start, const void *end,
				      uint16_t type)
{
	const struct nlattr *a = start;

	while (a && (const char *)a + NLA_HDRLEN <= (const char *)end) {
		if ((a->nla_type & NLA_TYPE_MASK) == type)
			return a;
		a = (const void *)((const char *)a + NLA_ALIGN(a->nla_len));
	}
	return NULL;
}

/* The attribute of type inside the nest n. */
static const struct nlattr *in_nest(const struct nlattr *n, uint16_t type)
{
	return n ? find_attr(mnl_attr_get_payload(n),
			     (const char *)n + n->nla_len, type) : NULL;
}

/* A GET by reply tuple, as libnetfilter_conntrack reads it back. */
static void test_build_get(void **state)
{
	static const struct {
		uint8_t family, proto;
		uint16_t zone;
		const char *src, *dst;
		uint16_t sport, dport;
	} cases[] = {
		{ AF_INET, IPPROTO_TCP, 0, "198.51.100.7", "203.0.113.1", 443, 40000 },
		{ AF_INET, IPPROTO_UDP, 5, "198.51.100.8", "203.0.113.2", 53, 1234 },
		{ AF_INET6, IPPROTO_TCP, 0, "2001:db8:51::1", "2001:db8:113::1", 80, 2000 },
		{ AF_INET, IPPROTO_ICMP, 0, "198.51.100.9", "203.0.113.1", 777, 777 },
		{ AF_INET6, IPPROTO_ICMPV6, 0, "2001:db8:51::9", "2001:db8:113::1", 99, 99 },
	};
	uint8_t buf[512];

	(void)state;
	assert_int_equal(ctmsg_build_get(buf, 100, 1, AF_INET, IPPROTO_TCP, 0,
					 NULL), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ct_tuple t;
		struct nf_conntrack *ct = nfct_new();
		const struct nlmsghdr *nlh = (const void *)buf;
		size_t len;

		memset(&t, 0, sizeof(t));
		inet_pton(cases[i].family, cases[i].src, t.src);
		inet_pton(cases[i].family, cases[i].dst, t.dst);
		t.sport = cases[i].sport;
		t.dport = cases[i].dport;
		len = ctmsg_build_get(buf, sizeof(buf), 42, cases[i].family,
				      cases[i].proto, cases[i].zone, &t);
		assert_true(len > 0 && len == nlh->nlmsg_len);
		assert_int_equal(nlh->nlmsg_seq, 42);
		assert_int_equal(NFNL_MSG_TYPE(nlh->nlmsg_type), IPCTNL_MSG_CT_GET);
		assert_int_equal(nfct_nlmsg_parse(nlh, ct), 0);
		assert_int_equal(nfct_get_attr_u8(ct, ATTR_REPL_L4PROTO),
				 cases[i].proto);
		if (cases[i].family == AF_INET) {
			assert_memory_equal(nfct_get_attr(ct, ATTR_REPL_IPV4_SRC),
					    t.src, 4);
			assert_memory_equal(nfct_get_attr(ct, ATTR_REPL_IPV4_DST),
					    t.dst, 4);
		} else {
			assert_memory_equal(nfct_get_attr(ct, ATTR_REPL_IPV6_SRC),
					    t.src, 16);
			assert_memory_equal(nfct_get_attr(ct, ATTR_REPL_IPV6_DST),
					    t.dst, 16);
		}
		if (cases[i].proto == IPPROTO_ICMP ||
		    cases[i].proto == IPPROTO_ICMPV6) {
			/* libnetfilter_conntrack keeps ICMP fields of the
			 * original tuple only: walk the reply nest here */
			int v6 = cases[i].proto == IPPROTO_ICMPV6;
			const struct nlattr *pr = in_nest(
				find_attr(mnl_nlmsg_get_payload_offset(
						  nlh, sizeof(struct nfgenmsg)),
					  (const char *)nlh + nlh->nlmsg_len,
					  CTA_TUPLE_REPLY),
				CTA_TUPLE_PROTO);
			const struct nlattr *id, *type;

			assert_non_null(pr);
			id = in_nest(pr, v6 ? CTA_PROTO_ICMPV6_ID : CTA_PROTO_ICMP_ID);
			type = in_nest(pr, v6 ? CTA_PROTO_ICMPV6_TYPE :
						CTA_PROTO_ICMP_TYPE);
			assert_non_null(id);
			assert_non_null(type);
			assert_int_equal(ntohs(mnl_attr_get_u16(id)), cases[i].sport);
			assert_int_equal(mnl_attr_get_u8(type), v6 ? 129 : 0);
		} else {
			assert_int_equal(ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC)),
					 cases[i].sport);
			assert_int_equal(ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_DST)),
					 cases[i].dport);
		}
		if (cases[i].zone) {
			const struct nlattr *z = in_nest(
				find_attr(mnl_nlmsg_get_payload_offset(
						  nlh, sizeof(struct nfgenmsg)),
					  (const char *)nlh + nlh->nlmsg_len,
					  CTA_TUPLE_REPLY),
				CTA_TUPLE_ZONE);

			assert_non_null(z);
			assert_int_equal(ntohs(mnl_attr_get_u16(z)),
					 cases[i].zone);
		}
		nfct_destroy(ct);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_roundtrip),
		cmocka_unit_test(test_message_types),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_classify_fixture),
		cmocka_unit_test(test_classify_cases),
		cmocka_unit_test(test_dump_end),
		cmocka_unit_test(test_build_get),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
