/*
 * web.c - the HTTP service: libmicrohttpd on one internal epoll thread,
 * routing, validation and the mapping of store errors to HTTP statuses;
 * the dashboard's files compiled into the binary (web_assets[]) under
 * /ui/, "/" as the overview page for browsers (overview.c), and the
 * other pages' shell at their paths (/gateway/{ip}, /host/{ip}, ...),
 * which web/ui/pages.js draws from the URL and the API.
 *
 * Only that thread touches the read-only store connection, so requests
 * need no locking.  Every JSON document with data in it is built by
 * SQLite (store_json_*, store_json_error); what is printed here holds only
 * numbers and fixed words.
 */
#include "web/web.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "store/store.h"
#include "web/internal.h"

#define WEB_MAX_PATH 512	  /* longer paths are refused with 400 */
#define WEB_CONN_MEMORY 32768	  /* per-connection pool: headers, URL */
#define WEB_LISTEN_BACKLOG 128

#define CT_JSON "application/json"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CT_CSV "text/csv; charset=utf-8"
#define CT_HTML "text/html; charset=utf-8"

/* Every HTML answer's policy: this origin's files only, no inline script
 * or style, no plugin, no framing, forms and <base> nowhere else. */
#define WEB_CSP                                                              \
	"default-src 'self'; script-src 'self'; style-src 'self'; "          \
	"img-src 'self'; connect-src 'self'; object-src 'none'; "           \
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

struct web {
	struct MHD_Daemon *mhd;
	struct store *st; /* read-only; only the MHD thread uses it */
	unsigned interval_s;
	int64_t run_started_ms; /* answer only once the status row is this
				   run's */
	struct web_page_cfg page; /* the overview's thresholds */
	uint64_t run_pid;	/* the process that writes that row */
	int run_seen;		/* it was: no need to look again */
	char *index;		/* the JSON index, from web_routes[] */
	pthread_mutex_t token_lock; /* token: set by web_set_token() */
	char *token;		/* NULL: no authentication */
	char cookie[32];	/* the login cookie's name: per port */
	unsigned failed_logins; /* wrong tokens at /login, since logged */
	int64_t failed_logged_ms;
	unsigned open_paths;	/* WEB_OPEN_* */
	int tls;
	size_t index_len;
	uint16_t port;
	char addr[INET6_ADDRSTRLEN + 8]; /* what it listens on, for the log */
};

static int web_run_begun(struct web *w);

/* Extra headers a reply carries besides Content-Type and Cache-Control. */
#define REPLY_ALLOW 0x1	      /* Allow: GET, HEAD */
#define REPLY_RETRY_AFTER 0x2 /* Retry-After: 1 */
#define REPLY_HTML 0x4	      /* Content-Security-Policy: WEB_CSP */
#define REPLY_VARY 0x8	      /* Vary: Accept ("/" answers by it) */
#define REPLY_AUTH 0x10	      /* WWW-Authenticate: Bearer realm="natscope" */

/* Proto names in the order the API documents them. */
static const uint8_t web_protos[] = {
	IPPROTO_TCP,  IPPROTO_UDP,  IPPROTO_UDPLITE, IPPROTO_SCTP,
	IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6,
};


static const char web_fallback_error[] = "{\"error\": \"internal error\"}";

/* ---- parsing ---- */

/* Decimal digits only (no sign, no space), value at most max. */
static int parse_digits(const char *t, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (!t || !*t)
		return -1;
	for (; *t; t++) {
		if (*t < '0' || *t > '9')
			return -1;
		v = v * 10 + (unsigned long)(*t - '0');
		if (v > max)
			return -1;
	}
	*out = v;
	return 0;
}

int web_parse_limit(const char *text, unsigned *limit)
{
	unsigned long v;

	if (parse_digits(text, WEB_LIMIT_MAX, &v) == -1 || v < 1) {
		errno = EINVAL;
		return -1;
	}
	*limit = (unsigned)v;
	return 0;
}

int web_parse_listen(const char *spec, struct sockaddr_storage *ss,
		     socklen_t *len)
{
	char host[INET6_ADDRSTRLEN];
	const char *end, *port_text;
	unsigned long port;
	size_t hl;
	int v6;

	if (!spec)
		goto bad;
	v6 = spec[0] == '[';
	if (v6) {
		spec++;
		end = strchr(spec, ']');
		if (!end || end[1] != ':')
			goto bad;
		port_text = end + 2;
	} else {
		end = strchr(spec, ':');
		if (!end)
			goto bad;
		port_text = end + 1;
	}
	hl = (size_t)(end - spec);
	if (hl == 0 || hl >= sizeof(host))
		goto bad;
	memcpy(host, spec, hl);
	host[hl] = '\0';
	if (parse_digits(port_text, 65535, &port) == -1)
		goto bad;

	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			goto bad;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			goto bad;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
	}
	return 0;
bad:
	errno = EINVAL;
	return -1;
}

void web_format_time(int64_t ms, char out[32])
{
	time_t sec = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	if (ms < 0 || !gmtime_r(&sec, &tm)) {
		snprintf(out, 32, "1970-01-01T00:00:00.000Z");
		return;
	}
	n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

/* ---- replies ---- */

/* Queues body as the reply, with Cache-Control cache and, when etag is
 * not NULL, that ETag.  MUST_FREE bodies are owned by MHD (or freed here
 * on failure); PERSISTENT ones are static.  ctype NULL: no body type (a
 * 304).  Every reply says X-Content-Type-Options: nosniff. */
static enum MHD_Result web_reply_cached(struct MHD_Connection *c,
					unsigned code, const char *ctype,
					char *body, size_t len,
					enum MHD_ResponseMemoryMode mode,
					unsigned extra, const char *cache,
					const char *etag)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, body, mode);
	if (!r) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		log_warnx("web: cannot create a response");
		return MHD_NO;
	}
	if ((ctype && MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
					      ctype) == MHD_NO) ||
	    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
				    cache) == MHD_NO ||
	    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff") ==
		    MHD_NO ||
	    (etag && MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag) ==
			     MHD_NO) ||
	    ((extra & REPLY_HTML) &&
	     (MHD_add_response_header(r, "Content-Security-Policy", WEB_CSP) ==
		      MHD_NO ||
	      /* nothing to other origins; to its own, the Origin a login
	       * form's POST must carry (web_same_origin()) */
	      MHD_add_response_header(r, "Referrer-Policy", "same-origin") ==
		      MHD_NO)) ||
	    ((extra & REPLY_VARY) &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Accept") ==
		     MHD_NO) ||
	    ((extra & REPLY_ALLOW) &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") ==
		     MHD_NO) ||
	    ((extra & REPLY_RETRY_AFTER) &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1") ==
		     MHD_NO) ||
	    ((extra & REPLY_AUTH) &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
				     "Bearer realm=\"natscope\"") == MHD_NO)) {
		log_warnx("web: cannot add response headers");
		MHD_destroy_response(r);
		return MHD_NO;
	}
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

/* A reply nobody may cache (every answer from the database). */
static enum MHD_Result web_reply(struct MHD_Connection *c, unsigned code,
				 const char *ctype, char *body, size_t len,
				 enum MHD_ResponseMemoryMode mode,
				 unsigned extra)
{
	return web_reply_cached(c, code, ctype, body, len, mode, extra,
				"no-store", NULL);
}

