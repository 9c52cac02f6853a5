/*
 * ctmsg.c - ctnetlink messages into struct ct_entry.
 *
 * Every attribute is checked (its header fits, its payload is long enough
 * for its type) before its payload is read; unknown attributes are ignored
 * so newer kernels keep working.  Only what natscope uses is extracted: both tuples, zone, id,
 * status and the TCP state.
 */
#include "collector/ctmsg.h"
#include "common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

/* Attributes of one nest into tb[type] (the last of a type wins), after
 * checking that each header and its length fit in the nest.  Nothing is
 * read from a payload here: the readers below check its size first.
 * Hand-rolled rather than libmnl's callback walk because it is the hot
 * path: ~100 ns per event here against ~580 ns for nfct_nlmsg_parse()
 * (bench/parsebench, docs/benchmarks.md). */
static int ct_attrs(const void *nest, int len, const struct nlattr **tb,
		    unsigned max)
{
	const struct nlattr *a = nest;

	memset(tb, 0, (max + 1) * sizeof(*tb));
	while (len >= (int)NLA_HDRLEN) {
		int step;

		if (a->nla_len < NLA_HDRLEN || a->nla_len > len)
			return -1;
		if ((unsigned)(a->nla_type & NLA_TYPE_MASK) <= max)
			tb[a->nla_type & NLA_TYPE_MASK] = a;
		step = NLA_ALIGN(a->nla_len);
		if (step > len)
			step = len; /* the last one may lack its padding */
		len -= step;
		a = (const struct nlattr *)((const char *)a + step);
	}
	return 0;
}

static inline const void *ct_payload(const struct nlattr *a)
{
	return (const char *)a + NLA_HDRLEN;
}

static inline int ct_payload_len(const struct nlattr *a)
{
	return a->nla_len - NLA_HDRLEN;
}

/* The readers: -1 when the attribute is too short for its type. */
static inline int ct_u8(const struct nlattr *a, uint8_t *v)
{
	if (ct_payload_len(a) < 1)
		return -1;
	*v = *(const uint8_t *)ct_payload(a);
	return 0;
}

static inline int ct_be16(const struct nlattr *a, uint16_t *v)
{
	uint16_t raw;

	if (ct_payload_len(a) < 2)
		return -1;
	memcpy(&raw, ct_payload(a), 2);
	*v = ntohs(raw);
	return 0;
}

static inline int ct_be32(const struct nlattr *a, uint32_t *v)
{
	uint32_t raw;

	if (ct_payload_len(a) < 4)
		return -1;
	memcpy(&raw, ct_payload(a), 4);
	*v = ntohl(raw);
	return 0;
}

static inline int ct_nest(const struct nlattr *a, const struct nlattr **tb,
			  unsigned max)
{
	return ct_attrs(ct_payload(a), ct_payload_len(a), tb, max);
}

static int ctmsg_copy_ip(const struct nlattr *a, uint8_t family,
			 uint8_t out[16])
{
	int want = family == AF_INET ? 4 : 16;

	if (!a || ct_payload_len(a) != want)
		return -1;
	memcpy(out, ct_payload(a), (size_t)want);
	return 0;
}

/* Parses one CTA_TUPLE_* nest.  *proto receives the tuple's protocol,
 * *zone (may be NULL) its direction's zone (CTA_TUPLE_ZONE) if it has
 * one. */
static int ctmsg_parse_tuple(const struct nlattr *nest, uint8_t family,
			     struct ct_tuple *t, uint8_t *proto, int *zone)
{
	const struct nlattr *tb[CTA_TUPLE_MAX + 1];
	const struct nlattr *ip[CTA_IP_MAX + 1];
	const struct nlattr *pr[CTA_PROTO_MAX + 1];
	const struct nlattr *id;

