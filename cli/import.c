/*
 * import.c - natscope import: builds or extends a database from captures
 * users already have (capture.h reads them all; the format is detected).
 *
 * The captures are fed to the tracker the live collector uses, in capture
 * time, and its snapshots are written through the same path
 * (tracker_snapshot -> store_batch -> store_write), so an import fills
 * whatever a live run fills.  Every time is the capture's, never the wall
 * clock's:
 *  - a listing (conntrack -L in any output, /proc/net/nf_conntrack) is the
 *    whole table at one moment, --at or else the file's mtime: it is fed
 *    as a table dump at that moment (entries the tracker held that it
 *    lacks are gone);
 *  - an event log (conntrack -E) is applied event by event at the times
 *    it shows (untimed events take the moment of the file, as a listing),
 *    and a snapshot is written at every --interval boundary of capture
 *    time.
 * Several captures are merged by time: a listing taken while an event log
 * ran lands among its events.  A last snapshot is written at the last
 * moment the captures show, with state "stopped" and status.note saying
 * it was imported, so that no answer shows it as a live run.
 *
 * Not known exact is said, never hidden: a malformed record skipped opens
 * a gap ("skipped"), and so does an event log that no listing precedes
 * ("no-listing": what existed before its first event is unknown) - until
 * a later listing, fed as a dump, closes it like a resync.
 *
 * All of it is one transaction (store_tx_begin): a failure (a read error,
 * a full disk) leaves the database as it was, and a database the import
 * created is removed.
 */
#include "cli/cli.h"
#include "collector/capture.h"
#include "collector/localaddr.h"
#include "collector/tracker.h"
#include "common/common.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_INTERVAL 5

static void import_usage(FILE *f)
{
	fputs("usage: natscope import --db FILE [options] CAPTURE...\n"
	      "\n"
	      "Builds or extends a natscope database from conntrack captures:\n"
	      "conntrack -L (plain, -o extended, -o xml), /proc/net/nf_conntrack,\n"
	      "conntrack -E (-o timestamp for times; text or -o xml).  The format\n"
	      "is detected.  Malformed records are reported as FILE:LINE and\n"
	      "skipped, and the figures say they are not exact; on any other\n"
	      "failure nothing is written.\n"
	      "\n"
	      "options:\n"
	      "  --db FILE             the database, created if missing (required)\n"
	      "  --at TIME             when a listing (or an untimed event log)\n"
	      "                        was taken: RFC 3339 or unix seconds\n"
	      "                        (default: the file's modification time)\n"
	      "  --interval SECONDS    snapshot every SECONDS of capture time in\n"
	      "                        event logs, 1-3600 (default 5)\n"
	      "  --local ADDR          an address of the captured host, so that its\n"
	      "                        own connections count as local (repeatable)\n"
	      "  --port-range LO-HI    the captured host's ip_local_port_range, the\n"
	      "                        capacity of its own connections' buckets\n"
	      "                        (default: unknown, taken as the kernel's\n"
	      "                        default 32768-60999)\n"
	      "  --strict              a malformed record fails the import\n"
	      "  -v, --verbose         debug logging\n"
	      "  -h, --help            this text\n",
	      f);
}

struct import_src {
	const char *path;
	FILE *f;
	struct capture *c;
	int listing;	  /* a whole table at one moment */
	int64_t file_ms;  /* --at or the mtime */
	int done;
	/* events: the record to apply next, at cur_ms */
	struct capture_record cur;
	int have;
	int64_t cur_ms;
	int timed; /* an event showed its time */
	int listing_seen; /* a listing was applied while this log ran */
	unsigned long skipped, applied;
	int fatal; /* errno of a read error, 0 if none */
};

struct import {
	struct store *st;
	struct tracker *t;
	struct store_batch b;
	int need_full, strict;
	unsigned interval_s;
	int64_t next_ms;      /* the next snapshot boundary */
	int64_t last_ms;      /* the last moment applied */
	int64_t listing_ms;   /* the last listing's moment, 0: none yet */
	unsigned long applied, since_snapshot, skipped, snapshots;
	int gap_said;	      /* a no-listing gap is open */
	char note[STORE_TEXT_MAX];
	struct import_src *src;
	int n_src;
};

