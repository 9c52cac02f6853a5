/*
 * test_maplog.c - the mapping log (store/maplog.c, collector/mapbuf.c,
 * the tracker's hooks) against real SQLite files in a temporary
 * directory: the block codec, store_write() pairing starts and ends
 * across batches, store_json_lookup() at the edges (exact start and end
 * milliseconds, open mappings, several holders, block boundaries, gaps,
 * dump-seen starts, a restart), retention by age and by size, and the
 * tracker feeding the log from events, dumps and a resync's sweep; and
 * store_json_ports(), the port map, with its exact runs at the edges of
 * mappings, across a gap, before the start-up dump, live and stopped.
 * Prints the encoded size per mapping of a realistic block and how long
 * the port map of 60,000 occupied ports takes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <zstd.h>

#include "collector/ctmsg.h"
#include "collector/mapbuf.h"
#include "collector/tracker.h"
#include "common/common.h"
#include "store/store.h"

#define T0 1795600800000LL /* 2026-11-25T10:00:00.000Z */
#define DAY_MS (24 * 3600 * 1000LL)

static char tmpdir[] = "/tmp/natscope-maplog-XXXXXX";
static sqlite3 *jdb;

/* ---- helpers ---- */

static const char *db_path(const char *name)
{
	static char path[256];

	snprintf(path, sizeof(path), "%s/%s.db", tmpdir, name);
	return path;
}

static struct store *open_fresh(const char *name)
{
	struct store *st;

	unlink(db_path(name));
	st = store_open(db_path(name), STORE_READ_WRITE);
	assert_non_null(st);
	return st;
}

static const char *jcall(const char *fn, const char *doc, const char *path)
{
	static char buf[8][4096];
	static int next;
	char *out = buf[next++ % 8], sql[128];
	sqlite3_stmt *s;

	snprintf(sql, sizeof(sql), "SELECT %s(?1, ?2)", fn);
	assert_int_equal(sqlite3_prepare_v2(jdb, sql, -1, &s, NULL), SQLITE_OK);
	sqlite3_bind_text(s, 1, doc, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	snprintf(out, 4096, "%s",
		 sqlite3_column_type(s, 0) == SQLITE_NULL
			 ? "(missing)"
			 : (const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	return out;
}

static const char *jtext(const char *doc, const char *path)
{
	return jcall("json_extract", doc, path);
}

static const char *jtype(const char *doc, const char *path)
{
	return jcall("json_type", doc, path);
}

static long long jint(const char *doc, const char *path)
{
	return atoll(jtext(doc, path));
}

static long long jlen(const char *doc, const char *path)
{
	return atoll(jcall("json_array_length", doc, path));
}

static struct ns_addr A(const char *text)
{
	struct ns_addr a;

	assert_int_equal(ns_addr_parse(text, &a), 0);
	return a;
}

static void begin_run(struct store *st, int64_t run_ms)
{
	struct store_status x;

	store_status_init(&x);
	x.started_ms = x.as_of_ms = run_ms;
	x.interval_s = 5;
	x.state = STORE_STATE_STARTING;
	assert_int_equal(store_begin_run(st, &x), 0);
}

/* A record: public 203.0.113.1:pport (tcp) <- 198.18.0.host:hport, to
 * 198.51.100.dest:443. */
static struct store_maplog_rec rec(int64_t ms, unsigned flags, uint16_t pport,
				   unsigned host, uint16_t hport, unsigned dest)
{
	struct store_maplog_rec r;
	struct ns_addr a;

	memset(&r, 0, sizeof(r));
	r.ms = ms;
	r.family = AF_INET;
	r.proto = IPPROTO_TCP;
	r.flags = (uint8_t)flags;
	r.state = 3; /* established, unless a test says otherwise */
	r.public_port = pport;
	r.host_port = hport;
	r.dest_port = 443;
	a = A("203.0.113.1");
	memcpy(r.public_ip, a.bytes, 16);
	a = A("198.18.0.0");
	a.bytes[3] = (uint8_t)host;
	a.bytes[2] = (uint8_t)(host >> 8);
	memcpy(r.host_ip, a.bytes, 16);
	a = A("198.51.100.0");
	a.bytes[3] = (uint8_t)dest;
	memcpy(r.dest_ip, a.bytes, 16);
	return r;
}

static void add(struct store_batch *b, struct store_maplog_rec r)
{
	if (b->cap_maplog - b->maplog_len < STORE_MAPLOG_PACKED_MAX) {
		b->cap_maplog = b->cap_maplog ? b->cap_maplog * 2 : 4096;
		b->maplog = realloc(b->maplog, b->cap_maplog);
		assert_non_null(b->maplog);
	}
	b->maplog_len += store_maplog_pack(&r, b->maplog + b->maplog_len);
	b->n_maplog++;
}

/* The i-th packed record of b. */
static struct store_maplog_rec nth(const struct store_batch *b, size_t i)
{
	struct store_maplog_rec r;
	size_t off = 0, k = 0;

	for (;;) {
		k = store_maplog_unpack(b->maplog + off, b->maplog_len - off, &r);
		assert_true(k > 0);
		if (i-- == 0)
			return r;
		off += k;
	}
}

/* Writes b as the run's snapshot at as_of, then empties it. */
static void write_at(struct store *st, struct store_batch *b, int64_t run_ms,
		     int64_t as_of)
{
	store_status_init(&b->status);
	b->status.started_ms = run_ms;
	b->status.as_of_ms = as_of;
	b->status.interval_s = 5;
	b->status.state = STORE_STATE_RUNNING;
	b->full = 1;
	assert_int_equal(store_write(st, b), 0);
	store_batch_clear(b);
}

static char *lookup(struct store *st, uint16_t port, int64_t at)
{
	struct ns_addr ip = A("203.0.113.1");
	char *doc = NULL;

	assert_int_equal(store_json_lookup(st, &ip, IPPROTO_TCP, port, at,
					   at + 1000, &doc), 0);
	assert_non_null(doc);
	return doc;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb; (void)flag; (void)f;
	return remove(p);
}

/* ---- the codec ---- */

static void test_codec_round_trip(void **state)
{
	enum { N = 10000 };
	struct store_maplog_entry *e = calloc(N, sizeof(*e)), *d = NULL;
	size_t n = 0, len = 0;
	void *data = NULL;
	uint64_t x = 12345;

	(void)state;
	assert_non_null(e);
	for (unsigned alen = 4; alen <= 16; alen += 12) {
		for (int ended = 0; ended <= 1; ended++) {
			for (size_t i = 0; i < N; i++) {
				x = x * 6364136223846793005ULL + 1442695040888963407ULL;
				e[i].start_ms = T0 + (int64_t)(x >> 40) % 600000 -
						(i == 7 ? 400 * DAY_MS : 0);
				e[i].end_ms = ended ? e[i].start_ms +
						      (int64_t)(x >> 50) : 0;
				e[i].flags = (uint8_t)((x >> 20) & 0x1e) |
					     (uint8_t)((x >> 24) & 0xc0);
				/* states: none kept, a start's, a change */
				e[i].state_start = i % 11 == 0 ?
					NS_TCP_STATE_UNKNOWN :
					(uint8_t)((x >> 9) % NS_TCP_STATES);
				e[i].state_last = NS_TCP_STATE_UNKNOWN;
				e[i].state_ms = 0;
				e[i].state_long = NS_TCP_STATE_UNKNOWN;
				e[i].long_ms = e[i].long_end = 0;
				if (i % 3 == 0) {
					e[i].state_last = (uint8_t)((x >> 13) %
								    NS_TCP_STATES);
					e[i].state_ms = e[i].start_ms +
							(int64_t)(x >> 52);
				}
				if (i % 6 == 0) {
					e[i].state_long = (uint8_t)((x >> 17) %
								    NS_TCP_STATES);
					e[i].long_ms = e[i].start_ms +
						       (int64_t)(x >> 58);
					e[i].long_end = e[i].long_ms + 1 +
							(int64_t)(x >> 54);
				}
				e[i].zone = (uint16_t)(i % 97 == 0 ? 65535 : 0);
				e[i].public_port = (uint16_t)(x >> 17);
				e[i].host_port = (uint16_t)(x >> 33);
				e[i].dest_port = (uint16_t)(i % 3 ? 443 : 53);
				memset(e[i].host_ip, 0, 16);
				memset(e[i].dest_ip, 0, 16);
				for (unsigned k = 0; k < alen; k++) {
					e[i].host_ip[k] = (uint8_t)(k == alen - 1 ?
								    x >> 56 : 198);
					e[i].dest_ip[k] = (uint8_t)(k == alen - 1 ?
								    i % 5 : 51);
				}
			}
			assert_int_equal(store_maplog_encode(e, N, alen, ended,
							     &data, &len), 0);
			assert_int_equal(store_maplog_decode(data, len, &d, &n), 0);
			assert_int_equal(n, N);
			/* decoded in (port, start) order: every entry is there */
			for (size_t i = 0; i < N; i++) {
				size_t j;

				for (j = 0; j < n; j++)
					if (!memcmp(&d[j], &e[i], sizeof(e[i])))
						break;
				if (i % 97 == 0 || i < 20)
					assert_true(j < n);
			}
			for (size_t j = 1; j < n; j++)
				assert_true(d[j - 1].public_port <= d[j].public_port);
			/* any damage is EILSEQ, never garbage */
			((uint8_t *)data)[len / 2] ^= 0x55;
			free(d);
			d = NULL;
			errno = 0;
			if (store_maplog_decode(data, len, &d, &n) < 0)
				assert_int_equal(errno, EILSEQ);
			free(d);
			d = NULL;
			assert_int_equal(store_maplog_decode(data, 5, &d, &n), -1);
			assert_int_equal(errno, EILSEQ);
			free(data);
		}
	}
	/* packed records, IPv4 and IPv6 */
	{
		struct store_maplog_rec r4 = { 0 }, r6 = { 0 }, back;
		uint8_t buf[STORE_MAPLOG_PACKED_MAX];

		r4.ms = T0 + 7;
		r4.family = AF_INET;
		r4.proto = IPPROTO_UDP;
		r4.flags = STORE_MAPLOG_END | STORE_MAPLOG_END_UNCERTAIN;
		r4.zone = 3;
		r4.public_port = 40000;
		r4.host_port = 5353;
		r4.dest_port = 53;
		memcpy(r4.public_ip, (uint8_t[]){ 203, 0, 113, 1 }, 4);
		memcpy(r4.host_ip, (uint8_t[]){ 198, 18, 0, 2 }, 4);
		memcpy(r4.dest_ip, (uint8_t[]){ 198, 51, 100, 7 }, 4);
		r4.state = 7;
		assert_int_equal(store_maplog_pack(&r4, buf), 32);
		assert_int_equal(store_maplog_unpack(buf, 32, &back), 32);
		assert_memory_equal(&back, &r4, sizeof(r4));
		assert_int_equal(store_maplog_unpack(buf, 31, &back), 0);
		r6 = r4;
		r6.family = AF_INET6;
		r6.flags = STORE_MAPLOG_STATE | STORE_MAPLOG_STATE_SEEN;
		r6.state = NS_TCP_STATE_UNKNOWN;
		memset(r6.dest_ip, 0x20, 16);
		assert_int_equal(store_maplog_pack(&r6, buf), 68);
		assert_int_equal(store_maplog_unpack(buf, 68, &back), 68);
		assert_memory_equal(&back, &r6, sizeof(r6));
		r6.family = 0;
		assert_int_equal(store_maplog_pack(&r6, buf), 0);
	}
	/* a realistic block: 4096 TCP mappings from 200 hosts to 20
	 * destinations within 5 s */
	for (size_t i = 0; i < 4096; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		memset(&e[i], 0, sizeof(e[i]));
		e[i].start_ms = T0 + (int64_t)(x >> 40) % 5000;
		e[i].end_ms = e[i].start_ms + 120000 + (int64_t)(x >> 52);
		e[i].public_port = (uint16_t)(1024 + (x >> 20) % 64000);
		e[i].host_port = (uint16_t)(32768 + (x >> 36) % 28000);
		e[i].dest_port = 443;
		e[i].host_ip[0] = 198; e[i].host_ip[1] = 18;
		e[i].host_ip[3] = (uint8_t)((x >> 8) % 200);
		e[i].dest_ip[0] = 198; e[i].dest_ip[1] = 51; e[i].dest_ip[2] = 100;
		e[i].dest_ip[3] = (uint8_t)((x >> 30) % 20);
		/* syn_sent at the start, established 1 ms later, time_wait
		 * for its last 120 s */
		e[i].state_start = 1;
		e[i].state_last = NS_TCP_TIME_WAIT;
		e[i].state_ms = e[i].end_ms - 120000;
		e[i].state_long = 3;
		e[i].long_ms = e[i].start_ms + 1;
		e[i].long_end = e[i].state_ms - 2;
		e[i].flags = STORE_MAPLOG_STATE_BETWEEN;
	}
	assert_int_equal(store_maplog_encode(e, 4096, 4, 1, &data, &len), 0);
	printf("maplog: a block of 4096 ended IPv4 mappings: %zu bytes, "
	       "%.1f B per mapping\n", len, len / 4096.0);
	assert_true(len / 4096.0 <= 20);
	free(data);
	free(e);
}

/* ---- writing and looking up ---- */

static char *ports_doc(struct store *st, int64_t at);

static void test_exact_edges(void **state)
{
	struct store *st = open_fresh("edges");
	struct store_batch b;
	char *doc;

	(void)state;
	store_batch_init(&b);
	begin_run(st, T0);
	add(&b, rec(T0 + 100, 0, 40000, 2, 51000, 7));
	add(&b, rec(T0 + 200, STORE_MAPLOG_END, 40000, 2, 51000, 7));
	write_at(st, &b, T0, T0 + 5000);

	doc = lookup(st, 40000, T0 + 100); /* the exact start */
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtext(doc, "$.holders[0].internal.ip"), "198.18.0.2");
	assert_int_equal(jint(doc, "$.holders[0].internal.port"), 51000);
	assert_string_equal(jtext(doc, "$.holders[0].destination.ip"),
			    "198.51.100.7");
	assert_int_equal(jint(doc, "$.holders[0].destination.port"), 443);
	assert_string_equal(jtext(doc, "$.holders[0].start"),
			    "2026-11-25T10:00:00.100Z");
	assert_string_equal(jtext(doc, "$.holders[0].end"),
			    "2026-11-25T10:00:00.200Z");
	assert_string_equal(jtext(doc, "$.holders[0].kind"), "nat");
	assert_string_equal(jtype(doc, "$.uncertain"), "false");
	assert_string_equal(jtype(doc, "$.holders[0].start_known"), "true");
	assert_int_equal(jlen(doc, "$.reasons"), 0);
	assert_string_equal(jtext(doc, "$.public_ip"), "203.0.113.1");
	assert_string_equal(jtext(doc, "$.proto"), "tcp");
	free(doc);
	doc = lookup(st, 40000, T0 + 200); /* the exact end */
	assert_int_equal(jlen(doc, "$.holders"), 1);
	free(doc);
	doc = lookup(st, 40000, T0 + 99);
	assert_int_equal(jlen(doc, "$.holders"), 0);
	assert_string_equal(jtype(doc, "$.uncertain"), "false");
	free(doc);
	doc = lookup(st, 40000, T0 + 201);
	assert_int_equal(jlen(doc, "$.holders"), 0);
	free(doc);
	doc = lookup(st, 40001, T0 + 150); /* another port */
	assert_int_equal(jlen(doc, "$.holders"), 0);
	free(doc);
	/* before the run: natscope was not logging */
	doc = lookup(st, 40000, T0 - 1);
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	assert_string_equal(jtext(doc, "$.reasons[0]"),
			    "natscope was not logging mappings at this moment");
	free(doc);
	/* after the last write: not in the log yet */
	doc = lookup(st, 40000, T0 + 5001);
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	assert_non_null(strstr(jtext(doc, "$.reasons[0]"), "last write"));
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

static void test_open_then_closed_across_batches(void **state)
{
	struct store *st = open_fresh("open");
	struct store_maplog_stats ms;
	struct store_batch b;
	char *doc;

	(void)state;
	store_batch_init(&b);
	begin_run(st, T0);
	add(&b, rec(T0 + 1000, 0, 40000, 2, 51000, 7));
	add(&b, rec(T0 + 1500, 0, 40002, 3, 51001, 7));
	write_at(st, &b, T0, T0 + 5000);
	assert_int_equal(store_maplog_stats(st, &ms), 0);
	assert_int_equal(ms.open, 2);
	assert_int_equal(ms.ended, 0);

	doc = lookup(st, 40000, T0 + 4000); /* open at the lookup time */
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtype(doc, "$.holders[0].end"), "null");
	assert_string_equal(jtype(doc, "$.uncertain"), "false");
	free(doc);

	/* its end comes in the next batch: the record is complete */
	add(&b, rec(T0 + 6000, STORE_MAPLOG_END, 40000, 2, 0, 7));
	write_at(st, &b, T0, T0 + 10000);
	assert_int_equal(store_maplog_stats(st, &ms), 0);
	assert_int_equal(ms.open, 1);
	assert_int_equal(ms.ended, 1);
	doc = lookup(st, 40000, T0 + 4000);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtext(doc, "$.holders[0].end"),
			    "2026-11-25T10:00:06.000Z");
	/* the start's internal port is kept though the end had none */
	assert_int_equal(jint(doc, "$.holders[0].internal.port"), 51000);
	free(doc);
	doc = lookup(st, 40000, T0 + 6000); /* exact end, across batches */
	assert_int_equal(jlen(doc, "$.holders"), 1);
	free(doc);
	doc = lookup(st, 40000, T0 + 6001);
	assert_int_equal(jlen(doc, "$.holders"), 0);
	free(doc);
	/* the other one is still open, never shown as ended */
	doc = lookup(st, 40002, T0 + 9000);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtype(doc, "$.holders[0].end"), "null");
	free(doc);

	/* a restart: the open one ended at the last write, unseen */
	store_close(st);
	st = store_open(db_path("open"), STORE_READ_WRITE);
	assert_non_null(st);
	begin_run(st, T0 + 60000);
	doc = lookup(st, 40002, T0 + 9000);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtext(doc, "$.holders[0].end"),
			    "2026-11-25T10:00:10.000Z");
	assert_string_equal(jtype(doc, "$.holders[0].uncertain"), "true");
	assert_non_null(strstr(jtext(doc, "$.holders[0].reasons[0]"),
			       "natscope stopped"));
	free(doc);
	/* between the runs nothing was logged */
	doc = lookup(st, 40002, T0 + 30000);
	assert_int_equal(jlen(doc, "$.holders"), 0);
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	free(doc);
	assert_int_equal(store_maplog_stats(st, &ms), 0);
	assert_int_equal(ms.open, 0);
	assert_int_equal(ms.ended, 2);
	store_batch_free(&b);
	store_close(st);
}

