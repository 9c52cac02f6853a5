/*
 * collector.c - the collector's event loop.
 *
 * Two ctnetlink sockets: one subscribed to NEW, UPDATE and DESTROY events
 * (with a large receive buffer), one for table dumps.  They are separate so
 * that a dump can never be the reason events overflow, and an overrun of
 * the event socket cannot break a dump.
 *
 * Why a dump racing with events ends exact: a dump chunk is a snapshot of
 * some hash buckets taken when the kernel filled it, and it may be read
 * after events that happened later.  So, during a resync (ledger.h):
 *  - an event always applies and marks its mapping;
 *  - a dump record never overrides a marked mapping (the event is newer);
 *  - a DESTROY leaves a marked tombstone, so an older dump record of the
 *    same entry read afterwards cannot bring it back;
 *  - at the end of the dump, whatever is unmarked was destroyed while
 *    events were lost, and is swept.
 * Any loss during a resync makes its result untrustworthy: another resync
 * follows at once.  The gap stays open until a resync completes cleanly.
 *
 * Events lost are counted exactly: the kernel counts every event it could
 * not queue for us in the socket's drop counter (SO_MEMINFO).
 */
#include "collector/collector.h"
#include "collector/classify.h"
#include "collector/ctmsg.h"
#include "collector/dumper.h"
#include "collector/kstat.h"
#include "collector/ledger.h"
#include "collector/localaddr.h"
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
#define GAPS_PENDING_MAX 16 /* gap rows waiting for the next write */
#define RECONCILE_FACTOR 20 /* re-dumps for silent entries: <= 1/20 of a core */
#define APPLY_BATCH 16	    /* entries parsed and prefetched before applying */

/* A parsed, classified entry waiting to be applied to the ledger. */
struct collector_item {
	struct ct_entry e;
	struct ledger_mapping m;
	enum ns_kind kind;
};

struct collector {
	struct collector_config cfg;
	struct mnl_socket *ev;
	struct dumper *dumper;
	struct localaddr *la;
	struct ledger *ledger;
	struct store_writer *w;

	/* event receive buffers */
	struct mmsghdr mm[EV_BATCH];
	struct iovec iov[EV_BATCH];
	uint8_t *evbuf; /* EV_BATCH * EV_BUFSZ */
	size_t rcvbuf;	/* what the kernel granted */

	/* counters (status) */
	uint64_t ev_new, ev_update, ev_destroy, ev_dumped, ev_unknown_destroy;
	uint64_t ev_malformed, enobufs;
	uint32_t drops_raw; /* the socket's drop counter when last read */
	uint64_t drops;	    /* events lost since open */
	uint64_t drops_at_resync; /* drops when the running resync began */
	int64_t ev_holdoff_ns;	  /* don't read events before this */

	/* resync */
	int resync_active, resync_again, resync_wanted;
	int initial_done;
	int64_t next_reconcile_ns; /* 0: none due */
	uint32_t dump_seq;
	uint64_t resyncs;
	int64_t resync_started_ms, resync_started_ns, resync_done_ms;
	int64_t resync_duration_us;
	double resync_started_cpu, resync_cpu; /* process CPU seconds */
	uint64_t rs_entries, rs_added, rs_changed, rs_removed;
	/* last completed resync's figures, for status */
	uint64_t last_entries, last_added, last_changed, last_removed;

	/* gaps */
	int64_t run_started_ms;
	int64_t last_drain_ms; /* the event queue was last seen empty */
	int gap_open;
	struct store_gap_row gap; /* the open one */
	uint64_t gap_drops_base;   /* drops when the open gap began */
	uint64_t drops_accounted;  /* drops when the last gap closed */
	uint32_t gap_seq;
	struct store_gap_row pending[GAPS_PENDING_MAX], inflight[GAPS_PENDING_MAX];
	unsigned n_pending, n_inflight;

	/* snapshots */
	struct kstat ks;
	uint32_t range_size[LEDGER_RANGES];
	int force_full;