/* Replies with {"error": msg}, msg escaped by SQLite. */
static enum MHD_Result web_error(struct web *w, struct MHD_Connection *c,
				 unsigned code, unsigned extra,
				 const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum MHD_Result web_error(struct web *w, struct MHD_Connection *c,
				 unsigned code, unsigned extra,
				 const char *fmt, ...)
{
	char msg[WEB_MAX_PATH + 256];
	char *body = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	store_json_error(w->st, msg, &body);
	if (!body)
		return web_reply(c, code, CT_JSON, (char *)web_fallback_error,
				 sizeof(web_fallback_error) - 1,
				 MHD_RESPMEM_PERSISTENT, extra);
	return web_reply(c, code, CT_JSON, body, strlen(body),
			 MHD_RESPMEM_MUST_FREE, extra);
}

/* What a failed store read (errno err) is told as: the status, the
 * REPLY_* flags and the message in msg.  Shared by the JSON and the HTML
 * answers. */
static unsigned web_store_error(int err, unsigned *extra, char *msg,
				size_t n)
{
	*extra = 0;
	if (err == ENOENT || err == EBUSY) {
		*extra = REPLY_RETRY_AFTER;
		snprintf(msg, n, "%s", err == ENOENT ?
			 /* no run has written a status row yet */
			 "the collector has not written a snapshot yet" :
			 "database is busy");
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	if (err == EILSEQ)
		snprintf(msg, n, "%s", "the database file is corrupt: this "
			 "answer cannot be read from it (natscope's log says "
			 "where)");
	else if (err == EIO)
		snprintf(msg, n, "%s", "cannot read the database: I/O error");
	else
		snprintf(msg, n, "cannot read the database (%s)",
			 strerror(err));
	return MHD_HTTP_INTERNAL_SERVER_ERROR;
}

/* A store read failed with err (already logged by the store).  The
 * per-gateway routes handle ENOENT (no such gateway) themselves.  Never an
 * empty answer: the client is told that the database cannot be read, and
 * why in plain words. */
static enum MHD_Result web_store_failed(struct web *w, struct MHD_Connection *c,
					int err)
{
	char msg[160];
	unsigned extra, code = web_store_error(err, &extra, msg, sizeof(msg));

	return web_error(w, c, code, extra, "%s", msg);
}

static enum MHD_Result web_json(struct MHD_Connection *c, char *body)
{
	return web_reply(c, MHD_HTTP_OK, CT_JSON, body, strlen(body),
			 MHD_RESPMEM_MUST_FREE, 0);
}

/* ---- requests: query parameters ---- */

/* The query parameters, one bit each; a route says which it takes. */
#define P_PUBLIC_IP 0x001
#define P_PROTO 0x002
#define P_PORT 0x004
#define P_LIMIT 0x008
#define P_AT 0x010
#define P_FROM 0x020
#define P_TO 0x040
#define P_RESOLUTION 0x080
#define P_FORMAT 0x100

struct web_route;

/* One request, its path segment and query validated. */
struct web_req {
	const struct web_route *route;
	char seg[WEB_MAX_PATH + 1]; /* the path's {ip} or {id}, decoded */
	struct ns_addr addr;	    /* {ip} */
	int64_t id;		    /* {id} */
	unsigned given;		    /* the P_* the query holds */
	struct ns_addr public_ip;
	uint8_t proto;
	uint16_t port;
	unsigned limit;
	int64_t at_ms, from_ms, to_ms;
	enum store_tier tier;
	int csv;
	int64_t now_ms;
};

typedef enum MHD_Result (*web_handler)(struct web *w, struct MHD_Connection *c,
				       struct web_req *q);

enum web_seg { SEG_NONE, SEG_IP, SEG_ID, SEG_NAME };

/* A route: the path (one "{}" segment at most, of kind seg), what answers
 * it, the parameters it takes (and must have), the JSON path of the table
 * ?format=csv turns into CSV, and its defaults. */
struct web_route {
	const char *path;
	enum web_seg seg;
	web_handler handler;
	unsigned params, required;
	const char *table;
	unsigned limit;		 /* default limit */
	int64_t span_ms;	 /* default from = to - span_ms */
	int before_run;		 /* answered before this run's status row */
	/* A dashboard page (web/ui/pages.js draws it): its name.  Its query
	 * is the page's state, read by the page's script, which asks the API
	 * (where every value is validated), so it is not parsed here. */
	const char *page;
	/* Answered without the token: holds no figure (the dashboard's
	 * files, the login page). */
	int open;
	/* An empty value ("at=") counts as not given: a plain HTML form
	 * sends every field, filled or not. */
	int empty_absent;
};

/* Writes the proto names, ", "-separated, into buf. */
static void web_proto_list(char *buf, size_t cap)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(web_protos) && off < cap; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%s%s",
					i ? ", " : "",
					ns_proto_name(web_protos[i]));
}

/* Each parser reads value v (nul: it held a NUL byte, so it is bad)
 * into q, or writes why not into err and returns -1. */
typedef int (*web_parser)(struct web_req *q, const char *name, const char *v,
			  int nul, char *err, size_t n);

static int parse_public_ip(struct web_req *q, const char *name, const char *v,
			   int nul, char *err, size_t n)
{
	if (!nul && ns_addr_parse(v, &q->public_ip) == 0)
		return 0;
	snprintf(err, n, "invalid IP address '%.64s' in %s", v, name);
	return -1;
}

static int parse_proto(struct web_req *q, const char *name, const char *v,
		       int nul, char *err, size_t n)
{
	char protos[64];
	int proto = nul ? -1 : ns_proto_parse(v);

	if (proto >= 0) {
		q->proto = (uint8_t)proto;
		return 0;
	}
	web_proto_list(protos, sizeof(protos));
	snprintf(err, n, "unknown proto '%.64s' (expected one of %s)", v,
		 protos);
	return -1;
}

static int parse_port(struct web_req *q, const char *name, const char *v,
		      int nul, char *err, size_t n)
{
	unsigned long port;

	if (!nul && parse_digits(v, 65535, &port) == 0) {
		q->port = (uint16_t)port;
		return 0;
	}
	snprintf(err, n, "%s must be an integer from 0 to 65535", name);
	return -1;
}

static int parse_limit(struct web_req *q, const char *name, const char *v,
		       int nul, char *err, size_t n)
{
	if (!nul && web_parse_limit(v, &q->limit) == 0)
		return 0;
	snprintf(err, n, "%s must be an integer from 1 to %d", name,
		 WEB_LIMIT_MAX);
	return -1;
}

static int parse_time(struct web_req *q, const char *name, const char *v,
		      int nul, char *err, size_t n)
{
	int64_t *ms = strcmp(name, "at") == 0	   ? &q->at_ms
		      : strcmp(name, "from") == 0 ? &q->from_ms
						   : &q->to_ms;

	if (!nul && ns_time_parse(v, ms) == 0)
		return 0;
	snprintf(err, n,
		 "%s must be a time, RFC 3339 (2026-12-02T14:02:00Z) or unix "
		 "seconds, not '%.64s'", name, v);
	return -1;
}

static int parse_resolution(struct web_req *q, const char *name,
			    const char *v, int nul, char *err, size_t n)
{
	static const char *const names[] = { "raw", "minute", "hour" };

	for (int i = 0; !nul && i < 3; i++)
		if (strcmp(v, names[i]) == 0) {
			q->tier = (enum store_tier)i;
			return 0;
		}
	snprintf(err, n, "%s must be raw, minute or hour, not '%.64s'", name,
		 v);
	return -1;
}

static int parse_format(struct web_req *q, const char *name, const char *v,
			int nul, char *err, size_t n)
{
	if (!nul && (strcmp(v, "json") == 0 || strcmp(v, "csv") == 0)) {
		q->csv = strcmp(v, "csv") == 0;
		return 0;
	}
	snprintf(err, n, "%s must be json or csv, not '%.64s'", name, v);
	return -1;
}

/* Every parameter, in the order they are checked. */
static const struct {
	unsigned bit;
	const char *name;
	web_parser parse;
} web_params[] = {
	{ P_PUBLIC_IP, "public_ip", parse_public_ip },
	{ P_PROTO, "proto", parse_proto },
	{ P_PORT, "port", parse_port },
	{ P_LIMIT, "limit", parse_limit },
	{ P_AT, "at", parse_time },
	{ P_FROM, "from", parse_time },
	{ P_TO, "to", parse_time },
	{ P_RESOLUTION, "resolution", parse_resolution },
	{ P_FORMAT, "format", parse_format },
};
#define WEB_NPARAMS (sizeof(web_params) / sizeof(web_params[0]))

/* What the walk over a request's query arguments found. */
struct web_args {
	unsigned accepted; /* the route's P_* */
	int empty_absent;  /* the route's: "key=" counts as not given */
	unsigned seen;
	char bad[128];	   /* the first unknown or repeated key, quoted */
};

