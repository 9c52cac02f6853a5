/*
 * test_capture.c - the capture reader against the real captures.
 *
 * Every fixture is read to its end with the record count checked against a
 * count made here independently (lines with " src=", or "<flow" tags);
 * the listings taken at one moment are compared entry by entry across
 * formats (plain / -o extended / -o xml / /proc), and so are the text and
 * XML event logs where they overlap; a few lines are checked by hand;
 * malformed text and XML must give EBADMSG at the right line and let the
 * next record through; and mutated copies of the samples (bit flips,
 * truncations, insertions) must never crash or read out of bounds (the
 * ASan build runs this too).
 *
 * The samples in brief (see also the report in the commit message):
 *   conntrack-L.txt / conntrack-L-extended-id.txt   the same listing, 1407
 *     lines, whose last 31 repeat the 31 IPv6 entries listed before them
 *     (same ids): 1376 distinct entries;
 *   conntrack-L.xml / proc-net-nf_conntrack.txt     the same 1376 entries,
 *     same timeouts, so taken at the same moment as the listing above;
 *   conntrack-E-timestamp-extended-id.txt           two captures of one
 *     burst in one file, the second after a 67594-byte NUL hole at line 2511;
 *   conntrack-E.xml   one complete document (2798 flows with <when>), then,
 *     from line 2802, the tail of another capture that starts in the middle
 *     of a flow: one error, 1966 more flows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <cmocka.h>

#include "collector/capture.h"
#include "common/common.h"

/* ---- helpers ---- */

struct parsed {
	struct capture_record *rec;
	size_t n, cap;
	unsigned errors;
	unsigned err_line[64]; /* line of the first errors */
	char err_msg[64][160];
	enum capture_format fmt;
	struct capture_stats st;
};

static char *fixture_path(const char *name)
{
	const char *dir = getenv("NATSCOPE_FIXTURES");
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/fixtures", name);
	return path;
}

/* Whole fixture in memory (NUL-terminated for convenience). */
static char *load(const char *name, size_t *len)
{
	FILE *f = fopen(fixture_path(name), "rb");
	char *buf;
	long n;

	if (!f)
		fail_msg("cannot open fixture %s", fixture_path(name));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* A FILE over a memory buffer (tmpfile: works for 0 bytes and NULs). */
static FILE *mem_file(const char *buf, size_t len)
{
	FILE *f = tmpfile();

	assert_non_null(f);
	if (len)
		assert_int_equal(fwrite(buf, 1, len, f), len);
	rewind(f);
	return f;
}

/* Reads a capture to its end.  Returns -1 if capture_open() failed. */
static int parse_file(FILE *f, const char *name, enum capture_format fmt,
		      struct parsed *p)
{
	struct capture *c;
	struct capture_record r;
	int rc;

	memset(p, 0, sizeof(*p));
	c = capture_open(f, name, fmt);
	if (!c)
		return -1;
	p->fmt = capture_format(c);
	while ((rc = capture_next(c, &r)) != 0) {
		if (rc < 0) {
			assert_int_equal(errno, EBADMSG);
			if (p->errors < 64) {
				const char *m = capture_error(c);
				const char *colon = strchr(m, ':');

				assert_non_null(colon);
				p->err_line[p->errors] = (unsigned)atoi(colon + 1);
				snprintf(p->err_msg[p->errors], 160, "%s", m);
			}
			p->errors++;
			continue;
		}
		if (p->n == p->cap) {
			p->cap = p->cap ? p->cap * 2 : 256;
			p->rec = realloc(p->rec, p->cap * sizeof(*p->rec));
			assert_non_null(p->rec);
		}
		p->rec[p->n++] = r;
	}
	capture_stats(c, &p->st);
	capture_close(c);
	return 0;
}

static void parse_fixture(const char *name, struct parsed *p)
{
	FILE *f = fopen(fixture_path(name), "r");

	if (!f)
		fail_msg("cannot open fixture %s", fixture_path(name));
	assert_int_equal(parse_file(f, name, CAPTURE_AUTO, p), 0);
	fclose(f);
}

static void parse_mem(const char *text, size_t len, enum capture_format fmt,
		      struct parsed *p)
{
	FILE *f = mem_file(text, len);

	assert_int_equal(parse_file(f, "mem", fmt, p), 0);
	fclose(f);
}

static void parsed_free(struct parsed *p)
{
	free(p->rec);
	p->rec = NULL;
}

static void assert_addr(int family, const uint8_t *b, const char *text)
{
	uint8_t want[16] = { 0 };

	assert_int_equal(inet_pton(family, text, want), 1);
	assert_memory_equal(b, want, 16);
}

static void assert_tuple(const struct ct_entry *e, int reply, const char *src,
			 unsigned sport, const char *dst, unsigned dport)
{
	const struct ct_tuple *t = reply ? &e->reply : &e->orig;

	assert_addr(e->family, t->src, src);
	assert_addr(e->family, t->dst, dst);
	assert_int_equal(t->sport, sport);
	assert_int_equal(t->dport, dport);
}

/* The parts of two entries a listing in another format must agree on.
 * ICMP echo ids are not in conntrack's XML (ports 0 there). */
static int same_tuples(const struct ct_entry *a, const struct ct_entry *b,
		       int icmp_ports)
{
	if (a->family != b->family || a->proto != b->proto)
		return 0;
	if (memcmp(a->orig.src, b->orig.src, 16) || memcmp(a->orig.dst, b->orig.dst, 16) ||
	    memcmp(a->reply.src, b->reply.src, 16) || memcmp(a->reply.dst, b->reply.dst, 16))
		return 0;
	if ((a->proto == IPPROTO_ICMP || a->proto == IPPROTO_ICMPV6) && !icmp_ports)
		return 1;
	return a->orig.sport == b->orig.sport && a->orig.dport == b->orig.dport &&
	       a->reply.sport == b->reply.sport && a->reply.dport == b->reply.dport;
}

/* Independent counts: text records are the lines with " src=" (NULs at a
 * line start do not matter), XML records the "<flow" tags. */
static size_t count_text(const char *buf, size_t len)
{
	size_t n = 0;

	for (const char *p = buf, *end = buf + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;

		if (memmem(p, (size_t)(le - p), " src=", 5))
			n++;
		p = le + 1;
	}
	return n;
}

static size_t count_xml(const char *buf, size_t len)
{
	size_t n = 0;

	for (const char *p = buf; (p = memmem(p, len - (size_t)(p - buf), "<flow", 5)); p += 5)
		if (p[5] == '>' || p[5] == ' ')
			n++;
	return n;
}

/* ---- every sample ---- */

static const struct {
	const char *name;
	enum capture_format fmt;
	size_t records;	/* what grep counts */
	unsigned errors;
	unsigned first_error_line;
} samples[] = {
	/* grep -c ' src=' / grep -c '<flow' */
	{ "conntrack-L.txt", CAPTURE_LIST, 1407, 0, 0 },
	{ "conntrack-L-extended-id.txt", CAPTURE_LIST_EXTENDED, 1407, 0, 0 },
	{ "conntrack-L.xml", CAPTURE_LIST_XML, 1376, 0, 0 },
	{ "proc-net-nf_conntrack.txt", CAPTURE_PROC, 1376, 0, 0 },
	{ "conntrack-E-timestamp-extended-id.txt", CAPTURE_EVENTS, 5027, 0, 0 },
	/* line 2802 is the second half of a flow whose start is missing */
	{ "conntrack-E.xml", CAPTURE_EVENTS_XML, 4764, 1, 2802 },
	{ "lab-L.txt", CAPTURE_LIST, 24, 0, 0 },
	{ "lab-L-extended-id.txt", CAPTURE_LIST_EXTENDED, 24, 0, 0 },
	{ "lab-L-acct-ktimestamp.txt", CAPTURE_LIST_EXTENDED, 25, 0, 0 },
	{ "lab-L.xml", CAPTURE_LIST_XML, 24, 0, 0 },
	{ "lab-L-acct-ktimestamp.xml", CAPTURE_LIST_XML, 25, 0, 0 },
	{ "lab-proc.txt", CAPTURE_PROC, 24, 0, 0 },
	{ "lab-proc-acct.txt", CAPTURE_PROC, 25, 0, 0 },
	{ "lab-E.txt", CAPTURE_EVENTS, 82, 0, 0 },
	{ "lab-E-timestamp-extended-id.txt", CAPTURE_EVENTS, 82, 0, 0 },
	{ "lab-E.xml", CAPTURE_EVENTS_XML, 82, 0, 0 },
};

static void test_samples(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		struct parsed p;
		size_t len, counted;
		char *buf = load(samples[i].name, &len);
		int xml = samples[i].fmt == CAPTURE_LIST_XML ||
			  samples[i].fmt == CAPTURE_EVENTS_XML;

		counted = xml ? count_xml(buf, len) : count_text(buf, len);
		parse_fixture(samples[i].name, &p);
		if (p.n != counted || p.errors != samples[i].errors)
			fail_msg("%s: %zu records (counted %zu), %u errors, first: %s",
				 samples[i].name, p.n, counted, p.errors,
				 p.errors ? p.err_msg[0] : "-");
		assert_int_equal(counted, samples[i].records);
		assert_int_equal(p.fmt, samples[i].fmt);
		if (samples[i].errors)
			assert_int_equal(p.err_line[0], samples[i].first_error_line);
		assert_int_equal(p.st.records, p.n);
		assert_int_equal(p.st.errors, p.errors);
		for (size_t j = 0; j < p.n; j++) {
			const struct ct_entry *e = &p.rec[j].e;

			assert_true(e->family == AF_INET || e->family == AF_INET6);
			assert_true(j == 0 || p.rec[j].line > p.rec[j - 1].line);
			if (samples[i].fmt == CAPTURE_EVENTS ||
			    samples[i].fmt == CAPTURE_EVENTS_XML)
				assert_true(e->type >= CTMSG_NEW && e->type <= CTMSG_DESTROY);
			else
				assert_int_equal(e->type, CTMSG_DUMP);
			if (e->proto == IPPROTO_TCP && e->type != CTMSG_DESTROY)
				assert_true(e->tcp_state < NS_TCP_STATES);
			if (e->proto != IPPROTO_TCP)
				assert_int_equal(e->tcp_state, NS_TCP_STATE_UNKNOWN);
		}
		parsed_free(&p);
		free(buf);
	}
}

