/*
 * health.c - natscope health: asks a running natscope's /healthz, for
 * container health checks and scripts that have no HTTP client.
 */
#include "cli/cli.h"
#include "common/common.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static void health_usage(FILE *f)
{
	fputs("usage: natscope health [--url URL]\n"
	      "\n"
	      "Asks a running natscope whether it is healthy (GET /healthz):\n"
	      "prints its answer; exit 0 when healthy (HTTP 200), 1 when not\n"
	      "or when it cannot be reached.\n"
	      "\n"
	      "options:\n"
	      "  --url URL             its API (default " CLI_DEFAULT_URL ")\n"
	      "  -h, --help            this text\n",
	      f);
}

int cli_health(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *url = CLI_DEFAULT_URL;
	struct cli_http *h;
	char err[256] = "", *body;
	long code = 0;
	int opt;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (opt) {
		case 'u':
			url = optarg;
			break;
		case 'h':
			health_usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "natscope health: %s needs a value\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "natscope health: unknown option '%s'\n",
				argv[optind - 1]);
			health_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "natscope health: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	if (!(h = cli_http_open(url, "natscope-health"))) {
		fprintf(stderr, "natscope health: --url '%s': expected "
			"http://HOST:PORT\n", url);
		return 2;
	}
	body = cli_http_get(h, "/healthz", &code, err, sizeof(err));
	cli_http_close(h);
	if (!body) {
		fprintf(stderr, "natscope health: %s\n", err);
		return 1;
	}
	fputs(body, stdout);
	free(body);
	return code == 200 ? 0 : 1;
}