static enum MHD_Result web_arg_check(void *cls, enum MHD_ValueKind kind,
				     const char *key, const char *value)
{
	struct web_args *a = cls;

	if (a->bad[0])
		return MHD_YES;
	for (size_t i = 0; i < WEB_NPARAMS; i++) {
		if (strcmp(key, web_params[i].name) != 0 ||
		    !(a->accepted & web_params[i].bit))
			continue;
		if (a->empty_absent && (!value || !*value))
			return MHD_YES;
		if (a->seen & web_params[i].bit)
			snprintf(a->bad, sizeof(a->bad),
				 "parameter '%.64s' given twice", key);
		a->seen |= web_params[i].bit;
		return MHD_YES;
	}
	snprintf(a->bad, sizeof(a->bad), "unknown parameter '%.64s'", key);
	return MHD_YES;
}

/* Looks up a query argument.  Returns 0 when absent, 1 with *v set ("" if
 * given without "="), -1 when the value holds a NUL byte (%00). */
static int web_query(struct MHD_Connection *c, const char *key,
		     const char **v)
{
	size_t n = 0;

	*v = NULL;
	if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, key,
					  strlen(key), v, &n) != MHD_YES)
		return 0;
	if (!*v)
		*v = "";
	return strlen(*v) == n ? 1 : -1;
}

/* Validates the path segment and the query into q.  Returns 0, or -1
 * with the 400 message in err. */
static int web_parse_request(struct MHD_Connection *c, struct web_req *q,
			     char *err, size_t n)
{
	const struct web_route *rt = q->route;
	struct web_args a = { .accepted = rt->params,
			      .empty_absent = rt->empty_absent };
	size_t off = 0;
	const char *v;
	int rc;

	if (rt->seg == SEG_IP && ns_addr_parse(q->seg, &q->addr) == -1) {
		snprintf(err, n, "invalid IP address '%s'", q->seg);
		return -1;
	}
	if (rt->seg == SEG_ID) {
		unsigned long id;

		if (parse_digits(q->seg, INT64_MAX, &id) == -1) {
			snprintf(err, n, "invalid incident id '%s'", q->seg);
			return -1;
		}
		q->id = (int64_t)id;
	}

	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, web_arg_check, &a);
	if (a.bad[0]) {
		off = (size_t)snprintf(err, n, "%s (this path takes ", a.bad);
		for (size_t i = 0, k = 0; i < WEB_NPARAMS && off < n; i++)
			if (rt->params & web_params[i].bit)
				off += (size_t)snprintf(err + off, n - off,
							"%s%s", k++ ? ", " : "",
							web_params[i].name);
		if (off < n)
			snprintf(err + off, n - off, "%s)",
				 rt->params ? "" : "none");
		return -1;
	}

	q->given = a.seen;
	q->proto = IPPROTO_TCP;
	q->limit = rt->limit;
	q->tier = STORE_TIER_AUTO;
	for (size_t i = 0; i < WEB_NPARAMS; i++) {
		const char *name = web_params[i].name;

		if (!(rt->params & web_params[i].bit))
			continue;
		rc = web_query(c, name, &v);
		if (rc == 1 && !*v && rt->empty_absent)
			rc = 0;
		if (rc == 0 && (rt->required & web_params[i].bit)) {
			snprintf(err, n, "%s is required", name);
			return -1;
		}
		if (rc != 0 && web_params[i].parse(q, name, v, rc == -1, err,
						   n) == -1)
			return -1;
	}
	if (!(q->given & P_TO))
		q->to_ms = q->now_ms;
	if (!(q->given & P_FROM))
		q->from_ms = q->to_ms - rt->span_ms;
	if ((rt->params & P_FROM) && q->from_ms >= q->to_ms) {
		snprintf(err, n, "from must be before to");
		return -1;
	}
	return 0;
}

/* ---- handlers ---- */

/* Sends body (malloc'd), as JSON or as the CSV of the route's table. */
static enum MHD_Result web_send(struct web *w, struct MHD_Connection *c,
				struct web_req *q, char *body)
{
	char *csv;

	if (!q->csv)
		return web_json(c, body);
	if (store_json_csv(w->st, body, q->route->table, &csv) == -1) {
		int err = errno;

		free(body);
		if (err == EINVAL) /* the answer lacks the route's table */
			return web_error(w, c, MHD_HTTP_INTERNAL_SERVER_ERROR,
					 0, "this answer has no table '%s' to "
					 "give as CSV", q->route->table);
		return web_store_failed(w, c, err);
	}
	free(body);
	return web_reply(c, MHD_HTTP_OK, CT_CSV, csv, strlen(csv),
			 MHD_RESPMEM_MUST_FREE, 0);
}

/* 404 for a moment no period of history holds, saying what exists. */
static enum MHD_Result web_no_history(struct web *w, struct MHD_Connection *c,
				      int64_t at_ms)
{
	char at[NS_TIME_STRLEN], a[NS_TIME_STRLEN], b[NS_TIME_STRLEN];
	char p[NS_TIME_STRLEN], n[NS_TIME_STRLEN];
	struct store_hist_range r;

	if (store_history_range(w->st, at_ms, &r) == -1)
		return web_store_failed(w, c, errno);
	ns_time_format(at_ms, at);
	if (r.first_ms < 0)
		return web_error(w, c, MHD_HTTP_NOT_FOUND, 0,
				 "no history at %s: none is recorded yet", at);
	ns_time_format(r.first_ms, a);
	ns_time_format(r.end_ms, b);
	if (r.before_ms >= 0 && r.after_ms >= 0)
		return web_error(w, c, MHD_HTTP_NOT_FOUND, 0,
				 "no history at %s: history holds %s to %s, "
				 "with nothing observed from %s to %s",
				 at, a, b, ns_time_format(r.before_ms, p),
				 ns_time_format(r.after_ms, n));
	return web_error(w, c, MHD_HTTP_NOT_FOUND, 0,
			 "no history at %s: history holds %s to %s", at, a, b);
}

static enum MHD_Result web_index_reply(struct web *w, struct MHD_Connection *c,
				       struct web_req *q)
{
	return web_reply(c, MHD_HTTP_OK, CT_JSON, w->index, w->index_len,
			 MHD_RESPMEM_PERSISTENT, 0);
}

/* Whether the client asks for HTML: its Accept header names text/html, as
 * browsers' do.  No Accept, a JSON-only one or curl's bare wildcard get
 * the JSON index, so scripts that read "/" keep working. */
static int web_wants_html(struct MHD_Connection *c)
{
	const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
							 MHD_HTTP_HEADER_ACCEPT);

	return accept && strstr(accept, "text/html") != NULL;
}

/* "/": the overview page for a browser, the JSON index for anyone else. */
static enum MHD_Result web_root(struct web *w, struct MHD_Connection *c,
				struct web_req *q)
{
	unsigned code = MHD_HTTP_OK, extra = 0;
	char msg[160];
	size_t len;
	char *body;

	if (!web_wants_html(c))
		return web_reply(c, MHD_HTTP_OK, CT_JSON, w->index,
				 w->index_len, MHD_RESPMEM_PERSISTENT,
				 REPLY_VARY);
	if (!web_run_begun(w)) {
		code = MHD_HTTP_SERVICE_UNAVAILABLE;
		extra = REPLY_RETRY_AFTER;
		body = web_page_message("starting: the database still holds "
					"the previous run's figures", 1, &len);
	} else if ((q->given & P_AT) && (q->given & (P_FROM | P_TO))) {
		code = MHD_HTTP_BAD_REQUEST;
		body = web_page_message("at (a moment) and from/to (a range) "
					"exclude each other", 0, &len);
	} else if (!(body = web_overview(w->st, &w->page, q->now_ms,
					 q->given & P_AT ? q->at_ms :
					 WEB_OVERVIEW_LIVE,
					 q->given & (P_FROM | P_TO) ?
					 q->from_ms : WEB_OVERVIEW_LIVE,
					 q->to_ms, q->limit, &len))) {
		if (errno == ERANGE) { /* no period of history holds at= */
			code = MHD_HTTP_NOT_FOUND;
			snprintf(msg, sizeof(msg), "no history at that moment "
				 "(/api/v1/gateways?at= says what exists)");
		} else {
			code = web_store_error(errno, &extra, msg,
					       sizeof(msg));
		}
		body = web_page_message(msg, extra & REPLY_RETRY_AFTER, &len);
	}
	if (!body) {
		log_warn("web: overview page");
		return MHD_NO;
	}
	return web_reply(c, code, CT_HTML, body, len, MHD_RESPMEM_MUST_FREE,
			 extra | REPLY_HTML | REPLY_VARY);
}

