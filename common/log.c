/*
 * log.c - one line per message on stderr, prefixed with the time, the
 * program name and the level.  stdio locks the stream per call, so lines
 * from different threads never interleave.
 */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *log_prog = "natscope";
static enum ns_log_level log_level = NS_LOG_INFO;

void log_init(const char *progname, enum ns_log_level level)
{
	if (progname)
		log_prog = progname;
	log_level = level;
}

static void log_vline(enum ns_log_level level, int with_errno, int saved_errno,
		      const char *fmt, va_list ap)
{
	static const char *names[] = { "error", "warning", "info", "debug" };
	char msg[1024], stamp[32];
	struct timespec ts;
	struct tm tm;
	int n;

	if (level > log_level)
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		msg[0] = '\0';
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	if (with_errno)
		fprintf(stderr, "%s.%03ldZ %s %s: %s: %s\n", stamp,
			ts.tv_nsec / 1000000, log_prog, names[level], msg,
			strerror(saved_errno));
	else
		fprintf(stderr, "%s.%03ldZ %s %s: %s\n", stamp,
			ts.tv_nsec / 1000000, log_prog, names[level], msg);
}

void log_warn(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vline(NS_LOG_WARN, 1, saved, fmt, ap);
	va_end(ap);
	errno = saved;
}

void log_warnx(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vline(NS_LOG_WARN, 0, 0, fmt, ap);
	va_end(ap);
	errno = saved;
}

void log_info(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vline(NS_LOG_INFO, 0, 0, fmt, ap);
	va_end(ap);
	errno = saved;
}

void log_debug(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vline(NS_LOG_DEBUG, 0, 0, fmt, ap);
	va_end(ap);
	errno = saved;
}

void fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vline(NS_LOG_ERR, 1, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline(NS_LOG_ERR, 0, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
