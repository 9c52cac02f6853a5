/*
 * maplog.c - the mapping log (store.h, schema/006_maplog.sql): the block
 * codec, the writer's part of store_write() and store_begin_run(), its
 * retention, and the reverse lookup store_json_lookup().
 *
 * The writer pairs every end with its start.  A start and its end in the
 * same batch become one complete record at once.  A start still open at
 * the end of a batch goes into an "open" block (one per public IP,
 * protocol and port range); an in-memory table maps the mapping's key
 * fingerprint to that block's rowid (16 bytes a slot: the only memory the
 * log holds per open mapping).  When its end comes, that block is decoded,
 * the mapping leaves it as a complete record (in an "ended" block) and the
 * block is rewritten with the members still open, all in the batch's
 * transaction: open blocks always hold exactly the mappings open at the
 * last write, and a lookup never shows an ended mapping as open.
 *
 * The in-memory table changes only once the transaction committed; a
 * failed write keeps its records ("carry") and applies them with the next
 * batch, so a failure delays records and loses none.
 *
 * Why in store_write()'s transaction rather than one of its own: a gap
 * row and the ends it makes uncertain land together (a lookup never sees
 * one without the other), and the writer's state commits with the rest.
 * The cost is latency of the live tables' write: at 100,000 mappings/s
 * and --interval 5 the log's part takes ~0.5-1 s of CPU per batch, on the
 * writer thread, which the collector does not wait for.
 *
 * Memory, per mapping of the batch in flight: its packed records in the
 * collector's two swapped buffers (2 x 32 bytes for IPv4, and 32 a TCP
 * state change), and in the writer an 88-byte item, a fingerprint and
 * pairing-table slots (~150 bytes), and a 40-byte struct ml_chg when it
 * changed state in the batch, freed for reuse by the next batch.
 *
 * TCP states.  A start record carries the state at the start; a state
 * record (STORE_MAPLOG_STATE) each change the collector saw.  An entry
 * keeps three, fixed-size: the state at its start, the last change with
 * its time, and the state it held longest between two changes that
 * events bounded, with that interval (a TCP connection's ESTABLISHED,
 * between its handshake and its close); a flag says when more than one
 * change came, so that the states in between, not kept, are never shown
 * as the start's.  A change of a mapping that starts in the same batch
 * costs a probe of the pairing table the start is in anyway and a small
 * record of the batch's changes (struct ml_chg); a change of a mapping
 * open on disk is kept in a table of its own (fp -> that record) and
 * rewrites its open block, in place, in the same pass as the ends do,
 * once a block per batch.
 *
 * Block encoding (before zstd), for n mappings sorted by (public port,
 * start); varints are LEB128, zigzag where signed:
 *   u8 version (1 or 2), u8 alen (4 or 16), u8 ended, varint n,
 *   zigzag base (the first start, ms),
 *   then columns, each as varint byte length + bytes:
 *   flags (u8 each), start (zigzag delta from the previous start),
 *   duration (varint end - start; ended blocks only), zone (varint),
 *   public port (varint delta from the previous: sorted, so small),
 *   host ip (alen each), host port (u16 BE), destination ip (alen
 *   each), destination port (u16 BE);
 *   version 2 only: states (u8 each: the start's in the low nibble, the
 *   last change's in the high one, 0xf none), state time (varint: 0 no
 *   change, else state_ms - start + 1), longest state (u8, 0xf none),
 *   its start (varint: 0 none, else long_ms - start + 1), its length
 *   (varint ms).
 * Version 1 blocks (written before the log kept states) still decode:
 * their mappings have no state (NS_TCP_STATE_UNKNOWN), and say so.  The
 * writer writes version 2 only; a version 1 open block becomes version 2
 * when it is rewritten.
 * Columns put alike bytes together, so zstd finds the repeated internal
 * hosts and destinations: an IPv4 mapping takes ~10-20 bytes.
 */
#include "store/internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <jansson.h>
#include <zstd.h>

#define ML_VERSION 2	     /* written; 1 (no states) is still read */
#define ML_COLS_V1 9
#define ML_COLS 14
#define ML_STATE_NONE 0xf	     /* a state nibble: none, or unknown */
#define ML_BLOCK_MAX 4096	     /* mappings per block */
#define ML_ZSTD_LEVEL 1
#define ML_FRAME_MAX (64u << 20)     /* a decoded block, at most */
#define ML_OPEN_T_LAST INT64_MAX     /* t_last of an open block */
#define ML_KEEP_MS_DEFAULT (7LL * 24 * 3600 * 1000)
#define ML_MAX_BYTES_DEFAULT (256ULL << 20)
#define ML_CARRY_MAX (256u << 20)    /* bytes kept across failed writes */
#define ML_PREFETCH 16		     /* records ahead whose slots are fetched */

/* ---- varints and the codec ---- */

struct ml_buf {
	uint8_t *p;
	size_t n, cap;
	int failed;
};

static void buf_need(struct ml_buf *b, size_t more)
{
	size_t ncap;
	uint8_t *np;

	if (b->failed || b->n + more <= b->cap)
		return;
	ncap = b->cap ? b->cap : 1024;
	while (ncap < b->n + more)
		ncap *= 2;
	if (!(np = realloc(b->p, ncap))) {
		b->failed = 1;
		return;
	}
	b->p = np;
	b->cap = ncap;
}

static void buf_put(struct ml_buf *b, const void *src, size_t len)
{
	if (!len)
		return;
	buf_need(b, len);
	if (b->failed)
		return;
	memcpy(b->p + b->n, src, len);
	b->n += len;
}

static void buf_varint(struct ml_buf *b, uint64_t v)
{
	uint8_t tmp[10];
	size_t k = 0;

	do {
		tmp[k++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		v >>= 7;
	} while (v);
	buf_put(b, tmp, k);
}

static uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* A reader over len bytes; any overrun sets bad. */
struct ml_rd {
	const uint8_t *p, *end;
	int bad;
};

static uint64_t rd_varint(struct ml_rd *r)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t c;

		if (r->p >= r->end) {
			r->bad = 1;
			return 0;
		}
		c = *r->p++;
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			return v;
	}
	r->bad = 1;
	return 0;
}

static const uint8_t *rd_take(struct ml_rd *r, size_t len)
{
	const uint8_t *p = r->p;

	if ((size_t)(r->end - r->p) < len) {
		r->bad = 1;
		return NULL;
	}
	r->p += len;
	return p;
}

/* A column: its bytes as a reader of their own. */
static struct ml_rd rd_column(struct ml_rd *r)
{
	struct ml_rd c = { NULL, NULL, 0 };
	uint64_t len = rd_varint(r);
	const uint8_t *p = r->bad ? NULL : rd_take(r, (size_t)len);

	if (!p || len > SIZE_MAX) {
		r->bad = c.bad = 1;
		return c;
	}
	c.p = p;
	c.end = p + len;
	return c;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct store_maplog_entry *x = a, *y = b;

	if (x->public_port != y->public_port)
		return x->public_port < y->public_port ? -1 : 1;
	if (x->start_ms != y->start_ms)
		return x->start_ms < y->start_ms ? -1 : 1;
	return memcmp(x->dest_ip, y->dest_ip, 16);
}

