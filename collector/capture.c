/*
 * capture.c - conntrack text and XML captures into struct ct_entry.
 *
 * Three layers:
 *   - a line reader over one fixed buffer (cap_piece): whole lines in
 *     place, leading NULs skipped, over-long lines handed out in pieces;
 *   - the text parser (text_line): one pass over the tokens of a line,
 *     which serves every text format, since they differ only in optional
 *     parts (timestamp, event type, "ipv4 2" prefix, zone, id, counters);
 *   - the XML driver (xml_next): expat fed line by line, suspended at each
 *     </flow> so that one record is returned per call without a queue,
 *     and restarted at the next <flow> line after an XML error.
 *
 * What each format prints was checked against libnetfilter_conntrack
 * (snprintf_default.c, snprintf_xml.c), conntrack(8) and the kernel's
 * nf_conntrack_standalone.c, and against the real captures in
 * tests/fixtures/ (lab-captures.sh makes the rarer cases).
 */
#include "collector/capture.h"
#include "common/common.h"

#include <errno.h>
#include <expat.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/netfilter/nf_conntrack_common.h>

#define CAP_BUF (256 * 1024)	    /* read block, and the longest text line */
#define CAP_DETECT_LINES 64	    /* lines looked at to detect the format */
#define CAP_XML_FLOW_MAX (1 << 20) /* bytes without a complete flow: give up */
#define CAP_ERR_LEN 320

enum piece { PIECE_LINE, PIECE_PART, PIECE_LAST };

enum xml_state { XS_OUTSIDE, XS_INSIDE, XS_DONE };

/* What a tuple has shown so far (text and XML). */
enum {
	HAVE_SRC = 1 << 0,
	HAVE_DST = 1 << 1,
	HAVE_SPORT = 1 << 2,
	HAVE_DPORT = 1 << 3,
	HAVE_TYPE = 1 << 4,
	HAVE_CODE = 1 << 5,
	HAVE_ICMPID = 1 << 6,
	HAVE_SKEY = 1 << 7,
	HAVE_DKEY = 1 << 8,
	HAVE_L3 = 1 << 9,
	HAVE_L4 = 1 << 10,
	HAVE_ZONE = 1 << 11,
};

/* XML elements whose text is kept. */
enum xtext {
	XT_NONE = 0,
	XT_SRC, XT_DST, XT_SPORT, XT_DPORT, XT_SKEY, XT_DKEY, XT_TZONE,
	XT_STATE, XT_TIMEOUT, XT_ZONE, XT_ID,
	XT_HOUR, XT_MIN, XT_SEC, XT_DAY, XT_MONTH, XT_YEAR,
};

/* XML <flow> context: which element the parser is in. */
enum xdir { XD_NONE, XD_ORIG, XD_REPLY, XD_INDEP, XD_WHEN };
enum xin { XI_META, XI_L3, XI_L4 };

struct xflow {
	struct capture_record r;
	bool open;		/* between <flow> and </flow> */
	bool bad;		/* why[] says what is wrong */
	char why[128];
	enum xdir dir;
	enum xin in;
	unsigned have[2];	/* HAVE_* of the original and reply tuples */
	unsigned l3[2], l4[2];	/* protonum attributes */
	char state[16];
	bool has_state, has_timeout, has_zone, has_id, assured, unreplied;
	unsigned zone, tzone[2];
	bool has_when;
	unsigned when_have;	/* bits by XT_HOUR.. */
	unsigned when[6];	/* hour min sec day month year */
};

struct capture {
	FILE *f;
	char *name;
	enum capture_format fmt;
	bool xml;

	/* line reader */
	char *buf; /* CAP_BUF bytes */
	size_t pos, end;
	bool eof;
	bool midline;	/* the last piece was not the end of its line */
	bool skipline;	/* drop pieces up to the end of the current line */
	unsigned line;
	int fatal;	/* errno of a fatal error, 0 if none */

	struct capture_stats st;
	char err[CAP_ERR_LEN];

	/* XML */
	XML_Parser xp;
	enum xml_state xs;
	bool xsuspended;  /* XML_ResumeParser() before feeding more */
	int xready;	  /* 1: a record is in xf, -1: an error in err */
	bool xroot_closed;
	bool xjunk;	  /* the current run of junk lines was reported */
	bool xfatal_set;  /* xwhy holds our reason for aborting expat */
	char xwhy[128];
	unsigned xdoc_line; /* line where the current document starts */
	unsigned xdepth, xskip;
	size_t xsince;	  /* bytes fed since a flow started or ended */
	unsigned long xfed, xroot_end;
	const char *xpiece; /* the piece last fed, still in buf */
	size_t xpiece_len;
	unsigned long xpiece_at; /* xfed before that piece */
	enum xtext xt;
	char xtext[64];
	size_t xtextlen;
	bool xtext_over;
	struct xflow xf;
	/* mktime() of the last <when> minute */
	int64_t when_key;
	int64_t when_base;
};

static const char *const tcp_states[NS_TCP_STATES] = {
	"NONE",	      "SYN_SENT", "SYN_RECV",  "ESTABLISHED", "FIN_WAIT",
	"CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE",	      "SYN_SENT2",
};

/* ---- small helpers ---- */

static inline bool is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

static inline bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool eq(const char *s, size_t n, const char *lit)
{
	size_t l = strlen(lit);

	return n == l && memcmp(s, lit, l) == 0;
}

static bool starts(const char *s, size_t n, const char *lit)
{
	size_t l = strlen(lit);

	return n >= l && memcmp(s, lit, l) == 0;
}

/* Decimal digits only (no sign, no space), value <= max. */
static bool parse_uint(const char *s, size_t n, uint64_t max, uint64_t *v)
{
	uint64_t x = 0;

	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned char)s[i] - '0';

		if (d > 9 || x > (max - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*v = x;
	return true;
}

/* "0x" and 1-4 hex digits: a GRE key as conntrack and the kernel print it. */
static bool parse_key(const char *s, size_t n, uint16_t *v)
{
	unsigned x = 0;

	if (n < 3 || n > 6 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
		return false;
	for (size_t i = 2; i < n; i++) {
		char ch = s[i];
		unsigned d;

		if (is_digit(ch))
			d = (unsigned)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			d = (unsigned)(ch - 'a' + 10);
		else if (ch >= 'A' && ch <= 'F')
			d = (unsigned)(ch - 'A' + 10);
		else
			return false;
		x = x * 16 + d;
	}
	*v = (uint16_t)x;
	return true;
}

/* Dotted quad, hand-rolled: four of these per line is most of the work. */
static bool parse_ip4(const char *s, size_t n, uint8_t out[4])
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0, digits = 0;

		while (i < n && is_digit(s[i])) {
			v = v * 10 + (unsigned)(s[i] - '0');
			if (++digits > 3)
				return false;
			i++;
		}
		if (!digits || v > 255)
			return false;
		out[part] = (uint8_t)v;
		if (part < 3) {
			if (i >= n || s[i] != '.')
				return false;
			i++;
		}
	}
	return i == n;
}

/* An address in any form inet_pton() takes (conntrack prints IPv6
 * compressed, the kernel in full).  Returns its family, 0 if invalid. */
static int parse_addr(const char *s, size_t n, uint8_t out[16])
{
	char tmp[INET6_ADDRSTRLEN];

	memset(out, 0, 16);
	if (!memchr(s, ':', n))
		return parse_ip4(s, n, out) ? AF_INET : 0;
	if (n >= sizeof(tmp) || memchr(s, '\0', n))
		return 0;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	return inet_pton(AF_INET6, tmp, out) == 1 ? AF_INET6 : 0;
}