	/* entries parsed but not applied yet, in arrival order */
	struct collector_item items[APPLY_BATCH];
	unsigned n_items;
	int write_wanted;
	int64_t next_tick_ns, write_retry_ns;
	uint64_t ledger_errors;
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

static void collector_update_drops(struct collector *c)
{
	uint32_t raw = collector_socket_drops(c);

	/* the kernel's counter is 32 bits: add the difference modulo 2^32 */
	c->drops += (uint32_t)(raw - c->drops_raw);
	c->drops_raw = raw;
}

static void collector_queue_gap(struct collector *c, const struct store_gap_row *g)
{
	for (unsigned i = 0; i < c->n_pending; i++) {
		if (c->pending[i].seq == g->seq) {
			c->pending[i] = *g;
			return;
		}
	}
	if (c->n_pending == GAPS_PENDING_MAX) {
		/* only possible if writes keep failing; the oldest row is
		 * dropped from the queue, its figures live on in status */
		memmove(&c->pending[0], &c->pending[1],
			(GAPS_PENDING_MAX - 1) * sizeof(c->pending[0]));
		c->n_pending--;
	}
	c->pending[c->n_pending++] = *g;
}

/* ---- resync ---- */

/* CPU time of the whole process (all threads), seconds. */
static double collector_cpu_seconds(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) < 0)
		return 0;
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void collector_schedule_reconcile(struct collector *c);
static void collector_lost(struct collector *c, const char *reason);

static void collector_resync_start(struct collector *c)
{
	if (dumper_start(c->dumper, ++c->dump_seq) < 0) {
		log_warn("conntrack: dump request");
		c->resync_wanted = 1; /* retried at the next tick */
		return;
	}
	ledger_resync_begin(c->ledger);
	collector_update_drops(c);
	c->drops_at_resync = c->drops;
	c->resync_active = 1;
	c->resync_again = 0;
	c->resync_wanted = 0;
	c->resync_started_ms = ns_now_ms();
	c->resync_started_ns = ns_mono_ns();
	c->resync_started_cpu = collector_cpu_seconds();
	c->rs_entries = c->rs_added = c->rs_changed = c->rs_removed = 0;
	log_debug("resync %llu started", (unsigned long long)c->resyncs + 1);
}

static void collector_resync_finish(struct collector *c, int ok)
{
	c->rs_removed = ledger_resync_end(c->ledger, NULL);
	c->resync_active = 0;
	c->resyncs++;
	c->resync_done_ms = ns_now_ms();
	c->resync_duration_us = (ns_mono_ns() - c->resync_started_ns) / 1000;
	c->resync_cpu = collector_cpu_seconds() - c->resync_started_cpu;
	c->last_entries = c->rs_entries;
	c->last_added = c->rs_added;
	c->last_changed = c->rs_changed;
	c->last_removed = c->rs_removed;
	if (!c->initial_done && ok) {
		c->initial_done = 1;
		log_info("initial dump: %llu entries in %.3f s",
			 (unsigned long long)c->rs_entries,
			 c->resync_duration_us / 1e6);
	} else {
		/* a repair after loss is news; a routine re-dump for silent
		 * mappings is not */
		void (*say)(const char *, ...) = c->gap_open ? log_info : log_debug;

		say("%s: %llu entries in %.3f s; %llu added, %llu removed, "
		    "%llu changed", c->gap_open ? "resync" : "reconcile",
		    (unsigned long long)c->rs_entries,
		    c->resync_duration_us / 1e6,
		    (unsigned long long)c->rs_added,
		    (unsigned long long)c->rs_removed,
		    (unsigned long long)c->rs_changed);
	}
	if (c->gap_open) {
		c->gap.added += c->rs_added;
		c->gap.removed += c->rs_removed;
		c->gap.changed += c->rs_changed;
	}
	/* The kernel reports ENOBUFS once per congestion episode and then
	 * drops silently until the queue is empty, so drops without a new
	 * error may have happened while this dump ran: its result cannot be
	 * trusted then. */
	collector_update_drops(c);
	if (c->drops != c->drops_at_resync) {
		collector_lost(c, "drops");
		c->resync_again = 1;
	}
	if (!ok || c->resync_again) {
		c->resync_wanted = 1;
		return;
	}
	collector_schedule_reconcile(c);
	if (c->gap_open) {
		collector_update_drops(c);
		c->gap.end_ms = c->resync_done_ms;
		c->gap.events_lost = (int64_t)(c->drops - c->gap_drops_base);
		c->drops_accounted = c->drops;
		collector_queue_gap(c, &c->gap);
		c->gap_open = 0;
		log_info("gap %u closed: %lld events lost, repaired in %.3f s",
			 c->gap.seq, (long long)c->gap.events_lost,
			 (c->gap.end_ms - c->gap.start_ms) / 1e3);
	}
	c->write_wanted = 1; /* show the exact figures without waiting */
}