/* Appends column col (0..8) of e[0..n) to b, with its length first. */
/* Writes v as a varint at q; returns the byte after it. */
static uint8_t *put_varint(uint8_t *q, uint64_t v)
{
	while (v >= 0x80) {
		*q++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*q++ = (uint8_t)v;
	return q;
}

/* A TCP state as a nibble of the states column. */
static unsigned state_nibble(uint8_t state)
{
	return state < NS_TCP_STATES ? state : ML_STATE_NONE;
}

/* Whether e has a state change to write (one to a known state). */
static int state_changed(const struct store_maplog_entry *e)
{
	return e->state_ms && e->state_last < NS_TCP_STATES;
}

/* Whether e has a longest held state to write. */
static int state_held(const struct store_maplog_entry *e)
{
	return e->state_long < NS_TCP_STATES && e->long_end > e->long_ms &&
	       e->long_ms >= e->start_ms;
}

/* Column col of e[0..n) into b, as its byte length and bytes.  Room for
 * the widest column (a 10-byte varint or a 16-byte address a mapping) is
 * made once, then written without checks: byte-at-a-time appends were a
 * twentieth of the writer's time. */
static void put_column(struct ml_buf *b, struct ml_buf *tmp, int col,
		       const struct store_maplog_entry *e, size_t n,
		       unsigned alen)
{
	uint8_t *q;

	tmp->n = 0;
	buf_need(tmp, n * 16 + 16);
	if (tmp->failed) {
		b->failed = 1;
		return;
	}
	q = tmp->p;
	for (size_t i = 0; i < n; i++) {
		switch (col) {
		case 0: *q++ = e[i].flags; break;
		case 1: q = put_varint(q, zigzag(e[i].start_ms -
						 (i ? e[i - 1].start_ms
						    : e[0].start_ms)));
			break;
		case 2: q = put_varint(q, (uint64_t)(e[i].end_ms -
						     e[i].start_ms));
			break;
		case 3: q = put_varint(q, e[i].zone); break;
		case 4: q = put_varint(q, (uint64_t)(e[i].public_port -
					(i ? e[i - 1].public_port : 0)));
			break;
		case 5: memcpy(q, e[i].host_ip, alen); q += alen; break;
		case 6: *q++ = (uint8_t)(e[i].host_port >> 8);
			*q++ = (uint8_t)e[i].host_port;
			break;
		case 7: memcpy(q, e[i].dest_ip, alen); q += alen; break;
		case 8: *q++ = (uint8_t)(e[i].dest_port >> 8);
			*q++ = (uint8_t)e[i].dest_port;
			break;
		case 9: *q++ = (uint8_t)(state_nibble(e[i].state_start) |
					 (state_changed(&e[i]) ?
					  e[i].state_last : ML_STATE_NONE) << 4);
			break;
		case 10: q = put_varint(q, state_changed(&e[i]) ?
					   (uint64_t)(e[i].state_ms -
						      e[i].start_ms) + 1 : 0);
			break;
		case 11: *q++ = (uint8_t)(state_held(&e[i]) ? e[i].state_long
							    : ML_STATE_NONE);
			break;
		case 12: q = put_varint(q, state_held(&e[i]) ?
					   (uint64_t)(e[i].long_ms -
						      e[i].start_ms) + 1 : 0);
			break;
		case 13: q = put_varint(q, state_held(&e[i]) ?
					   (uint64_t)(e[i].long_end -
						      e[i].long_ms) : 0);
			break;
		}
	}
	tmp->n = (size_t)(q - tmp->p);
	buf_varint(b, tmp->n);
	buf_put(b, tmp->p, tmp->n);
}

/* Encodes e[0..n), which must be sorted by entry_cmp() (ports then
 * starts: the port column is delta coded). */
static int encode_sorted(ZSTD_CCtx *cctx, const struct store_maplog_entry *e,
			 size_t n, unsigned alen, int ended, void **out,
			 size_t *len)
{
	struct ml_buf raw = { 0 }, tmp = { 0 };
	uint8_t head[3] = { ML_VERSION, (uint8_t)alen, (uint8_t)!!ended };
	size_t bound, z;
	void *dst = NULL;

	*out = NULL;
	buf_put(&raw, head, 3);
	buf_varint(&raw, n);
	buf_varint(&raw, zigzag(e[0].start_ms));
	for (int col = 0; col < ML_COLS; col++)
		if (col != 2 || ended)
			put_column(&raw, &tmp, col, e, n, alen);
	free(tmp.p);
	if (raw.failed)
		goto nomem;
	bound = ZSTD_compressBound(raw.n);
	if (!(dst = malloc(bound)))
		goto nomem;
	z = cctx ? ZSTD_compressCCtx(cctx, dst, bound, raw.p, raw.n,
				     ML_ZSTD_LEVEL)
		 : ZSTD_compress(dst, bound, raw.p, raw.n, ML_ZSTD_LEVEL);
	free(raw.p);
	if (ZSTD_isError(z)) {
		log_warnx("store: maplog: zstd: %s", ZSTD_getErrorName(z));
		free(dst);
		errno = EINVAL;
		return -1;
	}
	*out = dst;
	*len = z;
	return 0;
nomem:
	free(raw.p);
	free(dst);
	errno = ENOMEM;
	log_warn("store: maplog: encoding a block of %zu mappings", n);
	return -1;
}

int store_maplog_encode(const struct store_maplog_entry *e, size_t n,
			unsigned alen, int ended, void **out, size_t *len)
{
	struct store_maplog_entry *s;
	int rc;

	if (!n || (alen != 4 && alen != 16)) {
		errno = EINVAL;
		log_warnx("store: maplog: a block of %zu mappings, %u-byte "
			  "addresses", n, alen);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (ended && e[i].end_ms < e[i].start_ms) {
			errno = EINVAL;
			log_warnx("store: maplog: a mapping that ends before it "
				  "starts");
			return -1;
		}
		if ((e[i].state_ms && e[i].state_ms < e[i].start_ms) ||
		    (e[i].long_end > e[i].long_ms &&
		     e[i].long_ms < e[i].start_ms)) {
			errno = EINVAL;
			log_warnx("store: maplog: a state change before the "
				  "mapping's start");
			return -1;
		}
	}
	if (!(s = malloc(n * sizeof(*s)))) {
		log_warn("store: maplog: encoding");
		return -1;
	}
	memcpy(s, e, n * sizeof(*s));
	qsort(s, n, sizeof(*s), entry_cmp);
	rc = encode_sorted(NULL, s, n, alen, ended, out, len);
	free(s);
	return rc;
}

static int decode_raw(const uint8_t *p, size_t len,
		      struct store_maplog_entry **out, size_t *n_out)
{
	struct ml_rd r = { p, p + len, 0 }, c[ML_COLS];
	struct store_maplog_entry *e = NULL;
	const uint8_t *h = rd_take(&r, 3);
	uint64_t n;
	int64_t start, base;
	unsigned alen;
	int ended, cols;

	if (!h || (h[0] != 1 && h[0] != 2) || (h[1] != 4 && h[1] != 16) ||
	    h[2] > 1)
		goto bad;
	cols = h[0] == 1 ? ML_COLS_V1 : ML_COLS;
	alen = h[1];
	ended = h[2];
	n = rd_varint(&r);
	base = unzigzag(rd_varint(&r));
	if (r.bad || n == 0 || n > len) /* every mapping takes > 1 byte */
		goto bad;
	for (int col = 0; col < cols; col++) {
		if (col == 2 && !ended) {
			c[col].p = c[col].end = NULL;
			c[col].bad = 0;
			continue;
		}
		c[col] = rd_column(&r);
	}
	if (r.bad || r.p != r.end)
		goto bad;
	if (!(e = calloc((size_t)n, sizeof(*e)))) {
		log_warn("store: maplog: decoding %llu mappings",
			 (unsigned long long)n);
		return -1;
	}
	start = base;
	for (uint64_t i = 0, port = 0; i < n; i++) {
		const uint8_t *f = rd_take(&c[0], 1), *x;

		if (!f)
			goto bad;
		e[i].flags = *f;
		start += unzigzag(rd_varint(&c[1]));
		e[i].start_ms = start;
		e[i].end_ms = ended ? start + (int64_t)rd_varint(&c[2]) : 0;
		e[i].zone = (uint16_t)rd_varint(&c[3]);
		port += rd_varint(&c[4]);
		if (port > 65535)
			goto bad;
		e[i].public_port = (uint16_t)port;
		if ((x = rd_take(&c[5], alen)))
			memcpy(e[i].host_ip, x, alen);
		if ((x = rd_take(&c[6], 2)))
			e[i].host_port = (uint16_t)(x[0] << 8 | x[1]);
		if ((x = rd_take(&c[7], alen)))
			memcpy(e[i].dest_ip, x, alen);
		if ((x = rd_take(&c[8], 2)))
			e[i].dest_port = (uint16_t)(x[0] << 8 | x[1]);
		e[i].state_start = e[i].state_last = NS_TCP_STATE_UNKNOWN;
		if (cols > ML_COLS_V1 && (x = rd_take(&c[9], 1))) {
			unsigned s0 = *x & 0xf, s1 = *x >> 4;
			uint64_t d = rd_varint(&c[10]);

			if ((s0 >= NS_TCP_STATES && s0 != ML_STATE_NONE) ||
			    (s1 >= NS_TCP_STATES && s1 != ML_STATE_NONE) ||
			    (d == 0) != (s1 == ML_STATE_NONE) ||
			    d > (uint64_t)INT64_MAX / 2)
				goto bad;
			if (s0 != ML_STATE_NONE)
				e[i].state_start = (uint8_t)s0;
			if (d) {
				e[i].state_last = (uint8_t)s1;
				e[i].state_ms = start + (int64_t)(d - 1);
			}
		}
		e[i].state_long = NS_TCP_STATE_UNKNOWN;
		if (cols > ML_COLS_V1 && (x = rd_take(&c[11], 1))) {
			uint64_t from = rd_varint(&c[12]);
			uint64_t held = rd_varint(&c[13]);

			if ((*x >= NS_TCP_STATES && *x != ML_STATE_NONE) ||
			    (from == 0) != (*x == ML_STATE_NONE) ||
			    (from == 0) != (held == 0) ||
			    from > (uint64_t)INT64_MAX / 4 ||
			    held > (uint64_t)INT64_MAX / 4)
				goto bad;
			if (from) {
				e[i].state_long = *x;
				e[i].long_ms = start + (int64_t)(from - 1);
				e[i].long_end = e[i].long_ms + (int64_t)held;
			}
		}
		for (int col = 0; col < cols; col++)
			if (c[col].bad)
				goto bad;
	}
	for (int col = 0; col < cols; col++)
		if (c[col].p != c[col].end)
			goto bad;
	*out = e;
	*n_out = (size_t)n;
	return 0;
bad:
	free(e);
	errno = EILSEQ;
	log_warnx("store: maplog: a block that is not a valid mapping-log "
		  "block");
	return -1;
}

int store_maplog_decode(const void *data, size_t len,
			struct store_maplog_entry **e, size_t *n)
{
	unsigned long long size = ZSTD_getFrameContentSize(data, len);
	void *raw;
	size_t got;
	int rc;

	*e = NULL;
	*n = 0;
	if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
	    size == 0 || size > ML_FRAME_MAX) {
		errno = EILSEQ;
		log_warnx("store: maplog: a block that is not a zstd frame of "
			  "known size");
		return -1;
	}
	if (!(raw = malloc((size_t)size))) {
		log_warn("store: maplog: decoding");
		return -1;
	}
	got = ZSTD_decompress(raw, (size_t)size, data, len);
	if (ZSTD_isError(got) || got != size) {
		free(raw);
		errno = EILSEQ;
		log_warnx("store: maplog: a corrupt block (zstd: %s)",
			  ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
		return -1;
	}
	rc = decode_raw(raw, got, e, n);
	free(raw);
	return rc;
}

/* ---- a mapping's TCP state at a moment ---- */

void store_maplog_state_at(const struct store_maplog_entry *e, uint8_t proto,
			   int64_t t, struct store_maplog_state *out)
{
	int changed = e->state_ms && e->state_last < NS_TCP_STATES;

	memset(out, 0, sizeof(*out));
	out->state = NS_TCP_STATE_UNKNOWN;
	if (proto != IPPROTO_TCP) {
		out->why = STORE_STATE_NOT_TCP;
	} else if (e->state_long < NS_TCP_STATES && t >= e->long_ms &&
		   t < e->long_end && (!changed || t < e->state_ms)) {
		/* the longest held state, bounded by events: exact */
		out->state = e->state_long;
		out->since_ms = e->long_ms;
		out->exact = 1;
		out->why = STORE_STATE_KNOWN;
	} else if (changed && t >= e->state_ms) {
		/* the last change: exact unless it was only found */
		out->state = e->state_last;
		out->since_ms = e->state_ms;
		out->exact = !(e->flags & STORE_MAPLOG_STATE_SEEN);
		out->why = out->exact ? STORE_STATE_KNOWN
				      : STORE_STATE_CHANGE_SEEN;
	} else if (changed && t != e->start_ms &&
		   ((e->flags & (STORE_MAPLOG_STATE_BETWEEN |
				 STORE_MAPLOG_STATE_SEEN)) ||
		    e->state_start >= NS_TCP_STATES)) {
		/* before the last change, which is not the only one (or
		 * came at a moment not known): the state is not kept */
		out->why = STORE_STATE_BETWEEN;
	} else if (e->state_start >= NS_TCP_STATES) {
		out->why = STORE_STATE_NOT_KEPT;
	} else {
		/* the start's state, until the one change if any (and at
		 * the start's own millisecond whatever came after) */
		out->state = e->state_start;
		out->since_ms = e->start_ms;
		out->exact = !(e->flags & STORE_MAPLOG_START_UNKNOWN);
		out->why = out->exact ? STORE_STATE_KNOWN
				      : STORE_STATE_START_SEEN;
	}
}

/* ---- packed records (store.h) ---- */

/* The packed layout: flags, proto, 4 or 6, state, ms (8, host order),
 * zone, public port, host port, destination port (2 each, host order),
 * then the public, host and destination addresses (alen each). */
#define PK_IPS 20

size_t store_maplog_pack(const struct store_maplog_rec *r, uint8_t *out)
{
	unsigned alen = r->family == AF_INET ? 4 : 16;
	uint16_t ports[4] = { r->zone, r->public_port, r->host_port,
			      r->dest_port };

	if (r->family != AF_INET && r->family != AF_INET6)
		return 0;
	out[0] = r->flags;
	out[1] = r->proto;
	out[2] = alen == 4 ? 4 : 6;
	out[3] = r->state;
	memcpy(out + 4, &r->ms, 8);
	memcpy(out + 12, ports, 8);
	memcpy(out + PK_IPS, r->public_ip, alen);
	memcpy(out + PK_IPS + alen, r->host_ip, alen);
	memcpy(out + PK_IPS + 2 * alen, r->dest_ip, alen);
	return PK_IPS + 3 * alen;
}

size_t store_maplog_unpack(const uint8_t *p, size_t len,
			   struct store_maplog_rec *r)
{
	unsigned alen;
	uint16_t ports[4];

	if (len < PK_IPS || (p[2] != 4 && p[2] != 6))
		return 0;
	alen = p[2] == 4 ? 4 : 16;
	if (len < PK_IPS + 3 * alen)
		return 0;
	memset(r, 0, sizeof(*r));
	r->flags = p[0];
	r->proto = p[1];
	r->family = alen == 4 ? AF_INET : AF_INET6;
	r->state = p[3];
	memcpy(&r->ms, p + 4, 8);
	memcpy(ports, p + 12, 8);
	r->zone = ports[0];
	r->public_port = ports[1];
	r->host_port = ports[2];
	r->dest_port = ports[3];
	memcpy(r->public_ip, p + PK_IPS, alen);
	memcpy(r->host_ip, p + PK_IPS + alen, alen);
	memcpy(r->dest_ip, p + PK_IPS + 2 * alen, alen);
	return PK_IPS + 3 * alen;
}

/* The record at byte offset off of buf (written by the store's own
 * pack, so whole). */
static struct store_maplog_rec rec_at(const uint8_t *buf, size_t len,
				      int64_t off)
{
	struct store_maplog_rec r;

	if (!store_maplog_unpack(buf + off, len - (size_t)off, &r))
		memset(&r, 0, sizeof(r));
	return r;
}

/* ---- the writer's state ---- */

/* A key fingerprint -> value table (open addressing, linear probing,
 * deletion by backward shift).  fp 0 marks an empty slot. */
struct ml_slot {
	uint64_t fp;
	int64_t val;
};

struct ml_table {
	struct ml_slot *s;
	size_t mask, n;
};

/* One mapping on its way into a block: a struct store_maplog_entry,
 * packed, with the index of its (public IP, proto) in the write's group
 * table: 88 bytes (a batch holds hundreds of thousands of these). */
struct ml_item {
	int64_t start_ms, end_ms, state_ms, long_ms, long_end;
	uint32_t group;
	uint16_t zone, public_port, host_port, dest_port;
	uint8_t flags, state_start, state_last, state_long;
	uint8_t host_ip[16], dest_ip[16];
} __attribute__((packed));

/* A (public IP, proto) of the write in progress. */
struct ml_group {
	uint8_t family, proto;
	uint8_t ip[16];
};

struct ml_items {
	struct ml_item *v;
	size_t n, cap;
};

struct store_maplog {
	int64_t keep_ms;
	uint64_t max_bytes;
	uint64_t seed[2];
	int loaded;	/* bytes read from the database */
	uint64_t bytes; /* payload of every block */
	struct ml_table open; /* fp -> rowid of its open block */
	ZSTD_CCtx *cctx;
	/* records of failed writes (packed), applied with the next batch */
	uint8_t *carry;
	size_t n_carry, cap_carry; /* bytes */
	uint64_t lost;
	int64_t lost_from, lost_to;
	/* the plan of the write in progress, applied once it commits */
	uint64_t *del_fp;
	size_t n_del, cap_del;
	struct ml_slot *ins;
	size_t n_ins, cap_ins;
	int64_t bytes_delta;
	/* scratch */
	uint64_t *fps; /* the batch's fingerprints, in order */
	size_t cap_fps;
	struct store_maplog_entry *blk; /* the block being encoded */
	size_t cap_blk;
	uint64_t *keys;  /* write_items()'s sort: keys, then their order */
	uint32_t *order;
	size_t cap_keys, cap_order;
	uint32_t *radix; /* its digit counts (65,536) */
	struct ml_table pend, ends, states;
	struct ml_chg *chg; /* the batch's state changes (pend, states) */
	size_t n_chg, cap_chg;
	struct ml_items ended, opened;
	struct ml_group *groups;
	size_t n_groups, cap_groups;
	struct ml_table gidx; /* group key fingerprint -> index */
	int batch_taken;    /* store_maplog_write() counted b's losses */
	int batch_in_carry; /* ... and appended its records to the carry */
	int warned_size;
};

static struct store_maplog *ml_get(struct store *st)
{
	struct store_maplog *ml = st->maplog;

	if (ml)
		return ml;
	if (!(ml = calloc(1, sizeof(*ml)))) {
		log_warn("store: maplog");
		return NULL;
	}
	ml->keep_ms = ML_KEEP_MS_DEFAULT;
	ml->max_bytes = ML_MAX_BYTES_DEFAULT;
	if (getrandom(ml->seed, sizeof(ml->seed), 0) != sizeof(ml->seed)) {
		ml->seed[0] = (uint64_t)ns_mono_ns() * 0x9e3779b97f4a7c15ULL;
		ml->seed[1] = (uint64_t)(uintptr_t)ml ^ 0xc2b2ae3d27d4eb4fULL;
	}
	st->maplog = ml;
	return ml;
}

void store_maplog_free(struct store *st)
{
	struct store_maplog *ml = st->maplog;

	if (!ml)
		return;
	free(ml->open.s);
	free(ml->pend.s);
	free(ml->fps);
	free(ml->groups);
	free(ml->gidx.s);
	free(ml->ends.s);
	free(ml->states.s);
	free(ml->chg);
	free(ml->carry);
	free(ml->del_fp);
	free(ml->ins);
	free(ml->ended.v);
	free(ml->opened.v);
	free(ml->blk);
	free(ml->keys);
	free(ml->order);
	free(ml->radix);
	ZSTD_freeCCtx(ml->cctx);
	free(ml);
	st->maplog = NULL;
}

int store_maplog_configure(struct store *st, int64_t keep_ms,
			   uint64_t max_bytes)
{
	struct store_maplog *ml;

	if (keep_ms <= 0 || max_bytes == 0) {
		errno = EINVAL;
		return -1;
	}
	if (!(ml = ml_get(st)))
		return -1;
	ml->keep_ms = keep_ms;
	ml->max_bytes = max_bytes;
	return 0;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 32;
	return h;
}

/* The seeded fingerprint of a mapping's key, never 0. */
static uint64_t ml_fp(const struct store_maplog *ml, uint8_t family,
		      uint8_t proto, const uint8_t ip[16], uint16_t zone,
		      uint16_t port, const uint8_t dest[16], uint16_t dport)
{
	uint64_t h = ml->seed[0], w[4];

	memcpy(w, ip, 16);
	memcpy(w + 2, dest, 16);
	h = mix(h, (uint64_t)family | (uint64_t)proto << 8 |
		       (uint64_t)zone << 16 | (uint64_t)port << 32 |
		       (uint64_t)dport << 48);
	for (int i = 0; i < 4; i++)
		h = mix(h + ml->seed[1], w[i]);
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	return h ? h : 1;
}

static int tab_grow(struct ml_table *t, size_t want)
{
	size_t ncap = 64, omask = t->mask;
	struct ml_slot *ns, *os = t->s;

	while (ncap < want * 2)
		ncap *= 2;
	if (os && ncap <= omask + 1)
		return 0;
	if (!(ns = calloc(ncap, sizeof(*ns)))) {
		log_warn("store: maplog: a table of %zu slots", ncap);
		return -1;
	}
	for (size_t i = 0; os && i <= omask; i++) {
		size_t j;

		if (!os[i].fp)
			continue;
		for (j = os[i].fp & (ncap - 1); ns[j].fp; j = (j + 1) & (ncap - 1))
			;
		ns[j] = os[i];
	}
	free(os);
	t->s = ns;
	t->mask = ncap - 1;
	return 0;
}

static struct ml_slot *tab_find(const struct ml_table *t, uint64_t fp)
{
	if (!t->s)
		return NULL;
	for (size_t i = fp & t->mask;; i = (i + 1) & t->mask) {
		if (t->s[i].fp == fp)
			return &t->s[i];
		if (!t->s[i].fp)
			return NULL;
	}
}

/* Sets fp's value (adding it).  Returns 0, or -1 with ENOMEM. */
static int tab_set(struct ml_table *t, uint64_t fp, int64_t val)
{
	struct ml_slot *s = tab_find(t, fp);
	size_t i;

	if (s) {
		s->val = val;
		return 0;
	}
	if (tab_grow(t, t->n + 1) < 0)
		return -1;
	for (i = fp & t->mask; t->s[i].fp; i = (i + 1) & t->mask)
		;
	t->s[i].fp = fp;
	t->s[i].val = val;
	t->n++;
	return 0;
}

static void tab_del(struct ml_table *t, uint64_t fp)
{
	struct ml_slot *s = tab_find(t, fp);
	size_t i, j;

	if (!s)
		return;
	i = (size_t)(s - t->s);
	t->s[i].fp = 0;
	t->n--;
	/* backward shift: move later records of the run into the hole
	 * when their home slot is not between the hole and them */
	for (j = (i + 1) & t->mask; t->s[j].fp; j = (j + 1) & t->mask) {
		size_t home = t->s[j].fp & t->mask;

		if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
			t->s[i] = t->s[j];
			t->s[j].fp = 0;
			i = j;
		}
	}
}

