/*
 * common.h - what every natscope module shares: logging, the error
 * convention, addresses, protocol and TCP state names, clocks.
 *
 * Error convention (the whole program): a function that can fail returns
 * 0 (or a non-negative count) on success and -1 on failure with errno set;
 * functions returning pointers return NULL with errno set.  Whoever first
 * sees the failure logs the detail with log_warn()/log_warnx(); callers
 * only decide whether it is fatal.  SQLite result codes never leave store/:
 * they are converted to errno there (see store/store.h).
 */
#ifndef NATSCOPE_COMMON_H
#define NATSCOPE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define NS_VERSION "0.1.0"

/* ---- logging (thread safe, one line per call, to stderr) ---- */

enum ns_log_level { NS_LOG_ERR = 0, NS_LOG_WARN, NS_LOG_INFO, NS_LOG_DEBUG };

/* Sets the program name shown in every line and the most verbose level
 * printed (default NS_LOG_INFO).  Call once before threads start. */
void log_init(const char *progname, enum ns_log_level level);

/* How lines look: text ("2026-12-02T14:02:00.123Z natscope warning: msg")
 * or one JSON object a line for log collectors ({"time", "prog", "level",
 * "msg"}, and "error" with strerror(errno) for log_warn()). */
enum ns_log_format { NS_LOG_TEXT = 0, NS_LOG_JSON };

/* Changes the most verbose level printed or the format, e.g. at SIGHUP;
 * safe while other threads log (a line is either before or after). */
void log_set_level(enum ns_log_level level);
void log_set_format(enum ns_log_format format);
enum ns_log_level log_get_level(void);
enum ns_log_format log_get_format(void);

/* "error", "warning", "info" or "debug"; "text" or "json".  Return 0 with
 * *out set, or -1 with errno EINVAL. */
int log_parse_level(const char *text, enum ns_log_level *out);
int log_parse_format(const char *text, enum ns_log_format *out);

/* log_warn appends ": strerror(errno)"; log_warnx does not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An error the program cannot go on from, logged once by the command that
 * gives up (cli/): the modules below it said the details as warnings.
 * log_err appends ": strerror(errno)"; log_errx does not. */
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_errx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Log and exit(1).  Only cli/ calls these: modules return errors. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- addresses ---- */

/* An IPv4 or IPv6 address.  IPv4 uses bytes[0..3]; the rest stays zero so
 * that two equal addresses compare equal with memcmp(). */
struct ns_addr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t bytes[16];
};

/* Long enough for any ns_addr_format() result plus NUL. */
#define NS_ADDR_STRLEN 46

/* Writes the canonical text form (dotted quad, RFC 5952 for IPv6) into buf.
 * Returns buf, or NULL with errno EAFNOSUPPORT for an unknown family. */
char *ns_addr_format(const struct ns_addr *a, char buf[NS_ADDR_STRLEN]);

/* Parses text into *a, accepting any form inet_pton() accepts.  Returns 0,
 * or -1 with errno EINVAL.  Zeroes *a first. */
int ns_addr_parse(const char *text, struct ns_addr *a);

/* memcmp-style ordering: IPv4 before IPv6, then by bytes. */
int ns_addr_cmp(const struct ns_addr *a, const struct ns_addr *b);

/* ---- protocols ---- */

/* Lower-case name of an IP protocol natscope tracks ("tcp", "udp",
 * "udplite", "sctp", "dccp", "icmp", "icmpv6"), or NULL for others. */
const char *ns_proto_name(uint8_t proto);

/* Inverse of ns_proto_name().  Returns the protocol number, or -1 with
 * errno EINVAL for an unknown name. */
int ns_proto_parse(const char *name);

/* Whether a protocol uses ports (or the ICMP echo id) that NAT maps. */
int ns_proto_has_ports(uint8_t proto);

/* ---- TCP states, numbered as the kernel's enum tcp_conntrack ---- */

#define NS_TCP_STATES 10 /* NONE .. SYN_SENT2 */
#define NS_TCP_STATE_UNKNOWN 0xff
#define NS_TCP_TIME_WAIT 7 /* holds a port after the connection closed */

/* The kernel's default net.ipv4.ip_local_port_range: what a local
 * mapping's port is drawn from when the host's own setting is unknown. */
#define NS_LOCAL_PORT_LO 32768
#define NS_LOCAL_PORT_HI 60999

/* "none", "syn_sent", "syn_recv", "established", "fin_wait", "close_wait",
 * "last_ack", "time_wait", "close", "syn_sent2"; NULL when out of range. */
const char *ns_tcp_state_name(unsigned state);

/* ---- what a mapping consumes ---- */

enum ns_kind {
	NS_KIND_OTHER = 0, /* uses none of this host's ports */
	NS_KIND_NAT = 1,   /* source NAT: public side = reply destination */
	NS_KIND_LOCAL = 2, /* originated by this host from one of its addresses */
};

/* "nat", "local" or "other". */
const char *ns_kind_name(enum ns_kind kind);

/* How many ports one public IP offers for proto, its "port_space":
 * 65535 for protocols with ports (1-65535), 65536 for ICMP and ICMPv6
 * (echo ids 0-65535); 0 for a protocol natscope does not track. */
uint32_t ns_port_space(uint8_t proto);

/* ---- times ---- */

/* Parses a time as people type it: RFC 3339 ("2026-12-02T14:02:00Z",
 * "2026-12-02T15:02:00.5+01:00", or a date alone, meaning its midnight
 * UTC) or unix seconds ("1796220120", "1796220120.25").  Sets *ms to
 * milliseconds since the epoch and returns 0, or -1 with EINVAL. */
int ns_time_parse(const char *text, int64_t *ms);

/* RFC 3339 in UTC with milliseconds: "2026-12-02T14:02:00.000Z". */
#define NS_TIME_STRLEN 32
char *ns_time_format(int64_t ms, char buf[NS_TIME_STRLEN]);

/* ---- clocks ---- */

/* Wall clock, milliseconds since the Unix epoch (what the store keeps). */
int64_t ns_now_ms(void);
/* Monotonic clock in nanoseconds, for durations and timers. */
int64_t ns_mono_ns(void);

#endif