/* Entries the kernel sends no events for (created while nobody listened,
 * with nf_conntrack_events=2, or all of them with nf_conntrack_events=0)
 * can only be followed by dumping again.  While the ledger holds any, the
 * table is re-dumped every interval, or less often when a dump costs more,
 * so that this takes at most 1/RECONCILE_FACTOR of one core (both threads'
 * CPU time counts). */
static void collector_schedule_reconcile(struct collector *c)
{
	struct ledger_stats ls;
	int64_t wait;

	ledger_get_stats(c->ledger, &ls);
	if (!ls.mappings_silent) {
		c->next_reconcile_ns = 0;
		return;
	}
	wait = (int64_t)(c->resync_cpu * 1e9) * RECONCILE_FACTOR;
	if (wait < (int64_t)c->cfg.interval_s * 1000000000LL)
		wait = (int64_t)c->cfg.interval_s * 1000000000LL;
	c->next_reconcile_ns = ns_mono_ns() + wait;
}

/* Events were lost: open (or extend) a gap and ask for a resync. */
static void collector_lost(struct collector *c, const char *reason)
{
	collector_update_drops(c);
	if (!c->gap_open) {
		memset(&c->gap, 0, sizeof(c->gap));
		c->gap.run_started_ms = c->run_started_ms;
		c->gap.seq = ++c->gap_seq;
		c->gap.start_ms = c->last_drain_ms ? c->last_drain_ms : ns_now_ms();
		c->gap.events_lost = -1;
		snprintf(c->gap.reason, sizeof(c->gap.reason), "%s", reason);
		c->gap_open = 1;
		/* The kernel counts drops before ENOBUFS is reported; all
		 * drops since the last gap closed belong to this one. */
		c->gap_drops_base = c->drops_accounted;
		log_warnx("events lost (%s): figures are approximate until the "
			  "resync completes", reason);
	}
	if (!strcmp(reason, "enobufs"))
		c->gap.enobufs++;
	c->gap.events_lost = (int64_t)(c->drops - c->gap_drops_base);
	collector_queue_gap(c, &c->gap);
	if (c->resync_active)
		c->resync_again = 1;
	else
		c->resync_wanted = 1;
}

/* ---- one conntrack entry ---- */

static void collector_ledger_error(struct collector *c)
{
	if (c->ledger_errors++ % 100000 == 0)
		log_warn("ledger");
	c->force_full = 1;
	collector_lost(c, "no-memory");
}

static void collector_apply(struct collector *c, const struct collector_item *it)
{
	const struct ct_entry *e = &it->e;
	const struct ledger_mapping *m = &it->m;
	enum ns_kind kind = it->kind;
	int r;

	switch (e->type) {
	case CTMSG_NEW:
		c->ev_new++;
		break;
	case CTMSG_UPDATE:
		c->ev_update++;
		break;
	case CTMSG_DESTROY:
		c->ev_destroy++;
		/* looked up by key whatever the entry is now classified as:
		 * the address set may have changed since it was created */
		if (ledger_remove(c->ledger, m) == 0 && kind != NS_KIND_OTHER)
			c->ev_unknown_destroy++;
		return;
	case CTMSG_DUMP:
		c->ev_dumped++;
		c->rs_entries++;
		break;
	}
	if (kind == NS_KIND_OTHER)
		return;
	/* Entries created while we listen are reported by the kernel; only
	 * those found by the start-up dump may predate every listener (and
	 * with nf_conntrack_events=0 none is reported at all). */
	r = ledger_upsert(c->ledger, m,
			  e->type != CTMSG_DUMP ? LEDGER_EVENT :
			  c->initial_done && c->ks.events != 0 ?
						  LEDGER_DUMP_REPORTED :
						  LEDGER_DUMP);
	if (r < 0) {
		collector_ledger_error(c);
		return;
	}
	if (e->type == CTMSG_DUMP && c->initial_done) {
		if (r == LEDGER_ADDED)
			c->rs_added++;
		else if (r == LEDGER_CHANGED)
			c->rs_changed++;
	}
}

