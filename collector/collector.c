/*
 * collector.c - the live loop: the sockets, the clock and the store
 * writer around the tracker (tracker.h), which decides everything about
 * correctness.
 *
 * Three ctnetlink sockets: one subscribed to NEW, UPDATE and DESTROY
 * events (with a large receive buffer), one for table dumps (read on a
 * thread of its own, dumper.h) and one for the self-audit's per-entry
 * GETs.  They are separate so that a dump or a GET can never be the reason
 * events overflow, and an overrun of the event socket cannot break them.
 *
 * Barriers.  A dump, a count audit and a sample's verdict each need every
 * event the kernel produced before a moment to have been applied
 * (tracker.h).  The loop asks for a barrier, reads the kernel's drop
 * counter, and goes on draining events; the first time the queue is found
 * empty with the counter unchanged, the barrier is reached and the waiting
 * work runs.  If the counter moved, events were lost: the tracker opens a
 * gap, and the barrier waits for the next empty queue.
 *
 * Events lost are counted exactly: the kernel counts every event it could
 * not queue for us in the socket's drop counter (SO_MEMINFO).
 */
#include "collector/collector.h"
#include "collector/ctmsg.h"
#include "collector/dumper.h"
#include "collector/kstat.h"
#include "collector/localaddr.h"
#include "collector/tracker.h"
#include "store/store.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define EV_BATCH 64	    /* datagrams per recvmmsg() */
#define EV_BUFSZ 4096	    /* one event is a few hundred bytes */
#define EV_ROUNDS 16	    /* recvmmsg() calls before looking elsewhere */
#define EV_NAP_NS 1000000LL /* after draining the queue, let events gather */
#define DUMP_ROUNDS 32	    /* dump chunks per loop iteration */
#define WRITE_RETRY_MS 50   /* writer busy: try again this soon */
#define GET_BUFSZ (TRACKER_SAMPLE_MAX * 256)
#define GET_RCVBUF (4 << 20)

/* Work that waits for a barrier. */
enum collector_barrier {
	BARRIER_DUMP = 1,     /* then start a dump */
	BARRIER_AUDIT = 2,    /* then the count audit */
	BARRIER_SAMPLE = 4,   /* then the sample's verdict */
	BARRIER_DUMP_END = 8, /* then end the complete dump (and sweep) */
	BARRIER_WRITE = 16,   /* then the interval's snapshot */
};

struct collector {
	struct collector_config cfg;
	struct mnl_socket *ev, *q;
	struct dumper *dumper;
	struct localaddr *la;
	struct tracker *tracker;
	struct store_writer *w;
	int ready_said; /* cfg.ready was called */

	/* event receive buffers */
	struct mmsghdr mm[EV_BATCH];
	struct iovec iov[EV_BATCH];
	uint8_t *evbuf; /* EV_BATCH * EV_BUFSZ */
	size_t rcvbuf;	/* what the kernel granted */
	uint32_t drops_raw; /* the socket's drop counter when last read */
	uint64_t drops;	    /* events lost since open */
	int64_t ev_holdoff_ns; /* don't read events before this */

	/* barriers */
	unsigned barrier;	/* enum collector_barrier bits waiting */
	uint64_t barrier_drops; /* drops when asked */
	int64_t audit_count;	/* the kernel's count when the audit asked */
	uint64_t audit_changes;

	/* the running dump */
	uint32_t dump_seq;
	double dump_cpu, dump_end_cpu; /* process CPU at its start, end */

	/* the running sample: the kernel's answers, by index */
	struct ledger_mapping sample[TRACKER_SAMPLE_MAX];
	struct ct_entry answer[TRACKER_SAMPLE_MAX];
	uint8_t answered[TRACKER_SAMPLE_MAX]; /* 1 found, 2 not found */
	unsigned sample_n;
	int sample_sending; /* its requests are with the dump reader */
	uint32_t get_seq, sample_base;
	double sample_cpu;
	uint8_t *getbuf; /* GET_BUFSZ */

