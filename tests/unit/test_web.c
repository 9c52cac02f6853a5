/*
 * test_web.c - the HTTP service over a real socket and a real database.
 *
 * The group setup writes a database through the store (gateways incl. an
 * IPv6 one, hosts, destinations, a status row with known values) and
 * starts web on 127.0.0.1 port 0.  Each test talks HTTP/1.1 to it with the
 * small client below and checks status codes, headers and values; JSON
 * bodies are taken apart by an in-memory SQLite connection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/common.h"
#include "store/store.h"
#include "web/internal.h" /* web_buf_html, web_assets[] */
#include "web/web.h"

#define GW4 "203.0.113.1"
#define GW4B "192.0.2.1"
#define GW6 "2001:db8::1"
#define N_NAT_HOSTS 12 /* on GW4 tcp, beyond the 10 /metrics exports */

static struct {
	char dir[64];
	char db[96];
	struct store *rw; /* the writer's connection, for status rewrites */
	struct web *web;
	uint16_t port;
	sqlite3 *json; /* in-memory, for json_extract() */
	struct store_status status;
} T;

/* ---- a small HTTP/1.1 client ---- */

struct resp {
	int status;
	char head[4096]; /* status line and headers, NUL-terminated */
	char *body;	 /* malloc'd, NUL-terminated */
	size_t body_len;
};

static void resp_free(struct resp *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static int connect_web(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 20 };
	int fd;

	sin.sin_port = htons(T.port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		assert_true(n > 0);
		buf += n;
		len -= (size_t)n;
	}
}

/* The value of header name in r->head, copied into out; 0 if found. */
static int resp_header(const struct resp *r, const char *name, char *out,
		       size_t cap)
{
	size_t nl = strlen(name);
	const char *p = strstr(r->head, "\r\n");

	while (p && p[2]) {
		const char *line = p + 2, *end = strstr(line, "\r\n");

		if (!end)
			end = line + strlen(line);
		if ((size_t)(end - line) > nl && line[nl] == ':' &&
		    strncasecmp(line, name, nl) == 0) {
			const char *v = line + nl + 1;
			size_t vl;

			while (*v == ' ')
				v++;
			vl = (size_t)(end - v);
			if (vl >= cap)
				vl = cap - 1;
			memcpy(out, v, vl);
			out[vl] = '\0';
			return 0;
		}
		p = *end ? end : NULL;
	}
	return -1;
}

/* Reads one response from fd.  The body is Content-Length bytes (none for
 * HEAD), so the connection stays usable for the next request. */
static void read_response(int fd, int head_request, struct resp *r)
{
	char buf[65536], cl[32];
	size_t have = 0, head_len, want;
	char *end = NULL;

	memset(r, 0, sizeof(*r));
	while (!end) {
		ssize_t n;

		assert_true(have < sizeof(buf) - 1);
		n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
		assert_true(n > 0);
		have += (size_t)n;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	head_len = (size_t)(end - buf) + 2;
	assert_true(head_len < sizeof(r->head));
	memcpy(r->head, buf, head_len);
	r->head[head_len] = '\0';
	assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);

	want = 0;
	if (!head_request && resp_header(r, "Content-Length", cl,
					 sizeof(cl)) == 0)
		want = strtoul(cl, NULL, 10);
	r->body = malloc(want + 1);
	assert_non_null(r->body);
	r->body_len = have - (head_len + 2);
	assert_true(r->body_len <= want);
	memcpy(r->body, end + 4, r->body_len);
	while (r->body_len < want) {
		ssize_t n = recv(fd, r->body + r->body_len,
				 want - r->body_len, 0);

		assert_true(n > 0);
		r->body_len += (size_t)n;
	}
	r->body[r->body_len] = '\0';
}

/* One request on its own connection, extra headers and body optional. */
static void http_full(const char *method, const char *path,
		      const char *extra, const char *body, struct resp *r)
{
	char req[8192];
	int fd, n;

	n = snprintf(req, sizeof(req),
		     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		     "Connection: close\r\n%s%s\r\n%s",
		     method, path, extra ? extra : "", "", body ? body : "");
	assert_true(n > 0 && (size_t)n < sizeof(req));
	fd = connect_web();
	send_all(fd, req, (size_t)n);
	read_response(fd, strcmp(method, "HEAD") == 0, r);
	close(fd);
}

static void http_get(const char *path, struct resp *r)
{
	http_full("GET", path, NULL, NULL, r);
}

/* ---- JSON through SQLite ---- */