/* TCP state name, as conntrack and the kernel print it ("LISTEN" is what
 * old versions called SYN_SENT2).  -1 if unknown. */
static int tcp_state_num(const char *s, size_t n)
{
	for (int i = 0; i < NS_TCP_STATES; i++)
		if (eq(s, n, tcp_states[i]))
			return i;
	if (eq(s, n, "LISTEN"))
		return 9;
	return -1;
}

/* Protocol name as printed ("unknown" for protocols conntrack has no name
 * for).  Returns its number, 256 for "unknown", -1 if not a name. */
static int proto_num(const char *s, size_t n)
{
	static const struct {
		const char *name;
		int num;
	} names[] = {
		{ "tcp", IPPROTO_TCP },		{ "udp", IPPROTO_UDP },
		{ "udplite", IPPROTO_UDPLITE }, { "sctp", IPPROTO_SCTP },
		{ "dccp", IPPROTO_DCCP },	{ "icmp", IPPROTO_ICMP },
		{ "icmpv6", IPPROTO_ICMPV6 },	{ "gre", IPPROTO_GRE },
		{ "unknown", 256 },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (eq(s, n, names[i].name))
			return names[i].num;
	return -1;
}

static bool proto_is_icmp(uint8_t p)
{
	return p == IPPROTO_ICMP || p == IPPROTO_ICMPV6;
}

/* Protocols whose tuples always carry sport= and dport=. */
static bool proto_has_ports(uint8_t p)
{
	return p == IPPROTO_TCP || p == IPPROTO_UDP || p == IPPROTO_UDPLITE ||
	       p == IPPROTO_SCTP || p == IPPROTO_DCCP;
}

/* A token for an error message: printable, quoted, at most ~40 bytes. */
static const char *quote(char out[64], const char *s, size_t n)
{
	size_t o = 0;

	out[o++] = '"';
	for (size_t i = 0; i < n && o < 52; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
			out[o++] = (char)ch;
		} else {
			static const char hex[] = "0123456789abcdef";

			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
		if (i + 1 < n && o >= 52) {
			memcpy(out + o, "...", 3);
			o += 3;
		}
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

/* Records a malformed-record error: "name:line: what".  Returns -1 with
 * errno EBADMSG. */
__attribute__((format(printf, 3, 4))) static int
cap_bad(struct capture *c, unsigned line, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(c->err, sizeof(c->err), "%s:%u: ", c->name, line);
	if (n < 0 || (size_t)n >= sizeof(c->err))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(c->err + n, sizeof(c->err) - (size_t)n, fmt, ap);
	va_end(ap);
	c->st.errors++;
	errno = EBADMSG;
	return -1;
}

static int cap_fatal(struct capture *c, int err)
{
	c->fatal = err;
	snprintf(c->err, sizeof(c->err), "%s: %s", c->name, strerror(err));
	errno = err;
	return -1;
}

/* ---- line reader ---- */

/* Moves the unread bytes to the front and reads more.  0, or -1 (EIO). */
static int cap_fill(struct capture *c)
{
	size_t want, got;

	if (c->pos > 0) {
		memmove(c->buf, c->buf + c->pos, c->end - c->pos);
		c->end -= c->pos;
		c->pos = 0;
	}
	want = CAP_BUF - c->end;
	got = fread(c->buf + c->end, 1, want, c->f);
	c->end += got;
	if (got < want) {
		if (ferror(c->f)) {
			errno = EIO;
			return -1;
		}
		c->eof = true;
	}
	return 0;
}

/* The next piece of input, in place in the buffer (valid until the next
 * call): PIECE_LINE, a whole line without its '\n'; PIECE_PART, the next
 * CAP_BUF bytes of a longer line (more follows); PIECE_LAST, a last line
 * that the input ends without a newline.  NULs at the start of a line are
 * skipped.  Returns 1, 0 at the end of input, -1 on a read error. */
static int cap_piece(struct capture *c, const char **p, size_t *n,
		     enum piece *kind)
{
	for (;;) {
		const char *s, *nl;
		size_t avail;

		if (!c->midline) {
			while (c->pos < c->end && c->buf[c->pos] == '\0') {
				c->pos++;
				c->st.nul_bytes++;
			}
		}
		s = c->buf + c->pos;
		avail = c->end - c->pos;
		nl = avail ? memchr(s, '\n', avail) : NULL;
		if (nl || c->eof || avail == CAP_BUF) {
			if (!nl && avail == 0)
				return 0;
			if (!c->midline) {
				c->line++;
				c->st.lines++;
			}
			*p = s;
			if (nl) {
				*n = (size_t)(nl - s);
				*kind = PIECE_LINE;
				c->pos += *n + 1;
				c->midline = false;
			} else {
				*n = avail;
				*kind = c->eof ? PIECE_LAST : PIECE_PART;
				c->pos = c->end;
				c->midline = !c->eof;
			}
			return 1;
		}
		if (cap_fill(c) < 0)
			return -1;
	}
}

/* conntrack's own messages: "conntrack v1.4.7 (conntrack-tools): 1407
 * flow entries have been shown." (stderr, often captured with 2>&1). */
static bool is_summary(const char *s, size_t n)
{
	return n > 11 && starts(s, n, "conntrack v") && is_digit(s[11]);
}

/* Strips blanks (and newlines) at both ends. */
static void trim(const char **s, size_t *n)
{
	while (*n && (is_ws(**s) || **s == '\n')) {
		(*s)++;
		(*n)--;
	}
	while (*n && (is_ws((*s)[*n - 1]) || (*s)[*n - 1] == '\n'))
		(*n)--;
}

/* ---- text lines ---- */

struct tok {
	const char *s;	/* the whole token */
	size_t n;
	const char *v;	/* after '=' (key is s, klen bytes), NULL if none */
	size_t vn, klen;
};

/* Next whitespace-separated token.  A token that starts with '[' runs to
 * the next ']' even across spaces ("[start=Wed Nov 25 02:05:05 2026]").
 * Returns 1, 0 at the end of the line, -1 for an unterminated '['. */
static int tok_next(const char **cur, const char *end, struct tok *t)
{
	const char *p = *cur, *q;

	while (p < end && is_ws(*p))
		p++;
	if (p == end)
		return 0;
	t->s = p;
	t->v = NULL;
	if (*p == '[') {
		q = memchr(p, ']', (size_t)(end - p));
		if (!q) {
			t->n = (size_t)(end - p);
			*cur = end;
			return -1;
		}
		q++;
	} else {
		q = p;
		while (q < end && !is_ws(*q))
			q++;
		const char *e = memchr(p, '=', (size_t)(q - p));
		if (e) {
			t->klen = (size_t)(e - p);
			t->v = e + 1;
			t->vn = (size_t)(q - e - 1);
		}
	}
	t->n = (size_t)(q - p);
	*cur = q;
	return 1;
}

struct tline {
	struct capture *c;
	struct capture_record *r;
	bool generic;	/* "unknown N": the kernel tracks N without ports */
	int family;	/* from the addresses, checked against "ipv4 2" */
	int tuples;	/* 0, 1 (original seen), 2 (reply seen) */
	bool open;	/* the current tuple still takes fields */
	unsigned have[2];
	bool unreplied, assured, offload, hw_offload, ctid;
	int zone, zone_orig, zone_reply; /* -1 if absent */
};

static int tl_bad_tok(struct tline *L, const char *what, const struct tok *t)
{
	char q[64];

	return cap_bad(L->c, L->r->line, "%s %s", what, quote(q, t->s, t->n));
}

static const char *dir_name(int d)
{
	return d ? "reply" : "original";
}

/* One key=value of a tuple (src dst sport dport type code id srckey
 * dstkey).  Returns 1 if consumed, 0 if the key is not a tuple key,
 * -1 if malformed. */
static int tl_tuple_field(struct tline *L, const struct tok *t)
{
	struct ct_entry *e = &L->r->e;
	const char *k = t->s;
	size_t kn = t->klen;
	int d = L->tuples - 1;
	struct ct_tuple *tp;
	unsigned bit;
	uint64_t v;
	uint16_t key;

	if (eq(k, kn, "src")) {
		if (L->tuples == 2)
			return tl_bad_tok(L, "a third tuple at", t);
		L->tuples++;
		L->open = true;
		d = L->tuples - 1;
		bit = HAVE_SRC;
	} else if (eq(k, kn, "dst")) {
		bit = HAVE_DST;
	} else if (eq(k, kn, "sport")) {
		bit = HAVE_SPORT;
	} else if (eq(k, kn, "dport")) {
		bit = HAVE_DPORT;
	} else if (eq(k, kn, "type")) {
		bit = HAVE_TYPE;
	} else if (eq(k, kn, "code")) {
		bit = HAVE_CODE;
	} else if (eq(k, kn, "srckey")) {
		bit = HAVE_SKEY;
	} else if (eq(k, kn, "dstkey")) {
		bit = HAVE_DKEY;
	} else if (eq(k, kn, "id") && L->open && proto_is_icmp(e->proto) &&
		   !(L->have[d] & HAVE_ICMPID)) {
		bit = HAVE_ICMPID; /* else it is the entry's id= */
	} else {
		return 0;
	}
	if (!L->open)
		return tl_bad_tok(L, "tuple field outside a tuple:", t);
	if (L->have[d] & bit)
		return tl_bad_tok(L, "repeated", t);
	L->have[d] |= bit;
	tp = d ? &e->reply : &e->orig;
	switch (bit) {
	case HAVE_SRC:
	case HAVE_DST: {
		int fam = parse_addr(t->v, t->vn, bit == HAVE_SRC ? tp->src : tp->dst);

		if (!fam)
			return tl_bad_tok(L, "bad address", t);
		if (L->family && fam != L->family)
			return tl_bad_tok(L, "address of the other family", t);
		L->family = fam;
		return 1;
	}
	case HAVE_SPORT:
	case HAVE_DPORT:
		if (proto_is_icmp(e->proto))
			return tl_bad_tok(L, "port in an ICMP tuple:", t);
		if (!parse_uint(t->v, t->vn, 65535, &v))
			return tl_bad_tok(L, "bad port", t);
		if (bit == HAVE_SPORT)
			tp->sport = (uint16_t)v;
		else
			tp->dport = (uint16_t)v;
		return 1;
	case HAVE_TYPE:
	case HAVE_CODE:
		if (!parse_uint(t->v, t->vn, 255, &v))
			return tl_bad_tok(L, "bad ICMP type or code", t);
		return 1; /* not kept, as in ctmsg.c */
	case HAVE_ICMPID:
		if (!parse_uint(t->v, t->vn, 65535, &v))
			return tl_bad_tok(L, "bad ICMP id", t);
		tp->sport = tp->dport = (uint16_t)v;
		return 1;
	default: /* GRE keys travel as ports over netlink too */
		if (!parse_key(t->v, t->vn, &key))
			return tl_bad_tok(L, "bad GRE key", t);
		if (bit == HAVE_SKEY)
			tp->sport = key;
		else
			tp->dport = key;
		return 1;
	}
}

static int tl_zone(struct tline *L, const struct tok *t, int *zone)
{
	uint64_t v;

	if (*zone >= 0)
		return tl_bad_tok(L, "repeated", t);
	if (!parse_uint(t->v, t->vn, 65535, &v))
		return tl_bad_tok(L, "bad zone", t);
	*zone = (int)v;
	return 0;
}

/* Everything after the header: the two tuples and what follows them. */
static int tl_body(struct tline *L, const char *p, const char *end)
{
	struct ct_entry *e = &L->r->e;
	struct tok t;
	int rc;

	while ((rc = tok_next(&p, end, &t)) > 0) {
		uint64_t v;

		if (t.s[0] == '[') {
			L->open = false;
			if (L->tuples == 0)
				return tl_bad_tok(L, "unexpected", &t);
			if (eq(t.s, t.n, "[UNREPLIED]"))
				L->unreplied = true;
			else if (eq(t.s, t.n, "[ASSURED]"))
				L->assured = true;
			else if (eq(t.s, t.n, "[OFFLOAD]"))
				L->offload = true;
			else if (eq(t.s, t.n, "[HW_OFFLOAD]"))
				L->hw_offload = true;
			else if (eq(t.s, t.n, "[USERSPACE]"))
				break; /* portid= progname=... of who made the change */
			/* others ([start=...], [stop=...]) are not kept */
			if (p < end && !is_ws(*p))
				return tl_bad_tok(L, "junk after", &t);
			continue;
		}
		if (!t.v)
			return tl_bad_tok(L, "unexpected", &t);
		rc = tl_tuple_field(L, &t);
		if (rc < 0)
			return -1;
		if (rc > 0)
			continue;
		/* not a tuple field: the current tuple is complete */
		L->open = false;
		if (L->tuples == 0)
			return tl_bad_tok(L, "unexpected", &t);
		if (eq(t.s, t.klen, "id")) {
			if (L->tuples < 2)
				return tl_bad_tok(L, "id before the reply tuple:", &t);
			if (L->ctid)
				return tl_bad_tok(L, "repeated", &t);
			if (!parse_uint(t.v, t.vn, UINT32_MAX, &v))
				return tl_bad_tok(L, "bad id", &t);
			e->id = (uint32_t)v;
			L->ctid = true;
		} else if (eq(t.s, t.klen, "zone")) {
			if (tl_zone(L, &t, &L->zone) < 0)
				return -1;
		} else if (eq(t.s, t.klen, "zone-orig")) {
			if (tl_zone(L, &t, &L->zone_orig) < 0)
				return -1;
		} else if (eq(t.s, t.klen, "zone-reply")) {
			if (tl_zone(L, &t, &L->zone_reply) < 0)
				return -1;
		}
		/* mark= use= secmark= secctx= packets= bytes= delta-time=
		 * helper= labels= and future keys: not kept */
	}
	if (rc < 0)
		return tl_bad_tok(L, "unterminated", &t);
	return 0;
}

/* Checks that both tuples are complete and fills the rest of the entry. */
static int tl_finish(struct tline *L)
{
	struct ct_entry *e = &L->r->e;
	unsigned need = HAVE_SRC | HAVE_DST;

	if (L->tuples < 2)
		return cap_bad(L->c, L->r->line, "%s",
			       L->tuples ? "no reply tuple" : "no tuple (src=...)");
	if (L->generic)
		; /* e.g. "unknown 33": DCCP on a kernel that does not track it */
	else if (proto_has_ports(e->proto))
		need |= HAVE_SPORT | HAVE_DPORT;
	else if (proto_is_icmp(e->proto))
		need |= HAVE_ICMPID;
	else if (e->proto == IPPROTO_GRE)
		need |= HAVE_SKEY | HAVE_DKEY;
	for (int d = 0; d < 2; d++) {
		unsigned miss = need & ~L->have[d];
		const char *what;

		if (!miss)
			continue;
		what = miss & HAVE_SRC ? "src=" : miss & HAVE_DST ? "dst=" :
		       miss & HAVE_SPORT ? "sport=" : miss & HAVE_DPORT ? "dport=" :
		       miss & HAVE_ICMPID ? "id=" : miss & HAVE_SKEY ? "srckey=" : "dstkey=";
		return cap_bad(L->c, L->r->line, "no %s in the %s tuple", what,
			       dir_name(d));
	}
	e->family = (uint8_t)L->family; /* checked against "ipv4 2" per address */
	/* The status is always in the text; only these bits show. */
	e->status = (L->unreplied ? 0 : IPS_SEEN_REPLY) |
		    (L->assured ? IPS_ASSURED : 0) |
		    (L->offload ? IPS_OFFLOAD : 0) |
		    (L->hw_offload ? IPS_HW_OFFLOAD : 0);
	/* One zone for both directions, else the reply direction's: that is
	 * where the reply tuple, the one NAT keeps unique, is looked up
	 * (zone-orig= alone leaves the reply in the default zone 0). */
	e->zone = (uint16_t)(L->zone >= 0 ? L->zone :
			     L->zone_reply >= 0 ? L->zone_reply : 0);
	return 0;
}

static void record_init(struct capture_record *r, unsigned line)
{
	memset(r, 0, sizeof(*r));
	r->e.type = CTMSG_DUMP;
	r->e.tcp_state = NS_TCP_STATE_UNKNOWN;
	r->ts_ms = -1;
	r->timeout_s = UINT32_MAX;
	r->line = line;
}

/* "[1732530000.123456]" (conntrack -E -o timestamp) into ms. */
static bool parse_ts(const char *s, size_t n, int64_t *ms)
{
	const char *dot;
	uint64_t sec, frac = 0;
	size_t fn;

	if (n < 4 || s[0] != '[' || s[n - 1] != ']')
		return false;
	s++;
	n -= 2;
	dot = memchr(s, '.', n);
	if (!dot)
		return false;
	fn = n - (size_t)(dot - s) - 1;
	if (!parse_uint(s, (size_t)(dot - s), 99999999999ULL, &sec) ||
	    fn == 0 || fn > 9 || !parse_uint(dot + 1, fn, 999999999, &frac))
		return false;
	for (size_t i = fn; i < 3; i++)
		frac *= 10;
	for (size_t i = 3; i < fn; i++)
		frac /= 10;
	*ms = (int64_t)sec * 1000 + (int64_t)frac;
	return true;
}

/* Parses one non-blank text line (any text format) into *r. */
static int text_line(struct capture *c, const char *s, size_t n,
		     struct capture_record *r)
{
	struct tline L = { .c = c, .r = r, .zone = -1, .zone_orig = -1,
			   .zone_reply = -1 };
	const char *p = s, *end = s + n;
	struct ct_entry *e = &r->e;
	struct tok t;
	uint64_t v;
	int num, rc;

	record_init(r, c->line);
	if (memchr(s, '\0', n))
		return cap_bad(c, r->line, "NUL byte inside the line");
	rc = tok_next(&p, end, &t);
	if (rc < 0)
		return tl_bad_tok(&L, "unterminated", &t);
	/* [1795572305.381235]  (conntrack -E -o timestamp) */
	if (t.s[0] == '[' && t.n > 1 && is_digit(t.s[1])) {
		if (!parse_ts(t.s, t.n, &r->ts_ms))
			return tl_bad_tok(&L, "bad timestamp", &t);
		if (tok_next(&p, end, &t) <= 0)
			return cap_bad(c, r->line, "nothing after the timestamp");
	}
	/* [NEW] [UPDATE] [DESTROY]  (conntrack -E) */
	if (t.s[0] == '[') {
		if (eq(t.s, t.n, "[NEW]"))
			e->type = CTMSG_NEW;
		else if (eq(t.s, t.n, "[UPDATE]"))
			e->type = CTMSG_UPDATE;
		else if (eq(t.s, t.n, "[DESTROY]"))
			e->type = CTMSG_DESTROY;
		else
			return tl_bad_tok(&L, "unknown event type", &t);
		if (tok_next(&p, end, &t) <= 0)
			return cap_bad(c, r->line, "nothing after the event type");
	}
	/* ipv4 2 / ipv6 10  (-o extended, /proc) */
	if (eq(t.s, t.n, "ipv4") || eq(t.s, t.n, "ipv6")) {
		e->family = t.s[3] == '4' ? AF_INET : AF_INET6;
		if (tok_next(&p, end, &t) <= 0 || !parse_uint(t.s, t.n, 255, &v) ||
		    v != e->family)
			return cap_bad(c, r->line, "bad layer 3 protocol number");
		if (tok_next(&p, end, &t) <= 0)
			return cap_bad(c, r->line, "no protocol");
	}
	/* tcp 6 */
	num = t.v ? -1 : proto_num(t.s, t.n);
	if (num < 0)
		return tl_bad_tok(&L, "not a protocol name:", &t);
	if (tok_next(&p, end, &t) <= 0 || !parse_uint(t.s, t.n, 255, &v) ||
	    (num < 256 && (uint64_t)num != v))
		return cap_bad(c, r->line, "bad protocol number");
	e->proto = (uint8_t)v;
	L.generic = num == 256;
	rc = tok_next(&p, end, &t);
	/* 120  (the timeout; absent in some DESTROY events and for
	 * offloaded entries in /proc) */
	if (rc > 0 && !t.v && t.s[0] != '[' && is_digit(t.s[0])) {
		if (!parse_uint(t.s, t.n, UINT32_MAX, &v))
			return tl_bad_tok(&L, "bad timeout", &t);
		r->timeout_s = (uint32_t)v;
		rc = tok_next(&p, end, &t);
	}
	/* ESTABLISHED  (TCP; SCTP and DCCP print their own states) */
	if (rc > 0 && !t.v && t.s[0] != '[') {
		if (e->proto == IPPROTO_TCP) {
			int st = tcp_state_num(t.s, t.n);

			if (st < 0)
				return tl_bad_tok(&L, "unknown TCP state", &t);
			e->tcp_state = (uint8_t)st;
		} else {
			for (size_t i = 0; i < t.n; i++)
				if (!(t.s[i] >= 'A' && t.s[i] <= 'Z') && t.s[i] != '_')
					return tl_bad_tok(&L, "unexpected", &t);
		}
		rc = tok_next(&p, end, &t);
	}
	/* "timeout=0, stream_timeout=0" (GRE in /proc): up to src= */
	while (rc > 0 && !(t.v && eq(t.s, t.klen, "src"))) {
		if (!t.v)
			return tl_bad_tok(&L, "unexpected", &t);
		rc = tok_next(&p, end, &t);
	}
	if (rc < 0)
		return tl_bad_tok(&L, "unterminated", &t);
	if (rc == 0)
		return cap_bad(c, r->line, "no tuple (src=...)");
	L.family = e->family;
	if (tl_body(&L, t.s, end) < 0 || tl_finish(&L) < 0)
		return -1;
	return 0;
}

static int text_next(struct capture *c, struct capture_record *r)
{
	for (;;) {
		const char *s;
		size_t n;
		enum piece kind;
		int rc = cap_piece(c, &s, &n, &kind);

		if (rc < 0)
			return cap_fatal(c, EIO);
		if (rc == 0)
			return 0;
		if (c->skipline) {
			c->skipline = kind == PIECE_PART;
			continue;
		}
		if (kind == PIECE_PART) {
			c->skipline = true;
			return cap_bad(c, c->line, "line longer than %d bytes",
				       CAP_BUF);
		}
		trim(&s, &n);
		if (n == 0 || is_summary(s, n)) {
			c->st.skipped++;
			continue;
		}
		if (kind == PIECE_LAST)
			return cap_bad(c, c->line, "cut short: the input ends "
				       "without a newline");
		if (text_line(c, s, n, r) < 0)
			return -1;
		c->st.records++;
		return 1;
	}
}

/* ---- XML ---- */

static void xml_abort(struct capture *c, const char *why)
{
	if (!c->xfatal_set) {
		snprintf(c->xwhy, sizeof(c->xwhy), "%s", why);
		c->xfatal_set = true;
	}
	XML_StopParser(c->xp, XML_FALSE);
}

static unsigned xml_line(struct capture *c)
{
	return c->xdoc_line + (unsigned)XML_GetCurrentLineNumber(c->xp) - 1;
}

__attribute__((format(printf, 2, 3))) static void
xf_bad(struct xflow *x, const char *fmt, ...)
{
	va_list ap;

	if (x->bad)
		return; /* the first problem is the one reported */
	x->bad = true;
	va_start(ap, fmt);
	vsnprintf(x->why, sizeof(x->why), fmt, ap);
	va_end(ap);
}

static const char *xattr(const char **attr, const char *name)
{
	for (; attr[0]; attr += 2)
		if (!strcmp(attr[0], name))
			return attr[1];
	return NULL;
}

static void xml_flow_start(struct capture *c, const char **attr)
{
	struct xflow *x = &c->xf;
	const char *type = xattr(attr, "type");

	memset(x, 0, sizeof(*x));
	record_init(&x->r, xml_line(c));
	x->open = true;
	if (!type)
		x->r.e.type = CTMSG_DUMP;
	else if (!strcmp(type, "new"))
		x->r.e.type = CTMSG_NEW;
	else if (!strcmp(type, "update"))
		x->r.e.type = CTMSG_UPDATE;
	else if (!strcmp(type, "destroy"))
		x->r.e.type = CTMSG_DESTROY;
	else
		xf_bad(x, "unknown flow type");
}

static void xml_protonum(struct xflow *x, const char **attr, unsigned bit,
			 unsigned *out)
{
	int d = x->dir == XD_REPLY;
	const char *v = xattr(attr, "protonum");
	uint64_t n;

	if (x->have[d] & bit) {
		xf_bad(x, "repeated <layer%c> in the %s tuple",
		       bit == HAVE_L3 ? '3' : '4', dir_name(d));
		return;
	}
	x->have[d] |= bit;
	if (!v || !parse_uint(v, strlen(v), 255, &n)) {
		xf_bad(x, "bad protonum in the %s tuple", dir_name(d));
		return;
	}
	*out = (unsigned)n;
}

static void XMLCALL xml_start(void *u, const XML_Char *name,
			      const XML_Char **attr)
{
	struct capture *c = u;
	struct xflow *x = &c->xf;
	unsigned depth = ++c->xdepth;
	enum xtext xt = XT_NONE;

	if (c->xskip)
		return;
	if (depth == 1) {
		if (strcmp(name, "conntrack"))
			xml_abort(c, "the root element is not <conntrack>");
		c->xsince = 0;
		return;
	}
	if (depth == 2) {
		if (!strcmp(name, "flow")) {
			xml_flow_start(c, attr);
			c->xsince = 0;
		} else {
			c->xskip = depth;
		}
		return;
	}
	if (depth == 3) {
		const char *d = xattr(attr, "direction");

		x->dir = XD_NONE;
		x->in = XI_META;
		if (!strcmp(name, "meta") && d) {
			if (!strcmp(d, "original"))
				x->dir = XD_ORIG;
			else if (!strcmp(d, "reply"))
				x->dir = XD_REPLY;
			else if (!strcmp(d, "independent"))
				x->dir = XD_INDEP;
		} else if (!strcmp(name, "when")) {
			x->dir = XD_WHEN;
			x->has_when = true;
		}
		if (x->dir == XD_NONE)
			c->xskip = depth;
		return;
	}
	if (depth == 4 && (x->dir == XD_ORIG || x->dir == XD_REPLY)) {
		int dd = x->dir == XD_REPLY;

		if (!strcmp(name, "layer3")) {
			x->in = XI_L3;
			xml_protonum(x, attr, HAVE_L3, &x->l3[dd]);
			return;
		}
		if (!strcmp(name, "layer4")) {
			x->in = XI_L4;
			xml_protonum(x, attr, HAVE_L4, &x->l4[dd]);
			return;
		}
		if (!strcmp(name, "zone"))
			xt = XT_TZONE;
	} else if (depth == 4 && x->dir == XD_INDEP) {
		if (!strcmp(name, "state"))
			xt = XT_STATE;
		else if (!strcmp(name, "timeout"))
			xt = XT_TIMEOUT;
		else if (!strcmp(name, "zone"))
			xt = XT_ZONE;
		else if (!strcmp(name, "id"))
			xt = XT_ID;
		else if (!strcmp(name, "assured"))
			x->assured = true;
		else if (!strcmp(name, "unreplied"))
			x->unreplied = true;
	} else if (depth == 4 && x->dir == XD_WHEN) {
		static const char *const names[] = { "hour", "min", "sec",
						     "day", "month", "year" };

		for (unsigned i = 0; i < 6; i++)
			if (!strcmp(name, names[i]))
				xt = (enum xtext)(XT_HOUR + i);
	} else if (depth == 5 && x->in == XI_L3) {
		if (!strcmp(name, "src"))
			xt = XT_SRC;
		else if (!strcmp(name, "dst"))
			xt = XT_DST;
	} else if (depth == 5 && x->in == XI_L4) {
		if (!strcmp(name, "sport"))
			xt = XT_SPORT;
		else if (!strcmp(name, "dport"))
			xt = XT_DPORT;
		else if (!strcmp(name, "srckey"))
			xt = XT_SKEY;
		else if (!strcmp(name, "dstkey"))
			xt = XT_DKEY;
	}
	if (xt == XT_NONE) {
		c->xskip = depth; /* counters, mark, use, labels, ... */
		return;
	}
	c->xt = xt;
	c->xtextlen = 0;
	c->xtext_over = false;
}

static void XMLCALL xml_text(void *u, const XML_Char *s, int len)
{
	struct capture *c = u;

	if (c->xt == XT_NONE || c->xskip || len <= 0)
		return;
	if ((size_t)len > sizeof(c->xtext) - c->xtextlen) {
		c->xtext_over = true;
		return;
	}
	memcpy(c->xtext + c->xtextlen, s, (size_t)len);
	c->xtextlen += (size_t)len;
}

/* The text of a leaf element is complete: store it in the flow. */
static void xml_leaf(struct capture *c)
{
	struct xflow *x = &c->xf;
	const char *s = c->xtext;
	size_t n = c->xtextlen;
	int d = x->dir == XD_REPLY;
	struct ct_tuple *tp = d ? &x->r.e.reply : &x->r.e.orig;
	enum xtext xt = c->xt;
	char q[64];
	uint64_t v;
	uint16_t key;
	unsigned bit = 0;

	c->xt = XT_NONE;
	trim(&s, &n);
	if (c->xtext_over) {
		xf_bad(x, "over-long element text");
		return;
	}
	switch (xt) {
	case XT_SRC:
	case XT_DST: {
		bit = xt == XT_SRC ? HAVE_SRC : HAVE_DST;
		if (x->have[d] & bit)
			break;
		int fam = parse_addr(s, n, xt == XT_SRC ? tp->src : tp->dst);
		if (!fam)
			xf_bad(x, "bad address %s", quote(q, s, n));
		else if (x->r.e.family && fam != x->r.e.family)
			xf_bad(x, "IPv4 and IPv6 addresses mixed");
		x->r.e.family = (uint8_t)fam;
		break;
	}
	case XT_SPORT:
	case XT_DPORT:
		bit = xt == XT_SPORT ? HAVE_SPORT : HAVE_DPORT;
		if (x->have[d] & bit)
			break;
		if (!parse_uint(s, n, 65535, &v))
			xf_bad(x, "bad port %s", quote(q, s, n));
		else if (xt == XT_SPORT)
			tp->sport = (uint16_t)v;
		else
			tp->dport = (uint16_t)v;
		break;
	case XT_SKEY:
	case XT_DKEY:
		bit = xt == XT_SKEY ? HAVE_SKEY : HAVE_DKEY;
		if (x->have[d] & bit)
			break;
		if (!parse_key(s, n, &key))
			xf_bad(x, "bad GRE key %s", quote(q, s, n));
		else if (xt == XT_SKEY)
			tp->sport = key;
		else
			tp->dport = key;
		break;
	case XT_TZONE:
		bit = HAVE_ZONE;
		if (x->have[d] & bit)
			break;
		if (!parse_uint(s, n, 65535, &v))
			xf_bad(x, "bad zone %s", quote(q, s, n));
		else
			x->tzone[d] = (unsigned)v;
		break;
	case XT_STATE:
		if (x->has_state || n >= sizeof(x->state))
			xf_bad(x, "bad or repeated <state>");
		else
			memcpy(x->state, s, n);
		x->has_state = true;
		break;
	case XT_TIMEOUT:
		if (x->has_timeout || !parse_uint(s, n, UINT32_MAX, &v))
			xf_bad(x, "bad or repeated <timeout> %s", quote(q, s, n));
		else
			x->r.timeout_s = (uint32_t)v;
		x->has_timeout = true;
		break;
	case XT_ZONE:
		if (x->has_zone || !parse_uint(s, n, 65535, &v))
			xf_bad(x, "bad or repeated <zone> %s", quote(q, s, n));
		else
			x->zone = (unsigned)v;
		x->has_zone = true;
		break;
	case XT_ID:
		if (x->has_id || !parse_uint(s, n, UINT32_MAX, &v))
			xf_bad(x, "bad or repeated <id> %s", quote(q, s, n));
		else
			x->r.e.id = (uint32_t)v;
		x->has_id = true;
		break;
	default: { /* <when> fields */
		static const uint64_t max[6] = { 23, 59, 60, 31, 12, 9999 };
		unsigned i = (unsigned)(xt - XT_HOUR);

		if ((x->when_have & (1u << i)) || !parse_uint(s, n, max[i], &v))
			xf_bad(x, "bad or repeated <when> field %s", quote(q, s, n));
		else
			x->when[i] = (unsigned)v;
		x->when_have |= 1u << i;
		return;
	}
	}
	if (bit) {
		if (x->have[d] & bit)
			xf_bad(x, "repeated element in the %s tuple", dir_name(d));
		x->have[d] |= bit;
	}
}

/* <when> (local time of the capturing machine) into ms since the epoch,
 * with the importing process's zone.  mktime() once per minute. */
static bool xml_when(struct capture *c, const unsigned w[6], int64_t *ms)
{
	int64_t key = ((((int64_t)w[5] * 13 + w[4]) * 32 + w[3]) * 24 + w[0]) * 60 + w[1];

	if (w[5] < 1970 || w[4] < 1 || w[3] < 1)
		return false;
	if (key != c->when_key) {
		struct tm tm = { .tm_year = (int)w[5] - 1900, .tm_mon = (int)w[4] - 1,
				 .tm_mday = (int)w[3], .tm_hour = (int)w[0],
				 .tm_min = (int)w[1], .tm_isdst = -1 };
		time_t t = mktime(&tm);

		/* mktime() normalises: 31 November comes back as 1 December */
		if (t == (time_t)-1 || tm.tm_mday != (int)w[3] ||
		    tm.tm_mon != (int)w[4] - 1 || tm.tm_year != (int)w[5] - 1900)
			return false;
		c->when_key = key;
		c->when_base = (int64_t)t;
	}
	*ms = (c->when_base + w[2]) * 1000;
	return true;
}

/* </flow>: check the flow and make it a record. */
static void xml_flow_end(struct capture *c)
{
	struct xflow *x = &c->xf;
	struct ct_entry *e = &x->r.e;
	unsigned need = HAVE_L3 | HAVE_L4 | HAVE_SRC | HAVE_DST;

	x->open = false;
	if (x->bad)
		goto bad;
	for (int d = 0; d < 2; d++) {
		unsigned miss = need & ~x->have[d];

		if (miss) {
			xf_bad(x, "no %s in the %s tuple",
			       miss & HAVE_L3 ? "<layer3>" : miss & HAVE_L4 ? "<layer4>" :
			       miss & HAVE_SRC ? "<src>" : "<dst>", dir_name(d));
			goto bad;
		}
	}
	if (x->l3[0] != x->l3[1] || (x->l3[0] != AF_INET && x->l3[0] != AF_INET6) ||
	    x->l3[0] != e->family) {
		xf_bad(x, "layer 3 protocol and addresses disagree");
		goto bad;
	}
	if (x->l4[0] != x->l4[1]) {
		xf_bad(x, "the tuples have different protocols");
		goto bad;
	}
	e->proto = (uint8_t)x->l4[0];
	if (proto_has_ports(e->proto))
		need = HAVE_SPORT | HAVE_DPORT;
	else if (e->proto == IPPROTO_GRE)
		need = HAVE_SKEY | HAVE_DKEY;
	else
		need = 0; /* conntrack's XML has no ICMP id: sport = dport = 0 */
	for (int d = 0; d < 2; d++) {
		if (need & ~x->have[d]) {
			xf_bad(x, "no ports in the %s tuple", dir_name(d));
			goto bad;
		}
	}
	if (e->proto == IPPROTO_TCP && x->has_state) {
		int st = tcp_state_num(x->state, strlen(x->state));
		char q[64];

		if (st < 0) {
			xf_bad(x, "unknown TCP state %s",
			       quote(q, x->state, strlen(x->state)));
			goto bad;
		}
		e->tcp_state = (uint8_t)st;
	}
	e->status = (x->unreplied ? 0 : IPS_SEEN_REPLY) |
		    (x->assured ? IPS_ASSURED : 0);
	e->zone = (uint16_t)(x->has_zone ? x->zone :
			     (x->have[1] & HAVE_ZONE) ? x->tzone[1] : 0);
	if (x->has_when) {
		if (x->when_have != 0x3f || !xml_when(c, x->when, &x->r.ts_ms)) {
			xf_bad(x, "bad <when>");
			goto bad;
		}
	}
	c->xready = 1;
	return;
bad:
	cap_bad(c, x->r.line, "%s", x->why);
	c->xready = -1;
}

static void XMLCALL xml_end(void *u, const XML_Char *name)
{
	struct capture *c = u;
	unsigned depth = c->xdepth--;

	if (c->xskip) {
		if (depth == c->xskip)
			c->xskip = 0;
		return;
	}
	if (c->xt != XT_NONE) {
		xml_leaf(c);
		return;
	}
	if (depth == 4 && (c->xf.in == XI_L3 || c->xf.in == XI_L4)) {
		c->xf.in = XI_META;
	} else if (depth == 3) {
		c->xf.dir = XD_NONE;
	} else if (depth == 2) {
		xml_flow_end(c);
		c->xsince = 0;
		XML_StopParser(c->xp, XML_TRUE); /* one record per call */
	} else if (depth == 1) {
		c->xroot_closed = true;
		c->xroot_end = (unsigned long)XML_GetCurrentByteIndex(c->xp) +
			       (unsigned long)XML_GetCurrentByteCount(c->xp);
		XML_StopParser(c->xp, XML_TRUE);
	}
}

static void XMLCALL xml_doctype(void *u, const XML_Char *name,
				const XML_Char *sysid, const XML_Char *pubid,
				int has_internal_subset)
{
	xml_abort(u, "a DOCTYPE (conntrack writes none)");
}

/* A fresh parser for a document starting at the current line. */
static int xml_begin(struct capture *c, bool synthetic_root)
{
	if (!XML_ParserReset(c->xp, NULL))
		return cap_fatal(c, ENOMEM);
	XML_SetUserData(c->xp, c);
	XML_SetElementHandler(c->xp, xml_start, xml_end);
	XML_SetCharacterDataHandler(c->xp, xml_text);
	XML_SetStartDoctypeDeclHandler(c->xp, xml_doctype);
	c->xs = XS_INSIDE;
	c->xsuspended = false;
	c->xroot_closed = false;
	c->xfatal_set = false;
	c->xjunk = false;
	c->xdoc_line = c->line;
	c->xdepth = c->xskip = 0;
	c->xt = XT_NONE;
	c->xf.open = false;
	c->xsince = 0;
	c->xfed = 0;
	if (synthetic_root) {
		/* a flow line without its document: as if under <conntrack> */
		static const char root[] = "<conntrack>";

		if (XML_Parse(c->xp, root, (int)sizeof(root) - 1, XML_FALSE) !=
		    XML_STATUS_OK)
			return cap_fatal(c, ENOMEM);
		c->xfed = sizeof(root) - 1;
	}
	return 0;
}

/* After an XML error or the end of a document: back to looking for the
 * next document or flow line. */
static void xml_outside(struct capture *c, bool junk_reported)
{
	c->xs = XS_OUTSIDE;
	c->xsuspended = false;
	c->xjunk = junk_reported;
}

/* expat gave up: report where and why, then resynchronise. */
static int xml_failed(struct capture *c)
{
	enum XML_Error code = XML_GetErrorCode(c->xp);
	unsigned line = xml_line(c);
	const char *why = c->xfatal_set ? c->xwhy : XML_ErrorString(code);

	if (c->midline)
		c->skipline = true;
	xml_outside(c, true);
	return cap_bad(c, line, "XML: %s; skipping to the next <flow>",
		       why ? why : "error");
}

/* The parser returned (suspended or not): what now.  Returns 1 if a
 * record or an error is ready, 0 to go on, -1 on a fatal XML error. */
static int xml_after(struct capture *c, enum XML_Status s)
{
	if (s == XML_STATUS_ERROR)
		return -1;
	c->xsuspended = s == XML_STATUS_SUSPENDED;
	if (c->xready)
		return 1;
	if (c->xroot_closed) {
		/* Anything after </conntrack> on that line is junk. */
		const char *rest = c->xpiece;
		size_t n = c->xpiece_len;

		if (c->xroot_end >= c->xpiece_at &&
		    c->xroot_end - c->xpiece_at <= n) {
			rest += c->xroot_end - c->xpiece_at;
			n -= c->xroot_end - c->xpiece_at;
		} else {
			n = 0;
		}
		trim(&rest, &n);
		xml_outside(c, false);
		c->skipline = c->midline; /* the rest of an over-long line */
		if (n) {
			c->xjunk = true;
			c->xready = -1;
			cap_bad(c, c->line, "text after </conntrack>");
			return 1;
		}
	}
	return 0;
}

static int xml_deliver(struct capture *c, struct capture_record *r)
{
	int ready = c->xready;

	c->xready = 0;
	if (ready < 0) {
		errno = EBADMSG;
		return -1;
	}
	*r = c->xf.r;
	c->st.records++;
	return 1;
}

/* End of input inside a document. */
static int xml_eof(struct capture *c)
{
	unsigned line = c->xf.open ? c->xf.r.line : c->line;
	bool flow_open = c->xf.open;

	c->xs = XS_DONE;
	if (!flow_open && c->xdepth <= 1) {
		/* No </conntrack>: conntrack was killed, or is still running.
		 * Fine unless part of a tag is pending. */
		if (XML_Parse(c->xp, "", 0, XML_TRUE) == XML_STATUS_OK ||
		    XML_GetErrorCode(c->xp) == XML_ERROR_NO_ELEMENTS)
			return 0;
	}
	return cap_bad(c, line, "cut short: the input ends inside %s",
		       flow_open ? "a <flow>" : "an XML tag");
}

static int xml_next(struct capture *c, struct capture_record *r)
{
	for (;;) {
		const char *s, *t;
		size_t n, tn;
		enum piece kind;
		enum XML_Status st;
		int rc;

		if (c->xready)
			return xml_deliver(c, r);
		if (c->xs == XS_DONE)
			return 0;
		if (c->xs == XS_INSIDE && c->xsuspended) {
			rc = xml_after(c, XML_ResumeParser(c->xp));
			if (rc < 0)
				return xml_failed(c);
			continue;
		}
		rc = cap_piece(c, &s, &n, &kind);
		if (rc < 0)
			return cap_fatal(c, EIO);
		if (rc == 0) {
			if (c->xs == XS_INSIDE)
				return xml_eof(c);
			c->xs = XS_DONE;
			return 0;
		}
		if (c->skipline) {
			c->skipline = kind == PIECE_PART;
			continue;
		}
		if (c->xs == XS_OUTSIDE) {
			/* A fresh line outside any document. */
			t = s;
			tn = n;
			trim(&t, &tn);
			if (tn == 0 || is_summary(t, tn)) {
				c->st.skipped++;
				c->skipline = kind == PIECE_PART;
				continue;
			}
			if (starts(t, tn, "<?xml") || starts(t, tn, "<conntrack")) {
				if (xml_begin(c, false) < 0)
					return -1;
			} else if (starts(t, tn, "<flow")) {
				if (xml_begin(c, true) < 0)
					return -1;
			} else {
				char q[64];

				c->skipline = kind == PIECE_PART;
				if (c->xjunk)
					continue;
				c->xjunk = true;
				return cap_bad(c, c->line, "not conntrack XML %s; "
					       "skipping to the next <flow>",
					       quote(q, t, tn));
			}
		}
		/* Feed the piece with its newline (it is still in buf). */
		c->xsince += n;
		if (c->xsince > CAP_XML_FLOW_MAX) {
			/* bounds what expat buffers for one unfinished token */
			c->skipline = kind == PIECE_PART;
			xml_outside(c, true);
			return cap_bad(c, c->line, "XML: no complete <flow> in "
				       "%d bytes; skipping to the next <flow>",
				       CAP_XML_FLOW_MAX);
		}
		if (kind == PIECE_LINE)
			n++;
		c->xpiece = s;
		c->xpiece_len = n;
		c->xpiece_at = c->xfed;
		c->xfed += n;
		st = XML_Parse(c->xp, s, (int)n, XML_FALSE);
		if (xml_after(c, st) < 0)
			return xml_failed(c);
	}
}

/* ---- detection ---- */

/* What one line looks like. */
enum dline { DL_SKIP, DL_UNKNOWN, DL_XML, DL_EVENTS, DL_EXT, DL_LIST };

static enum dline detect_line(const char *s, size_t n)
{
	const char *p, *end;
	struct tok a, b;

	trim(&s, &n);
	if (n == 0 || is_summary(s, n))
		return DL_SKIP;
	if (s[0] == '<')
		return starts(s, n, "<?xml") || starts(s, n, "<conntrack") ||
		       starts(s, n, "<flow") ? DL_XML : DL_UNKNOWN;
	if (s[0] == '[')
		return (n > 1 && is_digit(s[1])) || starts(s, n, "[NEW]") ||
		       starts(s, n, "[UPDATE]") || starts(s, n, "[DESTROY]") ?
		       DL_EVENTS : DL_UNKNOWN;
	p = s;
	end = s + n;
	if (tok_next(&p, end, &a) <= 0 || tok_next(&p, end, &b) <= 0 ||
	    a.v || b.v || !is_digit(b.s[0]))
		return DL_UNKNOWN;
	if (eq(a.s, a.n, "ipv4") || eq(a.s, a.n, "ipv6"))
		return DL_EXT;
	return proto_num(a.s, a.n) >= 0 ? DL_LIST : DL_UNKNOWN;
}

/* /proc/net/nf_conntrack and conntrack -L -o extended print the same
 * columns; what only the kernel prints: zone=0 (conntrack omits the
 * default zone), IPv6 addresses in full (%pI6: 2001:0db8:0000:...) and
 * GRE's "timeout=N, stream_timeout=N". */
static bool proc_tell(const char *s, size_t n)
{
	const char *p = s, *end = s + n;
	struct tok t;

	while (tok_next(&p, end, &t) > 0) {
		if (!t.v)
			continue;
		if (eq(t.s, t.n, "zone=0") || eq(t.s, t.klen, "timeout"))
			return true;
		if ((eq(t.s, t.klen, "src") || eq(t.s, t.klen, "dst")) && t.vn == 39) {
			bool full = true;

			for (size_t i = 0; i < 39 && full; i++)
				full = i % 5 == 4 ? t.v[i] == ':' :
				       (is_digit(t.v[i]) || (t.v[i] >= 'a' && t.v[i] <= 'f'));
			if (full)
				return true;
		}
	}
	return false;
}

/* conntrack -E -o xml writes <flow type="...">, conntrack -L -o xml <flow>. */
static enum capture_format detect_xml(const char *buf, size_t n)
{
	const char *f = memmem(buf, n, "<flow", 5), *end = buf + n;

	if (f) {
		f += 5;
		while (f < end && (is_ws(*f) || *f == '\n'))
			f++;
		if (starts(f, (size_t)(end - f), "type="))
			return CAPTURE_EVENTS_XML;
	}
	return CAPTURE_LIST_XML;
}

/* Looks at the first lines in the buffer without consuming them: the
 * first recognisable line decides, except that -o extended and /proc
 * look the same line by line, so every line of the window is searched
 * for what only the kernel prints.  *nothing: every line was blank or a
 * conntrack message. */
static enum capture_format detect(struct capture *c, bool *nothing)
{
	const char *p = c->buf, *end = c->buf + c->end;
	enum dline first = DL_UNKNOWN;
	unsigned seen = 0;

	*nothing = true;
	while (p < end && seen < CAP_DETECT_LINES) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		enum dline k;

		while (p < le && *p == '\0')
			p++;
		k = detect_line(p, (size_t)(le - p));
		if (k != DL_SKIP) {
			*nothing = false;
			seen++;
		}
		if (first == DL_UNKNOWN && k != DL_SKIP)
			first = k;
		if (first == DL_EXT && k == DL_EXT && proc_tell(p, (size_t)(le - p)))
			return CAPTURE_PROC;
		if (first != DL_UNKNOWN && first != DL_EXT)
			break;
		p = nl ? nl + 1 : end;
	}
	switch (first) {
	case DL_XML:
		return detect_xml(c->buf, c->end);
	case DL_EVENTS:
		return CAPTURE_EVENTS;
	case DL_EXT:
		return CAPTURE_LIST_EXTENDED;
	case DL_LIST:
		return CAPTURE_LIST;
	default:
		return CAPTURE_AUTO;
	}
}

/* ---- public ---- */

struct capture *capture_open(FILE *f, const char *name,
			     enum capture_format fmt)
{
	struct capture *c;
	int err;

	if (!f || fmt < CAPTURE_AUTO || fmt > CAPTURE_EVENTS_XML) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->f = f;
	c->name = strdup(name ? name : "-");
	c->buf = malloc(CAP_BUF);
	c->when_key = -1;
	if (!c->name || !c->buf) {
		err = ENOMEM;
		goto fail;
	}
	if (cap_fill(c) < 0) {
		err = EIO;
		log_warn("%s: read", c->name);
		goto fail;
	}
	if (fmt == CAPTURE_AUTO) {
		bool nothing;

		fmt = detect(c, &nothing);
		if (fmt == CAPTURE_AUTO && !nothing) {
			log_warnx("%s: not a conntrack capture (conntrack -L, "
				  "-E, -o extended, -o xml or "
				  "/proc/net/nf_conntrack)", c->name);
			err = EBADMSG;
			goto fail;
		}
	}
	c->fmt = fmt;
	c->xml = fmt == CAPTURE_LIST_XML || fmt == CAPTURE_EVENTS_XML;
	if (c->xml) {
		c->xp = XML_ParserCreate(NULL);
		if (!c->xp) {
			err = ENOMEM;
			goto fail;
		}
		c->xs = XS_OUTSIDE;
	}
	return c;
fail:
	capture_close(c);
	errno = err;
	return NULL;
}

enum capture_format capture_format(const struct capture *c)
{
	return c->fmt;
}

const char *capture_format_name(enum capture_format f)
{
	switch (f) {
	case CAPTURE_AUTO:
		return "empty";
	case CAPTURE_LIST:
		return "conntrack -L";
	case CAPTURE_LIST_EXTENDED:
		return "conntrack -L -o extended";
	case CAPTURE_LIST_XML:
		return "conntrack -L -o xml";
	case CAPTURE_PROC:
		return "/proc/net/nf_conntrack";
	case CAPTURE_EVENTS:
		return "conntrack -E";
	case CAPTURE_EVENTS_XML:
		return "conntrack -E -o xml";
	}
	return NULL;
}

int capture_next(struct capture *c, struct capture_record *r)
{
	if (c->fatal) {
		errno = c->fatal;
		return -1;
	}
	c->err[0] = '\0';
	return c->xml ? xml_next(c, r) : text_next(c, r);
}

const char *capture_error(const struct capture *c)
{
	return c->err;
}

void capture_stats(const struct capture *c, struct capture_stats *st)
{
	*st = c->st;
}

void capture_close(struct capture *c)
{
	if (!c)
		return;
	if (c->xp)
		XML_ParserFree(c->xp);
	free(c->buf);
	free(c->name);
	free(c);
}
