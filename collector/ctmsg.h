/*
 * ctmsg.h - one ctnetlink message (event or dump record) into a fixed-size
 * record.  No allocation; the parser validates every attribute's type and
 * length (libmnl tb[] tables) before reading it, so any byte string is safe
 * input (see tests/unit/test_ctmsg.c and the fuzz harness).
 */
#ifndef NATSCOPE_CTMSG_H
#define NATSCOPE_CTMSG_H

#include <stddef.h>
#include <stdint.h>

struct nlmsghdr;

enum ctmsg_type {
	CTMSG_NEW = 1, /* event: entry confirmed */
	CTMSG_UPDATE,  /* event: state or status changed */
	CTMSG_DESTROY, /* event: entry gone */
	CTMSG_DUMP,    /* one entry of a table dump */
};

struct ct_tuple {
	uint8_t src[16], dst[16]; /* IPv4 in the first 4 bytes, rest zero */
	uint16_t sport, dport;	  /* host order; ICMP: both are the echo id */
};

struct ct_entry {
	uint8_t type;	   /* enum ctmsg_type */
	uint8_t family;	   /* AF_INET, AF_INET6 */
	uint8_t proto;	   /* IPPROTO_* of the original tuple */
	uint8_t tcp_state; /* enum tcp_conntrack, or NS_TCP_STATE_UNKNOWN */
	uint16_t zone;	 /* of the reply tuple: CTA_ZONE, else the reply
			    direction's CTA_TUPLE_ZONE, else 0 */
	uint32_t id;	 /* CTA_ID, 0 if absent */
	uint32_t status; /* IPS_* bits, 0 if absent */
	struct ct_tuple orig, reply;
};

/* Parses one netlink message of the ctnetlink subsystem.  Returns 0 and
 * fills *e; returns -1 with errno ENOENT for a message that is not a
 * conntrack entry (wrong subsystem or type: the caller skips it) or EBADMSG
 * for a malformed one (truncated, bad attribute, missing tuple).  The type
 * is CTMSG_DUMP when the message is part of a multipart dump answer. */
int ctmsg_parse(const struct nlmsghdr *nlh, struct ct_entry *e);

/* Builds a dump request for the whole table (both families) into buf
 * (at least 64 bytes).  Returns the message length. */
size_t ctmsg_build_dump(void *buf, uint32_t seq);

/* How a chunk of a dump answer ends the dump.  The one rule for "end of
 * dump", used by the dump reader and the collector alike (like libmnl's
 * callback.c: OK / STOP / ERROR). */
enum ctmsg_dump_end {
	CTMSG_DUMP_MORE = 0, /* the dump goes on */
	CTMSG_DUMP_DONE,     /* NLMSG_DONE: complete */
	CTMSG_DUMP_FAILED,   /* an error answer, or unreadable: *err says */
};

/* Looks at the netlink messages of one chunk of len bytes for the end of
 * the dump with sequence number seq (messages of other sequence numbers
 * are ignored).  An NLMSG_ERROR with an error, one too short to hold its
 * error (EBADMSG), or bytes that are not whole netlink messages (EBADMSG)
 * fail the dump and set *err to the errno. */
enum ctmsg_dump_end ctmsg_dump_end(const void *buf, size_t len, uint32_t seq,
				   int *err);

/* The errno an NLMSG_ERROR message carries: 0 for an acknowledgement, or
 * -1 with errno EBADMSG when the message is too short to hold one. */
int ctmsg_error(const struct nlmsghdr *nlh);

/* Builds into buf (size bytes, at least 256) a request for the one entry
 * whose reply tuple is *reply (family, proto, zone; for ICMP and ICMPv6
 * the echo id is reply->sport and the reply is an echo reply).  The
 * kernel answers with the entry (an IPCTNL_MSG_CT_NEW message) or with
 * NLMSG_ERROR ENOENT, carrying seq.  Returns the message length, or 0 if
 * size is too small. */
size_t ctmsg_build_get(void *buf, size_t size, uint32_t seq, uint8_t family,
		       uint8_t proto, uint16_t zone,
		       const struct ct_tuple *reply);

#endif