static void tab_reset(struct ml_table *t)
{
	if (t->s)
		memset(t->s, 0, (t->mask + 1) * sizeof(*t->s));
	t->n = 0;
}

static struct ml_item *items_add(struct ml_items *v)
{
	if (store_grow(&v->v, v->n, &v->cap, sizeof(*v->v)) < 0)
		return NULL;
	memset(&v->v[v->n], 0, sizeof(v->v[0]));
	return &v->v[v->n++];
}

static int item_cmp(const void *a, const void *b)
{
	const struct ml_item *x = a, *y = b;

	if (x->group != y->group)
		return x->group < y->group ? -1 : 1;
	if (x->public_port != y->public_port)
		return x->public_port < y->public_port ? -1 : 1;
	if (x->start_ms != y->start_ms)
		return x->start_ms < y->start_ms ? -1 : 1;
	return memcmp(x->dest_ip, y->dest_ip, 16);
}

static unsigned alen_of(uint8_t family)
{
	return family == AF_INET ? 4 : 16;
}

/* The index of (family, proto, ip) in this write's groups, added if new.
 * Returns it, or -1 with ENOMEM. */
static int64_t group_of(struct store_maplog *ml, uint8_t family, uint8_t proto,
			const uint8_t ip[16])
{
	static const uint8_t none[16];
	uint64_t fp = ml_fp(ml, family, proto, ip, 0, 0, none, 0);
	struct ml_slot *g = tab_find(&ml->gidx, fp);
	struct ml_group *ng;

	if (g) {
		const struct ml_group *x = &ml->groups[g->val];

		if (x->family == family && x->proto == proto &&
		    !memcmp(x->ip, ip, 16))
			return g->val;
		/* two public IPs with one 64-bit fingerprint: never seen */
		errno = EEXIST;
		log_warnx("store: maplog: fingerprint collision between two "
			  "public IPs");
		return -1;
	}
	if (store_grow(&ml->groups, ml->n_groups, &ml->cap_groups,
		       sizeof(*ml->groups)) < 0 ||
	    tab_set(&ml->gidx, fp, (int64_t)ml->n_groups) < 0)
		return -1;
	ng = &ml->groups[ml->n_groups];
	ng->family = family;
	ng->proto = proto;
	memcpy(ng->ip, ip, 16);
	return (int64_t)ml->n_groups++;
}

static void item_from_entry(struct ml_item *it,
			    const struct store_maplog_entry *e, uint32_t group)
{
	it->start_ms = e->start_ms;
	it->end_ms = e->end_ms;
	it->state_ms = e->state_ms;
	it->state_start = e->state_start;
	it->state_last = e->state_last;
	it->state_long = e->state_long;
	it->long_ms = e->long_ms;
	it->long_end = e->long_end;
	it->group = group;
	it->zone = e->zone;
	it->public_port = e->public_port;
	it->host_port = e->host_port;
	it->dest_port = e->dest_port;
	it->flags = e->flags;
	memcpy(it->host_ip, e->host_ip, 16);
	memcpy(it->dest_ip, e->dest_ip, 16);
}

/* ---- writing ---- */

static int plan_del(struct store_maplog *ml, uint64_t fp)
{
	if (store_grow(&ml->del_fp, ml->n_del, &ml->cap_del,
		       sizeof(*ml->del_fp)) < 0)
		return -1;
	ml->del_fp[ml->n_del++] = fp;
	return 0;
}

static int plan_ins(struct store_maplog *ml, uint64_t fp, int64_t id)
{
	if (store_grow(&ml->ins, ml->n_ins, &ml->cap_ins, sizeof(*ml->ins)) < 0)
		return -1;
	ml->ins[ml->n_ins].fp = fp;
	ml->ins[ml->n_ins++].val = id;
	return 0;
}

/* Inserts one block of items v[0..n) (one IP and proto, sorted).
 * Returns its rowid, or -1 with errno. */
/* Makes room for want elements of size bytes in *arr (cap: elements). */
static int ml_reserve(void *arr, size_t want, size_t *cap, size_t size)
{
	while (*cap < want)
		if (store_grow(arr, *cap, cap, size) < 0)
			return -1;
	return 0;
}

/* (replace: the rowid of an open block whose members are still those
 * of items, in place: their open-table slots stay valid; else 0.) */
