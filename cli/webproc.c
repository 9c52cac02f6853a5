/*
 * webproc.c - natscope run's web process: started, watched and restarted
 * by the collector process, and its own main (natscope run-web).
 *
 * The web side parses what strangers send, so it runs where a mistake
 * costs least: a process of its own, holding no capability (bounding set
 * included) with no_new_privs, as the same user as the collector, with
 * the listening socket and a read-only connection to the database as all
 * it has.  It is started by fork() and exec of this binary, through a
 * descriptor opened on /proc/self/exe (the binary the collector runs,
 * even if the file was replaced since): between the two only
 * async-signal-safe calls run, so starting it again from the collector,
 * which by then runs threads (and SQLite on one of them), is safe, and
 * the new image shares no memory with the collector.
 *
 * Descriptors the web process gets: 0 /dev/null, 1 and 2 the collector's
 * (its log), 3 .. 3+N-1 the N listening sockets (--listen-fds N), 3+N a
 * pipe on which it says it serves.  Every other descriptor is closed
 * before exec.  It reads the token and TLS files itself (as the user it
 * runs as), at start and again at SIGHUP, which the supervisor passes
 * on.
 *
 * Lifecycle: if the web process dies, the supervisor thread logs how and
 * starts it again after 1 s, doubling up to 60 s while it keeps dying
 * within a minute of its start: the collector's data must not stop
 * because the API failed, and the listening socket stays open meanwhile
 * (connections wait in its backlog).  The web process exits when the
 * collector does: PR_SET_PDEATHSIG (SIGTERM when the thread that forked
 * it ends) and a check of its parent every second.
 */
#include "cli/cli.h"
#include "common/common.h"
#include "web/web.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/capability.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WEBPROC_READY_TIMEOUT_MS 10000
#define WEBPROC_STOP_GRACE_MS 3000
#define WEBPROC_BACKOFF_MIN_MS 1000
#define WEBPROC_BACKOFF_MAX_MS 60000
#define WEBPROC_STABLE_MS 60000 /* a process that lived this long resets it */

#define WEBPROC_LISTEN_FD 3 /* the first; the ready pipe after the last */
#define WEBPROC_HIGH_FD 100 /* above every fixed number, while rearranging */
extern char **environ;

struct cli_webproc {
	struct cli_webproc_config cfg;
	int fds[CLI_FDS_MAX]; /* the listening sockets, kept to start the
				 process again */
	size_t n_fds;
	int exe_fd;    /* O_PATH on the binary */
	int null_fd;   /* /dev/null, its stdin */
	int stop_efd;  /* cli_webproc_stop() -> supervisor */
	pid_t pid;     /* the web process, 0 none */
	int pidfd;     /* on pid, -1 none */
	int64_t started_ns;
	pthread_t th;
	int th_started;
	/* the web process's arguments, built before fork (no allocation
	 * between fork and exec) */
	char a_interval[16], a_started[24], a_pid[24], a_fds[8], a_open[32];
	char a_warn[16], a_critical[16];
	char *argv[40];
};

static int64_t webproc_mono_ms(void)
{
	return ns_mono_ns() / 1000000;
}

static int webproc_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* The child side of fork(): only async-signal-safe calls.  Puts the
 * socket, the pipe and the binary at fixed numbers, closes the rest,
 * asks for SIGTERM when its parent thread ends and execs. */
