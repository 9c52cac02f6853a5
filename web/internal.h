/*
 * internal.h - what web/'s files share.  Not part of the module's
 * interface: only the files in web/ include it.
 */
#ifndef NATSCOPE_WEB_INTERNAL_H
#define NATSCOPE_WEB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

struct store;

/* A growing text buffer for one response body.  After the first failed
 * append, err is set and every later append does nothing, so a writer
 * checks once at the end. */
struct web_buf {
	char *p;
	size_t len;
	size_t cap;
	int err; /* errno of the first failure, 0 if none */
};

/* Appends printf-style text.  Sets b->err (ENOMEM) on failure. */
void web_buf_printf(struct web_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Appends len bytes of s. */
void web_buf_add(struct web_buf *b, const char *s, size_t len);

/* Appends a string literal. */
#define WEB_BUF_LIT(b, lit) web_buf_add((b), "" lit, sizeof(lit) - 1)

/* Releases the buffer's memory and zeroes it. */
void web_buf_free(struct web_buf *b);

/* The longest token a token file may hold. */
#define WEB_TOKEN_MAX 4096

/* Whether given equals want, in time that depends on want's length only
 * (auth.c). */
int web_token_equal(const char *given, const char *want);

/* The login cookie (auth.c): "<expiry, unix s>.<HMAC-SHA256 of it keyed
 * by the token, hex>", valid WEB_SESSION_S after /login made it.
 * web_session_make() writes one expiring at exp_s into out; returns 0, or
 * -1 with errno ENOSYS (no HMAC in GnuTLS; logged).  web_session_valid()
 * says whether cookie is one made with token that has not expired at
 * now_s (compared in constant time). */
#define WEB_SESSION_S (12 * 3600)
#define WEB_SESSION_MAC_HEX 64
#define WEB_SESSION_MAX (WEB_SESSION_MAC_HEX + 24)
int web_session_make(const char *token, long long exp_s,
		     char out[WEB_SESSION_MAX]);
int web_session_valid(const char *cookie, const char *token,
		      long long now_s);

/* Builds the Prometheus text exposition (format 0.0.4) of everything in
 * the store, and the process_* families of the process serving it (from
 * /proc/self: under natscope run, its web process).  Returns a malloc'd NUL-terminated body (caller frees) with
 * its length in *len, or NULL with errno (the store's errno: EBUSY,
 * EIO, ...; ENOMEM).  Call on the thread that owns st. */
char *web_metrics(struct store *st, size_t *len);

/* Writes ms since the epoch as "2026-11-25T10:00:01.250Z". */
void web_format_time(int64_t ms, char out[32]);

/* One file of the dashboard compiled into the binary (web/ui/embed.cmake
 * generates the table from web/ui and uPlot's dist files). */
struct web_asset {
	const char *name;	    /* served as /ui/<name> */
	const char *ctype;	    /* Content-Type */
	const unsigned char *bytes; /* len bytes (and a NUL after them) */
	size_t len;
	const char *etag;	    /* "\"<SHA-256 prefix>\"", quotes included */
};

extern const struct web_asset web_assets[];
extern const size_t web_assets_count;

/* Appends s with & < > " ' as HTML character references: the one way
 * text from the database (addresses, notes, gap reasons: all of it came
 * from the network or a file) enters a page.  NULL appends nothing. */
void web_buf_html(struct web_buf *b, const char *s);

/* What the overview page needs besides the store. */
struct web_page_cfg {
	double warn, critical; /* colour thresholds, of capacity (0-1] */
	unsigned refresh_s;    /* the script's refresh period */
};

#define WEB_OVERVIEW_LIVE INT64_MIN /* web_overview()'s at_ms: now */
#define WEB_OVERVIEW_ROWS 100 /* rows the overview shows unless ?limit= */

/* Renders the overview page ("/" for a browser): the collector's health
 * and coverage, then every public IP x protocol sorted by pressure, from
 * the same JSON answers the API gives (store_json_status and
 * store_json_gateways, or store_json_gateways_at for at_ms other than
 * WEB_OVERVIEW_LIVE, or store_json_gateways_range over [from_ms, to_ms)
 * when from_ms is not WEB_OVERVIEW_LIVE: then each column shows its peak
 * in the range; read back with jansson).  Works without script;
 * dash.js enhances it.  Returns a malloc'd page (caller frees) with its
 * length in *len, or NULL with errno: the store's (ENOENT before any
 * status row, EBUSY, EIO, ...; ERANGE: no history at at_ms), EPROTO for
 * an answer it cannot read, ENOMEM.  Only the limit most pressed rows
 * are rendered (a link offers the rest): 512 rows take a browser
 * seconds to lay out.  Call on the thread that owns st. */
char *web_overview(struct store *st, const struct web_page_cfg *cfg,
		   int64_t now_ms, int64_t at_ms, int64_t from_ms,
		   int64_t to_ms, unsigned limit, size_t *len);

/* Appends a page's <head> up to its stylesheets (no </head>): title (a
 * fixed text, not escaped) and, when refresh, a meta refresh of 5 s. */
void web_page_head(struct web_buf *b, const char *title, int refresh);

/* Appends the bar every page starts with: natscope's name, the links to
 * the overview, incidents and lookup (current: the one that is this page,
 * or NULL), and a <form id="picker"> the pages' script fills in. */
void web_page_nav(struct web_buf *b, const char *current);

/* The page every dashboard page but the overview is: the bar, an empty
 * <main id="page" data-page=page> that web/ui/pages.js draws from the
 * URL's path and query and the API, a <noscript> line that says so, and
 * the scripts.  page is a route's fixed name ("gateway", "ports", ...),
 * never text from the request.  Returns a malloc'd page (caller frees)
 * with its length in *len, or NULL with errno ENOMEM. */
char *web_page_shell(const char *page, const struct web_page_cfg *cfg,
		     size_t *len);

/* A minimal page that says msg (escaped), for when the overview cannot
 * be rendered; refresh: it reloads itself every few seconds (no script).
 * Returns a malloc'd page with its length in *len, or NULL (ENOMEM). */
char *web_page_message(const char *msg, int refresh, size_t *len);

/* The login page (a form that POSTs the token to /login); next: where
 * the browser goes afterwards (a path and query on this origin, escaped
 * here); msg: an error to show, or NULL.  Returns a malloc'd page with its
 * length in *len, or NULL (ENOMEM). */
char *web_page_login(const char *next, const char *msg, size_t *len);

#endif