static int64_t insert_block(struct store *st, struct store_maplog *ml,
			    const struct ml_item *items, const uint32_t *order,
			    size_t n, int open, int64_t replace)
{
	const struct ml_group *g =
		&ml->groups[items[order ? order[0] : 0].group];
	struct store_maplog_entry *e;
	int64_t t_first = INT64_MAX, t_last = INT64_MIN, id;
	uint16_t port_lo = 0, port_hi = 0;
	void *data;
	size_t len;
	sqlite3_stmt *s;
	int rc;

	if (ml_reserve(&ml->blk, n, &ml->cap_blk, sizeof(*ml->blk)) < 0)
		return -1;
	e = ml->blk; /* every field is set below */
	for (size_t i = 0; i < n; i++) {
		const struct ml_item *v = &items[order ? order[i] : i];

		memset(&e[i], 0, sizeof(e[i]));

		e[i].start_ms = v->start_ms;
		e[i].end_ms = v->end_ms;
		e[i].state_ms = v->state_ms;
		e[i].state_start = v->state_start;
		e[i].state_last = v->state_last;
		e[i].state_long = v->state_long;
		e[i].long_ms = v->long_ms;
		e[i].long_end = v->long_end;
		e[i].flags = v->flags;
		e[i].zone = v->zone;
		e[i].public_port = v->public_port;
		e[i].host_port = v->host_port;
		e[i].dest_port = v->dest_port;
		memcpy(e[i].host_ip, v->host_ip, 16);
		memcpy(e[i].dest_ip, v->dest_ip, 16);
		if (e[i].start_ms < t_first)
			t_first = e[i].start_ms;
		if (!open && e[i].end_ms > t_last)
			t_last = e[i].end_ms;
	}
	port_lo = e[0].public_port;
	port_hi = e[n - 1].public_port;
	rc = encode_sorted(ml->cctx, e, n, alen_of(g->family), !open, &data,
			   &len);
	if (rc < 0)
		return -1;
	if (replace) {
		s = store_stmt(st, STMT_MAPLOG_REPLACE,
			       "UPDATE maplog_blocks SET t_first = ?2, "
			       "port_lo = ?3, port_hi = ?4, n = ?5, data = ?6 "
			       "WHERE id = ?1 AND open = 1");
		if (!s) {
			free(data);
			return -1;
		}
		sqlite3_bind_int64(s, 1, replace);
		sqlite3_bind_int64(s, 2, t_first);
		sqlite3_bind_int(s, 3, port_lo);
		sqlite3_bind_int(s, 4, port_hi);
		sqlite3_bind_int64(s, 5, (int64_t)n);
		sqlite3_bind_blob(s, 6, data, (int)len, free);
		if (store_step_done(st, s, "writing the mapping log") < 0)
			return -1;
		ml->bytes_delta += (int64_t)len;
		return replace;
	}
	s = store_stmt(st, STMT_MAPLOG_INSERT,
		       "INSERT INTO maplog_blocks (family, ip_bin, proto, open, "
		       "t_first, t_last, port_lo, port_hi, n, data) VALUES "
		       "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
	if (!s) {
		free(data);
		return -1;
	}
	sqlite3_bind_int(s, 1, g->family == AF_INET ? 4 : 6);
	sqlite3_bind_blob(s, 2, g->ip, (int)alen_of(g->family), SQLITE_STATIC);
	sqlite3_bind_int(s, 3, g->proto);
	sqlite3_bind_int(s, 4, open);
	sqlite3_bind_int64(s, 5, t_first);
	sqlite3_bind_int64(s, 6, open ? ML_OPEN_T_LAST : t_last);
	sqlite3_bind_int(s, 7, port_lo);
	sqlite3_bind_int(s, 8, port_hi);
	sqlite3_bind_int64(s, 9, (int64_t)n);
	sqlite3_bind_blob(s, 10, data, (int)len, free);
	if (store_step_done(st, s, "writing the mapping log") < 0)
		return -1;
	id = sqlite3_last_insert_rowid(st->db);
	ml->bytes_delta += (int64_t)len;
	if (open)
		for (size_t i = 0; i < n; i++)
			if (plan_ins(ml, ml_fp(ml, g->family, g->proto, g->ip,
					       e[i].zone, e[i].public_port,
					       e[i].dest_ip, e[i].dest_port),
				     id) < 0)
				return -1;
	return id;
}

/* Writes items (sorted here) as blocks of at most ML_BLOCK_MAX, one IP
 * and proto each. */

/* The order of v's items by (group, public port, start): *order (in ml's
 * scratch), or NULL after sorting the items themselves (the general
 * case, never met in practice).  A stable radix sort of 64-bit keys
 * (group:16, port:16, start - the earliest:32), 16 bits a pass, skipping
 * the passes where every key has the same digit: comparisons and the
 * moves of 61-byte items were a third of the writer's time. */
static int items_order(struct store_maplog *ml, struct ml_items *v,
		       const uint32_t **order)
{
	size_t n = v->n;
	uint32_t *count;
	int64_t lo = INT64_MAX, hi = INT64_MIN;
	uint64_t *k, *k2;
	uint32_t *o, *o2;

	*order = NULL;
	for (size_t i = 0; i < n; i++) {
		if (v->v[i].start_ms < lo)
			lo = v->v[i].start_ms;
		if (v->v[i].start_ms > hi)
			hi = v->v[i].start_ms;
	}
	if (ml->n_groups > 0xffff || n > UINT32_MAX ||
	    (uint64_t)(hi - lo) > UINT32_MAX) {
		qsort(v->v, n, sizeof(*v->v), item_cmp);
		return 0;
	}
	if (ml_reserve(&ml->keys, 2 * n, &ml->cap_keys, sizeof(*ml->keys)) < 0 ||
	    ml_reserve(&ml->order, 2 * n, &ml->cap_order,
		       sizeof(*ml->order)) < 0)
		return -1;
	if (!ml->radix && !(ml->radix = malloc(65536 * sizeof(*ml->radix)))) {
		log_warn("store: maplog: sorting");
		return -1;
	}
	count = ml->radix;
	k = ml->keys;
	k2 = k + n;
	o = ml->order;
	o2 = o + n;
	for (size_t i = 0; i < n; i++) {
		k[i] = (uint64_t)v->v[i].group << 48 |
		       (uint64_t)v->v[i].public_port << 32 |
		       (uint64_t)(v->v[i].start_ms - lo);
		o[i] = (uint32_t)i;
	}
	for (int shift = 0; shift < 64; shift += 16) {
		uint32_t sum = 0;

		memset(count, 0, 65536 * sizeof(*count));
		for (size_t i = 0; i < n; i++)
			count[(k[i] >> shift) & 0xffff]++;
		if (count[(k[0] >> shift) & 0xffff] == n)
			continue; /* one digit: the order stays */
		for (size_t d = 0; d < 65536; d++) {
			uint32_t c = count[d];

			count[d] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++) {
			uint32_t at = count[(k[i] >> shift) & 0xffff]++;

			k2[at] = k[i];
			o2[at] = o[i];
		}
		{
			uint64_t *tk = k;
			uint32_t *to = o;

			k = k2;
			k2 = tk;
			o = o2;
			o2 = to;
		}
	}
	*order = o;
	return 0;
}

static int write_items(struct store *st, struct store_maplog *ml,
		       struct ml_items *v, int open)
{
	const uint32_t *order;
	size_t i = 0;

	if (!v->n)
		return 0;
	if (items_order(ml, v, &order) < 0)
		return -1;
#define ML_AT(x) (&v->v[order ? order[x] : (x)])
	while (i < v->n) {
		size_t j = i + 1;

		while (j < v->n && j - i < ML_BLOCK_MAX &&
		       ML_AT(j)->group == ML_AT(i)->group)
			j++;
		if (insert_block(st, ml, order ? v->v : v->v + i,
				 order ? order + i : NULL, j - i, open, 0) < 0)
			return -1;
		i = j;
	}
#undef ML_AT
	return 0;
}

/* A start record as an item.  Returns 0, or -1 with errno. */
static int item_from_rec(struct store_maplog *ml, struct ml_item *it,
			 const struct store_maplog_rec *r)
{
	int64_t g = group_of(ml, r->family, r->proto, r->public_ip);

	if (g < 0)
		return -1;
	memset(it, 0, sizeof(*it));
	it->group = (uint32_t)g;
	it->start_ms = r->ms;
	it->flags = r->flags & (STORE_MAPLOG_START_UNKNOWN | STORE_MAPLOG_LOCAL);
	it->state_start = NS_TCP_STATE_UNKNOWN; /* (only ends come here) */
	it->state_last = it->state_long = NS_TCP_STATE_UNKNOWN;
	it->zone = r->zone;
	it->public_port = r->public_port;
	it->host_port = r->host_port;
	it->dest_port = r->dest_port;
	memcpy(it->host_ip, r->host_ip, 16);
	memcpy(it->dest_ip, r->dest_ip, 16);
	return 0;
}

/* An end closes it: end time and end flags. */
/* A packed record (store_maplog_pack()'s layout) read in place, without
 * unpacking it: its address length, its length, port k (0 zone, 1 public
 * port, 2 host port, 3 destination port) and its time. */
static unsigned pk_alen(const uint8_t *p)
{
	return p[2] == 4 ? 4 : 16;
}

static size_t pk_len(const uint8_t *p)
{
	return PK_IPS + 3 * pk_alen(p);
}

static uint16_t pk_port(const uint8_t *p, int k)
{
	uint16_t v;

	memcpy(&v, p + 12 + 2 * k, 2);
	return v;
}

static int64_t pk_ms(const uint8_t *p)
{
	int64_t v;

	memcpy(&v, p + 4, 8);
	return v;
}

static uint8_t pk_state(const uint8_t *p)
{
	return p[3];
}

/* The length of the packed record at p (len bytes left), or 0 if it is
 * not one. */
static size_t pk_check(const uint8_t *p, size_t len)
{
	if (len < PK_IPS || (p[2] != 4 && p[2] != 6) || len < pk_len(p))
		return 0;
	return pk_len(p);
}

/* ml_fp() of the packed record at p. */
static uint64_t pk_fp(const struct store_maplog *ml, const uint8_t *p)
{
	uint8_t ip[16] = { 0 }, dest[16] = { 0 };
	unsigned alen = pk_alen(p);

	memcpy(ip, p + PK_IPS, alen);
	memcpy(dest, p + PK_IPS + 2 * alen, alen);
	return ml_fp(ml, alen == 4 ? AF_INET : AF_INET6, p[1], ip,
		     pk_port(p, 0), pk_port(p, 1), dest, pk_port(p, 3));
}

/* item_from_rec() of the packed start record at p. */
static int item_from_packed(struct store_maplog *ml, struct ml_item *it,
			    const uint8_t *p)
{
	unsigned alen = pk_alen(p);
	uint8_t ip[16] = { 0 };
	int64_t g;

	memcpy(ip, p + PK_IPS, alen);
	g = group_of(ml, alen == 4 ? AF_INET : AF_INET6, p[1], ip);
	if (g < 0)
		return -1;
	memset(it, 0, sizeof(*it));
	it->group = (uint32_t)g;
	it->start_ms = pk_ms(p);
	it->flags = p[0] & (STORE_MAPLOG_START_UNKNOWN | STORE_MAPLOG_LOCAL);
	it->state_start = p[1] == IPPROTO_TCP && pk_state(p) < NS_TCP_STATES ?
			  pk_state(p) : NS_TCP_STATE_UNKNOWN;
	it->state_last = it->state_long = NS_TCP_STATE_UNKNOWN;
	it->zone = pk_port(p, 0);
	it->public_port = pk_port(p, 1);
	it->host_port = pk_port(p, 2);
	it->dest_port = pk_port(p, 3);
	memcpy(it->host_ip, p + PK_IPS + alen, alen);
	memcpy(it->dest_ip, p + PK_IPS + 2 * alen, alen);
	return 0;
}

/* The state changes of one mapping within a batch: the first, the
 * current (last) one, and the longest interval between two of them that
 * events bounded (a state held exactly from long_ms to long_end). */
struct ml_chg {
	int64_t first_ms, cur_ms, long_ms, long_end;
	uint8_t first_state, cur_state, long_state;
	uint8_t first_seen, cur_seen, several;
};

/* A value of the pend table (a start of this batch) and of the states
 * table (a change of a mapping open on disk): bits 0-30 the start
 * record's offset (pend only), bits 31-61 the index + 1 of the
 * mapping's ml_chg (0: no change yet).  A batch's records take less
 * than 2^30 bytes (MAPBUF_MAX and ML_CARRY_MAX), checked at its start. */
#define ML_OFF_MAX ((1LL << 31) - 1)
#define PV_START(v) ((v) & ML_OFF_MAX)
#define PV_CHG(v) (((v) >> 31) & ML_OFF_MAX)

/* v with the state change record at p added to its mapping's ml_chg
 * (new when v has none).  Reads p (the record being paired, in cache),
 * never the start record.  Returns the new v, or -1 with ENOMEM. */
static int64_t pv_add_state(struct store_maplog *ml, int64_t v,
			    const uint8_t *p)
{
	uint8_t state = pk_state(p);
	int64_t ms = pk_ms(p);
	uint8_t seen = (p[0] & STORE_MAPLOG_STATE_SEEN) != 0;
	struct ml_chg *c;

	if (state >= NS_TCP_STATES)
		return v;
	if (!PV_CHG(v)) {
		if (store_grow(&ml->chg, ml->n_chg, &ml->cap_chg,
			       sizeof(*ml->chg)) < 0)
			return -1;
		c = &ml->chg[ml->n_chg++];
		memset(c, 0, sizeof(*c));
		c->first_ms = c->cur_ms = ms;
		c->first_state = c->cur_state = state;
		c->first_seen = c->cur_seen = seen;
		c->long_state = NS_TCP_STATE_UNKNOWN;
		return (v & ML_OFF_MAX) | (int64_t)ml->n_chg << 31;
	}
	c = &ml->chg[PV_CHG(v) - 1];
	if (state == c->cur_state)
		return v; /* (the collector appends real changes only) */
	if (ms < c->cur_ms)
		ms = c->cur_ms;
	if (!c->cur_seen && !seen &&
	    ms - c->cur_ms > c->long_end - c->long_ms) {
		c->long_ms = c->cur_ms;
		c->long_end = ms;
		c->long_state = c->cur_state;
	}
	c->cur_ms = ms;
	c->cur_state = state;
	c->cur_seen = seen;
	c->several = 1;
	return v;
}

/* it's longest exactly bounded interval becomes [from, to) in state
 * when that is longer. */
static void item_long(struct ml_item *it, uint8_t state, int64_t from,
		      int64_t to)
{
	if (state < NS_TCP_STATES && to > from &&
	    to - from > it->long_end - it->long_ms) {
		it->state_long = state;
		it->long_ms = from;
		it->long_end = to;
	}
}

/* The state changes a pend or states value v holds, applied to it (the
 * changes come after any it has). */
static void item_chg(const struct store_maplog *ml, struct ml_item *it,
		     int64_t v)
{
	const struct ml_chg *c;
	uint8_t cur;
	int64_t since, ms;
	int exact;

	if (!PV_CHG(v))
		return;
	c = &ml->chg[PV_CHG(v) - 1];
	cur = it->state_ms ? it->state_last : it->state_start;
	since = it->state_ms ? it->state_ms : it->start_ms;
	exact = it->state_ms ? !(it->flags & STORE_MAPLOG_STATE_SEEN)
			     : !(it->flags & STORE_MAPLOG_START_UNKNOWN);
	if (c->first_state == cur) {
		if (!c->several)
			return; /* no change */
	} else {
		/* the interval the first change ends */
		if (exact && !c->first_seen)
			item_long(it, cur, since, c->first_ms);
		if (it->state_ms)
			it->flags |= STORE_MAPLOG_STATE_BETWEEN;
	}
	/* (when the first "change" was none, the interval it begins began
	 * earlier: not exact) */
	if (!(c->first_state == cur && c->long_ms == c->first_ms))
		item_long(it, c->long_state, c->long_ms, c->long_end);
	if (c->several)
		it->flags |= STORE_MAPLOG_STATE_BETWEEN;
	ms = c->cur_ms;
	if (ms < it->start_ms)
		ms = it->start_ms;
	if (ms < it->state_ms)
		ms = it->state_ms;
	it->state_last = c->cur_state;
	it->state_ms = ms;
	it->flags = (uint8_t)((it->flags & ~STORE_MAPLOG_STATE_SEEN) |
			      (c->cur_seen ? STORE_MAPLOG_STATE_SEEN : 0));
}

/* item_end() with the packed end record at p. */
static void item_end_packed(struct ml_item *it, const uint8_t *p)
{
	int64_t ms = pk_ms(p);

	it->end_ms = ms >= it->start_ms ? ms : it->start_ms;
	it->flags |= p[0] & (STORE_MAPLOG_END_UNCERTAIN |
			     STORE_MAPLOG_END_STOPPED);
	if (!it->host_port)
		it->host_port = pk_port(p, 2);
}

static void item_end(struct ml_item *it, const struct store_maplog_rec *end)
{
	it->end_ms = end->ms >= it->start_ms ? end->ms : it->start_ms;
	it->flags |= end->flags & (STORE_MAPLOG_END_UNCERTAIN |
				   STORE_MAPLOG_END_STOPPED);
	if (!it->host_port)
		it->host_port = end->host_port;
}

/* The end record for ends slot value v: an index into recs, or (with
 * ML_END_AT_START) a start that implies the earlier mapping with its key
 * ended unseen. */
#define ML_END_AT_START (1LL << 62)

static struct store_maplog_rec end_rec(const uint8_t *recs, size_t len,
				       int64_t v)
{
	struct store_maplog_rec r = rec_at(recs, len, v & ~ML_END_AT_START);

	if (v & ML_END_AT_START) {
		r.flags = STORE_MAPLOG_END | STORE_MAPLOG_END_UNCERTAIN;
		r.host_port = 0;
	}
	return r;
}

/* Rewrites the open block id: its members whose end is in ml->ends leave
 * it as ended items; the rest stay; the state changes in ml->states are
 * applied to theirs.  recs are the batch's records. */
static int close_in_block(struct store *st, struct store_maplog *ml,
			  int64_t id, const uint8_t *recs, size_t len)
{
	sqlite3_stmt *s;
	struct store_maplog_entry *e = NULL;
	struct ml_item *kept = NULL;
	uint64_t *fps = NULL;
	int64_t group;
	size_t n = 0, nk = 0, old_len;
	uint8_t family, proto, ip[16] = { 0 };
	int rc, ret = -1;

	s = store_stmt(st, STMT_MAPLOG_READ,
		       "SELECT family, ip_bin, proto, data FROM maplog_blocks "
		       "WHERE id = ?1 AND open = 1");
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(s);
		log_warnx("store: maplog: open block %lld is missing",
			  (long long)id);
		return 0; /* its ends are written as orphans by the caller */
	}
	if (rc != SQLITE_ROW)
		return store_fail(st, rc, "reading the mapping log");
	family = sqlite3_column_int(s, 0) == 4 ? AF_INET : AF_INET6;
	if ((size_t)sqlite3_column_bytes(s, 1) == alen_of(family))
		memcpy(ip, sqlite3_column_blob(s, 1), alen_of(family));
	proto = (uint8_t)sqlite3_column_int(s, 2);
	old_len = (size_t)sqlite3_column_bytes(s, 3);
	rc = store_maplog_decode(sqlite3_column_blob(s, 3), old_len, &e, &n);
	sqlite3_reset(s);
	if (rc < 0)
		return -1;
	if (!(kept = malloc(n * sizeof(*kept))) ||
	    !(fps = malloc(n * sizeof(*fps)))) {
		log_warn("store: maplog");
		goto out;
	}
	if ((group = group_of(ml, family, proto, ip)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		fps[i] = ml_fp(ml, family, proto, ip, e[i].zone,
			       e[i].public_port, e[i].dest_ip, e[i].dest_port);
	for (size_t i = 0; i < n; i++) {
		uint64_t fp = fps[i];
		struct ml_slot *o, *end, *chg = NULL;
		struct ml_item *it;

		if (i + ML_PREFETCH < n) {
			uint64_t ahead = fps[i + ML_PREFETCH];

			__builtin_prefetch(&ml->open.s[ahead & ml->open.mask]);
			__builtin_prefetch(&ml->ends.s[ahead & ml->ends.mask]);
			if (ml->states.n)
				__builtin_prefetch(&ml->states.s[ahead &
								 ml->states.mask]);
		}
		end = tab_find(&ml->ends, fp);
		if (ml->states.n)
			chg = tab_find(&ml->states, fp);
		/* A member this batch ends or changes must be the one open
		 * here (the others are not looked up, and stay as they
		 * were). */
		if (((end && end->val >= 0) || (chg && chg->val >= 0)) &&
		    (!(o = tab_find(&ml->open, fp)) || o->val != id))
			continue; /* not open here (cannot happen) */
		it = end && end->val >= 0 ? items_add(&ml->ended) : &kept[nk++];
		if (!it)
			goto out;
		item_from_entry(it, &e[i], (uint32_t)group);
		if (chg && chg->val >= 0) {
			/* (its changes all came before its end) */
			item_chg(ml, it, chg->val);
			chg->val = -1; /* done */
		}
		if (end && end->val >= 0) {
			if (end->val & ML_END_AT_START) {
				struct store_maplog_rec er =
					end_rec(recs, len, end->val);

				item_end(it, &er);
			} else {
				item_end_packed(it, recs + end->val);
			}
			end->val = -1; /* done */
			if (plan_del(ml, fp) < 0)
				goto out;
		}
	}
	ml->bytes_delta -= (int64_t)old_len;
	if (nk) {
		/* the members still open stay in this block, rewritten in
		 * place: their open-table slots still point at it */
		if (insert_block(st, ml, kept, NULL, nk, 1, id) < 0)
			goto out;
		ret = 0;
		goto out;
	}
	s = store_stmt(st, STMT_MAPLOG_DELETE,
		       "DELETE FROM maplog_blocks WHERE id = ?1");
	if (!s)
		goto out;
	sqlite3_bind_int64(s, 1, id);
	if (store_step_done(st, s, "writing the mapping log") < 0)
		goto out;
	ret = 0;
out:
	free(e);
	free(kept);
	free(fps);
	return ret;
}

/* Retention: ended blocks older than keep_ms, then the oldest until the
 * log's payload fits max_bytes. */
static int trim(struct store *st, struct store_maplog *ml, int64_t now)
{
	sqlite3_stmt *s;
	int64_t cutoff = now - ml->keep_ms, trimmed = 0;
	struct { int64_t id, len, t_last; } v[256];
	int rc;

	for (;;) {
		size_t n = 0, gone = 0;

		/* the oldest ended blocks, read first: rows are not deleted
		 * under a running SELECT */
		s = store_stmt(st, STMT_MAPLOG_OLDEST,
			       "SELECT id, length(data), t_last FROM "
			       "maplog_blocks WHERE open = 0 ORDER BY t_last "
			       "LIMIT 256");
		if (!s)
			return -1;
		while (n < 256 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
			v[n].id = sqlite3_column_int64(s, 0);
			v[n].len = sqlite3_column_int64(s, 1);
			v[n++].t_last = sqlite3_column_int64(s, 2);
		}
		sqlite3_reset(s);
		if (n < 256 && rc != SQLITE_DONE)
			return store_fail(st, rc, "trimming the mapping log");
		for (size_t i = 0; i < n; i++) {
			sqlite3_stmt *d;

			if (v[i].t_last >= cutoff && (int64_t)ml->bytes +
			    ml->bytes_delta <= (int64_t)ml->max_bytes)
				break;
			d = store_stmt(st, STMT_MAPLOG_DELETE,
				       "DELETE FROM maplog_blocks WHERE id = ?1");
			if (!d)
				return -1;
			sqlite3_bind_int64(d, 1, v[i].id);
			if (store_step_done(st, d, "trimming the mapping log") < 0)
				return -1;
			ml->bytes_delta -= v[i].len;
			if (v[i].t_last > trimmed)
				trimmed = v[i].t_last;
			gone++;
		}
		if (gone < 256)
			break;
	}
	if ((int64_t)ml->bytes + ml->bytes_delta > (int64_t)ml->max_bytes &&
	    !ml->warned_size) {
		ml->warned_size = 1;
		log_warnx("store: maplog: the open mappings alone take more "
			  "than --maplog-max-size (%llu bytes)",
			  (unsigned long long)ml->max_bytes);
	}
	if (!trimmed)
		return 0;
	s = store_stmt(st, STMT_MAPLOG_TRIMMED,
		       "UPDATE maplog_meta SET trimmed_ms = "
		       "max(trimmed_ms, ?1) WHERE id = 1");
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, trimmed);
	return store_step_done(st, s, "trimming the mapping log");
}

static int load(struct store *st, struct store_maplog *ml)
{
	sqlite3_stmt *s;
	int rc;

	if (ml->loaded)
		return 0;
	if (!ml->cctx && !(ml->cctx = ZSTD_createCCtx())) {
		errno = ENOMEM;
		log_warn("store: maplog: zstd");
		return -1;
	}
	rc = sqlite3_prepare_v2(st->db, "SELECT total(length(data)) FROM "
				"maplog_blocks", -1, &s, NULL);
	if (rc != SQLITE_OK)
		return store_fail(st, rc, "reading the mapping log's size");
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		ml->bytes = (uint64_t)sqlite3_column_double(s, 0);
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW)
		return store_fail(st, rc, "reading the mapping log's size");
	ml->loaded = 1;
	return 0;
}

