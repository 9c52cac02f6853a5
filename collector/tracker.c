/*
 * tracker.c - the conntrack model (see tracker.h).
 *
 * Why a dump racing with events ends exact.  A dump chunk is a snapshot
 * of some hash buckets taken when the kernel filled it, and it may be read
 * after events that happened later.  So, during a resync (ledger.h):
 *  - an event always applies and marks its entry;
 *  - a dump record never overrides a marked entry (the event is newer);
 *  - a DESTROY leaves a tombstone, so an older dump record of the same
 *    entry read afterwards cannot bring it back;
 *  - at the end of a complete dump, whatever is unmarked was destroyed
 *    while events were lost, and is swept.
 * This holds only for events newer than the dump's request: an event the
 * kernel queued before it (a backlog left by a stalled reader) would mark
 * an entry the dump rightly left out - its DESTROY may have been the
 * event that was dropped - and the sweep would keep a ghost for ever.  So
 * a dump only begins after a barrier: the feeder drains the event queue
 * until it finds it empty with the kernel's drop counter unchanged since
 * before the drain.  Everything queued before that moment has then been
 * applied before the mark phase (as ordinary events, which the dump may
 * override), and everything read afterwards was produced after it; if
 * the counter moved, events were lost during the drain, and it goes on.
 * Any loss during the resync makes its result untrustworthy: another
 * resync follows at once.  The gap stays open until one completes with no
 * loss.  A dump that fails (an error answer, an unreadable chunk, no
 * progress for stall_ms) sweeps nothing: what it did not reach is kept,
 * a gap says so, and the dump is tried again after a backoff.
 *
 * Entries the kernel sends no events for (created while nobody listened,
 * with nf_conntrack_events=2; all of them with nf_conntrack_events=0) can
 * only be followed by dumping again ("silent"); while any exist, or while
 * events are off, the table is re-dumped every interval, or less often
 * when a dump costs more than dump_budget of a core.
 *
 * The self-audit does not trust the kernel's loss signals alone.  Every
 * interval the count audit compares nat + local + other with the kernel's
 * entry count across a barrier: the kernel's count may differ from ours
 * by the NEW and DESTROY events applied in the barrier's window, plus a
 * few entries not yet confirmed or not yet freed; silent entries may have
 * died unseen.  More than that, twice running (ghosts) or three times
 * (misses), is a mismatch: a gap ("audit"), a resync, a log line with the
 * figures.  And a rotating sample of mappings is checked one by one with
 * conntrack GETs: a mapping the kernel does not have, with no event about
 * it since the question was asked, is a ghost even when the counts
 * balance (a mismatch again); a silent one is simply removed, which is
 * how silent mappings that ended are found between dumps.
 */
#include "collector/tracker.h"
#include "collector/classify.h"
#include "collector/localaddr.h"
#include "collector/mapbuf.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define APPLY_BATCH 16	      /* entries parsed and prefetched, then applied */
#define GAPS_PENDING_MAX 16   /* gap rows waiting for the next write */
#define DUMP_BUDGET 0.035     /* routine re-dumps (silent entries, audit) */
#define DEAD_SILENT_BUDGET 0.25 /* re-dumps while silent ones are known gone */
#define SAMPLE_BUDGET 0.01    /* the sampler */
#define STALL_MS 10000	      /* a dump without progress is abandoned */
#define STALL_CONFIRM_MS 1000 /* ... if it still has none this much later */
#define RETRY_MIN_MS 100      /* after a failed dump, first retry */
#define RETRY_MAX_MS 30000    /* the backoff's ceiling */
#define SAMPLE_MIN_GAP_MS 10  /* between two samples at least */
#define BUSY_RATE 20000	      /* NEW + DESTROY a second: routine dumps wait */
#define BUSY_MIN_MS 200	      /* the least of an interval that tells a rate */
#define BUSY_BACKLOG_MS 250   /* queue not empty this long: routine dumps wait */
#define AUDIT_GHOST_RUNS 2    /* audits in a row before a mismatch */
#define AUDIT_MISS_RUNS 3
#define PROBE_SLOTS 1024      /* the sample's fingerprints (> 2 x MAX) */
#define SUSPECTS_MAX 64	      /* "not found" answers asked again next round */

struct tracker_item {
	struct ct_entry e;
	struct ledger_mapping m;
	enum ns_kind kind;
	int64_t now; /* maplog: when it was read */
};

struct tracker {
	struct tracker_config cfg;
	struct ledger *ledger;
	const struct localaddr *la;

	struct tracker_item items[APPLY_BATCH];
	unsigned n_items;
	int64_t items_now;

	/* counters */
	uint64_t ev_new, ev_update, ev_destroy, ev_dumped, ev_unknown_destroy;
	uint64_t ev_malformed, enobufs, changes, ledger_errors;

	/* the kernel's drop counter */
	uint64_t drops;		  /* as last reported */
	uint64_t drops_accounted; /* when the last gap closed */
	int64_t exact_ms;	  /* figures last known exact (queue empty) */

	/* dumps */
	int dumping, dump_wanted, initial_done, dump_lossy;
	int dump_clean;		  /* began with the figures known exact */
	int64_t verified_ms;	  /* the last complete dump began (all checked) */
	int dump_silent_possible; /* records this dump adds may be silent */
	int64_t dump_due_ms;	  /* a scheduled re-dump, 0: none */
	int64_t retry_ms;	  /* after a failure, not before; 0: none */
	unsigned fail_streak;
	uint64_t drops_at_dump;
	int64_t dump_started_ms, dump_progress_ms, last_done_ms;
	int64_t stall_seen_ms; /* when the dump was first seen past the limit */
	int64_t last_duration_us;
	struct store_resync_hist resync_hist; /* every complete resync's */
	double last_cpu;
	uint64_t resyncs, resync_failed, resync_abandoned;
	uint64_t rs_entries, rs_added, rs_changed, rs_removed;
	uint64_t last_entries, last_added, last_changed, last_removed;

	/* how the table is followed */
	int32_t events;	      /* nf_conntrack_events as last read, -1 unknown */
	int events_off_seen;  /* it was 0 (or unknown) since the last dump began */
	enum store_follow follow;