/* Applies every queued entry, in order.  Called before anything that
 * needs the ledger to be current (the end of a dump, a snapshot) and at
 * the end of every read. */
static void collector_flush(struct collector *c)
{
	for (unsigned i = 0; i < c->n_items; i++)
		collector_apply(c, &c->items[i]);
	c->n_items = 0;
}

/* Classifies e and queues it; its table slots start loading now. */
static void collector_queue(struct collector *c, const struct ct_entry *e)
{
	struct collector_item *it = &c->items[c->n_items++];

	it->e = *e;
	it->kind = classify_entry(e, c->la, &it->m);
	if (it->kind != NS_KIND_OTHER || e->type == CTMSG_DESTROY)
		ledger_prefetch(c->ledger, &it->m);
	if (c->n_items == APPLY_BATCH)
		collector_flush(c);
}

static void collector_malformed(struct collector *c, const char *where)
{
	if (c->ev_malformed++ < 10 || c->ev_malformed % 10000 == 0)
		log_warnx("%s: malformed conntrack message skipped (%llu so far)",
			  where, (unsigned long long)c->ev_malformed);
}

/* Walks the netlink messages of one datagram.  Returns 1 when a dump
 * ended (NLMSG_DONE or an error answer), else 0. */
static int collector_datagram(struct collector *c, const void *buf, int len,
			      int is_dump)
{
	const struct nlmsghdr *nlh;
	struct ct_entry e;

	for (nlh = buf; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
		if (is_dump && nlh->nlmsg_seq != c->dump_seq)
			continue; /* left over from an earlier dump */
		if (nlh->nlmsg_type == NLMSG_DONE) {
			collector_flush(c);
			return is_dump;
		}
		if (nlh->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);

			if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*err)))
				collector_malformed(c, "netlink");
			else if (err->error)
				log_warnx("conntrack dump failed: %s",
					  strerror(-err->error));
			if (is_dump && err->error) {
				collector_flush(c);
				collector_resync_finish(c, 0);
				return 1;
			}
			continue;
		}
		if (ctmsg_parse(nlh, &e) < 0) {
			if (errno == EBADMSG)
				collector_malformed(c, is_dump ? "dump" : "event");
			continue;
		}
		if (is_dump && e.type != CTMSG_DUMP)
			continue;
		collector_queue(c, &e);
	}
	if (len > 0)
		collector_malformed(c, is_dump ? "dump" : "event");
	return 0;
}

static int collector_read_events(struct collector *c)
{
	int fd = mnl_socket_get_fd(c->ev);

	for (int round = 0; round < EV_ROUNDS; round++) {
		int n = recvmmsg(fd, c->mm, EV_BATCH, MSG_DONTWAIT, NULL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (!c->gap_open && !c->resync_active)
					c->last_drain_ms = ns_now_ms();
				return 0;
			}
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				c->enobufs++;
				collector_lost(c, "enobufs");
				continue;
			}
			log_warn("conntrack: receiving events");
			return -1;
		}
		for (int i = 0; i < n; i++) {
			if (c->mm[i].msg_hdr.msg_flags & MSG_TRUNC) {
				collector_malformed(c, "event (truncated)");
				collector_lost(c, "truncated");
				continue;
			}
			collector_datagram(c, c->iov[i].iov_base,
					   (int)c->mm[i].msg_len, 0);
		}
	}
	return 1;
}

/* Reads events until the queue is empty or EV_ROUNDS batches were read,
 * and applies them.  Returns 1 if more may be waiting, 0 if drained, -1
 * on a fatal error. */
