/*
 * localaddr.c - this host's addresses, kept as a sorted array (a gateway
 * has a handful; a Kubernetes node in IPVS mode has one per service, so
 * lookups are a binary search, not a scan).
 */
#include "collector/localaddr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>

struct localaddr {
	struct mnl_socket *nl; /* NULL for a hand-made set */
	struct ns_addr *addrs; /* sorted by ns_addr_cmp() */
	unsigned n, cap;
	uint32_t seq;
	int dumping; /* a full re-read is in progress */
	struct ns_addr *fresh; /* the addresses seen by that re-read */
	unsigned n_fresh, cap_fresh;
};

static int localaddr_is_loopback(const struct ns_addr *a)
{
	static const uint8_t v6_lo[16] = { [15] = 1 };

	if (a->family == AF_INET)
		return a->bytes[0] == 127;
	return memcmp(a->bytes, v6_lo, 16) == 0;
}

/* Binary search: returns the index of a, or of where it would go. */
static unsigned localaddr_find(const struct ns_addr *set, unsigned n,
			       const struct ns_addr *a, int *found)
{
	unsigned lo = 0, hi = n;

	*found = 0;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = ns_addr_cmp(&set[mid], a);

		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int localaddr_insert(struct ns_addr **set, unsigned *n, unsigned *cap,
			    const struct ns_addr *a)
{
	int found;
	unsigned at = localaddr_find(*set, *n, a, &found);

	if (found)
		return 0;
	if (*n == *cap) {
		unsigned ncap = *cap ? *cap * 2 : 16;
		struct ns_addr *p = realloc(*set, ncap * sizeof(*p));

		if (!p)
			return -1;
		*set = p;
		*cap = ncap;
	}
	memmove(&(*set)[at + 1], &(*set)[at], (*n - at) * sizeof(**set));
	(*set)[at] = *a;
	(*n)++;
	return 0;
}

struct localaddr *localaddr_new(void)
{
	return calloc(1, sizeof(struct localaddr));
}

int localaddr_add(struct localaddr *la, const struct ns_addr *a)
{
	if (localaddr_is_loopback(a))
		return 0;
	if (localaddr_insert(&la->addrs, &la->n, &la->cap, a) < 0) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

static void localaddr_erase(struct ns_addr *set, unsigned *n,
			    const struct ns_addr *a)
{
	int found;
	unsigned at = localaddr_find(set, *n, a, &found);

	if (!found)
		return;
	memmove(&set[at], &set[at + 1], (*n - at - 1) * sizeof(*set));
	(*n)--;
}

void localaddr_del(struct localaddr *la, const struct ns_addr *a)
{
	localaddr_erase(la->addrs, &la->n, a);
}

int localaddr_contains(const struct localaddr *la, uint8_t family,
		       const uint8_t bytes[16])
{
	struct ns_addr a = { .family = family };
	int found;

	memcpy(a.bytes, bytes, family == AF_INET ? 4 : 16);
	localaddr_find(la->addrs, la->n, &a, &found);
	return found;
}

unsigned localaddr_count(const struct localaddr *la)
{
	return la->n;
}

int localaddr_fd(const struct localaddr *la)
{
	return la->nl ? mnl_socket_get_fd(la->nl) : -1;
}

static int localaddr_request_dump(struct localaddr *la)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifaddrmsg *ifa;

	nlh->nlmsg_type = RTM_GETADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = ++la->seq;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_UNSPEC;
	if (mnl_socket_sendto(la->nl, nlh, nlh->nlmsg_len) < 0) {
		log_warn("rtnetlink: address dump request");
		return -1;
	}
	la->dumping = 1;
	la->n_fresh = 0;
	return 0;
}

static int localaddr_attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	unsigned type = mnl_attr_get_type(attr);

	if (type > IFA_MAX)
		return MNL_CB_OK;
	if ((type == IFA_LOCAL || type == IFA_ADDRESS) &&
	    mnl_attr_validate(attr, MNL_TYPE_BINARY) < 0)
		return MNL_CB_ERROR;
	tb[type] = attr;
	return MNL_CB_OK;
}