	struct kstat ks;
	int write_wanted;
	int64_t next_tick_ns, write_retry_ns;
	int64_t write_asked_ns; /* the tick asked for a snapshot (barrier) */
	int64_t drained_ms;	/* the event queue was last found empty */
};

/* ---- small helpers ---- */

static uint32_t collector_socket_drops(const struct collector *c)
{
	uint32_t mem[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mem);

	if (getsockopt(mnl_socket_get_fd(c->ev), SOL_SOCKET, SO_MEMINFO, mem,
		       &len) < 0 ||
	    len < sizeof(uint32_t) * (SK_MEMINFO_DROPS + 1))
		return c->drops_raw; /* unknown: no change */
	return mem[SK_MEMINFO_DROPS];
}

/* The kernel's count of events dropped for us since open. */
static uint64_t collector_drops(struct collector *c)
{
	uint32_t raw = collector_socket_drops(c);

	/* the kernel's counter is 32 bits: add the difference modulo 2^32 */
	c->drops += (uint32_t)(raw - c->drops_raw);
	c->drops_raw = raw;
	return c->drops;
}

/* CPU time of the whole process (all threads), or of this thread. */
static double collector_cpu(clockid_t which)
{
	struct timespec ts;

	if (clock_gettime(which, &ts) < 0)
		return 0;
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- netlink messages ---- */

/* Feeds the conntrack entries of one datagram to the tracker.  For a dump
 * chunk, only messages of the running dump count; its end is the
 * dumper's verdict, not decided here. */
static void collector_datagram(struct collector *c, const void *buf, int len,
			       int is_dump, int64_t now)
{
	const struct nlmsghdr *nlh;
	struct ct_entry e;

	for (nlh = buf; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
		if (is_dump && nlh->nlmsg_seq != c->dump_seq)
			continue; /* left over from an earlier dump */
		if (nlh->nlmsg_type == NLMSG_DONE || nlh->nlmsg_type == NLMSG_ERROR)
			continue; /* the dumper judged the chunk's end */
		if (ctmsg_parse(nlh, &e) < 0) {
			if (errno == EBADMSG)
				tracker_malformed(c->tracker,
						  is_dump ? "dump" : "event");
			continue;
		}
		if (is_dump != (e.type == CTMSG_DUMP))
			continue;
		tracker_entry(c->tracker, &e, now);
	}
	if (len > 0)
		tracker_malformed(c->tracker, is_dump ? "dump" : "event");
}

/* ---- barriers ---- */

static void collector_barrier(struct collector *c, unsigned what)
{
	if (!c->barrier)
		c->barrier_drops = collector_drops(c);
	c->barrier |= what;
}

static void collector_start_dump(struct collector *c, int64_t now)
{
	tracker_dump_begin(c->tracker, c->drops, now);
	c->dump_cpu = collector_cpu(CLOCK_PROCESS_CPUTIME_ID);
	if (dumper_start(c->dumper, ++c->dump_seq) < 0) {
		int err = errno;

		log_warn("conntrack: dump request");
		tracker_dump_end(c->tracker, err, c->drops, 0, now);
	}
}

static void collector_judge_sample(struct collector *c, int64_t now)
{
	double cpu = collector_cpu(CLOCK_THREAD_CPUTIME_ID);

	for (unsigned i = 0; i < c->sample_n; i++)
		if (c->answered[i])
			tracker_sample_result(c->tracker, i,
					      c->answered[i] == 1 ? &c->answer[i]
								  : NULL,
					      now);
	cpu = collector_cpu(CLOCK_THREAD_CPUTIME_ID) - cpu;
	tracker_sample_end(c->tracker, c->sample_cpu + cpu, now);
	c->sample_n = 0;
}

/* The event queue was found empty; drops was read just after. */
static void collector_quiet(struct collector *c, uint64_t drops)
{
	int64_t now = ns_now_ms();

	c->drained_ms = now;
	tracker_quiet(c->tracker, drops, now);
	if (!c->barrier)
		return;
	if (drops != c->barrier_drops) {
		/* lost since the barrier was asked for: the tracker opened
		 * a gap; audits and samples are void, a dump waits on */
		c->barrier_drops = drops;
		if (c->barrier & BARRIER_SAMPLE)
			collector_judge_sample(c, now); /* voided by the loss */
		c->barrier &= BARRIER_DUMP | BARRIER_DUMP_END | BARRIER_WRITE;
		return;
	}
	if (c->barrier & BARRIER_WRITE)
		c->write_wanted = 1; /* every event until now is in */
	if (c->barrier & BARRIER_DUMP_END)
		tracker_dump_end(c->tracker, 0, drops,
				 c->dump_end_cpu - c->dump_cpu, now);
	if (c->barrier & BARRIER_AUDIT)
		tracker_audit_count(c->tracker, c->audit_count,
				    tracker_changes(c->tracker) -
					    c->audit_changes,
				    now);
	if (c->barrier & BARRIER_SAMPLE)
		collector_judge_sample(c, now);
	if ((c->barrier & BARRIER_DUMP) && !tracker_dumping(c->tracker))
		collector_start_dump(c, now);
	c->barrier = 0;
}

/* ---- events ---- */

/* Reads events until the queue is empty or EV_ROUNDS batches were read.
 * Returns 1 if more may be waiting, 0 if drained, -1 on a fatal error. */
static int collector_read_events(struct collector *c)
{
	int fd = mnl_socket_get_fd(c->ev);

	for (int round = 0; round < EV_ROUNDS; round++) {
		int n = recvmmsg(fd, c->mm, EV_BATCH, MSG_DONTWAIT, NULL);
		int64_t now;

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				/* read after the queue was found empty: no
				 * drop counted by then means none before */
				collector_quiet(c, collector_drops(c));
				return 0;
			}
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				tracker_lost(c->tracker, "enobufs",
					     collector_drops(c), ns_now_ms());
				continue;
			}
			log_warn("conntrack: receiving events");
			return -1;
		}
		now = ns_now_ms();
		for (int i = 0; i < n; i++) {
			if (c->mm[i].msg_hdr.msg_flags & MSG_TRUNC) {
				tracker_malformed(c->tracker, "event (truncated)");
				tracker_lost(c->tracker, "truncated",
					     collector_drops(c), now);
				continue;
			}
			collector_datagram(c, c->iov[i].iov_base,
					   (int)c->mm[i].msg_len, 0, now);
		}
	}
	tracker_backlog(c->tracker, ns_now_ms());
	return 1;
}

