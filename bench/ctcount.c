/*
 * ctcount - the floor: the least work a conntrack event reader can do.
 *
 * Event mode (default): subscribes to the conntrack NEW and DESTROY groups
 * (and UPDATE with --update), forces the receive buffer to --buffer bytes,
 * and reads without blocking until EAGAIN, then polls.  It only walks the
 * netlink headers and counts messages by type - no attribute is parsed.  It
 * stops after --expect N messages, after --idle S seconds without traffic
 * (counted from the first message), or on SIGINT/SIGTERM.  --mmsg N reads
 * up to N datagrams per recvmmsg() call instead of one per recv(): each
 * event is its own datagram, so this shows what batching the syscall buys.
 * --nap MS sleeps MS milliseconds after each drain before polling again, so
 * that events pile up and each wake-up reads many (latency for CPU).
 *
 * Dump mode (--dump): asks for the whole table once and counts the entries
 * (--snat-only asks the kernel to send only entries with IPS_SRC_NAT).
 *
 * Either way one JSON line goes to stdout: messages per type, ENOBUFS
 * errors, the kernel's drop counter for the socket (SO_MEMINFO), wall time
 * and its own CPU time.  In event mode a line {"ready": true} goes to stderr
 * once the socket is subscribed, so a harness knows when to start a storm.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif

struct counts {
	uint64_t new, update, destroy, dump, other;
	uint64_t enobufs, recvs, bytes; /* recvs: datagrams read */
};

static volatile sig_atomic_t stop;

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

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long kernel_drops(int fd)
{
	uint32_t mem[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mem);

	memset(mem, 0, sizeof(mem));
	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) < 0 ||
	    len < (SK_MEMINFO_DROPS + 1) * sizeof(uint32_t))
		return -1;
	return (long)mem[SK_MEMINFO_DROPS];
}

/* Counts every message in one datagram.  Returns 1 when a dump ended. */
static int count_msgs(const char *buf, int len, struct counts *c)
{
	const struct nlmsghdr *nlh;

	for (nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, len);
	     nlh = mnl_nlmsg_next(nlh, &len)) {
		if (nlh->nlmsg_type == NLMSG_DONE)
			return 1;
		if (nlh->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

			if (nlh->nlmsg_len >= mnl_nlmsg_size(sizeof(*e)) &&
			    e->error) {
				fprintf(stderr, "ctcount: kernel: %s\n",
					strerror(-e->error));
				return 1;
			}
			continue;
		}
		if ((nlh->nlmsg_type >> 8) != NFNL_SUBSYS_CTNETLINK) {
			c->other++;
			continue;
		}
		if (nlh->nlmsg_flags & NLM_F_MULTI) {
			c->dump++;
			continue;
		}
		switch (nlh->nlmsg_type & 0xff) {
		case IPCTNL_MSG_CT_NEW:
			if (nlh->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL))
				c->new++;
			else
				c->update++;
			break;
		case IPCTNL_MSG_CT_DELETE:
			c->destroy++;
			break;
		default:
			c->other++;
		}
	}
	return 0;
}

#define MMSG_MAX 256
#define MMSG_BUF 4096 /* one event message is a few hundred bytes */

/* Reads up to n datagrams in one recvmmsg().  Returns how many, or -1 at
 * EAGAIN (ENOBUFS is counted and retried). */
static int read_mmsg(int fd, int n, struct counts *c)
{
	static char bufs[MMSG_MAX][MMSG_BUF];
	static struct iovec iov[MMSG_MAX];
	static struct mmsghdr msgs[MMSG_MAX];
	int k, r;

	for (k = 0; k < n; k++) {
		iov[k].iov_base = bufs[k];
		iov[k].iov_len = MMSG_BUF;
		memset(&msgs[k].msg_hdr, 0, sizeof(msgs[k].msg_hdr));
		msgs[k].msg_hdr.msg_iov = &iov[k];
		msgs[k].msg_hdr.msg_iovlen = 1;
	}
	for (;;) {
		r = recvmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT, NULL);
		if (r >= 0)
			break;
		if (errno != ENOBUFS)
			return -1;
		c->enobufs++;
	}
	for (k = 0; k < r; k++) {
		c->recvs++;
		c->bytes += msgs[k].msg_len;
		count_msgs(bufs[k], (int)msgs[k].msg_len, c);
	}
	return r;
}

static void usage(FILE *f)
{
	fputs("usage: ctcount [--buffer BYTES] [--update] [--expect N] "
	      "[--idle S] [--max S] [--mmsg N] [--nap MS]\n"
	      "       ctcount --dump [--snat-only]\n", f);
}

