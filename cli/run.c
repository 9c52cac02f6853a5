/*
 * run.c - natscope run: wires kernel -> collector -> store -> web.
 *
 * Order matters: nothing is written to the database before everything
 * that can fail at start has succeeded.  Flags are parsed; the HTTP
 * socket is bound (a port in use, or one below 1024 without the right to
 * bind it, is reported first); a missing CAP_NET_ADMIN is reported
 * before anything is created; the database is opened, locked against a
 * second writer and migrated, and with --user given to that user;
 * privileges are dropped (privsep.c): this process keeps CAP_NET_ADMIN
 * and nothing else, as --user's uid if given, before it starts any
 * thread, since capabilities belong to threads; the collector opens its
 * netlink sockets; the writer thread starts, and the web process
 * (webproc.c), which holds no capability and reads the database
 * read-only; only then does the run begin (the live tables are emptied
 * and the status says starting).  A database file this start created is
 * removed again if it fails.
 *
 * SIGINT and SIGTERM are blocked in every thread and read from a signalfd
 * by the collector's loop, so a signal never interrupts anything half way.
 * SIGHUP and SIGUSR1 are read by the web process's supervisor: they do
 * not stop the run; SIGHUP makes the web process read its token file
 * again.  The exit status says whether the
 * final write landed: 1 if it did not.
 */
#include "cli/cli.h"
#include "collector/collector.h"
#include "common/common.h"
#include "store/store.h"
#include "web/web.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#define DEFAULT_DB "./natscope.db"
#define DEFAULT_INTERVAL 5
#define DEFAULT_EVENT_BUFFER (128ULL << 20)
#define MIN_EVENT_BUFFER 4096ULL
#define MAX_EVENT_BUFFER (1ULL << 30)
#define DEFAULT_MAPLOG_DAYS 7
#define DEFAULT_MAPLOG_MAX_SIZE (256ULL << 20)

/* The collector's first complete figures are on their way to the
 * database: tell systemd (Type=notify) we are up.  A no-op outside
 * systemd (no NOTIFY_SOCKET). */
static void run_ready(void *arg)
{
	(void)arg;
	sd_notify(0, "READY=1\nSTATUS=following the conntrack table");
}

static void run_usage(FILE *f)
{
	fputs("usage: natscope run [options]\n"
	      "\n"
	      "Follows this host's conntrack table, keeps per-public-IP port usage\n"
	      "in SQLite and serves the HTTP API.  Needs CAP_NET_ADMIN.\n"
	      "\n"
	      "options:\n"
	      "  --db PATH             SQLite database, created if missing\n"
	      "                        (default " DEFAULT_DB ")\n"
	      CLI_NET_USAGE
	      CLI_CONFIG_USAGE
	      "  --interval SECONDS    how often the live state is written, 1-3600\n"
	      "                        (default 5)\n"
	      "  --event-buffer BYTES  netlink receive buffer, K/M/G suffixes; each\n"
	      "                        queued event takes ~1280 B (default 128M)\n"
	      "history (see docs/database.md):\n"
	      "  --history-raw AGE     keep every interval's figures (default 1d)\n"
	      "  --history-minute AGE  keep per-minute rollups (default 7d)\n"
	      "  --history-hour AGE    keep per-hour rollups (default 90d)\n"
	      "                        AGE: a number with s, m, h or d\n"
	      "  --history-max-size SIZE  the database's size limit: the oldest\n"
	      "                        periods go first (default 1G)\n"
	      "  --history-hosts-minute AGE  keep per-minute hosts and buckets\n"
	      "                        (default 1d; hours keep them longer)\n"
	      "  --history-top N       hosts and buckets kept per gateway and\n"
	      "                        period, by peak and by rate (default 10)\n"
	      "  --warn PERCENT        incident when a gateway or bucket reaches\n"
	      "                        this share of its ports (default 70)\n"
	      "  --critical PERCENT    ... marked critical (default 90)\n"
	      "  --maplog-days N       keep ended mappings in the mapping log N days,\n"
	      "                        1-3650 (default 7)\n"
	      "  --maplog-max-size SIZE  mapping log size cap, K/M/G suffixes, at\n"
	      "                        least 1M (default 256M)\n"
	      "  --user NAME           once the HTTP port is bound and the database\n"
	      "                        open, run as this user (the database is\n"
	      "                        given to it): the collector keeps\n"
	      "                        CAP_NET_ADMIN, the web process holds nothing\n"
	      "  -v, --verbose         debug logging\n"
	      "  -h, --help            this text\n",
	      f);
}