	/* gaps */
	int64_t run_started_ms;
	uint32_t gap_seq;
	int gap_open;
	struct store_gap_row gap;
	uint64_t gap_drops_base;
	struct store_gap_row pending[GAPS_PENDING_MAX], inflight[GAPS_PENDING_MAX];
	unsigned n_pending, n_inflight;

	/* the count audit */
	uint64_t audit_checks, audit_mismatches, audit_tracked, audit_tolerance;
	int64_t audit_last_ms, audit_kernel, audit_difference;
	unsigned ghost_runs, miss_runs;

	/* the sampler */
	int sample_active, sample_lossy;
	unsigned sample_n, sample_ghosts_now;
	struct ledger_mapping sample[TRACKER_SAMPLE_MAX];
	uint8_t touched[TRACKER_SAMPLE_MAX];
	uint8_t suspect[TRACKER_SAMPLE_MAX]; /* asked again: second answer */
	struct ledger_mapping next_suspects[SUSPECTS_MAX];
	unsigned n_next_suspects;
	uint64_t probe_fp[PROBE_SLOTS];
	uint16_t probe_idx[PROBE_SLOTS];
	uint32_t cursor;
	int64_t next_sample_ms;
	double cycle_s; /* a routine re-dump checks everything this often */
	uint64_t sampled, sample_ghosts, sample_changed, sample_silent_gone;
	uint64_t dump_ghosts; /* found by routine re-dumps */

	/* the event rate, for holding routine dumps during storms */
	uint64_t changes_at_kstat;
	int64_t kstat_ms;
	int64_t backlog_ms; /* since when reads leave events queued; 0 none */
	int busy; /* more than BUSY_RATE changes a second last interval */

	/* history: the period since the last snapshot */
	int64_t hist_ms;  /* its start; 0 before the first complete dump */
	int hist_inexact; /* a gap was open at some moment of it */

	/* snapshots */
	struct kstat ks;
	int have_ks;
	uint32_t range_size[LEDGER_RANGES];
	int force_full, write_wanted;

	struct mapbuf maplog; /* maplog: starts and ends for the next batch */
};

/* ---- small helpers ---- */

static double tracker_dump_budget(const struct tracker *t)
{
	return t->cfg.dump_budget > 0 ? t->cfg.dump_budget : DUMP_BUDGET;
}

static double tracker_sample_budget(const struct tracker *t)
{
	return t->cfg.sample_budget > 0 ? t->cfg.sample_budget : SAMPLE_BUDGET;
}

static int64_t tracker_interval_ms(const struct tracker *t)
{
	return (int64_t)t->cfg.interval_s * 1000;
}

static void tracker_queue_gap(struct tracker *t, const struct store_gap_row *g)
{
	for (unsigned i = 0; i < t->n_pending; i++) {
		if (t->pending[i].seq == g->seq) {
			t->pending[i] = *g;
			return;
		}
	}
	if (t->n_pending == GAPS_PENDING_MAX) {
		/* only possible if writes keep failing; the oldest row is
		 * dropped from the queue, its figures live on in status */
		memmove(&t->pending[0], &t->pending[1],
			(GAPS_PENDING_MAX - 1) * sizeof(t->pending[0]));
		t->n_pending--;
	}
	t->pending[t->n_pending++] = *g;
}

static void tracker_flush(struct tracker *t);

/* Opens a gap (or extends the open one) and wants a resync. */
static void tracker_open_gap(struct tracker *t, const char *reason,
			     int64_t start, int64_t now)
{
	if (!t->gap_open) {
		memset(&t->gap, 0, sizeof(t->gap));
		t->gap.run_started_ms = t->run_started_ms;
		t->gap.seq = ++t->gap_seq;
		t->gap.start_ms = start > 0 && start <= now ? start : now;
		t->gap.events_lost = -1;
		snprintf(t->gap.reason, sizeof(t->gap.reason), "%s", reason);
		t->gap_open = 1;
		t->hist_inexact = 1;
		/* The kernel counts drops before ENOBUFS is reported; all
		 * drops since the last gap closed belong to this one. */
		t->gap_drops_base = t->drops_accounted;
	}
	t->gap.events_lost = (int64_t)(t->drops - t->gap_drops_base);
	tracker_queue_gap(t, &t->gap);
	if (t->dumping)
		t->dump_lossy = 1; /* this resync's result cannot close it */
	t->dump_wanted = 1;
}

static void tracker_drops_to(struct tracker *t, uint64_t drops_total)
{
	if (drops_total > t->drops)
		t->drops = drops_total;
}

/* ---- entries ---- */

/* Whether the running sample watches this key: an event about it makes
 * the kernel's answer (given before the event) unusable. */
static void tracker_probe_touch(struct tracker *t, const struct ledger_mapping *m)
{
	uint64_t fp = ledger_fingerprint(t->ledger, m);
	uint32_t i = (uint32_t)fp & (PROBE_SLOTS - 1);

	for (; t->probe_fp[i]; i = (i + 1) & (PROBE_SLOTS - 1)) {
		if (t->probe_fp[i] == fp) {
			t->touched[t->probe_idx[i]] = 1;
			return;
		}
	}
}

static void tracker_ledger_error(struct tracker *t, int64_t now)
{
	if (t->ledger_errors++ % 100000 == 0)
		log_warn("ledger");
	t->force_full = 1;
	tracker_open_gap(t, "no-memory", t->exact_ms, now);
}