/* What the samples hold besides the records. */
static void test_sample_details(void **state)
{
	struct parsed p;

	(void)state;
	/* the NUL hole: 67594 bytes at the start of line 2511, skipped */
	parse_fixture("conntrack-E-timestamp-extended-id.txt", &p);
	assert_int_equal(p.st.nul_bytes, 67594);
	assert_int_equal(p.rec[2510].line, 2511);
	assert_int_equal(p.rec[2510].ts_ms, 1795572305377);
	assert_int_equal(p.rec[2510].e.id, 1039535073);
	parsed_free(&p);

	/* conntrack's summary line (stderr captured with 2>&1) is skipped */
	parse_fixture("lab-L-extended-id.txt", &p);
	assert_int_equal(p.st.skipped, 1);
	assert_int_equal(p.rec[0].line, 2);
	parsed_free(&p);
	parse_fixture("lab-E.xml", &p);
	assert_int_equal(p.st.skipped, 1); /* after </conntrack> */
	parsed_free(&p);

	/* the duplicated IPv6 entries at the end of the -L listings */
	parse_fixture("conntrack-L-extended-id.txt", &p);
	for (size_t i = 1376; i < 1407; i++) {
		size_t j;

		assert_int_equal(p.rec[i].e.family, AF_INET6);
		for (j = 0; j < 1376; j++)
			if (p.rec[j].e.id == p.rec[i].e.id)
				break;
		assert_true(j < 1376);
		assert_true(same_tuples(&p.rec[i].e, &p.rec[j].e, 1));
	}
	parsed_free(&p);
}

/* ---- detection ---- */

