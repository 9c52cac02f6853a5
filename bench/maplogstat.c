/*
 * maplogstat - the mapping log of a natscope database, for the benchmark:
 * opens it read-only, decodes every block and prints one JSON line:
 * blocks, payload bytes, bytes SQLite uses for the log's table and
 * indexes (dbstat, when the library has it), mappings in ended and open
 * blocks, and how many of them have an unknown start or an uncertain end.
 *
 *   maplogstat DB
 *   maplogstat --append N   times the collector's part instead: N
 *                           mappings' start and end appended to a warm
 *                           buffer (collector/mapbuf.c), ns per mapping
 *   maplogstat --write DB RATE SECONDS LIFETIME [--states]
 *                           times the writer's part alone: RATE new
 *                           TCP mappings a second for SECONDS, each
 *                           ending LIFETIME seconds later, handed over
 *                           every 5 s of simulated time (no sleeping) to
 *                           store_write() on a fresh database DB; prints
 *                           the CPU of store_write() per mapping (what
 *                           bench/run's maplog scenario measures on the
 *                           ns-writer thread, without the kernel) and
 *                           the log's bytes per mapping (payload, and
 *                           the table's pages when SQLite has dbstat).
 *                           With --states each mapping also changes
 *                           state twice, as a TCP connection's do:
 *                           established 1 ms after its start, time_wait
 *                           120 s before its end (half its life when
 *                           shorter)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "collector/mapbuf.h"
#include "common/common.h"
#include "store/store.h"

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A TCP NAT mapping 198.18.0.0 -> 198.51.100.0 via 203.0.113.1, ports 0:
 * the benchmarks vary the rest. */
static void bench_mapping(struct ledger_mapping *m)
{
	memset(m, 0, sizeof(*m));
	m->family = 2; /* AF_INET */
	m->proto = 6;
	m->kind = NS_KIND_NAT;
	memcpy(m->public_ip, (uint8_t[]){ 203, 0, 113, 1 }, 4);
	memcpy(m->host_ip, (uint8_t[]){ 198, 18, 0, 0 }, 4);
	memcpy(m->dest_ip, (uint8_t[]){ 198, 51, 100, 0 }, 4);
}

static int append_bench(unsigned n)
{
	struct mapbuf mb;
	struct store_batch b;
	struct ledger_mapping m;
	double t = 0;

	mapbuf_init(&mb);
	store_batch_init(&b);
	bench_mapping(&m);
	m.dest_ip[3] = 7;
	/* rounds 0 and 1 warm the two buffers the collector swaps */
	for (int round = 0; round < 4; round++) {
		double t0 = cpu_now();

		for (unsigned i = 0; i < n; i++) {
			m.public_port = (uint16_t)i;
			m.host_ip[3] = (uint8_t)i;
			mapbuf_start(&mb, &m, (uint16_t)(i * 7), 1000 + i, 0);
			mapbuf_end(&mb, &m, (uint16_t)(i * 7), 2000 + i, 0);
		}
		if (round >= 2)
			t += cpu_now() - t0;
		mapbuf_hand(&mb, &b);
		b.n_maplog = 0;
	}
	printf("{\"append_ns_per_mapping\": %.1f}\n", 1e9 * t / (2.0 * n));
	mapbuf_free(&mb);
	store_batch_free(&b);
	return 0;
}

/* Mapping i of the write benchmark: its key and host, from i alone (so
 * that its end names the same key as its start). */
static void write_mapping(struct ledger_mapping *m, uint64_t i,
			  uint16_t *host_port)
{
	uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ULL;

	h ^= h >> 29;
	m->public_ip[3] = (uint8_t)(1 + i % 4);
	m->public_port = (uint16_t)(1024 + (i / 4) % 64000);
	m->host_ip[2] = (uint8_t)((h >> 40) % 4);  /* 1,024 hosts */
	m->host_ip[3] = (uint8_t)(h >> 48);
	m->dest_ip[3] = (uint8_t)(1 + (h >> 56) % 30); /* 30 destinations */
	*host_port = (uint16_t)(32768 + (h >> 8) % 28000);
}

/* Bytes of the pages of the log's table and indexes (dbstat), or -1
 * when this SQLite has no dbstat. */
