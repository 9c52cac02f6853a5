/*
 * cli.h - the natscope command's subcommands.  Each takes the arguments
 * after its name (argv[0] is the subcommand) and returns the process exit
 * status: 0 success, 1 runtime failure, 2 usage error.
 */
#ifndef NATSCOPE_CLI_H
#define NATSCOPE_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
/* natscope run-web (internal, not for people): the web process natscope
 * run starts (webproc.c).  It serves the API on descriptor 3, a listening
 * socket, and writes one byte to descriptor 4 once it serves. */
int cli_run_web(int argc, char **argv);

struct store;
struct web;
struct web_config;

/* ---- settings from the environment and a file (config.c) ---- */

struct cli_config {
	char **args;   /* the flags made from them (owned) */
	size_t n;
	char **argv;   /* the argument vector getopt reads */
	int argc;
	const char *path;  /* the file, NULL none */
	int orig_argc;	   /* the command line as given */
	char **orig_argv;
};

/* Puts in front of the command line the flags that NATSCOPE_* variables
 * and the configuration file (--config FILE, taken out, or
 * NATSCOPE_CONFIG) give for the options in opts that the command line
 * does not: precedence command line > environment > file > defaults.
 * Replaces *argc and *argv (valid until cli_config_free()).  Returns 0,
 * or -1 after saying why on stderr (an unknown setting as FILE:LINE, an
 * unreadable file): a usage error. */
int cli_config(struct cli_config *c, const struct option *opts, int *argc,
	       char ***argv);
void cli_config_free(struct cli_config *c);

/* For SIGHUP: what the file now says of name, unless the command line or
 * the environment gives it (neither can change while the process runs).
 * Returns 1 with out set, 0 (nothing to reload), or -1 when the file
 * cannot be read or has an unknown setting (said). */
int cli_config_reread(const struct cli_config *c, const struct option *opts,
		      const char *name, char *out, size_t n);

/* --log-format and --log-level, for the long-running commands. */
enum { CLI_LOG_FORMAT = 0x1100, CLI_LOG_LEVEL };
#define CLI_LOG_OPTIONS                                                     \
	{ "log-format", required_argument, NULL, CLI_LOG_FORMAT },          \
	{ "log-level", required_argument, NULL, CLI_LOG_LEVEL }
#define CLI_CONFIG_USAGE                                                    \
	"  --config FILE         settings, one \"name = value\" a line (the\n" \
	"                        long flags' names); NATSCOPE_<NAME>\n"      \
	"                        variables override it, flags override both\n"\
	"  --log-format FORMAT   text (default) or json, one object a line\n" \
	"  --log-level LEVEL     error, warning, info (default) or debug\n"

/* Handles CLI_LOG_FORMAT and CLI_LOG_LEVEL: 1 taken, 0 not one of them,
 * 2 a usage error (said). */
int cli_log_option(int opt, const char *arg, const char *cmd);

/* ---- listening: --listen, tokens, TLS (net.c), for run and serve ---- */

#define CLI_LISTEN_MAX 8 /* --listen flags */
#define CLI_FDS_MAX 32	 /* sockets they open (a name: each address) */

/* getopt codes of the shared flags, and their option table entries. */
enum { CLI_NET_LISTEN = 0x1000, CLI_NET_TOKEN, CLI_NET_OPEN, CLI_NET_CERT,
       CLI_NET_KEY };
#define CLI_NET_OPTIONS                                                     \
	{ "listen", required_argument, NULL, CLI_NET_LISTEN },              \
	{ "auth-token-file", required_argument, NULL, CLI_NET_TOKEN },      \
	{ "auth-open", required_argument, NULL, CLI_NET_OPEN },             \
	{ "tls-cert", required_argument, NULL, CLI_NET_CERT },              \
	{ "tls-key", required_argument, NULL, CLI_NET_KEY }
#define CLI_NET_USAGE                                                       \
	"  --listen ADDR:PORT    where the API listens, repeatable:\n"       \
	"                        127.0.0.1:9628, [::1]:9628, :9628 (every\n"  \
	"                        address), [::]:9628, localhost:9628\n"      \
	"                        (default " CLI_DEFAULT_LISTEN ")\n"          \
	"  --auth-token-file F   require Authorization: Bearer <first line\n" \
	"                        of F> (reloaded at SIGHUP)\n"              \
	"  --auth-open PATHS     /healthz and/or /metrics (comma-separated)\n"\
	"                        answered without the token\n"              \
	"  --tls-cert FILE       serve HTTPS with this PEM certificate chain\n"\
	"  --tls-key FILE        ... and this PEM key\n"

struct cli_net {
	const char *listen[CLI_LISTEN_MAX];
	size_t n_listen;
	const char *token_file, *tls_cert_file, *tls_key_file;
	unsigned open_paths; /* WEB_OPEN_* */
	char *token, *cert, *key; /* as read */
	int fds[CLI_FDS_MAX];
	size_t n_fds;
	struct web *webs[CLI_FDS_MAX];
	size_t n_webs;
};

/* Handles one getopt code of CLI_NET_OPTIONS.  Returns 1 (taken), 0 (not
 * one of them) or 2 (a usage error, said on stderr as "natscope CMD"). */
int cli_net_option(struct cli_net *n, int opt, const char *arg,
		   const char *cmd);

/* After the flags: the default --listen, and flags that go together.
 * Returns 0 or 2 (said). */