static void tracker_apply(struct tracker *t, const struct tracker_item *it)
{
	const struct ct_entry *e = &it->e;
	int r, source;

	switch (e->type) {
	case CTMSG_NEW:
		t->ev_new++;
		t->changes++;
		break;
	case CTMSG_UPDATE:
		t->ev_update++;
		break;
	case CTMSG_DESTROY:
		t->ev_destroy++;
		t->changes++;
		break;
	case CTMSG_DUMP:
		if (!t->dumping)
			return; /* a stray record: no dump is running */
		t->ev_dumped++;
		t->rs_entries++;
		break;
	default:
		return;
	}
	if (t->sample_active && e->type != CTMSG_DUMP)
		tracker_probe_touch(t, &it->m);
	if (e->type == CTMSG_DESTROY) {
		/* looked up by key whatever the entry is now classified as:
		 * the address set may have changed since it was created */
		r = ledger_remove(t->ledger, &it->m);
		if (r == 0)
			t->ev_unknown_destroy++;
		else if (r == 1) /* maplog */
			mapbuf_end(&t->maplog, &it->m, e->orig.sport,
				   it->now, 0);
		return;
	}
	/* Entries created while we listen are reported by the kernel; those
	 * a dump finds may predate every listener, or have been created
	 * while nf_conntrack_events was 0: those are silent. */
	source = e->type == CTMSG_NEW ? LEDGER_EVENT_NEW :
		 e->type != CTMSG_DUMP ? LEDGER_EVENT :
		 t->dump_silent_possible ? LEDGER_DUMP : LEDGER_DUMP_REPORTED;
	r = ledger_upsert(t->ledger, &it->m, source);
	if (r < 0) {
		tracker_ledger_error(t, t->items_now);
		return;
	}
	/* maplog: a start; from a dump or an UPDATE its NEW was missed.  A
	 * NEW for a key already held starts a mapping too: the earlier one
	 * ended unseen (a lost DESTROY, the tuple reused) or was a dump's
	 * sight of this one; the log ends it there, as uncertain. */
	if (r == LEDGER_ADDED || e->type == CTMSG_NEW)
		mapbuf_start(&t->maplog, &it->m, e->orig.sport, it->now,
			     e->type == CTMSG_NEW ? 0 : STORE_MAPLOG_START_UNKNOWN);
	/* maplog: a TCP state change.  An event says when; a dump only
	 * that it changed by now. */
	else if (r == LEDGER_CHANGED && ledger_state_changed(t->ledger))
		mapbuf_state(&t->maplog, &it->m, it->now,
			     e->type == CTMSG_DUMP ? STORE_MAPLOG_STATE_SEEN : 0);
	if (e->type == CTMSG_DUMP && t->initial_done) {
		if (r == LEDGER_ADDED)
			t->rs_added++;
		else if (r == LEDGER_CHANGED)
			t->rs_changed++;
	}
}

static void tracker_flush(struct tracker *t)
{
	for (unsigned i = 0; i < t->n_items; i++)
		tracker_apply(t, &t->items[i]);
	t->n_items = 0;
}

void tracker_entry(struct tracker *t, const struct ct_entry *e, int64_t now)
{
	struct tracker_item *it = &t->items[t->n_items++];

	it->e = *e;
	it->kind = classify_entry(e, t->la, &it->m);
	it->m.kind = (uint8_t)it->kind;
	ledger_prefetch(t->ledger, &it->m);
	t->items_now = it->now = now;
	if (t->n_items == APPLY_BATCH)
		tracker_flush(t);
}

void tracker_malformed(struct tracker *t, const char *where)
{
	if (t->ev_malformed++ < 10 || t->ev_malformed % 10000 == 0)
		log_warnx("%s: malformed conntrack message skipped (%llu so far)",
			  where, (unsigned long long)t->ev_malformed);
}

uint64_t tracker_changes(struct tracker *t)
{
	tracker_flush(t);
	return t->changes;
}

/* ---- loss ---- */

void tracker_lost(struct tracker *t, const char *reason, uint64_t drops_total,
		  int64_t now)
{
	tracker_flush(t);
	tracker_drops_to(t, drops_total);
	if (!t->gap_open)
		log_warnx("events lost (%s): figures are approximate until the "
			  "resync completes", reason);
	tracker_open_gap(t, reason, t->exact_ms, now);
	if (!strcmp(reason, "enobufs")) {
		t->enobufs++;
		t->gap.enobufs++;
		tracker_queue_gap(t, &t->gap);
	}
	if (t->sample_active)
		t->sample_lossy = 1;
}

void tracker_gap(struct tracker *t, const char *reason, int64_t now)
{
	tracker_flush(t);
	tracker_open_gap(t, reason, t->exact_ms, now);
	if (t->drops == t->gap_drops_base) {
		/* no kernel counter speaks for this gap: unknown, not 0 */
		t->gap.events_lost = -1;
		tracker_queue_gap(t, &t->gap);
	}
}

void tracker_quiet(struct tracker *t, uint64_t drops_total, int64_t now)
{
	tracker_flush(t);
	if (drops_total > t->drops) {
		/* dropped without an ENOBUFS (the kernel reports one per
		 * congestion episode and then drops silently) */
		tracker_lost(t, "drops", drops_total, now);
		return;
	}
	t->backlog_ms = 0;
	if (!t->gap_open && t->drops == t->drops_accounted)
		t->exact_ms = now;
}

void tracker_backlog(struct tracker *t, int64_t now)
{
	if (!t->backlog_ms)
		t->backlog_ms = now;
}

/* ---- how the table is followed ---- */

static void tracker_update_follow(struct tracker *t)
{
	struct ledger_stats st;

	ledger_get_stats(t->ledger, &st);
	if (t->events == 0)
		t->follow = STORE_FOLLOW_DUMPS;
	else if (st.mappings_silent)
		t->follow = STORE_FOLLOW_EVENTS_DUMPS;
	else
		t->follow = STORE_FOLLOW_EVENTS;
}

static void tracker_ranges(struct tracker *t)
{
	uint32_t local = NS_LOCAL_PORT_HI - NS_LOCAL_PORT_LO + 1;

	if (t->ks.port_lo >= 0 && t->ks.port_hi >= t->ks.port_lo)
		local = (uint32_t)(t->ks.port_hi - t->ks.port_lo + 1);
	if (t->range_size[LEDGER_RANGE_LOCAL] &&
	    t->range_size[LEDGER_RANGE_LOCAL] != local)
		t->force_full = 1; /* every local bucket's capacity changed */
	t->range_size[LEDGER_RANGE_NAT_LOW] = 511;
	t->range_size[LEDGER_RANGE_NAT_MID] = 424;
	t->range_size[LEDGER_RANGE_NAT_HIGH] = 64512;
	t->range_size[LEDGER_RANGE_ICMP] = ns_port_space(IPPROTO_ICMP);
	t->range_size[LEDGER_RANGE_LOCAL] = local;
}

static double tracker_rate(uint64_t n, int64_t ms)
{
	return ms > 0 ? (double)n * 1000.0 / (double)ms : 0;
}