static void test_detect(void **state)
{
	static const struct {
		const char *text;
		enum capture_format fmt;
		size_t nuls; /* leading NUL bytes (the text starts after them) */
	} cases[] = {
		{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
		  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 [ASSURED] mark=0 use=1\n",
		  CAPTURE_LIST, 0 },
		{ "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n"
		  "\n"
		  "unknown  50 29 src=1.1.1.1 dst=2.2.2.2 src=2.2.2.2 dst=1.1.1.1 mark=0 use=1\n",
		  CAPTURE_LIST, 0 },
		{ "ipv4     2 udp      17 24 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
		  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 mark=0 use=1 id=7\n",
		  CAPTURE_LIST_EXTENDED, 0 },
		/* extended with a zone: zone=N is printed for N != 0 only */
		{ "ipv4     2 udp      17 24 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
		  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 mark=0 zone=5 use=1\n",
		  CAPTURE_LIST_EXTENDED, 0 },
		/* the kernel prints zone=0 */
		{ "ipv4     2 udp      17 24 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
		  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 mark=0 zone=0 use=2\n",
		  CAPTURE_PROC, 0 },
		/* ... and IPv6 in full (here with zone-orig, so no zone=) */
		{ "ipv6     10 udp      17 24 src=fd00:0001:0000:0000:0000:0000:0000:0002 "
		  "dst=fd00:0002:0000:0000:0000:0000:0000:0002 sport=1 dport=2 zone-orig=7 "
		  "src=fd00:0002:0000:0000:0000:0000:0000:0002 "
		  "dst=fd00:0002:0000:0000:0000:0000:0000:0001 sport=2 dport=1 mark=0 use=2\n",
		  CAPTURE_PROC, 0 },
		/* ... and GRE's timeouts; the tell may come on a later line */
		{ "ipv4     2 unknown  50 29 src=1.1.1.1 dst=2.2.2.2 src=2.2.2.2 dst=1.1.1.1 mark=0 use=2\n"
		  "ipv4     2 gre      47 29 timeout=0, stream_timeout=0 src=1.1.1.1 dst=2.2.2.2 "
		  "srckey=0x1 dstkey=0x2 src=2.2.2.2 dst=1.1.1.1 srckey=0x2 dstkey=0x1 mark=0 use=2\n",
		  CAPTURE_PROC, 0 },
		{ "    [NEW] tcp      6 120 SYN_SENT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
		  "[UNREPLIED] src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1\n",
		  CAPTURE_EVENTS, 0 },
		{ "[1732530000.123456]\t[DESTROY] ipv4     2 udp      17 src=1.1.1.1 "
		  "dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1\n",
		  CAPTURE_EVENTS, 0 },
		/* a NUL hole before the first line */
		{ "\0\0\0\0[1732530000.123456]\t[DESTROY] ipv4     2 udp      17 src=1.1.1.1 "
		  "dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1\n",
		  CAPTURE_EVENTS, 4 },
		{ "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<conntrack>\n</conntrack>\n",
		  CAPTURE_LIST_XML, 0 },
		{ "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<conntrack>\n<flow type=\"new\">",
		  CAPTURE_EVENTS_XML, 0 },
		{ "<flow><meta direction=\"original\">", CAPTURE_LIST_XML, 0 },
		/* garbage first, then a record: the record decides */
		{ "garbage\nmore garbage\nudp      17 24 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
		  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 mark=0 use=1\n",
		  CAPTURE_LIST, 0 },
		/* nothing to detect: accepted, no records */
		{ "", CAPTURE_AUTO, 0 },
		{ "\n\n  \n", CAPTURE_AUTO, 0 },
		{ "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.\n",
		  CAPTURE_AUTO, 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct parsed p;
		size_t len = cases[i].nuls + strlen(cases[i].text + cases[i].nuls);

		parse_mem(cases[i].text, len, CAPTURE_AUTO, &p);
		if (p.fmt != cases[i].fmt)
			fail_msg("case %zu: detected %s, expected %s", i,
				 capture_format_name(p.fmt),
				 capture_format_name(cases[i].fmt));
		parsed_free(&p);
	}
}

static void test_not_a_capture(void **state)
{
	static const char *const junk[] = {
		"cpu=0   \tfound=0 invalid=0 insert=2431601 insert_failed=0\n",
		"hello\nworld\n",
		"\x7f" "ELF\x02\x01\x01",
		"<html><body>no</body></html>\n",
	};
	FILE *f;

	(void)state;
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		f = mem_file(junk[i], strlen(junk[i]));
		errno = 0;
		assert_null(capture_open(f, "junk", CAPTURE_AUTO));
		assert_int_equal(errno, EBADMSG);
		fclose(f);
	}
	/* a directory opens but cannot be read: EIO */
	f = fopen(".", "r");
	if (f) {
		errno = 0;
		assert_null(capture_open(f, "dir", CAPTURE_AUTO));
		assert_int_equal(errno, EIO);
		fclose(f);
	}
	f = mem_file("", 0);
	errno = 0;
	assert_null(capture_open(NULL, "x", CAPTURE_AUTO));
	assert_int_equal(errno, EINVAL);
	assert_null(capture_open(f, "x", (enum capture_format)99));
	assert_int_equal(errno, EINVAL);
	fclose(f);
}

static void test_format_names(void **state)
{
	(void)state;
	assert_string_equal(capture_format_name(CAPTURE_LIST), "conntrack -L");
	assert_string_equal(capture_format_name(CAPTURE_LIST_EXTENDED),
			    "conntrack -L -o extended");
	assert_string_equal(capture_format_name(CAPTURE_LIST_XML), "conntrack -L -o xml");
	assert_string_equal(capture_format_name(CAPTURE_PROC), "/proc/net/nf_conntrack");
	assert_string_equal(capture_format_name(CAPTURE_EVENTS), "conntrack -E");
	assert_string_equal(capture_format_name(CAPTURE_EVENTS_XML), "conntrack -E -o xml");
	assert_string_equal(capture_format_name(CAPTURE_AUTO), "empty");
	assert_null(capture_format_name((enum capture_format)42));
}

/* A forced format is used as given: the XML listing forced to text gives
 * an error per line, forced to XML events it reads as is. */
static void test_forced_format(void **state)
{
	struct parsed p;
	FILE *f;

	(void)state;
	f = fopen(fixture_path("lab-L.xml"), "r");
	assert_non_null(f);
	assert_int_equal(parse_file(f, "lab-L.xml", CAPTURE_LIST, &p), 0);
	assert_int_equal(p.fmt, CAPTURE_LIST);
	assert_int_equal(p.n, 0);
	assert_int_equal(p.errors, 27); /* every line but the summary */
	parsed_free(&p);
	rewind(f);
	assert_int_equal(parse_file(f, "lab-L.xml", CAPTURE_EVENTS_XML, &p), 0);
	assert_int_equal(p.fmt, CAPTURE_EVENTS_XML);
	assert_int_equal(p.n, 24);
	assert_int_equal(p.errors, 0);
	parsed_free(&p);
	fclose(f);
}

/* ---- cross-checks between formats ---- */

/* conntrack -L and -L -o extended,id: the same listing line by line. */
static void test_plain_vs_extended(void **state)
{
	struct parsed a, b;

	(void)state;
	parse_fixture("conntrack-L.txt", &a);
	parse_fixture("conntrack-L-extended-id.txt", &b);
	assert_int_equal(a.n, b.n);
	for (size_t i = 0; i < a.n; i++) {
		struct ct_entry x = a.rec[i].e, y = b.rec[i].e;

		assert_int_equal(x.id, 0);
		assert_int_not_equal(y.id, 0);
		y.id = 0;
		assert_memory_equal(&x, &y, sizeof(x));
		assert_int_equal(a.rec[i].timeout_s, b.rec[i].timeout_s);
		assert_int_equal(a.rec[i].line, b.rec[i].line);
	}
	parsed_free(&a);
	parsed_free(&b);
}

/* -o extended,id, -o xml and /proc of one moment: every entry of the XML
 * and of /proc is in the extended listing with the same tuples, state,
 * timeout, status and zone (and, for the XML, id). */
static void test_listings_agree(void **state)
{
	struct parsed ext, xml, proc;

	(void)state;
	parse_fixture("conntrack-L-extended-id.txt", &ext);
	parse_fixture("conntrack-L.xml", &xml);
	parse_fixture("proc-net-nf_conntrack.txt", &proc);
	assert_int_equal(xml.n, proc.n);
	for (size_t i = 0; i < xml.n; i++) {
		const struct capture_record *x = &xml.rec[i], *m = NULL;

		for (size_t j = 0; j < ext.n && !m; j++)
			if (ext.rec[j].e.id == x->e.id)
				m = &ext.rec[j];
		if (!m)
			fail_msg("XML line %u: id %u not in the extended listing",
				 x->line, x->e.id);
		assert_true(same_tuples(&x->e, &m->e, 0));
		assert_int_equal(x->e.tcp_state, m->e.tcp_state);
		assert_int_equal(x->e.status, m->e.status);
		assert_int_equal(x->e.zone, m->e.zone);
		assert_int_equal(x->timeout_s, m->timeout_s);
		if (x->e.proto == IPPROTO_ICMP)
			assert_int_equal(x->e.orig.sport, 0); /* not in the XML */
	}
	for (size_t i = 0; i < proc.n; i++) {
		const struct capture_record *r = &proc.rec[i], *m = NULL;

		for (size_t j = 0; j < ext.n && !m; j++)
			if (same_tuples(&ext.rec[j].e, &r->e, 1))
				m = &ext.rec[j];
		if (!m)
			fail_msg("/proc line %u not in the extended listing", r->line);
		assert_int_equal(r->e.id, 0); /* /proc has no ids */
		assert_int_equal(r->e.tcp_state, m->e.tcp_state);
		assert_int_equal(r->e.status, m->e.status);
		assert_int_equal(r->e.zone, m->e.zone);
		assert_int_equal(r->timeout_s, m->timeout_s);
		/* and the XML entry at the same position is the same entry */
		assert_true(same_tuples(&r->e, &xml.rec[i].e, 0));
	}
	parsed_free(&ext);
	parsed_free(&xml);
	parsed_free(&proc);
}