/* ---- dumps ---- */

/* Takes dump chunks from the reader thread while they are ready.
 * Returns 1 if more may be waiting, else 0. */
static int collector_read_dump(struct collector *c)
{
	for (int round = 0; round < DUMP_ROUNDS; round++) {
		size_t len;
		int end, err;
		const void *chunk = dumper_next(c->dumper, &len, &end, &err);
		int64_t now = ns_now_ms();

		if (!chunk)
			return 0;
		if (tracker_dumping(c->tracker)) {
			tracker_dump_progress(c->tracker, now);
			if (len)
				collector_datagram(c, chunk, (int)len, 1, now);
			if (end && err) {
				errno = err;
				log_warn("conntrack: dump %u", c->dump_seq);
				tracker_dump_end(
					c->tracker, err, collector_drops(c),
					collector_cpu(CLOCK_PROCESS_CPUTIME_ID) -
						c->dump_cpu,
					now);
			} else if (end) {
				/* complete: what was queued before its end is
				 * applied first, so that the sweep only takes
				 * what is really gone (tracker.c) */
				c->dump_end_cpu =
					collector_cpu(CLOCK_PROCESS_CPUTIME_ID);
				collector_barrier(c, BARRIER_DUMP_END);
			}
		}
		dumper_release(c->dumper);
	}
	return 1;
}

/* ---- the self-audit's sample ---- */