/* Whether events pour in, so that a routine re-dump should wait: the last
 * interval was busy (tracker_kstat()), or the part of this one so far
 * already is, or reads have left events queued for BUSY_BACKLOG_MS. */
static int tracker_busy(const struct tracker *t, int64_t now)
{
	if (t->busy)
		return 1;
	if (t->kstat_ms && now - t->kstat_ms >= BUSY_MIN_MS &&
	    tracker_rate(t->changes - t->changes_at_kstat,
			 now - t->kstat_ms) > BUSY_RATE)
		return 1;
	return t->backlog_ms && now - t->backlog_ms > BUSY_BACKLOG_MS;
}

void tracker_kstat(struct tracker *t, const struct kstat *ks, int64_t now)
{
	int32_t was = t->events;

	tracker_flush(t);
	if (t->kstat_ms && now > t->kstat_ms) {
		/* the events we applied, or the kernel's count if it moved
		 * faster (events not read yet) */
		int64_t moved = t->have_ks ? ks->count - t->ks.count : 0;

		t->busy = tracker_rate(t->changes - t->changes_at_kstat,
				       now - t->kstat_ms) > BUSY_RATE ||
			  tracker_rate((uint64_t)(moved < 0 ? -moved : moved),
				       now - t->kstat_ms) > BUSY_RATE;
	}
	t->changes_at_kstat = t->changes;
	t->kstat_ms = now;
	t->ks = *ks;
	t->have_ks = 1;
	tracker_ranges(t);
	t->events = ks->events;
	if (t->events <= 0)
		t->events_off_seen = 1; /* entries created now are silent */
	if (was != 0 && t->events == 0) {
		if (t->initial_done) {
			log_warnx("net.netfilter.nf_conntrack_events is now 0: "
				  "the kernel sends no conntrack events; "
				  "following the table by re-dumping it");
			tracker_open_gap(t, "events-off", t->exact_ms, now);
		} else {
			log_warnx("net.netfilter.nf_conntrack_events is 0: the "
				  "kernel sends no conntrack events, so natscope "
				  "follows the table by re-dumping it (set it to "
				  "1 or 2 to follow every change)");
		}
	} else if (was == 0 && t->events > 0) {
		log_info("net.netfilter.nf_conntrack_events is now %d: "
			 "following events again (entries created meanwhile "
			 "are followed by re-dumps)", (int)t->events);
		/* what was created since the last dump is unknown until the
		 * next one */
		if (t->initial_done)
			tracker_open_gap(t, "events-on", t->last_done_ms, now);
	}
	tracker_update_follow(t);
	if (t->follow == STORE_FOLLOW_DUMPS && !t->dumping && !t->dump_due_ms &&
	    t->initial_done)
		t->dump_due_ms = now;
}

/* ---- dumps ---- */

/* When the next routine re-dump is due: every interval, or less often so
 * that re-dumps take at most their budget of a core.  A routine re-dump
 * follows silent entries and, whatever the mode, verifies every tracked
 * entry against the table (see tracker_dump_end()). */
static void tracker_schedule(struct tracker *t, int64_t now)
{
	int64_t wait;

	tracker_update_follow(t);
	wait = (int64_t)(t->last_cpu / tracker_dump_budget(t) * 1000);
	if (wait < tracker_interval_ms(t))
		wait = tracker_interval_ms(t);
	t->dump_due_ms = now + wait;
	t->cycle_s = (now - t->dump_started_ms + wait) / 1e3;
}

void tracker_dump_begin(struct tracker *t, uint64_t drops_total, int64_t now)
{
	tracker_flush(t);
	tracker_drops_to(t, drops_total);
	if (!t->initial_done && t->have_ks && t->ks.count > 0)
		ledger_expect(t->ledger, (uint64_t)t->ks.count);
	ledger_resync_begin(t->ledger);
	t->dumping = 1;
	t->dump_wanted = 0;
	t->dump_due_ms = 0;
	t->retry_ms = 0;
	t->dump_lossy = 0;
	t->dump_clean = t->initial_done && !t->gap_open;
	t->drops_at_dump = t->drops;
	t->dump_started_ms = t->dump_progress_ms = now;
	t->stall_seen_ms = 0;
	/* Records this dump adds may be silent if they predate every
	 * listener (the first dump), or were created while events were off
	 * (since the last dump began, or now). */
	t->dump_silent_possible = !t->initial_done || t->events_off_seen ||
				  t->events <= 0;
	t->events_off_seen = t->events <= 0;
	t->rs_entries = t->rs_added = t->rs_changed = t->rs_removed = 0;
	log_debug("resync %llu started", (unsigned long long)t->resyncs + 1);
}

void tracker_dump_progress(struct tracker *t, int64_t now)
{
	t->dump_progress_ms = now;
	t->stall_seen_ms = 0;
}

int tracker_dumping(const struct tracker *t)
{
	return t->dumping;
}

static const char *tracker_errname(int err)
{
	return err == ETIMEDOUT ? "no progress" : strerror(err);
}

/* A failed dump: nothing is swept, the figures are not known exact, and
 * the dump is tried again after a backoff. */
static void tracker_dump_failed(struct tracker *t, int err, const char *reason,
				int64_t now)
{
	int64_t delay = RETRY_MIN_MS;

	ledger_resync_abort(t->ledger);
	t->dumping = 0;
	t->fail_streak++;
	for (unsigned i = 1; i < t->fail_streak && delay < RETRY_MAX_MS; i++)
		delay *= 2;
	if (delay > RETRY_MAX_MS)
		delay = RETRY_MAX_MS;
	if (t->fail_streak <= 3 || t->fail_streak % 10 == 0)
		log_warnx("conntrack dump failed (%s), %u in a row: nothing "
			  "removed; dumping again in %.1f s",
			  tracker_errname(err), t->fail_streak, delay / 1e3);
	tracker_open_gap(t, reason, t->initial_done ? t->exact_ms : now, now);
	t->retry_ms = now + delay;
	t->force_full = 1;
}

/* A routine dump found ghosts: a mismatch, and a gap over the time they
 * may have been shown (since the previous complete dump checked them),
 * already repaired. */
