/*
 * web.h - the HTTP API and the dashboard ("/" for a browser, its files
 * compiled into the binary under /ui/).  Reads only the store (its own read-only SQLite
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
	/* The dashboard's warn and critical thresholds, of capacity (0-1],
	 * as `natscope run --warn/--critical` gives them to incidents.  0:
	 * the defaults, 0.7 and 0.9. */
	double warn, critical;
	/* Bearer-token authentication: when token is set (web_start() keeps
	 * a copy; web_set_token() replaces it), every request must carry
	 * "Authorization: Bearer TOKEN", compared in constant time, but
	 * those to the paths open_paths names (WEB_OPEN_*), for probes and
	 * scrapers; others get 401.  NULL: no authentication. */
	const char *token;
	unsigned open_paths;
	/* TLS (GnuTLS, through libmicrohttpd): the certificate chain and the
	 * key as PEM text.  NULL: plain HTTP. */
	const char *tls_cert, *tls_key;
};

#define WEB_OPEN_HEALTHZ 0x1 /* /healthz without the token */
#define WEB_OPEN_METRICS 0x2 /* /metrics without the token */

/* Connections: at most WEB_PER_IP_CONNECTIONS from one client address and
 * WEB_MAX_CONNECTIONS in all; one idle for WEB_TIMEOUT_S seconds (headers
 * trickled, or nothing sent) is closed.  So clients from one address
 * cannot hold the API away from a probe or a scraper on another. */
#define WEB_MAX_CONNECTIONS 512
#define WEB_PER_IP_CONNECTIONS 16
#define WEB_TIMEOUT_S 10

/* Opens every listening socket spec names, bound, listening and
 * close-on-exec: "127.0.0.1:9628"; "[::1]:9628"; ":9628" (every address:
 * one IPv6 socket that takes IPv4 too, or IPv4 alone without IPv6);
 * "[::]:9628" (the same, IPv6 required); "NAME:9628" (every address the
 * name resolves to: localhost gives 127.0.0.1 and ::1).  Fills fds[0..max)
 * and returns how many (>= 1), or -1 with errno (logged): EINVAL (syntax),
 * EADDRNOTAVAIL (a name that does not resolve), EOVERFLOW (more than max
 * addresses), EADDRINUSE, EACCES.  The step that may need privilege: do it
 * first and hand the descriptors to web_start(). */
int web_listen_all(const char *spec, int *fds, size_t max);

/* Whether spec has web_listen_all()'s syntax (names are not resolved).
 * Returns 0, or -1 with EINVAL. */
int web_check_listen(const char *spec);

/* Replaces the bearer token (NULL: none) of a running API, e.g. at
 * SIGHUP; safe while it serves.  Returns 0, or -1 with ENOMEM (the old
 * token stays). */
int web_set_token(struct web *w, const char *token);

/* Reads a token file: its first line without surrounding white space.
 * Returns it (malloc'd), or NULL with errno (logged): the file's, EINVAL
 * for an empty token, EPERM when anyone may read the file (mode o+r). */
char *web_read_token_file(const char *path);

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