static int note_run(struct store *st, int64_t run_ms, int64_t last_ms)
{
	sqlite3_stmt *s;

	s = store_stmt(st, STMT_MAPLOG_RUN,
		       "INSERT INTO maplog_runs (started_ms, last_ms) VALUES "
		       "(?1, ?2) ON CONFLICT (started_ms) DO UPDATE SET "
		       "last_ms = max(last_ms, ?2)");
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, run_ms);
	sqlite3_bind_int64(s, 2, last_ms);
	return store_step_done(st, s, "writing the mapping log's runs");
}

/* Records of b into the carry (up to ML_CARRY_MAX; the rest are lost,
 * and said so), with b's own losses. */
static void carry_batch(struct store_maplog *ml, const struct store_batch *b)
{
	size_t need = ml->n_carry + b->maplog_len, off, k;
	struct store_maplog_rec r;

	if (!b->maplog_len)
		return;
	if (need <= ML_CARRY_MAX && need > ml->cap_carry) {
		size_t ncap = ml->cap_carry ? ml->cap_carry : 1 << 20;
		uint8_t *p;

		while (ncap < need)
			ncap *= 2;
		if ((p = realloc(ml->carry, ncap))) {
			ml->carry = p;
			ml->cap_carry = ncap;
		}
	}
	if (need <= ml->cap_carry) {
		memcpy(ml->carry + ml->n_carry, b->maplog, b->maplog_len);
		ml->n_carry = need;
		return;
	}
	/* no room: the batch's records are lost, and said so */
	log_warnx("store: maplog: %zu records lost (writes keep failing)",
		  b->n_maplog);
	ml->lost += b->n_maplog;
	for (off = 0; off < b->maplog_len; off += k) {
		if (!(k = store_maplog_unpack(b->maplog + off,
					      b->maplog_len - off, &r)))
			break;
		if (!ml->lost_from || r.ms < ml->lost_from)
			ml->lost_from = r.ms;
		if (r.ms > ml->lost_to)
			ml->lost_to = r.ms;
	}
}

int store_maplog_write(struct store *st, const struct store_batch *b,
		       int64_t now)
{
	struct store_maplog *ml = ml_get(st);
	const uint8_t *recs;
	size_t len, off, rl, nrec = 0, j = 0;
	int64_t last_ms = b->status.as_of_ms > 0 ? b->status.as_of_ms : now;

	if (!ml)
		return -1;
	ml->batch_taken = 1;
	ml->batch_in_carry = 0;
	if (b->maplog_lost) {
		ml->lost += b->maplog_lost;
		if (!ml->lost_from || b->maplog_lost_from_ms < ml->lost_from)
			ml->lost_from = b->maplog_lost_from_ms;
		if (b->maplog_lost_to_ms > ml->lost_to)
			ml->lost_to = b->maplog_lost_to_ms;
	}
	/* the records of failed writes come first */
	if (ml->n_carry) {
		carry_batch(ml, b);
		ml->batch_in_carry = 1;
		recs = ml->carry;
		len = ml->n_carry;
	} else {
		recs = b->maplog;
		len = b->maplog_len;
	}
	if (load(st, ml) < 0)
		return -1;
	ml->n_del = ml->n_ins = 0;
	ml->bytes_delta = 0;
	ml->ended.n = ml->opened.n = 0;
	tab_reset(&ml->pend);
	tab_reset(&ml->ends);
	tab_reset(&ml->states);
	tab_reset(&ml->gidx);
	ml->n_groups = 0;
	ml->n_chg = 0;
	if (len >= (size_t)1 << 30) { /* (cannot happen: see PV_START) */
		errno = EINVAL;
		log_warnx("store: maplog: a batch of %zu bytes", len);
		return -1;
	}
	{
		size_t n_start = 0, n_end = 0, n_state = 0;

		/* first pass: counts, and every fingerprint, so that the
		 * pairing pass can prefetch the table slots it will probe
		 * (records are read in place: unpacking them all costs) */
		for (off = 0; off < len; off += rl) {
			if (!(rl = pk_check(recs + off, len - off))) {
				errno = EINVAL;
				log_warnx("store: maplog: a batch with a "
					  "truncated record");
				return -1;
			}
			if (store_grow(&ml->fps, nrec, &ml->cap_fps,
				       sizeof(*ml->fps)) < 0)
				return -1;
			ml->fps[nrec++] = pk_fp(ml, recs + off);
			if (recs[off] & STORE_MAPLOG_END)
				n_end++;
			else if (recs[off] & STORE_MAPLOG_STATE)
				n_state++;
			else
				n_start++;
		}
		/* ends: the ends of open mappings, and the starts that
		 * close one (at most one per open mapping); states: the
		 * changes of open mappings */
		if (tab_grow(&ml->pend, n_start) < 0 ||
		    tab_grow(&ml->ends, n_end + (n_start < ml->open.n ?
						 n_start : ml->open.n)) < 0 ||
		    (n_state && ml->open.n &&
		     tab_grow(&ml->states, n_state < ml->open.n ?
					   n_state : ml->open.n) < 0))
			return -1;
	}

	/* Pair: a start waits in pend (fp -> its index); an end closes it,
	 * or an open mapping of an earlier batch (ends: fp -> its index). */
	for (off = 0; off < len; off += rl) {
		const uint8_t *r = recs + off;
		int64_t i = (int64_t)off;
		uint64_t fp;

		rl = pk_len(r); /* checked by the first pass */
		fp = ml->fps[j];
		if (j + ML_PREFETCH < nrec) {
			uint64_t ahead = ml->fps[j + ML_PREFETCH];

			__builtin_prefetch(&ml->pend.s[ahead & ml->pend.mask]);
			if (ml->open.s)
				__builtin_prefetch(&ml->open.s[ahead &
							       ml->open.mask]);
			if (ml->ends.s)
				__builtin_prefetch(&ml->ends.s[ahead &
							       ml->ends.mask]);
			if (ml->states.s)
				__builtin_prefetch(&ml->states.s[ahead &
								 ml->states.mask]);
		}
		j++;
		struct ml_slot *p = tab_find(&ml->pend, fp);
		struct ml_item *it;

		if (r[0] & STORE_MAPLOG_STATE) {
			struct ml_slot *c;

			/* A change of a start of this batch (none once it
			 * ended), or of a mapping open on disk. */
			if (p) {
				if (p->val >= 0 &&
				    (p->val = pv_add_state(ml, p->val, r)) < 0)
					return -1;
			} else if (tab_find(&ml->open, fp) &&
				   !tab_find(&ml->ends, fp)) {
				int64_t v = (c = tab_find(&ml->states, fp)) ?
					    c->val : 0;

				if ((v = pv_add_state(ml, v, r)) < 0 ||
				    (!c && tab_set(&ml->states, fp, v) < 0))
					return -1;
				if (c)
					c->val = v;
			}
			continue;
		}
		if (!(r[0] & STORE_MAPLOG_END)) {
			/* A second start with no end between: the first
			 * ended unseen, by this start at the latest. */
			if (p && p->val >= 0) {
				struct store_maplog_rec end =
					end_rec(recs, len, i | ML_END_AT_START);

				if (!(it = items_add(&ml->ended)))
					return -1;
				if (item_from_packed(ml, it,
						     recs + PV_START(p->val)) < 0)
					return -1;
				item_chg(ml, it, p->val);
				item_end(it, &end);
			} else if (!p && tab_find(&ml->open, fp) &&
				   !tab_find(&ml->ends, fp)) {
				if (tab_set(&ml->ends, fp,
					    i | ML_END_AT_START) < 0)
					return -1;
			}
			if (tab_set(&ml->pend, fp, i) < 0)
				return -1;
			continue;
		}
		if (p && p->val >= 0) {
			if (!(it = items_add(&ml->ended)))
				return -1;
			if (item_from_packed(ml, it,
					     recs + PV_START(p->val)) < 0)
				return -1;
			item_chg(ml, it, p->val);
			item_end_packed(it, r);
			p->val = -1;
		} else if (!p && tab_find(&ml->open, fp) &&
			   !tab_find(&ml->ends, fp)) {
			if (tab_set(&ml->ends, fp, i) < 0)
				return -1;
		} else {
			/* an end whose start the log does not have (a
			 * second end; cannot happen) */
			if (!(it = items_add(&ml->ended)))
				return -1;
			if (item_from_packed(ml, it, r) < 0)
				return -1;
			it->flags |= STORE_MAPLOG_START_UNKNOWN;
			item_end_packed(it, r);
		}
	}

	/* Ends of mappings open on disk: rewrite their blocks. */
	for (size_t k = 0; ml->ends.n && k <= ml->ends.mask; k++) {
		struct ml_slot *e = &ml->ends.s[k];
		struct ml_slot *o;

		if (!e->fp || e->val < 0)
			continue;
		if ((o = tab_find(&ml->open, e->fp)) &&
		    close_in_block(st, ml, o->val, recs, len) < 0)
			return -1;
	}
	/* State changes of mappings open on disk whose blocks no end
	 * rewrote: rewrite those too. */
	for (size_t k = 0; ml->states.n && k <= ml->states.mask; k++) {
		struct ml_slot *c = &ml->states.s[k];
		struct ml_slot *o;

		if (!c->fp || c->val < 0)
			continue;
		if ((o = tab_find(&ml->open, c->fp)) &&
		    close_in_block(st, ml, o->val, recs, len) < 0)
			return -1;
	}
	for (size_t k = 0; ml->ends.n && k <= ml->ends.mask; k++) {
		struct ml_slot *e = &ml->ends.s[k];
		struct store_maplog_rec end;
		struct ml_item *it;

		if (!e->fp || e->val < 0)
			continue;
		/* its open block did not have it (cannot happen) */
		end = end_rec(recs, len, e->val);
		if (!(it = items_add(&ml->ended)))
			return -1;
		if (item_from_rec(ml, it, &end) < 0)
			return -1;
		it->flags = STORE_MAPLOG_START_UNKNOWN;
		item_end(it, &end);
		if (plan_del(ml, e->fp) < 0)
			return -1;
	}
	/* Starts still open (in slot order: their records and changes are
	 * fetched ahead) */
	for (size_t k = 0; ml->pend.n && k <= ml->pend.mask; k++) {
		struct ml_slot *p = &ml->pend.s[k];
		struct ml_item *it;

		if (k + ML_PREFETCH <= ml->pend.mask) {
			const struct ml_slot *a = &ml->pend.s[k + ML_PREFETCH];

			if (a->fp && a->val >= 0) {
				__builtin_prefetch(recs + PV_START(a->val));
				if (PV_CHG(a->val))
					__builtin_prefetch(&ml->chg[PV_CHG(a->val) -
								   1]);
			}
		}
		if (!p->fp || p->val < 0)
			continue;
		if (!(it = items_add(&ml->opened)))
			return -1;
		if (item_from_packed(ml, it, recs + PV_START(p->val)) < 0)
			return -1;
		item_chg(ml, it, p->val);
	}
	if (write_items(st, ml, &ml->ended, 0) < 0 ||
	    write_items(st, ml, &ml->opened, 1) < 0)
		return -1;
	if (ml->lost) {
		sqlite3_stmt *s = store_stmt(st, STMT_MAPLOG_LOSS,
			"INSERT INTO maplog_losses (start_ms, end_ms, records) "
			"VALUES (?1, ?2, ?3)");

		if (!s)
			return -1;
		sqlite3_bind_int64(s, 1, ml->lost_from);
		sqlite3_bind_int64(s, 2, ml->lost_to);
		sqlite3_bind_int64(s, 3, (int64_t)ml->lost);
		if (store_step_done(st, s, "writing the mapping log") < 0)
			return -1;
	}
	if (trim(st, ml, last_ms) < 0)
		return -1;
	return note_run(st, b->status.started_ms, last_ms);
}