/* A dashboard page other than the overview: the shell pages.js draws
 * it in (web_page_shell); nothing from the URL enters it. */
static enum MHD_Result web_page_reply(struct web *w, struct MHD_Connection *c,
				      struct web_req *q)
{
	size_t len;
	char *body = web_page_shell(q->route->page, &w->page, &len);

	if (!body) {
		log_warn("web: %s page", q->route->page);
		return MHD_NO;
	}
	return web_reply(c, MHD_HTTP_OK, CT_HTML, body, len,
			 MHD_RESPMEM_MUST_FREE, REPLY_HTML);
}

/* ---- the login page and cookie (the cookie: auth.c) ---- */

#define WEB_NEXT_MAX (2 * WEB_MAX_PATH)	/* where /login sends one after */
#define WEB_LOGIN_BODY_MAX 8192		/* a bigger form is refused */

/* A POST to /login being read (web_access()). */
struct web_login {
	struct MHD_PostProcessor *pp;
	char token[WEB_TOKEN_MAX + 1];
	char next[WEB_NEXT_MAX + 1];
	size_t token_len, next_len, body;
	int overflow, not_form;
};

/* Whether next may be sent to as a Location: a path on this origin ("/"
 * but not "//" or "/\"), no control characters, no backslash. */
static int web_next_ok(const char *next)
{
	if (!next || next[0] != '/' || next[1] == '/' ||
	    strlen(next) > WEB_NEXT_MAX)
		return 0;
	for (const unsigned char *p = (const unsigned char *)next; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			return 0;
	return 1;
}

/* Appends s to out (cap bytes, NUL-terminated), percent-encoding all but
 * unreserved characters and those keep names.  Returns -1 when it does
 * not fit. */
static int web_pct_append(char *out, size_t cap, const char *s,
			  const char *keep)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(out);

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || strchr("-._~", *p) ||
			    strchr(keep, *p);

		if (n + (plain ? 1 : 3) >= cap)
			return -1;
		if (plain) {
			out[n++] = (char)*p;
		} else {
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = '\0';
	return 0;
}

struct web_target {
	char *out;
	size_t cap;
	int args, over;
};

static enum MHD_Result web_target_arg(void *cls, enum MHD_ValueKind kind,
				      const char *key, const char *value)
{
	struct web_target *t = cls;

	(void)kind;
	if (web_pct_append(t->out, t->cap, t->args++ ? "&" : "?", "&?") ||
	    web_pct_append(t->out, t->cap, key, ":") ||
	    (value && (web_pct_append(t->out, t->cap, "=", "=") ||
		       web_pct_append(t->out, t->cap, value, ":"))))
		t->over = 1;
	return t->over ? MHD_NO : MHD_YES;
}

/* The path and query the client asked for (url is MHD's decoded path),
 * encoded again, for the login form to come back to; just the path when
 * the whole does not fit. */
static void web_request_target(struct MHD_Connection *c, const char *url,
			       char *out, size_t cap)
{
	struct web_target t = { .out = out, .cap = cap };

	out[0] = '\0';
	if (web_pct_append(out, cap, url, "/:") == -1) {
		snprintf(out, cap, "/");
		return;
	}
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, web_target_arg,
				  &t);
	if (t.over) {
		out[0] = '\0';
		web_pct_append(out, cap, url, "/:");
	}
}

/* The login page, with status code (200, or 401 where a page needed the
 * token). */
static enum MHD_Result web_login_reply(struct MHD_Connection *c,
				       unsigned code, const char *next,
				       const char *msg)
{
	size_t len;
	char *body = web_page_login(next, msg, &len);

	if (!body) {
		log_warn("web: login page");
		return MHD_NO;
	}
	return web_reply(c, code, CT_HTML, body, len, MHD_RESPMEM_MUST_FREE,
			 REPLY_HTML | (code == MHD_HTTP_UNAUTHORIZED ?
				       REPLY_AUTH : 0));
}

/* 303 See Other to next; with cookie not NULL, sets the login cookie to it
 * for max_age seconds (0 and "": removes it). */
static enum MHD_Result web_redirect(struct web *w, struct MHD_Connection *c,
				    const char *next, const char *cookie,
				    long max_age)
{
	char set[WEB_SESSION_MAX + 128];
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(0, (void *)"",
					    MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	snprintf(set, sizeof(set), "%s=%s; Path=/; Max-Age=%ld; HttpOnly; "
		 "SameSite=Lax%s", w->cookie, cookie ? cookie : "", max_age,
		 w->tls ? "; Secure" : "");
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, next) ==
		    MHD_NO ||
	    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
				    "no-store") == MHD_NO ||
	    (cookie && MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE,
					       set) == MHD_NO)) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	ret = MHD_queue_response(c, MHD_HTTP_SEE_OTHER, r);
	MHD_destroy_response(r);
	return ret;
}

/* Whether a form comes from this origin: browsers say so in
 * Sec-Fetch-Site, or (older ones) send Origin with a POST, which must
 * name the host the request went to.  Neither: not a browser's form. */
static int web_same_origin(struct MHD_Connection *c)
{
	const char *site = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						       "Sec-Fetch-Site");
	const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
							 "Origin");
	const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						       MHD_HTTP_HEADER_HOST);
	const char *p;

	if (site)
		return !strcmp(site, "same-origin");
	if (!origin)
		return 1;
	p = strstr(origin, "://");
	return host && p && !strcmp(p + 3, host);
}

/* A wrong token at /login: logged, at most once a minute with the count. */
static void web_login_failed(struct web *w, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;
	char addr[INET6_ADDRSTRLEN] = "?";
	int64_t now = ns_now_ms();

	w->failed_logins++;
	if (now - w->failed_logged_ms < 60000)
		return;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci && ci->client_addr) {
		const struct sockaddr *sa = ci->client_addr;

		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)
					     (const void *)sa)->sin_addr,
				  addr, sizeof(addr));
		else if (sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)
					      (const void *)sa)->sin6_addr,
				  addr, sizeof(addr));
	}
	log_warnx("web: wrong token at /login from %s (%u since the last "
		  "such line; one a minute at most)", addr, w->failed_logins);
	w->failed_logins = 0;
	w->failed_logged_ms = now;
}

/* GET /login: the form (or, with no token to ask for, straight on). */
static enum MHD_Result web_login_get(struct web *w, struct MHD_Connection *c,
				     struct web_req *q)
{
	const char *next = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
						       "next");
	int open;

	(void)q;
	if (!web_next_ok(next))
		next = "/";
	pthread_mutex_lock(&w->token_lock);
	open = !w->token;
	pthread_mutex_unlock(&w->token_lock);
	if (open)
		return web_redirect(w, c, next, NULL, 0);
	return web_login_reply(c, MHD_HTTP_OK, next, NULL);
}

/* GET /logout: the cookie removed, then the form. */
static enum MHD_Result web_logout(struct web *w, struct MHD_Connection *c,
				  struct web_req *q)
{
	(void)q;
	return web_redirect(w, c, "/login", "", 0);
}

/* POST /login with its form read: the right token sets the cookie and
 * sends the browser on to next; a wrong one shows the form again. */
static enum MHD_Result web_login_post(struct web *w, struct MHD_Connection *c,
				      struct web_login *l)
{
	char cookie[WEB_SESSION_MAX];
	const char *next = l->next_len && web_next_ok(l->next) ? l->next : "/";
	int ok, made = -1;

	if (l->not_form)
		return web_error(w, c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, 0, "%s",
				 "/login takes a form (application/"
				 "x-www-form-urlencoded) with the token");
	if (l->overflow)
		return web_login_reply(c, MHD_HTTP_CONTENT_TOO_LARGE, next,
				       "The form was too large: the token is "
				       "at most 4096 bytes.");
	if (!web_same_origin(c))
		return web_error(w, c, MHD_HTTP_FORBIDDEN, 0, "%s",
				 "a login form from another origin is refused");
	pthread_mutex_lock(&w->token_lock);
	ok = !w->token || web_token_equal(l->token, w->token);
	if (ok && w->token)
		made = web_session_make(w->token, ns_now_ms() / 1000 +
					WEB_SESSION_S, cookie);
	pthread_mutex_unlock(&w->token_lock);
	if (!ok) {
		web_login_failed(w, c);
		return web_login_reply(c, MHD_HTTP_UNAUTHORIZED, next,
				       "That is not this natscope's token.");
	}
	return web_redirect(w, c, next, made == 0 ? cookie : NULL,
			    WEB_SESSION_S);
}

