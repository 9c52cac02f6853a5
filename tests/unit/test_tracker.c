/*
 * test_tracker.c - the conntrack model driven by scripts: a small "kernel"
 * (a set of entries with an event queue that can overflow) feeds the
 * tracker exactly as collector.c does, with explicit times, so that
 * stalls, stale backlogs, failed and stalled dumps, nf_conntrack_events
 * switching, the count audit and the sampler are checked deterministically
 * against the kernel's own set.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "collector/tracker.h"

/* ---- a toy kernel ---- */

#define KMAX 40000
#define QMAX 200000

struct kentry {
	int live;
	int reports; /* created while events were on: it sends events */
	struct ct_entry e;
};

struct kernel {
	struct kentry t[KMAX];
	struct ct_entry q[QMAX]; /* the event socket's queue */
	unsigned qhead, qtail, qcap;
	uint64_t drops;
	int events; /* nf_conntrack_events */
};

static struct kernel K;

/* Entry i: SNAT 198.18.x.y:(1024+i%50000) -> 198.51.100.(1+i%50):443,
 * public 203.0.113.(1+i%3):(1024+i/150). */
static struct ct_entry kmk(unsigned i, uint8_t type)
{
	struct ct_entry e;

	memset(&e, 0, sizeof(e));
	e.type = type;
	e.family = AF_INET;
	e.proto = IPPROTO_TCP;
	e.tcp_state = 3;
	e.orig.src[0] = 198;
	e.orig.src[1] = 18;
	e.orig.src[2] = (uint8_t)(i / 250 % 250);
	e.orig.src[3] = (uint8_t)(1 + i % 250);
	e.orig.dst[0] = 198;
	e.orig.dst[1] = 51;
	e.orig.dst[2] = 100;
	e.orig.dst[3] = (uint8_t)(1 + i % 50);
	e.orig.sport = (uint16_t)(1024 + i % 50000);
	e.orig.dport = 443;
	memcpy(e.reply.src, e.orig.dst, 4);
	e.reply.dst[0] = 203;
	e.reply.dst[1] = 0;
	e.reply.dst[2] = 113;
	e.reply.dst[3] = (uint8_t)(1 + i % 3);
	e.reply.sport = 443;
	e.reply.dport = (uint16_t)(1024 + i / 150);
	return e;
}

static void kreset(unsigned qcap)
{
	memset(&K, 0, sizeof(K));
	K.qcap = qcap;
	K.events = 1;
}

static void kqueue(const struct ct_entry *e)
{
	if (K.qtail - K.qhead >= K.qcap) {
		K.drops++; /* the socket buffer is full */
		return;
	}
	K.q[K.qtail++ % QMAX] = *e;
}

static void kcreate(unsigned i)
{
	K.t[i].live = 1;
	K.t[i].reports = K.events != 0;
	K.t[i].e = kmk(i, CTMSG_DUMP);
	if (K.t[i].reports) {
		struct ct_entry e = kmk(i, CTMSG_NEW);

		kqueue(&e);
	}
}

static void kdestroy(unsigned i)
{
	if (!K.t[i].live)
		return;
	K.t[i].live = 0;
	if (K.t[i].reports) {
		struct ct_entry e = kmk(i, CTMSG_DESTROY);

		kqueue(&e);
	}
}

static unsigned klive(void)
{
	unsigned n = 0;

	for (unsigned i = 0; i < KMAX; i++)
		n += K.t[i].live;
	return n;
}

/* ---- the feeder: what collector.c does ---- */

static int64_t T;

/* Reads up to n queued events (all if n is 0); returns 1 if the queue is
 * now empty. */
static struct tracker *g_t; /* for feeders called without one */

static int feed_events(struct tracker *t, unsigned n)
{
	unsigned k = 0;

	if (!t)
		t = g_t;
	while (K.qhead != K.qtail && (!n || k < n)) {
		tracker_entry(t, &K.q[K.qhead++ % QMAX], T);
		k++;
	}
	if (K.qhead == K.qtail) {
		tracker_quiet(t, K.drops, T);
		return 1;
	}
	return 0;
}

