/*
 * serve.c - natscope serve: the HTTP API over an existing database, read
 * only, with no conntrack and no privilege: a copy taken off a gateway
 * for a postmortem, or the output of natscope import.
 *
 * A WAL database is read with its -shm file, which SQLite creates next to
 * it; in a directory this process cannot write (a copy on read-only
 * media, a mount made read-only) it is read as a frozen copy instead
 * (SQLite's immutable=1), and the log says so.
 */
#include "cli/cli.h"
#include "common/common.h"
#include "store/store.h"
#include "web/web.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>


static void serve_usage(FILE *f)
{
	fputs("usage: natscope serve --db FILE [--listen ADDR:PORT]... [options]\n"
	      "\n"
	      "Serves the HTTP API from an existing natscope database, read-only:\n"
	      "a copy taken from a gateway, or one natscope import built.  Needs\n"
	      "no privilege and does not touch conntrack.  In a directory it cannot\n"
	      "write, the file is read as a frozen copy.\n"
	      "\n"
	      "options:\n"
	      "  --db FILE             the database (required)\n"
	      CLI_NET_USAGE
	      CLI_CONFIG_USAGE
	      "  -v, --verbose         debug logging\n"
	      "  -h, --help            this text\n",
	      f);
}

/* Whether SQLite can make its -shm file next to path. */
static int serve_dir_writable(const char *path)
{
	char copy[PATH_MAX];

	snprintf(copy, sizeof(copy), "%s", path);
	return access(dirname(copy), W_OK) == 0;
}

static off_t serve_file_size(const char *path, const char *suffix)
{
	char name[PATH_MAX + 8];
	struct stat sb;

	snprintf(name, sizeof(name), "%s%s", path, suffix);
	return stat(name, &sb) == 0 ? sb.st_size : -1;
}

int cli_open_db(const char *path, struct store **out, int *frozen)
{
	struct store *st;
	off_t wal;

	*out = NULL;
	*frozen = 0;
	if (serve_dir_writable(path) || serve_file_size(path, "-shm") >= 0) {
		st = store_open(path, STORE_READ_ONLY);
		if (st || (errno != EROFS && errno != EACCES && errno != EIO)) {
			*out = st;
			return st ? 0 : -1;
		}
	}
	st = store_open(path, STORE_IMMUTABLE);
	if (!st)
		return -1;
	*frozen = 1;
	*out = st;
	log_info("%s: its directory is not writable, so it is read as a "
		 "frozen copy: changes to the file are not seen", path);
	wal = serve_file_size(path, "-wal");
	if (wal > 0)
		log_warnx("%s-wal holds %lld bytes that a frozen copy cannot "
			  "read: the last writes before the copy are not shown "
			  "(copy a database after natscope stopped, or with "
			  "sqlite3 FILE '.backup COPY')", path, (long long)wal);
	return 0;
}

/* A line on what is served: the run that wrote it, as of when. */
static void serve_describe(struct store *st, const char *db,
			   const char *scheme, const char *listen, int frozen,
			   unsigned *interval)
{
	struct store_status s;
	char asof[NS_TIME_STRLEN];

	if (store_read_status(st, &s) < 0) {
		log_info("serving %s%s on %s://%s/: no run has written it "
			 "yet", db, frozen ? " (frozen copy)" : "", scheme,
			 listen);
		return;
	}
	if (s.interval_s)
		*interval = (unsigned)s.interval_s;
	log_info("serving %s read-only%s on %s://%s/: state %s, figures "
		 "as of %s%s%s", db, frozen ? " (frozen copy)" : "", scheme,
		 listen,
		 store_state_name((enum store_state)s.state),
		 s.as_of_ms > 0 ? ns_time_format(s.as_of_ms, asof) : "never",
		 *s.note ? "; " : "", s.note);
	if (s.state != STORE_STATE_STOPPED)
		log_info("the status row says %s: if that natscope still runs, "
			 "its writes show here as they land",
			 store_state_name((enum store_state)s.state));
}

static const struct option serve_opts[] = {
	{ "db", required_argument, NULL, 'd' },
	CLI_NET_OPTIONS,
	CLI_LOG_OPTIONS,
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int serve_main(int argc, char **argv)
{
	const struct option *opts = serve_opts;
	const char *db = NULL;
	struct cli_net net = { 0 };
	struct web_config wcfg;
	struct store *st = NULL;
	unsigned interval = 5;
	sigset_t mask;
	int opt, sfd = -1, frozen, rc = 1, r;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
		r = cli_net_option(&net, opt, optarg, "serve");
		if (!r)
			r = cli_log_option(opt, optarg, "serve");
		if (r == 2)
			return 2;
		if (r)
			continue;
		switch (opt) {
		case 'd':
			db = optarg;
			break;
		case 'v':
			log_init("natscope", NS_LOG_DEBUG);
			break;
		case 'h':
			serve_usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "natscope serve: %s needs a value\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "natscope serve: unknown option '%s'\n",
				argv[optind - 1]);
			serve_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "natscope serve: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	if (!db || !*db) {
		fputs("natscope serve: --db FILE is required\n", stderr);
		return 2;
	}
	if (cli_net_check(&net, "serve"))
		return 2;

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0 ||
	    (sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
		log_warn("signalfd");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);

	/* the file first: a wrong one is said before any socket is bound */
	if (cli_open_db(db, &st, &frozen) < 0) {
		log_errx(errno == EILSEQ ? "not started: %s is not a natscope "
			 "database: nothing to serve" : "not started: cannot "
			 "read the database %s", db);
		goto out;
	}
	serve_describe(st, db, net.tls_cert_file ? "https" : "http",
		       net.listen[0], frozen, &interval);
	store_close(st); /* the web service opens its own connection */
	st = NULL;
	if (cli_net_load(&net) < 0 || cli_net_listen(&net) < 0 ||
	    (wcfg = (struct web_config){ .db_path = db,
					 .interval_s = interval,
					 .run_started_ms = 0,
					 .frozen = frozen },
	     cli_net_start(&net, &wcfg) < 0)) {
		log_errx("not started: cannot serve the API as asked (%s)", db);
		goto out;
	}
	for (;;) {
		struct pollfd p = { sfd, POLLIN, 0 };
		struct signalfd_siginfo si;

		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_warn("poll");
			goto out;
		}
		if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
			continue;
		if (si.ssi_signo != SIGHUP)
			break;
		cli_net_reload(&net); /* what it cannot reload it says */
	}
	log_info("stopped");
	rc = 0;
out:
	cli_net_stop(&net);
	store_close(st);
	if (sfd >= 0)
		close(sfd);
	return rc;
}

int cli_serve(int argc, char **argv)
{
	struct cli_config conf;
	int rc;

	if (cli_config(&conf, serve_opts, &argc, &argv) < 0)
		return 2;
	rc = serve_main(argc, argv);
	cli_config_free(&conf);
	return rc;
}