/* Scratch sized for the biggest batch so far (a cold start hands over a
 * record per mapping of the table) goes back once batches are much
 * smaller, so that memory follows the batches (and resetting its tables
 * does not cost a pass over tens of MB every write). */
#define ML_SCRATCH_KEEP (4u << 20)

static void ml_trim_scratch(struct store_maplog *ml, size_t records)
{
	size_t bytes = ml->cap_fps * sizeof(*ml->fps) +
		       (ml->pend.s ? (ml->pend.mask + 1) * sizeof(struct ml_slot) : 0) +
		       (ml->ends.s ? (ml->ends.mask + 1) * sizeof(struct ml_slot) : 0) +
		       (ml->states.s ? (ml->states.mask + 1) * sizeof(struct ml_slot) : 0) +
		       (ml->gidx.s ? (ml->gidx.mask + 1) * sizeof(struct ml_slot) : 0) +
		       (ml->ended.cap + ml->opened.cap) * sizeof(struct ml_item) +
		       ml->cap_groups * sizeof(*ml->groups) +
		       ml->cap_del * sizeof(*ml->del_fp) +
		       ml->cap_ins * sizeof(*ml->ins) +
		       ml->cap_keys * sizeof(*ml->keys) +
		       ml->cap_chg * sizeof(*ml->chg) +
		       ml->cap_order * sizeof(*ml->order);

	if (bytes <= ML_SCRATCH_KEEP || bytes <= records * 4 * 160)
		return;
	free(ml->fps);
	ml->fps = NULL;
	ml->cap_fps = 0;
	free(ml->pend.s);
	free(ml->ends.s);
	free(ml->states.s);
	free(ml->gidx.s);
	memset(&ml->pend, 0, sizeof(ml->pend));
	memset(&ml->ends, 0, sizeof(ml->ends));
	memset(&ml->states, 0, sizeof(ml->states));
	memset(&ml->gidx, 0, sizeof(ml->gidx));
	free(ml->ended.v);
	free(ml->opened.v);
	memset(&ml->ended, 0, sizeof(ml->ended));
	memset(&ml->opened, 0, sizeof(ml->opened));
	free(ml->groups);
	ml->groups = NULL;
	ml->cap_groups = ml->n_groups = 0;
	free(ml->del_fp);
	ml->del_fp = NULL;
	ml->cap_del = ml->n_del = 0;
	free(ml->ins);
	ml->ins = NULL;
	ml->cap_ins = ml->n_ins = 0;
	free(ml->keys);
	ml->keys = NULL;
	ml->cap_keys = 0;
	free(ml->chg);
	ml->chg = NULL;
	ml->cap_chg = ml->n_chg = 0;
	free(ml->order);
	ml->order = NULL;
	ml->cap_order = 0;
}

void store_maplog_committed(struct store *st, const struct store_batch *b)
{
	struct store_maplog *ml = st->maplog;

	if (!ml)
		return;
	for (size_t i = 0; i < ml->n_del; i++)
		tab_del(&ml->open, ml->del_fp[i]);
	/* (if this runs out of memory, the mapping stays open on disk and
	 * its end is logged with its start unknown) */
	for (size_t i = 0; i < ml->n_ins; i++)
		tab_set(&ml->open, ml->ins[i].fp, ml->ins[i].val);
	ml->bytes = (uint64_t)((int64_t)ml->bytes + ml->bytes_delta);
	ml->n_carry = 0;
	ml->lost = 0;
	ml->lost_from = ml->lost_to = 0;
	ml->batch_taken = ml->batch_in_carry = 0;
	ml_trim_scratch(ml, b->n_maplog);
}

void store_maplog_failed(struct store *st, const struct store_batch *b)
{
	struct store_maplog *ml = st->maplog;

	if (!ml && !(ml = ml_get(st)))
		return;
	if (!ml->batch_taken && b->maplog_lost) {
		ml->lost += b->maplog_lost;
		if (!ml->lost_from || b->maplog_lost_from_ms < ml->lost_from)
			ml->lost_from = b->maplog_lost_from_ms;
		if (b->maplog_lost_to_ms > ml->lost_to)
			ml->lost_to = b->maplog_lost_to_ms;
	}
	if (!ml->batch_in_carry)
		carry_batch(ml, b);
	ml->batch_taken = ml->batch_in_carry = 0;
}

/* A new run: the previous run's open mappings ended after its last
 * write, unseen (natscope was not running): they become ended records
 * with end = that write and STORE_MAPLOG_END_STOPPED. */
int store_maplog_begin_run(struct store *st, int64_t run_ms)
{
	struct store_maplog *ml = ml_get(st);
	sqlite3_stmt *s = NULL, *u = NULL;
	int64_t last = 0;
	int rc, ret = -1;

	if (!ml || load(st, ml) < 0)
		return -1;
	tab_reset(&ml->open);
	rc = sqlite3_prepare_v2(st->db, "SELECT max(last_ms) FROM maplog_runs",
				-1, &s, NULL);
	if (rc != SQLITE_OK)
		return store_fail(st, rc, "reading the mapping log's runs");
	if ((rc = sqlite3_step(s)) == SQLITE_ROW)
		last = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	s = NULL;
	if (rc != SQLITE_ROW)
		return store_fail(st, rc, "reading the mapping log's runs");
	rc = sqlite3_prepare_v2(st->db, "SELECT id, data, family FROM "
				"maplog_blocks WHERE open = 1", -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(st->db, "UPDATE maplog_blocks SET "
					"open = 0, t_last = ?2, data = ?3 "
					"WHERE id = ?1", -1, &u, NULL);
	if (rc != SQLITE_OK) {
		store_fail(st, rc, "closing the previous run's mappings");
		goto out;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_maplog_entry *e;
		size_t n, len;
		void *data;
		int64_t t_last = 0;
		unsigned alen;

		if (store_maplog_decode(sqlite3_column_blob(s, 1),
					(size_t)sqlite3_column_bytes(s, 1),
					&e, &n) < 0)
			goto out;
		alen = sqlite3_column_int(s, 2) == 4 ? 4 : 16;
		for (size_t i = 0; i < n; i++) {
			e[i].end_ms = last > e[i].start_ms ? last : e[i].start_ms;
			e[i].flags |= STORE_MAPLOG_END_STOPPED;
			if (e[i].end_ms > t_last)
				t_last = e[i].end_ms;
		}
		rc = encode_sorted(ml->cctx, e, n, alen, 1, &data, &len);
		free(e);
		if (rc < 0)
			goto out;
		sqlite3_bind_int64(u, 1, sqlite3_column_int64(s, 0));
		sqlite3_bind_int64(u, 2, t_last);
		sqlite3_bind_blob(u, 3, data, (int)len, free);
		ml->bytes += len - (size_t)sqlite3_column_bytes(s, 1);
		rc = sqlite3_step(u);
		sqlite3_reset(u);
		if (rc != SQLITE_DONE) {
			store_fail(st, rc, "closing the previous run's mappings");
			goto out;
		}
	}
	if (rc != SQLITE_DONE) {
		store_fail(st, rc, "closing the previous run's mappings");
		goto out;
	}
	ret = note_run(st, run_ms, run_ms);
	ml->loaded = 0; /* the size is read again at the first write */
out:
	sqlite3_finalize(s);
	sqlite3_finalize(u);
	return ret;
}

int store_maplog_stats(struct store *st, struct store_maplog_stats *out)
{
	sqlite3_stmt *s;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = sqlite3_prepare_v2(st->db,
		"SELECT count(*), total(length(data)), "
		"total(CASE WHEN open = 0 THEN n END), "
		"total(CASE WHEN open = 1 THEN n END), "
		"(SELECT trimmed_ms FROM maplog_meta) FROM maplog_blocks",
		-1, &s, NULL);
	if (rc != SQLITE_OK)
		return store_fail(st, rc, "reading the mapping log");
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		out->blocks = (uint64_t)sqlite3_column_int64(s, 0);
		out->bytes = (uint64_t)sqlite3_column_double(s, 1);
		out->ended = (uint64_t)sqlite3_column_double(s, 2);
		out->open = (uint64_t)sqlite3_column_double(s, 3);
		out->trimmed_ms = sqlite3_column_int64(s, 4);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW)
		return store_fail(st, rc, "reading the mapping log");
	return 0;
}

/* ---- the reverse lookup ---- */

/* A gap's end for coverage: its end, else (open) its run's last write,
 * else now (?1): an open gap of an earlier run never closes. */
#define SQL_GAP_END                                                         \
	"coalesce(g.end_ms, (SELECT last_ms FROM maplog_runs "              \
	"WHERE started_ms = g.run_started_ms), ?1)"
#define SQL_GAP_TEXT                                                        \
	"'gap ' || g.seq || ' (' || g.reason || ', ' || "                   \
	SQL_TIME("g.start_ms") " || ' to ' || coalesce(" SQL_TIME("g.end_ms") \
	", 'open') || ')'"
#define SQL_COVERS(t) "g.start_ms <= " t " AND " SQL_GAP_END " >= " t

/* ?1 now, ?2 public ip text, ?3 proto name, ?4 port, ?5 at, ?6 the hits:
 * [{"s", "e" (null: open), "f" flags, "z", "hi", "hp", "di", "dp",
 *   "st" state name, "ss" its since, "sx" exact as the log says, "sn"
 *   the log's note (store_maplog_state_at())}].  The state is not exact
 * either when a gap or lost records overlap [since, at] (a change may
 * have been missed), or at is after the log's last write. */
