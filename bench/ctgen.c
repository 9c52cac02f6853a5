/*
 * ctgen - load generator: creates source-NATed conntrack entries over
 * ctnetlink at the kernel's full rate (or a given rate), deletes them again,
 * flushes the table, and writes the exact figures natscope must show.
 *
 * Every entry i is a pure function of (i, options, seed):
 *
 *   original  198.18.h.h:sport   -> 198.51.100.z:dport
 *   reply     198.51.100.z:dport -> 203.0.113.p:pport   (192.0.2.p beyond 254)
 *
 * with j = i mod capacity, destination d = j mod D, public IP p = (j / D)
 * mod P and public port 1024 + j / (D * P): the same public port is in use
 * toward every destination at once, as the kernel allows.  The source port
 * 1024 + j / D keeps original tuples unique; the internal host is drawn
 * from the seed, skewed so that low-numbered hosts hold more mappings.
 * With --ipv6 F a fraction F of the entries use 2001:db8:18::h ->
 * 2001:db8:51::z, public 2001:db8:113::p.  With --no-nat-fraction F a
 * fraction F is routed without NAT (reply tuple = inverted original): it
 * uses no public port and natscope counts it as "other".  --host-base and
 * --public-base shift the host and public IP numbers, so that runs that
 * must not share gateways or tuples can be told apart.
 *
 * By default the kernel does the NAT (CTA_NAT_SRC with a one-port range), so
 * the entries carry IPS_SRC_NAT like real masquerade entries; --nat tuple
 * instead passes the NATed reply tuple directly (faster, no status bit).
 *
 * Many messages go out per sendto() without NLM_F_ACK; the kernel answers
 * only failures, which are drained without blocking and counted.  The run
 * ends with one line of JSON on stdout.  --expect-file writes the exact
 * per-(public IP, proto) figures of the entries left live.
 *
 * --proto udplite|sctp make entries of protocols that have no sockets on
 * some kernels (SCTP); --zone N puts every entry in conntrack zone N.
 *
 * ctgen refuses to run in the initial network namespace (use ip netns exec)
 * unless --i-know is given: it fills and flushes the conntrack table.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_sctp.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <netinet/in.h>

#define GEN_PORT_BASE 1024
#define GEN_PORTS 64512 /* 1024-65535: what one bucket can hold */
#define GEN_MAX_HOSTS 130000 /* 198.18.1.1 + H stays in 198.18.0.0/15 */
#define GEN_MAX_PUBLIC 508 /* 254 in 203.0.113.0/24, 254 in 192.0.2.0/24 */
#define GEN_MAX_DESTS 65536
#define GEN_MSG_MAX 1024 /* room left before a batch is sent */

enum gen_op { OP_CREATE = 0, OP_DELETE = 1 };

struct gen_opts {
	uint64_t count;
	uint32_t hosts, dests, publics;
	uint8_t proto;
	uint32_t timeout;
	double ipv6;
	uint64_t seed;
	double rate;	   /* entries/s, 0 = as fast as the kernel goes */
	double churn;	   /* seconds of steady churn, 0 = off */
	double lifetime;   /* churn: seconds an entry lives */
	double delete_frac; /* delete this fraction after creating */
	double plain;	   /* fraction routed without NAT */
	uint32_t host_base; /* first internal host number */
	uint32_t pub_base;  /* first public IP number */
	uint16_t zone;	   /* conntrack zone, 0 = the default */
	int flush;
	int nat_tuple;	   /* pass the NATed reply tuple, no CTA_NAT */
	size_t batch;	   /* bytes per sendto */
	const char *expect_file;
	int i_know;
};

struct gen_entry {
	int v6;
	int plain; /* no NAT: uses no public port */
	uint32_t host, dest, pub;
	uint16_t sport, dport, pport;
};

struct gen_counts {
	uint64_t sent[2], failed[2];
	uint64_t eexist, enomem, enoent, other;
	int other_errno;
	uint64_t reply_overruns;
};

static struct gen_opts opt = {
	.count = 100000,
	.hosts = 4096,
	.dests = 256,
	.publics = 4,
	.proto = IPPROTO_TCP,
	.timeout = 3600,
	.seed = 1,
	.lifetime = 5,
	.batch = 128 * 1024,
};

static struct gen_counts cnt;
static uint64_t capacity;	/* distinct entry slots: dests * GEN_PORTS */
static uint8_t *failed_create;	/* bitmap over indices, NULL if unused */
static uint64_t failed_create_len;
static volatile sig_atomic_t stop;

static const uint16_t dest_ports[] = { 443, 80, 8443, 53, 5432, 3306, 6379,
				       9092, 25, 993, 22, 123 };
#define DEST_PORT_SETS (sizeof(dest_ports) / sizeof(dest_ports[0]))

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* A uniform double in [0, 1) drawn from (seed, i, stream). */
static double draw(uint64_t i, uint64_t stream)
{
	uint64_t r = splitmix64(opt.seed * 0x100000001b3ULL ^
				splitmix64(i * 4 + stream));

	return (double)(r >> 11) / 9007199254740992.0;
}

