/*
 * top.c - natscope top: public IPs (ports in use against capacity,
 * mappings, the worst destination bucket) and their top consumers, from a
 * running natscope over HTTP (libcurl) or from a database file.
 *
 * Both sources give the same documents: the API's JSON, which the store
 * builds (store_json_*) and the web service serves, so one reader
 * (jansson) makes the table.  Every table says how sure its figures are:
 * the coverage of the answers (a gap, a collector starting) and a run
 * that is not live (stopped, an import) are in its header, and in --json.
 */
#include "cli/cli.h"
#include "common/common.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_TOP 3

static void top_usage(FILE *f)
{
	fputs("usage: natscope top [--url URL | --db FILE] [options]\n"
	      "\n"
	      "A table of public IPs - ports in use against capacity, mappings,\n"
	      "the worst destination bucket - and their top consumers, refreshed\n"
	      "like top.  Figures natscope is not sure of are said to be so.\n"
	      "\n"
	      "options:\n"
	      "  --url URL             a running natscope's API\n"
	      "                        (default " CLI_DEFAULT_URL ")\n"
	      "  --db FILE             read a database instead (read-only)\n"
	      "  --at TIME             the state at a past moment, from history\n"
	      "                        (RFC 3339 or unix seconds; implies --once)\n"
	      "  --interval SECONDS    refresh every SECONDS (default 2)\n"
	      "  --top N               consumers shown per public IP, 0-100\n"
	      "                        (default 3)\n"
	      "  --once                print once and exit\n"
	      "  --json                one JSON document (implies --once)\n"
	      "  -h, --help            this text\n",
	      f);
}

struct top {
	const char *url;
	struct store *st; /* --db */
	struct cli_http *http; /* --url */
	unsigned top_n;
	int json;
	int64_t at_ms; /* --at: a past moment; 0 live */
	char err[256]; /* why the last fetch failed */
};

/* ---- fetching a document ---- */

/* The same document from the database (what the web service answers). */
static char *top_store(struct top *t, const char *kind, const char *ip,
		       const char *proto, long *code)
{
	struct ns_addr a;
	char *out = NULL;
	int rc, p;

	if (!strcmp(kind, "gateways")) {
		rc = t->at_ms ? store_json_gateways_at(t->st, t->at_ms,
						       ns_now_ms(), &out) :
				store_json_gateways(t->st, ns_now_ms(), &out);
	} else if (!strcmp(kind, "status")) {
		rc = store_json_status(t->st, ns_now_ms(), &out);
	} else {
		if (ns_addr_parse(ip, &a) < 0 || (p = ns_proto_parse(proto)) < 0) {
			errno = EINVAL;
			rc = -1;
		} else {
			rc = t->at_ms ?
				store_json_hosts_at(t->st, &a, (uint8_t)p,
						    t->top_n ? t->top_n : 1,
						    t->at_ms, ns_now_ms(), &out) :
				store_json_hosts(t->st, &a, (uint8_t)p,
						 t->top_n ? t->top_n : 1,
						 ns_now_ms(), &out);
		}
	}
	if (rc < 0) {
		*code = errno == ENOENT || errno == ERANGE ? 404 : 500;
		snprintf(t->err, sizeof(t->err), "reading the database: %s",
			 errno == ERANGE ? "no history holds that moment" :
					   strerror(errno));
		return NULL;
	}
	*code = 200;
	return out;
}