/* A barrier: drains the queue until it is empty with no drop since it
 * began (the kernel goes on via between(), called at every step). */
static void barrier(struct tracker *t, void (*between)(void))
{
	for (;;) {
		uint64_t d = K.drops;

		if (between)
			between();
		if (feed_events(t, 0) && K.drops == d)
			return;
	}
}

/* A whole dump, read while the kernel goes on (between() after every
 * chunk of 64 records); the dump reads the table as it is when each
 * record is reached. */
static void dump(struct tracker *t, void (*between)(void), int fail_at)
{
	tracker_dump_begin(t, K.drops, T);
	for (unsigned i = 0, n = 0; i < KMAX; i++) {
		if (!K.t[i].live)
			continue;
		if (fail_at >= 0 && n == (unsigned)fail_at) {
			tracker_dump_end(t, EIO, K.drops, 0.001, T);
			return;
		}
		tracker_entry(t, &K.t[i].e, T);
		if (++n % 64 == 0) {
			tracker_dump_progress(t, T);
			if (between)
				between();
			feed_events(t, 16);
		}
	}
	barrier(t, NULL); /* what was queued before the end goes first */
	tracker_dump_end(t, 0, K.drops, 0.001, T);
}

/* Runs whatever the tracker says is due until nothing is (the stall is
 * over and the feeder runs as fast as it can). */
static void settle(struct tracker *t)
{
	for (int round = 0; round < 20; round++) {
		unsigned due;

		feed_events(t, 0);
		due = tracker_due(t, T, NULL);
		if (!(due & TRACKER_DUMP))
			return;
		barrier(t, NULL);
		dump(t, NULL, -1);
	}
	fail_msg("the tracker keeps wanting dumps");
}

static struct tracker *new_tracker(void)
{
	struct tracker_config cfg = { .interval_s = 1 };
	struct kstat ks;
	struct tracker *t;

	memset(&ks, -1, sizeof(ks));
	ks.events = K.events;
	T = 1764000000000LL;
	t = tracker_new(&cfg, T);
	assert_non_null(t);
	tracker_kstat(t, &ks, T);
	return t;
}

static void set_events(struct tracker *t, int v)
{
	struct kstat ks;

	memset(&ks, -1, sizeof(ks));
	ks.events = v;
	K.events = v;
	tracker_kstat(t, &ks, T);
}

/* The tracker's figures equal the kernel's set. */
static void assert_exact(struct tracker *t)
{
	struct ledger_stats st;

	tracker_stats(t, &st);
	assert_int_equal(st.mappings_nat + st.mappings_local + st.entries_other,
			 klive());
	assert_int_equal(tracker_state(t), STORE_STATE_RUNNING);
}

static int gap_reason(struct tracker *t, const char *reason, int *open)
{
	struct store_batch b;
	int found = 0;

	store_batch_init(&b);
	assert_int_equal(tracker_snapshot(t, &b, 1, T, T), 0);
	for (size_t i = 0; i < b.n_gaps; i++) {
		if (!strcmp(b.gaps[i].reason, reason)) {
			found = 1;
			if (open)
				*open = b.gaps[i].end_ms == 0;
		}
	}
	store_batch_free(&b);
	return found;
}

static struct store_status status_of(struct tracker *t)
{
	struct store_batch b;
	struct store_status s;

	store_batch_init(&b);
	assert_int_equal(tracker_snapshot(t, &b, 0, T, T), 0);
	s = b.status;
	store_batch_free(&b);
	return s;
}

/* ---- tests ---- */

/* The stall: a frozen collector, a backlog of more events than
 * the socket holds, then deletions whose DESTROYs are dropped while the
 * NEWs of the same entries wait in the backlog.  The resync must end
 * exact, and stay so. */
