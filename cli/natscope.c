/*
 * natscope.c - main(): picks the subcommand.
 */
#include "cli/cli.h"
#include "common/common.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	fputs("usage: natscope <command> [options]\n"
	      "\n"
	      "Audits NAT gateway port usage from the kernel's conntrack table.\n"
	      "\n"
	      "commands:\n"
	      "  run       follow conntrack, keep the live state in SQLite and\n"
	      "            serve the HTTP API (needs CAP_NET_ADMIN)\n"
	      "  serve     serve the HTTP API from an existing database, read-only\n"
	      "  import    build or extend a database from conntrack captures\n"
	      "  top       a table of public IPs and their top consumers, live\n"
	      "            over HTTP or from a database, now or --at a moment\n"
	      "  lookup    who held a public ip:port at a moment (the mapping log)\n"
	      "  health    whether a running natscope is healthy (/healthz)\n"
	      "\n"
	      "options:\n"
	      "  -h, --help      this text; natscope <command> --help for a command\n"
	      "  -V, --version   print the version\n",
	      f);
}

int main(int argc, char **argv)
{
	log_init("natscope", NS_LOG_INFO);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version") ||
	    !strcmp(argv[1], "version")) {
		printf("natscope %s\n", NS_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "run"))
		return cli_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "serve"))
		return cli_serve(argc - 1, argv + 1);
	if (!strcmp(argv[1], "import"))
		return cli_import(argc - 1, argv + 1);
	if (!strcmp(argv[1], "top"))
		return cli_top(argc - 1, argv + 1);
	if (!strcmp(argv[1], "lookup"))
		return cli_lookup(argc - 1, argv + 1);
	if (!strcmp(argv[1], "health"))
		return cli_health(argc - 1, argv + 1);
	if (!strcmp(argv[1], "run-web")) /* natscope run's web process */
		return cli_run_web(argc - 1, argv + 1);
	fprintf(stderr, "natscope: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