/* Asks the kernel for each sampled mapping by its reply tuple, in one
 * sendto(), on the dump reader's thread; the kernel answers each before
 * sendto() returns, so once it is done (collector_sample_answers()) the
 * answers are read without waiting.  The verdict waits for a barrier. */
static void collector_sample(struct collector *c, int64_t now)
{
	double cpu = collector_cpu(CLOCK_THREAD_CPUTIME_ID);
	size_t off = 0;
	uint32_t base = c->get_seq + 1;

	c->sample_n = tracker_sample_begin(c->tracker, c->sample,
					   TRACKER_SAMPLE_MAX, now);
	memset(c->answered, 0, sizeof(c->answered));
	for (unsigned i = 0; i < c->sample_n; i++) {
		const struct ledger_mapping *m = &c->sample[i];
		int icmp = m->proto == IPPROTO_ICMP || m->proto == IPPROTO_ICMPV6;
		struct ct_tuple reply;

		memset(&reply, 0, sizeof(reply));
		memcpy(reply.src, m->dest_ip, 16);
		memcpy(reply.dst, m->public_ip, 16);
		reply.sport = icmp ? m->public_port : m->dest_port;
		reply.dport = m->public_port;
		off += ctmsg_build_get(c->getbuf + off, GET_BUFSZ - off,
				       base + i, m->family, m->proto, m->zone,
				       &reply);
	}
	c->get_seq = base + c->sample_n;
	c->sample_base = base;
	c->sample_cpu = collector_cpu(CLOCK_THREAD_CPUTIME_ID) - cpu;
	/* sent from the dump reader's thread: the kernel answers inside
	 * sendto(), and waits there while a flush holds ctnetlink's lock */
	if (!c->sample_n || dumper_send(c->dumper, c->q, c->getbuf, off) < 0) {
		if (c->sample_n)
			log_warn("conntrack: audit request");
		c->sample_n = 0; /* no verdict: judged empty */
		collector_barrier(c, BARRIER_SAMPLE);
		return;
	}
	c->sample_sending = 1;
}

/* The sample's requests were sent (err: 0 or why not); their answers are
 * queued on the GET socket: read them without waiting, then the verdict
 * waits for a barrier. */
static void collector_sample_answers(struct collector *c, int err,
				     double send_cpu)
{
	double cpu = collector_cpu(CLOCK_THREAD_CPUTIME_ID);
	uint32_t base = c->sample_base;
	int fd = mnl_socket_get_fd(c->q);

	c->sample_sending = 0;
	if (err) {
		errno = err;
		log_warn("conntrack: audit request");
		c->sample_n = 0;
	}
	for (;;) {
		ssize_t n = recv(fd, c->getbuf, GET_BUFSZ, MSG_DONTWAIT);
		const struct nlmsghdr *nlh = (const void *)c->getbuf;
		int len = (int)n;

		if (n <= 0) {
			if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR)
				log_warn("conntrack: audit answers");
			break;
		}
		for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			uint32_t i = nlh->nlmsg_seq - base;

			if (nlh->nlmsg_seq < base || i >= c->sample_n)
				continue; /* a late answer to an older sample */
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				if (ctmsg_error(nlh) == ENOENT)
					c->answered[i] = 2;
			} else if (ctmsg_parse(nlh, &c->answer[i]) == 0) {
				c->answered[i] = 1;
			}
		}
	}
	c->sample_cpu += send_cpu + collector_cpu(CLOCK_THREAD_CPUTIME_ID) - cpu;
	collector_barrier(c, BARRIER_SAMPLE);
}

/* The namespace's addresses went or came back.  With none but loopback
 * the namespace is most likely being torn down (its interfaces deleted,
 * or the namespace itself with natscope still pinning it): say so once;
 * natscope goes on following its conntrack table until it is stopped. */
