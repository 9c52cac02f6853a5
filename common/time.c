/*
 * time.c - times as people type them: RFC 3339 or unix seconds, in and
 * out, in milliseconds since the epoch (UTC).
 */
#include "common/common.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Days since 1970-01-01 of a proleptic Gregorian date (no timegm(): it
 * depends on the environment's zone database). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++, (*p)++) {
		if (!isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (**p - '0');
	}
	*out = v;
	return 0;
}

/* unix seconds, optionally with a fraction */
static int parse_unix(const char *s, int64_t *ms)
{
	char *end;
	double v;

	if (!*s || strspn(s, "0123456789.") != strlen(s))
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || v > 9.2e15)
		return -1;
	*ms = (int64_t)(v * 1000.0 + 0.5);
	return 0;
}

static int parse_rfc3339(const char *s, int64_t *ms)
{
	int Y, M, D, h = 0, m = 0, sec = 0, frac = 0, fdig = 0, oh, om;
	int64_t off = 0, t;

	if (digits(&s, 4, &Y) < 0 || *s++ != '-' || digits(&s, 2, &M) < 0 ||
	    *s++ != '-' || digits(&s, 2, &D) < 0)
		return -1;
	if (*s == 'T' || *s == 't' || *s == ' ') {
		s++;
		if (digits(&s, 2, &h) < 0 || *s++ != ':' ||
		    digits(&s, 2, &m) < 0)
			return -1;
		if (*s == ':') {
			s++;
			if (digits(&s, 2, &sec) < 0)
				return -1;
			if (*s == '.' || *s == ',') {
				s++;
				if (!isdigit((unsigned char)*s))
					return -1;
				for (; isdigit((unsigned char)*s); s++, fdig++)
					if (fdig < 3)
						frac = frac * 10 + (*s - '0');
				for (int i = fdig; i < 3; i++)
					frac *= 10;
			}
		}
		if (*s == 'Z' || *s == 'z') {
			s++;
		} else if (*s == '+' || *s == '-') {
			int sign = *s++ == '-' ? -1 : 1;

			if (digits(&s, 2, &oh) < 0)
				return -1;
			if (*s == ':')
				s++;
			if (digits(&s, 2, &om) < 0 || oh > 23 || om > 59)
				return -1;
			off = sign * (oh * 60 + om) * 60000LL;
		} else {
			return -1; /* a time of day needs its offset */
		}
	}
	if (*s || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 ||
	    sec > 60)
		return -1;
	t = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400000LL +
	    (h * 3600LL + m * 60LL + sec) * 1000LL + frac;
	*ms = t - off;
	return 0;
}

int ns_time_parse(const char *text, int64_t *ms)
{
	if (text && (parse_unix(text, ms) == 0 || parse_rfc3339(text, ms) == 0))
		return 0;
	errno = EINVAL;
	return -1;
}

char *ns_time_format(int64_t ms, char buf[NS_TIME_STRLEN])
{
	time_t s = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&s, &tm);
	n = strftime(buf, NS_TIME_STRLEN, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, NS_TIME_STRLEN - n, ".%03dZ",
		 (int)(ms - (int64_t)s * 1000));
	return buf;
}
