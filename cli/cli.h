/*
 * cli.h - the natscope command's subcommands.  Each takes the arguments
 * after its name (argv[0] is the subcommand) and returns the process exit
 * status: 0 success, 1 runtime failure, 2 usage error.
 */
#ifndef NATSCOPE_CLI_H
#define NATSCOPE_CLI_H

#include <stddef.h>
#include <stdint.h>

/* natscope run: follow conntrack, keep the database, serve the API. */
int cli_run(int argc, char **argv);

/* natscope serve: the HTTP API over an existing database, read-only. */
int cli_serve(int argc, char **argv);

/* natscope import: builds or extends a database from conntrack captures. */
int cli_import(int argc, char **argv);

/* natscope top: a terminal table of public IPs and their top consumers,
 * from a running natscope (HTTP) or a database. */
int cli_top(int argc, char **argv);

/* natscope lookup: who held a public ip:port at a moment. */
int cli_lookup(int argc, char **argv);

/* natscope health: a running natscope's /healthz, as an exit status. */
int cli_health(int argc, char **argv);

/* Where the API listens unless told otherwise, and its URL. */
#define CLI_DEFAULT_LISTEN "127.0.0.1:9628"
#define CLI_DEFAULT_URL "http://" CLI_DEFAULT_LISTEN

struct store;

/* ---- a running natscope's API over HTTP (http.c, libcurl) ---- */

struct cli_http;

/* A client of the API at base ("http://127.0.0.1:9628", no trailing
 * '/').  NULL with EINVAL (a bad base) or ENOMEM. */
struct cli_http *cli_http_open(const char *base, const char *agent);

/* GET base + path: the body (caller frees, NUL-terminated) with the HTTP
 * status in *code, or NULL with why in err (a connection failure). */
char *cli_http_get(struct cli_http *h, const char *path, long *code,
		   char *err, size_t errlen);

void cli_http_close(struct cli_http *h);

/* Opens the database at path for reading: read-only, or as a frozen copy
 * (*frozen = 1, said in the log) when SQLite could not make its -shm file
 * next to it (a directory this process cannot write).  Returns 0 with *out
 * set, or -1 with the store's errno (EILSEQ: not a natscope database),
 * logged. */
int cli_open_db(const char *path, struct store **out, int *frozen);

/* Parses a whole number from lo to hi.  Returns 0, or -1 with EINVAL. */
int cli_parse_uint(const char *text, unsigned lo, unsigned hi, unsigned *out);

/* Parses a byte size with an optional K, M or G suffix (powers of 1024).
 * Returns 0, or -1 with EINVAL (garbage) or ERANGE (too large). */
int cli_parse_size(const char *text, unsigned long long *out);

/* Parses an age: a whole number with s, m, h or d ("90m", "7d") into
 * milliseconds.  Returns 0, or -1 with EINVAL or ERANGE. */
int cli_parse_duration(const char *text, int64_t *ms);

#endif