static void gen_entry(uint64_t i, struct gen_entry *e)
{
	uint64_t j = i % capacity;
	uint32_t a, b;

	e->v6 = opt.ipv6 > 0 && draw(i, 0) < opt.ipv6;
	e->plain = opt.plain > 0 && draw(i, 4) < opt.plain;
	e->dest = (uint32_t)(j % opt.dests);
	e->pub = (uint32_t)((j / opt.dests) % opt.publics);
	e->pport = (uint16_t)(GEN_PORT_BASE + j / ((uint64_t)opt.dests *
						    opt.publics));
	e->sport = (uint16_t)(GEN_PORT_BASE + j / opt.dests);
	if (e->dest / 254 < DEST_PORT_SETS)
		e->dport = dest_ports[e->dest / 254];
	else
		e->dport = (uint16_t)(10000 + e->dest / 254);
	/* the smaller of two draws: host 0 is the busiest */
	a = (uint32_t)(draw(i, 1) * opt.hosts);
	b = (uint32_t)(draw(i, 2) * opt.hosts);
	e->host = a < b ? a : b;
}

/* Addresses in network byte order (IPv4 in the first 4 bytes). */
static void host_addr(const struct gen_entry *e, uint8_t out[16])
{
	memset(out, 0, 16);
	if (e->v6) {
		static const uint8_t pfx[6] = { 0x20, 0x01, 0x0d, 0xb8,
						0, 0x18 };
		/* ::0 is the subnet-router anycast */
		uint32_t h = opt.host_base + e->host + 1;

		memcpy(out, pfx, 6);
		out[12] = (uint8_t)(h >> 24);
		out[13] = (uint8_t)(h >> 16);
		out[14] = (uint8_t)(h >> 8);
		out[15] = (uint8_t)h;
	} else {
		uint32_t a = (198u << 24) | (18u << 16) |
			     (257u + opt.host_base + e->host);

		a = htonl(a);
		memcpy(out, &a, 4);
	}
}

static void dest_addr(const struct gen_entry *e, uint8_t out[16])
{
	memset(out, 0, 16);
	if (e->v6) {
		static const uint8_t pfx[6] = { 0x20, 0x01, 0x0d, 0xb8,
						0, 0x51 };

		memcpy(out, pfx, 6);
		out[15] = (uint8_t)(e->dest % 254 + 1);
	} else {
		out[0] = 198;
		out[1] = 51;
		out[2] = 100;
		out[3] = (uint8_t)(e->dest % 254 + 1);
	}
}

static void public_addr(int v6, uint32_t pub, uint8_t out[16])
{
	pub += opt.pub_base;
	memset(out, 0, 16);
	if (v6) {
		static const uint8_t pfx[6] = { 0x20, 0x01, 0x0d, 0xb8,
						0x01, 0x13 };

		memcpy(out, pfx, 6);
		out[14] = (uint8_t)((pub + 1) >> 8);
		out[15] = (uint8_t)(pub + 1);
	} else if (pub < 254) {
		out[0] = 203;
		out[1] = 0;
		out[2] = 113;
		out[3] = (uint8_t)(pub + 1);
	} else {
		out[0] = 192;
		out[1] = 0;
		out[2] = 2;
		out[3] = (uint8_t)(pub - 254 + 1);
	}
}

/* ---- message building ---- */

/* Two templates per operation (IPv4, IPv6) so that attributes of the
 * other family never linger in the object. */
static struct nf_conntrack *tmpl[2][2];

static struct nf_conntrack *tmpl_new(int op, int v6)
{
	struct nf_conntrack *ct = nfct_new();

	if (!ct)
		return NULL;
	nfct_set_attr_u8(ct, ATTR_L3PROTO, v6 ? AF_INET6 : AF_INET);
	nfct_set_attr_u8(ct, ATTR_L4PROTO, opt.proto);
	if (opt.zone)
		nfct_set_attr_u16(ct, ATTR_ZONE, opt.zone);
	if (op == OP_DELETE)
		return ct;
	nfct_set_attr_u8(ct, ATTR_REPL_L3PROTO, v6 ? AF_INET6 : AF_INET);
	nfct_set_attr_u8(ct, ATTR_REPL_L4PROTO, opt.proto);
	nfct_set_attr_u32(ct, ATTR_TIMEOUT, opt.timeout);
	nfct_set_attr_u32(ct, ATTR_STATUS, IPS_SEEN_REPLY | IPS_ASSURED);
	if (opt.proto == IPPROTO_TCP)
		nfct_set_attr_u8(ct, ATTR_TCP_STATE,
				 TCP_CONNTRACK_ESTABLISHED);
	if (opt.proto == IPPROTO_SCTP) {
		/* the kernel wants the state with both verification tags */
		nfct_set_attr_u8(ct, ATTR_SCTP_STATE,
				 SCTP_CONNTRACK_ESTABLISHED);
		nfct_set_attr_u32(ct, ATTR_SCTP_VTAG_ORIG, htonl(0x4e530001));
		nfct_set_attr_u32(ct, ATTR_SCTP_VTAG_REPL, htonl(0x4e530002));
	}
	return ct;
}