static void test_several_holders_and_blocks(void **state)
{
	struct store *st = open_fresh("holders");
	struct store_maplog_stats ms;
	struct store_batch b;
	char *doc;

	(void)state;
	store_batch_init(&b);
	begin_run(st, T0);
	/* one public port toward three destinations at once */
	for (unsigned d = 1; d <= 3; d++)
		add(&b, rec(T0 + 100 * d, 0, 50000, d, (uint16_t)(40000 + d), d));
	/* 10,000 more mappings on other ports: several blocks */
	for (unsigned i = 0; i < 10000; i++) {
		uint16_t port = (uint16_t)(1024 + i * 6);

		add(&b, rec(T0 + 1000 + i % 3000, 0, port, i % 250, 1024, 9));
		if (i % 2)
			add(&b, rec(T0 + 4000 + i % 500, STORE_MAPLOG_END,
				    port, i % 250, 1024, 9));
	}
	write_at(st, &b, T0, T0 + 5000);
	assert_int_equal(store_maplog_stats(st, &ms), 0);
	assert_true(ms.blocks >= 3);
	assert_int_equal(ms.open, 5003);
	assert_int_equal(ms.ended, 5000);
	printf("maplog: 10003 mappings in %llu blocks, %llu bytes\n",
	       (unsigned long long)ms.blocks, (unsigned long long)ms.bytes);

	doc = lookup(st, 50000, T0 + 300);
	assert_int_equal(jlen(doc, "$.holders"), 3);
	for (int d = 0; d < 3; d++) {
		char path[64];

		snprintf(path, sizeof(path), "$.holders[%d].destination.ip", d);
		assert_int_equal(atoi(strrchr(jtext(doc, path), '.') + 1), d + 1);
	}
	free(doc);
	doc = lookup(st, 50000, T0 + 250);
	assert_int_equal(jlen(doc, "$.holders"), 2);
	free(doc);
	/* the first, a middle and the last port of the range, ended or
	 * open, whichever block they are in */
	for (unsigned i = 0; i < 10000; i += 4999) {
		uint16_t port = (uint16_t)(1024 + i * 6);

		doc = lookup(st, port, T0 + 4000);
		assert_int_equal(jlen(doc, "$.holders"), 1);
		assert_string_equal(jtype(doc, "$.holders[0].end"),
				    i % 2 ? "text" : "null");
		free(doc);
	}
	/* ends of mappings open in several blocks, in a later batch */
	for (unsigned i = 0; i < 10000; i += 2)
		add(&b, rec(T0 + 7000, STORE_MAPLOG_END,
			    (uint16_t)(1024 + i * 6), i % 250, 0, 9));
	write_at(st, &b, T0, T0 + 10000);
	assert_int_equal(store_maplog_stats(st, &ms), 0);
	assert_int_equal(ms.open, 3);
	assert_int_equal(ms.ended, 10000);
	doc = lookup(st, 1024 + 9998 * 6, T0 + 7000);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_int_equal(jint(doc, "$.holders[0].internal.port"), 1024);
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

static void test_gap_and_dump_seen(void **state)
{
	struct store *st = open_fresh("gap");
	struct store_batch b;
	struct store_gap_row *g;
	char *doc;

	(void)state;
	store_batch_init(&b);
	begin_run(st, T0);
	/* seen by the start-up dump: start unknown */
	add(&b, rec(T0 + 50, STORE_MAPLOG_START_UNKNOWN, 40000, 2, 51000, 7));
	add(&b, rec(T0 + 60, 0, 40001, 3, 51000, 7));
	write_at(st, &b, T0, T0 + 5000);
	doc = lookup(st, 40000, T0 + 1000);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtype(doc, "$.holders[0].start_known"), "false");
	assert_string_equal(jtype(doc, "$.holders[0].uncertain"), "true");
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	assert_non_null(strstr(jtext(doc, "$.holders[0].reasons[0]"),
			       "start unknown"));
	free(doc);

	/* events lost from T0+6000; the resync at T0+8000 sweeps 40001 */
	g = store_batch_add_gap(&b);
	g->run_started_ms = T0;
	g->seq = 1;
	g->start_ms = T0 + 6000;
	g->end_ms = T0 + 8000;
	g->events_lost = 10;
	snprintf(g->reason, sizeof(g->reason), "enobufs");
	add(&b, rec(T0 + 8000, STORE_MAPLOG_END | STORE_MAPLOG_END_UNCERTAIN,
		    40001, 3, 0, 7));
	write_at(st, &b, T0, T0 + 10000);
	doc = lookup(st, 40001, T0 + 3000); /* before the gap */
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtext(doc, "$.holders[0].end"),
			    "2026-11-25T10:00:08.000Z");
	assert_string_equal(jtype(doc, "$.holders[0].uncertain"), "true");
	assert_non_null(strstr(jtext(doc, "$.holders[0].reasons[0]"),
			       "end not reported"));
	assert_non_null(strstr(jtext(doc, "$.holders[0].reasons[1]"),
			       "gap 1 (enobufs"));
	assert_non_null(strstr(jtext(doc, "$.holders[0].reasons[1]"),
			       "covers its end"));
	/* the moment itself is not in the gap */
	assert_int_equal(jlen(doc, "$.reasons"), 0);
	free(doc);
	doc = lookup(st, 40005, T0 + 7000); /* nobody, but inside the gap */
	assert_int_equal(jlen(doc, "$.holders"), 0);
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	assert_non_null(strstr(jtext(doc, "$.reasons[0]"), "covers this moment"));
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