static void collector_addresses(unsigned had, unsigned has)
{
	if (had && !has)
		log_warnx("no address is left in this network namespace but "
			  "loopback: its interfaces are gone (is it being torn "
			  "down?); natscope keeps following its conntrack "
			  "table until it is stopped");
	else if (!had && has)
		log_info("this network namespace has addresses again (%u)", has);
}

/* ---- snapshots ---- */

/* Snapshots the tracker into the writer's free batch.  Returns 0 when a
 * batch was handed over, 1 when the writer was busy (try again soon). */
static int collector_write(struct collector *c, enum store_state state)
{
	struct store_batch *b;
	int need_full;

	b = store_writer_acquire(c->w, &need_full);
	if (!b)
		return 1;
	tracker_snapshot(c->tracker, b, need_full, ns_now_ms(),
			 c->drained_ms ? c->drained_ms : ns_now_ms());
	b->status.state = (uint8_t)state;
	b->status.event_buffer_bytes = c->rcvbuf;
	store_writer_submit(c->w, b);
	tracker_written(c->tracker);
	return 0;
}

/* Every interval: the kernel's figures, a count audit and a snapshot,
 * both at the next barrier, so that a snapshot never shows figures older
 * than its as_of (after a stall, the backlog - and its loss - is read
 * first).  If the queue is never empty for half an interval, the snapshot
 * is written anyway, as of the last time it was. */
static void collector_tick(struct collector *c, int64_t now_ns)
{
	int64_t interval_ns = (int64_t)c->cfg.interval_s * 1000000000LL;
	int64_t now = ns_now_ms();

	c->next_tick_ns += interval_ns;
	if (c->next_tick_ns <= now_ns)
		c->next_tick_ns = now_ns + interval_ns;
	kstat_read(&c->ks);
	tracker_kstat(c->tracker, &c->ks, now);
	if (tracker_state(c->tracker) != STORE_STATE_STARTING) {
		c->audit_count = c->ks.count;
		c->audit_changes = tracker_changes(c->tracker);
		c->write_asked_ns = now_ns;
		collector_barrier(c, BARRIER_AUDIT | BARRIER_WRITE);
	}
	c->write_retry_ns = now_ns;
}

/* ---- opening ---- */

/* Opens the event socket: subscribed to NEW, UPDATE and DESTROY, with the
 * receive buffer asked for (c->rcvbuf gets what the kernel granted). */
static int collector_event_socket(struct collector *c)
{
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER,
						 SOCK_NONBLOCK | SOCK_CLOEXEC);
	size_t want = c->cfg.event_buffer;
	int fd, v;
	socklen_t len = sizeof(v);

	if (!nl) {
		log_warn("conntrack: netlink socket");
		return -1;
	}
	if (mnl_socket_bind(nl, NF_NETLINK_CONNTRACK_NEW |
				    NF_NETLINK_CONNTRACK_UPDATE |
				    NF_NETLINK_CONNTRACK_DESTROY,
			    MNL_SOCKET_AUTOPID) < 0) {
		int saved = errno;

		if (saved == EPERM || saved == EACCES)
			log_warnx("following conntrack needs CAP_NET_ADMIN: run "
				  "natscope as root or grant it the capability "
				  "(e.g. setcap cap_net_admin+ep natscope)");
		else
			log_warn("conntrack: subscribing to events");
		mnl_socket_close(nl);
		errno = saved == EACCES ? EPERM : saved;
		return -1;
	}
	fd = mnl_socket_get_fd(nl);
	v = want > (size_t)(INT32_MAX / 2) ? INT32_MAX / 2 : (int)want;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) < 0)
		log_warn("conntrack: setting the receive buffer");
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len) == 0)
		c->rcvbuf = (size_t)v;
	c->ev = nl;
	return 0;
}