static void set_tuple(struct nf_conntrack *ct, int v6, const uint8_t *src,
		      const uint8_t *dst, uint16_t sport, uint16_t dport,
		      int reply)
{
	if (v6) {
		nfct_set_attr(ct, reply ? ATTR_REPL_IPV6_SRC : ATTR_IPV6_SRC,
			      src);
		nfct_set_attr(ct, reply ? ATTR_REPL_IPV6_DST : ATTR_IPV6_DST,
			      dst);
	} else {
		uint32_t s, d;

		memcpy(&s, src, 4);
		memcpy(&d, dst, 4);
		nfct_set_attr_u32(ct, reply ? ATTR_REPL_IPV4_SRC :
				  ATTR_IPV4_SRC, s);
		nfct_set_attr_u32(ct, reply ? ATTR_REPL_IPV4_DST :
				  ATTR_IPV4_DST, d);
	}
	nfct_set_attr_u16(ct, reply ? ATTR_REPL_PORT_SRC : ATTR_PORT_SRC,
			  htons(sport));
	nfct_set_attr_u16(ct, reply ? ATTR_REPL_PORT_DST : ATTR_PORT_DST,
			  htons(dport));
}

/* Appends the message for entry i to buf at *off. */
static int put_entry(char *buf, size_t *off, uint64_t i, int op)
{
	struct gen_entry e;
	struct nf_conntrack *ct;
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfh;
	uint8_t host[16], dst[16], pub[16];

	gen_entry(i, &e);
	host_addr(&e, host);
	dest_addr(&e, dst);
	public_addr(e.v6, e.pub, pub);
	ct = tmpl[op][e.v6];

	set_tuple(ct, e.v6, host, dst, e.sport, e.dport, 0);
	if (op == OP_CREATE && e.plain) {
		set_tuple(ct, e.v6, dst, host, e.dport, e.sport, 1);
		nfct_attr_unset(ct, e.v6 ? ATTR_SNAT_IPV6 : ATTR_SNAT_IPV4);
		nfct_attr_unset(ct, ATTR_SNAT_PORT);
	} else if (op == OP_CREATE) {
		if (opt.nat_tuple) {
			set_tuple(ct, e.v6, dst, pub, e.dport, e.pport, 1);
		} else {
			uint32_t p4;

			set_tuple(ct, e.v6, dst, host, e.dport, e.sport, 1);
			if (e.v6) {
				nfct_set_attr(ct, ATTR_SNAT_IPV6, pub);
			} else {
				memcpy(&p4, pub, 4);
				nfct_set_attr_u32(ct, ATTR_SNAT_IPV4, p4);
			}
			nfct_set_attr_u16(ct, ATTR_SNAT_PORT, htons(e.pport));
		}
	}

	nlh = mnl_nlmsg_put_header(buf + *off);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) |
			  (op == OP_CREATE ? IPCTNL_MSG_CT_NEW :
			   IPCTNL_MSG_CT_DELETE);
	nlh->nlmsg_flags = NLM_F_REQUEST;
	if (op == OP_CREATE)
		nlh->nlmsg_flags |= NLM_F_CREATE | NLM_F_EXCL;
	nlh->nlmsg_seq = (uint32_t)(i * 2 + (uint64_t)op);
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = e.v6 ? AF_INET6 : AF_INET;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;
	if (nfct_nlmsg_build(nlh, ct) < 0) {
		fprintf(stderr, "ctgen: nfct_nlmsg_build: %s\n",
			strerror(errno));
		return -1;
	}
	*off += NLMSG_ALIGN(nlh->nlmsg_len);
	cnt.sent[op]++;
	return 0;
}

/* ---- the socket ---- */

static int sock_open(void)
{
	int fd, one = 1, size = 32 << 20;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (fd < 0) {
		perror("ctgen: socket");
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("ctgen: bind");
		close(fd);
		return -1;
	}
	/* error replies must not overflow; big batches must fit */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	size = (int)opt.batch * 4;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	/* error replies without a copy of the request */
	setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	return fd;
}