/* A parsed document, or NULL with t->err set. */
static json_t *top_get(struct top *t, const char *kind, const char *ip,
		       const char *proto)
{
	char path[256], *body;
	long code = 0;
	json_error_t jerr;
	json_t *doc, *e;

	if (t->st) {
		body = top_store(t, kind, ip, proto, &code);
	} else {
		char at[48] = "";

		if (t->at_ms && strcmp(kind, "status"))
			snprintf(at, sizeof(at), "%cat=%lld.%03lld", ip ? '&' : '?',
				 (long long)(t->at_ms / 1000),
				 (long long)(t->at_ms % 1000));
		if (ip)
			snprintf(path, sizeof(path), "/api/v1/gateways/%s/hosts"
				 "?proto=%s&limit=%u%s", ip, proto,
				 t->top_n ? t->top_n : 1, at);
		else
			snprintf(path, sizeof(path), "/api/v1/%s%s", kind, at);
		body = cli_http_get(t->http, path, &code, t->err,
				    sizeof(t->err));
	}
	if (!body)
		return NULL;
	doc = json_loads(body, 0, &jerr);
	if (!doc) {
		snprintf(t->err, sizeof(t->err), "%s: not JSON (HTTP %ld): "
			 "%s", kind, code, jerr.text);
		free(body);
		return NULL;
	}
	free(body);
	if (code != 200) {
		e = json_object_get(doc, "error");
		snprintf(t->err, sizeof(t->err), "%s: HTTP %ld: %s", kind, code,
			 json_is_string(e) ? json_string_value(e) : "error");
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/* ---- one frame ---- */

static json_int_t jint(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? json_integer_value(v) : 0;
}

static const char *jstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : "";
}

static double pct(json_int_t a, json_int_t b)
{
	return b > 0 ? 100.0 * (double)a / (double)b : 0;
}

/* Builds the frame: the gateways document with each gateway's top hosts
 * ("top_hosts") and the status' state, note and coverage.  NULL with
 * t->err set. */
static json_t *top_frame(struct top *t)
{
	json_t *gws, *status, *list, *g, *frame;
	size_t i;

	if (!(gws = top_get(t, "gateways", NULL, NULL)))
		return NULL;
	status = top_get(t, "status", NULL, NULL); /* may be missing */
	list = json_object_get(gws, "gateways");
	json_array_foreach(list, i, g) {
		json_t *hosts;

		if (!t->top_n)
			break;
		hosts = top_get(t, "hosts", jstr(g, "public_ip"),
				jstr(g, "proto"));
		if (!hosts) {
			/* gone since the list was read: a moment later */
			json_object_set_new(g, "top_hosts", json_null());
			continue;
		}
		json_object_set(g, "top_hosts", json_object_get(hosts, "hosts"));
		json_decref(hosts);
	}
	/* at a past moment the state is that period's, from history */
	frame = json_pack("{s:s, s:O, s:O, s:O, s:O, s:O}", "source",
			  t->st ? "database" : t->url,
			  "generated_at", json_object_get(gws, "generated_at"),
			  "as_of", json_object_get(gws, "as_of"),
			  "coverage", json_object_get(gws, "coverage"),
			  "state", t->at_ms ?
				json_object_get(json_object_get(gws, "coverage"),
						"state") :
				status ? json_object_get(status, "state")
				       : json_null(),
			  "note", status ? json_object_get(status, "note")
					 : json_null());
	if (frame && t->at_ms) {
		json_object_set(frame, "at", json_object_get(gws, "at"));
		json_object_set(frame, "period", json_object_get(gws, "period"));
		json_object_set(frame, "resolution",
				json_object_get(gws, "resolution"));
	}
	if (frame)
		json_object_set(frame, "gateways", list);
	json_decref(gws);
	json_decref(status);
	if (!frame)
		snprintf(t->err, sizeof(t->err), "out of memory");
	return frame;
}

/* A figure now, or at a past moment (--at) the period's peak. */
static long long top_figure(const struct top *t, json_t *o, const char *now,
			    const char *peak)
{
	if (t->at_ms && json_object_get(o, peak))
		return (long long)jint(o, peak);
	return (long long)jint(o, now);
}

static void top_print(const struct top *t, json_t *f, FILE *out)
{
	json_t *cov = json_object_get(f, "coverage");
	json_t *list = json_object_get(f, "gateways");
	json_t *g, *h, *gaps;
	const char *state = jstr(f, "state"), *note = jstr(f, "note");
	size_t i, j;
	char bucket[80];

	if (t->at_ms) {
		json_t *per = json_object_get(f, "period");

		fprintf(out, "natscope top - %s - at %s: the %s period %s to "
			"%s (peaks within it, figures at its end) - state %s\n",
			jstr(f, "source"), jstr(f, "at"), jstr(f, "resolution"),
			jstr(per, "start"), jstr(per, "end"),
			*state ? state : "unknown");
	} else {
		fprintf(out, "natscope top - %s - as of %s - state %s\n",
			jstr(f, "source"),
			*jstr(f, "as_of") ? jstr(f, "as_of") : "never",
			*state ? state : "unknown");
	}
	if (!json_is_true(json_object_get(cov, "complete"))) {
		gaps = json_object_get(cov, "gaps");
		fprintf(out, "NOT EXACT: the figures may be off (");
		if (json_array_size(gaps)) {
			json_array_foreach(gaps, j, h)
				fprintf(out, "%sgap %s since %s", j ? ", " : "",
					jstr(h, "reason"), jstr(h, "start"));
		} else {
			fprintf(out, "collector %s", *state ? state : "unknown");
		}
		fprintf(out, ")\n");
	}
	if (!t->at_ms && !strcmp(state, "stopped"))
		fprintf(out, "not live: %s\n", *note ? note :
			"the run that wrote these figures has stopped");
	fprintf(out, "\n%-39s %-7s %13s %6s %9s %6s  %-30s %6s\n", "PUBLIC IP",
		"PROTO", "PORTS/SPACE", "USE", "MAPPINGS", "HOSTS",
		"WORST BUCKET (MAPPINGS/CAP)", "FILL");
	json_array_foreach(list, i, g) {
		json_t *w = json_object_get(g, "worst_destination");
		char ports[32];

		if (json_is_object(w))
			snprintf(bucket, sizeof(bucket),
				 strchr(jstr(w, "ip"), ':') ? "[%s]:%lld %lld/%lld" :
							      "%s:%lld %lld/%lld",
				 jstr(w, "ip"), (long long)jint(w, "port"),
				 top_figure(t, w, "mappings", "peak"),
				 (long long)jint(w, "capacity"));
		else
			snprintf(bucket, sizeof(bucket), "-");
		/* at a past moment: the period's peaks */
		long long used = top_figure(t, g, "ports_in_use", "ports_peak");

		snprintf(ports, sizeof(ports), "%lld/%lld", used,
			 (long long)jint(g, "port_space"));
		fprintf(out, "%-39s %-7s %13s %5.1f%% %9lld %6lld  %-30s "
			"%5.1f%%\n", jstr(g, "public_ip"), jstr(g, "proto"),
			ports, pct(used, jint(g, "port_space")),
			top_figure(t, g, "mappings", "mappings_peak"),
			(long long)jint(g, "hosts"), bucket,
			json_is_object(w) ?
				pct(top_figure(t, w, "mappings", "peak"),
				    jint(w, "capacity")) : 0.0);
		json_array_foreach(json_object_get(g, "top_hosts"), j, h)
			fprintf(out, "  %-37s %-7s %13lld %6s %9lld\n",
				jstr(h, "ip"), jstr(h, "kind"),
				(long long)jint(h, "ports_in_use"), "",
				top_figure(t, h, "mappings", "mappings_peak"));
		/* (host rows: the internal host, nat or local, the ports it
		 * holds and its mappings) */
	}
	if (!json_array_size(list))
		fprintf(out, "(no public IP has a live mapping)\n");
	(void)t;
}

int cli_top(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "db", required_argument, NULL, 'd' },
		{ "at", required_argument, NULL, 'a' },
		{ "interval", required_argument, NULL, 'i' },
		{ "top", required_argument, NULL, 't' },
		{ "once", no_argument, NULL, '1' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct top t = { .url = CLI_DEFAULT_URL, .top_n = DEFAULT_TOP };
	const char *db = NULL;
	unsigned interval = 2;
	int opt, once = 0, frozen, rc = 1, url_given = 0;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (opt) {
		case 'u':
			t.url = optarg;
			url_given = 1;
			break;
		case 'd':
			db = optarg;
			break;
		case 'a':
			if (ns_time_parse(optarg, &t.at_ms) < 0 || t.at_ms <= 0) {
				fprintf(stderr, "natscope top: --at '%s': expected "
					"RFC 3339 (2026-12-02T14:02:00Z) or unix "
					"seconds\n", optarg);
				return 2;
			}
			once = 1; /* the past does not change */
			break;
		case 'i':
			if (cli_parse_uint(optarg, 1, 3600, &interval) < 0) {
				fprintf(stderr, "natscope top: --interval '%s': "
					"expected whole seconds from 1 to "
					"3600\n", optarg);
				return 2;
			}
			break;
		case 't':
			if (cli_parse_uint(optarg, 0, 100, &t.top_n) < 0) {
				fprintf(stderr, "natscope top: --top '%s': "
					"expected 0 to 100\n", optarg);
				return 2;
			}
			break;
		case '1':
			once = 1;
			break;
		case 'j':
			t.json = once = 1;
			break;
		case 'h':
			top_usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "natscope top: %s needs a value\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "natscope top: unknown option '%s'\n",
				argv[optind - 1]);
			top_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "natscope top: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	if (db && url_given) {
		fputs("natscope top: --url or --db, not both\n", stderr);
		return 2;
	}
	if (db) {
		if (cli_open_db(db, &t.st, &frozen) < 0) {
			log_warnx("cannot read the database %s", db);
			return 1;
		}
	} else {
		size_t n = strlen(t.url);

		if (n && t.url[n - 1] == '/')
			fputs("natscope top: --url without the trailing '/'\n",
			      stderr);
		if (n && t.url[n - 1] == '/')
			return 2;
		if (!(t.http = cli_http_open(t.url, "natscope-top/" NS_VERSION)))
			return 1;
	}

	for (;;) {
		json_t *f = top_frame(&t);

		if (!once)
			fputs("\033[H\033[2J", stdout);
		if (!f) {
			if (once) {
				log_warnx("%s", t.err);
				break;
			}
			printf("natscope top: %s (retrying every %u s)\n", t.err,
			       interval);
		} else if (t.json) {
			json_dumpf(f, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
			putchar('\n');
		} else {
			top_print(&t, f, stdout);
		}
		json_decref(f);
		fflush(stdout);
		if (once) {
			rc = f ? 0 : 1;
			break;
		}
		sleep(interval);
	}
	cli_http_close(t.http);
	store_close(t.st);
	return rc;
}