/* The socket for the audit's GETs: answers for a whole sample fit. */
static int collector_query_socket(struct collector *c)
{
	int v = GET_RCVBUF;

	c->q = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (!c->q || mnl_socket_bind(c->q, 0, MNL_SOCKET_AUTOPID) < 0) {
		log_warn("conntrack: audit socket");
		return -1;
	}
	if (setsockopt(mnl_socket_get_fd(c->q), SOL_SOCKET, SO_RCVBUFFORCE, &v,
		       sizeof(v)) < 0 &&
	    setsockopt(mnl_socket_get_fd(c->q), SOL_SOCKET, SO_RCVBUF, &v,
		       sizeof(v)) < 0)
		log_warn("conntrack: audit socket buffer");
	return 0;
}

struct collector *collector_open(const struct collector_config *cfg)
{
	struct collector *c = calloc(1, sizeof(*c));
	struct tracker_config tcfg = { 0 };

	if (!c)
		return NULL;
	c->cfg = *cfg;
	if (c->cfg.interval_s < 1)
		c->cfg.interval_s = 1;
	if (collector_event_socket(c) < 0 || collector_query_socket(c) < 0)
		goto err;
	c->dumper = dumper_open();
	if (!c->dumper)
		goto err;
	c->la = localaddr_open();
	if (!c->la)
		goto err;
	tcfg.interval_s = c->cfg.interval_s;
	tcfg.hist_top = c->cfg.hist_top;
	c->tracker = tracker_new(&tcfg, c->cfg.run_started_ms > 0 ?
					       c->cfg.run_started_ms :
					       ns_now_ms());
	c->evbuf = malloc((size_t)EV_BATCH * EV_BUFSZ);
	c->getbuf = malloc(GET_BUFSZ);
	if (!c->tracker || !c->evbuf || !c->getbuf) {
		errno = ENOMEM;
		goto err;
	}
	tracker_set_localaddr(c->tracker, c->la);
	for (int i = 0; i < EV_BATCH; i++) {
		c->iov[i].iov_base = c->evbuf + (size_t)i * EV_BUFSZ;
		c->iov[i].iov_len = EV_BUFSZ;
		c->mm[i].msg_hdr.msg_iov = &c->iov[i];
		c->mm[i].msg_hdr.msg_iovlen = 1;
	}
	c->drops_raw = collector_socket_drops(c);
	return c;
err:
	collector_close(c);
	return NULL;
}

void collector_close(struct collector *c)
{
	int saved = errno;

	if (!c)
		return;
	dumper_close(c->dumper); /* first: it may be sending on c->q */
	if (c->ev)
		mnl_socket_close(c->ev);
	if (c->q)
		mnl_socket_close(c->q);
	localaddr_close(c->la);
	tracker_free(c->tracker);
	free(c->evbuf);
	free(c->getbuf);
	free(c);
	errno = saved;
}

/* ---- the loop ---- */

static int collector_final_write(struct collector *c)
{
	int64_t give_up = ns_mono_ns() + 2000000000LL;

	/* what is queued goes in first, within reason */
	while (collector_read_events(c) > 0 && ns_mono_ns() < give_up)
		;
	if (store_writer_wait(c->w) < 0)
		log_warn("the last write before stopping failed");
	if (collector_write(c, STORE_STATE_STOPPED) != 0)
		return -1;
	return store_writer_wait(c->w);
}