static void mark_failed(uint32_t seq)
{
	uint64_t i = seq / 2;

	if ((seq & 1) == OP_CREATE && failed_create && i < failed_create_len)
		failed_create[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Reads every queued reply without blocking.  Returns the number of ACKs
 * (error 0) seen, which only the flush asks for. */
static int drain(int fd, int wait_ms)
{
	static char rbuf[1 << 16];
	int acks = 0;

	for (;;) {
		ssize_t n;
		struct nlmsghdr *nlh;
		int len;

		if (wait_ms > 0) {
			struct timeval tv = { .tv_sec = wait_ms / 1000,
					      .tv_usec = wait_ms % 1000 *
							 1000 };

			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
				   sizeof(tv));
			n = recv(fd, rbuf, sizeof(rbuf), 0);
		} else {
			n = recv(fd, rbuf, sizeof(rbuf), MSG_DONTWAIT);
		}
		if (n < 0) {
			if (errno == ENOBUFS) {
				cnt.reply_overruns++;
				continue;
			}
			if (errno == EINTR && !stop)
				continue;
			return acks;
		}
		len = (int)n;
		for (nlh = (struct nlmsghdr *)rbuf; mnl_nlmsg_ok(nlh, len);
		     nlh = mnl_nlmsg_next(nlh, &len)) {
			const struct nlmsgerr *err;
			int op;

			if (nlh->nlmsg_type != NLMSG_ERROR)
				continue;
			err = mnl_nlmsg_get_payload(nlh);
			if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*err)))
				continue;
			if (err->error == 0) {
				acks++;
				continue;
			}
			op = (int)(nlh->nlmsg_seq & 1);
			cnt.failed[op]++;
			mark_failed(nlh->nlmsg_seq);
			switch (-err->error) {
			case EEXIST:
				cnt.eexist++;
				break;
			case ENOMEM:
				cnt.enomem++;
				break;
			case ENOENT:
				cnt.enoent++;
				break;
			default:
				cnt.other++;
				cnt.other_errno = -err->error;
			}
		}
		if (wait_ms > 0 && acks > 0)
			return acks;
	}
}

static int send_batch(int fd, char *buf, size_t *off)
{
	if (*off == 0)
		return 0;
	for (;;) {
		ssize_t n = send(fd, buf, *off, 0);

		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == ENOBUFS || errno == EAGAIN) {
			/* kernel short of memory: drain and retry */
			drain(fd, 0);
			usleep(1000);
			continue;
		}
		perror("ctgen: send");
		return -1;
	}
	*off = 0;
	drain(fd, 0);
	return 0;
}

static void pace(double t0, uint64_t done)
{
	double due, now, d;
	struct timespec ts;

	if (opt.rate <= 0)
		return;
	due = t0 + (double)done / opt.rate;
	now = now_s();
	if (due <= now)
		return;
	d = due - now;
	ts.tv_sec = (time_t)d;
	ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
}

/* Per-batch entries when pacing: about one sendto every 5 ms. */
static uint64_t paced_batch(void)
{
	uint64_t per = opt.rate > 0 ? (uint64_t)(opt.rate / 200) : 0;

	return per < 1 ? 1 : per;
}

/* Creates [from, to).  Returns 0, or -1 on a socket error. */
static int run_create(int fd, char *buf, uint64_t from, uint64_t to,
		      double t0)
{
	size_t off = 0;
	uint64_t i, in_batch = 0, per = paced_batch();

	for (i = from; i < to && !stop; i++) {
		if (put_entry(buf, &off, i, OP_CREATE))
			return -1;
		in_batch++;
		if (off + GEN_MSG_MAX > opt.batch ||
		    (opt.rate > 0 && in_batch >= per)) {
			if (send_batch(fd, buf, &off))
				return -1;
			in_batch = 0;
			pace(t0, i + 1 - from);
		}
	}
	return send_batch(fd, buf, &off);
}

static int run_delete_frac(int fd, char *buf, uint64_t n, uint8_t *dead)
{
	size_t off = 0;
	uint64_t i;

	for (i = 0; i < n && !stop; i++) {
		if (draw(i, 3) >= opt.delete_frac)
			continue;
		if (failed_create && (failed_create[i / 8] >> (i % 8)) & 1)
			continue;
		dead[i / 8] |= (uint8_t)(1u << (i % 8));
		if (put_entry(buf, &off, i, OP_DELETE))
			return -1;
		if (off + GEN_MSG_MAX > opt.batch && send_batch(fd, buf, &off))
			return -1;
	}
	return send_batch(fd, buf, &off);
}

/* Steady churn: creates at opt.rate for opt.churn seconds and deletes the
 * oldest entries so that rate * lifetime stay live.  Live afterwards:
 * [*live_from, *live_to). */
static int run_churn(int fd, char *buf, double t0, uint64_t *live_from,
		     uint64_t *live_to)
{
	uint64_t total = (uint64_t)(opt.rate * opt.churn);
	uint64_t keep = (uint64_t)(opt.rate * opt.lifetime);
	uint64_t next_new = 0, next_del = 0, per = paced_batch();
	size_t off = 0;

	while (next_new < total && !stop) {
		uint64_t k;

		for (k = 0; k < per && next_new < total; k++) {
			if (put_entry(buf, &off, next_new++, OP_CREATE))
				return -1;
			if (off + GEN_MSG_MAX > opt.batch &&
			    send_batch(fd, buf, &off))
				return -1;
		}
		while (next_new - next_del > keep) {
			uint64_t i = next_del++;

			/* its create failed: the tuple is someone else's */
			if ((failed_create[i / 8] >> (i % 8)) & 1)
				continue;
			if (put_entry(buf, &off, i, OP_DELETE))
				return -1;
			if (off + GEN_MSG_MAX > opt.batch &&
			    send_batch(fd, buf, &off))
				return -1;
		}
		if (send_batch(fd, buf, &off))
			return -1;
		pace(t0, next_new);
	}
	*live_from = next_del;
	*live_to = next_new;
	return 0;
}

