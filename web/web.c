/*
 * web.c - the HTTP service: libmicrohttpd on one internal epoll thread,
 * routing, validation and the mapping of store errors to HTTP statuses.
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
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "store/store.h"
#include "web/internal.h"

#define WEB_MAX_PATH 512	  /* longer paths are refused with 400 */
#define WEB_MAX_CONNECTIONS 256	  /* concurrent connections */
#define WEB_TIMEOUT_S 30	  /* idle connections are closed after */
#define WEB_CONN_MEMORY 32768	  /* per-connection pool: headers, URL */
#define WEB_LISTEN_BACKLOG 128

#define CT_JSON "application/json"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

struct web {
	struct MHD_Daemon *mhd;
	struct store *st; /* read-only; only the MHD thread uses it */
	unsigned interval_s;
	int64_t run_started_ms; /* answer only once the status row is this
				   run's */
	int run_seen;		/* it was: no need to look again */
	uint16_t port;
	char addr[INET6_ADDRSTRLEN + 8]; /* what it listens on, for the log */
};

enum web_route {
	ROUTE_NONE = 0,
	ROUTE_INDEX,
	ROUTE_GATEWAYS,
	ROUTE_HOSTS,
	ROUTE_DESTINATIONS,
	ROUTE_STATUS,
	ROUTE_METRICS,
	ROUTE_HEALTHZ,
};

/* Extra headers a reply carries besides Content-Type and Cache-Control. */
#define REPLY_ALLOW 0x1	      /* Allow: GET, HEAD */
#define REPLY_RETRY_AFTER 0x2 /* Retry-After: 1 */

/* Proto names in the order the API documents them. */
static const uint8_t web_protos[] = {
	IPPROTO_TCP,  IPPROTO_UDP,  IPPROTO_UDPLITE, IPPROTO_SCTP,
	IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6,
};

static const char web_index[] =
	"{\"name\": \"natscope\", \"version\": \"" NS_VERSION "\", "
	"\"endpoints\": ["
	"\"/api/v1/gateways\", "
	"\"/api/v1/gateways/{public_ip}/hosts?proto=tcp&limit=50\", "
	"\"/api/v1/gateways/{public_ip}/destinations?proto=tcp&limit=50\", "
	"\"/api/v1/status\", \"/metrics\", \"/healthz\"]}\n";

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

/* Matches a decoded path.  For the per-gateway routes *ip and *ip_len
 * point at the {public_ip} segment inside url. */
static enum web_route web_route(const char *url, const char **ip,
				size_t *ip_len)
{
	static const struct {
		const char *path;
		enum web_route route;
	} fixed[] = {
		{ "/", ROUTE_INDEX },
		{ "/api/v1/gateways", ROUTE_GATEWAYS },
		{ "/api/v1/status", ROUTE_STATUS },
		{ "/metrics", ROUTE_METRICS },
		{ "/healthz", ROUTE_HEALTHZ },
	};
	static const char prefix[] = "/api/v1/gateways/";
	const char *seg, *slash;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (strcmp(url, fixed[i].path) == 0)
			return fixed[i].route;
	if (strncmp(url, prefix, sizeof(prefix) - 1) != 0)
		return ROUTE_NONE;
	seg = url + sizeof(prefix) - 1;
	slash = strchr(seg, '/');
	if (!slash || slash == seg)
		return ROUTE_NONE;
	*ip = seg;
	*ip_len = (size_t)(slash - seg);
	if (strcmp(slash, "/hosts") == 0)
		return ROUTE_HOSTS;
	if (strcmp(slash, "/destinations") == 0)
		return ROUTE_DESTINATIONS;
	return ROUTE_NONE;
}

/* ---- replies ---- */

/* Queues body as the reply.  MUST_FREE bodies are owned by MHD (or freed
 * here on failure); PERSISTENT ones are static. */
static enum MHD_Result web_reply(struct MHD_Connection *c, unsigned code,
				 const char *ctype, char *body, size_t len,
				 enum MHD_ResponseMemoryMode mode,
				 unsigned extra)
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
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) ==
		    MHD_NO ||
	    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
				    "no-store") == MHD_NO ||
	    ((extra & REPLY_ALLOW) &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") ==
		     MHD_NO) ||
	    ((extra & REPLY_RETRY_AFTER) &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1") ==
		     MHD_NO)) {
		log_warnx("web: cannot add response headers");
		MHD_destroy_response(r);
		return MHD_NO;
	}
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
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