static void test_stall_stale_backlog(void **state)
{
	struct tracker *t;

	(void)state;
	kreset(12000);
	t = new_tracker();
	for (unsigned i = 0; i < 5000; i++)
		kcreate(i);
	settle(t);
	assert_exact(t);
	/* frozen: 30,000 creations (12,000 queue, the rest dropped), then
	 * 8,000 deletions of queued ones, all dropped */
	for (unsigned i = 5000; i < 35000; i++)
		kcreate(i);
	for (unsigned i = 5000; i < 13000; i++)
		kdestroy(i);
	assert_true(K.drops > 20000);
	assert_int_equal(K.qtail - K.qhead, 12000);
	/* it resumes: reads part of the backlog, then learns of the loss */
	T += 60000;
	feed_events(t, 1000);
	tracker_lost(t, "enobufs", K.drops, T);
	assert_int_equal(tracker_state(t), STORE_STATE_RESYNCING);
	settle(t);
	assert_exact(t);
	{
		struct store_status s = status_of(t);
		int open = 1;

		assert_int_equal(s.events_lost, K.drops);
		assert_true(gap_reason(t, "enobufs", &open));
		assert_false(open);
	}
	/* and it stays exact as the table goes on changing */
	for (unsigned i = 35000; i < 36000; i++)
		kcreate(i);
	for (unsigned i = 0; i < 500; i++)
		kdestroy(i);
	settle(t);
	assert_exact(t);
	tracker_free(t);
}

/* The same stall fed the way natscope did before the barrier (the resync
 * starts at the loss and the backlog is read during it): ghosts stay -
 * the 66,510 - and the count audit is what catches them. */
static void backlog_reader(void)
{
	feed_events(NULL, 64);
}

static void test_stall_without_barrier(void **state)
{
	struct tracker *t;
	struct ledger_stats st;

	(void)state;
	kreset(12000);
	t = g_t = new_tracker();
	for (unsigned i = 0; i < 5000; i++)
		kcreate(i);
	settle(t);
	for (unsigned i = 5000; i < 35000; i++)
		kcreate(i);
	for (unsigned i = 5000; i < 13000; i++)
		kdestroy(i);
	T += 60000;
	feed_events(t, 1000);
	tracker_lost(t, "enobufs", K.drops, T);
	dump(t, backlog_reader, -1); /* no barrier: the backlog races */
	feed_events(t, 0);
	tracker_stats(t, &st);
	print_message("without the barrier: %llu tracked, %u in the kernel\n",
		      (unsigned long long)(st.mappings_nat + st.entries_other),
		      klive());
	assert_true(st.mappings_nat > klive()); /* ghosts */
	assert_int_equal(tracker_state(t), STORE_STATE_RUNNING); /* unaware */
	tracker_audit_count(t, klive(), 0, T);
	tracker_audit_count(t, klive(), 0, T);
	assert_int_equal(tracker_state(t), STORE_STATE_RESYNCING);
	settle(t);
	assert_exact(t);
	tracker_free(t);
}

/* Events that race the resync's dump, in every order, with more loss
 * during it: still exact once a dump completes without loss. */
static void churn(void)
{
	static unsigned next = 20000, old = 0;

	for (int k = 0; k < 60; k++) {
		kcreate(20000 + next++ % 20000);
		kdestroy(old++ % 20000);
	}
}

/* A little churn of reported entries while a dump runs. */
static void churn_small(void)
{
	static unsigned next = 30000, old = 1000;

	kcreate(next++);
	kdestroy(old++);
}

static void test_dump_racing_events(void **state)
{
	struct tracker *t;

	(void)state;
	kreset(QMAX);
	t = new_tracker();
	for (unsigned i = 0; i < 10000; i++)
		kcreate(i);
	barrier(t, NULL);
	K.qcap = 100;
	dump(t, churn, -1); /* the queue overflows during the dump */
	assert_true(K.drops > 0);
	assert_int_equal(tracker_state(t), STORE_STATE_RESYNCING);
	K.qcap = QMAX;
	settle(t);
	assert_exact(t);
	tracker_free(t);
}