static long read_ct_count(void)
{
	FILE *f = fopen("/proc/sys/net/netfilter/nf_conntrack_count", "r");
	long v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* Deletes the whole table (both families) and waits for the ACK. */
static int run_flush(int fd)
{
	char buf[256];
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfh;

	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = 0xfffffffe; /* even: not mistaken for a delete */
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = AF_UNSPEC;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;
	if (send(fd, buf, nlh->nlmsg_len, 0) < 0) {
		perror("ctgen: flush");
		return -1;
	}
	while (!stop && drain(fd, 1000) == 0)
		;
	return 0;
}

/* ---- expected figures ---- */

struct gw_fig {
	uint64_t mappings;
	uint64_t *ports; /* bitmap, 65536 bits */
	uint64_t *hosts; /* bitmap, opt.hosts bits */
	uint32_t *dest_maps;  /* per destination */
	uint32_t *host_maps;  /* per host */
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void fmt_addr(int v6, const uint8_t *a, char *out)
{
	inet_ntop(v6 ? AF_INET6 : AF_INET, a, out, INET6_ADDRSTRLEN);
}

static int popcount_words(const uint64_t *w, size_t n)
{
	size_t k;
	int c = 0;

	for (k = 0; k < n; k++)
		c += __builtin_popcountll(w[k]);
	return c;
}

static const char *proto_name(uint8_t p)
{
	switch (p) {
	case IPPROTO_TCP: return "tcp";
	case IPPROTO_UDP: return "udp";
	case IPPROTO_UDPLITE: return "udplite";
	case IPPROTO_SCTP: return "sctp";
	}
	return "?";
}

/* live(i) says whether entry i is still in the table. */
static int write_expect(const char *path, uint64_t from, uint64_t to,
			const uint8_t *dead)
{
	uint32_t ngw = 2 * opt.publics, g;
	struct gw_fig *gw = calloc(ngw, sizeof(*gw));
	uint64_t *hp = NULL, nhp = 0, i, live = 0, plain = 0;
	uint32_t *host_ports = NULL; /* distinct ports per (gw, host) */
	const char *pname = proto_name(opt.proto);
	char tmp[4096];
	FILE *f;
	int first;

	if (!gw)
		return -1;
	for (g = 0; g < ngw; g++) {
		gw[g].ports = calloc(65536 / 64, sizeof(uint64_t));
		gw[g].hosts = calloc(opt.hosts / 64 + 1, sizeof(uint64_t));
		gw[g].dest_maps = calloc(opt.dests, sizeof(uint32_t));
		gw[g].host_maps = calloc(opt.hosts, sizeof(uint32_t));
		if (!gw[g].ports || !gw[g].hosts || !gw[g].dest_maps ||
		    !gw[g].host_maps)
			return -1;
	}
	hp = malloc((to - from + 1) * sizeof(uint64_t));
	host_ports = calloc((size_t)ngw * opt.hosts, sizeof(uint32_t));
	if (!hp || !host_ports)
		return -1;

	for (i = from; i < to; i++) {
		struct gen_entry e;

		if (dead && (dead[i / 8] >> (i % 8)) & 1)
			continue;
		if (failed_create && i < failed_create_len &&
		    (failed_create[i / 8] >> (i % 8)) & 1)
			continue;
		gen_entry(i, &e);
		if (e.plain) {
			plain++;
			continue;
		}
		g = (uint32_t)e.v6 * opt.publics + e.pub;
		gw[g].mappings++;
		gw[g].ports[e.pport / 64] |= 1ULL << (e.pport % 64);
		gw[g].hosts[e.host / 64] |= 1ULL << (e.host % 64);
		gw[g].dest_maps[e.dest]++;
		gw[g].host_maps[e.host]++;
		hp[nhp++] = ((uint64_t)g << 48) | ((uint64_t)e.host << 16) |
			    e.pport;
		live++;
	}
	qsort(hp, nhp, sizeof(*hp), cmp_u64);
	for (i = 0; i < nhp; i++) {
		if (i > 0 && hp[i] == hp[i - 1])
			continue;
		g = (uint32_t)(hp[i] >> 48);
		host_ports[(size_t)g * opt.hosts +
			   ((hp[i] >> 16) & 0xffffffffULL)]++;
	}

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f) {
		perror("ctgen: expect file");
		return -1;
	}
	fprintf(f, "{\"live\": %" PRIu64 ", \"nat\": %" PRIu64
		   ", \"other\": %" PRIu64 ", \"proto\": \"%s\", "
		   "\"gateways\": [", live + plain, live, plain, pname);
	first = 1;
	for (g = 0; g < ngw; g++) {
		int v6 = g >= opt.publics;
		uint32_t d, worst = 0, nd = 0;
		uint8_t a[16];
		char ip[INET6_ADDRSTRLEN], dip[INET6_ADDRSTRLEN];
		struct gen_entry we = { .v6 = v6 };

		if (!gw[g].mappings)
			continue;
		for (d = 0; d < opt.dests; d++) {
			if (!gw[g].dest_maps[d])
				continue;
			nd++;
			if (gw[g].dest_maps[d] > gw[g].dest_maps[worst] ||
			    !gw[g].dest_maps[worst])
				worst = d;
		}
		public_addr(v6, g % opt.publics, a);
		fmt_addr(v6, a, ip);
		we.dest = worst;
		dest_addr(&we, a);
		fmt_addr(v6, a, dip);
		fprintf(f, "%s\n {\"public_ip\": \"%s\", \"proto\": \"%s\", "
			   "\"mappings\": %" PRIu64 ", \"ports_in_use\": %d, "
			   "\"hosts\": %d, \"destinations\": %u, "
			   "\"worst_destination\": {\"ip\": \"%s\", "
			   "\"port\": %u, \"mappings\": %u}}",
			first ? "" : ",", ip, pname, gw[g].mappings,
			popcount_words(gw[g].ports, 65536 / 64),
			popcount_words(gw[g].hosts, opt.hosts / 64 + 1), nd,
			dip, worst / 254 < DEST_PORT_SETS ?
			dest_ports[worst / 254] : 10000 + worst / 254,
			gw[g].dest_maps[worst]);
		first = 0;
	}
	fprintf(f, "],\n\"hosts\": {");
	first = 1;
	for (g = 0; g < ngw; g++) {
		int v6 = g >= opt.publics, hfirst = 1;
		uint32_t h;
		uint8_t a[16];
		char ip[INET6_ADDRSTRLEN];

		if (!gw[g].mappings)
			continue;
		public_addr(v6, g % opt.publics, a);
		fmt_addr(v6, a, ip);
		fprintf(f, "%s\n \"%s/%s\": [", first ? "" : ",", ip, pname);
		for (h = 0; h < opt.hosts; h++) {
			struct gen_entry he = { .v6 = v6, .host = h };

			if (!gw[g].host_maps[h])
				continue;
			host_addr(&he, a);
			fmt_addr(v6, a, ip);
			fprintf(f, "%s[\"%s\", %u, %u]", hfirst ? "" : ", ",
				ip, gw[g].host_maps[h],
				host_ports[(size_t)g * opt.hosts + h]);
			hfirst = 0;
		}
		fprintf(f, "]");
		first = 0;
	}
	fprintf(f, "},\n\"destinations\": {");
	first = 1;
	for (g = 0; g < ngw; g++) {
		int v6 = g >= opt.publics, dfirst = 1;
		uint32_t d;
		uint8_t a[16];
		char ip[INET6_ADDRSTRLEN];

		if (!gw[g].mappings)
			continue;
		public_addr(v6, g % opt.publics, a);
		fmt_addr(v6, a, ip);
		fprintf(f, "%s\n \"%s/%s\": [", first ? "" : ",", ip, pname);
		for (d = 0; d < opt.dests; d++) {
			struct gen_entry de = { .v6 = v6, .dest = d };

			if (!gw[g].dest_maps[d])
				continue;
			dest_addr(&de, a);
			fmt_addr(v6, a, ip);
			fprintf(f, "%s[\"%s\", %u, %u]", dfirst ? "" : ", ",
				ip, d / 254 < DEST_PORT_SETS ?
				dest_ports[d / 254] : 10000 + d / 254,
				gw[g].dest_maps[d]);
			dfirst = 0;
		}
		fprintf(f, "]");
		first = 0;
	}
	fprintf(f, "}}\n");
	if (fclose(f) || rename(tmp, path)) {
		perror("ctgen: expect file");
		return -1;
	}
	for (g = 0; g < ngw; g++) {
		free(gw[g].ports);
		free(gw[g].hosts);
		free(gw[g].dest_maps);
		free(gw[g].host_maps);
	}
	free(gw);
	free(hp);
	free(host_ports);
	return 0;
}

/* ---- main ---- */

static int stat_netns(long pid, struct stat *st)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%ld/ns/net", pid);
	return stat(path, st);
}

