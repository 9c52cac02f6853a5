/*
 * classify.h - what a conntrack entry consumes: a source-NAT mapping on a
 * public IP, a port of one of this host's own addresses, or nothing.
 */
#ifndef NATSCOPE_CLASSIFY_H
#define NATSCOPE_CLASSIFY_H

#include "collector/ctmsg.h"
#include "collector/ledger.h"
#include "collector/localaddr.h"

/* Classifies e and fills *m, returning NS_KIND_NAT, NS_KIND_LOCAL or
 * NS_KIND_OTHER:
 *  - NAT: the reply destination differs from the original source (address
 *    or port/ICMP id); public side = reply destination, host = original
 *    source.
 *  - LOCAL: not NAT, and the original source is in la; public side = host =
 *    the original source.
 *  - OTHER: anything else, or a protocol without ports/ids.
 * The key fields of *m (family, proto, zone, public ip:port, destination
 * ip:port) are filled for every kind, from the reply tuple, so a DESTROY can
 * be looked up whatever the entry was classified as when it was created.
 * The destination is the reply source: where the packets really go, which
 * is the original destination unless DNAT applies too.  la may be NULL
 * (nothing is local).  Never fails. */
enum ns_kind classify_entry(const struct ct_entry *e,
			    const struct localaddr *la,
			    struct ledger_mapping *m);

#endif