static void webproc_child(struct cli_webproc *wp, int ready_w, pid_t parent)
{
	struct __user_cap_header_struct caph = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct capd[_LINUX_CAPABILITY_U32S_3];
	int high[CLI_FDS_MAX], ready = WEBPROC_LISTEN_FD + (int)wp->n_fds;
	int exe = ready + 1;
	sigset_t none;
	int r, e;

	memset(capd, 0, sizeof(capd));

	/* first everything above the fixed numbers, then into place, so
	 * that no descriptor is overwritten before it is moved */
	for (size_t i = 0; i < wp->n_fds; i++)
		if ((high[i] = fcntl(wp->fds[i], F_DUPFD, WEBPROC_HIGH_FD)) < 0)
			_exit(127);
	r = fcntl(ready_w, F_DUPFD, WEBPROC_HIGH_FD);
	e = fcntl(wp->exe_fd, F_DUPFD_CLOEXEC, WEBPROC_HIGH_FD);
	if (r < 0 || e < 0 || dup2(wp->null_fd, 0) < 0)
		_exit(127);
	for (size_t i = 0; i < wp->n_fds; i++)
		if (dup2(high[i], WEBPROC_LISTEN_FD + (int)i) < 0)
			_exit(127);
	if (dup2(r, ready) < 0 || dup3(e, exe, O_CLOEXEC) < 0)
		_exit(127);
	close_range((unsigned)exe + 1, ~0U, 0);
	/* no capability into exec: with no_new_privs (the collector set it)
	 * the new image can then gain none, even from file capabilities on
	 * the binary; it drops the rest (the bounding set) itself */
	if (syscall(SYS_capset, &caph, capd) < 0)
		_exit(127);
	if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) < 0 ||
	    getppid() != parent)
		_exit(0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	syscall(SYS_execveat, exe, "", wp->argv, environ, AT_EMPTY_PATH);
	_exit(127);
}

/* Logs how the web process ended. */
static void webproc_log_exit(pid_t pid, int status, int64_t lived_ms)
{
	if (WIFSIGNALED(status))
		log_warnx("web: process %d was killed by signal %d (%s) after "
			  "%.1f s", (int)pid, WTERMSIG(status),
			  strsignal(WTERMSIG(status)), lived_ms / 1000.0);
	else
		log_warnx("web: process %d exited with status %d after %.1f s",
			  (int)pid, WEXITSTATUS(status), lived_ms / 1000.0);
}

/* Waits for the web process to end (pidfd readable) for at most
 * timeout_ms (-1: for ever).  Returns 1 and reaps it with *status, or 0
 * if it still runs. */
static int webproc_reap(struct cli_webproc *wp, int timeout_ms, int *status)
{
	struct pollfd p = { .fd = wp->pidfd, .events = POLLIN };
	int n;

	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return 0;
	while (waitpid(wp->pid, status, 0) < 0 && errno == EINTR)
		;
	close(wp->pidfd);
	wp->pidfd = -1;
	wp->pid = 0;
	return 1;
}

/* Starts the web process and waits until it serves.  Returns 0, or -1
 * with errno (EIO: it exited, and said why; ETIMEDOUT).  Logs. */
static int webproc_spawn(struct cli_webproc *wp)
{
	struct pollfd p;
	int pipefd[2], n, status, saved;
	pid_t self = getpid(), pid;
	char byte;

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		log_warn("web: pipe");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		saved = errno;
		log_warn("web: fork");
		close(pipefd[0]);
		close(pipefd[1]);
		errno = saved;
		return -1;
	}
	if (pid == 0)
		webproc_child(wp, pipefd[1], self);
	close(pipefd[1]);
	wp->pid = pid;
	wp->started_ns = ns_mono_ns();
	wp->pidfd = webproc_pidfd_open(pid);
	if (wp->pidfd < 0) {
		saved = errno;
		log_warn("web: pidfd_open");
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		wp->pid = 0;
		close(pipefd[0]);
		errno = saved;
		return -1;
	}
	p = (struct pollfd){ .fd = pipefd[0], .events = POLLIN };
	do
		n = poll(&p, 1, WEBPROC_READY_TIMEOUT_MS);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		do
			n = (int)read(pipefd[0], &byte, 1);
		while (n < 0 && errno == EINTR);
	} else {
		n = -2; /* timed out */
	}
	close(pipefd[0]);
	if (n == 1) {
		log_debug("web: process %d serves", (int)pid);
		return 0;
	}
	/* it did not say it serves: it exited, or hangs */
	if (n == -2) {
		log_warnx("web: process %d not serving after %d s: stopping it",
			  (int)pid, WEBPROC_READY_TIMEOUT_MS / 1000);
		kill(pid, SIGKILL);
	}
	webproc_reap(wp, -1, &status);
	if (n != -2)
		webproc_log_exit(pid, status,
				 (ns_mono_ns() - wp->started_ns) / 1000000);
	errno = n == -2 ? ETIMEDOUT : EIO;
	return -1;
}

