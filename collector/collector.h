/*
 * collector.h - follows the kernel's conntrack table into a ledger and
 * hands a snapshot of what changed to the store every interval.
 *
 * Subscribes to conntrack events first, then dumps the table, so nothing
 * that happens during the dump is missed; a dump racing with events is
 * reconciled by the ledger's mark phase.  An event socket overrun (ENOBUFS)
 * is counted, recorded as a gap and repaired by an immediate re-dump.
 *
 * Single-threaded: collector_run() runs on the calling thread; the store is
 * only reached through its writer thread.
 */
#ifndef NATSCOPE_COLLECTOR_H
#define NATSCOPE_COLLECTOR_H

#include <stddef.h>
#include <stdint.h>

struct store_writer;
struct collector;

struct collector_config {
	size_t event_buffer; /* receive buffer to ask for, bytes */
	unsigned interval_s; /* snapshot interval, >= 1 */
	int stop_fd;	     /* stop when readable (e.g. a signalfd); -1: never */
	int64_t run_started_ms; /* the run's identity in the database (status,
				   gap log); 0: when collector_open() runs */
	unsigned hist_top; /* history: top hosts and buckets per gateway and
			      period (0: 10) */
	/* Called once, on the collector's thread, when the first complete
	 * dump's figures have been handed to the writer (systemd's READY=1).
	 * NULL: nobody waits. */
	void (*ready)(void *arg);
	void *ready_arg;
};

/* Opens the conntrack event and dump sockets and the address watcher, and
 * subscribes to events (nothing is read yet).  Returns NULL with errno;
 * EPERM means CAP_NET_ADMIN is missing, which is logged in those words. */
struct collector *collector_open(const struct collector_config *cfg);

/* Dumps the table, then follows events, snapshotting into w every
 * interval, until cfg->stop_fd becomes readable; then writes a final
 * snapshot with state STOPPED and waits for it.  Returns 0, or -1 with
 * errno on a socket error it cannot recover from. */
int collector_run(struct collector *c, struct store_writer *w);

/* Closes the sockets and frees the ledger.  NULL allowed. */
void collector_close(struct collector *c);

#endif