static enum MHD_Result web_login_field(void *cls, enum MHD_ValueKind kind,
				       const char *key, const char *filename,
				       const char *ctype, const char *enc,
				       const char *data, uint64_t off,
				       size_t size)
{
	struct web_login *l = cls;
	size_t *len, cap;
	char *dst;

	(void)kind, (void)filename, (void)ctype, (void)enc, (void)off;
	if (!strcmp(key, "token")) {
		dst = l->token, len = &l->token_len;
		cap = sizeof(l->token) - 1;
	} else if (!strcmp(key, "next")) {
		dst = l->next, len = &l->next_len;
		cap = sizeof(l->next) - 1;
	} else {
		return MHD_YES;
	}
	if (size > cap - *len) {
		l->overflow = 1;
		return MHD_NO;
	}
	memcpy(dst + *len, data, size);
	*len += size;
	dst[*len] = '\0';
	return MHD_YES;
}

static void web_login_free(struct web_login *l)
{
	if (l->pp)
		MHD_destroy_post_processor(l->pp);
	explicit_bzero(l->token, sizeof(l->token));
	free(l);
}

/* /ui/{name}: a file compiled into the binary, revalidated by its ETag
 * (a content hash), so a new binary's files are never served stale. */
static enum MHD_Result web_asset_reply(struct web *w, struct MHD_Connection *c,
				       struct web_req *q)
{
	const char *inm;

	for (size_t i = 0; i < web_assets_count; i++) {
		const struct web_asset *a = &web_assets[i];

		if (strcmp(a->name, q->seg) != 0)
			continue;
		inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						  MHD_HTTP_HEADER_IF_NONE_MATCH);
		if (inm && strstr(inm, a->etag))
			return web_reply_cached(c, MHD_HTTP_NOT_MODIFIED, NULL,
						NULL, 0, MHD_RESPMEM_PERSISTENT,
						0, "no-cache", a->etag);
		return web_reply_cached(c, MHD_HTTP_OK, a->ctype,
					(char *)a->bytes, a->len,
					MHD_RESPMEM_PERSISTENT, 0, "no-cache",
					a->etag);
	}
	return web_error(w, c, MHD_HTTP_NOT_FOUND, 0, "no such file '/ui/%s'",
			 q->seg);
}

static enum MHD_Result web_gateways(struct web *w, struct MHD_Connection *c,
				    struct web_req *q)
{
	char *body;
	int rc;

	if ((q->given & P_AT) && (q->given & (P_FROM | P_TO)))
		return web_error(w, c, MHD_HTTP_BAD_REQUEST, 0, "%s",
				 "at (a moment) and from/to (a range) "
				 "exclude each other");
	if (q->given & (P_FROM | P_TO))
		rc = store_json_gateways_range(w->st, q->from_ms, q->to_ms,
					       q->now_ms, &body);
	else if (q->given & P_AT)
		rc = store_json_gateways_at(w->st, q->at_ms, q->now_ms, &body);
	else
		rc = store_json_gateways(w->st, q->now_ms, &body);
	if (rc == -1 && errno == ERANGE)
		return web_no_history(w, c, q->at_ms);
	if (rc == -1)
		return web_store_failed(w, c, errno);
	return web_send(w, c, q, body);
}

/* /gateways/{ip}/hosts and /destinations, live or at a moment. */
static enum MHD_Result web_gateway_list(struct web *w, struct MHD_Connection *c,
					struct web_req *q, int hosts)
{
	char canon[NS_ADDR_STRLEN], at[NS_TIME_STRLEN];
	char *body;
	int rc;

	if (q->given & P_AT)
		rc = (hosts ? store_json_hosts_at
			    : store_json_destinations_at)(w->st, &q->addr,
							  q->proto, q->limit,
							  q->at_ms, q->now_ms,
							  &body);
	else
		rc = (hosts ? store_json_hosts
			    : store_json_destinations)(w->st, &q->addr,
						       q->proto, q->limit,
						       q->now_ms, &body);
	if (rc == 0)
		return web_send(w, c, q, body);
	if (errno == ERANGE)
		return web_no_history(w, c, q->at_ms);
	if (errno != ENOENT)
		return web_store_failed(w, c, errno);
	ns_addr_format(&q->addr, canon);
	if (q->given & P_AT)
		return web_error(w, c, MHD_HTTP_NOT_FOUND, 0,
				 "no mappings for %s %s in the period of "
				 "history holding %s", canon,
				 ns_proto_name(q->proto),
				 ns_time_format(q->at_ms, at));
	return web_error(w, c, MHD_HTTP_NOT_FOUND, 0,
			 "no live mappings for %s %s", canon,
			 ns_proto_name(q->proto));
}

static enum MHD_Result web_hosts(struct web *w, struct MHD_Connection *c,
				 struct web_req *q)
{
	return web_gateway_list(w, c, q, 1);
}

static enum MHD_Result web_destinations(struct web *w,
					struct MHD_Connection *c,
					struct web_req *q)
{
	return web_gateway_list(w, c, q, 0);
}

static enum MHD_Result web_diagnosis(struct web *w, struct MHD_Connection *c,
				     struct web_req *q)
{
	char canon[NS_ADDR_STRLEN];
	char *body;

	if (store_json_diagnosis(w->st, &q->addr, q->proto, q->now_ms,
				 &body) == 0)
		return web_send(w, c, q, body);
	if (errno != ENOENT)
		return web_store_failed(w, c, errno);
	ns_addr_format(&q->addr, canon);
	return web_error(w, c, MHD_HTTP_NOT_FOUND, 0,
			 "no live mappings for %s %s", canon,
			 ns_proto_name(q->proto));
}

static enum MHD_Result web_status(struct web *w, struct MHD_Connection *c,
				  struct web_req *q)
{
	char *body;

	if (store_json_status(w->st, q->now_ms, &body) == -1)
		return web_store_failed(w, c, errno);
	return web_json(c, body);
}

static enum MHD_Result web_series(struct web *w, struct MHD_Connection *c,
				  struct web_req *q)
{
	char canon[NS_ADDR_STRLEN], a[NS_TIME_STRLEN], b[NS_TIME_STRLEN];
	char *body;

	if (store_json_series(w->st, &q->public_ip, q->proto, q->from_ms,
			      q->to_ms, q->tier, q->limit, q->now_ms,
			      &body) == 0)
		return web_send(w, c, q, body);
	if (errno == E2BIG)
		return web_error(w, c, MHD_HTTP_BAD_REQUEST, 0,
				 "resolution: more than %d periods in this "
				 "range; narrow from/to or take a coarser "
				 "resolution", STORE_SERIES_MAX_POINTS);
	if (errno != ENOENT)
		return web_store_failed(w, c, errno);
	return web_error(w, c, MHD_HTTP_NOT_FOUND, 0,
			 "no history for %s %s from %s to %s",
			 ns_addr_format(&q->public_ip, canon),
			 ns_proto_name(q->proto), ns_time_format(q->from_ms, a),
			 ns_time_format(q->to_ms, b));
}

static enum MHD_Result web_host(struct web *w, struct MHD_Connection *c,
				struct web_req *q)
{
	char *body;

	if (store_json_host_history(w->st, &q->addr, q->from_ms, q->to_ms,
				    q->now_ms, &body) == -1)
		return web_store_failed(w, c, errno);
	return web_send(w, c, q, body);
}

static enum MHD_Result web_incidents(struct web *w, struct MHD_Connection *c,
				     struct web_req *q)
{
	char *body;

	if (store_json_incidents(w->st, q->from_ms, q->to_ms, q->limit,
				 q->now_ms, &body) == -1)
		return web_store_failed(w, c, errno);
	return web_send(w, c, q, body);
}