static int import_is_listing(enum capture_format f)
{
	return f == CAPTURE_LIST || f == CAPTURE_LIST_EXTENDED ||
	       f == CAPTURE_LIST_XML || f == CAPTURE_PROC;
}

/* A malformed record: said as FILE:LINE: what, counted; with a tracker,
 * the figures are marked not exact from now on. */
static void import_skipped(struct import *im, struct import_src *s,
			   int64_t now)
{
	fprintf(stderr, "%s\n", capture_error(s->c));
	s->skipped++;
	im->skipped++;
	if (im->t)
		tracker_gap(im->t, "skipped", now);
}

/* Reads the next record of an event log into s->cur.  Returns 1, 0 at
 * its end, -1 on a read error (s->fatal).  Malformed records are skipped
 * (im->t may still be NULL while priming: the caller accounts them). */
static int import_read(struct import *im, struct import_src *s)
{
	for (;;) {
		int rc = capture_next(s->c, &s->cur);

		if (rc == 1) {
			int64_t at = s->cur.ts_ms;

			/* an untimed event happened when the one before it
			 * did, or, in a log that shows no time, at the file's
			 * moment; a clock going back is applied in the log's
			 * order, at the time already reached */
			if (!s->timed && at >= 0)
				s->cur_ms = at;
			else if (at < 0 && !s->timed)
				s->cur_ms = s->file_ms;
			else if (at > s->cur_ms)
				s->cur_ms = at;
			s->timed |= at >= 0;
			s->have = 1;
			return 1;
		}
		if (rc == 0) {
			s->have = 0;
			s->done = 1;
			return 0;
		}
		if (errno != EBADMSG) {
			s->fatal = errno;
			log_warn("%s: reading", s->path);
			s->have = 0;
			s->done = 1;
			return -1;
		}
		import_skipped(im, s, s->timed ? s->cur_ms : s->file_ms);
		if (im->strict)
			return -1;
	}
}

/* Writes a snapshot of the tracker as of at.  Returns 0, or -1. */
static int import_snapshot(struct import *im, int64_t at, int final)
{
	struct store_status *s = &im->b.status;

	tracker_quiet(im->t, 0, at);
	store_batch_clear(&im->b);
	if (tracker_snapshot(im->t, &im->b, im->need_full, at, at) < 0)
		return -1;
	s->state = (uint8_t)(final ? STORE_STATE_STOPPED :
				     tracker_state(im->t));
	s->pid = 0; /* no process runs this */
	s->event_buffer_bytes = 0;
	s->process_rss_bytes = 0;
	s->process_cpu_seconds = -1;
	snprintf(s->note, sizeof(s->note), "%s", im->note);
	if (store_write(im->st, &im->b) < 0)
		return -1;
	tracker_written(im->t);
	im->need_full = 0;
	im->since_snapshot = 0;
	im->snapshots++;
	return 0;
}

/* Snapshots at every interval boundary up to t (capture time).  Over a
 * stretch where nothing happened, one snapshot at its last boundary
 * stands for all: the figures did not change. */
static int import_advance(struct import *im, int64_t t)
{
	int64_t iv = (int64_t)im->interval_s * 1000;

	while (t >= im->next_ms) {
		if (!im->since_snapshot && im->snapshots &&
		    t / iv * iv > im->next_ms)
			im->next_ms = t / iv * iv;
		if (import_snapshot(im, im->next_ms, 0) < 0)
			return -1;
		im->next_ms += iv;
	}
	return 0;
}

/* A listing: the whole table at s->file_ms, fed as a dump. */
static int import_listing(struct import *im, struct import_src *s)
{
	struct capture_record r;
	int64_t at = s->file_ms;
	int rc;

	tracker_dump_begin(im->t, 0, at);
	while ((rc = capture_next(s->c, &r)) != 0) {
		if (rc < 0 && errno == EBADMSG) {
			import_skipped(im, s, at);
			if (im->strict)
				return -1;
			continue;
		}
		if (rc < 0) {
			s->fatal = errno;
			log_warn("%s: reading", s->path);
			tracker_dump_end(im->t, s->fatal, 0, 0, at);
			return -1;
		}
		if (r.e.type != CTMSG_DUMP)
			continue;
		tracker_entry(im->t, &r.e, at);
		s->applied++;
		im->applied++;
		im->since_snapshot++;
	}
	tracker_dump_end(im->t, 0, 0, 0, at);
	s->done = 1;
	im->last_ms = im->listing_ms = at;
	/* logs that have shown an event by now ran while it was taken */
	for (int i = 0; i < im->n_src; i++)
		if (!im->src[i].listing && im->src[i].applied)
			im->src[i].listing_seen = 1;
	return 0;
}

