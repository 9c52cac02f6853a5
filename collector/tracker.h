/*
 * tracker.h - the conntrack model: what natscope knows of the table and
 * how sure it is.  It owns the ledger and decides everything about
 * correctness - resyncs and their outcome, gaps, how the table is
 * followed (events, re-dumps), the self-audit - from what it is fed:
 * entries with their source and time, losses, the kernel's figures.  It
 * knows no sockets and no clocks: collector.c (the live loop) feeds it
 * from netlink, the importer from captures with their own timestamps, the
 * unit tests from scripts.
 *
 * The protocol with whoever feeds it:
 *  - tracker_entry() for every event and dump record, in the order read.
 *  - tracker_quiet() whenever the event queue was seen empty.  Before a
 *    dump, a count audit or the verdict of a sample, the feeder drains the
 *    event queue until it is empty with the kernel's drop counter
 *    unchanged since just before the drain (a "barrier"): then every event
 *    the kernel produced before that moment has been applied, and the
 *    dump's records are all newer than every event applied before
 *    tracker_dump_begin().  This is what makes a resync exact whatever the
 *    backlog (see tracker.c).
 *  - tracker_due() says what is due: a dump, a sample, a write.
 *
 * Times are milliseconds since the Unix epoch, as the caller's clock says.
 * Single-threaded.
 */
#ifndef NATSCOPE_TRACKER_H
#define NATSCOPE_TRACKER_H

#include <stddef.h>
#include <stdint.h>

#include "collector/ctmsg.h"
#include "collector/kstat.h"
#include "collector/ledger.h"
#include "store/store.h"

struct localaddr;
struct tracker;

struct tracker_config {
	unsigned interval_s; /* snapshot interval, >= 1 */
	/* Share of one core the re-dumps may take to follow silent entries
	 * (0: the default, 3.5%), and the sampler (0: the default, 1%). */
	double dump_budget, sample_budget;
	int64_t stall_ms; /* a dump without progress this long is abandoned
			     (0: the default, 10 s) */
	unsigned hist_top; /* history: hosts and buckets per gateway and
			      period, by peak and by rate (0: 10) */
};

/* A new tracker with an empty ledger, wanting its first dump.  now is the
 * start of the run (it keys the gap log).  NULL with ENOMEM. */
struct tracker *tracker_new(const struct tracker_config *cfg, int64_t now);
void tracker_free(struct tracker *t);

/* This host's addresses, for classifying (may be NULL: nothing is local).
 * Not owned. */
void tracker_set_localaddr(struct tracker *t, const struct localaddr *la);

/* One entry read from the kernel: an event (CTMSG_NEW/UPDATE/DESTROY) or
 * a dump record (CTMSG_DUMP, only between tracker_dump_begin() and _end()).
 * Entries are batched for speed; every other call applies the batch
 * first. */
void tracker_entry(struct tracker *t, const struct ct_entry *e, int64_t now);

/* Counts a message the parser rejected (logged sparingly). */
void tracker_malformed(struct tracker *t, const char *where);

/* NEW and DESTROY events applied so far: the feeder takes the difference
 * across a barrier as the count audit's window. */
uint64_t tracker_changes(struct tracker *t);

/* The event queue was read and events were still waiting (the reader
 * stopped after its batch limit): routine re-dumps wait while this lasts
 * (until tracker_quiet()). */
void tracker_backlog(struct tracker *t, int64_t now);

/* The event queue was seen empty; drops_total is the kernel's count of
 * events dropped for us, read after the read that found it empty (so a
 * count equal to the last one means nothing was dropped before that
 * read).  A count above the last one is a loss (gap, resync). */
void tracker_quiet(struct tracker *t, uint64_t drops_total, int64_t now);

/* Events were lost (reason: "enobufs", "truncated", ...): opens or extends
 * a gap and wants a resync.  drops_total as above. */
void tracker_lost(struct tracker *t, const char *reason, uint64_t drops_total,
		  int64_t now);