int cli_parse_duration(const char *text, int64_t *ms)
{
	unsigned long long v, mul;
	char *end;

	if (!text || !*text || *text == '-' || *text == '+')
		goto bad;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || end == text || end[0] == 0 || end[1] != 0)
		goto bad;
	switch (*end) {
	case 's': mul = 1000; break;
	case 'm': mul = 60000; break;
	case 'h': mul = 3600000; break;
	case 'd': mul = 86400000; break;
	default: goto bad;
	}
	if (v > (unsigned long long)INT64_MAX / mul) {
		errno = ERANGE;
		return -1;
	}
	*ms = (int64_t)(v * mul);
	return 0;
bad:
	errno = EINVAL;
	return -1;
}

/* A whole percentage 1-100 as a fraction; -1 if it is not one. */
static double run_parse_percent(const char *text)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(text, &end, 10);
	if (errno || end == text || (*end && strcmp(end, "%")) || v < 1 ||
	    v > 100)
		return -1;
	return v / 100.0;
}

int cli_parse_uint(const char *text, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(text, &end, 10);
	if (errno || end == text || *end || v < (long)lo || v > (long)hi) {
		errno = EINVAL;
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

int cli_parse_size(const char *text, unsigned long long *out)
{
	unsigned long long v, mul = 1;
	char *end;

	if (!text || !*text || *text == '-' || *text == '+')
		goto bad;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || end == text)
		goto bad;
	switch (*end) {
	case 'k': case 'K': mul = 1ULL << 10; end++; break;
	case 'm': case 'M': mul = 1ULL << 20; end++; break;
	case 'g': case 'G': mul = 1ULL << 30; end++; break;
	default: break;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		goto bad;
	if (v > ULLONG_MAX / mul) {
		errno = ERANGE;
		return -1;
	}
	*out = v * mul;
	return 0;
bad:
	errno = EINVAL;
	return -1;
}

static void run_initial_status(struct store_status *s, unsigned interval_s,
			       int64_t started_ms)
{
	store_status_init(s);
	s->started_ms = s->as_of_ms = started_ms;
	s->interval_s = interval_s;
	s->state = STORE_STATE_STARTING;
}

static const struct option run_opts[] = {
	{ "db", required_argument, NULL, 'd' },
	CLI_NET_OPTIONS,
	CLI_LOG_OPTIONS,
	{ "interval", required_argument, NULL, 'i' },
	{ "event-buffer", required_argument, NULL, 'b' },
	{ "history-raw", required_argument, NULL, 'R' },
	{ "history-minute", required_argument, NULL, 'M' },
	{ "history-hour", required_argument, NULL, 'H' },
	{ "history-max-size", required_argument, NULL, 'S' },
	{ "history-top", required_argument, NULL, 'T' },
	{ "history-hosts-minute", required_argument, NULL, 'U' },
	{ "warn", required_argument, NULL, 'w' },
	{ "critical", required_argument, NULL, 'c' },
	{ "maplog-days", required_argument, NULL, 'D' },
	{ "maplog-max-size", required_argument, NULL, 'Z' },
	{ "user", required_argument, NULL, 'u' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* What SIGHUP reloads, from the configuration file. */
struct run_reload {
	const struct cli_config *conf;
	struct store_writer *writer;
};

/* SIGHUP (the web process's supervisor calls it): the log level and the
 * incident thresholds as the configuration file now gives them (what the
 * command line or the environment gives stays).  See
 * cli_webproc_config.reload. */
static int run_reload(void *arg, struct cli_webproc_config *pc)
{
	const struct run_reload *rr = arg;
	enum ns_log_level level = log_get_level();
	double warn = pc->warn, critical = pc->critical, v;
	char text[64];
	int r, changed = 0;

	if (!rr->conf->path) {
		log_info("SIGHUP: no --config file: the token file is read "
			 "again, nothing else");
		return 0;
	}
	if ((r = cli_config_reread(rr->conf, run_opts, "log-level", text,
				   sizeof(text))) < 0)
		goto bad;
	if (r && log_parse_level(text, &level) < 0) {
		log_warnx("SIGHUP: %s: log-level '%s' is not error, warning, "
			  "info or debug: nothing reloaded", rr->conf->path,
			  text);
		return -1;
	}
	for (int k = 0; k < 2; k++) {
		const char *name = k ? "critical" : "warn";

		if ((r = cli_config_reread(rr->conf, run_opts, name, text,
					   sizeof(text))) < 0)
			goto bad;
		if (!r)
			continue;
		if ((v = run_parse_percent(text)) < 0) {
			log_warnx("SIGHUP: %s: %s '%s' is not a percentage "
				  "from 1 to 100: nothing reloaded",
				  rr->conf->path, name, text);
			return -1;
		}
		*(k ? &critical : &warn) = v;
	}
	if (warn > critical) {
		log_warnx("SIGHUP: %s: warn above critical: nothing reloaded",
			  rr->conf->path);
		return -1;
	}
	if (level != log_get_level()) {
		log_set_level(level);
		changed = 1;
	}
	if (warn != pc->warn || critical != pc->critical) {
		store_writer_set_thresholds(rr->writer, warn, critical);
		pc->warn = warn;
		pc->critical = critical;
		changed = 1;
	}
	log_info("SIGHUP: %s read again: warn %.0f %%, critical %.0f %%, "
		 "log level %s%s", rr->conf->path, warn * 100, critical * 100,
		 (const char *const[]){ "error", "warning", "info",
					"debug" }[log_get_level()],
		 changed ? "" : " (unchanged)");
	return changed;
bad:
	log_warnx("SIGHUP: nothing reloaded (%s could not be used)",
		  rr->conf->path);
	return -1;
}

static int run_main(int argc, char **argv, const struct cli_config *conf)
{
	const struct option *opts = run_opts;
	const char *db = DEFAULT_DB, *user = NULL, *why = "";
	struct cli_net net = { 0 };
	struct cli_priv_user u;
	struct cli_webproc_config pcfg;
	struct run_reload reload = { .conf = conf };
	struct cli_webproc *webp = NULL;
	sigset_t hupmask;
	int hfd = -1, verbose = 0, made = 0;
	unsigned interval = DEFAULT_INTERVAL;
	unsigned long long evbuf = DEFAULT_EVENT_BUFFER, n;
	struct store_history_config hcfg;
	unsigned long long maplog_max = DEFAULT_MAPLOG_MAX_SIZE;
	unsigned maplog_days = DEFAULT_MAPLOG_DAYS;
	struct collector_config ccfg;
	struct collector *col = NULL;
	struct store *st = NULL;
	struct store_writer *writer = NULL;
	struct store_status status;
	char final[160] = "";
	sigset_t mask;
	int opt, sfd = -1, begun = 0, rc = 1, crc, err;
	int64_t run_started_ms;

	store_history_defaults(&hcfg);
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
		int r = cli_net_option(&net, opt, optarg, "run");

		if (!r)
			r = cli_log_option(opt, optarg, "run");
		if (r == 2)
			return 2;
		if (r)
			continue;
		switch (opt) {
		case 'R': case 'M': case 'H': {
			static const char *const name[] = { "raw", "minute",
							    "hour" };
			int tier = opt == 'R' ? 0 : opt == 'M' ? 1 : 2;

			if (cli_parse_duration(optarg, &hcfg.keep_ms[tier]) < 0) {
				fprintf(stderr, "natscope run: --history-%s '%s': "
					"expected an age such as 90m, 36h or 7d\n",
					name[tier], optarg);
				return 2;
			}
			break;
		}
		case 'S':
			if (cli_parse_size(optarg, &n) < 0 || n < (1ULL << 20)) {
				fprintf(stderr, "natscope run: --history-max-size "
					"'%s': expected a size of at least 1M "
					"(e.g. 1G)\n", optarg);
				return 2;
			}
			hcfg.max_bytes = n;
			break;
		case 'U':
			if (cli_parse_duration(optarg, &hcfg.keep_top_minute_ms) < 0) {
				fprintf(stderr, "natscope run: --history-hosts-minute "
					"'%s': expected an age such as 90m, 36h "
					"or 7d\n", optarg);
				return 2;
			}
			break;
		case 'T':
			if (cli_parse_uint(optarg, 1, 1000, &hcfg.top) < 0) {
				fprintf(stderr, "natscope run: --history-top '%s': "
					"expected 1 to 1000\n", optarg);
				return 2;
			}
			break;
		case 'w': case 'c':
			if ((opt == 'w' ? (hcfg.warn = run_parse_percent(optarg)) :
				(hcfg.critical = run_parse_percent(optarg))) < 0) {
				fprintf(stderr, "natscope run: --%s '%s': expected "
					"a percentage from 1 to 100\n",
					opt == 'w' ? "warn" : "critical", optarg);
				return 2;
			}
			break;
		case 'd':
			db = optarg;
			break;
		case 'i':
			if (cli_parse_uint(optarg, 1, 3600, &interval) < 0) {
				fprintf(stderr, "natscope run: --interval '%s': expected "
					"whole seconds from 1 to 3600\n", optarg);
				return 2;
			}
			break;
		case 'b':
			if (cli_parse_size(optarg, &evbuf) < 0 ||
			    evbuf < MIN_EVENT_BUFFER || evbuf > MAX_EVENT_BUFFER) {
				fprintf(stderr, "natscope run: --event-buffer '%s': "
					"expected a size from 4K to 1G (e.g. 128M)\n",
					optarg);
				return 2;
			}
			break;
		case 'D':
			if (cli_parse_uint(optarg, 1, 3650, &maplog_days) < 0) {
				fprintf(stderr, "natscope run: --maplog-days '%s': "
					"expected whole days from 1 to 3650\n",
					optarg);
				return 2;
			}
			break;
		case 'Z':
			if (cli_parse_size(optarg, &maplog_max) < 0 ||
			    maplog_max < (1ULL << 20)) {
				fprintf(stderr, "natscope run: --maplog-max-size "
					"'%s': expected a size of at least 1M "
					"(e.g. 256M)\n", optarg);
				return 2;
			}
			break;
		case 'u':
			user = optarg;
			break;
		case 'v':
			log_init("natscope", NS_LOG_DEBUG);
			verbose = 1;
			break;
		case 'h':
			run_usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "natscope run: %s needs a value\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "natscope run: unknown option '%s'\n",
				argv[optind - 1]);
			run_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "natscope run: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	if (cli_net_check(&net, "run"))
		return 2;
	if (!*db) {
		fputs("natscope run: --db needs a path\n", stderr);
		return 2;
	}
	if (hcfg.warn > hcfg.critical) {
		fputs("natscope run: --warn must not be above --critical\n",
		      stderr);
		return 2;
	}
	if (user && cli_priv_user_lookup(user, &u) < 0) {
		fprintf(stderr, "natscope run: --user '%s': %s\n", user,
			errno == ENOENT ? "no such user" : strerror(errno));
		return 2;
	}

	/* Signals go to the signalfd only, in every thread started below. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	/* SIGHUP and SIGUSR1 (which used to kill it) go to a signalfd of
	 * their own, read by the web process's supervisor */
	sigemptyset(&hupmask);
	sigaddset(&hupmask, SIGHUP);
	sigaddset(&hupmask, SIGUSR1);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0 ||
	    pthread_sigmask(SIG_BLOCK, &hupmask, NULL) != 0 ||
	    (sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0 ||
	    (hfd = signalfd(-1, &hupmask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		log_warn("signalfd");
		if (sfd >= 0)
			close(sfd);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	/* SQLite frees its sorters after each API query; without this glibc
	 * would hand those pages back to the kernel every time (madvise plus
	 * TLB shootdowns), which made a JSON answer ~10x slower.  The big
	 * ledger tables are mmap()ed and not affected. */
	mallopt(M_TRIM_THRESHOLD, 8 << 20);

	run_started_ms = ns_now_ms(); /* the run's identity everywhere */
	ccfg = (struct collector_config){ .event_buffer = (size_t)evbuf,
					  .interval_s = interval,
					  .stop_fd = sfd,
					  .hist_top = hcfg.top,
					  .run_started_ms = run_started_ms,
					  .ready = run_ready };
	/* each step that fails says why in detail (warnings); the run then
	 * logs one error, at the end, naming the step */
	why = "cannot serve the API as asked";
	/* the token and TLS files are read here to say now what is wrong
	 * with them; the web process reads them again itself */
	if (cli_net_load(&net) < 0 ||
	    cli_net_listen(&net) < 0) /* may need CAP_NET_BIND_SERVICE */
		goto out;
	why = "cannot follow the conntrack table";
	/* Without CAP_NET_ADMIN nothing can follow conntrack: the collector
	 * says what is missing, in its words, before anything is created. */
	if (!cli_priv_have_net_admin()) {
		col = collector_open(&ccfg);
		if (col)
			log_warnx("conntrack opened, but CAP_NET_ADMIN is not "
				  "among this process's capabilities: refusing "
				  "to run with privileges it cannot account for");
		goto out;
	}
	/* The database is opened with every privilege this process was
	 * given, as before (root may use a directory it does not own);
	 * with --user it is that user's first, and SQLite, running as root,
	 * gives the -wal and -shm it makes to the file's owner. */
	why = "cannot use the database";
	if (user && cli_priv_chown_db(db, &u, &made) < 0)
		goto out;
	st = store_open(db, STORE_READ_WRITE);
	if (!st)
		goto out;
	why = "cannot drop the privileges it does not need";
	/* Before any thread exists (each thread has its own capabilities):
	 * CAP_NET_ADMIN and nothing else, as --user's user if given. */
	if (cli_priv_keep_net_admin(user ? &u : NULL) < 0)
		goto out;
	if (user)
		log_info("running as %s (uid %u, gid %u) with CAP_NET_ADMIN "
			 "only", u.name, (unsigned)u.uid, (unsigned)u.gid);
	why = "cannot follow the conntrack table";
	col = collector_open(&ccfg);
	if (!col)
		goto out; /* the collector said why */
	why = "cannot use the database";
	if (store_history_configure(st, &hcfg) < 0) {
		log_warn("history settings");
		goto out;
	}
	if (store_maplog_configure(st, maplog_days * 24LL * 3600 * 1000,
				   maplog_max) < 0)
		goto out;
	writer = store_writer_start(st);
	if (!writer)
		goto out;
	run_initial_status(&status, interval, run_started_ms);
	pcfg = (struct cli_webproc_config){ .db_path = db,
					    .interval_s = interval,
					    .run_started_ms = status.started_ms,
					    .stop_fd = sfd,
					    .hup_fd = hfd,
					    .verbose = verbose,
					    .net = &net,
					    .warn = hcfg.warn,
					    .critical = hcfg.critical,
					    .reload = run_reload,
					    .reload_arg = &reload };
	reload.writer = writer;
	why = "cannot serve the API";
	webp = cli_webproc_start(&pcfg); /* takes net's sockets */
	if (!webp)
		goto out;
	why = "cannot start a run in the database";
	if (store_writer_begin(writer, &status) < 0)
		goto out;
	begun = 1;
	log_info("natscope %s: database %s, API on %s://%s/%s, writing every "
		 "%u s", NS_VERSION, db, net.tls_cert_file ? "https" : "http",
		 net.listen[0], net.n_listen > 1 ? " and more" : "", interval);
	crc = collector_run(col, writer);
	sd_notify(0, "STOPPING=1");
	/* the collector's last write was its final one (state stopped) */
	if (store_writer_wait(writer) < 0) {
		err = errno;
		snprintf(final, sizeof(final), "the final write to %s failed "
			 "(%s): the database does not show this run's end",
			 db, strerror(err));
	}
	rc = crc < 0 || *final ? 1 : 0;
	log_info(rc ? "stopped, with errors" : "stopped");
out:
	if (!begun)
		log_errx("not started: %s (%s)", why, db);
	cli_webproc_stop(webp); /* it reads what the writer wrote last */
	store_writer_stop(writer);
	if (begun) {
		store_close(st);
	} else {
		store_discard(st); /* a database created for nothing goes */
		if (made)
			cli_priv_unmake_db(db);
	}
	cli_net_stop(&net); /* sockets webproc did not take, secrets */
	collector_close(col);
	if (sfd >= 0)
		close(sfd);
	if (hfd >= 0)
		close(hfd);
	if (*final)
		fatalx("%s", final);
	return rc;
}

int cli_run(int argc, char **argv)
{
	struct cli_config conf;
	int rc;

	if (cli_config(&conf, run_opts, &argc, &argv) < 0)
		return 2;
	rc = run_main(argc, argv, &conf);
	cli_config_free(&conf);
	return rc;
}