/* Routine re-dumps check every tracked entry: a ghost no event or loss
 * explains (here the kernel dropped an entry silently) is a mismatch and
 * a closed gap "audit" over the time since the last complete dump; an
 * entry destroyed while the dump runs is not. */
static void test_redump_finds_ghosts(void **state)
{
	struct tracker *t;
	struct store_status s;
	int open = 1;

	(void)state;
	kreset(QMAX);
	t = new_tracker();
	for (unsigned i = 0; i < 2000; i++)
		kcreate(i);
	settle(t);
	assert_true(status_of(t).audit_cycle_s >= 1.0);
	T += 1000;
	assert_true(tracker_due(t, T, NULL) & TRACKER_DUMP);
	settle(t); /* nothing wrong: no mismatch */
	assert_int_equal(status_of(t).audit_mismatches, 0);
	for (unsigned i = 0; i < 10; i++)
		K.t[i].live = 0; /* gone without a word */
	T += 1000;
	barrier(t, NULL);
	dump(t, churn_small, -1);
	assert_exact(t);
	s = status_of(t);
	assert_int_equal(s.audit_mismatches, 1);
	assert_int_equal(s.audit_dump_ghosts, 10);
	assert_true(gap_reason(t, "audit", &open));
	assert_false(open);
	assert_int_equal(tracker_state(t), STORE_STATE_RUNNING);
	tracker_free(t);
}

/* Routine re-dumps wait while events pour in - measured over the last
 * interval, over the part of this one so far, or as a backlog the reader
 * left - and go ahead once the table is quiet again. */
static void test_routine_dump_waits(void **state)
{
	struct tracker *t;

	(void)state;
	kreset(QMAX);
	t = new_tracker();
	for (unsigned i = 0; i < 2000; i++)
		kcreate(i);
	settle(t);
	set_events(t, 1); /* an interval starts */
	T += 1000;
	for (unsigned i = 2000; i < 27000; i++)
		kcreate(i); /* 25,000 changes within this interval so far */
	feed_events(t, 0);
	assert_false(tracker_due(t, T, NULL) & TRACKER_DUMP);
	set_events(t, 1); /* that interval was busy: the next waits too */
	T += 500;
	assert_false(tracker_due(t, T, NULL) & TRACKER_DUMP);
	T += 500;
	set_events(t, 1); /* a quiet interval */
	assert_true(tracker_due(t, T, NULL) & TRACKER_DUMP);
	/* a reader that leaves events queued for long: it waits */
	tracker_backlog(t, T);
	T += 100;
	assert_true(tracker_due(t, T, NULL) & TRACKER_DUMP);
	T += 200;
	assert_false(tracker_due(t, T, NULL) & TRACKER_DUMP);
	tracker_quiet(t, K.drops, T);
	assert_true(tracker_due(t, T, NULL) & TRACKER_DUMP);
	/* a routine re-dump that a storm overtakes gives way, sweeping
	 * nothing (the entries it has not reached stay) */
	barrier(t, NULL);
	set_events(t, 1); /* an interval starts */
	tracker_dump_begin(t, K.drops, T);
	for (unsigned i = 0; i < 100; i++) {
		struct ct_entry e = K.t[i].e;

		tracker_entry(t, &e, T);
	}
	for (unsigned i = 27000; i < 39000; i++)
		kcreate(i); /* 12,000 in 300 ms */
	T += 300;
	feed_events(t, 0);
	assert_true(tracker_dumping(t));
	assert_true(tracker_due(t, T, NULL) & TRACKER_ABANDON);
	assert_false(tracker_dumping(t));
	tracker_dump_end(t, 0, K.drops, 0, T); /* its late end changes nothing */
	assert_exact(t);
	assert_int_equal(tracker_state(t), STORE_STATE_RUNNING);
	settle(t);
	assert_exact(t);
	tracker_free(t);
}

