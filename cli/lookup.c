/*
 * lookup.c - natscope lookup PUBLIC_IP:PORT: who held that public port at
 * a moment (one holder per destination), from the mapping log of a running
 * natscope (HTTP) or of a database file.  Says when the answer is
 * uncertain, and why.
 */
#include "cli/cli.h"
#include "common/common.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>


static void lookup_usage(FILE *f)
{
	fputs("usage: natscope lookup PUBLIC_IP:PORT [options]\n"
	      "       ([2001:db8::1]:PORT for IPv6)\n"
	      "\n"
	      "Who held that public port at a moment: the internal ip:port and\n"
	      "the destination of each mapping (one per destination), when it\n"
	      "started and ended, and whether a gap makes the answer uncertain.\n"
	      "\n"
	      "options:\n"
	      "  --proto NAME          tcp, udp, ... (default tcp)\n"
	      "  --at TIME             RFC 3339 or unix seconds (default now)\n"
	      "  --url URL             a running natscope's API\n"
	      "                        (default " CLI_DEFAULT_URL ")\n"
	      "  --db FILE             read a database instead (read-only)\n"
	      "  --json                the API's JSON answer\n"
	      "  -h, --help            this text\n",
	      f);
}

/* "ip:port" or "[v6]:port" into *ip and *port; -1 if it is neither. */
static int lookup_parse_target(const char *text, struct ns_addr *ip,
			       unsigned *port)
{
	char buf[NS_ADDR_STRLEN + 8], *colon, *end, *host = buf;
	unsigned long v;

	if (strlen(text) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", text);
	colon = strrchr(buf, ':');
	if (!colon)
		return -1;
	*colon = '\0';
	if (*host == '[') {
		size_t n = strlen(host);

		if (n < 2 || host[n - 1] != ']')
			return -1;
		host[n - 1] = '\0';
		host++;
	} else if (strchr(host, ':')) {
		return -1; /* IPv6 needs its brackets */
	}
	errno = 0;
	v = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || v > 65535)
		return -1;
	*port = (unsigned)v;
	return ns_addr_parse(host, ip);
}

static const char *lstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

/* "ip:port", "[v6]:port" */
static void lookup_endpoint(char *out, size_t n, json_t *e)
{
	const char *ip = lstr(e, "ip");

	snprintf(out, n, strchr(ip, ':') ? "[%s]:%lld" : "%s:%lld", ip,
		 (long long)json_integer_value(json_object_get(e, "port")));
}

/* A TCP holder's state at the moment, on a line of its own: "state
 * NAME since TIME", "?" after the time when it is not exact, and the
 * answer's note. */
static void lookup_state(json_t *h, FILE *out)
{
	json_t *st = json_object_get(h, "state");
	json_t *note = json_object_get(h, "state_note");

	if (json_is_string(st))
		fprintf(out, "      state %s since %s%s\n", json_string_value(st),
			lstr(h, "state_since"),
			json_is_true(json_object_get(h, "state_exact")) ?
				"" : " ?");
	else if (json_is_string(note))
		fprintf(out, "      state unknown\n");
	if (json_is_string(note) && !json_is_true(json_object_get(h,
								  "state_exact")))
		fprintf(out, "      ? %s\n", json_string_value(note));
}

static void lookup_print(json_t *doc, FILE *out)
{
	json_t *holders = json_object_get(doc, "holders"), *h, *r;
	size_t i, j;
	int wa = 8, wb = 11, tcp;

	fprintf(out, "%s:%lld/%s at %s: %zu holder%s%s\n", lstr(doc, "public_ip"),
		(long long)json_integer_value(json_object_get(doc, "port")),
		lstr(doc, "proto"), lstr(doc, "at"), json_array_size(holders),
		json_array_size(holders) == 1 ? "" : "s",
		json_is_true(json_object_get(doc, "uncertain")) ?
			" (UNCERTAIN)" : "");
	json_array_foreach(json_object_get(doc, "reasons"), j, r)
		fprintf(out, "  ! %s\n", json_string_value(r));
	if (!json_array_size(holders))
		return;
	tcp = !strcmp(lstr(doc, "proto"), "tcp");
	/* columns as wide as their longest address */
	for (int pass = 0; pass < 2; pass++) {
		json_array_foreach(holders, i, h) {
			char a[NS_ADDR_STRLEN + 10], b[NS_ADDR_STRLEN + 10];

			lookup_endpoint(a, sizeof(a), json_object_get(h, "internal"));
			lookup_endpoint(b, sizeof(b),
					json_object_get(h, "destination"));
			if (!pass) {
				if ((int)strlen(a) > wa)
					wa = (int)strlen(a);
				if ((int)strlen(b) > wb)
					wb = (int)strlen(b);
				continue;
			}
			if (!i)
				fprintf(out, "%-5s %-*s %-*s %4s  %-24s  %-24s\n",
					"KIND", wa, "INTERNAL", wb, "DESTINATION",
					"ZONE", "START", "END");
			fprintf(out, "%-5s %-*s %-*s %4lld  %-24s%s %-24s\n",
				lstr(h, "kind"), wa, a, wb, b,
				(long long)json_integer_value(json_object_get(h, "zone")),
				lstr(h, "start"),
				json_is_false(json_object_get(h, "start_known")) ?
					"?" : " ",
				json_is_null(json_object_get(h, "end")) ?
					"(open)" : lstr(h, "end"));
			json_array_foreach(json_object_get(h, "reasons"), j, r)
				fprintf(out, "      ! %s\n", json_string_value(r));
			if (tcp)
				lookup_state(h, out);
		}
	}
}