/* Whether fd (a signalfd) has a signal waiting: the run is stopping. */
static int webproc_pending(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return fd >= 0 && poll(&p, 1, 0) > 0;
}

static void webproc_argv(struct cli_webproc *wp);

/* The web process stopped and started again with the arguments as they
 * are now (SIGHUP changed what it shows).  Returns 0, or -1 (logged; the
 * supervisor's restart takes over). */
static int webproc_respawn(struct cli_webproc *wp)
{
	int status;

	/* SIGKILL, not SIGTERM: a web process that stops cleanly shuts its
	 * listening sockets down (libmicrohttpd), and they are shared with
	 * this process and the next web process; it holds no state, and
	 * what it was answering is retried by the client */
	if (wp->pid) {
		kill(wp->pid, SIGKILL);
		webproc_reap(wp, -1, &status);
	}
	webproc_argv(wp);
	if (webproc_spawn(wp) < 0)
		return -1;
	log_info("web: process %d serves, with the reloaded settings",
		 (int)wp->pid);
	return 0;
}

/* Reads SIGHUP/SIGUSR1 from the supervisor's signalfd.  SIGHUP reloads
 * what can be (cfg.reload: the log level and the thresholds); if that
 * changes what the web process shows it is started again, else the
 * signal goes on to it (it reads its token file again).  SIGUSR1 is
 * logged.  Returns 1 when the web process was replaced. */
static int webproc_read_hup(struct cli_webproc *wp)
{
	struct signalfd_siginfo si;
	int replaced = 0;

	while (read(wp->cfg.hup_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo != SIGHUP) {
			log_info("SIGUSR1: nothing to do; still running");
			continue;
		}
		if (wp->cfg.reload && wp->cfg.reload(wp->cfg.reload_arg,
						     &wp->cfg) == 1 && wp->pid) {
			if (webproc_respawn(wp) < 0 && wp->pidfd < 0)
				log_warnx("web: not serving until it is "
					  "started again");
			replaced = 1;
			continue;
		}
		if (!wp->pid)
			log_info("SIGHUP: no web process right now (it is "
				 "started again with the files as they are)");
		else if (kill(wp->pid, SIGHUP) < 0)
			log_warn("SIGHUP: to the web process");
		else
			log_info("SIGHUP: passed on to the web process");
	}
	return replaced;
}

/* The supervisor: restarts the web process when it dies, until told to
 * stop, then stops it. */