/* A dump that ends in an error sweeps nothing, opens a gap and is tried
 * again after a backoff; the retry sweeps what is gone. */
static void test_failed_dump(void **state)
{
	struct tracker *t;
	struct ledger_stats st;
	int open = 0;

	(void)state;
	kreset(QMAX);
	t = new_tracker();
	for (unsigned i = 0; i < 3000; i++)
		kcreate(i);
	/* the start-up dump fails: a gap of its own, still starting */
	barrier(t, NULL);
	dump(t, NULL, 100);
	assert_true(gap_reason(t, "dump-error", &open));
	assert_true(open);
	assert_int_equal(tracker_state(t), STORE_STATE_STARTING);
	T += 100;
	settle(t);
	assert_exact(t);
	assert_true(gap_reason(t, "dump-error", &open));
	assert_false(open);
	/* 1000 entries vanish, their DESTROYs lost: a gap, a resync */
	for (unsigned i = 0; i < 1000; i++)
		K.t[i].live = 0;
	K.drops += 1000;
	feed_events(t, 0);
	assert_int_equal(tracker_state(t), STORE_STATE_RESYNCING);
	barrier(t, NULL);
	dump(t, NULL, 500); /* fails after 500 of the 2000 records */
	tracker_stats(t, &st);
	assert_int_equal(st.mappings_nat, 3000); /* nothing swept */
	assert_int_equal(tracker_state(t), STORE_STATE_RESYNCING);
	assert_int_equal(status_of(t).resync_failed, 2);
	assert_int_equal(tracker_due(t, T, NULL) & TRACKER_DUMP, 0); /* backoff */
	T += 100;
	assert_true(tracker_due(t, T, NULL) & TRACKER_DUMP);
	/* failing again and again backs off: 100, 200, 400 ms ... */
	barrier(t, NULL);
	dump(t, NULL, 10);
	T += 100;
	assert_int_equal(tracker_due(t, T, NULL) & TRACKER_DUMP, 0);
	T += 100;
	assert_true(tracker_due(t, T, NULL) & TRACKER_DUMP);
	settle(t);
	assert_exact(t);
	tracker_free(t);
}

/* A dump that makes no progress is abandoned by the watchdog: counted,
 * nothing swept, tried again. */
static void test_stalled_dump(void **state)
{
	struct tracker *t;

	(void)state;
	kreset(QMAX);
	t = new_tracker();
	for (unsigned i = 0; i < 100; i++)
		kcreate(i);
	feed_events(t, 0);
	tracker_dump_begin(t, K.drops, T);
	tracker_entry(t, &K.t[0].e, T);
	tracker_dump_progress(t, T);
	T += 9999;
	assert_int_equal(tracker_due(t, T, NULL) & TRACKER_ABANDON, 0);
	/* past the limit it is suspected, and abandoned if a second later
	 * there is still no progress */
	T += 1;
	assert_int_equal(tracker_due(t, T, NULL) & TRACKER_ABANDON, 0);
	T += 999;
	assert_int_equal(tracker_due(t, T, NULL) & TRACKER_ABANDON, 0);
	T += 1;
	assert_true(tracker_due(t, T, NULL) & TRACKER_ABANDON);
	assert_false(tracker_dumping(t));
	assert_int_equal(status_of(t).resync_abandoned, 1);
	assert_true(gap_reason(t, "dump-stall", NULL));
	/* the tracker is still starting: nothing it has is the truth */
	assert_int_equal(tracker_state(t), STORE_STATE_STARTING);
	T += 100;
	settle(t);
	assert_exact(t);
	tracker_free(t);
}

/* A collector frozen (SIGSTOP) while a dump is in flight: when it runs
 * again the dump is long past the limit, but its reader had data all
 * along; the progress it reports within the second of grace keeps the
 * dump (test_stall saw such a freeze counted as an abandoned dump). */