/* A store read failed with err (already logged by the store).  The
 * per-gateway routes handle ENOENT (no such gateway) themselves.  Never an
 * empty answer: the client is told that the database cannot be read, and
 * why in plain words. */
static enum MHD_Result web_store_failed(struct web *w, struct MHD_Connection *c,
					int err)
{
	if (err == ENOENT) /* no run has written a status row yet */
		return web_error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE,
				 REPLY_RETRY_AFTER, "%s",
				 "the collector has not written a snapshot "
				 "yet");
	if (err == EBUSY)
		return web_error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE,
				 REPLY_RETRY_AFTER, "database is busy");
	if (err == EILSEQ)
		return web_error(w, c, MHD_HTTP_INTERNAL_SERVER_ERROR, 0, "%s",
				 "the database file is corrupt: this answer "
				 "cannot be read from it (natscope's log says "
				 "where)");
	if (err == EIO)
		return web_error(w, c, MHD_HTTP_INTERNAL_SERVER_ERROR, 0, "%s",
				 "cannot read the database: I/O error");
	return web_error(w, c, MHD_HTTP_INTERNAL_SERVER_ERROR, 0,
			 "cannot read the database (%s)", strerror(err));
}

static enum MHD_Result web_json(struct MHD_Connection *c, char *body)
{
	return web_reply(c, MHD_HTTP_OK, CT_JSON, body, strlen(body),
			 MHD_RESPMEM_MUST_FREE, 0);
}

/* ---- handlers ---- */

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

static enum MHD_Result web_gateway_list(struct web *w,
					struct MHD_Connection *c,
					enum web_route route, const char *ip,
					size_t ip_len)
{
	char text[WEB_MAX_PATH + 1], canon[NS_ADDR_STRLEN];
	char protos[64];
	const char *proto_text, *limit_text;
	struct ns_addr gw;
	unsigned limit;
	char *body = NULL;
	int proto, rc;
	size_t off = 0;

	memcpy(text, ip, ip_len); /* ip_len < strlen(url) <= WEB_MAX_PATH */
	text[ip_len] = '\0';
	if (ns_addr_parse(text, &gw) == -1)
		return web_error(w, c, MHD_HTTP_BAD_REQUEST, 0,
				 "invalid IP address '%s'", text);

	switch (web_query(c, "proto", &proto_text)) {
	case 0:
		proto_text = "tcp";
		/* fall through */
	case 1:
		proto = ns_proto_parse(proto_text);
		break;
	default:
		proto = -1;
	}
	if (proto == -1) {
		for (size_t i = 0; i < sizeof(web_protos); i++)
			off += (size_t)snprintf(protos + off,
						sizeof(protos) - off, "%s%s",
						i ? ", " : "",
						ns_proto_name(web_protos[i]));
		return web_error(w, c, MHD_HTTP_BAD_REQUEST, 0,
				 "unknown proto '%s' (expected one of %s)",
				 proto_text, protos);
	}

	limit = WEB_LIMIT_DEFAULT;
	rc = web_query(c, "limit", &limit_text);
	if (rc == -1 ||
	    (rc == 1 && web_parse_limit(limit_text, &limit) == -1))
		return web_error(w, c, MHD_HTTP_BAD_REQUEST, 0,
				 "limit must be an integer from 1 to %d",
				 WEB_LIMIT_MAX);

	if (route == ROUTE_HOSTS)
		rc = store_json_hosts(w->st, &gw, (uint8_t)proto, limit,
				      ns_now_ms(), &body);
	else
		rc = store_json_destinations(w->st, &gw, (uint8_t)proto, limit,
					     ns_now_ms(), &body);
	if (rc == -1) {
		if (errno != ENOENT)
			return web_store_failed(w, c, errno);
		return web_error(w, c, MHD_HTTP_NOT_FOUND, 0,
				 "no live mappings for %s %s",
				 ns_addr_format(&gw, canon) ? canon : text,
				 ns_proto_name((uint8_t)proto));
	}
	return web_json(c, body);
}


/* 200 when the collector runs and wrote recently, else 503.  Only numbers
 * and fixed words go into the body, so it is printed here. */
static enum MHD_Result web_healthz(struct web *w, struct MHD_Connection *c)
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
					 struct MHD_Connection *c)
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
	    s.started_ms == w->run_started_ms && s.pid == (uint64_t)getpid())
		w->run_seen = 1;
	return w->run_seen;
}