static int send_dump(int fd, int snat_only)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *nfh;

	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = 1;
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = AF_UNSPEC;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;
	if (snat_only) {
		/* kernel-side status filter (Linux 5.19+) */
		mnl_attr_put_u32(nlh, CTA_STATUS, htonl(IPS_SRC_NAT));
		mnl_attr_put_u32(nlh, CTA_STATUS_MASK, htonl(IPS_SRC_NAT));
	}
	if (send(fd, buf, nlh->nlmsg_len, 0) < 0) {
		perror("ctcount: send");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "buffer", 1, NULL, 'b' }, { "update", 0, NULL, 'u' },
		{ "expect", 1, NULL, 'e' }, { "idle", 1, NULL, 'i' },
		{ "max", 1, NULL, 'm' },    { "dump", 0, NULL, 'd' },
		{ "snat-only", 0, NULL, 's' }, { "mmsg", 1, NULL, 'M' },
		{ "nap", 1, NULL, 'N' },
		{ "help", 0, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static char buf[1 << 17];
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	struct counts c = { 0 };
	long long bufsize = 128LL << 20;
	uint64_t expect = 0;
	double idle = 5, max_s = 0, t0, t_first = 0, t_last = 0, cpu0;
	int fd, ch, update = 0, dump = 0, snat_only = 0, done = 0, mmsg = 1;
	int size, got_size, nap_ms = 0;
	socklen_t sl = sizeof(got_size);
	char *end;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'b':
			bufsize = strtoll(optarg, &end, 0);
			if (*end == 'K' || *end == 'k')
				bufsize <<= 10;
			else if (*end == 'M' || *end == 'm')
				bufsize <<= 20;
			else if (*end == 'G' || *end == 'g')
				bufsize <<= 30;
			break;
		case 'u': update = 1; break;
		case 'e': expect = strtoull(optarg, NULL, 0); break;
		case 'i': idle = atof(optarg); break;
		case 'm': max_s = atof(optarg); break;
		case 'd': dump = 1; break;
		case 's': snat_only = 1; break;
		case 'M': mmsg = atoi(optarg); break;
		case 'N': nap_ms = atoi(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || bufsize < 4096 || bufsize > (1LL << 30) ||
	    mmsg < 1 || mmsg > MMSG_MAX || (dump && mmsg > 1)) {
		usage(stderr);
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    NETLINK_NETFILTER);
	if (fd < 0) {
		perror("ctcount: socket");
		return 1;
	}
	if (!dump) {
		sa.nl_groups = (1u << (NFNLGRP_CONNTRACK_NEW - 1)) |
			       (1u << (NFNLGRP_CONNTRACK_DESTROY - 1));
		if (update)
			sa.nl_groups |= 1u << (NFNLGRP_CONNTRACK_UPDATE - 1);
	}
	size = (int)bufsize;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size))) {
		perror("ctcount: SO_RCVBUF");
		return 1;
	}
	getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got_size, &sl);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("ctcount: bind");
		return 1;
	}
	t0 = now_s();
	cpu0 = cpu_s();
	if (dump) {
		if (send_dump(fd, snat_only))
			return 1;
	} else {
		fputs("{\"ready\": true}\n", stderr);
		fflush(stderr);
	}

	while (!stop && !done) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int r, got = 0;

		r = poll(&pfd, 1, 100);
		if (r < 0 && errno != EINTR) {
			perror("ctcount: poll");
			break;
		}
		while (mmsg > 1) {
			r = read_mmsg(fd, mmsg, &c);
			if (r < 0)
				break;
			got = 1;
		}
		for (; mmsg == 1;) {
			n = recv(fd, buf, sizeof(buf), 0);
			if (n < 0) {
				if (errno == ENOBUFS) {
					c.enobufs++;
					continue;
				}
				break; /* EAGAIN, EINTR */
			}
			got = 1;
			c.recvs++;
			c.bytes += (uint64_t)n;
			if (count_msgs(buf, (int)n, &c) && dump) {
				done = 1;
				break;
			}
		}
		if (done)
			break;
		if (got) {
			t_last = now_s();
			if (t_first == 0)
				t_first = t_last;
		}
		if (expect && c.new + c.update + c.destroy >= expect)
			break;
		if (!dump && t_first > 0 && now_s() - t_last >= idle)
			break;
		if (max_s > 0 && now_s() - t0 >= max_s)
			break;
		if (nap_ms > 0 && got) {
			struct timespec ts = { .tv_sec = nap_ms / 1000,
					       .tv_nsec = nap_ms % 1000 *
							  1000000L };

			nanosleep(&ts, NULL);
		}
	}
	if (dump)
		t_last = now_s();

	printf("{\"mode\": \"%s\", \"new\": %" PRIu64 ", \"update\": %" PRIu64
	       ", \"destroy\": %" PRIu64 ", \"dump\": %" PRIu64
	       ", \"other\": %" PRIu64 ", \"enobufs\": %" PRIu64
	       ", \"kernel_drops\": %ld, \"recvs\": %" PRIu64
	       ", \"bytes\": %" PRIu64
	       ", \"rcvbuf\": %d, \"seconds\": %.3f, \"active_seconds\": %.3f"
	       ", \"cpu_seconds\": %.3f}\n",
	       dump ? (snat_only ? "dump-snat" : "dump") : "events", c.new,
	       c.update, c.destroy, c.dump, c.other, c.enobufs,
	       kernel_drops(fd), c.recvs, c.bytes, got_size, t_last - t0,
	       t_first > 0 ? t_last - t_first : t_last - t0, cpu_s() - cpu0);
	close(fd);
	return 0;
}