static void tracker_audit_ghosts(struct tracker *t, const struct ledger_sweep *sw,
				 uint64_t ghosts, int64_t now)
{
	struct store_gap_row g;

	t->audit_mismatches++;
	t->dump_ghosts += ghosts;
	log_warnx("audit: the re-dump found %llu tracked entries (%llu "
		  "mappings, %llu other) that the kernel no longer has, though "
		  "no event said they ended and none was lost; removed",
		  (unsigned long long)ghosts,
		  (unsigned long long)(sw->mappings - sw->mappings_silent),
		  (unsigned long long)(sw->others - sw->others_silent));
	memset(&g, 0, sizeof(g));
	g.run_started_ms = t->run_started_ms;
	g.seq = ++t->gap_seq;
	g.start_ms = t->verified_ms ? t->verified_ms : t->run_started_ms;
	g.end_ms = now;
	g.events_lost = 0;
	g.removed = ghosts;
	snprintf(g.reason, sizeof(g.reason), "audit");
	tracker_queue_gap(t, &g);
}

void tracker_dump_end(struct tracker *t, int err, uint64_t drops_total,
		      double cpu_s, int64_t now)
{
	struct ledger_sweep sw;
	uint64_t ghosts;
	int hist_start = 0;

	tracker_flush(t);
	tracker_drops_to(t, drops_total);
	if (!t->dumping)
		return;
	if (err) {
		t->resync_failed++;
		tracker_dump_failed(t, err, "dump-error", now);
		return;
	}
	t->fail_streak = 0;
	t->maplog.sweep_ms = now; /* maplog: swept mappings end, uncertain */
	t->rs_removed = ledger_resync_end(t->ledger, &sw);
	t->dumping = 0;
	t->resyncs++;
	t->last_done_ms = now;
	t->last_duration_us = (now - t->dump_started_ms) * 1000;
	if (t->last_duration_us < 0)
		t->last_duration_us = 0;
	store_resync_hist_observe(&t->resync_hist, t->last_duration_us);
	t->last_cpu = cpu_s;
	t->last_entries = t->rs_entries;
	t->last_added = t->rs_added;
	t->last_changed = t->rs_changed;
	t->last_removed = t->rs_removed;
	if (!t->initial_done) {
		t->initial_done = 1;
		hist_start = 1;
		t->hist_ms = now; /* history starts with the first figures */
		t->write_wanted = 1; /* the first figures, without waiting */
		log_info("initial dump: %llu entries in %.3f s",
			 (unsigned long long)t->rs_entries,
			 t->last_duration_us / 1e6);
	} else {
		/* a repair is news; a routine re-dump is not */
		void (*say)(const char *, ...) = t->gap_open ? log_info : log_debug;

		say("%s: %llu entries in %.3f s; %llu added, %llu removed, "
		    "%llu changed, %llu other entries removed",
		    t->gap_open ? "resync" : "reconcile",
		    (unsigned long long)t->rs_entries,
		    t->last_duration_us / 1e6, (unsigned long long)t->rs_added,
		    (unsigned long long)t->rs_removed,
		    (unsigned long long)t->rs_changed,
		    (unsigned long long)sw.others);
	}
	/* Swept although the kernel reports them and no loss was seen: the
	 * figures held entries that did not exist.  (The feeder ends a dump
	 * only after a barrier, so no DESTROY for them was still queued.) */
	ghosts = sw.mappings - sw.mappings_silent + sw.others - sw.others_silent;
	if (ghosts && t->dump_clean && !t->dump_lossy &&
	    t->drops == t->drops_at_dump) {
		tracker_audit_ghosts(t, &sw, ghosts, now);
		t->write_wanted = 1;
	}
	if (t->gap_open) {
		t->gap.added += t->rs_added;
		t->gap.removed += t->rs_removed;
		t->gap.changed += t->rs_changed;
	}
	/* Drops during the dump, reported or not, make its result
	 * untrustworthy: another resync follows at once. */
	if (t->drops != t->drops_at_dump && !t->dump_lossy)
		tracker_open_gap(t, "drops", t->exact_ms, now);
	if (t->dump_lossy || t->drops != t->drops_at_dump) {
		t->dump_wanted = 1;
		return;
	}
	tracker_schedule(t, now);
	if (t->gap_open) {
		t->gap.end_ms = now;
		/* unknown stays unknown when no drop was counted (tracker_gap) */
		if (t->gap.events_lost >= 0 || t->drops != t->gap_drops_base)
			t->gap.events_lost =
				(int64_t)(t->drops - t->gap_drops_base);
		t->drops_accounted = t->drops;
		tracker_queue_gap(t, &t->gap);
		t->gap_open = 0;
		t->write_wanted = 1; /* exact again: show it without waiting */
		if (t->gap.events_lost >= 0)
			log_info("gap %u (%s) closed: %lld events lost, "
				 "repaired in %.3f s", t->gap.seq, t->gap.reason,
				 (long long)t->gap.events_lost,
				 (t->gap.end_ms - t->gap.start_ms) / 1e3);
		else
			log_info("gap %u (%s) closed after %.3f s", t->gap.seq,
				 t->gap.reason,
				 (t->gap.end_ms - t->gap.start_ms) / 1e3);
	}
	/* history starts now: a gap this dump closed was before it */
	if (hist_start)
		t->hist_inexact = t->gap_open;
	t->exact_ms = now;
	t->verified_ms = t->dump_started_ms;
	t->ghost_runs = t->miss_runs = 0;
}

