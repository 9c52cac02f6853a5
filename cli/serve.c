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
	fputs("usage: natscope serve --db FILE [--listen ADDR:PORT]\n"
	      "\n"
	      "Serves the HTTP API from an existing natscope database, read-only:\n"
	      "a copy taken from a gateway, or one natscope import built.  Needs\n"
	      "no privilege and does not touch conntrack.  In a directory it cannot\n"
	      "write, the file is read as a frozen copy.\n"
	      "\n"
	      "options:\n"
	      "  --db FILE             the database (required)\n"
	      "  --listen ADDR:PORT    HTTP API address, [v6]:PORT for IPv6\n"
	      "                        (default " CLI_DEFAULT_LISTEN ")\n"
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
			   const char *listen, int frozen, unsigned *interval)
{
	struct store_status s;
	char asof[NS_TIME_STRLEN];

	if (store_read_status(st, &s) < 0) {
		log_info("serving %s%s on http://%s/: no run has written it "
			 "yet", db, frozen ? " (frozen copy)" : "", listen);
		return;
	}
	if (s.interval_s)
		*interval = (unsigned)s.interval_s;
	log_info("serving %s read-only%s on http://%s/: state %s, figures "
		 "as of %s%s%s", db, frozen ? " (frozen copy)" : "", listen,
		 store_state_name((enum store_state)s.state),
		 s.as_of_ms > 0 ? ns_time_format(s.as_of_ms, asof) : "never",
		 *s.note ? "; " : "", s.note);
	if (s.state != STORE_STATE_STOPPED)
		log_info("the status row says %s: if that natscope still runs, "
			 "its writes show here as they land",
			 store_state_name((enum store_state)s.state));
}

int cli_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *db = NULL, *listen = CLI_DEFAULT_LISTEN;
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct web_config wcfg;
	struct store *st = NULL;
	struct web *web = NULL;
	unsigned interval = 5;
	sigset_t mask;
	int opt, sfd = -1, lfd = -1, frozen, rc = 1;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			db = optarg;
			break;
		case 'l':
			listen = optarg;
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
	if (web_parse_listen(listen, &ss, &sslen) < 0) {
		fprintf(stderr, "natscope serve: --listen '%s': expected "
			"ADDR:PORT, e.g. 127.0.0.1:9628 or [::1]:9628\n", listen);
		return 2;
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0 ||
	    (sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
		log_warn("signalfd");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);

	/* the file first: a wrong one is said before any socket is bound */
	if (cli_open_db(db, &st, &frozen) < 0) {
		if (errno == EILSEQ)
			log_warnx("%s is not a natscope database: nothing to "
				  "serve", db);
		else
			log_warnx("cannot read the database %s", db);
		goto out;
	}
	serve_describe(st, db, listen, frozen, &interval);
	store_close(st); /* the web service opens its own connection */
	st = NULL;
	lfd = web_listen(listen);
	if (lfd < 0) {
		log_warnx("cannot serve HTTP on %s", listen);
		goto out;
	}
	wcfg = (struct web_config){ .db_path = db, .interval_s = interval,
				    .run_started_ms = 0, .frozen = frozen };
	web = web_start(lfd, &wcfg);
	lfd = -1;
	if (!web) {
		log_warnx("cannot serve %s on %s", db, listen);
		goto out;
	}
	for (;;) {
		struct pollfd p = { sfd, POLLIN, 0 };

		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_warn("poll");
			goto out;
		}
		if (p.revents)
			break;
	}
	log_info("stopped");
	rc = 0;
out:
	web_stop(web);
	store_close(st);
	if (lfd >= 0)
		close(lfd);
	if (sfd >= 0)
		close(sfd);
	return rc;
}
