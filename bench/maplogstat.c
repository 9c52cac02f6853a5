/*
 * maplogstat - the mapping log of a natscope database, for the benchmark:
 * opens it read-only, decodes every block and prints one JSON line:
 * blocks, payload bytes, bytes SQLite uses for the log's table and
 * indexes (dbstat, when the library has it), mappings in ended and open
 * blocks, and how many of them have an unknown start or an uncertain end.
 *
 *   maplogstat DB
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <sqlite3.h>

#include "common/common.h"
#include "store/store.h"

int main(int argc, char **argv)
{
	unsigned long long blocks = 0, bytes = 0, ended = 0, open = 0;
	unsigned long long start_unknown = 0, end_uncertain = 0, stopped = 0;
	long long pages = -1;
	sqlite3 *db;
	sqlite3_stmt *s;

	log_init("maplogstat", NS_LOG_WARN);
	if (argc != 2) {
		fputs("usage: maplogstat DB\n", stderr);
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