	if (ct_nest(nest, tb, CTA_TUPLE_MAX) < 0 || !tb[CTA_TUPLE_IP] ||
	    !tb[CTA_TUPLE_PROTO] || ct_nest(tb[CTA_TUPLE_IP], ip, CTA_IP_MAX) < 0)
		return -1;
	if (family == AF_INET) {
		if (ctmsg_copy_ip(ip[CTA_IP_V4_SRC], family, t->src) < 0 ||
		    ctmsg_copy_ip(ip[CTA_IP_V4_DST], family, t->dst) < 0)
			return -1;
	} else {
		if (ctmsg_copy_ip(ip[CTA_IP_V6_SRC], family, t->src) < 0 ||
		    ctmsg_copy_ip(ip[CTA_IP_V6_DST], family, t->dst) < 0)
			return -1;
	}
	if (ct_nest(tb[CTA_TUPLE_PROTO], pr, CTA_PROTO_MAX) < 0 ||
	    !pr[CTA_PROTO_NUM] || ct_u8(pr[CTA_PROTO_NUM], proto) < 0)
		return -1;
	if (tb[CTA_TUPLE_ZONE] && zone) {
		uint16_t z;

		if (ct_be16(tb[CTA_TUPLE_ZONE], &z) < 0)
			return -1;
		*zone = z;
	}
	id = *proto == IPPROTO_ICMP ? pr[CTA_PROTO_ICMP_ID] :
	     *proto == IPPROTO_ICMPV6 ? pr[CTA_PROTO_ICMPV6_ID] : NULL;
	if (id) {
		if (ct_be16(id, &t->sport) < 0)
			return -1;
		t->dport = t->sport;
	} else {
		if (pr[CTA_PROTO_SRC_PORT] &&
		    ct_be16(pr[CTA_PROTO_SRC_PORT], &t->sport) < 0)
			return -1;
		if (pr[CTA_PROTO_DST_PORT] &&
		    ct_be16(pr[CTA_PROTO_DST_PORT], &t->dport) < 0)
			return -1;
	}
	return 0;
}

static uint8_t ctmsg_tcp_state(const struct nlattr *nest)
{
	const struct nlattr *pi[CTA_PROTOINFO_MAX + 1];
	const struct nlattr *tcp[CTA_PROTOINFO_TCP_MAX + 1];
	uint8_t state;

	if (ct_nest(nest, pi, CTA_PROTOINFO_MAX) < 0 || !pi[CTA_PROTOINFO_TCP] ||
	    ct_nest(pi[CTA_PROTOINFO_TCP], tcp, CTA_PROTOINFO_TCP_MAX) < 0 ||
	    !tcp[CTA_PROTOINFO_TCP_STATE] ||
	    ct_u8(tcp[CTA_PROTOINFO_TCP_STATE], &state) < 0)
		return NS_TCP_STATE_UNKNOWN;
	return state < NS_TCP_STATES ? state : NS_TCP_STATE_UNKNOWN;
}

int ctmsg_parse(const struct nlmsghdr *nlh, struct ct_entry *e)
{
	const struct nlattr *tb[CTA_MAX + 1];
	const struct nfgenmsg *nfg;
	int hdr = (int)mnl_nlmsg_size(sizeof(*nfg));
	uint8_t reply_proto = 0;
	int reply_zone = -1;

	if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_CTNETLINK) {
		errno = ENOENT;
		return -1;
	}
	memset(e, 0, sizeof(*e));
	switch (NFNL_MSG_TYPE(nlh->nlmsg_type)) {
	case IPCTNL_MSG_CT_NEW:
		if (nlh->nlmsg_flags & NLM_F_MULTI)
			e->type = CTMSG_DUMP;
		else if (nlh->nlmsg_flags & NLM_F_CREATE)
			e->type = CTMSG_NEW;
		else
			e->type = CTMSG_UPDATE;
		break;
	case IPCTNL_MSG_CT_DELETE:
		e->type = CTMSG_DESTROY;
		break;
	default:
		errno = ENOENT;
		return -1;
	}
	if (nlh->nlmsg_len < (uint32_t)hdr)
		goto bad;
	nfg = mnl_nlmsg_get_payload(nlh);
	e->family = nfg->nfgen_family;
	if (e->family != AF_INET && e->family != AF_INET6)
		goto bad;
	if (ct_attrs((const char *)nlh + NLMSG_ALIGN(hdr),
		     (int)nlh->nlmsg_len - NLMSG_ALIGN(hdr), tb, CTA_MAX) < 0)
		goto bad;
	if (!tb[CTA_TUPLE_ORIG] || !tb[CTA_TUPLE_REPLY])
		goto bad;
	if (ctmsg_parse_tuple(tb[CTA_TUPLE_ORIG], e->family, &e->orig,
			      &e->proto, NULL) < 0 ||
	    ctmsg_parse_tuple(tb[CTA_TUPLE_REPLY], e->family, &e->reply,
			      &reply_proto, &reply_zone) < 0 ||
	    reply_proto != e->proto)
		goto bad;
	e->tcp_state = NS_TCP_STATE_UNKNOWN;
	if (tb[CTA_PROTOINFO] && e->proto == IPPROTO_TCP)
		e->tcp_state = ctmsg_tcp_state(tb[CTA_PROTOINFO]);
	/* The zone that keeps the reply tuple unique: the entry's (both
	 * directions), else the reply direction's own; an original-only
	 * zone leaves the reply in the default zone. */
	if (reply_zone >= 0)
		e->zone = (uint16_t)reply_zone;
	if ((tb[CTA_ZONE] && ct_be16(tb[CTA_ZONE], &e->zone) < 0) ||
	    (tb[CTA_ID] && ct_be32(tb[CTA_ID], &e->id) < 0) ||
	    (tb[CTA_STATUS] && ct_be32(tb[CTA_STATUS], &e->status) < 0))
		goto bad;
	return 0;