/* One event of s at s->cur_ms, then reads the next. */
static int import_event(struct import *im, struct import_src *s)
{
	if (!s->applied && !s->listing_seen &&
	    (!im->listing_ms || im->listing_ms < s->cur_ms)) {
		/* No listing was taken while this log ran (it may have run
		 * since before its first event, but nothing shows it): what
		 * happened before its first event is unknown. */
		tracker_gap(im->t, "no-listing", s->cur_ms);
		im->gap_said = 1;
	}
	if (s->cur.e.type != CTMSG_DUMP) {
		tracker_entry(im->t, &s->cur.e, s->cur_ms);
		s->applied++;
		im->applied++;
		im->since_snapshot++;
	}
	im->last_ms = s->cur_ms;
	return import_read(im, s) < 0 ? -1 : 0;
}

/* The source whose next step comes first in capture time, or NULL. */
static struct import_src *import_pick(struct import_src *src, int n,
				      int64_t *t)
{
	struct import_src *best = NULL;

	*t = 0;
	for (int i = 0; i < n; i++) {
		struct import_src *s = &src[i];
		int64_t at;

		if (s->done || !s->c || (!s->listing && !s->have))
			continue;
		at = s->listing ? s->file_ms : s->cur_ms;
		if (!best || at < *t) {
			best = s;
			*t = at;
		}
	}
	return best;
}

/* Opens every capture, detects its format and reads an event log's first
 * record (its start).  Returns 0, or -1 (said). */
static int import_open_sources(struct import *im, struct import_src *src,
			       int n, int have_at, int64_t at_ms, int64_t *start)
{
	*start = INT64_MAX;
	for (int i = 0; i < n; i++) {
		struct import_src *s = &src[i];
		struct stat sb;
		enum capture_format fmt;

		s->f = fopen(s->path, "re");
		if (!s->f || fstat(fileno(s->f), &sb) < 0) {
			log_warn("%s", s->path);
			return -1;
		}
		if (S_ISDIR(sb.st_mode)) {
			log_warnx("%s: is a directory, not a capture", s->path);
			return -1;
		}
		s->file_ms = have_at ? at_ms :
			     (int64_t)sb.st_mtim.tv_sec * 1000 +
				     sb.st_mtim.tv_nsec / 1000000;
		s->c = capture_open(s->f, s->path, CAPTURE_AUTO);
		if (!s->c) {
			if (errno != EBADMSG) /* capture_open() said why */
				log_warn("%s: reading", s->path);
			return -1;
		}
		fmt = capture_format(s->c);
		if (fmt == CAPTURE_AUTO) {
			log_info("%s: empty: nothing to import", s->path);
			s->done = 1;
			continue;
		}
		s->listing = import_is_listing(fmt);
		log_info("%s: %s%s", s->path, capture_format_name(fmt),
			 s->listing && !have_at ? ", taken at the file's "
						  "modification time" : "");
		if (s->listing) {
			if (s->file_ms < *start)
				*start = s->file_ms;
			continue;
		}
		if (import_read(im, s) < 0)
			return -1;
		if (s->have && s->cur_ms < *start)
			*start = s->cur_ms;
		if (s->have && s->cur.ts_ms < 0)
			log_info("%s: events without times (capture with "
				 "conntrack -E -o timestamp): all are placed "
				 "at %s", s->path,
				 have_at ? "--at" : "the file's modification "
						    "time");
	}
	return 0;
}

