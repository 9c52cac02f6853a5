/*
 * auth.c - bearer tokens (web.h): reading the token file, and comparing
 * what a client sent with the token in constant time.
 */
#include "web/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"
#include "web/web.h"

#define WEB_TOKEN_MAX 4096

char *web_read_token_file(const char *path)
{
	char buf[WEB_TOKEN_MAX + 2], *p, *e, *tok;
	struct stat sb;
	FILE *f;

	if (!(f = fopen(path, "re"))) {
		log_warn("web: token file %s", path);
		return NULL;
	}
	if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & S_IROTH)) {
		fclose(f);
		log_warnx("web: token file %s is readable by anyone: chmod o-r "
			  "it", path);
		errno = EPERM;
		return NULL;
	}
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (p) {
		while (*p == ' ' || *p == '\t')
			p++;
		e = p + strcspn(p, "\r\n");
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		*e = '\0';
	}
	if (!p || !*p || strlen(p) > WEB_TOKEN_MAX) {
		log_warnx("web: token file %s: %s", path, p && *p ?
			  "the token is longer than 4096 bytes" :
			  "no token on its first line");
		errno = EINVAL;
		return NULL;
	}
	if (!(tok = strdup(p)))
		log_warn("web: token");
	return tok;
}

int web_token_equal(const char *given, const char *want)
{
	size_t gl = strlen(given), wl = strlen(want);
	unsigned char d = gl != wl;

	/* as long as the token whatever was sent: the time says nothing of
	 * how much of it matched */
	for (size_t i = 0; i < wl; i++)
		d |= (unsigned char)(want[i] ^ (i < gl ? given[i] : 0));
	return d == 0;
}