bad:
	errno = EBADMSG;
	return -1;
}

size_t ctmsg_build_dump(void *buf, uint32_t seq)
{
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfg;

	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = AF_UNSPEC; /* every family */
	nfg->version = NFNETLINK_V0;
	nfg->res_id = 0;
	return nlh->nlmsg_len;
}

int ctmsg_error(const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *err;

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*err))) {
		errno = EBADMSG;
		return -1;
	}
	err = mnl_nlmsg_get_payload(nlh);
	return err->error < 0 ? -err->error : err->error;
}

enum ctmsg_dump_end ctmsg_dump_end(const void *buf, size_t len, uint32_t seq,
				   int *err)
{
	const struct nlmsghdr *nlh = buf;
	int left = len > INT32_MAX ? INT32_MAX : (int)len;

	*err = 0;
	for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
		int e;

		if (nlh->nlmsg_seq != seq)
			continue;
		if (nlh->nlmsg_type == NLMSG_DONE)
			return CTMSG_DUMP_DONE;
		if (nlh->nlmsg_type != NLMSG_ERROR)
			continue;
		e = ctmsg_error(nlh);
		if (e != 0) {
			*err = e < 0 ? EBADMSG : e;
			return CTMSG_DUMP_FAILED;
		}
	}
	if (left > 0) {
		*err = EBADMSG; /* a message cut short: the dump is unreadable */
		return CTMSG_DUMP_FAILED;
	}
	return CTMSG_DUMP_MORE;
}

/* Puts one tuple nest (type CTA_TUPLE_ORIG or _REPLY). */
static void ctmsg_put_tuple(struct nlmsghdr *nlh, uint16_t type, uint8_t family,
			    uint8_t proto, uint16_t zone,
			    const struct ct_tuple *t)
{
	struct nlattr *tuple, *ip, *pr;

	tuple = mnl_attr_nest_start(nlh, type);
	ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	if (family == AF_INET) {
		mnl_attr_put(nlh, CTA_IP_V4_SRC, 4, t->src);
		mnl_attr_put(nlh, CTA_IP_V4_DST, 4, t->dst);
	} else {
		mnl_attr_put(nlh, CTA_IP_V6_SRC, 16, t->src);
		mnl_attr_put(nlh, CTA_IP_V6_DST, 16, t->dst);
	}
	mnl_attr_nest_end(nlh, ip);
	pr = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, proto);
	if (proto == IPPROTO_ICMP) {
		mnl_attr_put_u16(nlh, CTA_PROTO_ICMP_ID, htons(t->sport));
		mnl_attr_put_u8(nlh, CTA_PROTO_ICMP_TYPE, 0); /* echo reply */
		mnl_attr_put_u8(nlh, CTA_PROTO_ICMP_CODE, 0);
	} else if (proto == IPPROTO_ICMPV6) {
		mnl_attr_put_u16(nlh, CTA_PROTO_ICMPV6_ID, htons(t->sport));
		mnl_attr_put_u8(nlh, CTA_PROTO_ICMPV6_TYPE, 129);
		mnl_attr_put_u8(nlh, CTA_PROTO_ICMPV6_CODE, 0);
	} else {
		mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(t->sport));
		mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(t->dport));
	}
	mnl_attr_nest_end(nlh, pr);
	/* the reply direction's zone: matches an entry zoned in both
	 * directions as well as one zoned in the reply direction only */
	if (zone)
		mnl_attr_put_u16(nlh, CTA_TUPLE_ZONE, htons(zone));
	mnl_attr_nest_end(nlh, tuple);
}

size_t ctmsg_build_get(void *buf, size_t size, uint32_t seq, uint8_t family,
		       uint8_t proto, uint16_t zone,
		       const struct ct_tuple *reply)
{
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfg;

	if (size < 256)
		return 0; /* the largest (IPv6) request is under 160 bytes */
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nlh->nlmsg_seq = seq;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = family;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = 0;
	ctmsg_put_tuple(nlh, CTA_TUPLE_REPLY, family, proto, zone, reply);
	return nlh->nlmsg_len;
}