unsigned tracker_due(struct tracker *t, int64_t now, int64_t *wake)
{
	unsigned due = 0;
	int64_t next = INT64_MAX;

	tracker_flush(t);
	if (t->dumping && t->dump_clean && !t->gap_open && !t->dump_wanted &&
	    t->follow != STORE_FOLLOW_DUMPS && tracker_busy(t, now)) {
		/* A routine re-dump that a storm overtook gives way: it
		 * would compete with reading the events (and, with the table
		 * growing under it, hardly end).  Nothing is swept; it runs
		 * again once the table is quiet.  A repair never yields. */
		ledger_resync_abort(t->ledger);
		t->dumping = 0;
		t->dump_due_ms = now + tracker_interval_ms(t);
		log_debug("routine re-dump given up: events pour in");
		due |= TRACKER_ABANDON;
	}
	if (t->dumping) {
		int64_t stall = t->cfg.stall_ms > 0 ? t->cfg.stall_ms : STALL_MS;

		/* Past the limit the dump is only suspected: the loop may
		 * not have run (a SIGSTOP, a starved thread) while the
		 * reader had data all along.  It is abandoned if the loop,
		 * running again, still sees no progress a moment later. */
		if (now - t->dump_progress_ms >= stall && !t->stall_seen_ms) {
			t->stall_seen_ms = now;
			next = now + STALL_CONFIRM_MS;
		} else if (now - t->dump_progress_ms >= stall &&
			   now - t->stall_seen_ms < STALL_CONFIRM_MS) {
			next = t->stall_seen_ms + STALL_CONFIRM_MS;
		} else if (now - t->dump_progress_ms >= stall) {
			t->resync_abandoned++;
			log_warnx("conntrack dump made no progress for %.1f s: "
				  "abandoned", (now - t->dump_progress_ms) / 1e3);
			tracker_dump_failed(t, ETIMEDOUT, "dump-stall", now);
			due |= TRACKER_ABANDON;
		} else {
			next = t->dump_progress_ms + stall;
		}
	}
	if (!t->dumping) {
		int64_t at = INT64_MAX;

		if (t->dump_wanted)
			at = t->retry_ms ? t->retry_ms : now;
		/* A routine re-dump (silent entries, the audit) waits while
		 * events pour in: it would compete with reading them and make
		 * the queue overflow.  A repair does not wait. */
		if (t->dump_due_ms && t->dump_due_ms < at &&
		    !(t->follow != STORE_FOLLOW_DUMPS && tracker_busy(t, now)))
			at = t->dump_due_ms;
		if (t->retry_ms && at < t->retry_ms)
			at = t->retry_ms; /* a backoff holds routine dumps too */
		if (at <= now)
			due |= TRACKER_DUMP;
		else if (at < next)
			next = at;
	}
	if (!t->dumping && !t->gap_open && t->initial_done &&
	    t->follow != STORE_FOLLOW_DUMPS && !t->sample_active) {
		struct ledger_stats st;

		ledger_get_stats(t->ledger, &st);
		if (st.mappings_nat + st.mappings_local > 0) {
			if (t->next_sample_ms <= now)
				due |= TRACKER_SAMPLE;
			else if (t->next_sample_ms < next)
				next = t->next_sample_ms;
		}
	}
	if (t->write_wanted)
		due |= TRACKER_WRITE;
	if (wake)
		*wake = next;
	return due;
}

void tracker_written(struct tracker *t)
{
	t->write_wanted = 0;
}

/* ---- the self-audit ---- */

void tracker_audit_count(struct tracker *t, int64_t kernel_count,
			 uint64_t window, int64_t now)
{
	struct ledger_stats st;
	uint64_t tracked, miss_tol, ghost_tol;
	int64_t diff;

	tracker_flush(t);
	if (!t->initial_done || t->dumping || t->gap_open || t->dump_wanted ||
	    t->follow == STORE_FOLLOW_DUMPS || kernel_count < 0)
		return;
	ledger_get_stats(t->ledger, &st);
	tracked = st.mappings_nat + st.mappings_local + st.entries_other;
	diff = kernel_count - (int64_t)tracked;
	/* The kernel's count also holds entries not yet confirmed (a packet
	 * in flight) or not yet freed after their DESTROY: a few, more on a
	 * big table.  Silent entries may have ended without a word. */
	miss_tol = window + 16 + (uint64_t)kernel_count / 1000;
	ghost_tol = window + 8 + st.mappings_silent;
	t->audit_checks++;
	t->audit_last_ms = now;
	t->audit_kernel = kernel_count;
	t->audit_tracked = tracked;
	t->audit_difference = diff;
	t->audit_tolerance = diff < 0 ? ghost_tol : miss_tol;
	t->ghost_runs = diff < 0 && (uint64_t)-diff > ghost_tol ?
				t->ghost_runs + 1 : 0;
	t->miss_runs = diff > 0 && (uint64_t)diff > miss_tol ?
			       t->miss_runs + 1 : 0;
	if (t->ghost_runs >= AUDIT_GHOST_RUNS || t->miss_runs >= AUDIT_MISS_RUNS) {
		t->audit_mismatches++;
		log_warnx("audit: the kernel has %lld conntrack entries, natscope "
			  "tracks %llu (%llu nat, %llu local, %llu other): %s of "
			  "%llu beyond the %llu that changes in flight explain, "
			  "%u audits running; resyncing",
			  (long long)kernel_count, (unsigned long long)tracked,
			  (unsigned long long)st.mappings_nat,
			  (unsigned long long)st.mappings_local,
			  (unsigned long long)st.entries_other,
			  diff < 0 ? "an excess" : "a shortfall",
			  (unsigned long long)(diff < 0 ? -diff : diff),
			  (unsigned long long)t->audit_tolerance,
			  diff < 0 ? t->ghost_runs : t->miss_runs);
		t->ghost_runs = t->miss_runs = 0;
		tracker_open_gap(t, "audit", t->exact_ms, now);
		return;
	}
	/* Fewer entries than we track, within what silent ones explain:
	 * some of them ended, and the figures are known to be too high.
	 * Re-dump sooner, as a larger budget allows (DEAD_SILENT_BUDGET). */
	if (diff < 0 && (uint64_t)-diff > window + 8 && st.mappings_silent &&
	    t->dump_due_ms > now) {
		double budget = tracker_dump_budget(t) > DEAD_SILENT_BUDGET ?
					tracker_dump_budget(t) : DEAD_SILENT_BUDGET;
		int64_t soonest = t->last_done_ms +
				  (int64_t)(t->last_cpu / budget * 1000);

		t->dump_due_ms = soonest > now ? soonest : now;
	}
}