static int event_key_eq(const struct capture_record *a, const struct capture_record *b)
{
	return a->e.type == b->e.type && a->e.id == b->e.id &&
	       a->e.tcp_state == b->e.tcp_state && a->timeout_s == b->timeout_s;
}

/* The text and XML event logs: several listeners of one burst, each
 * losing different events.  Every XML event that the text log also has
 * (same type, id, state and timeout) has the same tuples and status, and
 * its <when> (read as UTC, the capturing machine's zone) is within the
 * second the text timestamp falls in. */
static void test_events_agree(void **state)
{
	struct parsed txt, xml;
	size_t matched = 0, timed = 0;

	(void)state;
	parse_fixture("conntrack-E-timestamp-extended-id.txt", &txt);
	parse_fixture("conntrack-E.xml", &xml);
	for (size_t i = 0; i < xml.n; i++) {
		const struct capture_record *x = &xml.rec[i];
		int64_t best = INT64_MAX;
		int found = 0;

		for (size_t j = 0; j < txt.n; j++) {
			const struct capture_record *t = &txt.rec[j];

			if (!event_key_eq(x, t))
				continue;
			found = 1;
			assert_true(same_tuples(&x->e, &t->e, 0));
			assert_int_equal(x->e.status, t->e.status);
			assert_int_equal(x->e.zone, t->e.zone);
			if (x->ts_ms >= 0 && llabs(t->ts_ms - x->ts_ms) < llabs(best))
				best = t->ts_ms - x->ts_ms;
		}
		matched += (size_t)found;
		if (found && x->ts_ms >= 0) {
			timed++;
			/* <when> is whole seconds: text ts in [when, when + 1 s) */
			if (best < 0 || best >= 1000)
				fail_msg("XML line %u: text timestamp %+lld ms from <when>",
					 x->line, (long long)best);
		}
	}
	assert_int_equal(matched, 4587);
	assert_int_equal(timed, 2621);
	parsed_free(&txt);
	parsed_free(&xml);
}

/* The lab captures, all taken at one moment: every format agrees. */
static void test_lab_formats_agree(void **state)
{
	static const char *const others[] = { "lab-L.txt", "lab-L.xml", "lab-proc.txt" };
	struct parsed ext;

	(void)state;
	parse_fixture("lab-L-extended-id.txt", &ext);
	for (size_t k = 0; k < 3; k++) {
		struct parsed o;

		parse_fixture(others[k], &o);
		assert_int_equal(o.n, ext.n);
		for (size_t i = 0; i < o.n; i++) {
			const struct capture_record *r = &o.rec[i], *m = NULL;
			int icmp_ports = k != 1;

			for (size_t j = 0; j < ext.n && !m; j++)
				if (same_tuples(&ext.rec[j].e, &r->e, icmp_ports) &&
				    (!r->e.id || r->e.id == ext.rec[j].e.id))
					m = &ext.rec[j];
			if (!m)
				fail_msg("%s line %u not in lab-L-extended-id.txt",
					 others[k], r->line);
			assert_int_equal(r->e.zone, m->e.zone);
			assert_int_equal(r->e.status, m->e.status);
			assert_int_equal(r->timeout_s, m->timeout_s);
			if (r->e.proto == IPPROTO_TCP)
				assert_int_equal(r->e.tcp_state, m->e.tcp_state);
		}
		parsed_free(&o);
	}
	parsed_free(&ext);
}

/* ---- hand-checked lines ---- */

static const struct capture_record *find_id(const struct parsed *p, uint32_t id)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->rec[i].e.id == id)
			return &p->rec[i];
	fail_msg("id %u not found", id);
	return NULL;
}

static const struct capture_record *find_port(const struct parsed *p,
					      uint8_t proto, uint16_t dport)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->rec[i].e.proto == proto && p->rec[i].e.orig.dport == dport)
			return &p->rec[i];
	fail_msg("proto %u dport %u not found", proto, dport);
	return NULL;
}