static void *webproc_main(void *arg)
{
	struct cli_webproc *wp = arg;
	int64_t backoff_ms = WEBPROC_BACKOFF_MIN_MS, wait_until = -1, lived;
	int status;

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = wp->stop_efd, .events = POLLIN },
			{ .fd = wp->cfg.hup_fd, .events = POLLIN },
			{ .fd = wp->pidfd, .events = POLLIN },
		};
		int timeout = -1, n;

		if (wait_until >= 0) {
			int64_t left = wait_until - webproc_mono_ms();

			timeout = left > 0 ? (int)left : 0;
		}
		n = poll(p, 3, timeout);
		if (n < 0 && errno != EINTR) {
			log_warn("web: supervisor poll");
			break;
		}
		if (n > 0 && p[0].revents)
			break;
		if (n > 0 && p[1].revents && webproc_read_hup(wp))
			continue; /* a new process, a new pidfd */
		if (n > 0 && p[2].revents && wp->pid) {
			pid_t pid = wp->pid;

			lived = (ns_mono_ns() - wp->started_ns) / 1000000;
			webproc_reap(wp, 0, &status);
			webproc_log_exit(pid, status, lived);
			if (lived >= WEBPROC_STABLE_MS)
				backoff_ms = WEBPROC_BACKOFF_MIN_MS;
			if (webproc_pending(wp->cfg.stop_fd))
				continue; /* stopping anyway */
			log_warnx("web: starting it again in %.0f s",
				  backoff_ms / 1000.0);
			wait_until = webproc_mono_ms() + backoff_ms;
			backoff_ms = backoff_ms * 2 > WEBPROC_BACKOFF_MAX_MS ?
					     WEBPROC_BACKOFF_MAX_MS :
					     backoff_ms * 2;
		}
		if (wait_until >= 0 && webproc_mono_ms() >= wait_until &&
		    !wp->pid) {
			wait_until = -1;
			if (webproc_pending(wp->cfg.stop_fd))
				continue;
			if (webproc_spawn(wp) == 0) {
				log_info("web: process %d serves again",
					 (int)wp->pid);
			} else {
				log_warnx("web: could not start it again; "
					  "next try in %.0f s",
					  backoff_ms / 1000.0);
				wait_until = webproc_mono_ms() + backoff_ms;
				backoff_ms = backoff_ms * 2 >
						     WEBPROC_BACKOFF_MAX_MS ?
						     WEBPROC_BACKOFF_MAX_MS :
						     backoff_ms * 2;
			}
		}
	}
	return NULL;
}

/* Builds the web process's command line. */
static void webproc_argv(struct cli_webproc *wp)
{
	int i = 0;

	snprintf(wp->a_interval, sizeof(wp->a_interval), "%u",
		 wp->cfg.interval_s);
	snprintf(wp->a_started, sizeof(wp->a_started), "%lld",
		 (long long)wp->cfg.run_started_ms);
	snprintf(wp->a_pid, sizeof(wp->a_pid), "%d", (int)getpid());
	snprintf(wp->a_fds, sizeof(wp->a_fds), "%zu", wp->n_fds);
	snprintf(wp->a_warn, sizeof(wp->a_warn), "%g", wp->cfg.warn * 100);
	snprintf(wp->a_critical, sizeof(wp->a_critical), "%g",
		 wp->cfg.critical * 100);
	snprintf(wp->a_open, sizeof(wp->a_open), "%s%s%s",
		 wp->cfg.net->open_paths & WEB_OPEN_HEALTHZ ? "/healthz" : "",
		 (wp->cfg.net->open_paths & WEB_OPEN_HEALTHZ) &&
		 (wp->cfg.net->open_paths & WEB_OPEN_METRICS) ? "," : "",
		 wp->cfg.net->open_paths & WEB_OPEN_METRICS ? "/metrics" : "");
	wp->argv[i++] = (char *)"natscope";
	wp->argv[i++] = (char *)"run-web";
	wp->argv[i++] = (char *)"--db";
	wp->argv[i++] = (char *)wp->cfg.db_path;
	wp->argv[i++] = (char *)"--interval";
	wp->argv[i++] = wp->a_interval;
	wp->argv[i++] = (char *)"--run-started";
	wp->argv[i++] = wp->a_started;
	wp->argv[i++] = (char *)"--run-pid";
	wp->argv[i++] = wp->a_pid;
	wp->argv[i++] = (char *)"--listen-fds";
	wp->argv[i++] = wp->a_fds;
	wp->argv[i++] = (char *)"--warn";
	wp->argv[i++] = wp->a_warn;
	wp->argv[i++] = (char *)"--critical";
	wp->argv[i++] = wp->a_critical;
	if (wp->cfg.net->token_file) {
		wp->argv[i++] = (char *)"--auth-token-file";
		wp->argv[i++] = (char *)wp->cfg.net->token_file;
	}
	if (wp->cfg.net->open_paths) {
		wp->argv[i++] = (char *)"--auth-open";
		wp->argv[i++] = wp->a_open;
	}
	if (wp->cfg.net->tls_cert_file) {
		wp->argv[i++] = (char *)"--tls-cert";
		wp->argv[i++] = (char *)wp->cfg.net->tls_cert_file;
		wp->argv[i++] = (char *)"--tls-key";
		wp->argv[i++] = (char *)wp->cfg.net->tls_key_file;
	}
	if (log_get_format() == NS_LOG_JSON) {
		wp->argv[i++] = (char *)"--log-format";
		wp->argv[i++] = (char *)"json";
	}
	if (wp->cfg.verbose || log_get_level() == NS_LOG_DEBUG)
		wp->argv[i++] = (char *)"--verbose";
	else if (log_get_level() < NS_LOG_INFO) {
		wp->argv[i++] = (char *)"--log-level";
		wp->argv[i++] = (char *)(log_get_level() == NS_LOG_ERR ?
					 "error" : "warning");
	}
	wp->argv[i] = NULL;
}