static int collector_drain_events(struct collector *c)
{
	int rc = collector_read_events(c);

	collector_flush(c);
	return rc;
}

/* Takes dump chunks from the reader thread while they are ready
 * (discarding them when no resync is running).  Returns 1 if more may be
 * waiting, else 0. */
static int collector_read_dump(struct collector *c)
{
	for (int round = 0; round < DUMP_ROUNDS; round++) {
		size_t len;
		int end, err;
		const void *chunk = dumper_next(c->dumper, &len, &end, &err);

		if (!chunk) {
			collector_flush(c);
			return 0;
		}
		if (err) {
			errno = err;
			log_warn("conntrack: reading the dump");
		}
		if (c->resync_active) {
			if (err) {
				collector_flush(c);
				collector_resync_finish(c, 0);
			}
			else if (collector_datagram(c, chunk, (int)len, 1) &&
				 c->resync_active)
				collector_resync_finish(c, 1);
		}
		dumper_release(c->dumper);
	}
	collector_flush(c);
	return 1;
}

/* ---- snapshots ---- */

static void collector_ranges(struct collector *c)
{
	uint32_t local = 28232; /* the kernel default 32768-60999 */

	if (c->ks.port_lo >= 0 && c->ks.port_hi >= c->ks.port_lo)
		local = (uint32_t)(c->ks.port_hi - c->ks.port_lo + 1);
	if (c->range_size[LEDGER_RANGE_LOCAL] &&
	    c->range_size[LEDGER_RANGE_LOCAL] != local)
		c->force_full = 1; /* every local bucket's capacity changed */
	c->range_size[LEDGER_RANGE_NAT_LOW] = 511;
	c->range_size[LEDGER_RANGE_NAT_MID] = 424;
	c->range_size[LEDGER_RANGE_NAT_HIGH] = 64512;
	c->range_size[LEDGER_RANGE_ICMP] = 65536;
	c->range_size[LEDGER_RANGE_LOCAL] = local;
}

static void collector_fill_status(struct collector *c, struct store_status *s,
				  enum store_state state)
{
	struct ledger_stats ls;
	uint64_t tracked;

	ledger_get_stats(c->ledger, &ls);
	collector_update_drops(c);
	store_status_init(s);
	s->started_ms = c->run_started_ms;
	s->interval_s = c->cfg.interval_s;
	s->state = (uint8_t)state;
	s->as_of_ms = ns_now_ms();
	s->event_buffer_bytes = c->rcvbuf;
	s->mappings_nat = ls.mappings_nat;
	s->mappings_local = ls.mappings_local;
	s->mappings_silent = ls.mappings_silent;
	tracked = ls.mappings_nat + ls.mappings_local;
	s->mappings_other = c->ks.count < 0 ? 0 :
			    (uint64_t)c->ks.count > tracked ?
					  c->ks.count - (int64_t)tracked : 0;
	s->gateways = ls.gateways;
	s->hosts = ls.hosts;
	s->destinations = ls.destinations;
	s->events_new = c->ev_new;
	s->events_update = c->ev_update;
	s->events_destroy = c->ev_destroy;
	s->events_dumped = c->ev_dumped;
	s->events_unknown_destroy = c->ev_unknown_destroy;
	s->events_malformed = c->ev_malformed;
	s->events_lost = c->drops;
	s->events_enobufs = c->enobufs;
	s->resync_count = c->resyncs;
	s->resync_active = (uint8_t)c->resync_active;
	s->resync_last_started_ms = c->resyncs || c->resync_active ?
					    c->resync_started_ms : -1;
	s->resync_last_done_ms = c->resyncs ? c->resync_done_ms : -1;
	s->resync_last_duration_us = c->resyncs ? c->resync_duration_us : -1;
	s->resync_last_entries = c->last_entries;
	s->resync_last_added = c->last_added;
	s->resync_last_removed = c->last_removed;
	s->resync_last_changed = c->last_changed;
	s->conntrack_count = c->ks.count;
	s->conntrack_max = c->ks.max;
	s->conntrack_insert_failed = c->ks.insert_failed;
	s->conntrack_drop = c->ks.drop;
	s->conntrack_early_drop = c->ks.early_drop;
	s->conntrack_clash_resolve = c->ks.clash_resolve;
	s->sysctl_port_range_lo = c->ks.port_lo;
	s->sysctl_port_range_hi = c->ks.port_hi;
	s->sysctl_tcp_tw_reuse = c->ks.tcp_tw_reuse;
	s->sysctl_tcp_fin_timeout = c->ks.tcp_fin_timeout;
	s->sysctl_tcp_timeout_time_wait = c->ks.tcp_timeout_time_wait;
	s->sysctl_conntrack_events = c->ks.events;
	s->process_rss_bytes = c->ks.rss_bytes;
	s->process_cpu_seconds = c->ks.cpu_seconds;
}