static void test_hand_checked(void **state)
{
	const struct capture_record *r;
	struct parsed p;

	(void)state;
	parse_fixture("conntrack-L-extended-id.txt", &p);
	/* line 1, IPv6 masquerade: ipv6 10 tcp 6 34 CLOSE_WAIT
	 * src=2001:db8:1::2 dst=2001:db8:2::2 sport=40990 dport=443
	 * src=2001:db8:2::2 dst=2001:db8:2::1 sport=443 dport=40990
	 * [ASSURED] mark=0 use=1 id=938761400 */
	r = &p.rec[0];
	assert_int_equal(r->line, 1);
	assert_int_equal(r->e.type, CTMSG_DUMP);
	assert_int_equal(r->e.family, AF_INET6);
	assert_int_equal(r->e.proto, IPPROTO_TCP);
	assert_int_equal(r->e.tcp_state, 5); /* CLOSE_WAIT */
	assert_tuple(&r->e, 0, "2001:db8:1::2", 40990, "2001:db8:2::2", 443);
	assert_tuple(&r->e, 1, "2001:db8:2::2", 443, "2001:db8:2::1", 40990);
	assert_int_equal(r->e.status, IPS_ASSURED | IPS_SEEN_REPLY);
	assert_int_equal(r->e.id, 938761400);
	assert_int_equal(r->e.zone, 0);
	assert_int_equal(r->timeout_s, 34);
	assert_int_equal(r->ts_ms, -1);
	/* line 3, TIME_WAIT: tcp 6 94 TIME_WAIT src=198.18.0.2 dst=203.0.113.2
	 * sport=58022 dport=443 src=203.0.113.2 dst=203.0.113.1 sport=443
	 * dport=58022 [ASSURED] mark=0 use=1 id=3128149370 */
	r = &p.rec[2];
	assert_int_equal(r->e.family, AF_INET);
	assert_int_equal(r->e.tcp_state, 7); /* TIME_WAIT */
	assert_tuple(&r->e, 0, "198.18.0.2", 58022, "203.0.113.2", 443);
	assert_tuple(&r->e, 1, "203.0.113.2", 443, "203.0.113.1", 58022);
	assert_int_equal(r->e.id, 3128149370u);
	assert_int_equal(r->timeout_s, 94);
	/* line 2, UDP: no state */
	assert_int_equal(p.rec[1].e.proto, IPPROTO_UDP);
	assert_int_equal(p.rec[1].e.tcp_state, NS_TCP_STATE_UNKNOWN);
	/* ICMP: icmp 1 24 src=198.18.0.2 dst=203.0.113.2 type=8 code=0 id=1000
	 * src=203.0.113.2 dst=203.0.113.1 type=0 code=0 id=1000 mark=0 use=1
	 * id=2690138625: the echo id in both ports, the entry's id apart */
	r = find_id(&p, 2690138625u);
	assert_int_equal(r->e.proto, IPPROTO_ICMP);
	assert_tuple(&r->e, 0, "198.18.0.2", 1000, "203.0.113.2", 1000);
	assert_tuple(&r->e, 1, "203.0.113.2", 1000, "203.0.113.1", 1000);
	assert_int_equal(r->e.tcp_state, NS_TCP_STATE_UNKNOWN);
	assert_int_equal(r->e.status, IPS_SEEN_REPLY);
	parsed_free(&p);

	/* the same IPv6 entry from /proc, addresses printed in full */
	parse_fixture("proc-net-nf_conntrack.txt", &p);
	assert_int_equal(p.rec[0].e.family, AF_INET6);
	assert_tuple(&p.rec[0].e, 0, "2001:db8:1::2", 40990, "2001:db8:2::2", 443);
	assert_tuple(&p.rec[0].e, 1, "2001:db8:2::2", 443, "2001:db8:2::1", 40990);
	assert_int_equal(p.rec[0].e.id, 0);
	parsed_free(&p);

	/* text event, line 1: [1795572305.381235]\t    [NEW] ipv4 2 tcp 6 120
	 * SYN_SENT ... [UNREPLIED] ... id=1039535073 */
	parse_fixture("conntrack-E-timestamp-extended-id.txt", &p);
	r = &p.rec[0];
	assert_int_equal(r->e.type, CTMSG_NEW);
	assert_int_equal(r->ts_ms, 1795572305381);
	assert_int_equal(r->e.tcp_state, 1); /* SYN_SENT */
	assert_int_equal(r->e.status, 0);    /* [UNREPLIED] */
	assert_int_equal(r->timeout_s, 120);
	assert_int_equal(r->e.id, 1039535073);
	assert_tuple(&r->e, 0, "198.18.1.2", 44782, "203.0.113.2", 443);
	assert_tuple(&r->e, 1, "203.0.113.2", 443, "203.0.113.9", 44782);
	/* a DESTROY without timeout */
	r = &p.rec[2509];
	assert_int_equal(r->e.type, CTMSG_DESTROY);
	assert_int_equal(r->timeout_s, UINT32_MAX);
	assert_int_equal(r->e.id, 2603954785u);
	parsed_free(&p);

	/* the same event in XML, line 3, <when> 2:05:05 25/11/2026 (UTC) */
	parse_fixture("conntrack-E.xml", &p);
	r = &p.rec[0];
	assert_int_equal(r->line, 3);
	assert_int_equal(r->e.type, CTMSG_NEW);
	assert_int_equal(r->ts_ms, 1795572305000);
	assert_int_equal(r->e.tcp_state, 1);
	assert_int_equal(r->e.status, 0);
	assert_int_equal(r->e.id, 1039535073);
	assert_tuple(&r->e, 1, "203.0.113.2", 443, "203.0.113.9", 44782);
	/* after the broken line 2802: flows without <when> */
	assert_int_equal(p.rec[2798].line, 2803);
	assert_int_equal(p.rec[2798].ts_ms, -1);
	parsed_free(&p);
}

/* Zones, rarer protocols and extras, from the lab captures. */
static void test_lab_lines(void **state)
{
	static const char *const files[] = { "lab-L-extended-id.txt", "lab-L.xml",
					     "lab-proc.txt" };
	const struct capture_record *r;
	struct parsed p;

	(void)state;
	for (size_t k = 0; k < 3; k++) {
		int xml = k == 1;

		parse_fixture(files[k], &p);
		/* zone=5 (both directions) */
		r = find_port(&p, IPPROTO_UDP, 5353);
		assert_int_equal(r->e.zone, 5);
		/* zone-orig=7: the reply tuple is in the default zone */
		r = find_port(&p, IPPROTO_UDP, 5354);
		assert_int_equal(r->e.zone, 0);
		/* zone-reply=9 */
		r = find_port(&p, IPPROTO_UDP, 5355);
		assert_int_equal(r->e.zone, 9);
		/* GRE keys 0x11/0x22 in the ports, as over netlink */
		r = find_port(&p, IPPROTO_GRE, 0x22);
		assert_int_equal(r->e.orig.sport, 0x11);
		assert_int_equal(r->e.reply.sport, 0x22);
		assert_int_equal(r->e.reply.dport, 0x11);
		assert_int_equal(r->e.status, 0); /* [UNREPLIED] */
		/* ESP, "unknown 50": no ports */
		r = find_port(&p, 50, 0);
		assert_tuple(&r->e, 0, "10.9.0.1", 0, "10.9.0.2", 0);
		/* SCTP and UDP-Lite ports; SCTP's state is not a TCP state */
		r = find_port(&p, IPPROTO_SCTP, 5555);
		assert_int_equal(r->e.orig.sport, 4444);
		assert_int_equal(r->e.tcp_state, NS_TCP_STATE_UNKNOWN);
		r = find_port(&p, IPPROTO_UDPLITE, 99);
		assert_int_equal(r->e.reply.dport, 3333);
		/* SYN_SENT2 */
		r = find_port(&p, IPPROTO_TCP, 2);
		assert_int_equal(r->e.family, AF_INET6);
		assert_int_equal(r->e.tcp_state, 9);
		/* ICMPv6 echo id 12819, not in the XML */
		for (size_t i = 0; i < p.n; i++) {
			if (p.rec[i].e.proto != IPPROTO_ICMPV6)
				continue;
			assert_int_equal(p.rec[i].e.orig.sport, xml ? 0 : 12819);
			assert_int_equal(p.rec[i].e.reply.dport, xml ? 0 : 12819);
		}
		parsed_free(&p);
	}

	/* counters, delta-time and "[start=Wed Dec  2 05:11:45 2026]" */
	parse_fixture("lab-L-acct-ktimestamp.txt", &p);
	assert_int_equal(p.errors, 0);
	parsed_free(&p);

	/* [USERSPACE] portid=... progname=... after events made with conntrack */
	parse_fixture("lab-E-timestamp-extended-id.txt", &p);
	r = &p.rec[p.n - 1];
	assert_int_equal(r->e.type, CTMSG_DESTROY);
	assert_int_equal(r->e.tcp_state, 9);
	assert_int_equal(r->timeout_s, 49);
	parsed_free(&p);

	/* plain events have neither timestamp nor ids */
	parse_fixture("lab-E.txt", &p);
	for (size_t i = 0; i < p.n; i++) {
		assert_int_equal(p.rec[i].ts_ms, -1);
		assert_int_equal(p.rec[i].e.id, 0);
	}
	parsed_free(&p);
}