/* One host's destinations (the host view, store_json_host_history): its
 * mappings grouped by public IP and destination, with the mappings that
 * overlap the range, those started in it, the most held at once, and
 * what makes the answer incomplete. */
static void test_host_destinations(void **state)
{
	struct store *st = open_fresh("hostdest");
	struct ns_addr host = A("198.18.0.5");
	struct store_batch b;
	char *doc;

	(void)state;
	store_batch_init(&b);
	begin_run(st, T0);
	/* toward 198.51.100.1: three, one of which ends at T0+2000 */
	add(&b, rec(T0 + 100, 0, 40000, 5, 50000, 1));
	add(&b, rec(T0 + 200, 0, 40001, 5, 50001, 1));
	add(&b, rec(T0 + 300, 0, 40002, 5, 50002, 1));
	add(&b, rec(T0 + 2000, STORE_MAPLOG_END, 40000, 5, 50000, 1));
	/* toward 198.51.100.2: two that overlap from 1500 to 1600 */
	add(&b, rec(T0 + 1000, 0, 40010, 5, 50010, 2));
	add(&b, rec(T0 + 1500, 0, 40011, 5, 50011, 2));
	add(&b, rec(T0 + 1600, STORE_MAPLOG_END, 40010, 5, 50010, 2));
	/* toward 198.51.100.3: seen by a dump (start unknown) */
	add(&b, rec(T0 + 50, STORE_MAPLOG_START_UNKNOWN, 40020, 5, 50020, 3));
	/* another host, toward 198.51.100.1: not this host's */
	add(&b, rec(T0 + 100, 0, 40030, 6, 50030, 1));
	write_at(st, &b, T0, T0 + 5000);
	add(&b, rec(T0 + 6000, STORE_MAPLOG_END, 40011, 5, 50011, 2));
	write_at(st, &b, T0, T0 + 10000);

	assert_int_equal(store_json_host_history(st, &host, T0, T0 + 10000,
						 T0 + 10000, &doc), 0);
	assert_int_equal(jlen(doc, "$.destinations"), 3);
	assert_string_equal(jtext(doc, "$.destinations[0].public_ip"),
			    "203.0.113.1");
	assert_string_equal(jtext(doc, "$.destinations[0].proto"), "tcp");
	assert_string_equal(jtext(doc, "$.destinations[0].destination.ip"),
			    "198.51.100.1");
	assert_int_equal(jint(doc, "$.destinations[0].destination.port"), 443);
	assert_int_equal(jint(doc, "$.destinations[0].mappings"), 3);
	assert_int_equal(jint(doc, "$.destinations[0].new_mappings"), 3);
	assert_int_equal(jint(doc, "$.destinations[0].ports_peak"), 3);
	assert_int_equal(jint(doc, "$.destinations[0].open_at_last_write"), 2);
	assert_string_equal(jtext(doc, "$.destinations[0].new_per_second"),
			    "0.3"); /* 3 in the 10 s the log covers */
	assert_string_equal(jtype(doc, "$.destinations[0].last_end"), "null");
	assert_string_equal(jtext(doc, "$.destinations[1].destination.ip"),
			    "198.51.100.2");
	assert_int_equal(jint(doc, "$.destinations[1].mappings"), 2);
	assert_int_equal(jint(doc, "$.destinations[1].ports_peak"), 2);
	assert_string_equal(jtext(doc, "$.destinations[1].first_start"),
			    "2026-11-25T10:00:01.000Z");
	assert_string_equal(jtext(doc, "$.destinations[1].last_end"),
			    "2026-11-25T10:00:06.000Z");
	assert_int_equal(jint(doc, "$.destinations[2].new_mappings"), 0);
	assert_int_equal(jint(doc, "$.destinations[2].uncertain"), 1);
	assert_int_equal(jint(doc, "$.destinations_coverage.mappings_read"), 7);
	assert_string_equal(jtype(doc, "$.destinations_coverage.complete"),
			    "false");
	assert_int_equal(jlen(doc, "$.destinations_coverage.reasons"), 1);
	assert_non_null(strstr(jtext(doc, "$.destinations_coverage.reasons[0]"),
			       "uncertain start or end: 1"));
	free(doc);

	/* from T0+3000: the mapping that ended at 2000 is out, nothing new
	 * toward .1, one held toward .2 */
	assert_int_equal(store_json_host_history(st, &host, T0 + 3000,
						 T0 + 10000, T0 + 10000,
						 &doc), 0);
	assert_int_equal(jint(doc, "$.destinations[0].mappings"), 2);
	assert_int_equal(jint(doc, "$.destinations[0].new_mappings"), 0);
	assert_int_equal(jint(doc, "$.destinations[0].ports_peak"), 2);
	assert_int_equal(jint(doc, "$.destinations[1].mappings"), 1);
	assert_int_equal(jint(doc, "$.destinations[1].ports_peak"), 1);
	free(doc);

	/* past the log's last write: said so */
	assert_int_equal(store_json_host_history(st, &host, T0, T0 + 20000,
						 T0 + 20000, &doc), 0);
	assert_string_equal(jtype(doc, "$.destinations_coverage.complete"),
			    "false");
	assert_non_null(strstr(jtext(doc, "$.destinations_coverage.reasons[0]"),
			       "after the log's last write"));
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

static void test_ipv6_and_protocols(void **state)
{
	struct store *st = open_fresh("v6");
	struct store_batch b;
	struct store_maplog_rec r;
	struct ns_addr pub = A("2001:db8::1"), a;
	char *doc = NULL;

	(void)state;
	store_batch_init(&b);
	begin_run(st, T0);
	r = rec(T0 + 100, STORE_MAPLOG_LOCAL, 40000, 2, 40000, 7);
	r.family = AF_INET6;
	memcpy(r.public_ip, pub.bytes, 16);
	a = A("2001:db8::1");
	memcpy(r.host_ip, a.bytes, 16);
	a = A("2001:db8:ffff::53");
	memcpy(r.dest_ip, a.bytes, 16);
	r.dest_port = 53;
	r.proto = IPPROTO_UDP;
	add(&b, r);
	/* the same port on the IPv4 address and over TCP: not the same */
	add(&b, rec(T0 + 100, 0, 40000, 3, 50000, 7));
	write_at(st, &b, T0, T0 + 5000);
	assert_int_equal(store_json_lookup(st, &pub, IPPROTO_UDP, 40000,
					   T0 + 1000, T0 + 6000, &doc), 0);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtext(doc, "$.public_ip"), "2001:db8::1");
	assert_string_equal(jtext(doc, "$.proto"), "udp");
	assert_string_equal(jtext(doc, "$.holders[0].kind"), "local");
	assert_string_equal(jtext(doc, "$.holders[0].internal.ip"),
			    "2001:db8::1");
	assert_string_equal(jtext(doc, "$.holders[0].destination.ip"),
			    "2001:db8:ffff::53");
	assert_int_equal(jint(doc, "$.holders[0].destination.port"), 53);
	free(doc);
	assert_int_equal(store_json_lookup(st, &pub, IPPROTO_TCP, 40000,
					   T0 + 1000, T0 + 6000, &doc), 0);
	assert_int_equal(jlen(doc, "$.holders"), 0);
	free(doc);
	/* bad input */
	a.family = 99;
	assert_int_equal(store_json_lookup(st, &a, IPPROTO_TCP, 1, T0, T0,
					   &doc), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(store_json_lookup(st, &pub, 200, 1, T0, T0, &doc), -1);
	assert_int_equal(errno, EINVAL);
	/* the port map of the IPv6 address: a local mapping, drawn from
	 * ip_local_port_range (unknown here: the kernel's default) */
	assert_int_equal(store_json_ports(st, &pub, IPPROTO_UDP,
					  STORE_PORTS_LIVE, T0 + 6000, &doc), 0);
	assert_string_equal(jtext(doc, "$.public_ip"), "2001:db8::1");
	assert_string_equal(jtext(doc, "$.runs"), "[[40000,1,0,0]]");
	assert_string_equal(jtext(doc, "$.hosts[0].ip"), "2001:db8::1");
	assert_string_equal(jtext(doc, "$.hosts[0].kind"), "local");
	assert_string_equal(jtext(doc, "$.destinations[0].ip"),
			    "2001:db8:ffff::53");
	assert_string_equal(jtext(doc, "$.destinations[0].range"),
			    "[32768,60999]");
	assert_int_equal(jint(doc, "$.destinations[0].capacity"), 28232);
	free(doc);
	assert_int_equal(store_json_ports(st, &a, IPPROTO_TCP,
					  STORE_PORTS_LIVE, T0, &doc), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(store_json_ports(st, &pub, 200, STORE_PORTS_LIVE, T0,
					  &doc), -1);
	assert_int_equal(errno, EINVAL);
	/* the web's read-only connection answers too */
	store_close(st);
	st = store_open(db_path("v6"), STORE_READ_ONLY);
	assert_non_null(st);
	assert_int_equal(store_json_lookup(st, &pub, IPPROTO_UDP, 40000,
					   T0 + 1000, T0 + 6000, &doc), 0);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	free(doc);
	assert_int_equal(store_json_ports(st, &pub, IPPROTO_UDP, T0 + 1000,
					  T0 + 6000, &doc), 0);
	assert_string_equal(jtext(doc, "$.runs"), "[[40000,1,0,0]]");
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

static void test_failed_write_keeps_records(void **state)
{
	struct store *st = open_fresh("failed");
	struct store_batch b;
	char *doc;

	(void)state;
	store_batch_init(&b);
	begin_run(st, T0);
	add(&b, rec(T0 + 100, 0, 40000, 2, 51000, 7));
	store_status_init(&b.status);
	b.status.started_ms = T0;
	b.status.as_of_ms = T0 + 5000;
	b.full = 1;
	/* a read-only moment makes the write fail */
	assert_int_equal(store_test_exec(st, "PRAGMA query_only = 1"), 0);
	assert_int_equal(store_write(st, &b), -1);
	assert_int_equal(store_test_exec(st, "PRAGMA query_only = 0"), 0);
	store_batch_clear(&b);
	add(&b, rec(T0 + 6000, STORE_MAPLOG_END, 40000, 2, 0, 7));
	write_at(st, &b, T0, T0 + 10000);
	doc = lookup(st, 40000, T0 + 3000);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtext(doc, "$.holders[0].end"),
			    "2026-11-25T10:00:06.000Z");
	assert_string_equal(jtype(doc, "$.holders[0].start_known"), "true");
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

static void test_retention_by_age(void **state)
{
	struct store *st = open_fresh("age");
	struct store_maplog_stats ms;
	struct store_batch b;
	char *doc;

	(void)state;
	store_batch_init(&b);
	assert_int_equal(store_maplog_configure(st, DAY_MS, 1 << 30), 0);
	assert_int_equal(store_maplog_configure(st, 0, 1), -1);
	begin_run(st, T0);
	add(&b, rec(T0 + 100, 0, 40000, 2, 51000, 7));
	add(&b, rec(T0 + 200, STORE_MAPLOG_END, 40000, 2, 51000, 7));
	add(&b, rec(T0 + 300, 0, 40001, 2, 51001, 7)); /* stays open */
	write_at(st, &b, T0, T0 + 5000);
	add(&b, rec(T0 + DAY_MS, 0, 40002, 2, 51002, 7));
	add(&b, rec(T0 + DAY_MS + 10, STORE_MAPLOG_END, 40002, 2, 51002, 7));
	write_at(st, &b, T0, T0 + DAY_MS + 100); /* < 1 day after: kept */
	assert_int_equal(store_maplog_stats(st, &ms), 0);
	assert_int_equal(ms.ended, 2);
	assert_int_equal(ms.trimmed_ms, 0);
	write_at(st, &b, T0, T0 + DAY_MS + 201); /* past a day after its end */
	assert_int_equal(store_maplog_stats(st, &ms), 0);
	assert_int_equal(ms.ended, 1);
	assert_int_equal(ms.open, 1); /* open mappings are never trimmed */
	assert_int_equal(ms.trimmed_ms, T0 + 200);
	doc = lookup(st, 40000, T0 + 150);
	assert_int_equal(jlen(doc, "$.holders"), 0);
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	assert_non_null(strstr(jtext(doc, "$.reasons[0]"), "retention removed"));
	free(doc);
	doc = lookup(st, 40001, T0 + DAY_MS);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	free(doc);
	/* the port map there: 40000 is gone, and the answer says it may
	 * miss ports; the log is whole from just after what was trimmed */
	doc = ports_doc(st, T0 + 150);
	assert_string_equal(jtext(doc, "$.runs"), "[]");
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	assert_non_null(strstr(jtext(doc, "$.reasons[0]"), "retention removed"));
	assert_string_equal(jtext(doc, "$.log.from"),
			    "2026-11-25T10:00:00.201Z");
	free(doc);
	doc = ports_doc(st, T0 + 300);
	assert_string_equal(jtext(doc, "$.runs"), "[[40001,1,0,0,3]]");
	assert_string_equal(jtype(doc, "$.uncertain"), "false");
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

static void test_retention_by_size(void **state)
{
	struct store *st = open_fresh("size");
	struct store_maplog_stats ms;
	struct store_batch b;
	uint64_t x = 99;
	char *doc;

	(void)state;
	store_batch_init(&b);
	assert_int_equal(store_maplog_configure(st, 30 * DAY_MS, 256 << 10), 0);
	begin_run(st, T0);
	for (int w = 0; w < 60; w++) {
		int64_t t = T0 + w * 5000LL;

		for (unsigned i = 0; i < 3000; i++) {
			uint16_t port;

			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			port = (uint16_t)(1024 + (x >> 20) % 64000);
			add(&b, rec(t + i, 0, port, (unsigned)(x >> 40) % 5000,
				    (uint16_t)(x >> 48), (unsigned)(x >> 33) % 50));
			add(&b, rec(t + i + 1000, STORE_MAPLOG_END, port,
				    (unsigned)(x >> 40) % 5000,
				    (uint16_t)(x >> 48), (unsigned)(x >> 33) % 50));
		}
		write_at(st, &b, T0, t + 5000);
	}
	assert_int_equal(store_maplog_stats(st, &ms), 0);
	printf("maplog: size cap 256 KiB: %llu bytes in %llu blocks, %llu "
	       "mappings kept of 180000, %.1f B each, trimmed to %lld\n",
	       (unsigned long long)ms.bytes, (unsigned long long)ms.blocks,
	       (unsigned long long)ms.ended, (double)ms.bytes / ms.ended,
	       (long long)(ms.trimmed_ms - T0));
	assert_true(ms.bytes <= 256 << 10);
	assert_true(ms.ended > 10000 && ms.ended < 180000);
	assert_true(ms.trimmed_ms > T0);
	assert_true((double)ms.bytes / ms.ended <= 40);
	doc = lookup(st, 2000, T0 + 1000);
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	assert_non_null(strstr(jtext(doc, "$.reasons[0]"), "retention removed"));
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

/* ---- TCP states ---- */

/* An entry started at T0 + 100 in state s0. */
static struct store_maplog_entry st_entry(uint8_t s0)
{
	struct store_maplog_entry e;

	memset(&e, 0, sizeof(e));
	e.start_ms = T0 + 100;
	e.state_start = s0;
	e.state_last = NS_TCP_STATE_UNKNOWN;
	return e;
}

static void test_state_at(void **state)
{
	struct store_maplog_entry e = st_entry(1);
	struct store_maplog_state s;

	(void)state;
	/* not TCP */
	store_maplog_state_at(&e, IPPROTO_UDP, T0 + 100, &s);
	assert_int_equal(s.state, NS_TCP_STATE_UNKNOWN);
	assert_int_equal(s.why, STORE_STATE_NOT_TCP);
	assert_int_equal(s.exact, 0);
	/* no change: the start's state from its start on, exact */
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 100, &s);
	assert_int_equal(s.state, 1);
	assert_int_equal(s.since_ms, T0 + 100);
	assert_int_equal(s.exact, 1);
	assert_int_equal(s.why, STORE_STATE_KNOWN);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 99999, &s);
	assert_int_equal(s.state, 1);
	assert_int_equal(s.exact, 1);
	/* first seen by a dump: the state is right, its start is not */
	e.flags = STORE_MAPLOG_START_UNKNOWN;
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 500, &s);
	assert_int_equal(s.state, 1);
	assert_int_equal(s.since_ms, T0 + 100);
	assert_int_equal(s.exact, 0);
	assert_int_equal(s.why, STORE_STATE_START_SEEN);
	e.flags = 0;
	/* one change, from an event, at T0 + 300: the start's state until
	 * T0 + 299, the new one from T0 + 300 (both exact) */
	e.state_last = 3;
	e.state_ms = T0 + 300;
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 299, &s);
	assert_int_equal(s.state, 1);
	assert_int_equal(s.since_ms, T0 + 100);
	assert_int_equal(s.exact, 1);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 300, &s);
	assert_int_equal(s.state, 3);
	assert_int_equal(s.since_ms, T0 + 300);
	assert_int_equal(s.exact, 1);
	/* several changes: between the start and the last one nothing is
	 * known, but at the start's own ms */
	e.flags = STORE_MAPLOG_STATE_BETWEEN;
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 101, &s);
	assert_int_equal(s.state, NS_TCP_STATE_UNKNOWN);
	assert_int_equal(s.since_ms, 0);
	assert_int_equal(s.exact, 0);
	assert_int_equal(s.why, STORE_STATE_BETWEEN);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 299, &s);
	assert_int_equal(s.why, STORE_STATE_BETWEEN);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 100, &s);
	assert_int_equal(s.state, 1);
	assert_int_equal(s.exact, 1);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 300, &s);
	assert_int_equal(s.state, 3);
	assert_int_equal(s.exact, 1);
	/* the last change only found (a dump or a check): from it on the
	 * state is right, its start not exact; before, unknown */
	e.flags = STORE_MAPLOG_STATE_SEEN;
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 300, &s);
	assert_int_equal(s.state, 3);
	assert_int_equal(s.since_ms, T0 + 300);
	assert_int_equal(s.exact, 0);
	assert_int_equal(s.why, STORE_STATE_CHANGE_SEEN);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 299, &s);
	assert_int_equal(s.why, STORE_STATE_BETWEEN);
	/* a change in the start's own ms wins there */
	e.flags = 0;
	e.state_ms = T0 + 100;
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 100, &s);
	assert_int_equal(s.state, 3);
	/* the longest held state: exact within its interval, before the
	 * last change */
	e = st_entry(1);
	e.flags = STORE_MAPLOG_STATE_BETWEEN;
	e.state_long = 3;
	e.long_ms = T0 + 101;
	e.long_end = T0 + 5000;
	e.state_last = NS_TCP_TIME_WAIT;
	e.state_ms = T0 + 5001;
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 100, &s);
	assert_int_equal(s.state, 1);
	assert_int_equal(s.exact, 1);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 101, &s);
	assert_int_equal(s.state, 3);
	assert_int_equal(s.since_ms, T0 + 101);
	assert_int_equal(s.exact, 1);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 4999, &s);
	assert_int_equal(s.state, 3);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 5000, &s);
	assert_int_equal(s.state, NS_TCP_STATE_UNKNOWN);
	assert_int_equal(s.why, STORE_STATE_BETWEEN);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 5001, &s);
	assert_int_equal(s.state, NS_TCP_TIME_WAIT);
	assert_int_equal(s.since_ms, T0 + 5001);
	/* ending where the last change begins */
	e.long_end = T0 + 5001;
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 5000, &s);
	assert_int_equal(s.state, 3);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 5001, &s);
	assert_int_equal(s.state, NS_TCP_TIME_WAIT);
	/* no state kept (a version 1 block), or the start's not known */
	e = st_entry(NS_TCP_STATE_UNKNOWN);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 100, &s);
	assert_int_equal(s.state, NS_TCP_STATE_UNKNOWN);
	assert_int_equal(s.why, STORE_STATE_NOT_KEPT);
	e.state_last = NS_TCP_TIME_WAIT;
	e.state_ms = T0 + 200;
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 199, &s);
	assert_int_equal(s.why, STORE_STATE_BETWEEN);
	store_maplog_state_at(&e, IPPROTO_TCP, T0 + 200, &s);
	assert_int_equal(s.state, NS_TCP_TIME_WAIT);
	assert_int_equal(s.exact, 1);
}