static void test_frozen_dump_not_abandoned(void **state)
{
	struct tracker *t;

	(void)state;
	kreset(QMAX);
	t = new_tracker();
	for (unsigned i = 0; i < 100; i++)
		kcreate(i);
	feed_events(t, 0);
	tracker_dump_begin(t, K.drops, T);
	tracker_entry(t, &K.t[0].e, T);
	tracker_dump_progress(t, T);
	T += 34000; /* frozen */
	assert_int_equal(tracker_due(t, T, NULL) & TRACKER_ABANDON, 0);
	T += 10;
	tracker_entry(t, &K.t[1].e, T);
	tracker_dump_progress(t, T);
	T += 2000;
	assert_int_equal(tracker_due(t, T, NULL) & TRACKER_ABANDON, 0);
	assert_true(tracker_dumping(t));
	assert_int_equal(status_of(t).resync_abandoned, 0);
	tracker_free(t);
}

/* nf_conntrack_events=0: no events at all; the table is followed by
 * dumps, every interval, and the tracker says so.  Switching at run time
 * in both directions is noticed and repaired. */
static void test_events_off_and_on(void **state)
{
	struct tracker *t;
	struct store_status s;
	int open = 0;

	(void)state;
	kreset(QMAX);
	K.events = 0;
	t = new_tracker();
	for (unsigned i = 0; i < 100; i++)
		kcreate(i);
	settle(t);
	assert_exact(t);
	s = status_of(t);
	assert_int_equal(s.follow, STORE_FOLLOW_DUMPS);
	assert_int_equal(s.as_of_ms, T); /* the figures are the dump's */
	/* entries come silently; the next interval's dump finds them */
	for (unsigned i = 100; i < 1100; i++)
		kcreate(i);
	T += 999;
	assert_int_equal(tracker_due(t, T, NULL) & TRACKER_DUMP, 0);
	T += 1;
	assert_true(tracker_due(t, T, NULL) & TRACKER_DUMP);
	settle(t);
	assert_exact(t);
	assert_int_equal(status_of(t).as_of_ms, T);
	T += 500;
	assert_int_equal(status_of(t).as_of_ms, T - 500);

	/* on again: what was created meanwhile is unknown until a dump,
	 * which must come now, and those entries stay silent */
	for (unsigned i = 1100; i < 2100; i++)
		kcreate(i); /* still off: silent */
	set_events(t, 1);
	assert_true(gap_reason(t, "events-on", &open));
	assert_true(open);
	for (unsigned i = 2100; i < 3100; i++)
		kcreate(i); /* reported */
	settle(t);
	assert_exact(t);
	s = status_of(t);
	assert_int_equal(s.mappings_silent, 2100);
	assert_int_equal(s.follow, STORE_FOLLOW_EVENTS_DUMPS);

	/* off again at run time: noticed, a gap until a dump completes */
	set_events(t, 0);
	assert_true(gap_reason(t, "events-off", &open));
	assert_true(open);
	assert_int_equal(status_of(t).follow, STORE_FOLLOW_DUMPS);
	for (unsigned i = 3100; i < 4100; i++)
		kcreate(i);
	for (unsigned i = 2100; i < 2600; i++)
		K.t[i].live = 0; /* ended, unseen */
	settle(t);
	assert_exact(t);
	assert_true(gap_reason(t, "events-off", &open));
	assert_false(open);
	tracker_free(t);
}

/* The count audit: ghosts beyond what in-flight changes explain, twice
 * running, are a mismatch (gap "audit", resync); within tolerance, or
 * once, they are not. */