static long parent_of(long pid)
{
	char path[64], line[512], *p;
	FILE *f;
	long ppid = 0;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fgets(line, sizeof(line), f) && (p = strrchr(line, ')')))
		sscanf(p + 1, " %*c %ld", &ppid);
	fclose(f);
	return ppid;
}

/* Whether we run in the host's network namespace: the one of pid 1 when it
 * can be read (in a container it often cannot), else the one of our
 * furthest readable ancestor - `ip netns exec` leaves its caller behind. */
static int in_init_netns(void)
{
	struct stat self, other;
	long pid;

	if (stat("/proc/self/ns/net", &self))
		return 1; /* cannot tell: assume the worst */
	if (!stat_netns(1, &other))
		return self.st_ino == other.st_ino &&
		       self.st_dev == other.st_dev;
	for (pid = getppid(); pid > 1; pid = parent_of(pid)) {
		if (stat_netns(pid, &other))
			break;
		if (self.st_ino != other.st_ino || self.st_dev != other.st_dev)
			return 0;
	}
	return 1;
}

static void usage(FILE *f)
{
	fputs("usage: ctgen [options]   (inside a throw-away netns)\n"
	      "  --count N          entries to create (default 100000)\n"
	      "  --hosts H          internal hosts (default 4096, max 130000)\n"
	      "  --dests D          destination ip:port pairs (default 256)\n"
	      "  --public-ips P     public IPs (default 4, max 508)\n"
	      "  --proto tcp|udp|udplite|sctp  (default tcp)\n"
	      "  --zone N           conntrack zone of every entry (default 0)\n"
	      "  --timeout S        entry timeout (default 3600)\n"
	      "  --ipv6 F           fraction of IPv6 entries (default 0)\n"
	      "  --seed S           (default 1)\n"
	      "  --rate R           entries/s, 0 = full speed (default 0)\n"
	      "  --churn S          steady churn for S seconds at --rate\n"
	      "  --lifetime S       churn: entry lifetime (default 5)\n"
	      "  --no-nat-fraction F  fraction routed without NAT (default 0)\n"
	      "  --host-base N      first internal host number (default 0)\n"
	      "  --public-base N    first public IP number (default 0)\n"
	      "  --delete-fraction F  then delete this fraction\n"
	      "  --flush            then delete the whole table\n"
	      "  --nat attr|tuple   kernel NAT (default) or given reply tuple\n"
	      "  --batch BYTES      bytes per sendto (default 131072)\n"
	      "  --expect-file F    write the exact figures left live\n"
	      "  --i-know           allow the initial network namespace\n",
	      f);
}