/* A version 1 block (no state columns), as natscope wrote them before
 * the log kept states: one ended IPv4 mapping, 203.0.113.1:40000 from
 * 198.18.0.2:51000 to 198.51.100.7:443, T0 + 100 to T0 + 1100. */
static void *v1_block(size_t *len)
{
	uint8_t raw[64], *p = raw, *out;
	uint64_t base = (uint64_t)(T0 + 100) << 1; /* zigzag, positive */
	size_t bound;

	*p++ = 1;		/* version */
	*p++ = 4;		/* alen */
	*p++ = 1;		/* ended */
	*p++ = 1;		/* n */
	do {			/* base */
		*p++ = (uint8_t)((base & 0x7f) | (base >= 0x80 ? 0x80 : 0));
		base >>= 7;
	} while (base);
	*p++ = 1; *p++ = 0;	/* flags */
	*p++ = 1; *p++ = 0;	/* start delta */
	*p++ = 2; *p++ = 0xe8; *p++ = 0x07; /* duration 1000 */
	*p++ = 1; *p++ = 0;	/* zone */
	*p++ = 3; *p++ = 0xc0; *p++ = 0xb8; *p++ = 0x02; /* port 40000 */
	*p++ = 4; memcpy(p, (uint8_t[]){ 198, 18, 0, 2 }, 4); p += 4;
	*p++ = 2; *p++ = 51000 >> 8; *p++ = 51000 & 0xff;
	*p++ = 4; memcpy(p, (uint8_t[]){ 198, 51, 100, 7 }, 4); p += 4;
	*p++ = 2; *p++ = 443 >> 8; *p++ = 443 & 0xff;
	bound = ZSTD_compressBound((size_t)(p - raw));
	out = malloc(bound);
	assert_non_null(out);
	*len = ZSTD_compress(out, bound, raw, (size_t)(p - raw), 1);
	assert_false(ZSTD_isError(*len));
	return out;
}

