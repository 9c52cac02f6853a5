/*
 * log.c - one line per message on stderr: the time, the program name, the
 * level and the message, as text or as a JSON object (jansson) for log
 * collectors.  Each line is written under the stream's lock, so lines
 * from different threads never interleave.
 */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

static const char *log_prog = "natscope";
static volatile enum ns_log_level log_level = NS_LOG_INFO;
static volatile enum ns_log_format log_format = NS_LOG_TEXT;
static const char *const log_level_names[] = { "error", "warning", "info",
					       "debug" };

void log_set_level(enum ns_log_level level)
{
	log_level = level;
}

void log_set_format(enum ns_log_format format)
{
	log_format = format;
}

enum ns_log_level log_get_level(void)
{
	return log_level;
}

enum ns_log_format log_get_format(void)
{
	return log_format;
}

int log_parse_level(const char *text, enum ns_log_level *out)
{
	for (int i = NS_LOG_ERR; i <= NS_LOG_DEBUG; i++)
		if (!strcmp(text, log_level_names[i])) {
			*out = (enum ns_log_level)i;
			return 0;
		}
	errno = EINVAL;
	return -1;
}

int log_parse_format(const char *text, enum ns_log_format *out)
{
	if (!strcmp(text, "text") || !strcmp(text, "json")) {
		*out = text[0] == 'j' ? NS_LOG_JSON : NS_LOG_TEXT;
		return 0;
	}
	errno = EINVAL;
	return -1;
}

/* The line as JSON; falls back to text if jansson cannot build it. */
static int log_json(const char *stamp, long ms, const char *level,
		    const char *msg, const char *err)
{
	char t[64];
	json_t *o;
	int rc;

	snprintf(t, sizeof(t), "%s.%03ldZ", stamp, ms % 1000);
	o = json_pack("{s:s, s:s, s:s, s:s}", "time", t, "prog", log_prog,
		      "level", level, "msg", msg);
	if (!o)
		return -1;
	if (err)
		json_object_set_new(o, "error", json_string(err));
	flockfile(stderr);
	rc = json_dumpf(o, stderr, JSON_COMPACT | JSON_ENSURE_ASCII);
	fputc('\n', stderr);
	funlockfile(stderr);
	json_decref(o);
	return rc;
}

void log_init(const char *progname, enum ns_log_level level)
{
	if (progname)
		log_prog = progname;
	log_level = level;
}

static void log_vline(enum ns_log_level level, int with_errno, int saved_errno,
		      const char *fmt, va_list ap)
{
	const char *const *names = log_level_names;
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
	if (log_format == NS_LOG_JSON &&
	    log_json(stamp, ts.tv_nsec / 1000000, names[level], msg,
		     with_errno ? strerror(saved_errno) : NULL) == 0)
		return;
	if (with_errno)
		fprintf(stderr, "%s.%03ldZ %s %s: %s: %s\n", stamp,
			ts.tv_nsec / 1000000, log_prog, names[level], msg,
			strerror(saved_errno));
	else
		fprintf(stderr, "%s.%03ldZ %s %s: %s\n", stamp,
			ts.tv_nsec / 1000000, log_prog, names[level], msg);
}

/* The logging functions of common.h: each keeps errno for its caller and
 * logs at its level, with strerror(errno) appended or not. */
#define LOG_FUNCTION(name, level, with_errno)                               \
	void name(const char *fmt, ...)                                     \
	{                                                                   \
		int saved = errno;                                          \
		va_list ap;                                                 \
									    \
		va_start(ap, fmt);                                          \
		log_vline(level, with_errno, saved, fmt, ap);               \
		va_end(ap);                                                 \
		errno = saved;                                              \
	}

LOG_FUNCTION(log_warn, NS_LOG_WARN, 1)
LOG_FUNCTION(log_warnx, NS_LOG_WARN, 0)
LOG_FUNCTION(log_info, NS_LOG_INFO, 0)
LOG_FUNCTION(log_debug, NS_LOG_DEBUG, 0)
LOG_FUNCTION(log_err, NS_LOG_ERR, 1)
LOG_FUNCTION(log_errx, NS_LOG_ERR, 0)

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