struct cli_webproc *cli_webproc_start(const struct cli_webproc_config *cfg)
{
	struct cli_webproc *wp = calloc(1, sizeof(*wp));
	int saved;

	if (!wp)
		return NULL;
	wp->cfg = *cfg;
	/* the sockets are this process's to keep from here on */
	memcpy(wp->fds, cfg->net->fds, cfg->net->n_fds * sizeof(int));
	wp->n_fds = cfg->net->n_fds;
	cfg->net->n_fds = 0;
	wp->pidfd = wp->stop_efd = wp->null_fd = -1;
	wp->exe_fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
	if (wp->exe_fd < 0) {
		log_warn("web: /proc/self/exe");
		goto err;
	}
	wp->null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (wp->null_fd < 0) {
		log_warn("web: /dev/null");
		goto err;
	}
	wp->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (wp->stop_efd < 0) {
		log_warn("web: eventfd");
		goto err;
	}
	webproc_argv(wp);
	if (webproc_spawn(wp) < 0)
		goto err;
	log_info("web: process %d serves the API, with no capability",
		 (int)wp->pid);
	if ((errno = pthread_create(&wp->th, NULL, webproc_main, wp)) != 0) {
		log_warn("web: supervisor thread");
		goto err;
	}
	wp->th_started = 1;
	return wp;
err:
	saved = errno;
	cli_webproc_stop(wp);
	errno = saved;
	return NULL;
}

void cli_webproc_stop(struct cli_webproc *wp)
{
	uint64_t one = 1;
	int status;

	if (!wp)
		return;
	if (wp->th_started) {
		if (write(wp->stop_efd, &one, sizeof(one)) < 0)
			log_warn("web: stop");
		pthread_join(wp->th, NULL);
	}
	if (wp->pid) {
		pid_t pid = wp->pid;

		kill(pid, SIGTERM);
		if (!webproc_reap(wp, WEBPROC_STOP_GRACE_MS, &status)) {
			log_warnx("web: process %d did not stop within %d s: "
				  "killing it", (int)pid,
				  WEBPROC_STOP_GRACE_MS / 1000);
			kill(pid, SIGKILL);
			webproc_reap(wp, -1, &status);
		} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			webproc_log_exit(pid, status,
					 (ns_mono_ns() - wp->started_ns) /
						 1000000);
		}
	}
	if (wp->pidfd >= 0)
		close(wp->pidfd);
	if (wp->stop_efd >= 0)
		close(wp->stop_efd);
	if (wp->exe_fd >= 0)
		close(wp->exe_fd);
	if (wp->null_fd >= 0)
		close(wp->null_fd);
	for (size_t i = 0; i < wp->n_fds; i++)
		close(wp->fds[i]);
	free(wp);
}

/* ---- the web process ---- */

static int run_web_usage(void)
{
	fputs("natscope run-web: started by natscope run, not by hand\n",
	      stderr);
	return 2;
}