/* <when> is local time: read in the importing process's zone. */
static void test_when_local_time(void **state)
{
	static const char doc[] =
		"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<conntrack>\n"
		"<flow type=\"new\"><meta direction=\"original\"><layer3 protonum=\"2\" "
		"protoname=\"ipv4\"><src>1.1.1.1</src><dst>2.2.2.2</dst></layer3><layer4 "
		"protonum=\"17\" protoname=\"udp\"><sport>1</sport><dport>2</dport></layer4>"
		"</meta><meta direction=\"reply\"><layer3 protonum=\"2\" protoname=\"ipv4\">"
		"<src>2.2.2.2</src><dst>1.1.1.1</dst></layer3><layer4 protonum=\"17\" "
		"protoname=\"udp\"><sport>2</sport><dport>1</dport></layer4></meta><meta "
		"direction=\"independent\"><timeout>10</timeout><id>2893446068</id>"
		"<unreplied/></meta><when><hour>10</hour><min>37</min><sec>18</sec><wday>4"
		"</wday><day>2</day><month>12</month><year>2026</year></when></flow> "
		"[USERSPACE] portid=10319\n</conntrack>\n";
	struct parsed p;

	(void)state;
	/* conntrack -E -o xml,timestamp run with TZ=Asia/Kolkata at
	 * 2026-12-02 05:07:18 UTC printed hour 10, min 37 */
	setenv("TZ", "Asia/Kolkata", 1);
	tzset();
	parse_mem(doc, sizeof(doc) - 1, CAPTURE_AUTO, &p);
	setenv("TZ", "UTC", 1);
	tzset();
	assert_int_equal(p.n, 1);
	assert_int_equal(p.rec[0].ts_ms, 1796188038000);
	parsed_free(&p);
	parse_mem(doc, sizeof(doc) - 1, CAPTURE_AUTO, &p);
	assert_int_equal(p.rec[0].ts_ms, 1796188038000 + 330 * 60 * 1000);
	parsed_free(&p);
}

/* ---- malformed input ---- */

#define GOOD4 "tcp      6 94 TIME_WAIT src=198.18.0.2 dst=203.0.113.2 sport=58022 " \
	      "dport=443 src=203.0.113.2 dst=203.0.113.1 sport=443 dport=58022 "   \
	      "[ASSURED] mark=0 use=1"