/* json_extract(body, path) as text (malloc'd), NULL for SQL NULL. */
static char *jtext(const char *body, const char *path)
{
	sqlite3_stmt *s;
	char *out = NULL;

	assert_int_equal(sqlite3_prepare_v2(T.json,
					    "SELECT json_extract(?1, ?2)", -1,
					    &s, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(s, 1, body, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	if (sqlite3_column_type(s, 0) != SQLITE_NULL)
		out = strdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	return out;
}

/* Asserts json_extract(body, path) == want (as text). */
static void assert_jtext(const char *body, const char *path,
			 const char *want)
{
	char *got = jtext(body, path);

	if (!got || strcmp(got, want) != 0)
		fail_msg("%s: got %s, want %s in %s", path,
			 got ? got : "NULL", want, body);
	free(got);
}

static long long jint(const char *body, const char *path)
{
	char *got = jtext(body, path);
	long long v;

	if (!got)
		fail_msg("%s missing in %s", path, body);
	v = strtoll(got, NULL, 10);
	free(got);
	return v;
}

static int jvalid(const char *body)
{
	sqlite3_stmt *s;
	int v;

	assert_int_equal(sqlite3_prepare_v2(T.json, "SELECT json_valid(?1)",
					    -1, &s, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(s, 1, body, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* json_array_length(body, path). */
static long long jlen(const char *body, const char *path)
{
	sqlite3_stmt *s;
	long long v;

	assert_int_equal(sqlite3_prepare_v2(T.json,
					    "SELECT json_array_length(?1, ?2)",
					    -1, &s, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(s, 1, body, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	if (sqlite3_column_type(s, 0) == SQLITE_NULL)
		fail_msg("%s is not an array in %s", path, body);
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* The element of the array at path whose .public_ip and .proto match, as
 * JSON text (malloc'd); fails the test if there is not exactly one. */
static char *jfind_gateway(const char *body, const char *ip,
			   const char *proto)
{
	sqlite3_stmt *s;
	char *out;

	assert_int_equal(
		sqlite3_prepare_v2(T.json,
				   "SELECT value FROM json_each(?1, "
				   "'$.gateways') WHERE value ->> "
				   "'public_ip' = ?2 AND "
				   "value ->> 'proto' = ?3",
				   -1, &s, NULL),
		SQLITE_OK);
	sqlite3_bind_text(s, 1, body, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, ip, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, proto, -1, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_ROW)
		fail_msg("no gateway %s %s in %s", ip, proto, body);
	out = strdup((const char *)sqlite3_column_text(s, 0));
	assert_non_null(out);
	assert_int_equal(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
	return out;
}

/* A JSON reply with this status; checks the headers every reply has. */
static void assert_json_reply(const struct resp *r, int status)
{
	char v[128];

	if (r->status != status)
		fail_msg("status %d, want %d: %s", r->status, status, r->body);
	assert_int_equal(resp_header(r, "Content-Type", v, sizeof(v)), 0);
	assert_string_equal(v, "application/json");
	assert_int_equal(resp_header(r, "Cache-Control", v, sizeof(v)), 0);
	assert_string_equal(v, "no-store");
	if (!jvalid(r->body))
		fail_msg("not JSON: %s", r->body);
}

/* GET path; expect status and {"error": want_error}. */
static void expect_error(const char *path, int status, const char *want)
{
	struct resp r;

	http_get(path, &r);
	assert_json_reply(&r, status);
	assert_jtext(r.body, "$.error", want);
	resp_free(&r);
}

/* ---- the database ---- */

static void addr(const char *text, struct ns_addr *a)
{
	assert_int_equal(ns_addr_parse(text, a), 0);
}

static void fill_status(struct store_status *s, uint8_t state, int64_t as_of)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->version, sizeof(s->version), "%s", NS_VERSION);
	s->started_ms = as_of - 60000;
	s->pid = 4242;
	s->interval_s = 5;
	s->state = state;
	s->as_of_ms = as_of;
	s->event_buffer_bytes = 134217728;
	s->mappings_nat = 1555;
	s->mappings_local = 5;
	s->mappings_other = 7;
	s->gateways = 5;
	s->hosts = 15;
	s->destinations = 7;
	s->events_new = 1234;
	s->events_update = 567;
	s->events_destroy = 89;
	s->events_dumped = 1000;
	s->events_unknown_destroy = 3;
	s->events_malformed = 2;
	s->events_lost = 17;
	s->events_enobufs = 4;
	s->resync_count = 2;
	s->resync_active = 0;
	s->resync_last_started_ms = as_of - 30000;
	s->resync_last_done_ms = as_of - 29750;
	s->resync_last_duration_us = 250000;
	s->conntrack_count = 2000;
	s->conntrack_max = 262144;
	s->conntrack_insert_failed = 7;
	s->conntrack_drop = 6;
	s->conntrack_early_drop = 5;
	s->conntrack_clash_resolve = -1; /* unknown: /metrics must skip it */
	s->sysctl_port_range_lo = 32768;
	s->sysctl_port_range_hi = 60999;
	s->sysctl_tcp_tw_reuse = 2;
	s->sysctl_tcp_fin_timeout = 60;
	s->sysctl_tcp_timeout_time_wait = 120;
	s->sysctl_conntrack_events = 2;
	s->process_rss_bytes = 10485760;
	s->process_cpu_seconds = 1.5;
	/* resync_count's two: the start-up dump and one of 3.2 s */
	{
		struct store_resync_hist h = { 0 };

		store_resync_hist_observe(&h, 250000);
		store_resync_hist_observe(&h, 3200000);
		store_resync_hist_status(s, &h);
	}
}

static void add_gateway(struct store_batch *b, const char *ip, uint8_t proto,
			uint32_t ports, uint32_t mappings, uint32_t hosts,
			uint32_t dests, const char *worst_ip,
			uint16_t worst_port, uint32_t worst_mappings,
			uint32_t worst_capacity)
{
	struct store_gateway_row *g = store_batch_add_gateway(b);

	assert_non_null(g);
	addr(ip, &g->ip);
	g->proto = proto;
	g->ports_in_use = ports;
	g->mappings = mappings;
	g->hosts = hosts;
	g->destinations = dests;
	if (worst_ip) {
		addr(worst_ip, &g->worst_ip);
		g->worst_port = worst_port;
		g->worst_mappings = worst_mappings;
		g->worst_capacity = worst_capacity;
	}
}

static void add_host(struct store_batch *b, const char *gw, uint8_t proto,
		     uint8_t kind, const char *ip, uint32_t mappings,
		     uint32_t ports)
{
	struct store_host_row *h = store_batch_add_host(b);

	assert_non_null(h);
	addr(gw, &h->gateway);
	h->proto = proto;
	h->kind = kind;
	addr(ip, &h->ip);
	h->mappings = mappings;
	h->ports_in_use = ports;
}

static void add_dest(struct store_batch *b, const char *gw, uint8_t proto,
		     const char *ip, uint16_t port, uint32_t mappings,
		     uint32_t capacity)
{
	struct store_dest_row *d = store_batch_add_dest(b);

	assert_non_null(d);
	addr(gw, &d->gateway);
	d->proto = proto;
	addr(ip, &d->ip);
	d->port = port;
	d->mappings = mappings;
	d->capacity = capacity;
}

/* Rewrites only the status row (a delta batch without rows). */
static void write_status(uint8_t state, int64_t as_of)
{
	struct store_batch b;

	store_batch_init(&b);
	fill_status(&b.status, state, as_of);
	assert_int_equal(store_write(T.rw, &b), 0);
	store_batch_free(&b);
}

static void write_database(void)
{
	struct store_gateway_row *g;
	struct store_batch b;
	char host[32];

	store_batch_init(&b);
	b.full = 1;
	fill_status(&b.status, STORE_STATE_RUNNING, ns_now_ms());

	/* GW4 tcp: 12 NAT hosts + the gateway's own connections */
	add_gateway(&b, GW4, IPPROTO_TCP, 1200, 1500, 13, 4,
		    "198.51.100.7", 443, 1100, 64512);
	g = &b.gateways[b.n_gateways - 1];
	g->states[1] = 2;    /* syn_sent */
	g->states[3] = 400;  /* established */
	g->states[5] = 1;    /* close_wait */
	g->states[7] = 1097; /* time_wait */
	for (int i = 1; i <= N_NAT_HOSTS; i++) {
		snprintf(host, sizeof(host), "198.18.0.%d", i);
		/* 198.18.0.1 has most; 198.18.0.11 and .12 are smallest */
		add_host(&b, GW4, IPPROTO_TCP, NS_KIND_NAT, host,
			 (uint32_t)(300 - 20 * i), (uint32_t)(250 - 20 * i));
	}
	add_host(&b, GW4, IPPROTO_TCP, NS_KIND_LOCAL, GW4, 65, 60);
	add_dest(&b, GW4, IPPROTO_TCP, "198.51.100.7", 443, 1100, 64512);
	add_dest(&b, GW4, IPPROTO_TCP, "198.51.100.8", 80, 300, 64512);
	add_dest(&b, GW4, IPPROTO_TCP, "198.51.100.9", 22, 50, 511);
	add_dest(&b, GW4, IPPROTO_TCP, "198.51.100.10", 8080, 50, 64512);

	/* GW4 udp: one host, one destination */
	add_gateway(&b, GW4, IPPROTO_UDP, 30, 30, 1, 1, "198.51.100.53", 53,
		    30, 64512);
	add_host(&b, GW4, IPPROTO_UDP, NS_KIND_NAT, "198.18.0.1", 30, 30);
	add_dest(&b, GW4, IPPROTO_UDP, "198.51.100.53", 53, 30, 64512);

	/* GW4B icmp */
	add_gateway(&b, GW4B, IPPROTO_ICMP, 3, 3, 1, 1, "198.51.100.7", 0,
		    3, 65536);
	add_host(&b, GW4B, IPPROTO_ICMP, NS_KIND_NAT, "198.18.1.1", 3, 3);
	add_dest(&b, GW4B, IPPROTO_ICMP, "198.51.100.7", 0, 3, 65536);

	/* GW6 tcp */
	add_gateway(&b, GW6, IPPROTO_TCP, 20, 22, 1, 1, "2001:db8:2::7", 443,
		    22, 64512);
	g = &b.gateways[b.n_gateways - 1];
	g->states[3] = 22;
	add_host(&b, GW6, IPPROTO_TCP, NS_KIND_NAT, "2001:db8:1::2", 22, 20);
	add_dest(&b, GW6, IPPROTO_TCP, "2001:db8:2::7", 443, 22, 64512);

	assert_int_equal(store_write(T.rw, &b), 0);
	store_batch_free(&b);
}

static void write_history(void);

static int group_setup(void **state)
{
	struct store_status s;
	struct web_config cfg = { .interval_s = 5 };

	log_init("test_web", NS_LOG_WARN);
	snprintf(T.dir, sizeof(T.dir), "/tmp/natscope-test-web-XXXXXX");
	assert_non_null(mkdtemp(T.dir));
	snprintf(T.db, sizeof(T.db), "%s/natscope.db", T.dir);
	T.rw = store_open(T.db, STORE_READ_WRITE);
	assert_non_null(T.rw);
	fill_status(&s, STORE_STATE_STARTING, ns_now_ms());
	assert_int_equal(store_begin_run(T.rw, &s), 0);
	write_database();
	write_history();

	cfg.db_path = T.db;
	T.web = web_start(web_listen("127.0.0.1:0"), &cfg);
	assert_non_null(T.web);
	T.port = web_bound_port(T.web);
	assert_true(T.port > 0);
	assert_int_equal(sqlite3_open(":memory:", &T.json), SQLITE_OK);
	return 0;
}

static int group_teardown(void **state)
{
	char path[160];

	web_stop(T.web);
	store_close(T.rw);
	sqlite3_close(T.json);
	snprintf(path, sizeof(path), "%s/natscope.db", T.dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/natscope.db-wal", T.dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/natscope.db-shm", T.dir);
	unlink(path);
	rmdir(T.dir);
	return 0;
}

/* ---- parsers ---- */

static void test_parse_listen(void **state)
{
	static const char *bad[] = {
		"", "9628", ":9628", "127.0.0.1", "127.0.0.1:",
		"127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+80",
		"127.0.0.1: 80", "127.0.0.1:80x", "127.0.0.1:9628:1",
		"localhost:9628", "256.0.0.1:9628", "::1:9628", "[::1]",
		"[::1]9628", "[::1]:", "[127.0.0.1]:9628", "[::1:9628",
		"[fe80::1%lo]:9628", "127.0.0.1:99999999", "garbage",
	};
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	char text[INET6_ADDRSTRLEN];
	socklen_t len;

	assert_int_equal(web_parse_listen("127.0.0.1:9628", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(sin->sin_port), 9628);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);

	assert_int_equal(web_parse_listen("0.0.0.0:0", &ss, &len), 0);
	assert_int_equal(ntohs(sin->sin_port), 0);
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));

	assert_int_equal(web_parse_listen("192.0.2.1:65535", &ss, &len), 0);
	assert_int_equal(ntohs(sin->sin_port), 65535);

	assert_int_equal(web_parse_listen("[::1]:9628", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(ntohs(sin6->sin6_port), 9628);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));

	assert_int_equal(web_parse_listen("[2001:DB8::0:1]:80", &ss, &len), 0);
	inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
	assert_string_equal(text, "2001:db8::1");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		if (web_parse_listen(bad[i], &ss, &len) != -1 ||
		    errno != EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
	}
	errno = 0;
	assert_int_equal(web_parse_listen(NULL, &ss, &len), -1);
	assert_int_equal(errno, EINVAL);
}

static void test_parse_limit(void **state)
{
	static const char *bad[] = { "",  "0",	   "10001", "abc", "5x",
				     "-1", "+5",   " 5",    "5 ",  "1e3",
				     "0x10", "99999999999999999999" };
	unsigned v = 0;

	assert_int_equal(web_parse_limit("1", &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(web_parse_limit("50", &v), 0);
	assert_int_equal(v, 50);
	assert_int_equal(web_parse_limit("10000", &v), 0);
	assert_int_equal(v, 10000);
	assert_int_equal(web_parse_limit("007", &v), 0);
	assert_int_equal(v, 7);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 12345;
		errno = 0;
		if (web_parse_limit(bad[i], &v) != -1 || errno != EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		assert_int_equal(v, 12345);
	}
}

/* ---- starting ---- */

/* Whether fd is an open descriptor. */
static int fd_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static void test_start_errors(void **state)
{
	struct web_config cfg = { .interval_s = 5 };
	char missing[160], busy[32];
	int fd;

	errno = 0;
	assert_int_equal(web_listen("127.0.0.1"), -1);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_int_equal(web_listen(NULL), -1);
	assert_int_equal(errno, EINVAL);

	/* the port is taken: known before anything else is started */
	snprintf(busy, sizeof(busy), "127.0.0.1:%u", (unsigned)T.port);
	errno = 0;
	assert_int_equal(web_listen(busy), -1);
	assert_int_equal(errno, EADDRINUSE);
	errno = 0;
	assert_int_equal(web_listen("192.0.2.1:0"), -1); /* not ours */
	assert_int_equal(errno, EADDRNOTAVAIL);

	/* no database yet: the socket handed over is closed, no file made */
	snprintf(missing, sizeof(missing), "%s/missing.db", T.dir);
	cfg.db_path = missing;
	fd = web_listen("127.0.0.1:0");
	assert_true(fd >= 0);
	errno = 0;
	assert_null(web_start(fd, &cfg));
	assert_int_equal(errno, ENOENT);
	assert_false(fd_open(fd));
	assert_int_equal(access(missing, F_OK), -1);

	/* a descriptor that is no socket */
	cfg.db_path = T.db;
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	errno = 0;
	assert_null(web_start(fd, &cfg));
	assert_int_equal(errno, EBADF);
	assert_false(fd_open(fd));
}

/* IPv6: web_listen() binds [::1] only, web_start() serves on it. */
static void test_listen_ipv6(void **state)
{
	struct web_config cfg = { .db_path = T.db, .interval_s = 5 };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6,
				     .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n"
			   "Connection: close\r\n\r\n";
	struct resp r;
	struct web *w;
	int fd;

	fd = web_listen("[::1]:0");
	if (fd == -1 && errno == EADDRNOTAVAIL)
		skip(); /* no IPv6 loopback here */
	assert_true(fd >= 0);
	w = web_start(fd, &cfg);
	assert_non_null(w);
	sin6.sin6_port = htons(web_bound_port(w));
	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin6, sizeof(sin6)),
			 0);
	send_all(fd, req, sizeof(req) - 1);
	read_response(fd, 0, &r);
	close(fd);
	assert_true(r.status == 200 || r.status == 503);
	resp_free(&r);
	web_stop(w);
}

/* ---- routes ---- */

static void assert_index(const struct resp *r)
{
	assert_json_reply(r, 200);
	assert_jtext(r->body, "$.name", "natscope");
	assert_jtext(r->body, "$.version", NS_VERSION);
	assert_jtext(r->body, "$.dashboard", "/");
	/* every route of the API, from the route table, with its
	 * parameters */
	assert_int_equal(jlen(r->body, "$.endpoints"), 14);
	assert_jtext(r->body, "$.endpoints[0]",
		     "/api/v1/gateways?at=&from=&to=");
	assert_jtext(r->body, "$.endpoints[1]",
		     "/api/v1/gateways/{public_ip}/hosts?proto=&limit=&at=");
	assert_jtext(r->body, "$.endpoints[7]", "/healthz");
	assert_jtext(r->body, "$.endpoints[12]", "/api/v1/incidents/{id}");
}

/* The JSON index is at /api/v1/; "/" gives it too to every client that
 * does not ask for HTML (scripts, curl), and says that it varies. */
static void test_index(void **state)
{
	static const char *accepts[] = {
		NULL, "Accept: application/json\r\n", "Accept: */*\r\n",
		"Accept: application/json, text/plain\r\n",
	};
	struct resp r;
	char v[64];

	http_get("/api/v1/", &r);
	assert_index(&r);
	resp_free(&r);
	for (size_t i = 0; i < sizeof(accepts) / sizeof(accepts[0]); i++) {
		http_full("GET", "/", accepts[i], NULL, &r);
		assert_index(&r);
		assert_int_equal(resp_header(&r, "Vary", v, sizeof(v)), 0);
		assert_string_equal(v, "Accept");
		assert_int_equal(resp_header(&r, "X-Content-Type-Options", v,
					     sizeof(v)), 0);
		assert_string_equal(v, "nosniff");
		resp_free(&r);
	}
}

#define ACCEPT_HTML "Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n"

/* An HTML answer: its type, and the headers every HTML answer has. */
static void assert_html_reply(const struct resp *r, int status)
{
	char v[512];

	if (r->status != status)
		fail_msg("status %d, want %d: %s", r->status, status, r->body);
	assert_int_equal(resp_header(r, "Content-Type", v, sizeof(v)), 0);
	assert_string_equal(v, "text/html; charset=utf-8");
	assert_int_equal(resp_header(r, "Cache-Control", v, sizeof(v)), 0);
	assert_string_equal(v, "no-store");
	assert_int_equal(resp_header(r, "X-Content-Type-Options", v,
				     sizeof(v)), 0);
	assert_string_equal(v, "nosniff");
	assert_int_equal(resp_header(r, "Content-Security-Policy", v,
				     sizeof(v)), 0);
	assert_non_null(strstr(v, "default-src 'self'"));
	assert_non_null(strstr(v, "script-src 'self';"));
	assert_non_null(strstr(v, "style-src 'self';"));
	assert_null(strstr(v, "unsafe"));
	assert_null(strstr(v, "http"));
	assert_non_null(strstr(r->body, "<!DOCTYPE html>"));
	assert_non_null(strstr(r->body, "name=\"viewport\""));
	/* no inline script or style, nothing from another origin */
	assert_null(strstr(r->body, "<script>"));
	assert_null(strstr(r->body, "style="));
	assert_null(strstr(r->body, "<style"));
	assert_null(strstr(r->body, "//"));
}

/* Where in the page the row of ip/proto starts (fails if absent). */
static const char *page_row(const char *page, const char *ip,
			    const char *proto)
{
	char key[128];
	const char *p;

	snprintf(key, sizeof(key), "data-ip=\"%s\" data-proto=\"%s\"", ip,
		 proto);
	p = strstr(page, key);
	if (!p)
		fail_msg("no row %s in the page", key);
	return p;
}

/* The text of the first element marked data-k="k" after p. */
static void page_value(const char *p, const char *k, char *out, size_t n)
{
	char key[64];
	const char *v, *end;

	snprintf(key, sizeof(key), "data-k=\"%s\">", k);
	v = strstr(p, key);
	if (!v)
		fail_msg("no %s after %.60s", key, p);
	v += strlen(key);
	end = strchr(v, '<');
	assert_non_null(end);
	assert_true((size_t)(end - v) < n);
	memcpy(out, v, (size_t)(end - v));
	out[end - v] = '\0';
}

static void assert_page_value(const char *p, const char *k, const char *want)
{
	char got[128];

	page_value(p, k, got, sizeof(got));
	if (strcmp(got, want) != 0)
		fail_msg("%s: the page shows '%s', want '%s'", k, got, want);
}

/* A browser asking for "/" gets the overview: the API's figures, sorted
 * by pressure, with the collector's health in the header. */
static void test_overview(void **state)
{
	const char *tcp4, *udp4, *tcp6, *icmp;
	struct resp r;

	write_status(STORE_STATE_RUNNING, ns_now_ms());
	http_full("GET", "/", ACCEPT_HTML, NULL, &r);
	assert_html_reply(&r, 200);
	assert_non_null(strstr(r.body, "<script src=\"/ui/dash.js\""));
	assert_non_null(strstr(r.body, "<script src=\"/ui/uPlot.min.js\""));
	assert_non_null(strstr(r.body, "href=\"/ui/dash.css\""));
	assert_non_null(strstr(r.body, "data-warn=\"0.7000\" "
				       "data-critical=\"0.9000\""));
	assert_page_value(r.body, "state", "running");
	assert_page_value(r.body, "follow", "events");
	assert_page_value(r.body, "coverage", "complete");
	assert_page_value(r.body, "insert_failed", "7");
	assert_page_value(r.body, "drop", "6");
	assert_page_value(r.body, "count", "4");

	/* by pressure: 1200 of 65535 ports; 30 of 65535; 22 of the worst
	 * bucket's 64512; 3 of 65535 */
	tcp4 = page_row(r.body, GW4, "tcp");
	udp4 = page_row(r.body, GW4, "udp");
	tcp6 = page_row(r.body, GW6, "tcp");
	icmp = page_row(r.body, GW4B, "icmp");
	assert_true(tcp4 < udp4 && udp4 < tcp6 && tcp6 < icmp);

	assert_page_value(tcp4, "pressure", "1.8 %");
	assert_page_value(tcp4, "ports_in_use", "1200");
	assert_page_value(tcp4, "port_space", "65535");
	assert_page_value(tcp4, "worst", "198.51.100.7:443");
	assert_page_value(tcp4, "worst_mappings", "1100");
	assert_page_value(tcp4, "worst_capacity", "64512");
	assert_page_value(tcp4, "hosts", "13");
	assert_page_value(tcp4, "mappings", "1500");
	assert_page_value(tcp4, "time_wait", "73.1 %"); /* 1097 of 1500 */
	assert_page_value(udp4, "time_wait", "&#8212;"); /* not TCP */
	assert_page_value(tcp6, "worst", "[2001:db8:2::7]:443");
	assert_page_value(tcp6, "time_wait", "0.0 %");
	assert_page_value(icmp, "worst", "198.51.100.7:0");
	assert_non_null(strstr(tcp4, "class=\"lvl-ok\""));
	resp_free(&r);

	/* HEAD: the same headers, no body */
	http_full("HEAD", "/", ACCEPT_HTML, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 0);
	resp_free(&r);
}

/* The other pages are one shell that pages.js draws: served at each of
 * their paths whatever the query (their state, which the API the script
 * asks validates), under the same policy, naming the page and nothing
 * from the URL; they are not in the JSON index.  The overview's rows
 * link to their gateway's page, and "/?at=" is the overview of a past
 * moment (404 as a page where history has none). */
static void test_pages(void **state)
{
	static const struct {
		const char *path, *page;
	} want[] = {
		{ "/gateway/" GW4 "?proto=tcp&at=2026-12-01T10:00:00Z",
		  "gateway" },
		{ "/gateway/" GW4 "/ports?proto=udp&dst=198.51.100.7:443",
		  "ports" },
		{ "/gateway/" GW6 "/diagnosis", "diagnosis" },
		{ "/host/198.18.0.2?from=1&to=2", "host" },
		{ "/incidents", "incidents" },
		{ "/incidents/7", "incident" },
		{ "/lookup?public_ip=" GW4 "&port=40000&x=%3Cscript%3E",
		  "lookup" },
	};
	char v[64];
	struct resp r;

	write_status(STORE_STATE_RUNNING, ns_now_ms());
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char attr[64];

		http_full("GET", want[i].path, ACCEPT_HTML, NULL, &r);
		assert_html_reply(&r, 200);
		snprintf(attr, sizeof(attr), "data-page=\"%s\"", want[i].page);
		assert_non_null(strstr(r.body, attr));
		assert_non_null(strstr(r.body, "<script src=\"/ui/pages.js\""));
		assert_non_null(strstr(r.body, "<script src=\"/ui/portmap.js\""));
		assert_non_null(strstr(r.body, "<form id=\"picker\""));
		assert_null(strstr(r.body, "script%3E"));
		assert_null(strstr(r.body, "198.18.0.2"));
		resp_free(&r);
	}
	http_get("/api/v1/", &r);
	assert_null(strstr(r.body, "/gateway/"));
	assert_null(strstr(r.body, "\"/lookup"));
	resp_free(&r);
	expect_error("/gateway/", 404, "no such path '/gateway/'");

	http_full("GET", "/", ACCEPT_HTML, NULL, &r);
	assert_non_null(strstr(r.body, "<a href=\"/gateway/" GW4
				       "?proto=tcp\">" GW4 "</a>"));
	assert_page_value(r.body, "showing", "live");
	resp_free(&r);
	http_full("GET", "/?at=2001-01-01T00:00:00Z", ACCEPT_HTML, NULL, &r);
	assert_int_equal(r.status, 404);
	assert_int_equal(resp_header(&r, "Content-Type", v, sizeof(v)), 0);
	assert_string_equal(v, "text/html; charset=utf-8");
	resp_free(&r);
	http_full("GET", "/?at=yesterday", ACCEPT_HTML, NULL, &r);
	assert_int_equal(r.status, 400);
	resp_free(&r);
	/* ?limit=: the most pressed rows, and a link to every one */
	http_full("GET", "/?limit=2", ACCEPT_HTML, NULL, &r);
	assert_html_reply(&r, 200);
	assert_page_value(r.body, "count", "4");
	assert_non_null(page_row(r.body, GW4, "tcp"));
	assert_non_null(strstr(r.body, "the 2 most pressed rows of 4: <a "
				       "class=\"more\" href=\"/?limit=10000\">"));
	assert_null(strstr(r.body, "data-proto=\"icmp\""));
	resp_free(&r);
}

/* Text from the database reaches the page escaped, through the one
 * helper; a gap shows in the header. */
static void test_overview_escapes(void **state)
{
	struct store_batch b;
	struct web_buf wb = { 0 };
	struct resp r;

	web_buf_html(&wb, "<a href='x'>\"&\"</a>");
	web_buf_html(&wb, NULL);
	web_buf_html(&wb, "plain");
	assert_int_equal(wb.err, 0);
	assert_string_equal(wb.p, "&lt;a href=&#39;x&#39;&gt;&quot;&amp;"
				  "&quot;&lt;/a&gt;plain");
	web_buf_free(&wb);

	store_batch_init(&b);
	fill_status(&b.status, STORE_STATE_STOPPED, ns_now_ms());
	snprintf(b.status.note, sizeof(b.status.note), "%s",
		 "imported from <script>alert(1)</script>.txt & \"x\"");
	assert_int_equal(store_write(T.rw, &b), 0);
	store_batch_free(&b);

	http_full("GET", "/", ACCEPT_HTML, NULL, &r);
	assert_html_reply(&r, 200);
	assert_page_value(r.body, "note", "imported from &lt;script&gt;alert(1)"
			  "&lt;/script&gt;.txt &amp; &quot;x&quot;");
	assert_page_value(r.body, "state", "stopped");
	assert_non_null(strstr(r.body, "class=\"health lvl-info\""));
	resp_free(&r);
	write_status(STORE_STATE_RUNNING, ns_now_ms());
}

/* Every file compiled in is served with its type and ETag, and a client
 * that has it gets 304. */
static void test_assets(void **state)
{
	static const struct {
		const char *path, *ctype;
	} want[] = {
		{ "/ui/dash.js", "text/javascript; charset=utf-8" },
		{ "/ui/pages.js", "text/javascript; charset=utf-8" },
		{ "/ui/portmap.js", "text/javascript; charset=utf-8" },
		{ "/ui/dash.css", "text/css; charset=utf-8" },
		{ "/ui/uPlot.min.js", "text/javascript; charset=utf-8" },
		{ "/ui/uPlot.min.css", "text/css; charset=utf-8" },
		{ "/ui/favicon.svg", "image/svg+xml" },
	};
	char v[128], etag[64], inm[128];
	struct resp r;

	assert_int_equal(web_assets_count, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct web_asset *a = NULL;

		for (size_t k = 0; k < web_assets_count; k++)
			if (strcmp(web_assets[k].name, want[i].path + 4) == 0)
				a = &web_assets[k];
		assert_non_null(a);

		http_get(want[i].path, &r);
		assert_int_equal(r.status, 200);
		assert_int_equal(resp_header(&r, "Content-Type", v, sizeof(v)),
				 0);
		assert_string_equal(v, want[i].ctype);
		assert_int_equal(resp_header(&r, "Cache-Control", v,
					     sizeof(v)), 0);
		assert_string_equal(v, "no-cache");
		assert_int_equal(resp_header(&r, "X-Content-Type-Options", v,
					     sizeof(v)), 0);
		assert_string_equal(v, "nosniff");
		assert_int_equal(resp_header(&r, "ETag", etag, sizeof(etag)),
				 0);
		assert_true(strlen(etag) > 10 && etag[0] == '"');
		assert_int_equal(r.body_len, a->len);
		assert_memory_equal(r.body, a->bytes, a->len);
		assert_string_equal(etag, a->etag);
		resp_free(&r);

		snprintf(inm, sizeof(inm), "If-None-Match: %s\r\n", etag);
		http_full("GET", want[i].path, inm, NULL, &r);
		assert_int_equal(r.status, 304);
		assert_int_equal(r.body_len, 0);
		assert_int_equal(resp_header(&r, "ETag", v, sizeof(v)), 0);
		assert_string_equal(v, etag);
		resp_free(&r);

		http_full("GET", want[i].path, "If-None-Match: \"other\"\r\n",
			  NULL, &r);
		assert_int_equal(r.status, 200);
		resp_free(&r);
	}
	/* uPlot is the real library, not a stand-in */
	http_get("/ui/uPlot.min.js", &r);
	assert_true(r.body_len > 20000);
	assert_non_null(strstr(r.body, "uPlot"));
	resp_free(&r);
	expect_error("/ui/nope.js", 404, "no such file '/ui/nope.js'");
	http_get("/ui/..%2fweb.c", &r); /* nothing but the table is served */
	assert_json_reply(&r, 404);
	resp_free(&r);
}

/* The thresholds run's --warn/--critical give colour the rows, bars and
 * the page's data for dash.js. */
static void test_overview_thresholds(void **state)
{
	struct web_config cfg = { .interval_s = 5, .warn = 0.01,
				  .critical = 0.018 };
	uint16_t saved = T.port;
	const char *tcp4, *udp4;
	struct web *w;
	struct resp r;

	write_status(STORE_STATE_RUNNING, ns_now_ms());
	cfg.db_path = T.db;
	w = web_start(web_listen("127.0.0.1:0"), &cfg);
	assert_non_null(w);
	T.port = web_bound_port(w);
	http_full("GET", "/", ACCEPT_HTML, NULL, &r);
	assert_html_reply(&r, 200);
	assert_non_null(strstr(r.body, "data-warn=\"0.0100\" "
				       "data-critical=\"0.0180\""));
	assert_non_null(strstr(r.body, "warn 1 %, critical 2 %"));
	/* GW4 tcp: ports 1200 of 65535 (1.83 %: critical), its worst
	 * bucket 1100 of 64512 (1.71 %: warn); GW4 udp: 0.05 %: ok */
	tcp4 = page_row(r.body, GW4, "tcp");
	udp4 = page_row(r.body, GW4, "udp");
	assert_true(strncmp(tcp4 - strlen("<tr class=\"lvl-crit\" "),
			    "<tr class=\"lvl-crit\" ",
			    strlen("<tr class=\"lvl-crit\" ")) == 0);
	assert_true(strncmp(udp4 - strlen("<tr class=\"lvl-ok\" "),
			    "<tr class=\"lvl-ok\" ",
			    strlen("<tr class=\"lvl-ok\" ")) == 0);
	assert_non_null(strstr(tcp4, "<td class=\"bar lvl-crit\" "
				     "data-label=\"ports in use\">"));
	assert_non_null(strstr(tcp4, "<td class=\"bar lvl-warn\" "
				     "data-label=\"worst destination\">"));
	/* the bars: yellow from warn, red from critical, of their maximum */
	assert_non_null(strstr(tcp4, "<meter min=\"0\" max=\"65535\" "
				     "low=\"655.4\" high=\"1179.6\" "
				     "optimum=\"0\" value=\"1200\">"));
	resp_free(&r);
	web_stop(w);
	T.port = saved;
}

static void remove_db(const char *db);

/* Before this run's status row, and with no snapshot at all, the page
 * says so (and reloads itself) instead of showing old figures. */
static void test_overview_unavailable(void **state)
{
	struct web_config cfg = { .interval_s = 5, .run_started_ms = 1 };
	uint16_t saved = T.port;
	char db[160];
	struct store *st;
	struct web *w;
	struct resp r;

	cfg.db_path = T.db;
	w = web_start(web_listen("127.0.0.1:0"), &cfg);
	assert_non_null(w);
	T.port = web_bound_port(w);
	http_full("GET", "/", ACCEPT_HTML, NULL, &r);
	assert_html_reply(&r, 503);
	assert_page_value(r.body, "message", "starting: the database still "
			  "holds the previous run&#39;s figures");
	assert_non_null(strstr(r.body, "http-equiv=\"refresh\""));
	resp_free(&r);
	web_stop(w);

	snprintf(db, sizeof(db), "%s/empty-page.db", T.dir);
	st = store_open(db, STORE_READ_WRITE);
	assert_non_null(st);
	cfg.db_path = db;
	cfg.run_started_ms = 0;
	w = web_start(web_listen("127.0.0.1:0"), &cfg);
	assert_non_null(w);
	T.port = web_bound_port(w);
	http_full("GET", "/", ACCEPT_HTML, NULL, &r);
	assert_html_reply(&r, 503);
	assert_page_value(r.body, "message",
			  "the collector has not written a snapshot yet");
	resp_free(&r);
	web_stop(w);
	T.port = saved;
	store_close(st);
	remove_db(db);
}

static void test_gateways(void **state)
{
	struct resp r;
	char *g;

	http_get("/api/v1/gateways", &r);
	assert_json_reply(&r, 200);
	assert_int_equal(jlen(r.body, "$.gateways"), 4);
	assert_non_null(strstr(r.body, "\"generated_at\""));
	assert_non_null(strstr(r.body, "\"as_of\""));
	assert_int_equal(jint(r.body, "$.coverage.complete"), 1);

	g = jfind_gateway(r.body, GW4, "tcp");
	assert_int_equal(jint(g, "$.ports_in_use"), 1200);
	assert_int_equal(jint(g, "$.port_space"), 65535);
	assert_int_equal(jint(g, "$.mappings"), 1500);
	assert_int_equal(jint(g, "$.hosts"), 13);
	assert_int_equal(jint(g, "$.destinations"), 4);
	assert_jtext(g, "$.worst_destination.ip", "198.51.100.7");
	assert_int_equal(jint(g, "$.worst_destination.port"), 443);
	assert_int_equal(jint(g, "$.worst_destination.mappings"), 1100);
	assert_int_equal(jint(g, "$.worst_destination.capacity"), 64512);
	assert_int_equal(jint(g, "$.states.established"), 400);
	assert_int_equal(jint(g, "$.states.time_wait"), 1097);
	assert_int_equal(jint(g, "$.states.syn_sent"), 2);
	assert_int_equal(jint(g, "$.states.close"), 0);
	free(g);

	g = jfind_gateway(r.body, GW4, "udp");
	assert_int_equal(jint(g, "$.mappings"), 30);
	assert_null(jtext(g, "$.states")); /* TCP only */
	free(g);

	g = jfind_gateway(r.body, GW6, "tcp");
	assert_int_equal(jint(g, "$.ports_in_use"), 20);
	assert_jtext(g, "$.worst_destination.ip", "2001:db8:2::7");
	free(g);

	g = jfind_gateway(r.body, GW4B, "icmp");
	assert_int_equal(jint(g, "$.worst_destination.port"), 0);
	assert_int_equal(jint(g, "$.worst_destination.capacity"), 65536);
	free(g);
	resp_free(&r);
}

/* Asserts the list at path is ordered largest first by .mappings. */
static void assert_descending(const char *body, const char *path)
{
	long long n = jlen(body, path), prev = -1;
	char p[64];

	for (long long i = 0; i < n; i++) {
		long long m;

		snprintf(p, sizeof(p), "%s[%lld].mappings", path, i);
		m = jint(body, p);
		if (prev >= 0 && m > prev)
			fail_msg("%s not largest first at %lld", path, i);
		prev = m;
	}
}

static void test_hosts(void **state)
{
	struct resp r;

	/* defaults: proto tcp, limit 50 (more than there are) */
	http_get("/api/v1/gateways/" GW4 "/hosts", &r);
	assert_json_reply(&r, 200);
	assert_jtext(r.body, "$.public_ip", GW4);
	assert_jtext(r.body, "$.proto", "tcp");
	assert_int_equal(jint(r.body, "$.total"), N_NAT_HOSTS + 1);
	assert_int_equal(jlen(r.body, "$.hosts"), N_NAT_HOSTS + 1);
	assert_descending(r.body, "$.hosts");
	assert_jtext(r.body, "$.hosts[0].ip", "198.18.0.1");
	assert_int_equal(jint(r.body, "$.hosts[0].mappings"), 280);
	assert_int_equal(jint(r.body, "$.hosts[0].ports_in_use"), 230);
	assert_jtext(r.body, "$.hosts[0].kind", "nat");
	/* the gateway's own connections (65) fall between .11 and .12 */
	assert_jtext(r.body, "$.hosts[11].ip", GW4);
	assert_jtext(r.body, "$.hosts[11].kind", "local");
	assert_int_equal(jint(r.body, "$.hosts[11].mappings"), 65);
	assert_jtext(r.body, "$.hosts[12].ip", "198.18.0.12");
	resp_free(&r);

	/* limit cuts the list, not the total */
	http_get("/api/v1/gateways/" GW4 "/hosts?limit=3", &r);
	assert_json_reply(&r, 200);
	assert_int_equal(jint(r.body, "$.total"), N_NAT_HOSTS + 1);
	assert_int_equal(jlen(r.body, "$.hosts"), 3);
	assert_jtext(r.body, "$.hosts[2].ip", "198.18.0.3");
	resp_free(&r);

	http_get("/api/v1/gateways/" GW4 "/hosts?limit=10000&proto=tcp", &r);
	assert_json_reply(&r, 200);
	assert_int_equal(jlen(r.body, "$.hosts"), N_NAT_HOSTS + 1);
	resp_free(&r);

	http_get("/api/v1/gateways/" GW4 "/hosts?proto=udp&limit=1", &r);
	assert_json_reply(&r, 200);
	assert_jtext(r.body, "$.proto", "udp");
	assert_int_equal(jint(r.body, "$.total"), 1);
	assert_jtext(r.body, "$.hosts[0].ip", "198.18.0.1");
	assert_int_equal(jint(r.body, "$.hosts[0].mappings"), 30);
	resp_free(&r);
}

static void test_destinations(void **state)
{
	struct resp r;

	http_get("/api/v1/gateways/" GW4 "/destinations", &r);
	assert_json_reply(&r, 200);
	assert_jtext(r.body, "$.public_ip", GW4);
	assert_jtext(r.body, "$.proto", "tcp");
	assert_int_equal(jint(r.body, "$.total"), 4);
	assert_int_equal(jlen(r.body, "$.destinations"), 4);
	assert_descending(r.body, "$.destinations");
	assert_jtext(r.body, "$.destinations[0].ip", "198.51.100.7");
	assert_int_equal(jint(r.body, "$.destinations[0].port"), 443);
	assert_int_equal(jint(r.body, "$.destinations[0].zone"), 0);
	assert_int_equal(jint(r.body, "$.destinations[0].mappings"), 1100);
	assert_int_equal(jint(r.body, "$.destinations[0].capacity"), 64512);
	assert_jtext(r.body, "$.destinations[1].ip", "198.51.100.8");
	assert_int_equal(jint(r.body, "$.destinations[1].mappings"), 300);
	/* a tie (50 each) goes by address: .9 before .10 */
	assert_jtext(r.body, "$.destinations[2].ip", "198.51.100.9");
	assert_int_equal(jint(r.body, "$.destinations[2].capacity"), 511);
	assert_jtext(r.body, "$.destinations[3].ip", "198.51.100.10");
	resp_free(&r);

	http_get("/api/v1/gateways/" GW4 "/destinations?limit=1", &r);
	assert_json_reply(&r, 200);
	assert_int_equal(jint(r.body, "$.total"), 4);
	assert_int_equal(jlen(r.body, "$.destinations"), 1);
	resp_free(&r);

	http_get("/api/v1/gateways/" GW4B "/destinations?proto=icmp", &r);
	assert_json_reply(&r, 200);
	assert_jtext(r.body, "$.proto", "icmp");
	assert_int_equal(jint(r.body, "$.destinations[0].port"), 0);
	assert_int_equal(jint(r.body, "$.destinations[0].capacity"), 65536);
	resp_free(&r);
}

/* ---- history (schema 004): a fixture written with SQL ---- */

/*
 * 2026-12-01T10:00:00Z.  Raw periods of 5 s from T0 to T0 + 120 s, but
 * none for [T0 + 60, T0 + 70) (natscope did not observe it), the one at
 * T0 + 30 not exact with a gap inside it; minutes 09:50..10:00 (10:00 not
 * exact); hours 08:00 and 09:00; and two days earlier (D) 1200 raw
 * periods and their 100 minutes.  Each period's figures follow its number
 * i.  Hosts and buckets are kept per minute and hour only, as the writer
 * keeps them.
 */
#define T0 1796119200000LL
#define T0S "1796119200"
#define DAY_D (T0 - 2 * 86400000LL)

static void write_history(void)
{
	char sql[8192];

	snprintf(sql, sizeof(sql),
		 "CREATE TEMP TABLE fx (tier, ts_ms, span_ms, exact, i);"
		 "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 "
		 "FROM n WHERE i < 1199) "
		 "INSERT INTO fx SELECT 0, %lld + 5000 * i, 5000, i != 6, i "
		 "FROM n WHERE i < 24 AND i NOT IN (12, 13) UNION ALL "
		 "SELECT 1, %lld + 60000 * i, 60000, i != 10, 100 + i FROM n "
		 "WHERE i <= 10 UNION ALL "
		 "SELECT 2, %lld + 3600000 * i, 3600000, 1, 200 + i FROM n "
		 "WHERE i <= 1 UNION ALL "
		 "SELECT 0, %lld + 5000 * i, 5000, 1, 1000 + i FROM n UNION ALL "
		 "SELECT 1, %lld + 60000 * i, 60000, 1, 3000 + i FROM n "
		 "WHERE i < 100;"
		 "INSERT INTO hist_kernel (tier, ts_ms, span_ms, exact, state, "
		 "mappings_nat, mappings_local, events_lost) SELECT tier, "
		 "ts_ms, span_ms, exact, CASE WHEN exact THEN 'running' ELSE "
		 "'resyncing' END, 150 + i, 0, 0 FROM fx;"
		 "INSERT INTO hist_gateway (public_ip, proto, tier, ts_ms, "
		 "span_ms, exact, family, ip_bin, ports_in_use, ports_peak, "
		 "ports_avg, mappings, mappings_peak, mappings_avg, hosts, "
		 "destinations, new_mappings, worst_ip, worst_port, "
		 "worst_zone, worst_capacity, worst_peak, state_established, "
		 "state_time_wait, time_wait_peak) SELECT '" GW4 "', 'tcp', "
		 "tier, ts_ms, span_ms, exact, 4, x'cb007101', 100 + i, "
		 "200 + i, 150.5, 150 + i, 300 + i, 200.25, 2, 1, 10 * i, "
		 "'198.51.100.7', 443, 0, 64512, 250 + i, 50, 100 + i, "
		 "120 + i FROM fx;"
		 "INSERT INTO hist_gateway (public_ip, proto, tier, ts_ms, "
		 "span_ms, exact, family, ip_bin, ports_in_use, ports_peak, "
		 "ports_avg, mappings, mappings_peak, mappings_avg, hosts, "
		 "destinations, new_mappings, worst_peak) SELECT '" GW6 "', "
		 "'tcp', tier, ts_ms, span_ms, exact, 6, "
		 "x'20010db8000000000000000000000001', 7, 8, 7, 7, 8, 7, 1, "
		 "0, 1, 0 FROM fx WHERE tier = 0 AND ts_ms >= %lld;"
		 "INSERT INTO hist_host (public_ip, proto, tier, ts_ms, ip, "
		 "span_ms, kind, family, ip_bin, mappings, mappings_peak, "
		 "ports_in_use, new_mappings) SELECT '" GW4 "', 'tcp', tier, "
		 "ts_ms, '198.18.0.1', span_ms, 'nat', 4, x'c6120001', "
		 "50 + i, 60 + i, 45, 10 + i FROM fx WHERE tier > 0 UNION ALL "
		 "SELECT '" GW4 "', 'tcp', tier, ts_ms, '198.18.0.2', span_ms, "
		 "'nat', 4, x'c6120002', 40, 40, 35, 5 FROM fx WHERE tier > 0;"
		 "INSERT INTO hist_dest (public_ip, proto, tier, ts_ms, zone, "
		 "ip, port, span_ms, family, ip_bin, capacity, mappings, "
		 "mappings_peak, new_mappings) SELECT '" GW4 "', 'tcp', tier, "
		 "ts_ms, 0, '198.51.100.7', 443, span_ms, 4, x'c6336407', "
		 "64512, 150 + i, 250 + i, 10 + i FROM fx WHERE tier > 0;"
		 "DROP TABLE fx;"
		 "INSERT INTO gaps VALUES (%lld, 1, %lld, %lld, 42, 1, 3, 1, "
		 "0, 'enobufs');"
		 "INSERT INTO incident (id, kind, severity, public_ip, proto, "
		 "capacity, opened_ms, closed_ms, peak_ms, peak_mappings, "
		 "insert_failed, opened_detail, peak_detail) VALUES (1, "
		 "'gateway', 'critical', '" GW4 "', 'tcp', 65535, %lld, %lld, "
		 "%lld, 60000, 3, '{\"top\": [{\"ip\": \"198.18.0.1\", "
		 "\"rate\": 12.5}]}', '{\"states\": {\"time_wait\": 50000}}');"
		 "INSERT INTO incident (id, kind, severity, public_ip, proto, "
		 "zone, dest_ip, dest_port, capacity, opened_ms, peak_ms, "
		 "peak_mappings, opened_detail, peak_detail) VALUES (2, "
		 "'bucket', 'warn', '" GW4 "', 'tcp', 0, '198.51.100.7', 443, "
		 "64512, %lld, %lld, 46000, '{}', 'not json');"
		 "INSERT INTO incident (id, kind, severity, opened_ms, "
		 "closed_ms, peak_ms, peak_mappings, drop_count, "
		 "opened_detail, peak_detail) VALUES (3, 'kernel', 'warn', "
		 "%lld, %lld, %lld, 0, 9, '{}', '{}');",
		 T0, T0 - 600000, T0 - 7200000, DAY_D, DAY_D, T0,
		 T0 - 3 * 3600000, T0 + 31000, T0 + 33000,
		 T0 + 20000, T0 + 50000, T0 + 30000,
		 T0 + 100000, T0 + 110000,
		 T0 - 3 * 86400000LL, T0 - 3 * 86400000LL + 10000,
		 T0 - 3 * 86400000LL);
	assert_int_equal(store_test_exec(T.rw, sql), 0);
}

/* GET path; expect 200 JSON and return the body (caller frees). */
static char *get_json(const char *path)
{
	struct resp r;

	http_get(path, &r);
	assert_json_reply(&r, 200);
	return r.body;
}

static void test_at_gateways(void **state)
{
	char *b, *g;

	/* a period that starts at at: raw, not exact, its gap shown */
	b = get_json("/api/v1/gateways?at=" "1796119230");
	assert_jtext(b, "$.resolution", "raw");
	assert_int_equal(jint(b, "$.resolution_seconds"), 5);
	assert_jtext(b, "$.at", "2026-12-01T10:00:30.000Z");
	assert_jtext(b, "$.period.start", "2026-12-01T10:00:30.000Z");
	assert_jtext(b, "$.as_of", "2026-12-01T10:00:35.000Z");
	assert_int_equal(jint(b, "$.exact"), 0);
	assert_int_equal(jint(b, "$.coverage.complete"), 0);
	assert_jtext(b, "$.coverage.state", "resyncing");
	assert_int_equal(jlen(b, "$.coverage.gaps"), 1);
	assert_jtext(b, "$.coverage.gaps[0].reason", "enobufs");
	assert_jtext(b, "$.coverage.gaps[0].start", "2026-12-01T10:00:31.000Z");
	assert_int_equal(jint(b, "$.coverage.gaps[0].events_lost"), 42);
	assert_int_equal(jlen(b, "$.gateways"), 2);
	g = jfind_gateway(b, GW4, "tcp");
	assert_int_equal(jint(g, "$.exact"), 0);
	assert_int_equal(jint(g, "$.ports_in_use"), 106);
	assert_int_equal(jint(g, "$.ports_peak"), 206);
	assert_int_equal(jint(g, "$.mappings"), 156);
	assert_int_equal(jint(g, "$.mappings_peak"), 306);
	assert_int_equal(jint(g, "$.new_mappings"), 60);
	assert_jtext(g, "$.new_per_second", "12.0");
	assert_jtext(g, "$.worst_destination.ip", "198.51.100.7");
	assert_int_equal(jint(g, "$.worst_destination.peak"), 256);
	assert_int_equal(jint(g, "$.states.time_wait"), 106);
	assert_int_equal(jint(g, "$.time_wait_peak"), 126);
	free(g);
	g = jfind_gateway(b, GW6, "tcp");
	assert_null(jtext(g, "$.worst_destination"));
	free(g);
	free(b);

	/* 1 ms earlier: the period before, exact, no gap */
	b = get_json("/api/v1/gateways?at=2026-12-01T10:00:29.999Z");
	assert_jtext(b, "$.period.start", "2026-12-01T10:00:25.000Z");
	assert_jtext(b, "$.as_of", "2026-12-01T10:00:30.000Z");
	assert_int_equal(jint(b, "$.exact"), 1);
	assert_int_equal(jint(b, "$.coverage.complete"), 1);
	assert_int_equal(jlen(b, "$.coverage.gaps"), 0);
	free(b);

	/* before the raw rows: the minute holding it */
	b = get_json("/api/v1/gateways?at=2026-12-01T09:59:59.999Z");
	assert_jtext(b, "$.resolution", "minute");
	assert_int_equal(jint(b, "$.resolution_seconds"), 60);
	assert_jtext(b, "$.period.start", "2026-12-01T09:59:00.000Z");
	assert_jtext(b, "$.as_of", "2026-12-01T10:00:00.000Z");
	assert_int_equal(jlen(b, "$.gateways"), 1);
	assert_int_equal(jint(b, "$.gateways[0].ports_in_use"), 209);
	free(b);

	/* before the minutes: the hour */
	b = get_json("/api/v1/gateways?at=2026-12-01T09:30:00%2B00:00");
	assert_jtext(b, "$.resolution", "hour");
	assert_int_equal(jint(b, "$.resolution_seconds"), 3600);
	assert_jtext(b, "$.period.start", "2026-12-01T09:00:00.000Z");
	assert_int_equal(jint(b, "$.gateways[0].ports_in_use"), 301);
	free(b);

	/* no period holds it: what history holds, and the hole */
	expect_error("/api/v1/gateways?at=1796119260", 404,
		     "no history at 2026-12-01T10:01:00.000Z: history holds "
		     "2026-11-29T10:00:00.000Z to 2026-12-01T10:02:00.000Z, "
		     "with nothing observed from 2026-12-01T10:01:00.000Z to "
		     "2026-12-01T10:01:10.000Z");
	expect_error("/api/v1/gateways?at=2026-11-01", 404,
		     "no history at 2026-11-01T00:00:00.000Z: history holds "
		     "2026-11-29T10:00:00.000Z to 2026-12-01T10:02:00.000Z");
	expect_error("/api/v1/gateways?at=1796119320", 404,
		     "no history at 2026-12-01T10:02:00.000Z: history holds "
		     "2026-11-29T10:00:00.000Z to 2026-12-01T10:02:00.000Z");
	expect_error("/api/v1/gateways?at=yesterday", 400,
		     "at must be a time, RFC 3339 (2026-12-02T14:02:00Z) or "
		     "unix seconds, not 'yesterday'");
}

/* /api/v1/gateways?from=&to= and the overview of a range: each figure
 * its own peak over the periods read, with when; gaps, inexact periods
 * and unobserved stretches (inside, before the first period, after the
 * last) make it not complete. */
static void test_range_gateways(void **state)
{
	struct resp r;
	char *b, *g;

	(void)state;
	/* raw periods 0..11 of the fixture: 6 is not exact, a gap in it */
	b = get_json("/api/v1/gateways?from=" T0S "&to=1796119260");
	assert_jtext(b, "$.resolution", "raw");
	assert_jtext(b, "$.from", "2026-12-01T10:00:00.000Z");
	assert_jtext(b, "$.to", "2026-12-01T10:01:00.000Z");
	assert_int_equal(jint(b, "$.periods"), 12);
	assert_int_equal(jint(b, "$.exact"), 0);
	assert_int_equal(jint(b, "$.coverage.complete"), 0);
	assert_int_equal(jint(b, "$.coverage.not_exact_periods"), 1);
	assert_int_equal(jlen(b, "$.coverage.gaps"), 1);
	assert_int_equal(jlen(b, "$.coverage.unobserved"), 0);
	assert_int_equal(jlen(b, "$.gateways"), 2);
	g = jfind_gateway(b, GW4, "tcp");
	assert_int_equal(jint(g, "$.periods"), 12);
	assert_int_equal(jint(g, "$.exact"), 0);
	assert_int_equal(jint(g, "$.ports_peak"), 211);
	assert_jtext(g, "$.ports_peak_at", "2026-12-01T10:00:55.000Z");
	assert_int_equal(jint(g, "$.mappings_peak"), 311);
	assert_int_equal(jint(g, "$.hosts_max"), 2);
	assert_int_equal(jint(g, "$.new_mappings"), 660); /* 10 x (0..11) */
	assert_jtext(g, "$.new_per_second", "11.0");
	assert_int_equal(jint(g, "$.time_wait_peak"), 131);
	assert_int_equal(jint(g, "$.worst_destination.peak"), 261);
	assert_jtext(g, "$.worst_destination.at", "2026-12-01T10:00:55.000Z");
	free(g);
	g = jfind_gateway(b, GW6, "tcp");
	assert_int_equal(jint(g, "$.ports_peak"), 8);
	assert_null(jtext(g, "$.worst_destination"));
	free(g);
	free(b);

	/* across the stretch nothing observed (10:01:00-10:01:10) */
	b = get_json("/api/v1/gateways?from=1796119250&to=1796119280");
	assert_int_equal(jint(b, "$.periods"), 4);
	assert_int_equal(jint(b, "$.coverage.complete"), 0);
	assert_int_equal(jlen(b, "$.coverage.unobserved"), 1);
	assert_jtext(b, "$.coverage.unobserved[0].start",
		     "2026-12-01T10:01:00.000Z");
	assert_jtext(b, "$.coverage.unobserved[0].end",
		     "2026-12-01T10:01:10.000Z");
	g = jfind_gateway(b, GW4, "tcp");
	assert_int_equal(jint(g, "$.ports_peak"), 215);
	assert_jtext(g, "$.ports_peak_at", "2026-12-01T10:01:15.000Z");
	free(g);
	free(b);

	/* past the history's end (10:02): the stretch after it */
	b = get_json("/api/v1/gateways?from=1796119300&to=1796119400");
	assert_int_equal(jint(b, "$.coverage.complete"), 0);
	assert_jtext(b, "$.coverage.unobserved[0].start",
		     "2026-12-01T10:02:00.000Z");
	assert_jtext(b, "$.coverage.unobserved[0].end",
		     "2026-12-01T10:03:20.000Z");
	free(b);

	/* before any history: nothing, and not complete */
	b = get_json("/api/v1/gateways?from=2026-11-01T00:00:00Z"
		     "&to=2026-11-02T00:00:00Z");
	assert_int_equal(jint(b, "$.periods"), 0);
	assert_int_equal(jlen(b, "$.gateways"), 0);
	assert_int_equal(jint(b, "$.coverage.complete"), 0);
	free(b);

	expect_error("/api/v1/gateways?at=" T0S "&from=" T0S, 400,
		     "at (a moment) and from/to (a range) exclude each other");

	/* the overview of that range, as a form without script sends it
	 * (an empty at= is no moment) */
	http_full("GET", "/?at=&from=" T0S "&to=1796119260", ACCEPT_HTML, NULL,
		  &r);
	assert_html_reply(&r, 200);
	assert_non_null(strstr(r.body, "data-from=\"2026-12-01T10:00:00.000Z\""));
	assert_non_null(strstr(r.body, "peaks from 2026-12-01T10:00:00.000Z"));
	g = (char *)page_row(r.body, GW4, "tcp");
	assert_page_value(g, "ports_in_use", "211");
	assert_page_value(g, "ports_peak_at", "2026-12-01T10:00:55.000Z");
	assert_page_value(g, "worst_mappings", "261");
	assert_page_value(g, "mappings", "311");
	assert_page_value(g, "time_wait", "peak 131");
	assert_non_null(strstr(r.body, "<strong>NOT COMPLETE</strong>: the "
			       "figures may be off (enobufs gap from "
			       "2026-12-01T10:00:31.000Z to "
			       "2026-12-01T10:00:33.000Z, 42 events lost)"));
	resp_free(&r);
}

static void test_at_lists(void **state)
{
	struct resp r;
	char *b;

	/* hosts are kept per minute: the minute holding the moment */
	b = get_json("/api/v1/gateways/" GW4 "/hosts?at=1796119232.5");
	assert_jtext(b, "$.resolution", "minute");
	assert_jtext(b, "$.as_of", "2026-12-01T10:01:00.000Z");
	assert_int_equal(jint(b, "$.exact"), 0);
	assert_int_equal(jint(b, "$.coverage.complete"), 0);
	assert_int_equal(jlen(b, "$.coverage.gaps"), 1);
	assert_int_equal(jint(b, "$.total"), 2);
	assert_int_equal(jint(b, "$.recorded.hosts"), 2);
	assert_int_equal(jint(b, "$.recorded.top_only"), 1);
	assert_jtext(b, "$.hosts[0].ip", "198.18.0.1");
	assert_int_equal(jint(b, "$.hosts[0].mappings"), 160);
	assert_int_equal(jint(b, "$.hosts[0].mappings_peak"), 170);
	assert_int_equal(jint(b, "$.hosts[0].new_mappings"), 120);
	assert_jtext(b, "$.hosts[0].new_per_second", "2.0");
	assert_jtext(b, "$.hosts[1].ip", "198.18.0.2");
	free(b);

	/* the minute before: exact, no gap */
	b = get_json("/api/v1/gateways/" GW4 "/hosts?at=1796119199&limit=1");
	assert_jtext(b, "$.period.start", "2026-12-01T09:59:00.000Z");
	assert_int_equal(jint(b, "$.exact"), 1);
	assert_int_equal(jint(b, "$.coverage.complete"), 1);
	assert_int_equal(jlen(b, "$.hosts"), 1);
	assert_int_equal(jint(b, "$.hosts[0].mappings_peak"), 169);
	free(b);

	b = get_json("/api/v1/gateways/" GW4
		     "/destinations?at=2026-12-01T09:05:00Z");
	assert_jtext(b, "$.resolution", "hour");
	assert_int_equal(jint(b, "$.total"), 1);
	assert_jtext(b, "$.destinations[0].ip", "198.51.100.7");
	assert_int_equal(jint(b, "$.destinations[0].port"), 443);
	assert_int_equal(jint(b, "$.destinations[0].capacity"), 64512);
	assert_int_equal(jint(b, "$.destinations[0].mappings_peak"), 451);
	free(b);

	/* GW6 has no row at minute resolution */
	expect_error("/api/v1/gateways/" GW6 "/hosts?at=1796119199", 404,
		     "no mappings for 2001:db8::1 tcp in the period of history "
		     "holding 2026-12-01T09:59:59.000Z");
	/* GW6 has raw rows only: its (empty) list says none was kept */
	b = get_json("/api/v1/gateways/" GW6 "/hosts?at=1796119230");
	assert_jtext(b, "$.resolution", "raw");
	assert_int_equal(jint(b, "$.total"), 1);
	assert_int_equal(jint(b, "$.recorded.hosts"), 0);
	assert_int_equal(jlen(b, "$.hosts"), 0);
	free(b);
	expect_error("/api/v1/gateways/" GW4 "/destinations?at=1700000000",
		     404, "no history at 2023-11-14T22:13:20.000Z: history "
			  "holds 2026-11-29T10:00:00.000Z to "
			  "2026-12-01T10:02:00.000Z");

	/* the same table as CSV: the period's as_of and exactness in
	 * every row */
	http_get("/api/v1/gateways/" GW4 "/hosts?at=1796119230&format=csv",
		 &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body,
			    "as_of,coverage_complete,ip,kind,mappings,"
			    "mappings_peak,ports_in_use,new_mappings,"
			    "new_per_second\r\n"
			    "2026-12-01T10:01:00.000Z,false,198.18.0.1,nat,160,"
			    "170,45,120,2.0\r\n"
			    "2026-12-01T10:01:00.000Z,false,198.18.0.2,nat,40,"
			    "40,35,5,0.083\r\n");
	resp_free(&r);
}

/* The number of lines in s. */
static int csv_lines(const char *s)
{
	int n = 0;

	for (; (s = strchr(s, '\n')); s++)
		n++;
	return n;
}

static void test_series(void **state)
{
	struct resp r;
	char v[64];
	char *b;

	/* two minutes: raw, the unobserved 10 s absent, not filled */
	b = get_json("/api/v1/series?public_ip=" GW4 "&from=" T0S
		     "&to=1796119320");
	assert_jtext(b, "$.resolution", "raw");
	assert_jtext(b, "$.resolution_seconds", "5.0");
	assert_jtext(b, "$.as_of", "2026-12-01T10:02:00.000Z");
	assert_jtext(b, "$.from", "2026-12-01T10:00:00.000Z");
	assert_int_equal(jlen(b, "$.points"), 22);
	assert_jtext(b, "$.points[0].ts", "2026-12-01T10:00:00.000Z");
	assert_int_equal(jint(b, "$.points[0].exact"), 1);
	assert_int_equal(jint(b, "$.points[0].states.time_wait"), 100);
	assert_int_equal(jint(b, "$.points[6].exact"), 0);
	assert_int_equal(jint(b, "$.points[6].ports_peak"), 206);
	assert_int_equal(jint(b, "$.points[6].mappings_peak"), 306);
	assert_jtext(b, "$.points[6].new_per_second", "12.0");
	assert_int_equal(jint(b, "$.points[6].worst.peak"), 256);
	assert_int_equal(jint(b, "$.points[6].worst.capacity"), 64512);
	assert_jtext(b, "$.points[11].end", "2026-12-01T10:01:00.000Z");
	assert_jtext(b, "$.points[12].ts", "2026-12-01T10:01:10.000Z");
	assert_int_equal(jint(b, "$.coverage.complete"), 0);
	assert_int_equal(jint(b, "$.coverage.not_exact_points"), 1);
	assert_int_equal(jlen(b, "$.coverage.unobserved"), 1);
	assert_jtext(b, "$.coverage.unobserved[0].start",
		     "2026-12-01T10:01:00.000Z");
	assert_jtext(b, "$.coverage.unobserved[0].end",
		     "2026-12-01T10:01:10.000Z");
	assert_int_equal(jlen(b, "$.coverage.gaps"), 1);
	/* top hosts from the minutes, where hosts are kept */
	assert_jtext(b, "$.recorded.resolution", "minute");
	assert_jtext(b, "$.top_hosts[0].ip", "198.18.0.1");
	assert_int_equal(jint(b, "$.top_hosts[0].mappings_peak"), 170);
	assert_int_equal(jint(b, "$.top_hosts[0].new_mappings"), 120);
	assert_int_equal(jint(b, "$.top_hosts[0].periods"), 1);
	assert_jtext(b, "$.top_hosts[0].new_per_second", "2.0");
	assert_int_equal(jint(b, "$.top_hosts[1].new_mappings"), 5);
	/* each top host's own points: [unix s, mappings_peak, ports] */
	assert_int_equal(jlen(b, "$.top_hosts[0].series"), 1);
	assert_jtext(b, "$.top_hosts[0].series[0][0]", "1796119200.0");
	assert_int_equal(jint(b, "$.top_hosts[0].series[0][1]"), 170);
	assert_int_equal(jint(b, "$.top_hosts[0].series[0][2]"), 45);
	free(b);

	/* raw does not reach back to 09:50: minutes */
	b = get_json("/api/v1/series?public_ip=" GW4
		     "&from=2026-12-01T09:50:00Z&to=2026-12-01T10:01:00Z");
	assert_jtext(b, "$.resolution", "minute");
	assert_int_equal(jint(b, "$.resolution_seconds"), 60);
	assert_int_equal(jlen(b, "$.points"), 11);
	/* the minute 10:00 holds the gap */
	assert_int_equal(jint(b, "$.coverage.complete"), 0);
	assert_int_equal(jlen(b, "$.coverage.gaps"), 1);
	free(b);

	/* minutes do not reach back to 08:00: hours */
	b = get_json("/api/v1/series?public_ip=" GW4
		     "&from=2026-12-01T08:00:00Z&to=2026-12-01T10:00:00Z");
	assert_jtext(b, "$.resolution", "hour");
	assert_int_equal(jlen(b, "$.points"), 2);
	assert_int_equal(jint(b, "$.points[1].ports_in_use"), 301);
	free(b);

	/* 1200 raw periods are too many: their 100 minutes */
	b = get_json("/api/v1/series?public_ip=" GW4
		     "&from=2026-11-29T10:00:00Z&to=2026-11-29T11:40:00Z");
	assert_jtext(b, "$.resolution", "minute");
	assert_int_equal(jlen(b, "$.points"), 100);
	free(b);
	/* unless asked for */
	b = get_json("/api/v1/series?public_ip=" GW4
		     "&from=2026-11-29T10:00:00Z&to=2026-11-29T11:40:00Z"
		     "&resolution=raw&limit=1");
	assert_jtext(b, "$.resolution", "raw");
	assert_int_equal(jlen(b, "$.points"), 1200);
	assert_int_equal(jlen(b, "$.top_hosts"), 1);
	free(b);

	/* points as CSV, flattened */
	http_get("/api/v1/series?public_ip=" GW4 "&from=" T0S
		 "&to=1796119320&format=csv", &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(resp_header(&r, "Content-Type", v, sizeof(v)), 0);
	assert_string_equal(v, "text/csv; charset=utf-8");
	assert_int_equal(csv_lines(r.body), 23);
	assert_true(strncmp(r.body,
			    "as_of,coverage_complete,ts,end,span_seconds,"
			    "exact,ports_in_use,ports_peak,mappings,"
			    "mappings_peak,hosts,destinations,new_mappings,"
			    "new_per_second,worst.ip,worst.port,worst.zone,"
			    "worst.peak,worst.capacity,states.none,", 166) == 0);
	assert_non_null(strstr(r.body, "\r\n2026-12-01T10:02:00.000Z,false,"
				       "2026-12-01T10:00:30.000Z,"
				       "2026-12-01T10:00:35.000Z,5.0,false,"
				       "106,206,156,306,2,1,60,12.0,"
				       "198.51.100.7,443,0,256,64512,0,"));
	resp_free(&r);

	/* nothing of that gateway at that tier there */
	expect_error("/api/v1/series?public_ip=" GW4 "&from=" T0S
		     "&to=1796119320&resolution=hour", 404,
		     "no history for 203.0.113.1 tcp from "
		     "2026-12-01T10:00:00.000Z to 2026-12-01T10:02:00.000Z");
	expect_error("/api/v1/series?public_ip=" GW4 "&proto=udp&from=" T0S
		     "&to=1796119320", 404,
		     "no history for 203.0.113.1 udp from "
		     "2026-12-01T10:00:00.000Z to 2026-12-01T10:02:00.000Z");
	expect_error("/api/v1/series?from=" T0S, 400, "public_ip is required");
	expect_error("/api/v1/series?public_ip=nope", 400,
		     "invalid IP address 'nope' in public_ip");
	expect_error("/api/v1/series?public_ip=" GW4 "&resolution=second",
		     400, "resolution must be raw, minute or hour, not "
			  "'second'");
	expect_error("/api/v1/series?public_ip=" GW4 "&from=" T0S "&to=" T0S,
		     400, "from must be before to");
	expect_error("/api/v1/series?public_ip=" GW4 "&bogus=1", 400,
		     "unknown parameter 'bogus' (this path takes public_ip, "
		     "proto, limit, from, to, resolution, format)");
	expect_error("/api/v1/series?public_ip=" GW4 "&proto=tcp&proto=udp",
		     400, "parameter 'proto' given twice (this path takes "
			  "public_ip, proto, limit, from, to, resolution, "
			  "format)");
}

/* The diagnosis: the busiest buckets with the TIME_WAIT arithmetic from
 * a fresh minute of history, and which remedies fit (store/diagnosis.c). */
static void test_diagnosis(void **state)
{
	int64_t minute = ns_now_ms() / 60000 * 60000 - 60000;
	char sql[512], *b;

	/* 24,000 new connections toward 198.51.100.7:443 in the last
	 * complete minute: 400/s x 120 s of TIME_WAIT = 48,000 ports */
	snprintf(sql, sizeof(sql),
		 "INSERT INTO hist_dest (public_ip, proto, tier, ts_ms, zone, "
		 "ip, port, span_ms, family, ip_bin, capacity, mappings, "
		 "mappings_peak, new_mappings) VALUES ('" GW4 "', 'tcp', 1, "
		 "%lld, 0, '198.51.100.7', 443, 60000, 4, x'c6336407', 64512, "
		 "1100, 1200, 24000)", (long long)minute);
	assert_int_equal(store_test_exec(T.rw, sql), 0);

	b = get_json("/api/v1/gateways/" GW4 "/diagnosis?proto=tcp");
	assert_jtext(b, "$.public_ip", GW4);
	assert_int_equal(jint(b, "$.gateway.time_wait"), 1097);
	assert_jtext(b, "$.gateway.time_wait_share", "0.73");
	assert_int_equal(jint(b, "$.port_range.this_host.ports"), 28232);
	assert_int_equal(jint(b, "$.port_range.os_defaults[1].lo"), 49152);
	assert_int_equal(jint(b, "$.time_wait_timeout.seconds"), 120);
	assert_int_equal(jlen(b, "$.buckets"), 4);
	assert_jtext(b, "$.buckets[0].destination.ip", "198.51.100.7");
	assert_jtext(b, "$.buckets[0].new_per_second", "400.0");
	assert_int_equal(jint(b, "$.buckets[0].time_wait_ports"), 48000);
	assert_jtext(b, "$.buckets[0].time_wait_fill", "0.74");
	assert_jtext(b, "$.buckets[0].verdict", "warn");
	/* no rate for the others: busiest next by their own fill */
	assert_jtext(b, "$.buckets[1].destination.ip", "198.51.100.9");
	assert_null(jtext(b, "$.buckets[1].new_per_second"));
	/* the remedies in their order, and which fit */
	assert_int_equal(jlen(b, "$.remedies"), 5);
	assert_jtext(b, "$.remedies[0].id", "pool");
	assert_int_equal(jint(b, "$.remedies[0].fits"), 1);
	assert_jtext(b, "$.remedies[1].id", "spread");
	assert_int_equal(jint(b, "$.remedies[1].fits"), 1);
	assert_jtext(b, "$.remedies[1].because",
		     "198.51.100.7:443 needs 2 public IPs to stay under 70%");
	assert_int_equal(jint(b, "$.remedies[2].fits"), 0); /* 1024-65535 */
	assert_int_equal(jint(b, "$.remedies[3].fits"), 0); /* no local */
	assert_jtext(b, "$.remedies[4].id", "short_time_wait");
	assert_int_equal(jint(b, "$.remedies[4].fits"), 1);
	{
		char *w = jtext(b, "$.warnings[0]");

		assert_non_null(strstr(w, "tcp_tw_recycle"));
		free(w);
	}
	free(b);

	/* UDP: no TIME_WAIT arithmetic */
	b = get_json("/api/v1/gateways/" GW4 "/diagnosis?proto=udp");
	assert_null(jtext(b, "$.buckets[0].time_wait_ports"));
	assert_int_equal(jint(b, "$.remedies[0].fits"), 0);
	free(b);
	expect_error("/api/v1/gateways/198.51.100.99/diagnosis", 404,
		     "no live mappings for 198.51.100.99 tcp");

	snprintf(sql, sizeof(sql), "DELETE FROM hist_dest WHERE ts_ms = %lld",
		 (long long)minute);
	assert_int_equal(store_test_exec(T.rw, sql), 0);
}

static void test_host_history(void **state)
{
	char *b;

	b = get_json("/api/v1/hosts/198.18.0.1?from=" T0S "&to=1796119320");
	assert_jtext(b, "$.ip", "198.18.0.1");
	assert_jtext(b, "$.resolution", "minute");
	assert_int_equal(jint(b, "$.coverage.complete"), 0);
	assert_int_equal(jint(b, "$.coverage.not_exact_periods"), 1);
	assert_int_equal(jlen(b, "$.gateways"), 1);
	assert_jtext(b, "$.gateways[0].public_ip", GW4);
	assert_jtext(b, "$.gateways[0].proto", "tcp");
	assert_int_equal(jint(b, "$.gateways[0].exact"), 0);
	assert_int_equal(jint(b, "$.gateways[0].mappings_peak"), 170);
	assert_int_equal(jint(b, "$.gateways[0].new_mappings"), 120);
	assert_int_equal(jint(b, "$.gateways[0].periods"), 1);
	assert_jtext(b, "$.gateways[0].first_seen", "2026-12-01T10:00:00.000Z");
	assert_jtext(b, "$.gateways[0].last_seen", "2026-12-01T10:01:00.000Z");
	free(b);
	/* an earlier range: exact minutes */
	b = get_json("/api/v1/hosts/198.18.0.1?from=2026-12-01T09:50:00Z"
		     "&to=2026-12-01T09:55:00Z");
	assert_jtext(b, "$.resolution", "minute");
	assert_int_equal(jint(b, "$.coverage.complete"), 1);
	assert_int_equal(jint(b, "$.gateways[0].periods"), 5);
	assert_int_equal(jint(b, "$.gateways[0].exact"), 1);
	assert_int_equal(jint(b, "$.gateways[0].new_mappings"), 560);
	/* and now, from the live tables */
	assert_int_equal(jlen(b, "$.live.gateways"), 2);
	assert_jtext(b, "$.live.gateways[0].public_ip", GW4);
	assert_jtext(b, "$.live.gateways[0].proto", "tcp");
	assert_int_equal(jint(b, "$.live.gateways[0].mappings"), 280);
	assert_jtext(b, "$.live.gateways[1].proto", "udp");
	/* the fixture has no mapping log: no destinations, and said so */
	assert_int_equal(jlen(b, "$.destinations"), 0);
	assert_int_equal(jint(b, "$.destinations_coverage.complete"), 0);
	assert_jtext(b, "$.destinations_coverage.reasons[0]",
		     "natscope was not logging mappings in this range");
	free(b);

	/* a host history does not hold, over the hour before now */
	b = get_json("/api/v1/hosts/2001:db8:1::2");
	assert_int_equal(jlen(b, "$.gateways"), 0);
	assert_int_equal(jlen(b, "$.live.gateways"), 1);
	free(b);
	expect_error("/api/v1/hosts/nope", 400, "invalid IP address 'nope'");
	expect_error("/api/v1/hosts/198.18.0.1?at=" T0S, 400,
		     "unknown parameter 'at' (this path takes from, to, "
		     "format)");
}

static void test_incidents(void **state)
{
	struct resp r;
	char *b;

	b = get_json("/api/v1/incidents?from=" T0S "&to=1796119320");
	assert_int_equal(jint(b, "$.total"), 2);
	assert_int_equal(jlen(b, "$.incidents"), 2);
	assert_int_equal(jint(b, "$.coverage.complete"), 0);
	/* newest first; the bucket is still open */
	assert_int_equal(jint(b, "$.incidents[0].id"), 2);
	assert_jtext(b, "$.incidents[0].kind", "bucket");
	assert_int_equal(jint(b, "$.incidents[0].open"), 1);
	assert_null(jtext(b, "$.incidents[0].closed"));
	assert_jtext(b, "$.incidents[0].destination.ip", "198.51.100.7");
	assert_int_equal(jint(b, "$.incidents[0].destination.port"), 443);
	assert_jtext(b, "$.incidents[0].peak_ratio", "0.713");
	assert_int_equal(jint(b, "$.incidents[1].id"), 1);
	assert_jtext(b, "$.incidents[1].severity", "critical");
	assert_jtext(b, "$.incidents[1].opened", "2026-12-01T10:00:20.000Z");
	assert_jtext(b, "$.incidents[1].closed", "2026-12-01T10:00:50.000Z");
	assert_jtext(b, "$.incidents[1].duration_seconds", "30.0");
	assert_int_equal(jint(b, "$.incidents[1].insert_failed"), 3);
	assert_null(jtext(b, "$.incidents[1].destination"));
	free(b);

	b = get_json("/api/v1/incidents?from=2026-11-28&to=2026-11-29&limit=5");
	assert_int_equal(jint(b, "$.total"), 1);
	assert_jtext(b, "$.incidents[0].kind", "kernel");
	assert_int_equal(jint(b, "$.incidents[0].drop"), 9);
	assert_int_equal(jint(b, "$.coverage.complete"), 1);
	free(b);

	/* details embedded as JSON (a text that is not JSON stays text) */
	b = get_json("/api/v1/incidents/1");
	assert_jtext(b, "$.opened_detail.top[0].ip", "198.18.0.1");
	assert_jtext(b, "$.opened_detail.top[0].rate", "12.5");
	assert_int_equal(jint(b, "$.peak_detail.states.time_wait"), 50000);
	assert_int_equal(jint(b, "$.coverage.complete"), 0);
	free(b);
	b = get_json("/api/v1/incidents/2");
	assert_jtext(b, "$.peak_detail", "not json");
	free(b);

	http_get("/api/v1/incidents?from=" T0S "&to=1796119320&format=csv",
		 &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(csv_lines(r.body), 3);
	assert_true(strncmp(r.body, "coverage_complete,id,kind,", 26) == 0);
	resp_free(&r);

	expect_error("/api/v1/incidents/99", 404, "no incident 99");
	expect_error("/api/v1/incidents/x1", 400, "invalid incident id 'x1'");
	expect_error("/api/v1/incidents/1?format=csv", 400,
		     "unknown parameter 'format' (this path takes none)");
	expect_error("/api/v1/incidents?limit=0", 400,
		     "limit must be an integer from 1 to 10000");
}

static void test_lookup(void **state)
{
	struct resp r;

	/* the fixture has no mapping log: nobody, uncertain (store/maplog.c
	 * and test_maplog check real holders) */
	http_get("/api/v1/lookup?public_ip=" GW4 "&port=40123&at=" T0S, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"holders\":[]"));
	assert_non_null(strstr(r.body, "\"uncertain\":true"));
	resp_free(&r);
	expect_error("/api/v1/lookup?public_ip=" GW4, 400, "port is required");
	expect_error("/api/v1/lookup?public_ip=" GW4 "&port=65536", 400,
		     "port must be an integer from 0 to 65535");
}

static void test_ports(void **state)
{
	struct resp r;

	/* the fixture's run logged no mapping: an empty map, live, as of
	 * the run's start (test_maplog checks real runs) */
	http_get("/api/v1/gateways/" GW4 "/ports", &r);
	assert_json_reply(&r, 200);
	assert_jtext(r.body, "$.public_ip", GW4);
	assert_jtext(r.body, "$.proto", "tcp");
	assert_int_equal(jlen(r.body, "$.runs"), 0);
	assert_int_equal(jlen(r.body, "$.hosts"), 0);
	assert_non_null(strstr(r.body, "\"live\":true"));
	resp_free(&r);
	http_get("/api/v1/gateways/" GW4 "/ports?proto=udp&at=" T0S, &r);
	assert_json_reply(&r, 200);
	assert_non_null(strstr(r.body, "\"live\":false"));
	assert_jtext(r.body, "$.at", "2026-12-01T10:00:00.000Z");
	resp_free(&r);
	http_get("/api/v1/gateways/" GW4 "/ports?format=csv", &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	expect_error("/api/v1/gateways/" GW4 "/ports?port=1", 400,
		     "unknown parameter 'port' (this path takes proto, at, "
		     "format)");
	expect_error("/api/v1/gateways/203.0.113/ports", 400,
		     "invalid IP address '203.0.113'");
	expect_error("/api/v1/gateways/" GW4 "/ports?proto=gre", 400,
		     "unknown proto 'gre' (expected one of tcp, udp, udplite, "
		     "sctp, dccp, icmp, icmpv6)");
}

static void test_params(void **state)
{
	struct resp r;

	expect_error("/api/v1/gateways?bogus=1", 400,
		     "unknown parameter 'bogus' (this path takes at, from, to, "
		     "format)");
	expect_error("/api/v1/status?format=csv", 400,
		     "unknown parameter 'format' (this path takes none)");
	expect_error("/api/v1/gateways?format=xml", 400,
		     "format must be json or csv, not 'xml'");
	expect_error("/api/v1/gateways/" GW4 "/hosts?at=", 400,
		     "at must be a time, RFC 3339 (2026-12-02T14:02:00Z) or "
		     "unix seconds, not ''");

	/* live tables as CSV: the coverage of the snapshot in every row */
	http_get("/api/v1/gateways?format=csv", &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(csv_lines(r.body), 5);
	assert_true(strncmp(r.body,
			    "as_of,coverage_complete,public_ip,proto,"
			    "ports_in_use,port_space,mappings,hosts,"
			    "destinations,worst_destination.ip,"
			    "worst_destination.port,", 128) == 0);
	assert_non_null(strstr(r.body, ",true,192.0.2.1,icmp,3,65536,3,1,1,"
				       "198.51.100.7,0,0,3,65536,,,,,,,,,,\r\n"));
	resp_free(&r);
	http_full("HEAD", "/api/v1/gateways?format=csv", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
}

static void test_ipv6_canonical(void **state)
{
	struct resp r;

	/* any inet_pton form, answered in RFC 5952 form */
	http_get("/api/v1/gateways/2001:DB8:0:0:0:0:0:1/hosts", &r);
	assert_json_reply(&r, 200);
	assert_jtext(r.body, "$.public_ip", GW6);
	assert_int_equal(jint(r.body, "$.total"), 1);
	assert_jtext(r.body, "$.hosts[0].ip", "2001:db8:1::2");
	assert_int_equal(jint(r.body, "$.hosts[0].mappings"), 22);
	resp_free(&r);

	/* percent-encoded colons */
	http_get("/api/v1/gateways/2001%3Adb8%3A%3A1/destinations", &r);
	assert_json_reply(&r, 200);
	assert_jtext(r.body, "$.public_ip", GW6);
	assert_jtext(r.body, "$.destinations[0].ip", "2001:db8:2::7");
	assert_int_equal(jint(r.body, "$.destinations[0].port"), 443);
	resp_free(&r);

	expect_error("/api/v1/gateways/2001:DB8:0::99/hosts", 404,
		     "no live mappings for 2001:db8::99 tcp");
	expect_error("/api/v1/gateways/" GW6 "/hosts?proto=udp", 404,
		     "no live mappings for 2001:db8::1 udp");
}

static void test_bad_requests(void **state)
{
	static const char *limits[] = { "0", "10001", "abc", "5x", "", "-1",
					"%2B5", "5%00" };
	char path[128];

	expect_error("/api/v1/gateways/203.0.113.256/hosts", 400,
		     "invalid IP address '203.0.113.256'");
	expect_error("/api/v1/gateways/nope/destinations", 400,
		     "invalid IP address 'nope'");
	expect_error("/api/v1/gateways/%22%5C%0A/hosts", 400,
		     "invalid IP address '\"\\\n'");
	expect_error("/api/v1/gateways/" GW4 "/hosts?proto=foo", 400,
		     "unknown proto 'foo' (expected one of tcp, udp, "
		     "udplite, sctp, dccp, icmp, icmpv6)");
	expect_error("/api/v1/gateways/" GW4 "/hosts?proto=TCP", 400,
		     "unknown proto 'TCP' (expected one of tcp, udp, "
		     "udplite, sctp, dccp, icmp, icmpv6)");
	expect_error("/api/v1/gateways/" GW4 "/destinations?proto=", 400,
		     "unknown proto '' (expected one of tcp, udp, "
		     "udplite, sctp, dccp, icmp, icmpv6)");
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		snprintf(path, sizeof(path),
			 "/api/v1/gateways/" GW4 "/hosts?limit=%s", limits[i]);
		expect_error(path, 400,
			     "limit must be an integer from 1 to 10000");
		snprintf(path, sizeof(path),
			 "/api/v1/gateways/" GW4 "/destinations?limit=%s",
			 limits[i]);
		expect_error(path, 400,
			     "limit must be an integer from 1 to 10000");
	}
	/* the IP is checked first, then proto, then limit */
	expect_error("/api/v1/gateways/x/hosts?proto=foo&limit=0", 400,
		     "invalid IP address 'x'");
	expect_error("/api/v1/gateways/" GW4 "/hosts?proto=foo&limit=0", 400,
		     "unknown proto 'foo' (expected one of tcp, udp, "
		     "udplite, sctp, dccp, icmp, icmpv6)");
}

static void test_long_path(void **state)
{
	char path[700];
	struct resp r;

	/* 600 bytes */
	memset(path, 'a', 600);
	memcpy(path, "/api/v1/", 8);
	path[600] = '\0';
	expect_error(path, 400, "path longer than 512 bytes");
	/* 600 bytes on a route's shape */
	snprintf(path, sizeof(path), "/api/v1/gateways/%0580d/hosts", 1);
	assert_true(strlen(path) > 512);
	expect_error(path, 400, "path longer than 512 bytes");
	/* 512 is still a path: unknown, so 404 */
	memset(path, 'b', 512);
	path[0] = '/';
	path[512] = '\0';
	http_get(path, &r);
	assert_json_reply(&r, 404);
	resp_free(&r);
}

static void test_not_found(void **state)
{
	static const char *paths[] = {
		"/nope", "/api", "/api/v1", "/api/v1/gateways/", "/ui",
		"/ui/", "/ui/dash.js/x", "/ui//dash.js",
		"/api/v1/gateways/" GW4, "/api/v1/gateways/" GW4 "/",
		"/api/v1/gateways/" GW4 "/hosts/", "/api/v1/gateways/" GW4
		"/ports/", "/api/v1/gateways//hosts", "/api/v1/status/",
		"/metrics/x", "/healthz/", "/API/V1/GATEWAYS",
	};
	struct resp r;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		http_get(paths[i], &r);
		assert_json_reply(&r, 404);
		assert_non_null(strstr(r.body, "no such path"));
		resp_free(&r);
	}
	expect_error("/api/v1/gateways/203.0.113.99/hosts", 404,
		     "no live mappings for 203.0.113.99 tcp");
	expect_error("/api/v1/gateways/" GW4 "/destinations?proto=sctp", 404,
		     "no live mappings for 203.0.113.1 sctp");
	/* 203.0.113.1 written another way */
	expect_error("/api/v1/gateways/::ffff:203.0.113.1/hosts", 404,
		     "no live mappings for ::ffff:203.0.113.1 tcp");
}

static void test_method_not_allowed(void **state)
{
	static const char *methods[] = { "POST", "PUT", "DELETE", "PATCH",
					 "OPTIONS" };
	char v[64];
	struct resp r;

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		http_full(methods[i], "/api/v1/gateways",
			  "Content-Length: 5\r\n", "hello", &r);
		assert_json_reply(&r, 405);
		assert_int_equal(resp_header(&r, "Allow", v, sizeof(v)), 0);
		assert_string_equal(v, "GET, HEAD");
		assert_non_null(strstr(r.body, "not allowed"));
		resp_free(&r);
	}
	http_full("POST", "/api/v1/gateways/" GW4 "/hosts", NULL, NULL, &r);
	assert_json_reply(&r, 405);
	resp_free(&r);
	http_full("POST", "/nope", NULL, NULL, &r);
	assert_json_reply(&r, 404);
	resp_free(&r);
}

/* The login cookie (auth.c): its MAC equals an independent HMAC-SHA256
 * (Python's hmac module), and it is valid exactly until its expiry, for
 * its token only. */
static void test_session(void **state)
{
	const long long exp = 1796270000;
	char c[WEB_SESSION_MAX], bad[WEB_SESSION_MAX + 2];
	static const char *const junk[] = {
		"", ".", "1796270000", "1796270000.", "x1796270000.00",
		"1796270000.f9f94b4a", "-1.f9f94b4a",
	};

	(void)state;
	assert_int_equal(web_session_make("login-token", exp, c), 0);
	assert_string_equal(c, "1796270000.f9f94b4a32b7cb6167e98906d6be3ed3"
			       "00d74cdaa457f6f96ebbc1bcbc67e05e");
	assert_true(web_session_valid(c, "login-token", exp - 1));
	assert_true(web_session_valid(c, "login-token",
				      exp - WEB_SESSION_S));
	assert_false(web_session_valid(c, "login-token", exp));
	assert_false(web_session_valid(c, "login-token", exp + 3600));
	/* made with a longer life than /login gives: refused */
	assert_false(web_session_valid(c, "login-token",
				       exp - WEB_SESSION_S - 61));
	assert_false(web_session_valid(c, "login-token2", exp - 1));
	assert_false(web_session_valid(c, NULL, exp - 1));
	assert_false(web_session_valid(NULL, "login-token", exp - 1));
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		assert_false(web_session_valid(junk[i], "login-token", 0));
	snprintf(bad, sizeof(bad), "%s", c);
	bad[strlen(bad) - 1] = 'f';
	assert_false(web_session_valid(bad, "login-token", exp - 1));
	snprintf(bad, sizeof(bad), "%sa", c);
	assert_false(web_session_valid(bad, "login-token", exp - 1));
}

static void test_head(void **state)
{
	static const char req[] = "HEAD /api/v1/gateways HTTP/1.1\r\n"
				  "Host: 127.0.0.1\r\n"
				  "Connection: close\r\n\r\n";
	char buf[8192], v[64];
	size_t have = 0;
	struct resp r, g;
	ssize_t n;
	char *end;
	int fd;

	http_get("/api/v1/gateways", &g);
	assert_int_equal(g.status, 200);

	fd = connect_web();
	send_all(fd, req, sizeof(req) - 1);
	while ((n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0)) > 0)
		have += (size_t)n;
	close(fd);
	buf[have] = '\0';
	end = strstr(buf, "\r\n\r\n");
	assert_non_null(end);
	assert_int_equal(have, (size_t)(end + 4 - buf)); /* headers only */

	memset(&r, 0, sizeof(r));
	memcpy(r.head, buf, (size_t)(end + 2 - buf));
	assert_int_equal(sscanf(r.head, "HTTP/1.1 %d", &r.status), 1);
	assert_int_equal(r.status, 200);
	assert_int_equal(resp_header(&r, "Content-Type", v, sizeof(v)), 0);
	assert_string_equal(v, "application/json");
	assert_int_equal(resp_header(&r, "Content-Length", v, sizeof(v)), 0);
	assert_true(strtoul(v, NULL, 10) > 0);
	resp_free(&g);

	/* HEAD of an error is headers only too */
	http_full("HEAD", "/nope", NULL, NULL, &r);
	assert_int_equal(r.status, 404);
	assert_int_equal(r.body_len, 0);
	resp_free(&r);
}

static void test_keepalive(void **state)
{
	static const char *paths[] = {
		"/api/v1/gateways", "/api/v1/gateways/x/hosts", "/healthz",
		"/metrics", "/api/v1/gateways/" GW4 "/hosts?limit=2",
	};
	static const int codes[] = { 200, 400, 200, 200, 200 };
	char req[256], v[64];
	struct resp r;
	int fd;

	write_status(STORE_STATE_RUNNING, ns_now_ms());
	fd = connect_web();
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
			int n = snprintf(req, sizeof(req),
					 "GET %s HTTP/1.1\r\n"
					 "Host: 127.0.0.1\r\n\r\n",
					 paths[i]);

			send_all(fd, req, (size_t)n);
			read_response(fd, 0, &r);
			if (r.status != codes[i])
				fail_msg("%s: %d", paths[i], r.status);
			if (resp_header(&r, "Connection", v, sizeof(v)) == 0)
				if (strcmp(v, "close") == 0)
					fail_msg("%s: closed", paths[i]);
			resp_free(&r);
		}
	}
	close(fd);
}

static void test_status(void **state)
{
	struct resp r;

	write_status(STORE_STATE_RUNNING, ns_now_ms());
	http_get("/api/v1/status", &r);
	assert_json_reply(&r, 200);
	assert_non_null(strstr(r.body, "\"generated_at\""));
	assert_non_null(strstr(r.body, "\"as_of\""));
	assert_non_null(strstr(r.body, "1234")); /* events new */
	resp_free(&r);
}

/* GET /healthz after writing a status; expect code and "status". */
/* A status row whose last write is age_ms old (as_of: as_of_age_ms). */
static void expect_health_at(uint8_t state, int64_t age_ms,
			     int64_t as_of_age_ms, int code,
			     const char *status, const char *state_name)
{
	struct resp r;
	char sql[128];

	write_status(state, ns_now_ms() - as_of_age_ms);
	snprintf(sql, sizeof(sql), "UPDATE status SET writes_last_ms = %lld",
		 (long long)(ns_now_ms() - age_ms));
	assert_int_equal(store_test_exec(T.rw, sql), 0);
	http_get("/healthz", &r);
	assert_json_reply(&r, code);
	assert_jtext(r.body, "$.status", status);
	assert_jtext(r.body, "$.state", state_name);
	resp_free(&r);
}

static void expect_health(uint8_t state, int64_t age_ms, int code,
			  const char *status, const char *state_name)
{
	expect_health_at(state, age_ms, age_ms, code, status, state_name);
}

static void test_healthz(void **state)
{
	/* following by dumps, the figures may be older than the last write:
	 * alive is the write (interval 5 s: at most 11 s old) */
	expect_health_at(STORE_STATE_RUNNING, 1000, 60000, 200, "ok", "running");
	expect_health_at(STORE_STATE_RUNNING, 12500, 0, 503, "stale", "running");
	/* interval 5 s: fresh while the last write is at most 11 s old */
	expect_health(STORE_STATE_RUNNING, 0, 200, "ok", "running");
	expect_health(STORE_STATE_RUNNING, 9500, 200, "ok", "running");
	expect_health(STORE_STATE_RESYNCING, 1000, 200, "ok", "resyncing");
	expect_health(STORE_STATE_RUNNING, 12500, 503, "stale", "running");
	expect_health(STORE_STATE_RUNNING, 3600000, 503, "stale", "running");
	expect_health(STORE_STATE_RESYNCING, 60000, 503, "stale",
		      "resyncing");
	expect_health(STORE_STATE_STOPPED, 0, 503, "stopped", "stopped");
	expect_health(STORE_STATE_STARTING, 0, 503, "starting", "starting");
	/* writes fail: unhealthy however fresh the last snapshot */
	expect_health(STORE_STATE_DB_ERROR, 0, 503, "db-error", "db-error");
	expect_health(STORE_STATE_RUNNING, 0, 200, "ok", "running");
}

/* Counts lines of text starting with prefix. */
static int count_lines(const char *text, const char *prefix)
{
	size_t pl = strlen(prefix);
	int n = 0;

	for (const char *p = text; p && *p;) {
		if (strncmp(p, prefix, pl) == 0)
			n++;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return n;
}

static void assert_line(const char *text, const char *line)
{
	char want[512];

	snprintf(want, sizeof(want), "\n%s\n", line);
	if (!strstr(text, want))
		fail_msg("line '%s' missing from:\n%s", line, text);
}

/* Every sample's family is declared by # HELP and # TYPE before it (a
 * histogram's samples are its _bucket, _count and _sum), a family's
 * samples are contiguous and declared once, counters end in _total, and
 * no label is one Prometheus sets itself (instance, job) or one that
 * reads as the scrape target (host). */
static void assert_exposition(const char *text)
{
	char seen[4096] = " ", name[128], last[128] = "", key[140];
	char type[16] = "", help[128] = "";

	for (const char *p = text; *p;) {
		const char *eol = strchr(p, '\n');
		size_t n;

		assert_non_null(eol); /* every line ends with \n */
		if (strncmp(p, "# HELP ", 7) == 0) {
			n = strcspn(p + 7, " ");
			snprintf(help, sizeof(help), "%.*s", (int)n, p + 7);
		} else if (strncmp(p, "# TYPE ", 7) == 0) {
			n = strcspn(p + 7, " ");
			snprintf(name, sizeof(name), "%.*s", (int)n, p + 7);
			snprintf(type, sizeof(type), "%.*s",
				 (int)(eol - (p + 8 + n)), p + 8 + n);
			if (strcmp(help, name) != 0)
				fail_msg("%s has no # HELP", name);
			snprintf(key, sizeof(key), " %s ", name);
			if (strstr(seen, key))
				fail_msg("%s declared twice", name);
			if (!strcmp(type, "counter") &&
			    (n < 6 || strcmp(name + n - 6, "_total") != 0))
				fail_msg("counter %s lacks _total", name);
			assert_true(strlen(seen) + strlen(key) < sizeof(seen));
			strcat(seen, name);
			strcat(seen, " ");
			snprintf(last, sizeof(last), "%s", name);
		} else if (*p != '#') {
			const char *brace = p + strcspn(p, "{ ");
			size_t ln = strlen(last);

			n = (size_t)(brace - p);
			snprintf(name, sizeof(name), "%.*s", (int)n, p);
			if (strcmp(name, last) != 0 &&
			    !(!strcmp(type, "histogram") &&
			      !strncmp(name, last, ln) &&
			      (!strcmp(name + ln, "_bucket") ||
			       !strcmp(name + ln, "_count") ||
			       !strcmp(name + ln, "_sum"))))
				fail_msg("sample of %s outside its family "
					 "(%s)", name, last);
			if (*brace == '{') {
				const char *end = strchr(brace, '}');

				assert_true(end && end < eol);
				for (const char *q = brace; q < end; q++) {
					if (*q != '{' && *q != ',')
						continue;
					if (!strncmp(q + 1, "instance=", 9) ||
					    !strncmp(q + 1, "job=", 4) ||
					    !strncmp(q + 1, "host=", 5))
						fail_msg("label of Prometheus's "
							 "own in '%.*s'",
							 (int)(eol - p), p);
				}
			}
		}
		p = eol + 1;
	}
}

/* The value of the sample line that starts with prefix (name and
 * labels), as a double; fails when there is none. */
static double sample_value(const char *text, const char *prefix)
{
	char want[256];
	const char *p;

	snprintf(want, sizeof(want), "\n%s ", prefix);
	p = strstr(text, want);
	if (!p)
		fail_msg("no sample '%s'", prefix);
	return strtod(p + strlen(want), NULL);
}

static void test_metrics(void **state)
{
	struct resp r;
	char v[128];
	int64_t as_of = ns_now_ms();

	write_status(STORE_STATE_RUNNING, as_of);
	http_get("/metrics", &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(resp_header(&r, "Content-Type", v, sizeof(v)), 0);
	assert_non_null(strstr(v, "text/plain; version=0.0.4"));
	assert_int_equal(resp_header(&r, "Cache-Control", v, sizeof(v)), 0);
	assert_string_equal(v, "no-store");
	assert_exposition(r.body);
	assert_true(strncmp(r.body, "# HELP ", 7) == 0);

#define GL(ip, proto) "{public_ip=\"" ip "\",proto=\"" proto "\"}"
	assert_line(r.body, "# TYPE natscope_gateway_used_ports gauge");
	assert_line(r.body, "natscope_gateway_used_ports" GL(GW4, "tcp")
			    " 1200");
	assert_line(r.body, "natscope_gateway_used_ports" GL(GW6, "tcp")
			    " 20");
	/* ports 1-65535; ICMP echo ids 0-65535 */
	assert_line(r.body, "natscope_gateway_capacity_ports" GL(GW4, "udp")
			    " 65535");
	assert_line(r.body, "natscope_gateway_capacity_ports" GL(GW4, "tcp")
			    " 65535");
	assert_line(r.body, "natscope_gateway_capacity_ports" GL(GW4B, "icmp")
			    " 65536");
	assert_line(r.body, "natscope_gateway_mappings" GL(GW4, "tcp")
			    " 1500");
	assert_line(r.body, "natscope_gateway_hosts" GL(GW4, "tcp") " 13");
	assert_line(r.body, "natscope_gateway_destinations" GL(GW4, "tcp")
			    " 4");
	assert_line(r.body, "natscope_gateway_worst_destination_mappings"
			    GL(GW4, "tcp") " 1100");
	assert_line(r.body, "natscope_gateway_worst_destination_capacity_ports"
			    GL(GW4B, "icmp") " 65536");
	/* 1100 / 64512 */
	assert_line(r.body,
		    "natscope_gateway_worst_destination_utilization_ratio"
		    GL(GW4, "tcp") " 0.017051091269841268");
	assert_line(r.body, "natscope_gateway_tcp_state_mappings{public_ip=\""
			    GW4 "\",proto=\"tcp\",state=\"time_wait\"} 1097");
	assert_line(r.body, "natscope_gateway_tcp_state_mappings{public_ip=\""
			    GW6 "\",proto=\"tcp\",state=\"established\"} 22");
	assert_int_equal(count_lines(r.body,
				     "natscope_gateway_tcp_state_mappings{"),
			 2 * NS_TCP_STATES); /* TCP gateways only */
	/* the old names are gone */
	assert_null(strstr(r.body, "natscope_gateway_ports_in_use"));
	assert_null(strstr(r.body, "natscope_gateway_port_space"));
	assert_null(strstr(r.body, "natscope_sysctl{"));

	/* top 10 hosts per gateway, no more; labelled internal_ip */
	assert_int_equal(count_lines(r.body, "natscope_host_mappings{"
					     "public_ip=\"" GW4
					     "\",proto=\"tcp\""),
			 10);
	assert_int_equal(count_lines(r.body, "natscope_host_used_ports{"
					     "public_ip=\"" GW4
					     "\",proto=\"tcp\""),
			 10);
	assert_line(r.body, "natscope_host_mappings{public_ip=\"" GW4
			    "\",proto=\"tcp\",internal_ip=\"198.18.0.1\","
			    "kind=\"nat\"} 280");
	assert_line(r.body, "natscope_host_used_ports{public_ip=\"" GW4
			    "\",proto=\"tcp\",internal_ip=\"198.18.0.10\","
			    "kind=\"nat\"} 50");
	assert_null(strstr(r.body, "internal_ip=\"198.18.0.11\""));
	assert_null(strstr(r.body, "internal_ip=\"198.18.0.12\""));
	assert_null(strstr(r.body, "internal_ip=\"" GW4 "\"")); /* 11th */
	assert_line(r.body, "natscope_host_mappings{public_ip=\"" GW6
			    "\",proto=\"tcp\",internal_ip=\"2001:db8:1::2\","
			    "kind=\"nat\"} 22");
	assert_int_equal(count_lines(r.body, "natscope_host_mappings{"), 13);
	assert_null(strstr(r.body, "host=\""));

	/* status */
	assert_line(r.body, "# TYPE natscope_events_total counter");
	assert_line(r.body, "natscope_events_total{type=\"new\"} 1234");
	assert_line(r.body, "natscope_events_total{type=\"update\"} 567");
	assert_line(r.body, "natscope_events_total{type=\"destroy\"} 89");
	assert_line(r.body, "natscope_events_total{type=\"dumped\"} 1000");
	assert_line(r.body, "natscope_events_lost_total 17");
	assert_line(r.body, "natscope_enobufs_total 4");
	assert_line(r.body, "natscope_unknown_destroy_total 3");
	assert_line(r.body, "natscope_malformed_messages_total 2");
	assert_line(r.body, "natscope_resyncs_total 2");
	assert_line(r.body, "natscope_resync_active 0");
	assert_line(r.body, "natscope_resync_last_duration_seconds 0.25");
	/* the kinds sum to what natscope tracks: 1555 + 5 + 7 */
	assert_line(r.body, "# TYPE natscope_mappings gauge");
	assert_line(r.body, "natscope_mappings{kind=\"nat\"} 1555");
	assert_line(r.body, "natscope_mappings{kind=\"local\"} 5");
	assert_line(r.body, "natscope_mappings{kind=\"other\"} 7");
	assert_int_equal(count_lines(r.body, "natscope_mappings{"), 3);
	assert_line(r.body, "natscope_silent_entries 0");
	assert_line(r.body, "natscope_conntrack_entries 2000");
	assert_line(r.body, "natscope_conntrack_entries_limit 262144");
	assert_line(r.body, "natscope_conntrack_insert_failed_total 7");
	assert_line(r.body, "natscope_conntrack_drop_total 6");
	assert_line(r.body, "natscope_conntrack_early_drop_total 5");
	assert_null(strstr(r.body, "natscope_conntrack_clash_resolve")); /* -1 */
	assert_line(r.body, "natscope_follow_mode{mode=\"events\"} 1");
	assert_line(r.body, "natscope_follow_mode{mode=\"dumps\"} 0");
	/* sysctls: one unit per family, modes one-hot */
	assert_line(r.body, "natscope_sysctl_ip_local_port_range_low_port "
			    "32768");
	assert_line(r.body, "natscope_sysctl_ip_local_port_range_high_port "
			    "60999");
	assert_line(r.body, "natscope_sysctl_tcp_tw_reuse{mode=\"off\"} 0");
	assert_line(r.body, "natscope_sysctl_tcp_tw_reuse{mode=\"on\"} 0");
	assert_line(r.body, "natscope_sysctl_tcp_tw_reuse{mode=\"loopback\"} "
			    "1");
	assert_line(r.body, "natscope_sysctl_tcp_fin_timeout_seconds 60");
	assert_line(r.body, "natscope_sysctl_nf_conntrack_tcp_timeout_"
			    "time_wait_seconds 120");
	assert_line(r.body, "natscope_sysctl_nf_conntrack_events{mode="
			    "\"auto\"} 1");
	assert_line(r.body, "natscope_sysctl_nf_conntrack_events{mode="
			    "\"off\"} 0");
	assert_int_equal(count_lines(r.body,
				     "natscope_sysctl_nf_conntrack_events{"),
			 3);
	assert_line(r.body, "natscope_writes_failed_total 0");
	assert_line(r.body, "natscope_write_interval_seconds 5");
	assert_non_null(strstr(r.body,
			       "\nnatscope_last_write_timestamp_seconds 1"));
	assert_line(r.body, "natscope_collector_state{state=\"running\"} 1");
	assert_line(r.body, "natscope_collector_state{state=\"starting\"} 0");
	assert_line(r.body, "natscope_collector_state{state=\"stopped\"} 0");
	assert_line(r.body, "natscope_build_info{version=\"" NS_VERSION
			    "\"} 1");
	/* the collector's own figures, from its status row */
	assert_line(r.body, "natscope_collector_resident_memory_bytes "
			    "10485760");
	assert_line(r.body, "natscope_collector_cpu_seconds_total 1.5");
	/* times in seconds, to the millisecond (shortest exact text) */
	assert_true(sample_value(r.body,
				 "natscope_collector_start_time_seconds") ==
		    (double)(as_of - 60000) / 1e3);
	assert_true(sample_value(r.body,
				 "natscope_resync_last_done_timestamp_seconds") ==
		    (double)(as_of - 29750) / 1e3);
	/* resync durations: 0.25 s and 3.2 s */
	assert_line(r.body, "# TYPE natscope_resync_duration_seconds "
			    "histogram");
	assert_line(r.body, "natscope_resync_duration_seconds_bucket"
			    "{le=\"0.1\"} 0");
	assert_line(r.body, "natscope_resync_duration_seconds_bucket"
			    "{le=\"0.25\"} 1");
	assert_line(r.body, "natscope_resync_duration_seconds_bucket"
			    "{le=\"2.5\"} 1");
	assert_line(r.body, "natscope_resync_duration_seconds_bucket"
			    "{le=\"5\"} 2");
	assert_line(r.body, "natscope_resync_duration_seconds_bucket"
			    "{le=\"120\"} 2");
	assert_line(r.body, "natscope_resync_duration_seconds_bucket"
			    "{le=\"+Inf\"} 2");
	assert_int_equal(count_lines(r.body,
				     "natscope_resync_duration_seconds_bucket"),
			 STORE_RESYNC_BUCKETS + 1);
	assert_line(r.body, "natscope_resync_duration_seconds_count 2");
	assert_line(r.body, "natscope_resync_duration_seconds_sum 3.45");
	/* the coverage, as every answer states it */
	assert_line(r.body, "natscope_coverage_complete 1");
	assert_line(r.body, "natscope_gap_open 0");
	assert_line(r.body, "natscope_gaps_total 0");
	/* the serving process (this one), read from /proc/self */
	{
		double start = sample_value(r.body,
					    "process_start_time_seconds");
		double fds = sample_value(r.body, "process_open_fds");
		double max = sample_value(r.body, "process_max_fds");
		double now = (double)ns_now_ms() / 1e3;

		/* btime is whole seconds, recomputed from the uptime */
		if (!(start > now - 600 && start <= now + 3))
			fail_msg("process_start_time_seconds %.3f, now %.3f",
				 start, now);
		assert_true(fds >= 3 && fds <= max);
		assert_true(sample_value(r.body,
					 "process_resident_memory_bytes") > 0);
		assert_true(sample_value(r.body, "process_cpu_seconds_total") >
			    0);
	}
	resp_free(&r);

	/* a gateway that emptied 5 minutes ago is reported at 0; one that
	 * emptied 11 minutes ago is gone */
	{
		char sql[1024];
		int64_t now = ns_now_ms();

		write_status(STORE_STATE_RUNNING, now);
		snprintf(sql, sizeof(sql),
			 "INSERT INTO hist_gateway (public_ip, proto, tier, "
			 "ts_ms, span_ms, exact, family, ip_bin, ports_in_use, "
			 "ports_peak, ports_avg, mappings, mappings_peak, "
			 "mappings_avg, hosts, destinations, new_mappings, "
			 "worst_peak) VALUES "
			 "('192.0.2.77', 'tcp', 0, %lld, 5000, 1, 4, "
			 "x'c000024d', 0, 9, 4.5, 0, 9, 4.5, 0, 0, 0, 9), "
			 "('192.0.2.78', 'udp', 0, %lld, 5000, 1, 4, "
			 "x'c000024e', 0, 9, 4.5, 0, 9, 4.5, 0, 0, 0, 9), "
			 "('" GW4 "', 'tcp', 0, %lld, 5000, 1, 4, x'cb007101', "
			 "1, 1, 1, 1, 1, 1, 1, 1, 0, 1)",
			 (long long)(now - 305000), (long long)(now - 665000),
			 (long long)(now - 305000));
		assert_int_equal(store_test_exec(T.rw, sql), 0);
		http_get("/metrics", &r);
		assert_exposition(r.body);
#define GONE "{public_ip=\"192.0.2.77\",proto=\"tcp\"}"
		assert_line(r.body, "natscope_gateway_used_ports" GONE " 0");
		assert_line(r.body, "natscope_gateway_capacity_ports" GONE
				    " 65535");
		assert_line(r.body, "natscope_gateway_mappings" GONE " 0");
		assert_line(r.body, "natscope_gateway_hosts" GONE " 0");
		assert_line(r.body, "natscope_gateway_destinations" GONE " 0");
		assert_line(r.body, "natscope_gateway_worst_destination_"
				    "mappings" GONE " 0");
		assert_line(r.body, "natscope_gateway_worst_destination_"
				    "utilization_ratio" GONE " 0");
		assert_null(strstr(r.body, "natscope_gateway_worst_destination_"
					   "capacity_ports" GONE));
#undef GONE
		assert_line(r.body, "natscope_gateway_tcp_state_mappings{"
				    "public_ip=\"192.0.2.77\",proto=\"tcp\","
				    "state=\"time_wait\"} 0");
		assert_int_equal(count_lines(r.body, "natscope_gateway_tcp_"
						     "state_mappings{"),
				 3 * NS_TCP_STATES);
		assert_null(strstr(r.body, "192.0.2.78"));
		/* a live gateway is reported once, live */
		assert_int_equal(count_lines(r.body, "natscope_gateway_mappings"
						     "{public_ip=\"" GW4
						     "\",proto=\"tcp\"}"), 1);
		resp_free(&r);
		/* 10 minutes on, it is gone too */
		write_status(STORE_STATE_RUNNING, now + 600000);
		http_get("/metrics", &r);
		assert_null(strstr(r.body, "192.0.2.77"));
		resp_free(&r);
		snprintf(sql, sizeof(sql),
			 "DELETE FROM hist_gateway WHERE tier = 0 AND ts_ms IN "
			 "(%lld, %lld)", (long long)(now - 305000),
			 (long long)(now - 665000));
		assert_int_equal(store_test_exec(T.rw, sql), 0);
	}

	/* the state gauge follows the status row */
	write_status(STORE_STATE_RESYNCING, ns_now_ms());
	http_get("/metrics", &r);
	assert_line(r.body, "natscope_collector_state{state=\"running\"} 0");
	assert_line(r.body, "natscope_collector_state{state=\"resyncing\"} 1");
	resp_free(&r);
	write_status(STORE_STATE_RUNNING, ns_now_ms());
}

/* Removes a database file and its -wal and -shm companions. */
static void remove_db(const char *db)
{
	char path[200];

	unlink(db);
	snprintf(path, sizeof(path), "%s-wal", db);
	unlink(path);
	snprintf(path, sizeof(path), "%s-shm", db);
	unlink(path);
}

/* A database that stays locked: 503 with Retry-After, and the service
 * answers again once the lock is gone.  WAL readers are never blocked by
 * a writer, so this database is switched to a rollback journal, where an
 * exclusive transaction does block them. */
static void test_busy(void **state)
{
	struct web_config cfg = { .interval_s = 5 };
	uint16_t saved = T.port;
	struct store_status s;
	struct store *st;
	struct web *w;
	struct resp r;
	char db[160], v[16];
	sqlite3 *raw;
	int64_t t0;

	snprintf(db, sizeof(db), "%s/busy.db", T.dir);
	st = store_open(db, STORE_READ_WRITE);
	assert_non_null(st);
	fill_status(&s, STORE_STATE_RUNNING, ns_now_ms());
	assert_int_equal(store_begin_run(st, &s), 0);
	store_close(st);
	assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw, "PRAGMA journal_mode = DELETE",
				      NULL, NULL, NULL),
			 SQLITE_OK);

	cfg.db_path = db;
	w = web_start(web_listen("127.0.0.1:0"), &cfg);
	assert_non_null(w);
	T.port = web_bound_port(w);
	http_get("/healthz", &r);
	assert_int_equal(r.status, 503); /* STARTING */
	assert_jtext(r.body, "$.status", "starting");
	resp_free(&r);

	assert_int_equal(sqlite3_exec(raw, "BEGIN EXCLUSIVE", NULL, NULL,
				      NULL),
			 SQLITE_OK);
	t0 = ns_mono_ns();
	http_get("/api/v1/gateways", &r);
	assert_json_reply(&r, 503);
	assert_jtext(r.body, "$.error", "database is busy");
	assert_int_equal(resp_header(&r, "Retry-After", v, sizeof(v)), 0);
	assert_string_equal(v, "1");
	resp_free(&r);
	/* the store waited for the lock before giving up */
	assert_true(ns_mono_ns() - t0 >= 1000000000LL);
	http_get("/metrics", &r);
	assert_json_reply(&r, 503);
	resp_free(&r);

	assert_int_equal(sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL),
			 SQLITE_OK);
	http_get("/api/v1/gateways", &r);
	assert_json_reply(&r, 200);
	resp_free(&r);

	web_stop(w);
	T.port = saved;
	sqlite3_close(raw);
	remove_db(db);
}

/* A database no run has written to yet: nothing to report, and /healthz
 * says so.  Also checks that web_stop() closes the listening socket. */
static void test_empty_database(void **state)
{
	struct web_config cfg = { .interval_s = 5 };
	uint16_t saved = T.port;
	char db[160];
	struct store *st;
	struct web *w;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct resp r;
	int fd;

	snprintf(db, sizeof(db), "%s/empty.db", T.dir);
	st = store_open(db, STORE_READ_WRITE);
	assert_non_null(st);
	cfg.db_path = db;
	w = web_start(web_listen("127.0.0.1:0"), &cfg);
	assert_non_null(w);
	T.port = web_bound_port(w);
	assert_int_not_equal(T.port, saved);

	http_get("/healthz", &r);
	assert_json_reply(&r, 503);
	assert_jtext(r.body, "$.status", "starting");
	assert_null(jtext(r.body, "$.state"));
	resp_free(&r);

	http_get("/api/v1/status", &r);
	assert_json_reply(&r, 503);
	assert_jtext(r.body, "$.error",
		     "the collector has not written a snapshot yet");
	resp_free(&r);

	http_get("/api/v1/gateways", &r);
	assert_json_reply(&r, 200);
	assert_int_equal(jlen(r.body, "$.gateways"), 0);
	resp_free(&r);

	expect_error("/api/v1/gateways/" GW4 "/hosts", 404,
		     "no live mappings for 203.0.113.1 tcp");
	expect_error("/api/v1/gateways/" GW4 "/ports", 404,
		     "the mapping log is empty: no natscope run has logged "
		     "mappings in this database");

	http_get("/metrics", &r);
	assert_int_equal(r.status, 200);
	assert_exposition(r.body);
	assert_line(r.body, "natscope_build_info{version=\"" NS_VERSION
			    "\"} 1");
	assert_null(strstr(r.body, "natscope_gateway_"));
	assert_null(strstr(r.body, "natscope_events_total"));
	resp_free(&r);

	web_stop(w);
	sin.sin_port = htons(T.port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), -1);
	assert_int_equal(errno, ECONNREFUSED);
	close(fd);
	T.port = saved;
	store_close(st);
	remove_db(db);
}

/* A damaged page in a live table: the answers that need it fail with a
 * clear 500, never an empty list; the others still answer. */
static void test_corrupt_table(void **state)
{
	struct web_config cfg = { .interval_s = 5 };
	uint16_t saved = T.port;
	char db[160], sql[128], junk[4096];
	struct store_status s;
	struct store_batch b;
	struct store *st;
	long long root = 0;
	sqlite3_stmt *q;
	sqlite3 *raw;
	struct web *w;
	struct resp r;
	int fd;

	snprintf(db, sizeof(db), "%s/corrupt.db", T.dir);
	st = store_open(db, STORE_READ_WRITE);
	assert_non_null(st);
	fill_status(&s, STORE_STATE_RUNNING, ns_now_ms());
	assert_int_equal(store_begin_run(st, &s), 0);
	store_batch_init(&b);
	b.full = 1;
	fill_status(&b.status, STORE_STATE_RUNNING, ns_now_ms());
	for (int i = 1; i <= 40; i++) {
		char gw[32];

		snprintf(gw, sizeof(gw), "203.0.113.%d", i);
		add_gateway(&b, gw, IPPROTO_TCP, 1, 1, 0, 1, "198.51.100.7",
			    443, 1, 64512);
	}
	assert_int_equal(store_write(st, &b), 0);
	store_batch_free(&b);
	store_close(st); /* checkpoints: every page is in the file */

	assert_int_equal(sqlite3_open_v2(db, &raw, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	snprintf(sql, sizeof(sql), "SELECT rootpage FROM sqlite_schema "
				   "WHERE name = 'gateways'");
	assert_int_equal(sqlite3_prepare_v2(raw, sql, -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	root = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(raw);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 37 + 11);
	fd = open(db, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0 && root > 1);
	assert_int_equal(pwrite(fd, junk, sizeof(junk) - 8,
				(off_t)((root - 1) * 4096 + 8)),
			 (ssize_t)sizeof(junk) - 8);
	close(fd);

	cfg.db_path = db;
	w = web_start(web_listen("127.0.0.1:0"), &cfg);
	assert_non_null(w);
	T.port = web_bound_port(w);
	http_get("/api/v1/gateways", &r);
	assert_json_reply(&r, 500);
	assert_non_null(strstr(r.body, "corrupt"));
	resp_free(&r);
	http_get("/api/v1/gateways/203.0.113.1/hosts", &r);
	assert_json_reply(&r, 500);
	assert_non_null(strstr(r.body, "corrupt"));
	resp_free(&r);
	http_get("/metrics", &r);
	assert_json_reply(&r, 500);
	assert_non_null(strstr(r.body, "corrupt"));
	resp_free(&r);
	http_get("/healthz", &r); /* the status row is intact */
	assert_json_reply(&r, 200);
	resp_free(&r);
	web_stop(w);
	T.port = saved;
	remove_db(db);
}

/* A damaged gap log costs /metrics only what comes from it: the
 * coverage families; the rest is served (it is most wanted then). */
static void test_metrics_corrupt_gaps(void **state)
{
	struct web_config cfg = { .interval_s = 5 };
	uint16_t saved = T.port;
	char db[160], sql[256], junk[4096];
	struct store_status s;
	struct store_batch b;
	struct store *st;
	long long root = 0;
	sqlite3_stmt *q;
	sqlite3 *raw;
	struct web *w;
	struct resp r;
	int64_t now = ns_now_ms();
	int fd;

	snprintf(db, sizeof(db), "%s/corrupt-gaps.db", T.dir);
	st = store_open(db, STORE_READ_WRITE);
	assert_non_null(st);
	fill_status(&s, STORE_STATE_RUNNING, now);
	assert_int_equal(store_begin_run(st, &s), 0);
	store_batch_init(&b);
	b.full = 1;
	fill_status(&b.status, STORE_STATE_RUNNING, now);
	add_gateway(&b, GW4, IPPROTO_TCP, 5, 6, 1, 1, "198.51.100.7", 443, 6,
		    64512);
	assert_int_equal(store_write(st, &b), 0);
	store_batch_free(&b);
	for (int i = 1; i <= 60; i++) {
		snprintf(sql, sizeof(sql),
			 "INSERT INTO gaps VALUES (%lld, %d, %lld, %lld, 42, 1, "
			 "3, 1, 0, 'enobufs')", (long long)(now - 60000), i,
			 (long long)(now - 59000 + i),
			 (long long)(now - 58000 + i));
		assert_int_equal(store_test_exec(st, sql), 0);
	}
	store_close(st); /* checkpoints: every page is in the file */

	assert_int_equal(sqlite3_open_v2(db, &raw, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(raw, "SELECT rootpage FROM "
					    "sqlite_schema WHERE name = 'gaps'",
					    -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	root = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(raw);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 37 + 11);
	fd = open(db, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0 && root > 1);
	assert_int_equal(pwrite(fd, junk, sizeof(junk) - 8,
				(off_t)((root - 1) * 4096 + 8)),
			 (ssize_t)sizeof(junk) - 8);
	close(fd);

	cfg.db_path = db;
	w = web_start(web_listen("127.0.0.1:0"), &cfg);
	assert_non_null(w);
	T.port = web_bound_port(w);
	http_get("/api/v1/gateways", &r); /* its coverage reads the gaps */
	assert_json_reply(&r, 500);
	resp_free(&r);
	http_get("/metrics", &r);
	assert_int_equal(r.status, 200);
	assert_exposition(r.body);
	assert_line(r.body, "natscope_gateway_mappings{public_ip=\"" GW4
			    "\",proto=\"tcp\"} 6");
	assert_line(r.body, "natscope_collector_state{state=\"running\"} 1");
	assert_null(strstr(r.body, "natscope_coverage_complete"));
	resp_free(&r);
	web_stop(w);
	T.port = saved;
	remove_db(db);
}

/* Last: after every bad request above the service still answers. */
static void test_still_serving(void **state)
{
	struct resp r;

	http_get("/api/v1/gateways", &r);
	assert_json_reply(&r, 200);
	assert_int_equal(jlen(r.body, "$.gateways"), 4);
	resp_free(&r);
	http_get("/healthz", &r);
	assert_json_reply(&r, 200);
	resp_free(&r);
}

static const struct CMUnitTest tests[] = {
	cmocka_unit_test(test_parse_listen),
	cmocka_unit_test(test_parse_limit),
	cmocka_unit_test(test_start_errors),
	cmocka_unit_test(test_listen_ipv6),
	cmocka_unit_test(test_index),
	cmocka_unit_test(test_overview),
	cmocka_unit_test(test_overview_escapes),
	cmocka_unit_test(test_pages),
	cmocka_unit_test(test_overview_thresholds),
	cmocka_unit_test(test_assets),
	cmocka_unit_test(test_overview_unavailable),
	cmocka_unit_test(test_gateways),
	cmocka_unit_test(test_hosts),
	cmocka_unit_test(test_destinations),
	cmocka_unit_test(test_at_gateways),
	cmocka_unit_test(test_range_gateways),
	cmocka_unit_test(test_at_lists),
	cmocka_unit_test(test_series),
	cmocka_unit_test(test_diagnosis),
	cmocka_unit_test(test_host_history),
	cmocka_unit_test(test_incidents),
	cmocka_unit_test(test_lookup),
	cmocka_unit_test(test_ports),
	cmocka_unit_test(test_params),
	cmocka_unit_test(test_ipv6_canonical),
	cmocka_unit_test(test_bad_requests),
	cmocka_unit_test(test_long_path),
	cmocka_unit_test(test_not_found),
	cmocka_unit_test(test_method_not_allowed),
	cmocka_unit_test(test_session),
	cmocka_unit_test(test_head),
	cmocka_unit_test(test_keepalive),
	cmocka_unit_test(test_status),
	cmocka_unit_test(test_healthz),
	cmocka_unit_test(test_metrics),
	cmocka_unit_test(test_busy),
	cmocka_unit_test(test_empty_database),
	cmocka_unit_test(test_corrupt_table),
	cmocka_unit_test(test_metrics_corrupt_gaps),
	cmocka_unit_test(test_still_serving),
};

int main(void)
{
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
