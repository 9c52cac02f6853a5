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
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>
#include <time.h>

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

static int append_bench(unsigned n)
{
	struct mapbuf mb;
	struct store_batch b;
	struct ledger_mapping m;
	double t = 0;

	mapbuf_init(&mb);
	store_batch_init(&b);
	memset(&m, 0, sizeof(m));
	m.family = 2; /* AF_INET */
	m.proto = 6;
	m.kind = NS_KIND_NAT;
	memcpy(m.public_ip, (uint8_t[]){ 203, 0, 113, 1 }, 4);
	memcpy(m.dest_ip, (uint8_t[]){ 198, 51, 100, 7 }, 4);
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
	if (argc != 2) {
		fputs("usage: maplogstat DB | --append N\n", stderr);
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
	if (sqlite3_prepare_v2(db, "SELECT sum(pgsize) FROM dbstat WHERE "
			       "name LIKE 'maplog_blocks%'", -1, &s,
			       NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			pages = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
	}
	sqlite3_close(db);
	printf("{\"blocks\": %llu, \"payload_bytes\": %llu, "
	       "\"table_bytes\": %lld, \"ended\": %llu, \"open\": %llu, "
	       "\"start_unknown\": %llu, \"end_uncertain\": %llu, "
	       "\"end_stopped\": %llu}\n", blocks, bytes, pages, ended, open,
	       start_unknown, end_uncertain, stopped);
	return 0;
}
