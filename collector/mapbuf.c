/*
 * mapbuf.c - the collector's buffer of mapping starts and ends (mapbuf.h).
 */
#include "collector/mapbuf.h"

#include <stdlib.h>
#include <string.h>

void mapbuf_init(struct mapbuf *mb)
{
	memset(mb, 0, sizeof(*mb));
}

void mapbuf_free(struct mapbuf *mb)
{
	free(mb->recs);
	mapbuf_init(mb);
}

static struct store_maplog_rec *mapbuf_add(struct mapbuf *mb, int64_t ms)
{
	if (mb->n == mb->cap) {
		size_t ncap = mb->cap ? mb->cap * 2 : 4096;
		struct store_maplog_rec *p;

		if (ncap > MAPBUF_MAX)
			ncap = MAPBUF_MAX;
		if (mb->n >= ncap ||
		    !(p = realloc(mb->recs, ncap * sizeof(*p)))) {
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
		mb->recs = p;
		mb->cap = ncap;
	}
	return &mb->recs[mb->n++];
}

static void mapbuf_put(struct mapbuf *mb, const struct ledger_mapping *m,
		       uint16_t host_port, int64_t ms, unsigned flags)
{
	struct store_maplog_rec *r;

	if (m->kind != NS_KIND_NAT && m->kind != NS_KIND_LOCAL &&
	    !(flags & STORE_MAPLOG_END))
		return;
	if (!(r = mapbuf_add(mb, ms)))
		return;
	r->ms = ms;
	r->family = m->family;
	r->proto = m->proto;
	r->flags = (uint8_t)flags;
	r->zone = m->zone;
	r->public_port = m->public_port;
	r->host_port = host_port;
	r->dest_port = m->dest_port;
	memcpy(r->public_ip, m->public_ip, 16);
	memcpy(r->host_ip, m->host_ip, 16);
	memcpy(r->dest_ip, m->dest_ip, 16);
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

void mapbuf_sweep_hook(void *arg, const struct ledger_mapping *m)
{
	struct mapbuf *mb = arg;

	mapbuf_end(mb, m, 0, mb->sweep_ms, STORE_MAPLOG_END_UNCERTAIN);
}

void mapbuf_hand(struct mapbuf *mb, struct store_batch *b)
{
	struct store_maplog_rec *spare = b->maplog;
	size_t spare_cap = b->cap_maplog;

	b->maplog = mb->recs;
	b->n_maplog = mb->n;
	b->cap_maplog = mb->cap;
	b->maplog_lost = mb->lost;
	b->maplog_lost_from_ms = mb->lost_from_ms;
	b->maplog_lost_to_ms = mb->lost_to_ms;
	mb->recs = spare;
	mb->cap = spare_cap;
	mb->n = 0;
	mb->lost = 0;
	mb->lost_from_ms = mb->lost_to_ms = 0;
}