static void test_count_audit(void **state)
{
	struct tracker *t;
	struct store_status s;

	(void)state;
	kreset(QMAX);
	t = new_tracker();
	for (unsigned i = 0; i < 1000; i++)
		kcreate(i);
	settle(t);
	/* a changing table: the window explains the difference */
	tracker_audit_count(t, 980, 30, T);
	tracker_audit_count(t, 980, 30, T);
	assert_int_equal(tracker_state(t), STORE_STATE_RUNNING);
	s = status_of(t);
	assert_int_equal(s.audit_checks, 2);
	assert_int_equal(s.audit_mismatches, 0);
	assert_int_equal(s.audit_difference, -20);
	/* 300 entries gone without a word (a kernel that reordered, a loss
	 * nobody counted) */
	for (unsigned i = 0; i < 300; i++)
		K.t[i].live = 0;
	tracker_audit_count(t, klive(), 0, T);
	assert_int_equal(tracker_state(t), STORE_STATE_RUNNING);
	tracker_audit_count(t, klive(), 0, T);
	assert_int_equal(tracker_state(t), STORE_STATE_RESYNCING);
	s = status_of(t);
	assert_int_equal(s.audit_mismatches, 1);
	assert_int_equal(s.audit_kernel_entries, 700);
	assert_int_equal(s.audit_tracked_entries, 1000);
	assert_int_equal(s.audit_difference, -300);
	assert_true(gap_reason(t, "audit", NULL));
	settle(t);
	assert_exact(t);
	/* misses: three audits in a row */
	for (unsigned i = 1000; i < 1400; i++) {
		K.t[i].live = 1; /* created without an event */
		K.t[i].e = kmk(i, CTMSG_DUMP);
	}
	tracker_audit_count(t, klive(), 0, T);
	tracker_audit_count(t, klive(), 0, T);
	assert_int_equal(tracker_state(t), STORE_STATE_RUNNING);
	tracker_audit_count(t, klive(), 0, T);
	assert_int_equal(tracker_state(t), STORE_STATE_RESYNCING);
	settle(t);
	assert_exact(t);
	assert_int_equal(status_of(t).audit_mismatches, 2);
	tracker_free(t);
}

/* The sampler: a ghost found by a GET, with no event about it, is a
 * mismatch even when the counts balance; a silent mapping found gone is
 * just removed; an event after the question voids the verdict. */
static void test_sampler(void **state)
{
	struct tracker *t;
	struct ledger_mapping m[TRACKER_SAMPLE_MAX];
	struct store_status s;
	unsigned n, ghost = 0, raced = 0;

	(void)state;
	kreset(QMAX);
	t = new_tracker();
	for (unsigned i = 0; i < 200; i++)
		kcreate(i);
	settle(t);
	assert_true(tracker_due(t, T, NULL) & TRACKER_SAMPLE);
	n = tracker_sample_begin(t, m, 64, T);
	assert_int_equal(n, 64);
	/* find two sampled entries by public port */
	for (unsigned k = 0; k < n; k++) {
		for (unsigned i = 0; i < 200; i++) {
			struct ct_entry e = kmk(i, CTMSG_DUMP);

			if (e.reply.dport != m[k].public_port ||
			    memcmp(e.reply.dst, m[k].public_ip, 4) ||
			    memcmp(e.reply.src, m[k].dest_ip, 4))
				continue;
			if (!ghost)
				ghost = i + 1;
			else if (!raced && i + 1 != ghost)
				raced = i + 1;
		}
	}
	assert_true(ghost && raced);
	/* the ghost: gone from the kernel, its DESTROY never came */
	K.t[ghost - 1].live = 0;
	/* the raced one: the kernel answers "gone", but its DESTROY was
	 * queued after the question */
	kdestroy(raced - 1);
	feed_events(t, 0);
	for (unsigned k = 0; k < n; k++) {
		int found = 0;

		for (unsigned i = 0; i < 200; i++) {
			struct ct_entry e = kmk(i, CTMSG_DUMP);

			if (K.t[i].live && e.reply.dport == m[k].public_port &&
			    !memcmp(e.reply.dst, m[k].public_ip, 4) &&
			    !memcmp(e.reply.src, m[k].dest_ip, 4)) {
				tracker_sample_result(t, k, &K.t[i].e, T);
				found = 1;
			}
		}
		if (!found)
			tracker_sample_result(t, k, NULL, T);
	}
	tracker_sample_end(t, 0.0005, T);
	s = status_of(t);
	/* "not found" once is a suspect, asked again next round */
	assert_int_equal(s.audit_sample_ghosts, 0);
	assert_int_equal(s.audit_sampled, 63); /* the raced one: no verdict */
	assert_int_equal(tracker_state(t), STORE_STATE_RUNNING);
	T += 50;
	assert_true(tracker_due(t, T, NULL) & TRACKER_SAMPLE);
	n = tracker_sample_begin(t, m, 64, T);
	assert_int_equal(m[0].public_port, kmk(ghost - 1, CTMSG_DUMP).reply.dport);
	feed_events(t, 0);
	tracker_sample_result(t, 0, NULL, T);
	tracker_sample_end(t, 0.0005, T);
	s = status_of(t);
	assert_int_equal(s.audit_sample_ghosts, 1);
	assert_int_equal(s.audit_mismatches, 1);
	assert_int_equal(tracker_state(t), STORE_STATE_RESYNCING);
	/* paced: 0.5 ms of CPU at 1% of a core is 50 ms */
	assert_true(s.audit_cycle_s > 0);
	settle(t);
	assert_exact(t);
	assert_int_equal(tracker_due(t, T, NULL) & TRACKER_SAMPLE, 0);
	T += 50;
	assert_true(tracker_due(t, T, NULL) & TRACKER_SAMPLE);
	tracker_free(t);
}