int collector_run(struct collector *c, struct store_writer *w)
{
	int more_events = 0, more_dump = 0, rc = 0;

	c->w = w;
	kstat_read(&c->ks);
	tracker_kstat(c->tracker, &c->ks, ns_now_ms());
	c->next_tick_ns = ns_mono_ns() +
			  (int64_t)c->cfg.interval_s * 1000000000LL;

	for (;;) {
		struct pollfd pfd[4];
		int64_t now_ns, wake_ns, wake_ms, now;
		unsigned due;
		int timeout, n = 0;

		now = ns_now_ms();
		due = tracker_due(c->tracker, now, &wake_ms);
		if (due & TRACKER_ABANDON && dumper_reset(c->dumper) < 0)
			log_warnx("conntrack: no new dump socket yet");
		if ((due & TRACKER_DUMP) && !(c->barrier & BARRIER_DUMP))
			collector_barrier(c, BARRIER_DUMP);
		if ((due & TRACKER_SAMPLE) && !c->barrier && !c->sample_n)
			collector_sample(c, now);
		if (due & TRACKER_WRITE)
			c->write_wanted = 1;

		/* After a drain, events are left to gather for EV_NAP_NS:
		 * one wake-up then reads many (each is its own datagram), at
		 * the cost of a millisecond of latency. */
		now_ns = ns_mono_ns();
		pfd[n++] = (struct pollfd){ mnl_socket_get_fd(c->ev),
					    now_ns < c->ev_holdoff_ns ?
						    0 : POLLIN, 0 };
		pfd[n++] = (struct pollfd){ dumper_fd(c->dumper), POLLIN, 0 };
		pfd[n++] = (struct pollfd){ localaddr_fd(c->la), POLLIN, 0 };
		pfd[n++] = (struct pollfd){ c->cfg.stop_fd, POLLIN, 0 };

		wake_ns = c->next_tick_ns;
		if (c->write_wanted && c->write_retry_ns < wake_ns)
			wake_ns = c->write_retry_ns;
		if (wake_ms != INT64_MAX &&
		    now_ns + (wake_ms - now) * 1000000LL < wake_ns)
			wake_ns = now_ns + (wake_ms - now) * 1000000LL;
		if (c->ev_holdoff_ns > now_ns && c->ev_holdoff_ns < wake_ns)
			wake_ns = c->ev_holdoff_ns;
		timeout = wake_ns <= now_ns ? 0 :
			  (int)((wake_ns - now_ns) / 1000000 + 1);
		/* a barrier is reached by reading until the queue is empty:
		 * at once, but not before the nap is over (batching) */
		if (more_events || more_dump ||
		    (c->barrier && now_ns >= c->ev_holdoff_ns))
			timeout = 0;
		if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR) {
			log_warn("poll");
			rc = -1;
			break;
		}
		if (pfd[3].revents)
			break;
		if (pfd[0].revents || more_events ||
		    (c->barrier && ns_mono_ns() >= c->ev_holdoff_ns)) {
			more_events = collector_read_events(c);
			if (more_events < 0) {
				rc = -1;
				break;
			}
			if (!more_events)
				c->ev_holdoff_ns = ns_mono_ns() + EV_NAP_NS;
		}
		if (pfd[1].revents || more_dump)
			more_dump = collector_read_dump(c);
		if (c->sample_sending) {
			int err;
			double cpu;

			if (dumper_sent(c->dumper, &err, &cpu))
				collector_sample_answers(c, err, cpu);
		}
		if (pfd[2].revents) {
			unsigned had = localaddr_count(c->la);

			if (localaddr_process(c->la) < 0)
				log_warnx("local addresses may be out of date");
			collector_addresses(had, localaddr_count(c->la));
		}

		now_ns = ns_mono_ns();
		if (now_ns >= c->next_tick_ns)
			collector_tick(c, now_ns);
		if ((c->barrier & BARRIER_WRITE) &&
		    now_ns - c->write_asked_ns >
			    (int64_t)c->cfg.interval_s * 500000000LL) {
			c->barrier &= ~(unsigned)BARRIER_WRITE;
			c->write_wanted = 1; /* as of the last empty queue */
		}
		if (c->write_wanted && now_ns >= c->write_retry_ns &&
		    tracker_state(c->tracker) != STORE_STATE_STARTING) {
			if (collector_write(c, tracker_state(c->tracker)) == 0) {
				c->write_wanted = 0;
				if (!c->ready_said && c->cfg.ready) {
					c->ready_said = 1;
					c->cfg.ready(c->cfg.ready_arg);
				}
			} else
				c->write_retry_ns = now_ns +
						    WRITE_RETRY_MS * 1000000LL;
		}
	}
	if (collector_final_write(c) < 0) {
		log_warnx("the final write did not complete: the database "
			  "does not say natscope stopped");
		rc = -1;
	}
	return rc;
}