static void test_v1_blocks(void **state)
{
	struct store_maplog_entry *d = NULL;
	struct store *st;
	struct store_batch b;
	sqlite3 *db;
	sqlite3_stmt *s;
	size_t len, n;
	void *blk = v1_block(&len);
	char *doc;

	(void)state;
	assert_int_equal(store_maplog_decode(blk, len, &d, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(d[0].start_ms, T0 + 100);
	assert_int_equal(d[0].end_ms, T0 + 1100);
	assert_int_equal(d[0].public_port, 40000);
	assert_int_equal(d[0].host_port, 51000);
	assert_int_equal(d[0].dest_port, 443);
	assert_int_equal(d[0].state_start, NS_TCP_STATE_UNKNOWN);
	assert_int_equal(d[0].state_last, NS_TCP_STATE_UNKNOWN);
	assert_int_equal(d[0].state_ms, 0);
	free(d);
	/* in a database beside a version 2 block: the lookup says the
	 * state is not in the log */
	st = open_fresh("v1");
	store_batch_init(&b);
	begin_run(st, T0);
	add(&b, rec(T0 + 100, 0, 40001, 3, 51001, 7));
	write_at(st, &b, T0, T0 + 5000);
	store_close(st);
	assert_int_equal(sqlite3_open(db_path("v1"), &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
		"INSERT INTO maplog_blocks (family, ip_bin, proto, open, "
		"t_first, t_last, port_lo, port_hi, n, data) VALUES (4, "
		"x'cb007101', 6, 0, ?1, ?2, 40000, 40000, 1, ?3)", -1, &s,
		NULL), SQLITE_OK);
	sqlite3_bind_int64(s, 1, T0 + 100);
	sqlite3_bind_int64(s, 2, T0 + 1100);
	sqlite3_bind_blob(s, 3, blk, (int)len, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
	sqlite3_close(db);
	free(blk);
	st = store_open(db_path("v1"), STORE_READ_ONLY);
	assert_non_null(st);
	doc = lookup(st, 40000, T0 + 500);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtext(doc, "$.holders[0].internal.ip"),
			    "198.18.0.2");
	assert_string_equal(jtype(doc, "$.holders[0].state"), "null");
	assert_string_equal(jtype(doc, "$.holders[0].state_since"), "null");
	assert_string_equal(jtype(doc, "$.holders[0].state_exact"), "false");
	assert_string_equal(jtext(doc, "$.holders[0].state_note"),
			    "not in the log (logged before natscope kept TCP "
			    "states, or the kernel did not report it)");
	free(doc);
	doc = lookup(st, 40001, T0 + 500);
	assert_string_equal(jtext(doc, "$.holders[0].state"), "established");
	assert_string_equal(jtext(doc, "$.holders[0].state_since"),
			    "2026-11-25T10:00:00.100Z");
	assert_string_equal(jtype(doc, "$.holders[0].state_exact"), "true");
	assert_string_equal(jtype(doc, "$.holders[0].state_note"), "null");
	free(doc);
	/* the port map at that moment: one state known, one not */
	{
		struct ns_addr pub = A("203.0.113.1");

		assert_int_equal(store_json_ports(st, &pub, IPPROTO_TCP,
						  T0 + 500, T0 + 6000, &doc), 0);
		assert_string_equal(jtext(doc, "$.runs"),
				    "[[40000,1,0,0,null],[40001,1,1,0,3]]");
		assert_string_equal(jtext(doc, "$.tcp_states[3]"),
				    "established");
		assert_string_equal(jtext(doc, "$.states"),
				    "{\"established\":1}");
		assert_int_equal(jint(doc, "$.state_unknown"), 1);
		free(doc);
	}
	store_batch_free(&b);
	store_close(st);
}

/* A record with a TCP state. */
static struct store_maplog_rec srec(int64_t ms, unsigned flags, uint16_t pport,
				    unsigned host, uint8_t tcp_state)
{
	struct store_maplog_rec r = rec(ms, flags, pport, host,
					(flags & (STORE_MAPLOG_STATE |
						  STORE_MAPLOG_END)) ? 0 :
					(uint16_t)(50000 + host), 7);

	r.state = tcp_state;
	return r;
}

/* The state fields of the lookup of port at t, as one line. */
static const char *state_of(struct store *st, uint16_t port, int64_t t)
{
	static char out[1024];
	char *doc = lookup(st, port, t);

	assert_int_equal(jlen(doc, "$.holders"), 1);
	snprintf(out, sizeof(out), "%s %s %s %s",
		 jtext(doc, "$.holders[0].state"),
		 jtext(doc, "$.holders[0].state_since"),
		 jtext(doc, "$.holders[0].state_exact"),
		 jtext(doc, "$.holders[0].state_note"));
	free(doc);
	return out;
}

static void test_states_in_log(void **state)
{
	struct store *st = open_fresh("states");
	struct store_batch b;
	struct store_gap_row *g;
	struct store_maplog_stats ms;
	struct ns_addr pub = A("203.0.113.1");
	char *doc;

	(void)state;
	store_batch_init(&b);
	begin_run(st, T0);
	/* batch 1: A (41000) syn_sent, established 1 ms later; B (41001)
	 * established, no change; C (41002) syn_sent, syn_recv,
	 * established; D (41003) a change to the same state (none) */
	add(&b, srec(T0 + 100, 0, 41000, 2, 1));
	add(&b, srec(T0 + 101, STORE_MAPLOG_STATE, 41000, 2, 3));
	add(&b, srec(T0 + 200, 0, 41001, 3, 3));
	add(&b, srec(T0 + 300, 0, 41002, 4, 1));
	add(&b, srec(T0 + 301, STORE_MAPLOG_STATE, 41002, 4, 2));
	add(&b, srec(T0 + 302, STORE_MAPLOG_STATE, 41002, 4, 3));
	/* a change of a mapping the log does not have: dropped */
	add(&b, srec(T0 + 400, STORE_MAPLOG_STATE, 41009, 9, 3));
	write_at(st, &b, T0, T0 + 5000);
	assert_string_equal(state_of(st, 41000, T0 + 100),
			    "syn_sent 2026-11-25T10:00:00.100Z 1 (missing)");
	assert_string_equal(state_of(st, 41000, T0 + 101),
			    "established 2026-11-25T10:00:00.101Z 1 (missing)");
	assert_string_equal(state_of(st, 41001, T0 + 4000),
			    "established 2026-11-25T10:00:00.200Z 1 (missing)");
	assert_string_equal(state_of(st, 41002, T0 + 300),
			    "syn_sent 2026-11-25T10:00:00.300Z 1 (missing)");
	assert_string_equal(state_of(st, 41002, T0 + 301),
			    "(missing) (missing) 0 syn_sent at its start "
			    "(2026-11-25T10:00:00.300Z), established from "
			    "2026-11-25T10:00:00.302Z: the states between are "
			    "not kept, so the state at this moment is not known");
	assert_string_equal(state_of(st, 41002, T0 + 302),
			    "established 2026-11-25T10:00:00.302Z 1 (missing)");
	/* the live map: every state at the last write */
	assert_int_equal(store_json_ports(st, &pub, IPPROTO_TCP,
					  STORE_PORTS_LIVE, T0 + 6000, &doc), 0);
	assert_string_equal(jtext(doc, "$.runs"),
			    "[[41000,1,0,0,3],[41001,1,1,0,3],[41002,1,2,0,3]]");
	assert_string_equal(jtext(doc, "$.states"), "{\"established\":3}");
	assert_int_equal(jint(doc, "$.state_unknown"), 0);
	free(doc);

	/* batch 2, the mappings open on disk: A fin_wait then time_wait;
	 * B found in time_wait by a dump; a gap from T0 + 8000 to 8500 */
	add(&b, srec(T0 + 6000, STORE_MAPLOG_STATE, 41000, 2, 4));
	add(&b, srec(T0 + 6001, STORE_MAPLOG_STATE, 41000, 2, 7));
	add(&b, srec(T0 + 7000, STORE_MAPLOG_STATE | STORE_MAPLOG_STATE_SEEN,
		     41001, 3, 7));
	g = store_batch_add_gap(&b);
	g->run_started_ms = T0;
	g->seq = 1;
	g->start_ms = T0 + 8000;
	g->end_ms = T0 + 8500;
	g->events_lost = 3;
	snprintf(g->reason, sizeof(g->reason), "enobufs");
	write_at(st, &b, T0, T0 + 10000);
	assert_int_equal(store_maplog_stats(st, &ms), 0);
	assert_int_equal(ms.open, 3);
	assert_int_equal(ms.blocks, 1);
	/* A: established, held longest (from the handshake to the close,
	 * both events), stays exact; the fin_wait millisecond between two
	 * changes is not kept */
	assert_string_equal(state_of(st, 41000, T0 + 101),
			    "established 2026-11-25T10:00:00.101Z 1 (missing)");
	assert_string_equal(state_of(st, 41000, T0 + 5999),
			    "established 2026-11-25T10:00:00.101Z 1 (missing)");
	assert_string_equal(state_of(st, 41000, T0 + 6000),
			    "(missing) (missing) 0 syn_sent at its start "
			    "(2026-11-25T10:00:00.100Z), established from "
			    "2026-11-25T10:00:00.101Z to 2026-11-25T10:00:06.000Z, "
			    "time_wait from 2026-11-25T10:00:06.001Z: the states "
			    "between are not kept, so the state at this moment "
			    "is not known");
	assert_string_equal(state_of(st, 41000, T0 + 100),
			    "syn_sent 2026-11-25T10:00:00.100Z 1 (missing)");
	assert_string_equal(state_of(st, 41000, T0 + 6001),
			    "time_wait 2026-11-25T10:00:06.001Z 1 (missing)");
	assert_string_equal(state_of(st, 41000, T0 + 7999),
			    "time_wait 2026-11-25T10:00:06.001Z 1 (missing)");
	assert_string_equal(state_of(st, 41000, T0 + 8000),
			    "time_wait 2026-11-25T10:00:06.001Z 0 gap 1 "
			    "(enobufs, 2026-11-25T10:00:08.000Z to "
			    "2026-11-25T10:00:08.500Z) covers part of its time "
			    "in this state: a change may have been missed");
	/* B: found changed, so when is not known */
	assert_string_equal(state_of(st, 41001, T0 + 7000),
			    "time_wait 2026-11-25T10:00:07.000Z 0 found in this "
			    "state at 2026-11-25T10:00:07.000Z by a table dump "
			    "or a check, no event said when: it began at or "
			    "before then");
	assert_string_equal(state_of(st, 41001, T0 + 6999),
			    "(missing) (missing) 0 established at its start "
			    "(2026-11-25T10:00:00.200Z), time_wait from "
			    "2026-11-25T10:00:07.000Z (found then by a table "
			    "dump or a check: it changed earlier): the states "
			    "between are not kept, so the state at this moment "
			    "is not known");
	/* C, unchanged, before the gap: exact; across it: not */
	assert_string_equal(state_of(st, 41002, T0 + 7999),
			    "established 2026-11-25T10:00:00.302Z 1 (missing)");
	assert_string_equal(state_of(st, 41002, T0 + 9000),
			    "established 2026-11-25T10:00:00.302Z 0 gap 1 "
			    "(enobufs, 2026-11-25T10:00:08.000Z to "
			    "2026-11-25T10:00:08.500Z) covers part of its time "
			    "in this state: a change may have been missed");
	/* after the log's last write: a later change is not in it */
	doc = lookup(st, 41002, T0 + 20000);
	assert_string_equal(jtype(doc, "$.holders[0].state_exact"), "false");
	assert_non_null(strstr(jtext(doc, "$.holders[0].state_note"),
			       "a later change is not in it"));
	free(doc);
	assert_int_equal(store_json_ports(st, &pub, IPPROTO_TCP,
					  STORE_PORTS_LIVE, T0 + 11000, &doc), 0);
	assert_string_equal(jtext(doc, "$.runs"),
			    "[[41000,1,0,0,7],[41001,1,1,0,7],[41002,1,2,0,3]]");
	assert_string_equal(jtext(doc, "$.states"),
			    "{\"established\":1,\"time_wait\":2}");
	free(doc);

	/* batch 3: B closes then ends (a change and an end of a mapping
	 * open on disk in one batch); A ends */
	add(&b, srec(T0 + 11000, STORE_MAPLOG_STATE, 41001, 3, 8));
	add(&b, srec(T0 + 11500, STORE_MAPLOG_END, 41001, 3, 8));
	add(&b, srec(T0 + 12000, STORE_MAPLOG_END, 41000, 2, 7));
	/* D (41003): a whole connection's changes in one batch */
	add(&b, srec(T0 + 12100, 0, 41003, 5, 1));
	add(&b, srec(T0 + 12101, STORE_MAPLOG_STATE, 41003, 5, 2));
	add(&b, srec(T0 + 12102, STORE_MAPLOG_STATE, 41003, 5, 3));
	add(&b, srec(T0 + 13102, STORE_MAPLOG_STATE, 41003, 5, 4));
	add(&b, srec(T0 + 13103, STORE_MAPLOG_STATE, 41003, 5, 7));
	write_at(st, &b, T0, T0 + 15000);
	assert_string_equal(state_of(st, 41003, T0 + 12100),
			    "syn_sent 2026-11-25T10:00:12.100Z 1 (missing)");
	assert_string_equal(state_of(st, 41003, T0 + 12102),
			    "established 2026-11-25T10:00:12.102Z 1 (missing)");
	assert_string_equal(state_of(st, 41003, T0 + 13101),
			    "established 2026-11-25T10:00:12.102Z 1 (missing)");
	assert_string_equal(state_of(st, 41003, T0 + 13102),
			    "(missing) (missing) 0 syn_sent at its start "
			    "(2026-11-25T10:00:12.100Z), established from "
			    "2026-11-25T10:00:12.102Z to 2026-11-25T10:00:13.102Z, "
			    "time_wait from 2026-11-25T10:00:13.103Z: the states "
			    "between are not kept, so the state at this moment "
			    "is not known");
	assert_string_equal(state_of(st, 41003, T0 + 13103),
			    "time_wait 2026-11-25T10:00:13.103Z 1 (missing)");
	assert_int_equal(store_maplog_stats(st, &ms), 0);
	assert_int_equal(ms.open, 2);
	assert_int_equal(ms.ended, 2);
	assert_string_equal(state_of(st, 41001, T0 + 11500),
			    "close 2026-11-25T10:00:11.000Z 1 (missing)");
	assert_string_equal(state_of(st, 41001, T0 + 10999),
			    "(missing) (missing) 0 established at its start "
			    "(2026-11-25T10:00:00.200Z), close from "
			    "2026-11-25T10:00:11.000Z: the states between are "
			    "not kept, so the state at this moment is not known");
	assert_string_equal(state_of(st, 41000, T0 + 12000),
			    "time_wait 2026-11-25T10:00:06.001Z 0 gap 1 "
			    "(enobufs, 2026-11-25T10:00:08.000Z to "
			    "2026-11-25T10:00:08.500Z) covers part of its time "
			    "in this state: a change may have been missed");
	/* a restart ends C, stopped: its state stays */
	store_close(st);
	st = store_open(db_path("states"), STORE_READ_WRITE);
	assert_non_null(st);
	begin_run(st, T0 + 60000);
	assert_string_equal(state_of(st, 41002, T0 + 14000),
			    "established 2026-11-25T10:00:00.302Z 0 gap 1 "
			    "(enobufs, 2026-11-25T10:00:08.000Z to "
			    "2026-11-25T10:00:08.500Z) covers part of its time "
			    "in this state: a change may have been missed");
	/* UDP has no state */
	store_batch_free(&b);
	store_close(st);
}

/* ---- the tracker feeds it ---- */

static struct ct_entry snat(uint8_t type, unsigned host, uint16_t hport,
			    uint16_t pport)
{
	struct ct_entry e;

	memset(&e, 0, sizeof(e));
	e.type = type;
	e.family = AF_INET;
	e.proto = IPPROTO_TCP;
	e.tcp_state = 3;
	e.id = host * 65536u + hport;
	memcpy(e.orig.src, (uint8_t[]){ 198, 18, 0, (uint8_t)host }, 4);
	memcpy(e.orig.dst, (uint8_t[]){ 198, 51, 100, 7 }, 4);
	e.orig.sport = hport;
	e.orig.dport = 443;
	memcpy(e.reply.src, e.orig.dst, 4);
	memcpy(e.reply.dst, (uint8_t[]){ 203, 0, 113, 1 }, 4);
	e.reply.sport = 443;
	e.reply.dport = pport;
	return e;
}

static void test_tracker_hooks(void **state)
{
	struct tracker_config cfg = { .interval_s = 5 };
	struct tracker *t = tracker_new(&cfg, T0);
	struct store *st = open_fresh("tracker");
	struct store_batch b;
	struct ct_entry e;
	char *doc;

	(void)state;
	assert_non_null(t);
	store_batch_init(&b);
	begin_run(st, T0);
	/* the start-up dump finds one mapping */
	tracker_dump_begin(t, 0, T0 + 10);
	e = snat(CTMSG_DUMP, 2, 50000, 40000);
	tracker_entry(t, &e, T0 + 20);
	e = snat(CTMSG_DUMP, 3, 50001, 40001);
	tracker_entry(t, &e, T0 + 20);
	tracker_dump_end(t, 0, 0, 0, T0 + 30);
	/* events: a NEW, a DESTROY */
	e = snat(CTMSG_NEW, 4, 50002, 40002);
	tracker_entry(t, &e, T0 + 100);
	e = snat(CTMSG_DESTROY, 4, 50002, 40002);
	tracker_entry(t, &e, T0 + 300);
	/* 40000's DESTROY is lost and its tuple reused by another host: the
	 * NEW starts a new mapping, the old one ends there, uncertain */
	e = snat(CTMSG_NEW, 9, 50009, 40000);
	tracker_entry(t, &e, T0 + 350);
	tracker_quiet(t, 0, T0 + 400);
	/* a resync whose dump no longer has 40001: swept */
	tracker_dump_begin(t, 0, T0 + 500);
	e = snat(CTMSG_DUMP, 2, 50000, 40000);
	tracker_entry(t, &e, T0 + 510);
	tracker_dump_end(t, 0, 0, 0, T0 + 600);
	assert_int_equal(tracker_snapshot(t, &b, 1, T0 + 1000, T0 + 1000), 0);
	/* starts of 40000 and 40001 (unknown), 40002 start and end, and
	 * the sweep's end of 40001 */
	assert_int_equal(b.n_maplog, 6);
	assert_int_equal(nth(&b, 0).flags, STORE_MAPLOG_START_UNKNOWN);
	assert_int_equal(nth(&b, 2).flags, 0);
	assert_int_equal(nth(&b, 2).ms, T0 + 100);
	assert_int_equal(nth(&b, 2).host_port, 50002);
	assert_int_equal(nth(&b, 3).flags, STORE_MAPLOG_END);
	assert_int_equal(nth(&b, 3).ms, T0 + 300);
	assert_int_equal(nth(&b, 4).flags, 0); /* the reuse's start */
	assert_int_equal(nth(&b, 4).public_port, 40000);
	assert_int_equal(nth(&b, 4).ms, T0 + 350);
	/* the resync's dump record of 40000 changes the host back: no
	 * record (the ledger keeps one mapping per key) */
	assert_int_equal(nth(&b, 5).flags,
			 STORE_MAPLOG_END | STORE_MAPLOG_END_UNCERTAIN);
	assert_int_equal(nth(&b, 5).ms, T0 + 600);
	assert_int_equal(nth(&b, 5).public_port, 40001);
	b.status.started_ms = T0;
	b.full = 1;
	assert_int_equal(store_write(st, &b), 0);

	doc = lookup(st, 40002, T0 + 300);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtext(doc, "$.holders[0].internal.ip"), "198.18.0.4");
	assert_int_equal(jint(doc, "$.holders[0].internal.port"), 50002);
	assert_string_equal(jtype(doc, "$.holders[0].uncertain"), "false");
	free(doc);
	doc = lookup(st, 40001, T0 + 550);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtype(doc, "$.holders[0].start_known"), "false");
	assert_string_equal(jtext(doc, "$.holders[0].end"),
			    "2026-11-25T10:00:00.600Z");
	free(doc);
	doc = lookup(st, 40000, T0 + 900);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtype(doc, "$.holders[0].end"), "null");
	assert_string_equal(jtext(doc, "$.holders[0].internal.ip"), "198.18.0.9");
	assert_string_equal(jtype(doc, "$.holders[0].uncertain"), "false");
	free(doc);
	/* before the reuse: the first holder, its end not reported */
	doc = lookup(st, 40000, T0 + 200);
	assert_int_equal(jlen(doc, "$.holders"), 1);
	assert_string_equal(jtext(doc, "$.holders[0].internal.ip"), "198.18.0.2");
	assert_string_equal(jtext(doc, "$.holders[0].end"),
			    "2026-11-25T10:00:00.350Z");
	assert_string_equal(jtype(doc, "$.holders[0].uncertain"), "true");
	free(doc);
	store_batch_free(&b);
	store_close(st);
	tracker_free(t);
}