/* Answers a request whose headers (and body, if any) have arrived. */
static enum MHD_Result web_answer(struct web *w, struct MHD_Connection *c,
				  const char *url, const char *method)
{
	enum web_route route;
	const char *ip = NULL;
	size_t ip_len = 0;
	char *body = NULL;

	if (strlen(url) > WEB_MAX_PATH)
		return web_error(w, c, MHD_HTTP_BAD_REQUEST, 0,
				 "path longer than %d bytes", WEB_MAX_PATH);
	route = web_route(url, &ip, &ip_len);
	if (route == ROUTE_NONE)
		return web_error(w, c, MHD_HTTP_NOT_FOUND, 0,
				 "no such path '%s'", url);
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return web_error(w, c, MHD_HTTP_METHOD_NOT_ALLOWED, REPLY_ALLOW,
				 "method '%s' not allowed (use GET or HEAD)",
				 method);

	if (route != ROUTE_INDEX && !web_run_begun(w))
		return web_error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE,
				 REPLY_RETRY_AFTER, "%s",
				 "starting: the database still holds the previous "
				 "run's figures");

	switch (route) {
	case ROUTE_INDEX:
		return web_reply(c, MHD_HTTP_OK, CT_JSON, (char *)web_index,
				 sizeof(web_index) - 1, MHD_RESPMEM_PERSISTENT,
				 0);
	case ROUTE_GATEWAYS:
		if (store_json_gateways(w->st, ns_now_ms(), &body) == -1)
			return web_store_failed(w, c, errno);
		return web_json(c, body);
	case ROUTE_HOSTS:
	case ROUTE_DESTINATIONS:
		return web_gateway_list(w, c, route, ip, ip_len);
	case ROUTE_STATUS:
		if (store_json_status(w->st, ns_now_ms(), &body) == -1)
			return web_store_failed(w, c, errno);
		return web_json(c, body);
	case ROUTE_METRICS:
		return web_metrics_reply(w, c);
	case ROUTE_HEALTHZ:
		return web_healthz(w, c);
	case ROUTE_NONE:
		break;
	}
	return MHD_NO;
}

/* libmicrohttpd calls this once when the headers are in, then for each
 * piece of body, then once more with nothing left.  A reply queued at the
 * first call makes it close the connection (the body is never read), so
 * GET and HEAD are answered at the last call and keep-alive works; other
 * methods are refused at once without reading what they send. */
static enum MHD_Result web_access(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	static int headers_seen, answered; /* their addresses mark a request */
	struct web *w = cls;

	if (*con_cls == NULL) {
		if (strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		    strcmp(method, MHD_HTTP_METHOD_HEAD) == 0) {
			*con_cls = &headers_seen;
			return MHD_YES;
		}
		*con_cls = &answered;
		return web_answer(w, c, url, method);
	}
	if (*upload_data_size != 0 || *con_cls == &answered) {
		*upload_data_size = 0; /* a body nobody asked for: dropped */
		return MHD_YES;
	}
	*con_cls = &answered;
	return web_answer(w, c, url, method);
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
	return 0;
}

struct web *web_start(int listen_fd, const struct web_config *cfg)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			 MHD_USE_ERROR_LOG;
	struct web *w;
	int family, mhd_fd, err;

	if (!(w = calloc(1, sizeof(*w)))) {
		log_warn("web: start");
		close(listen_fd);
		errno = ENOMEM;
		return NULL;
	}
	w->interval_s = cfg->interval_s;
	w->run_started_ms = cfg->run_started_ms;
	if (web_sockname(listen_fd, w, &family) == -1) {
		err = errno == ENOTSOCK ? EBADF : errno;
		log_warn("web: descriptor %d is no listening socket",
			 listen_fd);
		errno = err;
		goto err;
	}
	if (family == AF_INET6)
		flags |= MHD_USE_IPv6;
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
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)WEB_TIMEOUT_S,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)WEB_CONN_MEMORY,
		MHD_OPTION_END);
	if (!w->mhd) {
		log_warnx("web: cannot start serving on %s", w->addr);
		errno = EIO;
		goto err;
	}
	log_info("web: serving http on %s", w->addr);
	return w;

err:
	err = errno;
	if (listen_fd >= 0)
		close(listen_fd);
	store_close(w->st);
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
	free(w);
}

uint16_t web_bound_port(const struct web *w)
{
	return w->port;
}