int cli_lookup(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "proto", required_argument, NULL, 'p' },
		{ "at", required_argument, NULL, 'a' },
		{ "url", required_argument, NULL, 'u' },
		{ "db", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *url = CLI_DEFAULT_URL, *db = NULL, *proto = "tcp";
	int64_t at_ms = 0;
	struct ns_addr ip;
	unsigned port;
	int opt, json = 0, url_given = 0, frozen, p, rc = 1;
	char *body = NULL, err[256] = "";
	json_t *doc = NULL;
	json_error_t jerr;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			proto = optarg;
			break;
		case 'a':
			if (ns_time_parse(optarg, &at_ms) < 0 || at_ms <= 0) {
				fprintf(stderr, "natscope lookup: --at '%s': "
					"expected RFC 3339 (2026-12-02T14:02:00Z) "
					"or unix seconds\n", optarg);
				return 2;
			}
			break;
		case 'u':
			url = optarg;
			url_given = 1;
			break;
		case 'd':
			db = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			lookup_usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "natscope lookup: %s needs a value\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "natscope lookup: unknown option '%s'\n",
				argv[optind - 1]);
			lookup_usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1 ||
	    lookup_parse_target(argv[optind], &ip, &port) < 0) {
		fprintf(stderr, "natscope lookup: expected one PUBLIC_IP:PORT "
			"(e.g. 203.0.113.1:40123, [2001:db8::1]:40123)\n");
		return 2;
	}
	if ((p = ns_proto_parse(proto)) < 0 || !ns_proto_has_ports((uint8_t)p)) {
		fprintf(stderr, "natscope lookup: --proto '%s': expected tcp, "
			"udp, udplite, sctp, dccp, icmp or icmpv6\n", proto);
		return 2;
	}
	if (db && url_given) {
		fputs("natscope lookup: --url or --db, not both\n", stderr);
		return 2;
	}
	if (!at_ms)
		at_ms = ns_now_ms();
	if (db) {
		struct store *st;

		if (cli_open_db(db, &st, &frozen) < 0) {
			log_warnx("cannot read the database %s", db);
			return 1;
		}
		if (store_json_lookup(st, &ip, (uint8_t)p, (uint16_t)port, at_ms,
				      ns_now_ms(), &body) < 0)
			snprintf(err, sizeof(err), "%s", errno == ENOSYS ?
				 "this database has no mapping log" :
				 strerror(errno));
		store_close(st);
	} else {
		struct cli_http *h = cli_http_open(url, "natscope-lookup/"
						   NS_VERSION);
		char path[256], text[NS_ADDR_STRLEN];
		long code = 0;

		if (!h) {
			fprintf(stderr, "natscope lookup: --url '%s': expected "
				"http://HOST:PORT without a trailing '/'\n", url);
			return 2;
		}
		snprintf(path, sizeof(path), "/api/v1/lookup?public_ip=%s&port=%u"
			 "&proto=%s&at=%lld.%03lld", ns_addr_format(&ip, text),
			 port, ns_proto_name((uint8_t)p),
			 (long long)(at_ms / 1000), (long long)(at_ms % 1000));
		body = cli_http_get(h, path, &code, err, sizeof(err));
		if (body && code != 200) {
			snprintf(err, sizeof(err), "HTTP %ld: %.200s", code, body);
			free(body);
			body = NULL;
		}
		cli_http_close(h);
	}
	if (!body) {
		fprintf(stderr, "natscope lookup: %s\n", err);
		return 1;
	}
	if (json) {
		fputs(body, stdout);
		putchar('\n');
		rc = 0;
	} else if ((doc = json_loads(body, 0, &jerr))) {
		lookup_print(doc, stdout);
		rc = 0;
	} else {
		fprintf(stderr, "natscope lookup: the answer is not JSON: %s\n",
			jerr.text);
	}
	json_decref(doc);
	free(body);
	return rc;
}