static enum store_state collector_state(const struct collector *c)
{
	if (!c->initial_done)
		return STORE_STATE_STARTING;
	if (c->gap_open)
		return STORE_STATE_RESYNCING;
	return STORE_STATE_RUNNING;
}

/* Snapshots the ledger into the writer's free batch.  Returns 0 when a
 * batch was handed over, 1 when the writer was busy (try again soon). */
static int collector_write(struct collector *c, enum store_state state)
{
	struct store_batch *b;
	int need_full;

	b = store_writer_acquire(c->w, &need_full);
	if (!b)
		return 1;
	if (need_full) {
		/* the last batch may not have landed: its gaps go again */
		for (unsigned i = 0; i < c->n_inflight; i++) {
			unsigned j;

			for (j = 0; j < c->n_pending; j++)
				if (c->pending[j].seq == c->inflight[i].seq)
					break;
			if (j == c->n_pending)
				collector_queue_gap(c, &c->inflight[i]);
		}
	}
	kstat_read(&c->ks);
	collector_ranges(c);
	b->full = 0;
	if (ledger_snapshot(c->ledger, b, need_full || c->force_full,
			    c->range_size) < 0) {
		log_warn("snapshot");
		store_batch_clear(b);
		b->full = 0;
		c->force_full = 1;
	} else {
		c->force_full = 0;
	}
	for (unsigned i = 0; i < c->n_pending; i++) {
		struct store_gap_row *g = store_batch_add_gap(b);

		if (g)
			*g = c->pending[i];
	}
	memcpy(c->inflight, c->pending, c->n_pending * sizeof(c->pending[0]));
	c->n_inflight = c->n_pending;
	c->n_pending = 0;
	collector_fill_status(c, &b->status, state);
	store_writer_submit(c->w, b);
	return 0;
}

/* ---- the loop ---- */

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

struct collector *collector_open(const struct collector_config *cfg)
{
	struct collector *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->cfg = *cfg;
	if (c->cfg.interval_s < 1)
		c->cfg.interval_s = 1;
	if (collector_event_socket(c) < 0)
		goto err;
	c->dumper = dumper_open();
	if (!c->dumper)
		goto err;
	c->la = localaddr_open();
	if (!c->la)
		goto err;
	c->ledger = ledger_new();
	c->evbuf = malloc((size_t)EV_BATCH * EV_BUFSZ);
	if (!c->ledger || !c->evbuf) {
		errno = ENOMEM;
		goto err;
	}
	for (int i = 0; i < EV_BATCH; i++) {
		c->iov[i].iov_base = c->evbuf + (size_t)i * EV_BUFSZ;
		c->iov[i].iov_len = EV_BUFSZ;
		c->mm[i].msg_hdr.msg_iov = &c->iov[i];
		c->mm[i].msg_hdr.msg_iovlen = 1;
	}
	c->drops_raw = collector_socket_drops(c);
	c->run_started_ms = ns_now_ms();
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
	if (c->ev)
		mnl_socket_close(c->ev);
	dumper_close(c->dumper);
	localaddr_close(c->la);
	ledger_free(c->ledger);
	free(c->evbuf);
	free(c);
	errno = saved;
}

