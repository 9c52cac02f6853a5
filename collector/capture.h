/*
 * capture.h - conntrack captures (text and XML files users already have)
 * into the same fixed record the netlink parser produces (ctmsg.h).
 *
 * Formats, detected from the content:
 *   conntrack -L                      tcp      6 34 CLOSE_WAIT src=...
 *   conntrack -L -o extended[,id]     ipv4     2 tcp      6 34 ...
 *   conntrack -L -o xml               <?xml ...><conntrack><flow>...
 *   /proc/net/nf_conntrack            ipv4     2 tcp      6 34 ... zone=0 use=2
 *   conntrack -E [-o timestamp,...]   [1732530000.123456]\t    [NEW] tcp ...
 *   conntrack -E -o xml[,timestamp]   <flow type="new">...<when>...</when></flow>
 *
 * Conventions are those of ctmsg_parse(): IPv4 in the first 4 bytes of an
 * address, ports in host order, ICMP/ICMPv6 sport = dport = echo id (type
 * and code are not kept), GRE keys in sport/dport, other protocols no
 * ports.  tcp_state only for TCP.  What the text cannot say stays 0:
 * status holds IPS_SEEN_REPLY (no [UNREPLIED]), IPS_ASSURED, IPS_OFFLOAD
 * and IPS_HW_OFFLOAD only; id is 0 unless the capture shows it (never in
 * /proc); conntrack's XML has no ICMP echo id, so ICMP ports are 0 there.
 * zone is zone=N, else zone-reply=N (the zone the reply tuple, which NAT
 * keeps unique, lives in), else 0: zone-orig=N alone leaves the reply
 * tuple in the default zone.
 *
 * /proc/net/nf_conntrack and -o extended have the same columns; /proc is
 * told apart by what only the kernel prints: zone=0, IPv6 addresses in
 * full (2001:0db8:0000:...) or GRE's "timeout=N, stream_timeout=N".  The
 * same parser reads both, so a /proc capture without these reads as
 * -o extended, with the same records.
 *
 * Time: the text event timestamp "[sec.usec]" is epoch time.  XML <when>
 * is the capturing machine's local time, to the second, without a zone:
 * it is converted with mktime(), i.e. in the importing process's zone
 * (set TZ to the capturing machine's zone if it differs).  Both are the
 * moment conntrack printed the event, not the kernel's.
 *
 * Robustness: any byte string is safe input.  Malformed records are
 * reported one by one with "file:line: what" and skipped.  NUL bytes at
 * the start of a line (the hole a log rotated with copytruncate leaves)
 * are skipped and counted, not reported.  XML is parsed by expat one
 * <flow> at a time; after an XML error the reader resumes at the next line
 * that starts a <flow> or a document (conntrack writes one flow per line),
 * so one damaged flow costs one error, not the rest of the file.
 *
 * One handle is used by one thread at a time.  The reader allocates its
 * buffers once in capture_open(); capture_next() allocates nothing for
 * text captures (expat may grow its own buffer for XML).
 */
#ifndef NATSCOPE_CAPTURE_H
#define NATSCOPE_CAPTURE_H

#include <stdint.h>
#include <stdio.h>

#include "collector/ctmsg.h"

struct capture;

enum capture_format {
	CAPTURE_AUTO = 0,      /* detect (capture_open); nothing to detect (capture_format) */
	CAPTURE_LIST,	       /* conntrack -L */
	CAPTURE_LIST_EXTENDED, /* conntrack -L -o extended[,id] */
	CAPTURE_LIST_XML,      /* conntrack -L -o xml */
	CAPTURE_PROC,	       /* /proc/net/nf_conntrack */
	CAPTURE_EVENTS,	       /* conntrack -E, any text -o options */
	CAPTURE_EVENTS_XML,    /* conntrack -E -o xml */
};

struct capture_record {
	struct ct_entry e;  /* type CTMSG_DUMP for listings, CTMSG_NEW/UPDATE/DESTROY for events */
	int64_t ts_ms;	    /* event time, ms since the epoch, or -1 if the capture has none */
	uint32_t timeout_s; /* remaining timeout if shown, else UINT32_MAX */
	unsigned line;	    /* 1-based line (XML: the line where <flow> starts) */
};

struct capture_stats {
	unsigned long lines;	 /* lines read */
	unsigned long records;	 /* capture_next() returned 1 */
	unsigned long errors;	 /* capture_next() returned -1 with EBADMSG */
	unsigned long skipped;	 /* blank lines and conntrack's own messages */
	unsigned long nul_bytes; /* NUL bytes skipped at line starts */
};

/* Starts reading a capture from f, which stays the caller's (it is read,
 * never closed).  name (copied) prefixes error messages: "name:line: ...".
 * With CAPTURE_AUTO the format is detected from the first lines; input
 * with no record at all (empty, blank) is accepted and yields nothing.
 * Returns NULL with errno EBADMSG when the content is not a conntrack
 * capture (logged), EIO on a read error, ENOMEM, or EINVAL for a bad fmt. */
struct capture *capture_open(FILE *f, const char *name,
			     enum capture_format fmt);

/* The format given to or detected by capture_open(); CAPTURE_AUTO when
 * the input held nothing to detect. */
enum capture_format capture_format(const struct capture *c);

/* A short human name: "conntrack -L", "conntrack -L -o extended",
 * "conntrack -L -o xml", "/proc/net/nf_conntrack", "conntrack -E",
 * "conntrack -E -o xml", "empty" for CAPTURE_AUTO; NULL when out of range. */
const char *capture_format_name(enum capture_format f);

/* Reads the next record.  Returns 1 with *r filled; 0 at the end of the
 * input; -1 with errno EBADMSG for a malformed record, which is skipped:
 * capture_error() says "name:line: what is wrong" and the next call goes
 * on with the following record.  Other errno values (EIO, ENOMEM) are
 * fatal: every later call returns -1 with the same errno. */
int capture_next(struct capture *c, struct capture_record *r);

/* The message of the last -1 from capture_next() (or "" if none).  Valid
 * until the next call on c. */
const char *capture_error(const struct capture *c);

/* Counters so far; the importer prints them at the end. */
void capture_stats(const struct capture *c, struct capture_stats *st);

/* Frees c (not the FILE).  NULL is a no-op. */
void capture_close(struct capture *c);

#endif
