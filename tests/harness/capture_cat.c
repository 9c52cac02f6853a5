/*
 * capture_cat - read conntrack captures with collector/capture.c and print
 * one canonical line per record: what a human checks by eye and a fuzzer
 * drives (stdin when no file is given).
 *
 *   capture_cat [-f FORMAT] [-n] [-q] [FILE...]
 *
 *   -f FORMAT  list, extended, xml, proc, events, events-xml (default: detect)
 *   -n         no line numbers (to diff two formats of one capture)
 *   -q         print nothing per record, only the summary
 *
 * Records go to stdout:
 *
 *   LINE TYPE ts=MS|- FAMILY PROTO zone=N state=NAME|- SRC:PORT->DST:PORT
 *     SRC:PORT->DST:PORT id=N status=0xHEX timeout=S|-
 *
 * (IPv6 as [addr]:port; both tuples are original then reply.)  Errors
 * ("file:line: what") and a summary per file go to stderr.  Exit status:
 * 0 if every file was read without a malformed record, 1 otherwise,
 * 2 for a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "collector/capture.h"
#include "common/common.h"

static const char *const type_names[] = { "?", "new", "update", "destroy",
					  "dump" };

static void print_tuple(FILE *out, uint8_t family, const struct ct_tuple *t)
{
	struct ns_addr a = { .family = family };
	char src[NS_ADDR_STRLEN], dst[NS_ADDR_STRLEN];
	const char *l = family == AF_INET6 ? "[" : "";
	const char *r = family == AF_INET6 ? "]" : "";

	memcpy(a.bytes, t->src, 16);
	if (!ns_addr_format(&a, src))
		strcpy(src, "?");
	memcpy(a.bytes, t->dst, 16);
	if (!ns_addr_format(&a, dst))
		strcpy(dst, "?");
	fprintf(out, " %s%s%s:%u->%s%s%s:%u", l, src, r, t->sport, l, dst, r,
		t->dport);
}

static void print_record(FILE *out, const struct capture_record *rec,
			 int numbers)
{
	const struct ct_entry *e = &rec->e;
	const char *proto = ns_proto_name(e->proto);
	const char *state = ns_tcp_state_name(e->tcp_state);

	if (numbers)
		fprintf(out, "%u ", rec->line);
	fputs(e->type < 5 ? type_names[e->type] : "?", out);
	if (rec->ts_ms >= 0)
		fprintf(out, " ts=%" PRId64, rec->ts_ms);
	else
		fputs(" ts=-", out);
	fputs(e->family == AF_INET ? " ipv4" : e->family == AF_INET6 ? " ipv6" : " ?",
	      out);
	if (proto)
		fprintf(out, " %s", proto);
	else
		fprintf(out, " %u", e->proto);
	fprintf(out, " zone=%u state=%s", e->zone, state ? state : "-");
	print_tuple(out, e->family, &e->orig);
	print_tuple(out, e->family, &e->reply);
	fprintf(out, " id=%" PRIu32 " status=0x%" PRIx32, e->id, e->status);
	if (rec->timeout_s != UINT32_MAX)
		fprintf(out, " timeout=%" PRIu32 "\n", rec->timeout_s);
	else
		fputs(" timeout=-\n", out);
}

/* Reads one capture to its end.  0 if clean, 1 if anything was wrong. */
static int cat_one(FILE *in, const char *name, enum capture_format fmt,
		   int numbers, int quiet)
{
	struct capture_record rec;
	struct capture_stats st;
	struct capture *c;
	int rc, bad = 0;

	c = capture_open(in, name, fmt);
	if (!c) {
		if (errno != EBADMSG) /* EBADMSG is logged by capture_open */
			fprintf(stderr, "capture_cat: %s: %s\n", name,
				strerror(errno));
		return 1;
	}
	while ((rc = capture_next(c, &rec)) != 0) {
		if (rc > 0) {
			if (!quiet)
				print_record(stdout, &rec, numbers);
			continue;
		}
		fprintf(stderr, "%s\n", capture_error(c));
		bad = 1;
		if (errno != EBADMSG)
			break; /* fatal */
	}
	capture_stats(c, &st);
	fprintf(stderr, "capture_cat: %s: %s: %lu records, %lu errors, %lu lines "
		"(%lu skipped), %lu NUL bytes skipped\n", name,
		capture_format_name(capture_format(c)), st.records, st.errors,
		st.lines, st.skipped, st.nul_bytes);
	capture_close(c);
	return bad;
}

static int parse_format(const char *s, enum capture_format *fmt)
{
	static const struct {
		const char *name;
		enum capture_format fmt;
	} names[] = {
		{ "auto", CAPTURE_AUTO },	 { "list", CAPTURE_LIST },
		{ "extended", CAPTURE_LIST_EXTENDED },
		{ "xml", CAPTURE_LIST_XML },	 { "proc", CAPTURE_PROC },
		{ "events", CAPTURE_EVENTS },	 { "events-xml", CAPTURE_EVENTS_XML },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(s, names[i].name)) {
			*fmt = names[i].fmt;
			return 0;
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	enum capture_format fmt = CAPTURE_AUTO;
	int opt, numbers = 1, quiet = 0, bad = 0;

	log_init("capture_cat", NS_LOG_INFO);
	while ((opt = getopt(argc, argv, "f:nq")) != -1) {
		switch (opt) {
		case 'f':
			if (parse_format(optarg, &fmt) < 0) {
				fprintf(stderr, "capture_cat: unknown format %s\n",
					optarg);
				return 2;
			}
			break;
		case 'n':
			numbers = 0;
			break;
		case 'q':
			quiet = 1;
			break;
		default:
			fprintf(stderr, "usage: capture_cat [-f FORMAT] [-n] [-q] "
				"[FILE...]\n");
			return 2;
		}
	}
	if (optind == argc)
		return cat_one(stdin, "-", fmt, numbers, quiet);
	for (int i = optind; i < argc; i++) {
		FILE *in = fopen(argv[i], "r");

		if (!in) {
			fprintf(stderr, "capture_cat: %s: %s\n", argv[i],
				strerror(errno));
			bad = 1;
			continue;
		}
		bad |= cat_one(in, argv[i], fmt, numbers, quiet);
		fclose(in);
	}
	return bad;
}