/* The figures are not known exact from the last moment they were (or
 * now) for a reason the feeder knows and no loss counter shows: the
 * importer's "skipped" (a malformed record) and "no-listing" (events with
 * no table before them).  Opens or extends a gap, like a loss, which a
 * complete dump closes. */
void tracker_gap(struct tracker *t, const char *reason, int64_t now);

/* The kernel's figures, every interval: sysctls (nf_conntrack_events
 * changes switch how the table is followed), statistics, port range. */
void tracker_kstat(struct tracker *t, const struct kstat *ks, int64_t now);

enum tracker_due {
	TRACKER_DUMP = 1,    /* barrier, then tracker_dump_begin() */
	TRACKER_ABANDON = 2, /* the running dump was abandoned: reset it */
	TRACKER_SAMPLE = 4,  /* a sample of mappings is due */
	TRACKER_WRITE = 8,   /* write a snapshot now (figures became exact) */
};

/* What is due at now (enum tracker_due bits).  Returns TRACKER_ABANDON
 * once, after ending the stalled dump as failed.  *wake (may be NULL)
 * gets the next time something will be due without new input, or
 * INT64_MAX. */
unsigned tracker_due(struct tracker *t, int64_t now, int64_t *wake);

/* The write is done (clears TRACKER_WRITE). */
void tracker_written(struct tracker *t);

/* A dump was requested after a barrier; drops_total as read before the
 * barrier's last read. */
void tracker_dump_begin(struct tracker *t, uint64_t drops_total, int64_t now);

/* A chunk of the running dump arrived (the watchdog's idea of progress). */
void tracker_dump_progress(struct tracker *t, int64_t now);

/* The dump ended: err 0 when complete (NLMSG_DONE), else the errno of its
 * failure - then nothing is swept, a gap is opened ("dump-error") and the
 * dump is retried with a backoff.  cpu_s is what it cost. */
void tracker_dump_end(struct tracker *t, int err, uint64_t drops_total,
		      double cpu_s, int64_t now);

/* Whether a dump is running. */
int tracker_dumping(const struct tracker *t);

/* The count audit: kernel_count is the kernel's entry count read before a
 * barrier, window the tracker_changes() applied between that read and the
 * barrier.  Skipped while the figures are known not exact. */
void tracker_audit_count(struct tracker *t, int64_t kernel_count,
			 uint64_t window, int64_t now);

#define TRACKER_SAMPLE_MAX 256

/* Picks up to n (<= TRACKER_SAMPLE_MAX) mappings to verify against the
 * kernel, in turn over the whole ledger, into out[].  Events for them are
 * watched until tracker_sample_end().  Returns how many. */
unsigned tracker_sample_begin(struct tracker *t, struct ledger_mapping *out,
			      unsigned n, int64_t now);

/* The kernel's answer for out[i] of the sample, given after a barrier that
 * followed the requests: its entry, or NULL when it has none. */
void tracker_sample_result(struct tracker *t, unsigned i,
			   const struct ct_entry *e, int64_t now);

/* The sample is judged; cpu_s is what asking cost (paces the next). */
void tracker_sample_end(struct tracker *t, double cpu_s, int64_t now);

/* starting, running or resyncing. */
enum store_state tracker_state(const struct tracker *t);

/* Fills b: the rows that changed (all if need_full or after an error),
 * the gap rows not yet written (again, if need_full: the last batch may
 * not have landed) and the status fields the tracker knows.  as_of is the
 * moment the figures are true at: the last time every event the kernel
 * had produced was applied (a barrier); following by dumps, the last
 * dump's end instead.  Returns 0, or -1 with ENOMEM (the next snapshot
 * will be full). */
int tracker_snapshot(struct tracker *t, struct store_batch *b, int need_full,
		     int64_t now, int64_t as_of);

/* The ledger's figures (tests, the importer). */
void tracker_stats(const struct tracker *t, struct ledger_stats *st);

#endif