unsigned tracker_sample_begin(struct tracker *t, struct ledger_mapping *out,
			      unsigned n, int64_t now)
{
	unsigned k = 0;

	tracker_flush(t);
	if (n > TRACKER_SAMPLE_MAX)
		n = TRACKER_SAMPLE_MAX;
	/* last round's "not found" answers first, then the rotation */
	memset(t->suspect, 0, sizeof(t->suspect));
	for (; k < t->n_next_suspects && k < n; k++) {
		t->sample[k] = t->next_suspects[k];
		t->suspect[k] = 1;
	}
	t->n_next_suspects = 0;
	n = k + ledger_sample(t->ledger, &t->cursor, t->sample + k, n - k);
	memset(t->probe_fp, 0, sizeof(t->probe_fp));
	memset(t->touched, 0, sizeof(t->touched));
	for (unsigned i = 0; i < n; i++) {
		uint64_t fp = ledger_fingerprint(t->ledger, &t->sample[i]);
		uint32_t j = (uint32_t)fp & (PROBE_SLOTS - 1);

		while (t->probe_fp[j])
			j = (j + 1) & (PROBE_SLOTS - 1);
		t->probe_fp[j] = fp;
		t->probe_idx[j] = (uint16_t)i;
		out[i] = t->sample[i];
	}
	t->sample_n = n;
	t->sample_active = n > 0;
	t->sample_lossy = 0;
	t->sample_ghosts_now = 0;
	return n;
}

void tracker_sample_result(struct tracker *t, unsigned i,
			   const struct ct_entry *e, int64_t now)
{
	struct ledger_mapping have, got;
	enum ns_kind kind;

	tracker_flush(t);
	if (!t->sample_active || t->sample_lossy || i >= t->sample_n ||
	    t->touched[i])
		return; /* an event came since the question: no verdict */
	if (!ledger_lookup(t->ledger, &t->sample[i], &have))
		return;
	t->sampled++;
	if (!e) {
		if (have.silent) {
			ledger_remove(t->ledger, &have);
			mapbuf_end(&t->maplog, &have, 0, now, /* maplog */
				   STORE_MAPLOG_END_UNCERTAIN);
			t->sample_silent_gone++; /* how silent ones end */
		} else if (t->suspect[i]) {
			/* not there twice, rounds apart, and still no event */
			ledger_remove(t->ledger, &have);
			mapbuf_end(&t->maplog, &have, 0, now, /* maplog */
				   STORE_MAPLOG_END_UNCERTAIN);
			t->sample_ghosts++;
			t->sample_ghosts_now++;
		} else if (t->n_next_suspects < SUSPECTS_MAX) {
			/* The kernel hides an entry from GETs once it is dying,
			 * a moment before its DESTROY is queued: ask again next
			 * round, by when that event will have come. */
			t->next_suspects[t->n_next_suspects++] = have;
		}
		return;
	}
	kind = classify_entry(e, t->la, &got);
	got.kind = (uint8_t)kind;
	if (kind == NS_KIND_OTHER)
		got.kind = have.kind; /* classified once */
	if (memcmp(got.host_ip, have.host_ip, 16) != 0 ||
	    (have.proto == IPPROTO_TCP &&
	     got.tcp_state != NS_TCP_STATE_UNKNOWN &&
	     got.tcp_state != have.tcp_state)) {
		int host_moved = memcmp(got.host_ip, have.host_ip, 16) != 0;

		t->sample_changed++;
		if (ledger_upsert(t->ledger, &got, have.silent ? LEDGER_DUMP :
								 LEDGER_EVENT) < 0)
			tracker_ledger_error(t, now);
		else if (!host_moved && ledger_state_changed(t->ledger))
			/* maplog: found in another state */
			mapbuf_state(&t->maplog, &got, now,
				     STORE_MAPLOG_STATE_SEEN);
		if (host_moved && !have.silent) {
			/* another entry holds this tuple now, and no event
			 * said the first one ended */
			t->sample_ghosts++;
			t->sample_ghosts_now++;
		}
	}
}

void tracker_sample_end(struct tracker *t, double cpu_s, int64_t now)
{
	int64_t wait;

	tracker_flush(t);
	if (!t->sample_active)
		return;
	t->sample_active = 0;
	if (t->sample_ghosts_now) {
		t->audit_mismatches++;
		log_warnx("audit: %u of %u sampled mappings are not in the "
			  "kernel although no event said they ended; resyncing",
			  t->sample_ghosts_now, t->sample_n);
		tracker_open_gap(t, "audit", t->exact_ms, now);
	}
	/* pace: the sampler's CPU over the time until the next sample stays
	 * within its budget */
	wait = (int64_t)(cpu_s / tracker_sample_budget(t) * 1000);
	if (wait < SAMPLE_MIN_GAP_MS)
		wait = SAMPLE_MIN_GAP_MS;
	t->next_sample_ms = now + wait;
	tracker_update_follow(t);
}

/* ---- state and snapshots ---- */

enum store_state tracker_state(const struct tracker *t)
{
	if (!t->initial_done)
		return STORE_STATE_STARTING;
	if (t->gap_open)
		return STORE_STATE_RESYNCING;
	return STORE_STATE_RUNNING;
}

