/*
 * http.c - the commands' HTTP client (libcurl): GET a running natscope's
 * API, with a bounded body and time.
 */
#include "cli/cli.h"
#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#define BODY_MAX (64 << 20)
#define HTTP_TIMEOUT_S 10L

struct cli_http {
	CURL *curl;
	char base[512];
};

struct http_body {
	char *p;
	size_t len;
};

static size_t http_write(char *data, size_t size, size_t n, void *arg)
{
	struct http_body *b = arg;
	size_t add = size * n;
	char *p;

	if (b->len + add > BODY_MAX || !(p = realloc(b->p, b->len + add + 1)))
		return 0;
	memcpy(p + b->len, data, add);
	b->len += add;
	p[b->len] = '\0';
	b->p = p;
	return add;
}

struct cli_http *cli_http_open(const char *base, const char *agent)
{
	struct cli_http *h;
	size_t n = strlen(base);

	if (!n || base[n - 1] == '/' || n >= sizeof(h->base)) {
		errno = EINVAL;
		return NULL;
	}
	if (!(h = calloc(1, sizeof(*h))))
		return NULL;
	snprintf(h->base, sizeof(h->base), "%s", base);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    !(h->curl = curl_easy_init())) {
		log_warnx("cannot start libcurl");
		free(h);
		errno = ENOMEM;
		return NULL;
	}
	curl_easy_setopt(h->curl, CURLOPT_TIMEOUT, HTTP_TIMEOUT_S);
	curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h->curl, CURLOPT_USERAGENT, agent);
	return h;
}

char *cli_http_get(struct cli_http *h, const char *path, long *code,
		   char *err, size_t errlen)
{
	struct http_body b = { NULL, 0 };
	char url[1024];
	CURLcode rc;

	snprintf(url, sizeof(url), "%s%s", h->base, path);
	curl_easy_setopt(h->curl, CURLOPT_URL, url);
	curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, http_write);
	curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, &b);
	rc = curl_easy_perform(h->curl);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "%.160s: %.80s", url,
			 curl_easy_strerror(rc));
		free(b.p);
		return NULL;
	}
	curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, code);
	if (!b.p)
		b.p = strdup("");
	return b.p;
}

void cli_http_close(struct cli_http *h)
{
	if (!h)
		return;
	curl_easy_cleanup(h->curl);
	curl_global_cleanup();
	free(h);
}
