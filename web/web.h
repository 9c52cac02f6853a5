/*
 * web.h - the HTTP API.  Reads only the store (its own read-only SQLite
 * connection), never the collector's memory, so the same code can serve a
 * copied database.
 *
 * Errors follow common.h: -1/NULL with errno set, detail logged here.
 */
#ifndef NATSCOPE_WEB_H
#define NATSCOPE_WEB_H

#include <stdint.h>
#include <sys/socket.h>

struct web;

struct web_config {
	const char *db_path;  /* the database the collector writes */
	unsigned interval_s;  /* the collector's write interval (for /healthz) */
	/* The run this process is starting (its status.started_ms): until
	 * the status row is that run's (and this process's pid), every answer
	 * but "/" is 503 "starting", since the tables are still the previous
	 * run's.  0: serve the file as it is (a copied database). */
	int64_t run_started_ms;
	/* The process that writes that run's status row (its pid), when it
	 * is not this one: natscope run serves from a process of its own.
	 * 0: this process. */
	int64_t run_pid;
	/* Read the file as a frozen copy (store.h STORE_IMMUTABLE): for a
	 * database in a directory this process cannot write. */
	int frozen;
};

/* Opens the API's listening socket on spec, "ADDR:PORT" ("127.0.0.1:9628",
 * "[::1]:9628"): bound, listening, close-on-exec.  This is the only step
 * that may need privilege (a port below 1024); a caller can do it first
 * and hand the descriptor to web_start() in a process that holds none.
 * Returns the descriptor, or -1 with errno (logged): EINVAL for a bad
 * spec, EADDRINUSE, EACCES, EADDRNOTAVAIL. */
int web_listen(const char *spec);

/* Serves the API on listen_fd (from web_listen()), which it takes over: it
 * is closed by web_stop(), or before web_start() returns NULL.  Opens the
 * database read-only and starts serving on libmicrohttpd's own thread.
 * Returns NULL with errno: the store's (ENOENT: no database yet), EBADF
 * for a descriptor that is no listening socket, or EIO when libmicrohttpd
 * cannot start (it logs why). */
struct web *web_start(int listen_fd, const struct web_config *cfg);

/* Stops serving, joins the thread, closes the database.  NULL allowed. */
void web_stop(struct web *w);

/* The TCP port the listening socket is bound to (the kernel's choice when
 * the listen spec said port 0). */
uint16_t web_bound_port(const struct web *w);

/* Parses "ADDR:PORT" ("[v6]:PORT" for IPv6) into *ss.  Returns 0, or -1
 * with errno EINVAL.  Exposed for the command line and the tests. */
int web_parse_listen(const char *spec, struct sockaddr_storage *ss,
		     socklen_t *len);

#define WEB_LIMIT_DEFAULT 50
#define WEB_LIMIT_MAX 10000

/* Parses a "limit" query value: decimal digits only, 1..WEB_LIMIT_MAX.
 * Returns 0 with *limit set, or -1 with errno EINVAL. */
int web_parse_limit(const char *text, unsigned *limit);

#endif