/* What the log costs per mapping: the collector's append (a start and an
 * end) and the writer's store_write() of a realistic interval (500,000
 * mappings of 4 public IPs, 4096 hosts, 256 destinations, 60% ending in
 * the same interval, the rest in the next). */
static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The tracker appends a state record for a real change only: from an
 * UPDATE event exact, from a dump "seen". */
static void test_tracker_states(void **state)
{
	struct tracker_config cfg = { .interval_s = 5 };
	struct tracker *t = tracker_new(&cfg, T0);
	struct store_batch b;
	struct ct_entry e;

	(void)state;
	assert_non_null(t);
	store_batch_init(&b);
	tracker_dump_begin(t, 0, T0 + 10);
	e = snat(CTMSG_DUMP, 2, 50000, 40000); /* established */
	tracker_entry(t, &e, T0 + 20);
	tracker_dump_end(t, 0, 0, 0, T0 + 30);
	e = snat(CTMSG_NEW, 4, 50002, 40002);
	e.tcp_state = 1; /* syn_sent */
	tracker_entry(t, &e, T0 + 100);
	e.type = CTMSG_UPDATE; /* the same state: no record */
	tracker_entry(t, &e, T0 + 101);
	e.tcp_state = 3;
	tracker_entry(t, &e, T0 + 102);
	e.tcp_state = NS_TCP_STATE_UNKNOWN; /* no protoinfo: kept */
	tracker_entry(t, &e, T0 + 103);
	tracker_quiet(t, 0, T0 + 200);
	/* a resync's dump finds 40000 in time_wait, no event said so */
	tracker_dump_begin(t, 0, T0 + 500);
	e = snat(CTMSG_DUMP, 2, 50000, 40000);
	e.tcp_state = NS_TCP_TIME_WAIT;
	tracker_entry(t, &e, T0 + 510);
	e = snat(CTMSG_DUMP, 4, 50002, 40002);
	tracker_entry(t, &e, T0 + 510);
	tracker_dump_end(t, 0, 0, 0, T0 + 600);
	assert_int_equal(tracker_snapshot(t, &b, 1, T0 + 1000, T0 + 1000), 0);
	assert_int_equal(b.n_maplog, 4);
	assert_int_equal(nth(&b, 0).flags, STORE_MAPLOG_START_UNKNOWN);
	assert_int_equal(nth(&b, 0).state, 3);
	assert_int_equal(nth(&b, 1).flags, 0);
	assert_int_equal(nth(&b, 1).state, 1);
	assert_int_equal(nth(&b, 2).flags, STORE_MAPLOG_STATE);
	assert_int_equal(nth(&b, 2).state, 3);
	assert_int_equal(nth(&b, 2).ms, T0 + 102);
	assert_int_equal(nth(&b, 2).public_port, 40002);
	assert_int_equal(nth(&b, 3).flags,
			 STORE_MAPLOG_STATE | STORE_MAPLOG_STATE_SEEN);
	assert_int_equal(nth(&b, 3).state, NS_TCP_TIME_WAIT);
	assert_int_equal(nth(&b, 3).ms, T0 + 510);
	assert_int_equal(nth(&b, 3).public_port, 40000);
	store_batch_free(&b);
	tracker_free(t);
}

