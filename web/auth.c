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

#include <gnutls/crypto.h>

#include "common/common.h"
#include "web/web.h"

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

/* ---- the login cookie ----
 *
 * A browser cannot add "Authorization: Bearer" to a navigation, so
 * /login trades the token for a cookie: "<expiry>.<HMAC-SHA256>", the
 * MAC keyed by the token over the expiry.  No state on the server: a
 * cookie is valid until its expiry, or until the token changes (SIGHUP),
 * which invalidates every cookie made with the old one.  The cookie is
 * not the token: a cookie jar that leaks gives access for hours, not the
 * token itself. */

static int web_session_mac(const char *token, long long exp_s,
			   char hex[WEB_SESSION_MAC_HEX + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char mac[WEB_SESSION_MAC_HEX / 2];
	char msg[64];
	int n = snprintf(msg, sizeof(msg), "natscope session %lld", exp_s);

	if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, token, strlen(token), msg,
			     (size_t)n, mac) < 0) {
		log_warnx("web: HMAC-SHA256 is not available");
		errno = ENOSYS;
		return -1;
	}
	for (size_t i = 0; i < sizeof(mac); i++) {
		hex[2 * i] = digits[mac[i] >> 4];
		hex[2 * i + 1] = digits[mac[i] & 15];
	}
	hex[WEB_SESSION_MAC_HEX] = '\0';
	return 0;
}

int web_session_make(const char *token, long long exp_s,
		     char out[WEB_SESSION_MAX])
{
	char hex[WEB_SESSION_MAC_HEX + 1];

	if (web_session_mac(token, exp_s, hex) == -1)
		return -1;
	snprintf(out, WEB_SESSION_MAX, "%lld.%s", exp_s, hex);
	return 0;
}

int web_session_valid(const char *cookie, const char *token,
		      long long now_s)
{
	char hex[WEB_SESSION_MAC_HEX + 1];
	long long exp_s = 0;
	const char *p = cookie;

	if (!cookie || !token)
		return 0;
	for (; *p >= '0' && *p <= '9' && p - cookie < 12; p++)
		exp_s = exp_s * 10 + (*p - '0');
	if (p == cookie || *p != '.' || exp_s <= now_s ||
	    exp_s > now_s + WEB_SESSION_S + 60)
		return 0;
	if (web_session_mac(token, exp_s, hex) == -1)
		return 0;
	return web_token_equal(p + 1, hex);
}