static const char sql_json_lookup[] =
	"WITH h AS (SELECT json_extract(value, '$.s') AS s, "
	"json_extract(value, '$.e') AS e, json_extract(value, '$.f') AS f, "
	"json_extract(value, '$.z') AS z, json_extract(value, '$.hi') AS hi, "
	"json_extract(value, '$.hp') AS hp, json_extract(value, '$.di') AS di, "
	"json_extract(value, '$.dp') AS dp, json_extract(value, '$.st') AS st, "
	"json_extract(value, '$.ss') AS ss, json_extract(value, '$.sx') AS sx, "
	"json_extract(value, '$.sn') AS sn FROM json_each(?6)), "
	"hr AS (SELECT h.*, (SELECT group_concat(r, '; ') FROM ("
	"SELECT " SQL_GAP_TEXT " || ' covers part of its time in this state: "
	"a change may have been missed' AS r FROM gaps g WHERE h.ss IS NOT NULL "
	"AND g.start_ms <= ?5 AND " SQL_GAP_END " >= h.ss "
	"UNION ALL SELECT records || ' mapping-log records of ' || "
	SQL_TIME("start_ms") " || ' to ' || " SQL_TIME("end_ms") " || ' were "
	"lost: a change may be missing' FROM maplog_losses WHERE h.ss IS NOT "
	"NULL AND start_ms <= ?5 AND end_ms >= h.ss "
	"UNION ALL SELECT 'after the log''s last write (' || "
	SQL_TIME("(SELECT max(last_ms) FROM maplog_runs)") " || '): a later "
	"change is not in it' WHERE h.ss IS NOT NULL AND ?5 > (SELECT "
	"max(last_ms) FROM maplog_runs))) AS sr, "
	"(SELECT json_group_array(r) FROM ("
	"SELECT 'start unknown: first seen by a table dump at ' || "
	SQL_TIME("h.s") " AS r WHERE h.f & 2 "
	"UNION ALL SELECT 'end not reported: found gone at ' || "
	SQL_TIME("h.e") " || ' (a resync or a check; its DESTROY was lost or "
	"never sent), so it ended between when it was last seen and then' "
	"WHERE h.f & 4 "
	"UNION ALL SELECT 'end unknown: natscope stopped at ' || "
	SQL_TIME("h.e") " || ' while it was open' WHERE h.f & 8 "
	"UNION ALL SELECT " SQL_GAP_TEXT " || ' covers its start' FROM gaps g "
	"WHERE " SQL_COVERS("h.s") " "
	"UNION ALL SELECT " SQL_GAP_TEXT " || ' covers its end' FROM gaps g "
	"WHERE h.e IS NOT NULL AND " SQL_COVERS("h.e") " "
	"UNION ALL SELECT " SQL_GAP_TEXT " || ' covers the lookup time' "
	"FROM gaps g WHERE " SQL_COVERS("?5") ")) AS reasons FROM h), "
	"top AS (SELECT json_group_array(r) AS r FROM ("
	"SELECT " SQL_GAP_TEXT " || ' covers this moment: holders may be "
	"missing' AS r FROM gaps g WHERE " SQL_COVERS("?5") " "
	"UNION ALL SELECT 'after the log''s last write (' || "
	SQL_TIME("(SELECT max(last_ms) FROM maplog_runs)") " || '): later "
	"mappings are not in it yet' "
	"WHERE ?5 > (SELECT max(last_ms) FROM maplog_runs) "
	"UNION ALL SELECT 'natscope was not logging mappings at this moment' "
	"WHERE NOT EXISTS (SELECT 1 FROM maplog_runs WHERE started_ms <= ?5 "
	"AND last_ms >= ?5) AND NOT ?5 > coalesce((SELECT max(last_ms) FROM "
	"maplog_runs), ?5) "
	"UNION ALL SELECT 'retention removed mappings that ended by ' || "
	SQL_TIME("trimmed_ms") " || ': holders at this moment may be missing' "
	"FROM maplog_meta WHERE trimmed_ms > 0 AND trimmed_ms >= ?5 "
	"UNION ALL SELECT records || ' mapping-log records of ' || "
	SQL_TIME("start_ms") " || ' to ' || " SQL_TIME("end_ms") " || "
	"' were lost: holders may be missing or wrong' FROM maplog_losses "
	"WHERE start_ms <= ?5 AND end_ms >= ?5)) "
	"SELECT json_object('generated_at', " SQL_TIME("?1") ", "
	"'public_ip', ?2, 'proto', ?3, 'port', ?4, 'at', " SQL_TIME("?5") ", "
	"'uncertain', json(CASE WHEN json_array_length(top.r) > 0 OR EXISTS "
	"(SELECT 1 FROM hr WHERE json_array_length(reasons) > 0) "
	"THEN 'true' ELSE 'false' END), "
	"'reasons', json(top.r), "
	"'holders', json((SELECT json_group_array(json(o)) FROM (SELECT "
	"json_object('kind', CASE WHEN f & 16 THEN 'local' ELSE 'nat' END, "
	"'internal', json_object('ip', hi, 'port', hp), "
	"'destination', json_object('ip', di, 'port', dp), 'zone', z, "
	"'start', " SQL_TIME("s") ", 'start_known', json(CASE WHEN f & 2 "
	"THEN 'false' ELSE 'true' END), 'end', " SQL_TIME("e") ", "
	"'state', st, 'state_since', " SQL_TIME("ss") ", "
	"'state_exact', json(CASE WHEN sx AND sr IS NULL THEN 'true' "
	"ELSE 'false' END), 'state_note', CASE WHEN sn IS NOT NULL AND sr IS "
	"NOT NULL THEN sn || '; ' || sr ELSE coalesce(sn, sr) END, "
	"'uncertain', json(CASE WHEN json_array_length(reasons) > 0 "
	"THEN 'true' ELSE 'false' END), 'reasons', json(reasons)) AS o "
	"FROM hr ORDER BY di, dp, z, s)))) FROM top";

/* What the log says of a state (s->why), for "state_note": into buf,
 * or NULL when there is nothing to say. */
static const char *state_note(const struct store_maplog_entry *e,
			      const struct store_maplog_state *s,
			      char *buf, size_t size)
{
	char t1[NS_TIME_STRLEN], t2[NS_TIME_STRLEN];
	const char *first = ns_tcp_state_name(e->state_start);

	switch (s->why) {
	case STORE_STATE_KNOWN:
		return NULL;
	case STORE_STATE_NOT_TCP:
		return "only TCP mappings have a state";
	case STORE_STATE_NOT_KEPT:
		return "not in the log (logged before natscope kept TCP "
		       "states, or the kernel did not report it)";
	case STORE_STATE_START_SEEN:
		snprintf(buf, size, "first seen in this state by a table dump "
			 "at %s: it began earlier", ns_time_format(s->since_ms,
								    t1));
		return buf;
	case STORE_STATE_CHANGE_SEEN:
		snprintf(buf, size, "found in this state at %s by a table "
			 "dump or a check, no event said when: it began at or "
			 "before then", ns_time_format(s->since_ms, t1));
		return buf;
	case STORE_STATE_BETWEEN: {
		char t3[NS_TIME_STRLEN], t4[NS_TIME_STRLEN], held[128] = "";
		const char *ln = ns_tcp_state_name(e->state_long);

		if (ln && e->long_end > e->long_ms &&
		    !(e->long_ms == e->start_ms &&
		      e->state_long == e->state_start))
			snprintf(held, sizeof(held), ", %s from %s to %s", ln,
				 ns_time_format(e->long_ms, t3),
				 ns_time_format(e->long_end, t4));
		snprintf(buf, size, "%s%s at its start (%s)%s, %s from %s%s: "
			 "the states between are not kept, so the state at "
			 "this moment is not known",
			 first ? "" : "state unknown", first ? first : "",
			 ns_time_format(e->start_ms, t1), held,
			 ns_tcp_state_name(e->state_last) ?
			 ns_tcp_state_name(e->state_last) : "?",
			 ns_time_format(e->state_ms, t2),
			 e->flags & STORE_MAPLOG_STATE_SEEN ?
			 " (found then by a table dump or a check: it changed "
			 "earlier)" : "");
		return buf;
	}
	}
	return NULL;
}

/* Appends one holder to the JSON array *hits (malloc'd), with SQLite's
 * JSON functions; its state is the one at at_ms. */
static int add_hit(struct store *st, char **hits, uint8_t family,
		   uint8_t proto, int64_t at_ms,
		   const struct store_maplog_entry *e)
{
	char hi[NS_ADDR_STRLEN], di[NS_ADDR_STRLEN], nb[512];
	struct ns_addr a = { .family = family };
	struct store_maplog_state sa;
	const unsigned char *text;
	const char *sname, *note;
	sqlite3_stmt *s;
	char *copy;
	int rc;

	memcpy(a.bytes, e->host_ip, alen_of(family));
	ns_addr_format(&a, hi);
	memcpy(a.bytes, e->dest_ip, alen_of(family));
	ns_addr_format(&a, di);
	store_maplog_state_at(e, proto, at_ms, &sa);
	sname = ns_tcp_state_name(sa.state);
	note = state_note(e, &sa, nb, sizeof(nb));
	s = store_stmt(st, STMT_MAPLOG_HIT,
		       "SELECT json_insert(?1, '$[#]', json_object('s', ?2, "
		       "'e', ?3, 'f', ?4, 'z', ?5, 'hi', ?6, 'hp', ?7, "
		       "'di', ?8, 'dp', ?9, 'st', ?10, 'ss', ?11, 'sx', ?12, "
		       "'sn', ?13))");
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, *hits, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, e->start_ms);
	if (e->end_ms)
		sqlite3_bind_int64(s, 3, e->end_ms);
	else
		sqlite3_bind_null(s, 3);
	sqlite3_bind_int(s, 4, e->flags);
	sqlite3_bind_int(s, 5, e->zone);
	sqlite3_bind_text(s, 6, hi, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 7, e->host_port);
	sqlite3_bind_text(s, 8, di, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 9, e->dest_port);
	if (sname)
		sqlite3_bind_text(s, 10, sname, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 10);
	if (sa.since_ms)
		sqlite3_bind_int64(s, 11, sa.since_ms);
	else
		sqlite3_bind_null(s, 11);
	sqlite3_bind_int(s, 12, sa.exact);
	if (note)
		sqlite3_bind_text(s, 13, note, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, 13);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW || !(text = sqlite3_column_text(s, 0))) {
		sqlite3_reset(s);
		return store_fail(st, rc == SQLITE_ROW ? SQLITE_NOMEM : rc,
				  "building a lookup");
	}
	if (!(copy = strdup((const char *)text))) {
		sqlite3_reset(s);
		log_warn("store: lookup");
		return -1;
	}
	sqlite3_reset(s);
	free(*hits);
	*hits = copy;
	return 0;
}

int store_json_lookup(struct store *st, const struct ns_addr *public_ip,
		      uint8_t proto, uint16_t port, int64_t at_ms,
		      int64_t now_ms, char **out)
{
	char ip[NS_ADDR_STRLEN];
	const char *name = ns_proto_name(proto);
	unsigned alen = public_ip->family == AF_INET ? 4 : 16;
	char *hits = NULL;
	sqlite3_stmt *s;
	int own = 0, rc, ret = -1;

	*out = NULL;
	if (!ns_addr_format(public_ip, ip) || !name) {
		errno = EINVAL;
		return -1;
	}
	if (sqlite3_get_autocommit(st->db)) {
		if (store_exec(st, "BEGIN DEFERRED", "starting a lookup") < 0)
			return -1;
		own = 1;
	}
	if (!(hits = strdup("[]"))) {
		log_warn("store: lookup");
		goto out;
	}
	s = store_stmt(st, STMT_MAPLOG_FIND,
		       "SELECT data FROM maplog_blocks WHERE ip_bin = ?1 AND "
		       "proto = ?2 AND t_last >= ?3 AND t_first <= ?3 AND "
		       "port_lo <= ?4 AND port_hi >= ?4 AND family = ?5");
	if (!s)
		goto out;
	sqlite3_bind_blob(s, 1, public_ip->bytes, (int)alen, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, proto);
	sqlite3_bind_int64(s, 3, at_ms);
	sqlite3_bind_int(s, 4, port);
	sqlite3_bind_int(s, 5, public_ip->family == AF_INET ? 4 : 6);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_maplog_entry *e;
		size_t n;

		if (store_maplog_decode(sqlite3_column_blob(s, 0),
					(size_t)sqlite3_column_bytes(s, 0),
					&e, &n) < 0) {
			sqlite3_reset(s);
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			if (e[i].public_port != port || e[i].start_ms > at_ms ||
			    (e[i].end_ms && e[i].end_ms < at_ms))
				continue;
			if (add_hit(st, &hits, public_ip->family, proto, at_ms,
				    &e[i]) < 0) {
				free(e);
				sqlite3_reset(s);
				goto out;
			}
		}
		free(e);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		store_fail(st, rc, "reading the mapping log");
		goto out;
	}
	if (!(s = store_stmt(st, STMT_MAPLOG_JSON, sql_json_lookup)))
		goto out;
	sqlite3_bind_int64(s, 1, now_ms);
	sqlite3_bind_text(s, 2, ip, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 4, port);
	sqlite3_bind_int64(s, 5, at_ms);
	sqlite3_bind_text(s, 6, hits, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_text(s, 0)) {
		if (!(*out = strdup((const char *)sqlite3_column_text(s, 0))))
			log_warn("store: lookup");
		else
			ret = 0;
	} else {
		store_fail(st, rc == SQLITE_ROW ? SQLITE_NOMEM : rc,
			   "building a lookup");
	}
	sqlite3_reset(s);
out:
	free(hits);
	if (own) {
		int err = errno;

		store_exec(st, "COMMIT", "ending a lookup");
		errno = err;
	}
	return ret;
}

/* ---- one internal host's destinations (the host view) ---- */

/* A host's destinations read at most this many mappings of the log
 * (newest-ending blocks first); past it the answer says from when on it
 * is complete.  ~0.1 s of decoding on this project's test machine. */
#define ML_HOST_SCAN_MAX 2000000