static enum MHD_Result web_incident(struct web *w, struct MHD_Connection *c,
				    struct web_req *q)
{
	char *body;

	if (store_json_incident(w->st, q->id, q->now_ms, &body) == 0)
		return web_json(c, body);
	if (errno != ENOENT)
		return web_store_failed(w, c, errno);
	return web_error(w, c, MHD_HTTP_NOT_FOUND, 0, "no incident %lld",
			 (long long)q->id);
}

static enum MHD_Result web_lookup(struct web *w, struct MHD_Connection *c,
				  struct web_req *q)
{
	int64_t at = q->given & P_AT ? q->at_ms : q->now_ms;
	char *body;

	if (store_json_lookup(w->st, &q->public_ip, q->proto, q->port, at,
			      q->now_ms, &body) == 0)
		return web_send(w, c, q, body);
	return web_store_failed(w, c, errno);
}

/* A public IP's port map from the mapping log: live, or at= a moment. */
static enum MHD_Result web_ports(struct web *w, struct MHD_Connection *c,
				 struct web_req *q)
{
	int64_t at = q->given & P_AT ? q->at_ms : STORE_PORTS_LIVE;
	char *body;

	if (store_json_ports(w->st, &q->addr, q->proto, at, q->now_ms,
			     &body) == 0)
		return web_send(w, c, q, body);
	if (errno != ENOENT)
		return web_store_failed(w, c, errno);
	return web_error(w, c, MHD_HTTP_NOT_FOUND, 0, "%s",
			 "the mapping log is empty: no natscope run has "
			 "logged mappings in this database");
}

/* 200 when the collector runs and wrote recently, else 503.  Only numbers
 * and fixed words go into the body, so it is printed here. */
static enum MHD_Result web_healthz(struct web *w, struct MHD_Connection *c,
				   struct web_req *q)
{
	char now_text[32], as_of_text[32], buf[512];
	struct store_status s;
	int64_t now = ns_now_ms(), age_ms, max_age_ms, written;
	unsigned code = MHD_HTTP_SERVICE_UNAVAILABLE;
	const char *status;
	unsigned interval;
	int n;

	web_format_time(now, now_text);
	if (store_read_status(w->st, &s) == -1) {
		if (errno != ENOENT)
			return web_store_failed(w, c, errno);
		/* no run has written a status row yet */
		n = snprintf(buf, sizeof(buf),
			     "{\"status\": \"starting\", \"state\": null, "
			     "\"generated_at\": \"%s\", \"as_of\": null}\n",
			     now_text);
		goto reply;
	}

	interval = w->interval_s ? w->interval_s : s.interval_s;
	if (interval == 0)
		interval = 1;
	max_age_ms = 2 * (int64_t)interval * 1000 + 1000;
	/* Alive means writing every interval.  The figures' own time (as_of)
	 * may be older when the table is followed by dumps: they are as of
	 * the last dump, which the answers say. */
	written = s.writes_last_ms > 0 ? s.writes_last_ms : s.as_of_ms;
	age_ms = written > 0 ? now - written : INT64_MAX;
	if (age_ms < 0)
		age_ms = 0; /* the clock stepped back: not stale */

	if (s.state == STORE_STATE_RUNNING || s.state == STORE_STATE_RESYNCING)
		status = age_ms <= max_age_ms ? "ok" : "stale";
	else if (s.state == STORE_STATE_STARTING)
		status = "starting";
	else if (s.state == STORE_STATE_DB_ERROR)
		status = "db-error"; /* writes fail: the tables are not current */
	else
		status = "stopped";

	web_format_time(s.as_of_ms, as_of_text);
	n = snprintf(buf, sizeof(buf),
		     "{\"status\": \"%s\", \"state\": \"%s\", "
		     "\"follow\": \"%s\", "
		     "\"generated_at\": \"%s\", \"as_of\": \"%s\", "
		     "\"age_seconds\": %.3f, \"max_age_seconds\": %.3f}\n",
		     status, store_state_name(s.state),
		     store_follow_name(s.follow), now_text, as_of_text,
		     written > 0 ? (double)age_ms / 1000 : -1.0,
		     (double)max_age_ms / 1000);
	if (strcmp(status, "ok") == 0)
		code = MHD_HTTP_OK;
reply:
	return web_reply(c, code, CT_JSON, buf, (size_t)n,
			 MHD_RESPMEM_MUST_COPY, 0);
}

static enum MHD_Result web_metrics_reply(struct web *w,
					 struct MHD_Connection *c,
					 struct web_req *q)
{
	size_t len;
	char *body;

	body = web_metrics(w->st, &len);
	if (!body)
		return web_store_failed(w, c, errno);
	return web_reply(c, MHD_HTTP_OK, CT_METRICS, body, len,
			 MHD_RESPMEM_MUST_FREE, 0);
}

/* Whether the collector this web serves has begun its run: until its
 * status row is in the database, the tables are the previous run's and
 * nothing may be answered from them as if current.  Sticky once seen. */
static int web_run_begun(struct web *w)
{
	struct store_status s;

	if (!w->run_started_ms || w->run_seen)
		return 1;
	if (store_read_status(w->st, &s) == 0 &&
	    s.started_ms == w->run_started_ms && s.pid == w->run_pid)
		w->run_seen = 1;
	return w->run_seen;
}

/* ---- routes ---- */

#define HOUR_MS 3600000LL

/* Every path the API answers, with the parameters each takes. */
static const struct web_route web_routes[] = {
	{ .path = "/", .handler = web_root,
	  .params = P_AT | P_FROM | P_TO | P_LIMIT, .limit = WEB_OVERVIEW_ROWS,
	  .span_ms = HOUR_MS, .before_run = 1, .empty_absent = 1 },
	{ .path = "/api/v1/", .handler = web_index_reply, .before_run = 1 },
	{ .path = "/ui/{}", .seg = SEG_NAME, .handler = web_asset_reply,
	  .before_run = 1, .open = 1 },
	/* a browser's way to the token (a cookie), and out again */
	{ .path = "/login", .handler = web_login_get, .before_run = 1,
	  .open = 1, .page = "login" },
	{ .path = "/logout", .handler = web_logout, .before_run = 1,
	  .open = 1, .page = "logout" },
	/* the dashboard's pages: their state is in their own query */
	{ .path = "/gateway/{}", .seg = SEG_NAME, .handler = web_page_reply,
	  .before_run = 1, .page = "gateway" },
	{ .path = "/gateway/{}/ports", .seg = SEG_NAME,
	  .handler = web_page_reply, .before_run = 1, .page = "ports" },
	{ .path = "/gateway/{}/diagnosis", .seg = SEG_NAME,
	  .handler = web_page_reply, .before_run = 1, .page = "diagnosis" },
	{ .path = "/host/{}", .seg = SEG_NAME, .handler = web_page_reply,
	  .before_run = 1, .page = "host" },
	{ .path = "/incidents", .handler = web_page_reply, .before_run = 1,
	  .page = "incidents" },
	{ .path = "/incidents/{}", .seg = SEG_NAME, .handler = web_page_reply,
	  .before_run = 1, .page = "incident" },
	{ .path = "/lookup", .handler = web_page_reply, .before_run = 1,
	  .page = "lookup" },
	{ .path = "/api/v1/gateways", .handler = web_gateways,
	  .params = P_AT | P_FROM | P_TO | P_FORMAT, .table = "$.gateways",
	  .span_ms = HOUR_MS },
	{ .path = "/api/v1/gateways/{}/hosts", .seg = SEG_IP,
	  .handler = web_hosts, .params = P_PROTO | P_LIMIT | P_AT | P_FORMAT,
	  .table = "$.hosts", .limit = WEB_LIMIT_DEFAULT },
	{ .path = "/api/v1/gateways/{}/destinations", .seg = SEG_IP,
	  .handler = web_destinations,
	  .params = P_PROTO | P_LIMIT | P_AT | P_FORMAT,
	  .table = "$.destinations", .limit = WEB_LIMIT_DEFAULT },
	{ .path = "/api/v1/gateways/{}/ports", .seg = SEG_IP,
	  .handler = web_ports, .params = P_PROTO | P_AT | P_FORMAT,
	  .table = "$.hosts" },
	{ .path = "/api/v1/gateways/{}/diagnosis", .seg = SEG_IP,
	  .handler = web_diagnosis, .params = P_PROTO | P_FORMAT,
	  .table = "$.buckets" },
	{ .path = "/api/v1/status", .handler = web_status },
	{ .path = "/metrics", .handler = web_metrics_reply },
	{ .path = "/healthz", .handler = web_healthz },
	{ .path = "/api/v1/series", .handler = web_series,
	  .params = P_PUBLIC_IP | P_PROTO | P_FROM | P_TO | P_RESOLUTION |
		    P_LIMIT | P_FORMAT,
	  .required = P_PUBLIC_IP, .table = "$.points",
	  .limit = 10 /* top hosts */, .span_ms = HOUR_MS },
	{ .path = "/api/v1/hosts/{}", .seg = SEG_IP, .handler = web_host,
	  .params = P_FROM | P_TO | P_FORMAT, .table = "$.gateways",
	  .span_ms = HOUR_MS },
	/* the same answer; its CSV is the destinations table */
	{ .path = "/api/v1/hosts/{}/destinations", .seg = SEG_IP,
	  .handler = web_host, .params = P_FROM | P_TO | P_FORMAT,
	  .table = "$.destinations", .span_ms = HOUR_MS },
	{ .path = "/api/v1/incidents", .handler = web_incidents,
	  .params = P_FROM | P_TO | P_LIMIT | P_FORMAT,
	  .table = "$.incidents", .limit = 100, .span_ms = 24 * HOUR_MS },
	{ .path = "/api/v1/incidents/{}", .seg = SEG_ID,
	  .handler = web_incident },
	{ .path = "/api/v1/lookup", .handler = web_lookup,
	  .params = P_PUBLIC_IP | P_PORT | P_PROTO | P_AT | P_FORMAT,
	  .required = P_PUBLIC_IP | P_PORT, .table = "$.holders" },
};