static void tracker_fill_status(struct tracker *t, struct store_status *s,
				int64_t as_of)
{
	struct ledger_stats ls;

	ledger_get_stats(t->ledger, &ls);
	store_status_init(s);
	s->started_ms = t->run_started_ms;
	s->interval_s = t->cfg.interval_s;
	s->state = (uint8_t)tracker_state(t);
	s->follow = (uint8_t)t->follow;
	/* following by dumps, the figures are as of the last one */
	s->as_of_ms = t->follow == STORE_FOLLOW_DUMPS && t->last_done_ms
			      ? t->last_done_ms : as_of;
	s->mappings_nat = ls.mappings_nat;
	s->mappings_local = ls.mappings_local;
	s->mappings_other = ls.entries_other;
	s->mappings_silent = ls.mappings_silent;
	s->gateways = ls.gateways;
	s->hosts = ls.hosts;
	s->destinations = ls.destinations;
	s->events_new = t->ev_new;
	s->events_update = t->ev_update;
	s->events_destroy = t->ev_destroy;
	s->events_dumped = t->ev_dumped;
	s->events_unknown_destroy = t->ev_unknown_destroy;
	s->events_malformed = t->ev_malformed;
	s->events_lost = t->drops;
	s->events_enobufs = t->enobufs;
	s->resync_count = t->resyncs;
	s->resync_active = (uint8_t)t->dumping;
	s->resync_last_started_ms = t->resyncs || t->dumping ?
					    t->dump_started_ms : 0;
	s->resync_last_done_ms = t->resyncs ? t->last_done_ms : 0;
	s->resync_last_duration_us = t->resyncs ? t->last_duration_us : -1;
	store_resync_hist_status(s, &t->resync_hist);
	s->resync_last_entries = t->last_entries;
	s->resync_last_added = t->last_added;
	s->resync_last_removed = t->last_removed;
	s->resync_last_changed = t->last_changed;
	s->resync_failed = t->resync_failed;
	s->resync_abandoned = t->resync_abandoned;
	s->audit_checks = t->audit_checks;
	s->audit_mismatches = t->audit_mismatches;
	s->audit_last_ms = t->audit_last_ms;
	s->audit_kernel_entries = t->audit_checks ? t->audit_kernel : -1;
	s->audit_tracked_entries = t->audit_tracked;
	s->audit_difference = t->audit_checks ? t->audit_difference
					      : STORE_UNKNOWN;
	s->audit_tolerance = t->audit_tolerance;
	s->audit_sampled = t->sampled;
	s->audit_sample_ghosts = t->sample_ghosts;
	s->audit_dump_ghosts = t->dump_ghosts;
	s->audit_sample_changed = t->sample_changed;
	s->audit_sample_silent_gone = t->sample_silent_gone;
	s->audit_cycle_s = t->cycle_s > 0 ? t->cycle_s : -1;
	if (t->have_ks) {
		s->conntrack_count = t->ks.count;
		s->conntrack_max = t->ks.max;
		s->conntrack_insert_failed = t->ks.insert_failed;
		s->conntrack_drop = t->ks.drop;
		s->conntrack_early_drop = t->ks.early_drop;
		s->conntrack_clash_resolve = t->ks.clash_resolve;
		s->sysctl_port_range_lo = t->ks.port_lo;
		s->sysctl_port_range_hi = t->ks.port_hi;
		s->sysctl_tcp_tw_reuse = t->ks.tcp_tw_reuse;
		s->sysctl_tcp_fin_timeout = t->ks.tcp_fin_timeout;
		s->sysctl_tcp_timeout_time_wait = t->ks.tcp_timeout_time_wait;
		s->sysctl_conntrack_events = t->ks.events;
		s->process_rss_bytes = t->ks.rss_bytes;
		s->process_cpu_seconds = t->ks.cpu_seconds;
	}
}

/* The history of the period since the last snapshot: the ledger's peaks
 * and counts (with each gateway's top hosts and buckets), whether the
 * figures were exact all along. */
static void tracker_history(struct tracker *t, struct store_batch *b,
			    int64_t as_of)
{
	struct store_history *h = &b->hist;

	if (!t->initial_done || !t->hist_ms || as_of <= t->hist_ms)
		return;
	h->start_ms = t->hist_ms;
	h->end_ms = as_of;
	h->exact = !t->hist_inexact && !t->gap_open;
	h->state = h->exact ? STORE_STATE_RUNNING : STORE_STATE_RESYNCING;
	if (ledger_history(t->ledger, b, t->cfg.hist_top ? t->cfg.hist_top : 10,
			   t->range_size) < 0) {
		log_warn("history of the last interval");
		h->start_ms = h->end_ms = 0; /* its peaks go to the next */
		return;
	}
	t->hist_ms = as_of;
	t->hist_inexact = t->gap_open;
}

int tracker_snapshot(struct tracker *t, struct store_batch *b, int need_full,
		     int64_t now, int64_t as_of)
{
	int rc = 0;

	tracker_flush(t);
	if (need_full) {
		/* the last batch may not have landed: its gaps go again */
		for (unsigned i = 0; i < t->n_inflight; i++) {
			unsigned j;

			for (j = 0; j < t->n_pending; j++)
				if (t->pending[j].seq == t->inflight[i].seq)
					break;
			if (j == t->n_pending)
				tracker_queue_gap(t, &t->inflight[i]);
		}
	}
	if (!t->range_size[LEDGER_RANGE_NAT_HIGH])
		tracker_ranges(t);
	b->full = 0;
	tracker_history(t, b, as_of);
	if (ledger_snapshot(t->ledger, b, need_full || t->force_full,
			    t->range_size) < 0) {
		log_warn("snapshot");
		store_batch_clear(b);
		b->full = 0;
		t->force_full = 1;
		rc = -1;
	} else {
		t->force_full = 0;
	}
	for (unsigned i = 0; i < t->n_pending; i++) {
		struct store_gap_row *g = store_batch_add_gap(b);

		if (g)
			*g = t->pending[i];
	}
	memcpy(t->inflight, t->pending, t->n_pending * sizeof(t->pending[0]));
	t->n_inflight = t->n_pending;
	t->n_pending = 0;
	tracker_update_follow(t);
	(void)now;
	mapbuf_hand(&t->maplog, b); /* maplog */
	tracker_fill_status(t, &b->status, as_of);
	return rc;
}

void tracker_stats(const struct tracker *t, struct ledger_stats *st)
{
	ledger_get_stats(t->ledger, st);
}

/* ---- lifetime ---- */

struct tracker *tracker_new(const struct tracker_config *cfg, int64_t now)
{
	struct tracker *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->cfg = *cfg;
	if (t->cfg.interval_s < 1)
		t->cfg.interval_s = 1;
	t->ledger = ledger_new();
	if (!t->ledger) {
		free(t);
		errno = ENOMEM;
		return NULL;
	}
	t->run_started_ms = now;
	t->events = -1;
	t->dump_wanted = 1; /* the start-up dump */
	t->force_full = 1;
	tracker_ranges(t);
	mapbuf_init(&t->maplog); /* maplog */
	ledger_set_sweep_hook(t->ledger, mapbuf_sweep_hook, &t->maplog);
	return t;
}

void tracker_set_localaddr(struct tracker *t, const struct localaddr *la)
{
	t->la = la;
}

void tracker_free(struct tracker *t)
{
	if (!t)
		return;
	ledger_free(t->ledger);
	mapbuf_free(&t->maplog); /* maplog */
	free(t);
}
