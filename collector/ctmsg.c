/*
 * ctmsg.c - ctnetlink messages into struct ct_entry.
 *
 * Every attribute is validated (type and length) into a tb[] table before
 * its payload is read; unknown attributes are ignored so newer kernels keep
 * working.  Only what natscope uses is extracted: both tuples, zone, id,
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

struct tb_ctx {
	const struct nlattr **tb;
	unsigned max;
	const enum mnl_attr_data_type *types; /* indexed by attribute type */
};

/* Stores each known attribute in tb[] after checking it against its
 * expected type; a malformed known attribute fails the whole message. */
static int ctmsg_attr_cb(const struct nlattr *attr, void *data)
{
	struct tb_ctx *ctx = data;
	unsigned type = mnl_attr_get_type(attr);

	if (type > ctx->max)
		return MNL_CB_OK;
	if (ctx->types[type] != MNL_TYPE_UNSPEC &&
	    mnl_attr_validate(attr, ctx->types[type]) < 0)
		return MNL_CB_ERROR;
	ctx->tb[type] = attr;
	return MNL_CB_OK;
}

static int ctmsg_parse_nested(const struct nlattr *nest,
			      const struct nlattr **tb, unsigned max,
			      const enum mnl_attr_data_type *types)
{
	struct tb_ctx ctx = { tb, max, types };

	memset(tb, 0, (max + 1) * sizeof(*tb));
	return mnl_attr_parse_nested(nest, ctmsg_attr_cb, &ctx) < 0 ? -1 : 0;
}

static const enum mnl_attr_data_type top_types[CTA_MAX + 1] = {
	[CTA_TUPLE_ORIG] = MNL_TYPE_NESTED,
	[CTA_TUPLE_REPLY] = MNL_TYPE_NESTED,
	[CTA_STATUS] = MNL_TYPE_U32,
	[CTA_PROTOINFO] = MNL_TYPE_NESTED,
	[CTA_ID] = MNL_TYPE_U32,
	[CTA_ZONE] = MNL_TYPE_U16,
};

static const enum mnl_attr_data_type tuple_types[CTA_TUPLE_MAX + 1] = {
	[CTA_TUPLE_IP] = MNL_TYPE_NESTED,
	[CTA_TUPLE_PROTO] = MNL_TYPE_NESTED,
	[CTA_TUPLE_ZONE] = MNL_TYPE_U16,
};

static const enum mnl_attr_data_type ip_types[CTA_IP_MAX + 1] = {
	[CTA_IP_V4_SRC] = MNL_TYPE_U32,
	[CTA_IP_V4_DST] = MNL_TYPE_U32,
	[CTA_IP_V6_SRC] = MNL_TYPE_BINARY,
	[CTA_IP_V6_DST] = MNL_TYPE_BINARY,
};

static const enum mnl_attr_data_type proto_types[CTA_PROTO_MAX + 1] = {
	[CTA_PROTO_NUM] = MNL_TYPE_U8,
	[CTA_PROTO_SRC_PORT] = MNL_TYPE_U16,
	[CTA_PROTO_DST_PORT] = MNL_TYPE_U16,
	[CTA_PROTO_ICMP_ID] = MNL_TYPE_U16,
	[CTA_PROTO_ICMPV6_ID] = MNL_TYPE_U16,
};

static const enum mnl_attr_data_type protoinfo_types[CTA_PROTOINFO_MAX + 1] = {
	[CTA_PROTOINFO_TCP] = MNL_TYPE_NESTED,
};

static const enum mnl_attr_data_type tcpinfo_types[CTA_PROTOINFO_TCP_MAX + 1] = {
	[CTA_PROTOINFO_TCP_STATE] = MNL_TYPE_U8,
};

static int ctmsg_copy_ip(const struct nlattr *a, uint8_t family,
			 uint8_t out[16])
{
	size_t want = family == AF_INET ? 4 : 16;

	if (!a || mnl_attr_get_payload_len(a) != want)
		return -1;
	memcpy(out, mnl_attr_get_payload(a), want);
	return 0;
}

/* Parses one CTA_TUPLE_* nest.  *proto receives the tuple's protocol. */
static int ctmsg_parse_tuple(const struct nlattr *nest, uint8_t family,
			     struct ct_tuple *t, uint8_t *proto)
{
	const struct nlattr *tb[CTA_TUPLE_MAX + 1];
	const struct nlattr *ip[CTA_IP_MAX + 1];
	const struct nlattr *pr[CTA_PROTO_MAX + 1];
	const struct nlattr *id;