/* Whether url matches path; a "{}" in path matches one non-empty
 * segment, copied into seg. */
static int web_match(const char *path, const char *url, char *seg)
{
	while (*path) {
		if (path[0] == '{' && path[1] == '}') {
			size_t n = strcspn(url, "/");

			if (n == 0)
				return 0;
			memcpy(seg, url, n); /* n < strlen(url) <= MAX_PATH */
			seg[n] = '\0';
			url += n;
			path += 2;
			continue;
		}
		if (*path++ != *url++)
			return 0;
	}
	return *url == '\0';
}

/* The JSON index "/api/v1/" answers, built from web_routes[] so that it
 * lists every path with the parameters it takes (format aside: every
 * table takes it).  NULL with ENOMEM. */
static char *web_build_index(size_t *len)
{
	json_t *doc, *eps;
	char *text = NULL;

	doc = json_pack("{s:s, s:s, s:s, s:[], s:s, s:s}", "name", "natscope",
			"version", NS_VERSION, "dashboard", "/",
			"endpoints", "at", "at= (RFC 3339 or unix seconds) "
			"answers for that moment, from history, or from the "
			"mapping log for lookup and ports; from= and to= give "
			"a range", "csv", "?format=csv on every answer that "
			"is a table");
	eps = doc ? json_object_get(doc, "endpoints") : NULL;
	for (size_t i = 0; eps && i < sizeof(web_routes) /
				       sizeof(web_routes[0]); i++) {
		const struct web_route *rt = &web_routes[i];
		const char *seg = rt->seg == SEG_ID ? "{id}" :
			!strncmp(rt->path, "/api/v1/gateways/", 17) ?
			"{public_ip}" : "{ip}";
		char buf[256], *q = buf, *end = buf + sizeof(buf);
		int sep = '?';

		if (!strcmp(rt->path, "/") || !strcmp(rt->path, "/api/v1/") ||
		    rt->seg == SEG_NAME || rt->page)
			continue; /* the dashboard, this index, its files */
		for (const char *p = rt->path; *p && q < end - 16; p++) {
			if (p[0] == '{' && p[1] == '}') {
				q += snprintf(q, (size_t)(end - q), "%s", seg);
				p++;
			} else {
				*q++ = *p;
			}
		}
		*q = '\0';
		for (size_t k = 0; k < WEB_NPARAMS; k++) {
			if (!(rt->params & web_params[k].bit) ||
			    web_params[k].bit == P_FORMAT)
				continue;
			q += snprintf(q, (size_t)(end - q), "%c%s=", sep,
				      web_params[k].name);
			sep = '&';
		}
		if (json_array_append_new(eps, json_string(buf)) < 0)
			eps = NULL;
	}
	if (eps)
		text = json_dumps(doc, JSON_INDENT(1));
	json_decref(doc);
	if (!text) {
		errno = ENOMEM;
		return NULL;
	}
	*len = strlen(text);
	return text;
}

/* Whether the request may be answered: no token is set, the route is
 * open (no figure in it) or one open_paths leaves open, or it carries
 * "Authorization: Bearer" with the token, or the login cookie /login made
 * with it. */
static int web_authorized(struct web *w, struct MHD_Connection *c,
			  const struct web_route *rt)
{
	const char *h, *ck;
	int ok;

	if (rt->open ||
	    ((w->open_paths & WEB_OPEN_HEALTHZ) &&
	     !strcmp(rt->path, "/healthz")) ||
	    ((w->open_paths & WEB_OPEN_METRICS) &&
	     !strcmp(rt->path, "/metrics")))
		return 1;
	h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					MHD_HTTP_HEADER_AUTHORIZATION);
	ck = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, w->cookie);
	pthread_mutex_lock(&w->token_lock);
	if (!w->token)
		ok = 1;
	else
		ok = (h && !strncasecmp(h, "Bearer ", 7) &&
		      web_token_equal(h + 7, w->token)) ||
		     (ck && web_session_valid(ck, w->token,
					      ns_now_ms() / 1000));
	pthread_mutex_unlock(&w->token_lock);
	return ok;
}

int web_set_token(struct web *w, const char *token)
{
	char *copy = NULL, *old;

	if (token && !(copy = strdup(token))) {
		log_warn("web: token");
		errno = ENOMEM;
		return -1;
	}
	pthread_mutex_lock(&w->token_lock);
	old = w->token;
	w->token = copy;
	pthread_mutex_unlock(&w->token_lock);
	free(old);
	return 0;
}

/* Answers a request whose headers (and body, if any) have arrived. */
static enum MHD_Result web_answer(struct web *w, struct MHD_Connection *c,
				  const char *url, const char *method)
{
	struct web_req q = { 0 };
	char err[WEB_MAX_PATH + 200];
	int get;

	if (strlen(url) > WEB_MAX_PATH)
		return web_error(w, c, MHD_HTTP_BAD_REQUEST, 0,
				 "path longer than %d bytes", WEB_MAX_PATH);
	for (size_t i = 0; i < sizeof(web_routes) / sizeof(web_routes[0]);
	     i++)
		if (web_match(web_routes[i].path, url, q.seg)) {
			q.route = &web_routes[i];
			break;
		}
	if (!q.route)
		return web_error(w, c, MHD_HTTP_NOT_FOUND, 0,
				 "no such path '%s'", url);
	get = !strcmp(method, MHD_HTTP_METHOD_GET) ||
	      !strcmp(method, MHD_HTTP_METHOD_HEAD);
	if (!web_authorized(w, c, q.route)) {
		char next[WEB_NEXT_MAX + 1];

		/* a browser asking for a page gets the login form, which
		 * brings it back to this very URL */
		if (get && (q.route->page || (q.route->handler == web_root &&
					      web_wants_html(c)))) {
			web_request_target(c, url, next, sizeof(next));
			return web_login_reply(c, MHD_HTTP_UNAUTHORIZED, next,
					       NULL);
		}
		return web_error(w, c, MHD_HTTP_UNAUTHORIZED, REPLY_AUTH, "%s",
				 "this natscope wants a bearer token "
				 "(Authorization: Bearer TOKEN), or a "
				 "browser's login at /login");
	}
	if (!get)
		return web_error(w, c, MHD_HTTP_METHOD_NOT_ALLOWED, REPLY_ALLOW,
				 "method '%s' not allowed (use GET or HEAD)",
				 method);

	if (!q.route->before_run && !web_run_begun(w))
		return web_error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE,
				 REPLY_RETRY_AFTER, "%s",
				 "starting: the database still holds the previous "
				 "run's figures");
	q.now_ms = ns_now_ms();
	if (!q.route->page &&
	    web_parse_request(c, &q, err, sizeof(err)) == -1)
		return web_error(w, c, MHD_HTTP_BAD_REQUEST, 0, "%s", err);
	return q.route->handler(w, c, &q);
}