int cli_run_web(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "interval", required_argument, NULL, 'i' },
		{ "run-started", required_argument, NULL, 's' },
		{ "run-pid", required_argument, NULL, 'p' },
		{ "listen-fds", required_argument, NULL, 'n' },
		{ "warn", required_argument, NULL, 'w' },
		{ "critical", required_argument, NULL, 'c' },
		{ "verbose", no_argument, NULL, 'v' },
		CLI_NET_OPTIONS,
		CLI_LOG_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct web_config wcfg = { 0 };
	struct cli_net net = { 0 };
	unsigned nfds = 0, warn = 0, critical = 0;
	int ready;
	sigset_t mask;
	siginfo_t si;
	struct timespec tick = { 1, 0 };
	long long started = -1, parent = -1;
	unsigned interval = 0;
	char *end;
	int opt, sig;

	log_init("natscope-web", NS_LOG_INFO);
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int r = cli_net_option(&net, opt, optarg, "run-web");

		if (!r)
			r = cli_log_option(opt, optarg, "run-web");
		if (r == 2)
			return run_web_usage();
		if (r)
			continue;
		switch (opt) {
		case 'n':
			if (cli_parse_uint(optarg, 1, CLI_FDS_MAX, &nfds) < 0)
				return run_web_usage();
			break;
		case 'w':
		case 'c':
			if (cli_parse_uint(optarg, 1, 100, opt == 'w' ? &warn :
					   &critical) < 0)
				return run_web_usage();
			break;
		case 'd':
			wcfg.db_path = optarg;
			break;
		case 'i':
			if (cli_parse_uint(optarg, 1, 3600, &interval) < 0)
				return run_web_usage();
			break;
		case 's':
		case 'p':
			errno = 0;
			if (opt == 's')
				started = strtoll(optarg, &end, 10);
			else
				parent = strtoll(optarg, &end, 10);
			if (errno || end == optarg || *end)
				return run_web_usage();
			break;
		case 'v':
			log_init("natscope-web", NS_LOG_DEBUG);
			break;
		default:
			return run_web_usage();
		}
	}
	if (optind < argc || !wcfg.db_path || !interval || started <= 0 ||
	    parent <= 1 || !nfds)
		return run_web_usage();
	for (unsigned i = 0; i < nfds; i++)
		net.fds[net.n_fds++] = WEBPROC_LISTEN_FD + (int)i;
	ready = WEBPROC_LISTEN_FD + (int)nfds;

	/* before anything is read from a client: no capability at all */
	if (cli_priv_drop_all() < 0)
		return 1;
	/* the collector is gone already (it died between fork and here) */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) < 0 ||
	    getppid() != (pid_t)parent)
		return 0;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);  /* the token file, read again */
	sigaddset(&mask, SIGUSR1);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0) {
		log_warnx("web: cannot block signals");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	/* as run.c does for the collector, where the API used to be served:
	 * SQLite frees its sorters after each query, and glibc would hand
	 * those pages back to the kernel every time (a JSON answer ~10x
	 * slower) */
	mallopt(M_TRIM_THRESHOLD, 8 << 20);

	wcfg.interval_s = interval;
	wcfg.run_started_ms = started;
	wcfg.run_pid = parent;
	wcfg.warn = warn / 100.0;
	wcfg.critical = critical / 100.0;
	/* the token and TLS files as the user this process runs as */
	if (cli_net_load(&net) < 0 || cli_net_start(&net, &wcfg) < 0) {
		cli_net_stop(&net);
		return 1; /* said why */
	}
	if (write(ready, "R", 1) != 1) {
		log_warn("web: cannot tell the collector it serves");
		cli_net_stop(&net);
		return 1;
	}
	close(ready);

	for (;;) {
		sig = sigtimedwait(&mask, &si, &tick);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (sig == SIGHUP)
			cli_net_reload(&net); /* what it cannot reload it says */
		if (getppid() != (pid_t)parent) {
			log_info("web: the collector is gone: stopping");
			break;
		}
	}
	cli_net_stop(&net);
	return 0;
}