	if (ctmsg_parse_nested(nest, tb, CTA_TUPLE_MAX, tuple_types) < 0 ||
	    !tb[CTA_TUPLE_IP] || !tb[CTA_TUPLE_PROTO])
		return -1;
	if (ctmsg_parse_nested(tb[CTA_TUPLE_IP], ip, CTA_IP_MAX, ip_types) < 0)
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
	if (ctmsg_parse_nested(tb[CTA_TUPLE_PROTO], pr, CTA_PROTO_MAX,
			       proto_types) < 0 ||
	    !pr[CTA_PROTO_NUM])
		return -1;
	*proto = mnl_attr_get_u8(pr[CTA_PROTO_NUM]);
	id = *proto == IPPROTO_ICMP ? pr[CTA_PROTO_ICMP_ID] :
	     *proto == IPPROTO_ICMPV6 ? pr[CTA_PROTO_ICMPV6_ID] : NULL;
	if (id) {
		t->sport = t->dport = ntohs(mnl_attr_get_u16(id));
	} else {
		if (pr[CTA_PROTO_SRC_PORT])
			t->sport = ntohs(mnl_attr_get_u16(pr[CTA_PROTO_SRC_PORT]));
		if (pr[CTA_PROTO_DST_PORT])
			t->dport = ntohs(mnl_attr_get_u16(pr[CTA_PROTO_DST_PORT]));
	}
	return 0;
}

static uint8_t ctmsg_tcp_state(const struct nlattr *nest)
{
	const struct nlattr *pi[CTA_PROTOINFO_MAX + 1];
	const struct nlattr *tcp[CTA_PROTOINFO_TCP_MAX + 1];
	uint8_t state;

	if (ctmsg_parse_nested(nest, pi, CTA_PROTOINFO_MAX, protoinfo_types) < 0 ||
	    !pi[CTA_PROTOINFO_TCP])
		return NS_TCP_STATE_UNKNOWN;
	if (ctmsg_parse_nested(pi[CTA_PROTOINFO_TCP], tcp, CTA_PROTOINFO_TCP_MAX,
			       tcpinfo_types) < 0 ||
	    !tcp[CTA_PROTOINFO_TCP_STATE])
		return NS_TCP_STATE_UNKNOWN;
	state = mnl_attr_get_u8(tcp[CTA_PROTOINFO_TCP_STATE]);
	return state < NS_TCP_STATES ? state : NS_TCP_STATE_UNKNOWN;
}

int ctmsg_parse(const struct nlmsghdr *nlh, struct ct_entry *e)
{
	const struct nlattr *tb[CTA_MAX + 1] = { 0 };
	struct tb_ctx ctx = { tb, CTA_MAX, top_types };
	const struct nfgenmsg *nfg;
	uint8_t reply_proto = 0;

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
	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*nfg)))
		goto bad;
	nfg = mnl_nlmsg_get_payload(nlh);
	e->family = nfg->nfgen_family;
	if (e->family != AF_INET && e->family != AF_INET6)
		goto bad;
	if (mnl_attr_parse(nlh, sizeof(*nfg), ctmsg_attr_cb, &ctx) < 0)
		goto bad;
	if (!tb[CTA_TUPLE_ORIG] || !tb[CTA_TUPLE_REPLY])
		goto bad;
	if (ctmsg_parse_tuple(tb[CTA_TUPLE_ORIG], e->family, &e->orig,
			      &e->proto) < 0 ||
	    ctmsg_parse_tuple(tb[CTA_TUPLE_REPLY], e->family, &e->reply,
			      &reply_proto) < 0 ||
	    reply_proto != e->proto)
		goto bad;
	e->tcp_state = NS_TCP_STATE_UNKNOWN;
	if (tb[CTA_PROTOINFO] && e->proto == IPPROTO_TCP)
		e->tcp_state = ctmsg_tcp_state(tb[CTA_PROTOINFO]);
	if (tb[CTA_ZONE])
		e->zone = ntohs(mnl_attr_get_u16(tb[CTA_ZONE]));
	if (tb[CTA_ID])
		e->id = ntohl(mnl_attr_get_u32(tb[CTA_ID]));
	if (tb[CTA_STATUS])
		e->status = ntohl(mnl_attr_get_u32(tb[CTA_STATUS]));
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