/* libmicrohttpd calls this once when the headers are in, then for each
 * piece of body, then once more with nothing left.  A reply queued at the
 * first call makes it close the connection (the body is never read), so
 * GET and HEAD are answered at the last call and keep-alive works; other
 * methods are refused at once without reading what they send. */
/* Their addresses mark how far a request is (web_access()). */
static int web_headers_seen, web_answered;

static enum MHD_Result web_access(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct web *w = cls;
	enum MHD_Result ret;

	if (*con_cls == NULL) {
		if (strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		    strcmp(method, MHD_HTTP_METHOD_HEAD) == 0) {
			*con_cls = &web_headers_seen;
			return MHD_YES;
		}
		if (!strcmp(method, MHD_HTTP_METHOD_POST) &&
		    !strcmp(url, "/login")) {
			struct web_login *l = calloc(1, sizeof(*l));

			if (!l)
				return MHD_NO;
			*con_cls = l;
			l->pp = MHD_create_post_processor(c, 1024,
							  web_login_field, l);
			if (!l->pp) /* not a form */
				l->not_form = 1;
			return MHD_YES;
		}
		*con_cls = &web_answered;
		return web_answer(w, c, url, method);
	}
	if (*con_cls != &web_headers_seen && *con_cls != &web_answered) {
		struct web_login *l = *con_cls; /* a POST to /login */

		if (*upload_data_size != 0) {
			l->body += *upload_data_size;
			if (l->not_form)
				;
			else if (l->body > WEB_LOGIN_BODY_MAX ||
				 MHD_post_process(l->pp, upload_data,
					     *upload_data_size) == MHD_NO)
				l->overflow = 1;
			*upload_data_size = 0;
			return MHD_YES;
		}
		ret = web_login_post(w, c, l);
		web_login_free(l);
		*con_cls = &web_answered;
		return ret;
	}
	if (*upload_data_size != 0 || *con_cls == &web_answered) {
		*upload_data_size = 0; /* a body nobody asked for: dropped */
		return MHD_YES;
	}
	*con_cls = &web_answered;
	return web_answer(w, c, url, method);
}

/* A request ends: a login form whose connection went away is freed. */
static void web_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			  enum MHD_RequestTerminationCode toe)
{
	(void)cls, (void)c, (void)toe;
	if (*con_cls && *con_cls != &web_headers_seen &&
	    *con_cls != &web_answered)
		web_login_free(*con_cls);
	*con_cls = NULL;
}

/* ---- the daemon ---- */

static void web_mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void web_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	log_warnx("web: %s", msg);
}

int web_listen(const char *spec)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, fd, err;

	if (web_parse_listen(spec, &ss, &len) == -1) {
		log_warnx("web: bad listen address '%s' (expected ADDR:PORT "
			  "or [ADDR]:PORT)", spec ? spec : "");
		errno = EINVAL;
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("web: socket for %s", spec);
		return -1;
	}
	/* as libmicrohttpd sets its own: restarts do not wait out
	 * TIME_WAIT, and [::]:PORT means IPv6 only */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    (ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) ==
		     -1) ||
	    bind(fd, (const struct sockaddr *)&ss, len) == -1 ||
	    listen(fd, WEB_LISTEN_BACKLOG) == -1) {
		err = errno;
		log_warn("web: cannot listen on %s", spec);
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

/* The address and port fd is bound to, as "ADDR:PORT" / "[ADDR]:PORT". */
static int web_sockname(int fd, struct web *w, int *family)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char text[INET6_ADDRSTRLEN];

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return -1;
	*family = ss.ss_family;
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
		w->port = ntohs(sin6->sin6_port);
		snprintf(w->addr, sizeof(w->addr), "[%s]:%u", text,
			 (unsigned)w->port);
	} else if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
		w->port = ntohs(sin->sin_port);
		snprintf(w->addr, sizeof(w->addr), "%s:%u", text,
			 (unsigned)w->port);
	} else {
		errno = EAFNOSUPPORT;
		return -1;
	}
	/* cookies are not kept apart by port: one name per port keeps two
	 * natscopes on one host from overwriting each other's */
	snprintf(w->cookie, sizeof(w->cookie), "natscope_%u",
		 (unsigned)w->port);
	return 0;
}

struct web *web_start(int listen_fd, const struct web_config *cfg)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			 MHD_USE_ERROR_LOG;
	struct web *w;
	int family, mhd_fd, err;

	if (!(w = calloc(1, sizeof(*w))) ||
	    !(w->index = web_build_index(&w->index_len))) {
		log_warn("web: start");
		free(w);
		close(listen_fd);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&w->token_lock, NULL);
	w->open_paths = cfg->open_paths;
	if (cfg->token && web_set_token(w, cfg->token) == -1)
		goto err;
	w->interval_s = cfg->interval_s;
	w->run_started_ms = cfg->run_started_ms;
	w->page.warn = cfg->warn > 0 ? cfg->warn : 0.7;
	w->page.critical = cfg->critical > 0 ? cfg->critical : 0.9;
	w->page.refresh_s = cfg->interval_s ? cfg->interval_s : 5;
	w->run_pid = cfg->run_pid > 0 ? (uint64_t)cfg->run_pid :
					 (uint64_t)getpid();
	if (web_sockname(listen_fd, w, &family) == -1) {
		err = errno == ENOTSOCK ? EBADF : errno;
		log_warn("web: descriptor %d is no listening socket",
			 listen_fd);
		errno = err;
		goto err;
	}
	if (family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (cfg->tls_cert && cfg->tls_key) {
		flags |= MHD_USE_TLS;
		w->tls = 1;
	}
	if (!(w->st = store_open(cfg->db_path, cfg->frozen ? STORE_IMMUTABLE :
						      STORE_READ_ONLY)))
		goto err;

	/* libmicrohttpd closes the socket it was given on some of its
	 * failure paths and not on others: it gets a copy of its own, and
	 * ours is closed here whatever happens (at worst its copy leaks on
	 * a failure the caller treats as fatal) */
	mhd_fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
	if (mhd_fd == -1) {
		log_warn("web: dup");
		goto err;
	}
	close(listen_fd);
	listen_fd = -1;
	/* the port argument only names the port in MHD's messages */
	w->mhd = MHD_start_daemon(
		flags, w->port, NULL, NULL, web_access, w,
		MHD_OPTION_EXTERNAL_LOGGER, (MHD_LogCallback)web_mhd_log, NULL,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)mhd_fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)WEB_MAX_CONNECTIONS,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned)WEB_PER_IP_CONNECTIONS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)WEB_TIMEOUT_S,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)WEB_CONN_MEMORY,
		MHD_OPTION_NOTIFY_COMPLETED, web_completed, NULL,
		/* ignored without MHD_USE_TLS */
		w->tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END,
		cfg->tls_cert, MHD_OPTION_HTTPS_MEM_KEY, cfg->tls_key,
		MHD_OPTION_END);
	if (!w->mhd) {
		log_warnx("web: cannot start serving on %s", w->addr);
		errno = EIO;
		goto err;
	}
	log_info("web: serving %s on %s%s", w->tls ? "https" : "http",
		 w->addr, w->token ? " (bearer token required)" : "");
	return w;

err:
	err = errno;
	if (listen_fd >= 0)
		close(listen_fd);
	store_close(w->st);
	free(w->index);
	free(w->token);
	pthread_mutex_destroy(&w->token_lock);
	free(w);
	errno = err;
	return NULL;
}

void web_stop(struct web *w)
{
	if (!w)
		return;
	MHD_stop_daemon(w->mhd);
	store_close(w->st);
	free(w->index);
	free(w->token);
	pthread_mutex_destroy(&w->token_lock);
	free(w);
}

uint16_t web_bound_port(const struct web *w)
{
	return w->port;
}