/* One RTM_NEWADDR/RTM_DELADDR message. */
static int localaddr_msg(struct localaddr *la, const struct nlmsghdr *nlh)
{
	const struct nlattr *tb[IFA_MAX + 1] = { 0 };
	const struct ifaddrmsg *ifa;
	const struct nlattr *at;
	struct ns_addr a = { 0 };
	size_t len;

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*ifa)))
		return 0;
	ifa = mnl_nlmsg_get_payload(nlh);
	if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6)
		return 0;
	if (mnl_attr_parse(nlh, sizeof(*ifa), localaddr_attr_cb, tb) < 0)
		return 0;
	/* IPv4: IFA_LOCAL is our address (IFA_ADDRESS is the peer on a
	 * point-to-point link); IPv6 only sends IFA_ADDRESS. */
	at = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	if (!at)
		return 0;
	len = ifa->ifa_family == AF_INET ? 4 : 16;
	if (mnl_attr_get_payload_len(at) != len)
		return 0;
	a.family = ifa->ifa_family;
	memcpy(a.bytes, mnl_attr_get_payload(at), len);
	if (localaddr_is_loopback(&a))
		return 0;
	/* A change notified while a re-read is in progress applies to the
	 * list being built too: same socket, so the order is the kernel's. */
	if (nlh->nlmsg_type == RTM_NEWADDR) {
		if (la->dumping &&
		    localaddr_insert(&la->fresh, &la->n_fresh, &la->cap_fresh,
				     &a) < 0)
			return -1;
		if (nlh->nlmsg_flags & NLM_F_MULTI)
			return 0;
		return localaddr_add(la, &a);
	}
	if (nlh->nlmsg_type == RTM_DELADDR) {
		if (la->dumping)
			localaddr_erase(la->fresh, &la->n_fresh, &a);
		localaddr_del(la, &a);
	}
	return 0;
}

/* The dump finished: its result replaces the set. */
static void localaddr_dump_done(struct localaddr *la)
{
	struct ns_addr *p = la->addrs;
	unsigned cap = la->cap;

	la->addrs = la->fresh;
	la->n = la->n_fresh;
	la->cap = la->cap_fresh;
	la->fresh = p;
	la->cap_fresh = cap;
	la->n_fresh = 0;
	la->dumping = 0;
	log_debug("local addresses: %u", la->n);
}

int localaddr_process(struct localaddr *la)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];

	for (;;) {
		ssize_t n = recv(mnl_socket_get_fd(la->nl), buf, sizeof(buf),
				 MSG_DONTWAIT);
		const struct nlmsghdr *nlh;
		int len;

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				log_warnx("rtnetlink: address notifications lost, re-reading");
				if (localaddr_request_dump(la) < 0)
					return -1;
				continue;
			}
			log_warn("rtnetlink: recv");
			return -1;
		}
		len = (int)n;
		for (nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, len);
		     nlh = mnl_nlmsg_next(nlh, &len)) {
			if (nlh->nlmsg_type == NLMSG_DONE) {
				if (la->dumping)
					localaddr_dump_done(la);
			} else if (nlh->nlmsg_type == NLMSG_ERROR) {
				log_warnx("rtnetlink: error answer to the address dump");
				la->dumping = 0;
			} else if (localaddr_msg(la, nlh) < 0) {
				errno = ENOMEM;
				return -1;
			}
		}
	}
}

struct localaddr *localaddr_open(void)
{
	struct localaddr *la = localaddr_new();
	int64_t deadline;

	if (!la)
		return NULL;
	la->nl = mnl_socket_open(NETLINK_ROUTE);
	if (!la->nl) {
		log_warn("rtnetlink: socket");
		goto err;
	}
	if (mnl_socket_bind(la->nl, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
			    MNL_SOCKET_AUTOPID) < 0) {
		log_warn("rtnetlink: subscribing to address changes");
		goto err;
	}
	if (localaddr_request_dump(la) < 0)
		goto err;
	/* Wait (briefly) for the first complete list: classification needs
	 * it before the first conntrack entry is read. */
	deadline = ns_mono_ns() + 2000000000LL;
	while (la->dumping && ns_mono_ns() < deadline) {
		struct timespec ts = { 0, 1000000 };

		if (localaddr_process(la) < 0)
			goto err;
		if (la->dumping)
			nanosleep(&ts, NULL);
	}
	if (la->dumping) {
		log_warnx("rtnetlink: no answer to the address dump");
		errno = ETIMEDOUT;
		goto err;
	}
	return la;
err:
	localaddr_close(la);
	return NULL;
}

void localaddr_close(struct localaddr *la)
{
	if (!la)
		return;
	if (la->nl)
		mnl_socket_close(la->nl);
	free(la->addrs);
	free(la->fresh);
	free(la);
}