/* Silent mappings (found by the first dump: they predate natscope) that
 * end are found by the sampler and removed, with no gap. */
static void test_sampler_silent(void **state)
{
	struct tracker *t;
	struct ledger_mapping m[TRACKER_SAMPLE_MAX];
	struct store_status s;
	unsigned n;

	(void)state;
	kreset(QMAX);
	K.events = 2;
	for (unsigned i = 0; i < 100; i++) {
		kcreate(i);
		K.t[i].reports = 0; /* created before any listener */
	}
	K.qtail = K.qhead = 0;
	t = new_tracker();
	settle(t);
	s = status_of(t);
	assert_int_equal(s.mappings_silent, 100);
	assert_int_equal(s.follow, STORE_FOLLOW_EVENTS_DUMPS);
	for (unsigned i = 0; i < 100; i++)
		K.t[i].live = 0; /* all ended, silently */
	n = tracker_sample_begin(t, m, 256, T);
	assert_int_equal(n, 100);
	feed_events(t, 0);
	for (unsigned k = 0; k < n; k++)
		tracker_sample_result(t, k, NULL, T);
	tracker_sample_end(t, 0.001, T);
	s = status_of(t);
	assert_int_equal(s.audit_sample_silent_gone, 100);
	assert_int_equal(s.audit_sample_ghosts, 0);
	assert_int_equal(s.mappings_nat, 0);
	assert_int_equal(s.follow, STORE_FOLLOW_EVENTS);
	assert_int_equal(tracker_state(t), STORE_STATE_RUNNING);
	tracker_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stall_stale_backlog),
		cmocka_unit_test(test_stall_without_barrier),
		cmocka_unit_test(test_dump_racing_events),
		cmocka_unit_test(test_redump_finds_ghosts),
		cmocka_unit_test(test_routine_dump_waits),
		cmocka_unit_test(test_failed_dump),
		cmocka_unit_test(test_stalled_dump),
		cmocka_unit_test(test_frozen_dump_not_abandoned),
		cmocka_unit_test(test_events_off_and_on),
		cmocka_unit_test(test_count_audit),
		cmocka_unit_test(test_sampler),
		cmocka_unit_test(test_sampler_silent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