/* Consecutive ports of one host toward one bucket split into runs by
 * state. */
static void test_port_map_states(void **state)
{
	struct store *st = open_fresh("ports-states");
	struct store_batch b;
	struct ns_addr pub = A("203.0.113.1");
	char *doc;

	(void)state;
	store_batch_init(&b);
	begin_run(st, T0);
	add(&b, srec(T0 + 100, 0, 42000, 2, 3));
	add(&b, srec(T0 + 100, 0, 42001, 2, 3));
	add(&b, srec(T0 + 100, 0, 42002, 2, NS_TCP_TIME_WAIT));
	add(&b, srec(T0 + 100, 0, 42003, 2, NS_TCP_STATE_UNKNOWN));
	add(&b, srec(T0 + 100, 0, 42004, 2, NS_TCP_STATE_UNKNOWN));
	write_at(st, &b, T0, T0 + 5000);
	assert_int_equal(store_json_ports(st, &pub, IPPROTO_TCP,
					  STORE_PORTS_LIVE, T0 + 6000, &doc), 0);
	assert_string_equal(jtext(doc, "$.runs"),
			    "[[42000,2,0,0,3],[42002,1,0,0,7],"
			    "[42003,2,0,0,null]]");
	assert_string_equal(jtext(doc, "$.states"),
			    "{\"established\":2,\"time_wait\":1}");
	assert_int_equal(jint(doc, "$.state_unknown"), 2);
	assert_int_equal(jlen(doc, "$.tcp_states"), NS_TCP_STATES);
	free(doc);
	/* other protocols: no state, runs of four */
	assert_int_equal(store_json_ports(st, &pub, IPPROTO_UDP,
					  STORE_PORTS_LIVE, T0 + 6000, &doc), 0);
	assert_string_equal(jtype(doc, "$.tcp_states"), "null");
	assert_string_equal(jtype(doc, "$.states"), "null");
	assert_string_equal(jtype(doc, "$.state_unknown"), "null");
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

static void test_costs(void **state)
{
	enum { N = 500000 };
	struct mapbuf mb;
	struct ledger_mapping m;
	struct store *st = open_fresh("costs");
	struct store_batch b;
	struct store_maplog_stats ms;
	uint64_t x = 7;
	double t0, t_app, t_w1, t_w2;

	(void)state;
	mapbuf_init(&mb);
	store_batch_init(&b);
	begin_run(st, T0);
	memset(&m, 0, sizeof(m));
	m.family = AF_INET;
	m.proto = IPPROTO_TCP;
	m.kind = NS_KIND_NAT;
	m.public_ip[0] = 203; m.public_ip[2] = 113;
	m.host_ip[0] = 198; m.host_ip[1] = 18;
	m.dest_ip[0] = 198; m.dest_ip[1] = 51; m.dest_ip[2] = 100;
	m.dest_port = 443;
	t0 = cpu_now();
	for (unsigned i = 0; i < N; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		m.public_ip[3] = (uint8_t)(1 + i % 4);
		m.public_port = (uint16_t)(1024 + (i / 4) % 64000);
		m.host_ip[2] = (uint8_t)((x >> 40) % 16);
		m.host_ip[3] = (uint8_t)(x >> 48);
		m.dest_ip[3] = (uint8_t)(x >> 56);
		m.dest_ip[2] = (uint8_t)(100 + (i / 4) / 64000); /* unique keys */
		mapbuf_start(&mb, &m, (uint16_t)(32768 + (x >> 20) % 28000),
			     T0 + i / 100, 0);
		if (i % 5 < 3)
			mapbuf_end(&mb, &m, 0, T0 + i / 100 + 2000, 0);
	}
	t_app = cpu_now() - t0;
	mapbuf_hand(&mb, &b);
	b.status.started_ms = T0;
	b.status.as_of_ms = T0 + 5000;
	t0 = cpu_now();
	assert_int_equal(store_write(st, &b), 0);
	t_w1 = cpu_now() - t0;
	store_batch_clear(&b);
	/* the next interval: the rest end */
	x = 7;
	for (unsigned i = 0; i < N; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		m.public_ip[3] = (uint8_t)(1 + i % 4);
		m.public_port = (uint16_t)(1024 + (i / 4) % 64000);
		m.host_ip[2] = (uint8_t)((x >> 40) % 16);
		m.host_ip[3] = (uint8_t)(x >> 48);
		m.dest_ip[3] = (uint8_t)(x >> 56);
		m.dest_ip[2] = (uint8_t)(100 + (i / 4) / 64000);
		if (i % 5 >= 3)
			mapbuf_end(&mb, &m, 0, T0 + 5000 + i / 100, 0);
	}
	mapbuf_hand(&mb, &b);
	b.status.started_ms = T0;
	b.status.as_of_ms = T0 + 10000;
	t0 = cpu_now();
	assert_int_equal(store_write(st, &b), 0);
	t_w2 = cpu_now() - t0;
	assert_int_equal(store_maplog_stats(st, &ms), 0);
	assert_int_equal(ms.ended, N);
	assert_int_equal(ms.open, 0);
	printf("maplog: collector append %.0f ns per mapping (start + end); "
	       "writer %.2f us per mapping (%.2f s + %.2f s for %d); "
	       "%.1f B per mapping\n", 1e9 * t_app / N,
	       1e6 * (t_w1 + t_w2) / N, t_w1, t_w2, N,
	       (double)ms.bytes / N);
	/* times are the benchmark's (bench/run --scenarios maplog): not
	 * asserted here, where sanitizers and a shared machine change them;
	 * the size is the codec's and is */
	assert_true((double)ms.bytes / N < 40);
	mapbuf_free(&mb);
	store_batch_free(&b);
	store_close(st);
}

/* ---- the port map (store/portmap.c) ---- */

static char *ports_doc(struct store *st, int64_t at)
{
	struct ns_addr ip = A("203.0.113.1");
	char *doc = NULL;

	assert_int_equal(store_json_ports(st, &ip, IPPROTO_TCP, at,
					  T0 + 60000, &doc), 0);
	assert_non_null(doc);
	return doc;
}

/* The runs of doc as text, "[first,count,host,dest],..." */
static const char *ports_runs(const char *doc)
{
	return jcall("json_extract", doc, "$.runs");
}

static void test_port_map(void **state)
{
	struct store *st = open_fresh("ports");
	struct store_batch b;
	struct store_gap_row *g;
	struct ns_addr other = A("203.0.113.9");
	char *doc;

	(void)state;
	store_batch_init(&b);
	begin_run(st, T0);
	/* host 2 takes 40000-40002 toward .7 (40001 from 10:00:00.200 to
	 * 10:00:01.000); host 3 takes 40003 toward .7 and shares 40000,
	 * toward .8; a low original port draws from 1-511 */
	add(&b, rec(T0 + 100, 0, 40000, 2, 51000, 7));
	add(&b, rec(T0 + 200, 0, 40001, 2, 51001, 7));
	add(&b, rec(T0 + 300, 0, 40002, 2, 51002, 7));
	add(&b, rec(T0 + 400, 0, 40003, 3, 51003, 7));
	add(&b, rec(T0 + 500, 0, 40000, 3, 51004, 8));
	add(&b, rec(T0 + 1000, STORE_MAPLOG_END, 40001, 2, 51001, 7));
	add(&b, rec(T0 + 600, 0, 300, 4, 300, 9));
	add(&b, rec(T0 + 700, STORE_MAPLOG_END, 300, 4, 300, 9));
	/* the start-up dump ended at 10:00:00.090: history starts there */
	b.hist.start_ms = T0 + 90;
	b.hist.end_ms = T0 + 5000;
	b.hist.exact = 1;
	b.hist.state = STORE_STATE_RUNNING;
	write_at(st, &b, T0, T0 + 5000);

	/* the exact end of 40001: still held */
	doc = ports_doc(st, T0 + 1000);
	assert_string_equal(ports_runs(doc),
			    "[[40000,3,0,0,3],[40000,1,1,1,3],[40003,1,1,0,3]]");
	assert_string_equal(jtype(doc, "$.live"), "false");
	assert_string_equal(jtype(doc, "$.state"), "null");
	assert_string_equal(jtext(doc, "$.at"), "2026-11-25T10:00:01.000Z");
	assert_string_equal(jtext(doc, "$.public_ip"), "203.0.113.1");
	assert_string_equal(jtext(doc, "$.proto"), "tcp");
	assert_int_equal(jint(doc, "$.ports_in_use"), 4);
	assert_int_equal(jint(doc, "$.mappings"), 5);
	assert_int_equal(jint(doc, "$.shared_ports"), 1);
	assert_int_equal(jint(doc, "$.multi_host_ports"), 1);
	assert_int_equal(jint(doc, "$.port_space"), 65535);
	assert_int_equal(jlen(doc, "$.hosts"), 2);
	assert_string_equal(jtext(doc, "$.hosts[0].ip"), "198.18.0.2");
	assert_string_equal(jtext(doc, "$.hosts[0].kind"), "nat");
	assert_int_equal(jint(doc, "$.hosts[0].ports"), 3);
	assert_int_equal(jint(doc, "$.hosts[0].mappings"), 3);
	assert_string_equal(jtext(doc, "$.hosts[1].ip"), "198.18.0.3");
	assert_int_equal(jint(doc, "$.hosts[1].ports"), 2);
	assert_int_equal(jlen(doc, "$.destinations"), 2);
	assert_string_equal(jtext(doc, "$.destinations[0].ip"), "198.51.100.7");
	assert_int_equal(jint(doc, "$.destinations[0].port"), 443);
	assert_int_equal(jint(doc, "$.destinations[0].mappings"), 4);
	assert_int_equal(jint(doc, "$.destinations[0].capacity"), 64512);
	assert_string_equal(jtext(doc, "$.destinations[0].range"),
			    "[1024,65535]");
	assert_string_equal(jtext(doc, "$.destinations[1].ip"), "198.51.100.8");
	assert_string_equal(jtype(doc, "$.uncertain"), "false");
	assert_int_equal(jlen(doc, "$.reasons"), 0);
	assert_string_equal(jtype(doc, "$.coverage.complete"), "true");
	assert_string_equal(jtext(doc, "$.log.from"),
			    "2026-11-25T10:00:00.000Z");
	assert_string_equal(jtext(doc, "$.log.to"), "2026-11-25T10:00:05.000Z");
	free(doc);
	/* a millisecond later it is not */
	doc = ports_doc(st, T0 + 1001);
	assert_string_equal(ports_runs(doc),
			    "[[40000,1,0,0,3],[40000,1,1,1,3],[40002,1,0,0,3],"
			    "[40003,1,1,0,3]]");
	assert_int_equal(jint(doc, "$.hosts[0].ports"), 2);
	assert_int_equal(jint(doc, "$.hosts[0].mappings"), 2);
	free(doc);
	/* the exact start of the first; a millisecond before, nothing */
	doc = ports_doc(st, T0 + 100);
	assert_string_equal(ports_runs(doc), "[[40000,1,0,0,3]]");
	free(doc);
	doc = ports_doc(st, T0 + 99);
	assert_string_equal(ports_runs(doc), "[]");
	assert_int_equal(jint(doc, "$.ports_in_use"), 0);
	assert_string_equal(jtype(doc, "$.uncertain"), "false");
	free(doc);
	/* before the start-up dump ended: what it had not read is missing */
	doc = ports_doc(st, T0 + 89);
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	assert_non_null(strstr(jtext(doc, "$.reasons[0]"),
			       "natscope was starting: its first table dump "
			       "ended at 2026-11-25T10:00:00.090Z"));
	free(doc);
	/* the low port's bucket, between its start and end */
	doc = ports_doc(st, T0 + 650);
	assert_string_equal(ports_runs(doc),
			    "[[300,1,2,2,3],[40000,3,0,0,3],[40000,1,1,1,3],"
			    "[40003,1,1,0,3]]");
	assert_string_equal(jtext(doc, "$.destinations[2].range"), "[1,511]");
	assert_int_equal(jint(doc, "$.destinations[2].capacity"), 511);
	assert_string_equal(jtext(doc, "$.hosts[2].ip"), "198.18.0.4");
	free(doc);
	/* live: the open blocks, as of the last write */
	doc = ports_doc(st, STORE_PORTS_LIVE);
	assert_string_equal(jtype(doc, "$.live"), "true");
	assert_string_equal(jtext(doc, "$.at"), "2026-11-25T10:00:05.000Z");
	assert_string_equal(jtext(doc, "$.as_of"), "2026-11-25T10:00:05.000Z");
	assert_string_equal(ports_runs(doc),
			    "[[40000,1,0,0,3],[40000,1,1,1,3],[40002,1,0,0,3],"
			    "[40003,1,1,0,3]]");
	/* generated 55 s after the last write of a running natscope */
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	assert_non_null(strstr(jtext(doc, "$.reasons[0]"), "55.0 s ago"));
	free(doc);
	/* another public IP: nothing */
	assert_int_equal(store_json_ports(st, &other, IPPROTO_TCP,
					  STORE_PORTS_LIVE, T0 + 5000, &doc), 0);
	assert_string_equal(ports_runs(doc), "[]");
	assert_string_equal(jtype(doc, "$.uncertain"), "false");
	free(doc);

	/* events lost from 10:00:06 to 10:00:08; the resync then finds
	 * 40002 gone (end not reported) */
	g = store_batch_add_gap(&b);
	g->run_started_ms = T0;
	g->seq = 1;
	g->start_ms = T0 + 6000;
	g->end_ms = T0 + 8000;
	g->events_lost = 10;
	snprintf(g->reason, sizeof(g->reason), "enobufs");
	add(&b, rec(T0 + 8000, STORE_MAPLOG_END | STORE_MAPLOG_END_UNCERTAIN,
		    40002, 2, 0, 7));
	write_at(st, &b, T0, T0 + 10000);
	/* before the gap: held, and known held (exact until the gap) */
	doc = ports_doc(st, T0 + 5500);
	assert_string_equal(ports_runs(doc),
			    "[[40000,1,0,0,3],[40000,1,1,1,3],[40002,1,0,0,3],"
			    "[40003,1,1,0,3]]");
	assert_string_equal(jtype(doc, "$.uncertain"), "false");
	free(doc);
	/* inside the gap: shown as the log has it, and said uncertain */
	doc = ports_doc(st, T0 + 7000);
	assert_string_equal(ports_runs(doc),
			    "[[40000,1,0,0,3],[40000,1,1,1,3],[40002,1,0,0,3],"
			    "[40003,1,1,0,3]]");
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	assert_string_equal(jtype(doc, "$.coverage.complete"), "false");
	assert_int_equal(jlen(doc, "$.reasons"), 2);
	assert_non_null(strstr(jtext(doc, "$.reasons[0]"), "gap 1 (enobufs"));
	assert_non_null(strstr(jtext(doc, "$.reasons[0]"),
			       "covers this moment"));
	assert_non_null(strstr(jtext(doc, "$.reasons[1]"),
			       "1 mappings shown were found gone later"));
	assert_int_equal(jlen(doc, "$.coverage.gaps"), 1);
	assert_int_equal(jint(doc, "$.coverage.gaps[0].seq"), 1);
	free(doc);
	/* after the gap: gone */
	doc = ports_doc(st, T0 + 9000);
	assert_string_equal(ports_runs(doc),
			    "[[40000,1,1,0,3],[40000,1,0,1,3],[40003,1,0,0,3]]");
	assert_string_equal(jtype(doc, "$.uncertain"), "false");
	assert_string_equal(jtext(doc, "$.hosts[0].ip"), "198.18.0.3");
	free(doc);
	doc = ports_doc(st, STORE_PORTS_LIVE);
	assert_string_equal(ports_runs(doc),
			    "[[40000,1,1,0,3],[40000,1,0,1,3],[40003,1,0,0,3]]");
	free(doc);
	/* after the last write, and before the run */
	doc = ports_doc(st, T0 + 10001);
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	assert_non_null(strstr(jtext(doc, "$.reasons[0]"), "last write"));
	free(doc);
	doc = ports_doc(st, T0 - 1);
	assert_string_equal(jtext(doc, "$.reasons[0]"),
			    "natscope was not logging mappings at this moment");
	free(doc);
	/* natscope stopped: the live map is its last write's, and says so */
	store_status_init(&b.status);
	b.status.started_ms = T0;
	b.status.as_of_ms = T0 + 10000;
	b.status.interval_s = 5;
	b.status.state = STORE_STATE_STOPPED;
	b.full = 1;
	assert_int_equal(store_write(st, &b), 0);
	store_batch_clear(&b);
	doc = ports_doc(st, STORE_PORTS_LIVE);
	assert_string_equal(ports_runs(doc),
			    "[[40000,1,1,0,3],[40000,1,0,1,3],[40003,1,0,0,3]]");
	assert_string_equal(jtype(doc, "$.uncertain"), "true");
	assert_string_equal(jtext(doc, "$.reasons[0]"),
			    "natscope is not running (state stopped): this is "
			    "the log as of its last write, 50.0 s ago");
	assert_string_equal(jtext(doc, "$.state"), "stopped");
	free(doc);
	/* the hosts as CSV (the route's table) */
	doc = ports_doc(st, T0 + 9000);
	{
		char *csv = NULL;

		assert_int_equal(store_json_csv(st, doc, "$.hosts", &csv), 0);
		assert_string_equal(csv,
			"as_of,coverage_complete,ip,kind,ports,mappings\r\n"
			"2026-11-25T10:00:09.000Z,true,198.18.0.3,nat,2,2\r\n"
			"2026-11-25T10:00:09.000Z,true,198.18.0.2,nat,1,1\r\n");
		free(csv);
	}
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 60,000 occupied ports on one public IP, through store_write(): prints
 * how long the port map takes, live and at a moment when half of them
 * have ended since (not asserted: sanitizers and a shared machine change
 * it; the figure goes in the README). */
static void test_port_map_scale(void **state)
{
	enum { N = 60000 };
	struct store *st = open_fresh("ports60k");
	struct store_batch b;
	uint64_t x = 11;
	double t0, t_live, t_at;
	char *doc;

	(void)state;
	store_batch_init(&b);
	begin_run(st, T0);
	for (unsigned i = 0; i < N; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		add(&b, rec(T0 + i / 20, 0, (uint16_t)(1024 + i),
			    1 + (unsigned)((x >> 33) % 250),
			    (uint16_t)(32768 + (x >> 20) % 28000),
			    1 + (unsigned)((x >> 50) % 4)));
	}
	write_at(st, &b, T0, T0 + 5000);
	t0 = wall_now();
	doc = ports_doc(st, STORE_PORTS_LIVE);
	t_live = wall_now() - t0;
	assert_int_equal(jint(doc, "$.ports_in_use"), N);
	assert_int_equal(jint(doc, "$.mappings"), N);
	printf("port map: live, %d ports: %.1f ms, %zu bytes of JSON\n", N,
	       1e3 * t_live, strlen(doc));
	free(doc);
	/* half of them end: ended blocks, open blocks rewritten */
	x = 11;
	for (unsigned i = 0; i < N; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		if (i % 2)
			add(&b, rec(T0 + 6000 + i / 20, STORE_MAPLOG_END,
				    (uint16_t)(1024 + i),
				    1 + (unsigned)((x >> 33) % 250), 0,
				    1 + (unsigned)((x >> 50) % 4)));
	}
	write_at(st, &b, T0, T0 + 10000);
	t0 = wall_now();
	doc = ports_doc(st, T0 + 5500);
	t_at = wall_now() - t0;
	assert_int_equal(jint(doc, "$.ports_in_use"), N);
	assert_int_equal(jlen(doc, "$.hosts"), 250);
	assert_int_equal(jlen(doc, "$.destinations"), 4);
	printf("port map: at=, %d ports from open and ended blocks: %.1f ms\n",
	       N, 1e3 * t_at);
	free(doc);
	doc = ports_doc(st, STORE_PORTS_LIVE);
	assert_int_equal(jint(doc, "$.ports_in_use"), N / 2);
	free(doc);
	store_batch_free(&b);
	store_close(st);
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	return sqlite3_open(":memory:", &jdb) == SQLITE_OK ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	sqlite3_close(jdb);
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codec_round_trip),
		cmocka_unit_test(test_exact_edges),
		cmocka_unit_test(test_open_then_closed_across_batches),
		cmocka_unit_test(test_several_holders_and_blocks),
		cmocka_unit_test(test_gap_and_dump_seen),
		cmocka_unit_test(test_host_destinations),
		cmocka_unit_test(test_ipv6_and_protocols),
		cmocka_unit_test(test_failed_write_keeps_records),
		cmocka_unit_test(test_retention_by_age),
		cmocka_unit_test(test_retention_by_size),
		cmocka_unit_test(test_state_at),
		cmocka_unit_test(test_v1_blocks),
		cmocka_unit_test(test_states_in_log),
		cmocka_unit_test(test_tracker_hooks),
		cmocka_unit_test(test_tracker_states),
		cmocka_unit_test(test_port_map_states),
		cmocka_unit_test(test_costs),
		cmocka_unit_test(test_port_map),
		cmocka_unit_test(test_port_map_scale),
	};

	log_init("test_maplog", NS_LOG_WARN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