static const struct {
	const char *line; /* NULL: a good line */
	const char *why;  /* a word of the message */
} bad_text[] = {
	{ "tcp      6 94 TIME_WAIT src=198.18.0.2 dst=203.0.113.2 sport=58022 dport=443 src=203.0",
	  "bad address" },
	{ "tcp      6 94 TIME_WAIT src=198.18.0.2 dst=203.0.113.2 sport=58022 dport=443",
	  "no reply tuple" },
	{ "tcp      6 94 TIME_WAIT src=198.18.0.2 dst=203.0.113.2 sport=58022 dport=443 "
	  "src=203.0.113.2 dst=203.0.113.1 sport=443", "no dport=" },
	{ "tcp      6 94 TIME_WAIT mark=0 use=1", "no tuple" },
	{ "tcp      6 94 TIME_WAIT", "no tuple" },
	{ "tcp", "protocol number" },
	{ "hello world", "not a protocol" },
	{ "\x01\x02\x03\xff\xfe", "not a protocol" },
	{ "tcp      6 94 TIME_WAIT src=300.1.1.1 dst=203.0.113.2 sport=1 dport=2 "
	  "src=203.0.113.2 dst=203.0.113.1 sport=2 dport=1", "bad address" },
	{ "tcp      6 94 TIME_WAIT src=1.2.3 dst=203.0.113.2 sport=1 dport=2 "
	  "src=203.0.113.2 dst=203.0.113.1 sport=2 dport=1", "bad address" },
	{ "tcp      6 94 TIME_WAIT src=2001:db8::g dst=2001:db8::1 sport=1 dport=2 "
	  "src=2001:db8::1 dst=2001:db8::2 sport=2 dport=1", "bad address" },
	{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2001:db8::1 sport=1 dport=2 "
	  "src=2001:db8::1 dst=1.1.1.1 sport=2 dport=1", "other family" },
	{ "ipv6     10 tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1", "other family" },
	{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=65536 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1", "bad port" },
	{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=99999999999999999999999", "bad port" },
	{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=-1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1", "bad port" },
	{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1", "repeated" },
	{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 src=3.3.3.3", "third tuple" },
	{ "tcp      17 94 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1", "protocol number" },
	{ "ipv4     10 tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1", "layer 3" },
	{ "tcp      6 94 TIME_WALT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1", "TCP state" },
	{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 [ASSURED] mark=0 [start=Wed Nov",
	  "unterminated" },
	{ "[12a.3]\t[NEW] tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1", "timestamp" },
	{ "[FOO] tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1", "event type" },
	{ "icmp     1 24 src=1.1.1.1 dst=2.2.2.2 type=8 code=0 id=70000 "
	  "src=2.2.2.2 dst=1.1.1.1 type=0 code=0 id=1", "ICMP id" },
	{ "icmp     1 24 src=1.1.1.1 dst=2.2.2.2 type=8 code=0 "
	  "src=2.2.2.2 dst=1.1.1.1 type=0 code=0 id=1", "no id=" },
	{ "gre      47 29 src=1.1.1.1 dst=2.2.2.2 srckey=0x10000 dstkey=0x2 "
	  "src=2.2.2.2 dst=1.1.1.1 srckey=0x2 dstkey=0x1", "GRE key" },
	{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 id=1 id=2", "repeated" },
	{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 zone=65536", "bad zone" },
	{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 [ASSURED]x", "junk after" },
	{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 garbage", "unexpected" },
	{ "tcp      6 94 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 mark=0 use=1 id=4294967296", "bad id" },
	{ "tcp      6 99999999999 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
	  "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1", "bad timeout" },
};

/* Each bad line between two good ones: EBADMSG with its line number and
 * a message that says what is wrong; the good lines still come through. */
static void test_malformed_text(void **state)
{
	size_t n = sizeof(bad_text) / sizeof(bad_text[0]);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	struct capture_record r;
	struct capture *c;
	FILE *f;

	(void)state;
	assert_non_null(buf);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s\n%s\n", GOOD4,
					bad_text[i].line);
	len += (size_t)snprintf(buf + len, cap - len, "%s\n", GOOD4);
	f = mem_file(buf, len);
	c = capture_open(f, "mem", CAPTURE_AUTO);
	assert_non_null(c);
	assert_int_equal(capture_format(c), CAPTURE_LIST);
	for (size_t i = 0; i < n; i++) {
		char want[32];

		assert_int_equal(capture_next(c, &r), 1);
		assert_int_equal(r.line, 2 * i + 1);
		assert_tuple(&r.e, 1, "203.0.113.2", 443, "203.0.113.1", 58022);
		errno = 0;
		assert_int_equal(capture_next(c, &r), -1);
		assert_int_equal(errno, EBADMSG);
		snprintf(want, sizeof(want), "mem:%zu: ", 2 * i + 2);
		if (strncmp(capture_error(c), want, strlen(want)) ||
		    !strstr(capture_error(c), bad_text[i].why))
			fail_msg("line %zu: got \"%s\", want \"%s...%s\"", 2 * i + 2,
				 capture_error(c), want, bad_text[i].why);
	}
	assert_int_equal(capture_next(c, &r), 1);
	assert_int_equal(r.line, 2 * n + 1);
	assert_int_equal(capture_next(c, &r), 0);
	assert_int_equal(capture_next(c, &r), 0);
	capture_close(c);
	fclose(f);
	free(buf);
}

/* Long lines, NULs, CRLF, a cut last line. */
static void test_text_edges(void **state)
{
	size_t big = 300 * 1024, len = 0;
	char *buf = malloc(big + 4096);
	struct parsed p;

	(void)state;
	assert_non_null(buf);
	len += (size_t)sprintf(buf + len, "%s\n", GOOD4);
	memset(buf + len, 'a', big); /* longer than the reader's buffer */
	len += big;
	buf[len++] = '\n';
	len += (size_t)sprintf(buf + len, "%s\r\n", GOOD4); /* CRLF */
	memset(buf + len, 0, 100); /* a NUL hole, then a line */
	len += 100;
	len += (size_t)sprintf(buf + len, "%s\n", GOOD4);
	{
		static const char nul_inside[] = "tcp      6 94 TIME_WAIT src=1.1.1.1\0 dst=2.2.2.2\n";

		memcpy(buf + len, nul_inside, sizeof(nul_inside) - 1);
		len += sizeof(nul_inside) - 1;
	}
	len += (size_t)sprintf(buf + len, "%s", GOOD4); /* no final newline */
	parse_mem(buf, len, CAPTURE_AUTO, &p);
	assert_int_equal(p.n, 3);
	assert_int_equal(p.rec[0].line, 1);
	assert_int_equal(p.rec[1].line, 3);
	assert_int_equal(p.rec[2].line, 4);
	assert_int_equal(p.errors, 3);
	assert_int_equal(p.err_line[0], 2);
	assert_non_null(strstr(p.err_msg[0], "longer than"));
	assert_int_equal(p.err_line[1], 5);
	assert_non_null(strstr(p.err_msg[1], "NUL"));
	assert_int_equal(p.err_line[2], 6);
	assert_non_null(strstr(p.err_msg[2], "cut short"));
	assert_int_equal(p.st.nul_bytes, 100);
	assert_int_equal(p.st.lines, 6);
	parsed_free(&p);
	free(buf);
}

#define XFLOW(type, src, sport, extra)                                            \
	"<flow" type "><meta direction=\"original\"><layer3 protonum=\"2\" "      \
	"protoname=\"ipv4\"><src>" src "</src><dst>2.2.2.2</dst></layer3>"        \
	"<layer4 protonum=\"6\" protoname=\"tcp\"><sport>" sport "</sport>"      \
	"<dport>80</dport></layer4></meta><meta direction=\"reply\"><layer3 "     \
	"protonum=\"2\" protoname=\"ipv4\"><src>2.2.2.2</src><dst>9.9.9.9</dst>" \
	"</layer3><layer4 protonum=\"6\" protoname=\"tcp\"><sport>80</sport>"    \
	"<dport>" sport "</dport></layer4></meta><meta direction=\"independent\">" \
	"<state>ESTABLISHED</state><timeout>100</timeout><id>7</id><assured/>"    \
	extra "</meta></flow>\n"
#define XGOOD XFLOW("", "1.1.1.1", "1000", "")
#define XHEAD "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<conntrack>\n"

static const struct {
	const char *doc;
	size_t records;
	unsigned err_line; /* 0: no error */
	const char *why;
} bad_xml[] = {
	/* record-level: reported, the next flow is read */
	{ XHEAD XGOOD XFLOW("", "1.1.1.300", "1000", "") XGOOD "</conntrack>\n", 2, 4,
	  "bad address" },
	{ XHEAD XGOOD XFLOW("", "1.1.1.1", "70000", "") XGOOD "</conntrack>\n", 2, 4,
	  "bad port" },
	{ XHEAD XGOOD XFLOW(" type=\"mangled\"", "1.1.1.1", "1", "") XGOOD, 2, 4,
	  "flow type" },
	{ XHEAD XGOOD XFLOW("", "1.1.1.1", "1", "<state>NOPE</state>") XGOOD, 2, 4,
	  "state" },
	{ XHEAD XGOOD "<flow><meta direction=\"independent\"><id>1</id></meta></flow>\n"
	  XGOOD, 2, 4, "no <layer3>" },
	{ XHEAD XGOOD XFLOW(" type=\"new\"", "1.1.1.1", "1", "</meta><when><hour>1"
	  "</hour><min>2</min><sec>3</sec><day>31</day><month>11</month><year>2026"
	  "</year></when><meta direction=\"independent\">") XGOOD, 2, 4, "<when>" },
	/* XML errors: reported, the reader resumes at the next <flow> line */
	{ XHEAD XGOOD "<flow><meta direction=\"original\"><layer3></meta></flow>\n"
	  XGOOD "</conntrack>\n", 2, 4, "mismatched tag" },
	{ XHEAD XGOOD "<flow \x01></flow>\n" XGOOD, 2, 4, "XML" },
	{ XHEAD XGOOD "</conntrack>\nnot xml\n" XGOOD, 2, 5, "not conntrack XML" },
	{ XHEAD XGOOD "</conntrack><x/>\n" XGOOD, 2, 4, "after </conntrack>" },
	{ "<?xml version=\"1.0\"?>\n<!DOCTYPE conntrack [<!ENTITY a \"aaaa\">]>\n"
	  "<conntrack>\n" XGOOD, 1, 2, "DOCTYPE" },
	{ "<?xml version=\"1.0\"?>\n<nottrack>\n" XGOOD, 1, 2, "root" },
	/* cut short inside a flow, or inside a tag */
	{ XHEAD XGOOD "<flow><meta direction=\"original\"><layer3 protonum=\"2\">", 1, 4,
	  "cut short" },
	{ XHEAD XGOOD "<flo", 1, 4, "cut short" },
	/* no error: no </conntrack> (conntrack killed), two documents in a
	 * row, flows without a document (grep output), text between flows */
	{ XHEAD XGOOD XGOOD, 2, 0, NULL },
	{ XHEAD XGOOD "</conntrack>\n" XHEAD XGOOD "</conntrack>\n", 2, 0, NULL },
	{ XGOOD XGOOD, 2, 0, NULL },
	{ XHEAD XGOOD " [USERSPACE] portid=9 progname=conntrack\n" XGOOD, 2, 0, NULL },
	{ XHEAD "\n\n" XGOOD "</conntrack>\n"
	  "conntrack v1.4.7 (conntrack-tools): 1 flow events have been shown.\n", 1, 0, NULL },
};

static void test_malformed_xml(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_xml) / sizeof(bad_xml[0]); i++) {
		struct parsed p;

		parse_mem(bad_xml[i].doc, strlen(bad_xml[i].doc), CAPTURE_LIST_XML, &p);
		if (p.n != bad_xml[i].records || p.errors != (bad_xml[i].err_line ? 1u : 0u) ||
		    (p.errors && (p.err_line[0] != bad_xml[i].err_line ||
				  !strstr(p.err_msg[0], bad_xml[i].why))))
			fail_msg("case %zu: %zu records, %u errors, first: %s", i, p.n,
				 p.errors, p.errors ? p.err_msg[0] : "-");
		for (size_t j = 0; j < p.n; j++) {
			assert_tuple(&p.rec[j].e, 0, "1.1.1.1", 1000, "2.2.2.2", 80);
			assert_int_equal(p.rec[j].e.tcp_state, 3);
			assert_int_equal(p.rec[j].e.status, IPS_ASSURED | IPS_SEEN_REPLY);
			assert_int_equal(p.rec[j].e.id, 7);
			assert_int_equal(p.rec[j].timeout_s, 100);
		}
		parsed_free(&p);
	}
}

/* A whole document on one line, longer than the reader's buffer. */
static void test_xml_one_line(void **state)
{
	size_t flow = strlen(XGOOD) - 1, n = 600, len = 0;
	char *buf = malloc(strlen(XHEAD) + n * flow + 64);
	struct parsed p;

	(void)state;
	assert_non_null(buf);
	len += (size_t)sprintf(buf, "%s", "<?xml version=\"1.0\"?><conntrack>");
	for (size_t i = 0; i < n; i++) {
		memcpy(buf + len, XGOOD, flow);
		len += flow;
	}
	len += (size_t)sprintf(buf + len, "</conntrack>\n");
	assert_true(len > 256 * 1024);
	parse_mem(buf, len, CAPTURE_AUTO, &p);
	assert_int_equal(p.n, n);
	assert_int_equal(p.errors, 0);
	assert_int_equal(p.rec[n - 1].line, 1);
	parsed_free(&p);
	free(buf);
}

/* One token bigger than expat should have to hold: given up on, and the
 * next flow line is read. */
static void test_xml_giant_token(void **state)
{
	size_t big = 1200 * 1024, len = 0;
	char *buf = malloc(big + 4096);
	struct parsed p;

	(void)state;
	assert_non_null(buf);
	len += (size_t)sprintf(buf, "%s<flow type=\"", XHEAD);
	memset(buf + len, 'a', big);
	len += big;
	len += (size_t)sprintf(buf + len, "\">\n%s</conntrack>\n", XGOOD);
	parse_mem(buf, len, CAPTURE_AUTO, &p);
	assert_int_equal(p.errors, 1);
	assert_int_equal(p.err_line[0], 3);
	assert_non_null(strstr(p.err_msg[0], "no complete <flow>"));
	assert_int_equal(p.n, 1);
	assert_int_equal(p.rec[0].line, 4);
	parsed_free(&p);
	free(buf);
}

/* ---- mutations of the real samples ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Reads a mutated buffer to its end: only 1 / 0 / -1 EBADMSG, sane
 * records, and it ends. */
static void run_mutant(const char *buf, size_t len, enum capture_format fmt)
{
	struct capture_record r;
	struct capture *c;
	FILE *f = mem_file(buf, len);
	size_t calls = 0;
	int rc;

	c = capture_open(f, "fuzz", fmt);
	if (!c) {
		assert_int_equal(errno, EBADMSG);
		fclose(f);
		return;
	}
	while ((rc = capture_next(c, &r)) != 0) {
		assert_true(++calls <= len + 4);
		if (rc < 0) {
			assert_int_equal(errno, EBADMSG);
			assert_true(capture_error(c)[0] != '\0');
			continue;
		}
		assert_int_equal(rc, 1);
		assert_true(r.e.family == AF_INET || r.e.family == AF_INET6);
		assert_true(r.e.type >= CTMSG_NEW && r.e.type <= CTMSG_DUMP);
		assert_true(r.e.tcp_state < NS_TCP_STATES ||
			    r.e.tcp_state == NS_TCP_STATE_UNKNOWN);
		assert_true(r.line >= 1);
	}
	capture_close(c);
	fclose(f);
}

static void test_mutations(void **state)
{
	static const char *const files[] = {
		"conntrack-L.txt", "conntrack-L-extended-id.txt", "conntrack-L.xml",
		"proc-net-nf_conntrack.txt", "conntrack-E-timestamp-extended-id.txt",
		"conntrack-E.xml", "lab-L-acct-ktimestamp.txt", "lab-E.xml",
	};
	const size_t window = 24 * 1024;
	const int rounds = 120;

	(void)state;
	for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
		size_t len;
		char *all = load(files[k], &len);
		size_t wlen = len < window ? len : window;
		char *m = malloc(wlen + 64);

		assert_non_null(m);
		for (int i = 0; i < rounds; i++) {
			size_t n = wlen, at, flips = 1 + rnd() % 8;

			memcpy(m, all, wlen);
			switch (i % 4) {
			case 0: /* bit flips */
				for (size_t j = 0; j < flips; j++)
					m[rnd() % n] ^= (char)(1u << (rnd() % 8));
				break;
			case 1: /* truncation */
				n = rnd() % (wlen + 1);
				break;
			case 2: /* bytes of special meaning inserted */
				for (size_t j = 0; j < flips && n < wlen + 60; j++) {
					static const char sp[] = "\0\n<>[]=&\"\xff ";

					at = rnd() % (n + 1);
					memmove(m + at + 1, m + at, n - at);
					m[at] = sp[rnd() % (sizeof(sp) - 1)];
					n++;
				}
				break;
			default: /* a chunk deleted */
				at = rnd() % n;
				flips = rnd() % 400;
				if (flips > n - at)
					flips = n - at;
				memmove(m + at, m + at + flips, n - at - flips);
				n -= flips;
				break;
			}
			run_mutant(m, n, CAPTURE_AUTO);
			if (i % 10 == 0) /* forced into the other parser too */
				run_mutant(m, n, strstr(files[k], ".xml") ?
					   CAPTURE_LIST : CAPTURE_LIST_XML);
		}
		/* and truncated every few bytes over the first lines */
		for (size_t n = 0; n < 4096 && n <= len; n += 37)
			run_mutant(all, n, CAPTURE_AUTO);
		free(m);
		free(all);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_samples),
		cmocka_unit_test(test_sample_details),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_not_a_capture),
		cmocka_unit_test(test_format_names),
		cmocka_unit_test(test_forced_format),
		cmocka_unit_test(test_plain_vs_extended),
		cmocka_unit_test(test_listings_agree),
		cmocka_unit_test(test_events_agree),
		cmocka_unit_test(test_lab_formats_agree),
		cmocka_unit_test(test_hand_checked),
		cmocka_unit_test(test_lab_lines),
		cmocka_unit_test(test_when_local_time),
		cmocka_unit_test(test_malformed_text),
		cmocka_unit_test(test_text_edges),
		cmocka_unit_test(test_malformed_xml),
		cmocka_unit_test(test_xml_one_line),
		cmocka_unit_test(test_xml_giant_token),
		cmocka_unit_test(test_mutations),
	};

	/* The samples were captured on a machine in UTC (their text
	 * timestamps and XML <when> agree that way). */
	setenv("TZ", "UTC", 1);
	tzset();
	log_init("test_capture", NS_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