static int collector_final_write(struct collector *c)
{
	store_writer_wait(c->w);
	if (collector_write(c, STORE_STATE_STOPPED) != 0)
		return -1;
	return store_writer_wait(c->w);
}

int collector_run(struct collector *c, struct store_writer *w)
{
	int64_t interval_ns = (int64_t)c->cfg.interval_s * 1000000000LL;
	int more_events = 0, more_dump = 0, rc = 0;

	c->w = w;
	kstat_read(&c->ks);
	collector_ranges(c);
	if (c->ks.events == 0)
		log_warnx("net.netfilter.nf_conntrack_events is 0: the kernel "
			  "sends no conntrack events, so natscope can only "
			  "follow the table by re-dumping it (set it to 1 or 2)");
	c->force_full = 1;
	c->next_tick_ns = ns_mono_ns() + interval_ns;
	if (c->ks.count > 0)
		ledger_expect(c->ledger, (uint64_t)c->ks.count);
	collector_resync_start(c);

	for (;;) {
		struct pollfd pfd[4];
		int64_t now, wake;
		int timeout, n = 0;

		/* After a drain, events are left to gather for EV_NAP_NS:
		 * one wake-up then reads many (each is its own datagram), at
		 * the cost of a millisecond of latency. */
		pfd[n++] = (struct pollfd){ mnl_socket_get_fd(c->ev),
					    ns_mono_ns() < c->ev_holdoff_ns ?
						    0 : POLLIN, 0 };
		pfd[n++] = (struct pollfd){ dumper_fd(c->dumper), POLLIN, 0 };
		pfd[n++] = (struct pollfd){ localaddr_fd(c->la), POLLIN, 0 };
		pfd[n++] = (struct pollfd){ c->cfg.stop_fd, POLLIN, 0 };

		now = ns_mono_ns();
		wake = c->next_tick_ns;
		if (c->write_wanted && c->write_retry_ns < wake)
			wake = c->write_retry_ns;
		if (c->next_reconcile_ns && c->next_reconcile_ns < wake)
			wake = c->next_reconcile_ns;
		if (c->ev_holdoff_ns > now && c->ev_holdoff_ns < wake)
			wake = c->ev_holdoff_ns;
		timeout = wake <= now ? 0 : (int)((wake - now) / 1000000 + 1);
		if (more_events || more_dump)
			timeout = 0;
		if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR) {
			log_warn("poll");
			rc = -1;
			break;
		}
		if (pfd[3].revents)
			break;
		if (pfd[0].revents || more_events) {
			more_events = collector_drain_events(c);
			if (more_events < 0) {
				rc = -1;
				break;
			}
			if (!more_events)
				c->ev_holdoff_ns = ns_mono_ns() + EV_NAP_NS;
		}
		if (pfd[1].revents || more_dump)
			more_dump = collector_read_dump(c);
		if (pfd[2].revents && localaddr_process(c->la) < 0)
			log_warnx("local addresses may be out of date");
		if (c->next_reconcile_ns && !c->resync_active &&
		    ns_mono_ns() >= c->next_reconcile_ns) {
			c->next_reconcile_ns = 0;
			c->resync_wanted = 1;
		}
		if (c->resync_wanted && !c->resync_active)
			collector_resync_start(c);

		now = ns_mono_ns();
		if (now >= c->next_tick_ns) {
			c->next_tick_ns += interval_ns;
			if (c->next_tick_ns <= now)
				c->next_tick_ns = now + interval_ns;
			if (c->initial_done)
				c->write_wanted = 1;
			else
				kstat_read(&c->ks);
			/* drops the kernel never reported with ENOBUFS */
			collector_update_drops(c);
			if (!c->gap_open && c->drops != c->drops_accounted)
				collector_lost(c, "drops");
			c->write_retry_ns = now;
		}
		if (c->write_wanted && now >= c->write_retry_ns) {
			if (collector_write(c, collector_state(c)) == 0) {
				c->write_wanted = 0;
			} else {
				c->write_retry_ns = now + WRITE_RETRY_MS * 1000000LL;
			}
		}
	}
	if (collector_final_write(c) < 0)
		log_warnx("the final write did not complete");
	return rc;
}