int cli_net_check(struct cli_net *n, const char *cmd);

/* Reads the token and TLS files.  Returns 0, or -1 with errno (logged). */
int cli_net_load(struct cli_net *n);

/* Opens every listening socket (the step that may need privilege).
 * Returns 0, or -1 with errno (logged). */
int cli_net_listen(struct cli_net *n);

/* Serves the API on each socket with base and the token and TLS read.
 * Returns 0, or -1 with errno (web_start()'s, logged). */
int cli_net_start(struct cli_net *n, const struct web_config *base);

/* SIGHUP: reads the token file again and hands it to every listener; a
 * file that cannot be read keeps the token in use.  Returns 0 or -1. */
int cli_net_reload(struct cli_net *n);

/* Stops serving and forgets the secrets. */
void cli_net_stop(struct cli_net *n);

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

/* ---- privileges (privsep.c, libcap-ng) ----
 *
 * Capabilities belong to threads: these change the calling thread only,
 * so call them before the process starts any thread. */

struct cli_priv_user {
	uid_t uid;
	gid_t gid; /* the user's primary group */
	char name[64];
};

/* Looks up a user by name.  Returns 0, or -1 with errno ENOENT (no such
 * user), EINVAL (an empty or overlong name) or the lookup's error. */
int cli_priv_user_lookup(const char *name, struct cli_priv_user *u);

/* 1 if CAP_NET_ADMIN is in this thread's permitted set, else 0. */
int cli_priv_have_net_admin(void);

/* Gives u the database at path and its -wal, -shm and -journal files,
 * those that exist, and when the database does not exist makes it, empty
 * and u's (*made = 1): SQLite, opening it as root, then makes its -wal and
 * -shm u's too.  Call before the database is opened: closing a descriptor
 * of a file drops every POSIX lock the process holds on it, SQLite's
 * included.  A symbolic link or a file with several links is refused
 * (EPERM): the directory may be writable by u.  Needs CAP_CHOWN.  Returns
 * 0, or -1 with errno (logged). */
int cli_priv_chown_db(const char *path, const struct cli_priv_user *u,
		      int *made);

/* Removes the database at path and its -wal and -shm, made for a run
 * that failed to start (cli_priv_chown_db()'s *made); logs what it
 * cannot remove. */
void cli_priv_unmake_db(const char *path);

/* The collector's privileges: CAP_NET_ADMIN effective and permitted and
 * no other capability; inheritable and ambient sets empty; the bounding
 * set emptied when this process may (CAP_SETPCAP); no_new_privs set.
 * With u (not NULL), also switches to u's uid and primary gid, without
 * supplementary groups, keeping CAP_NET_ADMIN across the switch.  Checks
 * the result with the kernel.  Returns 0, or -1 with errno EPERM
 * (logged). */
int cli_priv_keep_net_admin(const struct cli_priv_user *u);

/* Drops every capability (the bounding set too when it may) and sets
 * no_new_privs; checks with the kernel that none is left.  Returns 0, or
 * -1 with errno EPERM (logged). */
int cli_priv_drop_all(void);

/* ---- the web process of natscope run (webproc.c) ----
 *
 * natscope run serves its API from a process of its own that holds no
 * capability and shares nothing with the collector but the database file
 * (read-only) and the listening socket.  It is started with fork() and
 * exec of this same binary (natscope run-web), so it begins with a fresh
 * image: nothing of the collector's memory, and safe to start again from
 * a process that runs threads.  A supervisor thread restarts it when it
 * dies (after 1 s, doubling up to 60 s while it keeps dying within a
 * minute). */

struct cli_webproc;

struct cli_webproc_config {
	const char *db_path;	/* the database the collector writes */
	unsigned interval_s;	/* the collector's write interval */
	int64_t run_started_ms; /* this run's start (web_config) */
	int stop_fd; /* readable while the run is stopping (the signalfd for
			SIGINT/SIGTERM): no restart then; -1 none */
	int hup_fd;  /* a signalfd for SIGHUP and SIGUSR1, which the
			supervisor reads and logs; -1 none */
	int verbose; /* the web process logs debug lines too */
	struct cli_net *net; /* its sockets (taken over), token, TLS */
	double warn, critical; /* the dashboard's thresholds (0-1] */
	/* At SIGHUP, on the supervisor's thread: reloads what can be and
	 * updates cfg's thresholds.  Returns 1 when the web process must be
	 * started again to show it, 0 when not, -1 when nothing could be
	 * reloaded (said).  NULL: SIGHUP only goes on to the web process. */
	int (*reload)(void *arg, struct cli_webproc_config *cfg);
	void *reload_arg;
};

/* Starts the web process serving on cfg->net's sockets, which it takes
 * over (net->n_fds becomes 0; they are kept to start the process again
 * and closed by cli_webproc_stop()), and waits until it serves.  Returns NULL with errno
 * if it does not: EIO (it exited; its log says why), ETIMEDOUT (not
 * serving within 10 s), or a fork/exec error.  Call from the thread that
 * outlives the web process: it is the one whose exit signals it. */
struct cli_webproc *cli_webproc_start(const struct cli_webproc_config *cfg);

/* Stops the supervisor and the web process (SIGTERM, SIGKILL after 3 s)
 * and frees wp.  NULL allowed. */
void cli_webproc_stop(struct cli_webproc *wp);

#endif