static void import_note(struct import *im, const struct import_src *src,
			int n)
{
	char name[48], when[NS_TIME_STRLEN], copy[PATH_MAX];

	snprintf(copy, sizeof(copy), "%s", src[0].path);
	snprintf(name, sizeof(name), "%.40s", basename(copy));
	ns_time_format(ns_now_ms(), when);
	if (n > 1)
		snprintf(im->note, sizeof(im->note), "imported from %s and %d "
			 "more captures at %.24s: no live run", name,
			 n - 1 > 9999 ? 9999 : n - 1, when);
	else
		snprintf(im->note, sizeof(im->note), "imported from %s at %.24s: "
			 "no live run", name, when);
}

int cli_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "at", required_argument, NULL, 'a' },
		{ "interval", required_argument, NULL, 'i' },
		{ "local", required_argument, NULL, 'L' },
		{ "strict", no_argument, NULL, 's' },
		{ "port-range", required_argument, NULL, 'r' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *db = NULL;
	struct import im = { 0 };
	struct import_src *src = NULL;
	struct localaddr *la = NULL;
	struct tracker_config tcfg = { 0 };
	struct ledger_stats ls;
	int64_t at_ms = 0, start, t = 0;
	int opt, n = 0, have_at = 0, rc = 1, ok = 0, in_tx = 0, lo = -1, hi = -1;
	char c;
	struct ns_addr a;
	char when[NS_TIME_STRLEN];

	im.interval_s = DEFAULT_INTERVAL;
	if (!(la = localaddr_new())) {
		log_warn("import");
		return 1;
	}
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			db = optarg;
			break;
		case 'a':
			if (ns_time_parse(optarg, &at_ms) < 0) {
				fprintf(stderr, "natscope import: --at '%s': "
					"expected RFC 3339 (2026-12-02T14:02:00Z) "
					"or unix seconds\n", optarg);
				goto usage;
			}
			have_at = 1;
			break;
		case 'i':
			if (cli_parse_uint(optarg, 1, 3600, &im.interval_s) < 0) {
				fprintf(stderr, "natscope import: --interval "
					"'%s': expected whole seconds from 1 to "
					"3600\n", optarg);
				goto usage;
			}
			break;
		case 'L':
			if (ns_addr_parse(optarg, &a) < 0) {
				fprintf(stderr, "natscope import: --local '%s': "
					"expected an IPv4 or IPv6 address\n",
					optarg);
				goto usage;
			}
			if (localaddr_add(la, &a) < 0) {
				log_warn("import");
				goto out;
			}
			break;
		case 's':
			im.strict = 1;
			break;
		case 'r':
			if (sscanf(optarg, "%d-%d%c", &lo, &hi, &c) != 2 ||
			    lo < 1 || hi > 65535 || lo > hi) {
				fprintf(stderr, "natscope import: --port-range "
					"'%s': expected LO-HI, e.g. 32768-60999\n",
					optarg);
				goto usage;
			}
			break;
		case 'v':
			log_init("natscope", NS_LOG_DEBUG);
			break;
		case 'h':
			import_usage(stdout);
			rc = 0;
			goto out;
		case ':':
			fprintf(stderr, "natscope import: %s needs a value\n",
				argv[optind - 1]);
			goto usage;
		default:
			fprintf(stderr, "natscope import: unknown option '%s'\n",
				argv[optind - 1]);
			import_usage(stderr);
			goto usage;
		}
	}
	if (!db || !*db) {
		fputs("natscope import: --db FILE is required\n", stderr);
		goto usage;
	}
	n = argc - optind;
	if (n < 1) {
		fputs("natscope import: no capture given\n", stderr);
		goto usage;
	}
	if (!(src = calloc((size_t)n, sizeof(*src)))) {
		log_warn("import");
		goto out;
	}
	for (int i = 0; i < n; i++)
		src[i].path = argv[optind + i];
	im.src = src;
	im.n_src = n;

	/* every capture is readable and one, before the database is touched */
	if (import_open_sources(&im, src, n, have_at, at_ms, &start) < 0) {
		if (im.skipped && im.strict)
			log_warnx("--strict: a malformed record: nothing "
				  "imported");
		goto out;
	}
	if (start == INT64_MAX) {
		log_warnx("no record in any capture: nothing imported");
		goto out;
	}

	im.st = store_open(db, STORE_READ_WRITE);
	if (!im.st) {
		log_warnx("cannot use the database %s", db);
		goto out;
	}
	if (store_tx_begin(im.st) < 0)
		goto out;
	in_tx = 1;
	import_note(&im, src, n);
	/* a run begins as a live one does (a previous run's open incidents
	 * end where it stopped writing), inside the one transaction */
	store_status_init(&im.b.status);
	im.b.status.started_ms = im.b.status.as_of_ms = start;
	im.b.status.interval_s = im.interval_s;
	im.b.status.pid = 0;
	snprintf(im.b.status.note, sizeof(im.b.status.note), "%s", im.note);
	if (store_begin_run(im.st, &im.b.status) < 0)
		goto out;
	tcfg.interval_s = im.interval_s;
	if (!(im.t = tracker_new(&tcfg, start))) {
		log_warn("import");
		goto out;
	}
	if (localaddr_count(la))
		tracker_set_localaddr(im.t, la);
	if (lo > 0) {
		/* the one kernel figure an import knows: all else unknown */
		struct kstat ks;

		memset(&ks, 0xff, sizeof(ks)); /* every field -1 */
		ks.rss_bytes = 0;
		ks.cpu_seconds = -1;
		ks.port_lo = lo;
		ks.port_hi = hi;
		tracker_kstat(im.t, &ks, start);
	}
	store_batch_init(&im.b);
	im.need_full = 1;
	im.next_ms = (start / ((int64_t)im.interval_s * 1000) + 1) *
		     (int64_t)im.interval_s * 1000;
	im.last_ms = start;
	/* records skipped while finding where each log starts */
	for (int i = 0; i < n; i++)
		for (unsigned long k = 0; k < src[i].skipped; k++)
			tracker_gap(im.t, "skipped", start);

	for (;;) {
		struct import_src *s = import_pick(src, n, &t);

		if (!s)
			break;
		if (import_advance(&im, t) < 0)
			goto out;
		if ((s->listing ? import_listing(&im, s) :
				  import_event(&im, s)) < 0)
			goto out;
	}
	for (int i = 0; i < n; i++)
		if (src[i].fatal)
			goto out;
	if (import_snapshot(&im, im.last_ms, 1) < 0)
		goto out;
	if (store_tx_end(im.st, 1) < 0) {
		in_tx = 0;
		goto out;
	}
	in_tx = 0;
	ok = 1;
	tracker_stats(im.t, &ls);
	printf("imported %lu records from %d capture%s into %s: %llu nat and "
	       "%llu local mappings on %llu public IPs as of %s; %lu "
	       "snapshot%s\n", im.applied, n, n == 1 ? "" : "s", db,
	       (unsigned long long)ls.mappings_nat,
	       (unsigned long long)ls.mappings_local,
	       (unsigned long long)ls.gateways, ns_time_format(im.last_ms, when),
	       im.snapshots, im.snapshots == 1 ? "" : "s");
	if (im.skipped)
		printf("%lu malformed record%s skipped\n", im.skipped,
		       im.skipped == 1 ? "" : "s");
	if (tracker_state(im.t) != STORE_STATE_RUNNING)
		printf("the figures are marked not exact (an open gap): %s\n",
		       im.gap_said ? "an event log began with no listing taken "
		       "while it ran, so what happened before its first event "
		       "is unknown" : "records were skipped");
	else if (im.gap_said)
		printf("exact from the listing on: before it, an event log ran "
		       "with no listing (a closed gap says so)\n");
	rc = 0;
out:
	if (in_tx && store_tx_end(im.st, 0) < 0)
		log_warnx("%s: the import could not be rolled back", db);
	if (!ok && im.st)
		log_warnx("nothing was imported: %s is as it was", db);
	if (ok || !im.st)
		store_close(im.st);
	else
		store_discard(im.st); /* a database made for nothing goes */
	tracker_free(im.t);
	store_batch_free(&im.b);
	for (int i = 0; src && i < n; i++) {
		capture_close(src[i].c);
		if (src[i].f)
			fclose(src[i].f);
	}
	free(src);
	localaddr_close(la);
	return rc;
usage:
	rc = 2;
	goto out;
}