/* One mapping of the host, with what it is grouped by. */
struct hd_rec {
	uint8_t pub[16], dest[16];
	uint16_t dest_port, zone;
	uint8_t proto, flags;
	int64_t start_ms, end_ms; /* end 0: open at the last write */
};

struct hd_recs {
	struct hd_rec *v;
	size_t n, cap;
};

static int hd_cmp(const void *a, const void *b)
{
	const struct hd_rec *x = a, *y = b;
	int c = memcmp(x->pub, y->pub, 16);

	if (!c)
		c = (int)x->proto - (int)y->proto;
	if (!c)
		c = memcmp(x->dest, y->dest, 16);
	if (!c)
		c = (int)x->dest_port - (int)y->dest_port;
	if (!c)
		c = (int)x->zone - (int)y->zone;
	return c;
}

static int hd_same(const struct hd_rec *x, const struct hd_rec *y)
{
	return x->proto == y->proto && x->dest_port == y->dest_port &&
	       x->zone == y->zone && !memcmp(x->pub, y->pub, 16) &&
	       !memcmp(x->dest, y->dest, 16);
}

static int i64_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* The most mappings of g[0..n) held at once within [from, to]: held from
 * start to end, both inclusive (as the lookup counts them). */
static uint64_t hd_peak(const struct hd_rec *g, size_t n, int64_t from,
			int64_t to, int64_t *scratch)
{
	int64_t *st = scratch, *en = scratch + n;
	uint64_t cur = 0, peak = 0;
	size_t i = 0, j = 0;

	for (size_t k = 0; k < n; k++) {
		st[k] = g[k].start_ms < from ? from : g[k].start_ms;
		en[k] = g[k].end_ms ? g[k].end_ms : INT64_MAX;
		if (en[k] > to)
			en[k] = to;
	}
	qsort(st, n, sizeof(*st), i64_cmp);
	qsort(en, n, sizeof(*en), i64_cmp);
	while (i < n) {
		if (st[i] <= en[j]) { /* a start before an end at the same ms */
			if (++cur > peak)
				peak = cur;
			i++;
		} else {
			cur--;
			j++;
		}
	}
	return peak;
}

/* Appends the host's mappings of one decoded block that overlap
 * [from, to]. */
static int hd_collect(struct hd_recs *r, const struct store_maplog_entry *e,
		      size_t n, const struct ns_addr *host, const void *pub,
		      unsigned alen, uint8_t proto, int64_t from, int64_t to)
{
	for (size_t i = 0; i < n; i++) {
		struct hd_rec *x;

		if (memcmp(e[i].host_ip, host->bytes, alen) != 0 ||
		    e[i].start_ms > to || (e[i].end_ms && e[i].end_ms < from))
			continue;
		if (r->n == r->cap) {
			size_t ncap = r->cap ? 2 * r->cap : 256;
			struct hd_rec *nv = realloc(r->v, ncap * sizeof(*nv));

			if (!nv) {
				log_warn("store: a host's destinations");
				return -1;
			}
			r->v = nv;
			r->cap = ncap;
		}
		x = &r->v[r->n++];
		memset(x, 0, sizeof(*x));
		memcpy(x->pub, pub, alen);
		memcpy(x->dest, e[i].dest_ip, alen);
		x->dest_port = e[i].dest_port;
		x->zone = e[i].zone;
		x->proto = proto;
		x->flags = e[i].flags;
		x->start_ms = e[i].start_ms;
		x->end_ms = e[i].end_ms;
	}
	return 0;
}

/* The groups of r (sorted) as a JSON array text (malloc'd): one object
 * per public IP, protocol, destination and zone. */
static char *hd_list(struct hd_recs *r, unsigned family, int64_t from,
		     int64_t to, int64_t covered_ms)
{
	struct ns_addr a = { .family = (uint8_t)family };
	unsigned alen = alen_of((uint8_t)family);
	int64_t *scratch = NULL;
	json_t *list = json_array();
	char *text = NULL;

	if (!list || (r->n && !(scratch = malloc(2 * r->n * sizeof(int64_t)))))
		goto out;
	if (r->n) /* qsort(NULL, 0, ...) is undefined behaviour */
		qsort(r->v, r->n, sizeof(*r->v), hd_cmp);
	for (size_t i = 0, j; i < r->n; i = j) {
		char pub[NS_ADDR_STRLEN], dest[NS_ADDR_STRLEN];
		char t1[NS_TIME_STRLEN], t2[NS_TIME_STRLEN];
		uint64_t started = 0, uncertain = 0, open = 0;
		int64_t first = INT64_MAX, last = 0;
		json_t *o;

		for (j = i; j < r->n && hd_same(&r->v[i], &r->v[j]); j++) {
			const struct hd_rec *x = &r->v[j];

			started += x->start_ms >= from &&
				   !(x->flags & STORE_MAPLOG_START_UNKNOWN);
			uncertain += (x->flags & (STORE_MAPLOG_START_UNKNOWN |
						  STORE_MAPLOG_END_UNCERTAIN |
						  STORE_MAPLOG_END_STOPPED)) != 0;
			open += x->end_ms == 0;
			if (x->start_ms < first)
				first = x->start_ms;
			if (x->end_ms > last)
				last = x->end_ms;
		}
		memcpy(a.bytes, r->v[i].pub, alen);
		ns_addr_format(&a, pub);
		memcpy(a.bytes, r->v[i].dest, alen);
		ns_addr_format(&a, dest);
		o = json_pack("{s:s, s:s, s:{s:s, s:i}, s:i, s:I, s:I, s:o, "
			      "s:I, s:I, s:s, s:o, s:I}",
			      "public_ip", pub,
			      "proto", ns_proto_name(r->v[i].proto) ?
			      ns_proto_name(r->v[i].proto) : "?",
			      "destination", "ip", dest, "port",
			      (int)r->v[i].dest_port, "zone", (int)r->v[i].zone,
			      "mappings", (json_int_t)(j - i),
			      "new_mappings", (json_int_t)started,
			      "new_per_second", covered_ms > 0 ?
			      json_real(round(started * 1e5 / covered_ms) / 100) :
			      json_null(),
			      "ports_peak", (json_int_t)hd_peak(&r->v[i], j - i,
							       from, to,
							       scratch),
			      "open_at_last_write", (json_int_t)open,
			      "first_start", ns_time_format(first, t1),
			      "last_end", open ? json_null() :
			      json_string(ns_time_format(last, t2)),
			      "uncertain", (json_int_t)uncertain);
		if (!o || json_array_append_new(list, o) == -1)
			goto out;
	}
	text = json_dumps(list, JSON_COMPACT);
out:
	if (!text)
		log_warnx("store: a host's destinations: out of memory");
	free(scratch);
	json_decref(list);
	return text;
}

/* How much of [from, to] the log covers (its runs, from each start to its
 * last write), in ms, and the log's last write (0: none). */
static int hd_covered(struct store *st, int64_t from, int64_t to,
		      int64_t *covered, int64_t *last_write)
{
	sqlite3_stmt *s;
	int rc;

	*covered = *last_write = 0;
	s = store_stmt(st, STMT_MAPLOG_HOST_RUNS,
		       "SELECT started_ms, last_ms FROM maplog_runs "
		       "ORDER BY started_ms");
	if (!s)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t a = sqlite3_column_int64(s, 0);
		int64_t b = sqlite3_column_int64(s, 1);

		if (b > *last_write)
			*last_write = b;
		if (a < from)
			a = from;
		if (b > to)
			b = to;
		if (b > a)
			*covered += b - a; /* runs never overlap */
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_fail(st, rc, "reading the mapping log's runs");
	return 0;
}

/* ?1 now, ?2 from, ?3 to, ?4 the list, ?5 mappings read, ?6 the scan's
 * cutoff (NULL: complete), ?7 ms of the range the log covers, ?8 its
 * last write, ?9 mappings with an uncertain start or end. */
static const char sql_json_host_dests[] =
	"SELECT json_object('source', 'mapping log', 'mappings_read', ?5, "
	"'complete', json(CASE WHEN json_array_length(r.r) = 0 THEN 'true' "
	"ELSE 'false' END), 'reasons', json(r.r), 'list', json(?4)) FROM "
	"(SELECT json_group_array(t) AS r FROM ("
	"SELECT " SQL_GAP_TEXT " || ' in this range: mappings may be missing "
	"or their ends uncertain' AS t FROM gaps g WHERE g.start_ms <= ?3 AND "
	SQL_GAP_END " >= ?2 "
	"UNION ALL SELECT 'after the log''s last write (' || " SQL_TIME("?8")
	" || '): later mappings are not in it yet' WHERE ?3 > ?8 AND ?8 > 0 "
	"UNION ALL SELECT 'natscope was not logging mappings in this range' "
	"WHERE ?7 = 0 "
	"UNION ALL SELECT 'natscope was not logging mappings during part of "
	"this range' WHERE ?7 > 0 AND ?7 < min(?3, ?8) - ?2 "
	"UNION ALL SELECT 'retention removed mappings that ended by ' || "
	SQL_TIME("trimmed_ms") " || ': some may be missing' FROM maplog_meta "
	"WHERE trimmed_ms > 0 AND trimmed_ms >= ?2 "
	"UNION ALL SELECT records || ' mapping-log records of ' || "
	SQL_TIME("start_ms") " || ' to ' || " SQL_TIME("end_ms") " || ' were "
	"lost: mappings may be missing' FROM maplog_losses WHERE start_ms <= ?3 "
	"AND end_ms >= ?2 "
	"UNION ALL SELECT 'the scan stopped after ' || ?5 || ' mappings of the "
	"log: mappings that ended at or before ' || " SQL_TIME("?6") " || "
	"' are not counted (ask for a shorter range)' WHERE ?6 IS NOT NULL "
	"UNION ALL SELECT 'mappings with an uncertain start or end: ' || ?9 || "
	"' (the lookup of their port says why)' WHERE ?9 > 0)) r";

int store_maplog_host_dests(struct store *st, const struct ns_addr *host,
			    int64_t from_ms, int64_t to_ms, int64_t now_ms,
			    char **out)
{
	unsigned alen = alen_of(host->family);
	struct hd_recs r = { 0 };
	int64_t covered, last_write, cutoff = -1;
	uint64_t read = 0, uncertain = 0;
	char *list = NULL;
	sqlite3_stmt *s;
	int rc, ret = -1;

	*out = NULL;
	if (!alen || from_ms > to_ms) {
		errno = EINVAL;
		return -1;
	}
	if (hd_covered(st, from_ms, to_ms, &covered, &last_write) == -1)
		goto out;
	/* newest ends first, so that a scan cut short is complete from its
	 * cutoff on (every block not read ends at or before it) */
	s = store_stmt(st, STMT_MAPLOG_HOST_SCAN,
		       "SELECT ip_bin, proto, n, t_last, data FROM maplog_blocks "
		       "WHERE family = ?1 AND t_last >= ?2 AND t_first <= ?3 "
		       "ORDER BY t_last DESC");
	if (!s)
		goto out;
	sqlite3_bind_int(s, 1, host->family == AF_INET ? 4 : 6);
	sqlite3_bind_int64(s, 2, from_ms);
	sqlite3_bind_int64(s, 3, to_ms);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_maplog_entry *e;
		uint64_t n = (uint64_t)sqlite3_column_int64(s, 2);
		size_t got;

		if (read > 0 && read + n > ML_HOST_SCAN_MAX) {
			cutoff = sqlite3_column_int64(s, 3);
			break;
		}
		if ((size_t)sqlite3_column_bytes(s, 0) != alen ||
		    store_maplog_decode(sqlite3_column_blob(s, 4),
					(size_t)sqlite3_column_bytes(s, 4),
					&e, &got) < 0) {
			if ((size_t)sqlite3_column_bytes(s, 0) != alen)
				errno = EILSEQ;
			sqlite3_reset(s);
			goto out;
		}
		read += got;
		rc = hd_collect(&r, e, got, host, sqlite3_column_blob(s, 0),
				alen, (uint8_t)sqlite3_column_int(s, 1),
				from_ms, to_ms);
		free(e);
		if (rc == -1) {
			sqlite3_reset(s);
			goto out;
		}
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		store_fail(st, rc, "reading the mapping log");
		goto out;
	}
	for (size_t i = 0; i < r.n; i++)
		uncertain += (r.v[i].flags & (STORE_MAPLOG_START_UNKNOWN |
					      STORE_MAPLOG_END_UNCERTAIN |
					      STORE_MAPLOG_END_STOPPED)) != 0;
	if (!(list = hd_list(&r, host->family, from_ms, to_ms, covered))) {
		errno = ENOMEM;
		goto out;
	}
	if (!(s = store_stmt(st, STMT_MAPLOG_HOST_JSON, sql_json_host_dests)))
		goto out;
	sqlite3_bind_int64(s, 1, now_ms);
	sqlite3_bind_int64(s, 2, from_ms);
	sqlite3_bind_int64(s, 3, to_ms);
	sqlite3_bind_text(s, 4, list, -1, SQLITE_STATIC);
	store_bind_u64(s, 5, read);
	if (cutoff >= 0)
		sqlite3_bind_int64(s, 6, cutoff);
	else
		sqlite3_bind_null(s, 6);
	sqlite3_bind_int64(s, 7, covered);
	sqlite3_bind_int64(s, 8, last_write);
	store_bind_u64(s, 9, uncertain);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_text(s, 0)) {
		if (!(*out = strdup((const char *)sqlite3_column_text(s, 0))))
			log_warn("store: a host's destinations");
		else
			ret = 0;
	} else {
		store_fail(st, rc == SQLITE_ROW ? SQLITE_NOMEM : rc,
			   "building a host's destinations");
	}
	sqlite3_reset(s);
out:
	free(list);
	free(r.v);
	return ret;
}
