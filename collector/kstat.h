/*
 * kstat.h - what the kernel says about conntrack as a whole: entry count and
 * limit, the per-CPU counters that reveal failed NAT (insert_failed, drop,
 * early_drop, clash_resolve), and the sysctls that decide port capacity and
 * how long dead flows hold their ports.  Also this process's RSS and CPU.
 *
 * Exhaustion never shows up as an event (the entry is never confirmed), so
 * these counters are the only trace of it.
 */
#ifndef NATSCOPE_KSTAT_H
#define NATSCOPE_KSTAT_H

#include <stddef.h>
#include <stdint.h>

/* Every field is -1 when the kernel did not say. */
struct kstat {
	int64_t count, max;
	int64_t insert_failed, drop, early_drop, clash_resolve;
	int32_t port_lo, port_hi; /* net.ipv4.ip_local_port_range */
	int32_t tcp_tw_reuse, tcp_fin_timeout, tcp_timeout_time_wait;
	int32_t events; /* nf_conntrack_events: 0 off, 1 on, 2 auto */
	uint64_t rss_bytes;
	double cpu_seconds;
};

/* Reads everything from /proc (of the current network namespace) and
 * getrusage().  Missing files leave their fields at -1.  Never fails. */
void kstat_read(struct kstat *ks);

/* Parses the text of /proc/net/stat/nf_conntrack (a header line naming the
 * columns, then one line of hex numbers per CPU) and sums insert_failed,
 * drop, early_drop and clash_resolve ("clashres") over CPUs into *ks.
 * Columns are found by name, so kernels that add or drop columns work.
 * Returns 0, or -1 with EBADMSG if the text is not such a table (fields
 * untouched). */
int kstat_parse_stat(const char *text, struct kstat *ks);

/* Reads the whole file at path (/proc/net/stat/nf_conntrack, however many
 * CPUs it lists) and parses it as kstat_parse_stat() does.  Returns 0, or
 * -1 with errno (the file's, or EBADMSG); fields untouched on failure. */
int kstat_read_stat(const char *path, struct kstat *ks);

/* Parses the text of ip_local_port_range ("32768\t60999\n").  Returns 0,
 * or -1 with EBADMSG. */
int kstat_parse_port_range(const char *text, int32_t *lo, int32_t *hi);

#endif
