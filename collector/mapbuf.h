/*
 * mapbuf.h - the collector's side of the mapping log (issue 7): the
 * starts and ends of NAT and local mappings, and TCP mappings' state
 * changes (issue 8), appended as the tracker
 * applies events and dump records, handed to the store in the interval's
 * batch (store.h, "the mapping log").
 *
 * Appending copies one fixed-size record (no allocation but amortised
 * growth).  The buffer is bounded (MAPBUF_MAX records): past it, records
 * are counted as lost with their period, and the batch says so, so that
 * lookups of that period are uncertain rather than wrong.
 *
 * Single-threaded: the collector's thread (the tracker) only.
 */
#ifndef NATSCOPE_MAPBUF_H
#define NATSCOPE_MAPBUF_H

#include <stddef.h>
#include <stdint.h>

#include "collector/ledger.h"
#include "store/store.h"

/* Bytes of records held at most while the writer lags (32 B a record
 * for IPv4, 68 for IPv6). */
#define MAPBUF_MAX (512u << 20)

struct mapbuf {
	uint8_t *buf; /* packed records (store_maplog_pack()) */
	size_t len, cap, n; /* bytes, bytes, records */
	uint64_t lost;
	int64_t lost_from_ms, lost_to_ms;
	int64_t sweep_ms; /* the time mapbuf_sweep_hook() stamps */
};

/* Zeroes mb / releases its memory. */
void mapbuf_init(struct mapbuf *mb);
void mapbuf_free(struct mapbuf *mb);

/* Appends m's start at ms (m a NAT or LOCAL mapping; others are
 * ignored); host_port is the original tuple's source port; flags
 * STORE_MAPLOG_START_UNKNOWN when it was first seen by a dump or an
 * UPDATE. */
void mapbuf_start(struct mapbuf *mb, const struct ledger_mapping *m,
		  uint16_t host_port, int64_t ms, unsigned flags);

/* Appends a TCP state change of the mapping with m's key: in
 * m->tcp_state since ms (ignored for other protocols and an unknown
 * state); flags STORE_MAPLOG_STATE_SEEN when a dump or a check found it
 * changed, without the event that says when. */
void mapbuf_state(struct mapbuf *mb, const struct ledger_mapping *m,
		  int64_t ms, unsigned flags);

/* Appends the end of the mapping with m's key at ms; host_port may be 0;
 * flags STORE_MAPLOG_END_UNCERTAIN when its end was not reported. */
void mapbuf_end(struct mapbuf *mb, const struct ledger_mapping *m,
		uint16_t host_port, int64_t ms, unsigned flags);

/* For ledger_set_sweep_hook(): arg is a struct mapbuf; each mapping a
 * resync sweeps ends, uncertain, at mb->sweep_ms. */
void mapbuf_sweep_hook(void *arg, const struct ledger_mapping *m);

/* Moves the records (and the losses) into b, which must have none, and
 * takes b's buffer for reuse: O(1). */
void mapbuf_hand(struct mapbuf *mb, struct store_batch *b);

#endif
