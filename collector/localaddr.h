/*
 * localaddr.h - the set of this host's own addresses (loopback excluded),
 * followed live over rtnetlink, so that connections the host originates
 * can be told from routed ones.
 *
 * Single-threaded: the collector's thread only.
 */
#ifndef NATSCOPE_LOCALADDR_H
#define NATSCOPE_LOCALADDR_H

#include <stdint.h>

#include "common/common.h"

struct localaddr;

/* An empty set, not connected to the kernel (tests add addresses by hand).
 * NULL with ENOMEM. */
struct localaddr *localaddr_new(void);

/* A set filled from the kernel's current addresses and subscribed to their
 * changes.  NULL with errno if the rtnetlink socket cannot be opened. */
struct localaddr *localaddr_open(void);

void localaddr_close(struct localaddr *la);

/* The rtnetlink socket to poll for readability, or -1 for a set made by
 * localaddr_new(). */
int localaddr_fd(const struct localaddr *la);

/* Reads pending address notifications without blocking and applies them.
 * After a lost notification (ENOBUFS) it re-reads the whole list.
 * Returns 0, or -1 with errno. */
int localaddr_process(struct localaddr *la);

/* Adds or removes one address.  Loopback addresses are ignored.  Returns
 * 0, or -1 with ENOMEM. */
int localaddr_add(struct localaddr *la, const struct ns_addr *a);
void localaddr_del(struct localaddr *la, const struct ns_addr *a);

/* Whether bytes (4 or 16 significant bytes per family) is in the set. */
int localaddr_contains(const struct localaddr *la, uint8_t family,
		       const uint8_t bytes[16]);

/* Number of addresses in the set. */
unsigned localaddr_count(const struct localaddr *la);

#endif
