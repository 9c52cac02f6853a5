/*
 * mapbuf.c - the collector's buffer of mapping starts and ends (mapbuf.h).
 */
#include "collector/mapbuf.h"

#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

void mapbuf_init(struct mapbuf *mb)
{
	memset(mb, 0, sizeof(*mb));
}

void mapbuf_free(struct mapbuf *mb)
{
	free(mb->buf);
	mapbuf_init(mb);
}

/* Room for one more record, or NULL (counted as lost). */
static uint8_t *mapbuf_room(struct mapbuf *mb, int64_t ms)
{
	if (mb->cap - mb->len < STORE_MAPLOG_PACKED_MAX) {
		size_t ncap = mb->cap ? mb->cap * 2 : 128 << 10;
		uint8_t *p;

		if (ncap > MAPBUF_MAX)
			ncap = MAPBUF_MAX;
		if (ncap - mb->len < STORE_MAPLOG_PACKED_MAX ||
		    !(p = realloc(mb->buf, ncap))) {
			if (!mb->lost++) {
				log_warnx("mapping log: buffer full (%zu "
					  "records): records are lost until the "
					  "writer catches up; lookups of this "
					  "period will say so", mb->n);
				mb->lost_from_ms = ms;
			}
			mb->lost_to_ms = ms;
			return NULL;
		}
		mb->buf = p;
		mb->cap = ncap;
	}
	return mb->buf + mb->len;
}

static void mapbuf_put(struct mapbuf *mb, const struct ledger_mapping *m,
		       uint16_t host_port, int64_t ms, unsigned flags)
{
	struct store_maplog_rec r;
	uint8_t *p;
	size_t len;

	if (m->kind != NS_KIND_NAT && m->kind != NS_KIND_LOCAL &&
	    !(flags & STORE_MAPLOG_END))
		return;
	if (!(p = mapbuf_room(mb, ms)))
		return;
	r.ms = ms;
	r.family = m->family;
	r.proto = m->proto;
	r.flags = (uint8_t)flags;
	r.state = m->proto == IPPROTO_TCP ? m->tcp_state : NS_TCP_STATE_UNKNOWN;
	r.zone = m->zone;
	r.public_port = m->public_port;
	r.host_port = host_port;
	r.dest_port = m->dest_port;
	memcpy(r.public_ip, m->public_ip, 16);
	memcpy(r.host_ip, m->host_ip, 16);
	memcpy(r.dest_ip, m->dest_ip, 16);
	if ((len = store_maplog_pack(&r, p))) {
		mb->len += len;
		mb->n++;
	}
}

void mapbuf_start(struct mapbuf *mb, const struct ledger_mapping *m,
		  uint16_t host_port, int64_t ms, unsigned flags)
{
	flags &= STORE_MAPLOG_START_UNKNOWN;
	if (m->kind == NS_KIND_LOCAL)
		flags |= STORE_MAPLOG_LOCAL;
	mapbuf_put(mb, m, host_port, ms, flags);
}

void mapbuf_end(struct mapbuf *mb, const struct ledger_mapping *m,
		uint16_t host_port, int64_t ms, unsigned flags)
{
	flags &= STORE_MAPLOG_END_UNCERTAIN;
	mapbuf_put(mb, m, host_port, ms, flags | STORE_MAPLOG_END);
}

void mapbuf_state(struct mapbuf *mb, const struct ledger_mapping *m,
		  int64_t ms, unsigned flags)
{
	if (m->proto != IPPROTO_TCP || m->tcp_state >= NS_TCP_STATES)
		return;
	flags &= STORE_MAPLOG_STATE_SEEN;
	mapbuf_put(mb, m, 0, ms, flags | STORE_MAPLOG_STATE);
}

void mapbuf_sweep_hook(void *arg, const struct ledger_mapping *m)
{
	struct mapbuf *mb = arg;

	mapbuf_end(mb, m, 0, mb->sweep_ms, STORE_MAPLOG_END_UNCERTAIN);
}

/* A spare buffer bigger than this goes back to the system instead of
 * being reused (a cold start's records, a storm's): memory follows the
 * batches; the next batch grows its own. */
#define MAPBUF_KEEP (4u << 20)

void mapbuf_hand(struct mapbuf *mb, struct store_batch *b)
{
	uint8_t *spare = b->maplog;
	size_t spare_cap = b->cap_maplog;

	if (spare_cap > MAPBUF_KEEP && spare_cap > mb->len * 4) {
		free(spare);
		spare = NULL;
		spare_cap = 0;
	}

	b->maplog = mb->buf;
	b->maplog_len = mb->len;
	b->n_maplog = mb->n;
	b->cap_maplog = mb->cap;
	b->maplog_lost = mb->lost;
	b->maplog_lost_from_ms = mb->lost_from_ms;
	b->maplog_lost_to_ms = mb->lost_to_ms;
	mb->buf = spare;
	mb->cap = spare_cap;
	mb->n = mb->len = 0;
	mb->lost = 0;
	mb->lost_from_ms = mb->lost_to_ms = 0;
}