static int parse_opts(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "count", 1, NULL, 'n' },   { "hosts", 1, NULL, 'H' },
		{ "dests", 1, NULL, 'D' },   { "public-ips", 1, NULL, 'P' },
		{ "proto", 1, NULL, 'p' },   { "timeout", 1, NULL, 't' },
		{ "ipv6", 1, NULL, '6' },    { "seed", 1, NULL, 's' },
		{ "rate", 1, NULL, 'r' },    { "churn", 1, NULL, 'c' },
		{ "lifetime", 1, NULL, 'l' },
		{ "delete-fraction", 1, NULL, 'd' },
		{ "no-nat-fraction", 1, NULL, 'x' },
		{ "host-base", 1, NULL, 'B' },
		{ "public-base", 1, NULL, 'Q' },
		{ "zone", 1, NULL, 'Z' },
		{ "flush", 0, NULL, 'F' },   { "nat", 1, NULL, 'N' },
		{ "batch", 1, NULL, 'b' },   { "expect-file", 1, NULL, 'e' },
		{ "i-know", 0, NULL, 'K' },  { "help", 0, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'n': opt.count = strtoull(optarg, NULL, 0); break;
		case 'H': opt.hosts = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'D': opt.dests = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'P':
			opt.publics = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'p':
			if (!strcmp(optarg, "tcp"))
				opt.proto = IPPROTO_TCP;
			else if (!strcmp(optarg, "udp"))
				opt.proto = IPPROTO_UDP;
			else if (!strcmp(optarg, "udplite"))
				opt.proto = IPPROTO_UDPLITE;
			else if (!strcmp(optarg, "sctp"))
				opt.proto = IPPROTO_SCTP;
			else
				return -1;
			break;
		case 't':
			opt.timeout = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case '6': opt.ipv6 = atof(optarg); break;
		case 's': opt.seed = strtoull(optarg, NULL, 0); break;
		case 'r': opt.rate = atof(optarg); break;
		case 'c': opt.churn = atof(optarg); break;
		case 'l': opt.lifetime = atof(optarg); break;
		case 'd': opt.delete_frac = atof(optarg); break;
		case 'x': opt.plain = atof(optarg); break;
		case 'B':
			opt.host_base = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'Q':
			opt.pub_base = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'Z': {
			unsigned long z = strtoul(optarg, NULL, 0);

			if (z > 65535)
				return -1;
			opt.zone = (uint16_t)z;
			break;
		}
		case 'F': opt.flush = 1; break;
		case 'N':
			if (!strcmp(optarg, "tuple"))
				opt.nat_tuple = 1;
			else if (!strcmp(optarg, "attr"))
				opt.nat_tuple = 0;
			else
				return -1;
			break;
		case 'b': opt.batch = strtoul(optarg, NULL, 0); break;
		case 'e': opt.expect_file = optarg; break;
		case 'K': opt.i_know = 1; break;
		case 'h': usage(stdout); exit(0);
		default: return -1;
		}
	}
	if (optind != argc || opt.hosts < 1 ||
	    opt.hosts > GEN_MAX_HOSTS - opt.host_base ||
	    opt.host_base > GEN_MAX_HOSTS ||
	    opt.pub_base > GEN_MAX_PUBLIC ||
	    opt.publics > GEN_MAX_PUBLIC - opt.pub_base ||
	    opt.dests < 1 || opt.dests > GEN_MAX_DESTS || opt.publics < 1 ||
	    opt.publics > GEN_MAX_PUBLIC || opt.batch < 4096 ||
	    opt.batch > (64 << 20) || opt.ipv6 < 0 || opt.ipv6 > 1 ||
	    opt.delete_frac < 0 || opt.delete_frac > 1 || opt.plain < 0 ||
	    opt.plain > 1 || opt.rate < 0 ||
	    opt.churn < 0 || (opt.churn > 0 && opt.rate <= 0) ||
	    opt.lifetime <= 0)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	int fd, rc = 0, op, v6;
	char *buf;
	double t0, t_created, t_end, t_flush = 0;
	uint64_t live_from = 0, live_to, created;
	long before_flush = -1, after_flush = -1;
	uint8_t *dead = NULL;

	if (parse_opts(argc, argv)) {
		usage(stderr);
		return 2;
	}
	if (!opt.i_know && in_init_netns()) {
		fputs("ctgen: refusing to fill the conntrack table of the "
		      "initial network namespace;\n"
		      "ctgen: run it with `ip netns exec NAME ctgen ...` "
		      "(or pass --i-know)\n", stderr);
		return 2;
	}
	capacity = (uint64_t)opt.dests * GEN_PORTS;
	if (opt.churn > 0) {
		if (opt.rate * opt.lifetime >= (double)capacity) {
			fputs("ctgen: rate * lifetime exceeds dests * 64512\n",
			      stderr);
			return 2;
		}
		opt.count = (uint64_t)(opt.rate * opt.churn);
	} else if (opt.count > capacity) {
		fprintf(stderr, "ctgen: --count above dests * 64512 = %"
			PRIu64 "\n", capacity);
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	buf = malloc(opt.batch);
	for (op = 0; op < 2; op++)
		for (v6 = 0; v6 < 2; v6++)
			tmpl[op][v6] = tmpl_new(op, v6);
	failed_create_len = opt.count;
	failed_create = calloc(opt.count / 8 + 1, 1);
	if (!buf || !tmpl[0][0] || !tmpl[0][1] || !tmpl[1][0] ||
	    !tmpl[1][1] || !failed_create) {
		fputs("ctgen: out of memory\n", stderr);
		return 1;
	}
	fd = sock_open();
	if (fd < 0)
		return 1;

	t0 = now_s();
	if (opt.churn > 0) {
		rc = run_churn(fd, buf, t0, &live_from, &live_to);
	} else {
		rc = run_create(fd, buf, 0, opt.count, t0);
		live_to = opt.count;
	}
	t_created = now_s();
	if (!rc && opt.delete_frac > 0 && opt.churn <= 0) {
		dead = calloc(opt.count / 8 + 1, 1);
		if (!dead)
			rc = -1;
		else
			rc = run_delete_frac(fd, buf, opt.count, dead);
	}
	drain(fd, 0);
	if (!rc && opt.flush) {
		double tf = now_s();

		before_flush = read_ct_count();
		rc = run_flush(fd);
		after_flush = read_ct_count();
		t_flush = now_s() - tf;
		live_from = live_to = 0;
	}
	t_end = now_s();
	created = cnt.sent[OP_CREATE] - cnt.failed[OP_CREATE];

	if (!rc && opt.expect_file &&
	    write_expect(opt.expect_file, live_from, live_to, dead)) {
		fputs("ctgen: could not write the expect file\n", stderr);
		rc = -1;
	}

	printf("{\"created\": %" PRIu64 ", \"create_errors\": %" PRIu64
	       ", \"deleted\": %" PRIu64 ", \"delete_errors\": %" PRIu64
	       ", \"flushed\": %ld, \"errors\": {\"eexist\": %" PRIu64
	       ", \"enomem\": %" PRIu64 ", \"enoent\": %" PRIu64
	       ", \"other\": %" PRIu64 ", \"other_errno\": %d"
	       ", \"reply_overruns\": %" PRIu64 "}"
	       ", \"create_seconds\": %.3f, \"flush_seconds\": %.3f"
	       ", \"seconds\": %.3f, \"rate\": %.0f, \"table_count\": %ld"
	       ", \"interrupted\": %s}\n",
	       created, cnt.failed[OP_CREATE],
	       cnt.sent[OP_DELETE] - cnt.failed[OP_DELETE],
	       cnt.failed[OP_DELETE],
	       before_flush >= 0 && after_flush >= 0 ?
	       before_flush - after_flush : 0,
	       cnt.eexist, cnt.enomem, cnt.enoent, cnt.other, cnt.other_errno,
	       cnt.reply_overruns, t_created - t0, t_flush, t_end - t0,
	       t_created > t0 ? (double)created / (t_created - t0) : 0.0,
	       read_ct_count(), stop ? "true" : "false");
	fflush(stdout);

	close(fd);
	for (op = 0; op < 2; op++)
		for (v6 = 0; v6 < 2; v6++)
			nfct_destroy(tmpl[op][v6]);
	free(buf);
	free(failed_create);
	free(dead);
	return rc ? 1 : (stop ? 130 : 0);
}