static long long table_bytes(sqlite3 *db)
{
	sqlite3_stmt *s;
	long long pages = -1;

	if (sqlite3_prepare_v2(db, "SELECT sum(pgsize) FROM dbstat WHERE "
			       "name LIKE 'maplog_blocks%'", -1, &s,
			       NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			pages = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
	}
	return pages;
}

/* The times of mapping i's records (ms): start, established, time_wait,
 * end (the --write mode's stream k). */
static int64_t write_time(int k, uint64_t i, int64_t t0, double rate,
			  double lifetime)
{
	int64_t ts = t0 + (int64_t)(i * 1000 / rate);
	int64_t te = t0 + (int64_t)((i / rate + lifetime) * 1000);
	int64_t tw = (int64_t)(lifetime * 1000) / 2;

	if (tw > 120000)
		tw = 120000;
	switch (k) {
	case 0: return ts;
	case 1: return ts + 1;
	case 2: return te - tw;
	default: return te;
	}
}

static int write_bench(const char *path, double rate, double seconds,
		       double lifetime, int states)
{
	struct mapbuf mb;
	struct store_batch b;
	struct store_status x;
	struct store_maplog_stats ms;
	struct ledger_mapping m;
	struct store *st;
	sqlite3 *db;
	const int64_t t0 = 1796083200000LL;
	uint64_t total = (uint64_t)(rate * seconds);
	uint64_t next[4] = { 0, 0, 0, 0 }; /* start, est., time_wait, end */
	int64_t end_ms = t0 + (int64_t)((seconds + lifetime) * 1000) + 5000;
	long long pages;
	uint64_t made;
	uint16_t hp;
	double cpu = 0;

	unlink(path);
	if (!(st = store_open(path, STORE_READ_WRITE)))
		return 1;
	store_status_init(&x);
	x.started_ms = x.as_of_ms = t0;
	x.interval_s = 5;
	x.state = STORE_STATE_STARTING;
	if (store_begin_run(st, &x) < 0)
		return 1;
	mapbuf_init(&mb);
	store_batch_init(&b);
	bench_mapping(&m);
	for (int64_t now = t0 + 5000; now <= end_ms; now += 5000) {
		double c0;

		/* starts, state changes and ends of (now - 5 s, now], in
		 * time order (at one ms: a start first, an end last) */
		for (;;) {
			int64_t best = INT64_MAX;
			int k = -1;

			for (int s = 0; s < 4; s++) {
				int64_t t;

				if ((s == 1 || s == 2) && !states)
					continue;
				if (next[s] >= (s ? next[0] : total))
					continue;
				t = write_time(s, next[s], t0, rate, lifetime);
				if (t < best) {
					best = t;
					k = s;
				}
			}
			if (k < 0 || best > now)
				break;
			write_mapping(&m, next[k]++, &hp);
			switch (k) {
			case 0:
				m.tcp_state = 1; /* syn_sent */
				mapbuf_start(&mb, &m, hp, best, 0);
				break;
			case 1:
				m.tcp_state = 3; /* established */
				mapbuf_state(&mb, &m, best, 0);
				break;
			case 2:
				m.tcp_state = NS_TCP_TIME_WAIT;
				mapbuf_state(&mb, &m, best, 0);
				break;
			default:
				mapbuf_end(&mb, &m, hp, best, 0);
			}
		}
		mapbuf_hand(&mb, &b);
		b.status.started_ms = t0;
		b.status.as_of_ms = now;
		b.status.interval_s = 5;
		b.status.state = STORE_STATE_RUNNING;
		c0 = cpu_now();
		if (store_write(st, &b) < 0)
			return 1;
		cpu += cpu_now() - c0;
		store_batch_clear(&b);
	}
	made = next[0];
	if (store_maplog_stats(st, &ms) < 0)
		return 1;
	mapbuf_free(&mb);
	store_batch_free(&b);
	store_close(st);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return 1;
	pages = table_bytes(db);
	sqlite3_close(db);
	printf("{\"mappings\": %llu, \"state_changes\": %llu, "
	       "\"writer_us_per_mapping\": %.3f, "
	       "\"payload_bytes_per_mapping\": %.2f, "
	       "\"table_bytes_per_mapping\": %.2f}\n",
	       (unsigned long long)made,
	       (unsigned long long)(next[1] + next[2]),
	       1e6 * cpu / (double)made, (double)ms.bytes / (double)made,
	       pages < 0 ? -1.0 : (double)pages / (double)made);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long long blocks = 0, bytes = 0, ended = 0, open = 0;
	unsigned long long start_unknown = 0, end_uncertain = 0, stopped = 0;
	long long pages = -1;
	sqlite3 *db;
	sqlite3_stmt *s;

	log_init("maplogstat", NS_LOG_WARN);
	if (argc == 3 && !strcmp(argv[1], "--append"))
		return append_bench((unsigned)atoi(argv[2]));
	if ((argc == 6 || (argc == 7 && !strcmp(argv[6], "--states"))) &&
	    !strcmp(argv[1], "--write"))
		return write_bench(argv[2], atof(argv[3]), atof(argv[4]),
				   atof(argv[5]), argc == 7);
	if (argc != 2) {
		fputs("usage: maplogstat DB | --append N | --write DB RATE "
		      "SECONDS LIFETIME [--states]\n", stderr);
		return 2;
	}
	if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		fprintf(stderr, "maplogstat: %s: %s\n", argv[1],
			sqlite3_errmsg(db));
		return 1;
	}
	if (sqlite3_prepare_v2(db, "SELECT open, data FROM maplog_blocks", -1,
			       &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "maplogstat: %s\n", sqlite3_errmsg(db));
		return 1;
	}
	while (sqlite3_step(s) == SQLITE_ROW) {
		struct store_maplog_entry *e;
		size_t n, len = (size_t)sqlite3_column_bytes(s, 1);

		if (store_maplog_decode(sqlite3_column_blob(s, 1), len, &e,
					&n) < 0)
			return 1;
		blocks++;
		bytes += len;
		if (sqlite3_column_int(s, 0))
			open += n;
		else
			ended += n;
		for (size_t i = 0; i < n; i++) {
			start_unknown += !!(e[i].flags &
					    STORE_MAPLOG_START_UNKNOWN);
			end_uncertain += !!(e[i].flags &
					    STORE_MAPLOG_END_UNCERTAIN);
			stopped += !!(e[i].flags & STORE_MAPLOG_END_STOPPED);
		}
		free(e);
	}
	sqlite3_finalize(s);
	pages = table_bytes(db);
	sqlite3_close(db);
	printf("{\"blocks\": %llu, \"payload_bytes\": %llu, "
	       "\"table_bytes\": %lld, \"ended\": %llu, \"open\": %llu, "
	       "\"start_unknown\": %llu, \"end_uncertain\": %llu, "
	       "\"end_stopped\": %llu}\n", blocks, bytes, pages, ended, open,
	       start_unknown, end_uncertain, stopped);
	return 0;
}
