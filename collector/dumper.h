/*
 * dumper.h - reads a conntrack table dump on its own thread.
 *
 * The kernel fills each dump chunk inside recv(), so a dump costs the
 * reading thread about as much kernel time as the collector spends parsing
 * and counting the entries.  With the reading on a second thread the two
 * overlap: the collector's thread only takes filled chunks, in order, from
 * a ring of buffers.  When the ring is full the reader waits, so memory
 * stays bounded.
 *
 * The kernel handles a netlink request inside sendto(), where it waits
 * for ctnetlink's lock: a flush of a big table holds it for seconds.  So
 * requests go out from the reader thread too (dumper_start() and
 * dumper_send() only hand them over), and the owner's thread, which must
 * keep reading events, never blocks in the kernel on them.
 *
 * The reader never touches the ledger; only the owner's thread calls
 * dumper_start(), dumper_send(), dumper_sent(), dumper_next() and
 * dumper_release().
 */
#ifndef NATSCOPE_DUMPER_H
#define NATSCOPE_DUMPER_H

#include <stddef.h>
#include <stdint.h>

struct dumper;

/* Opens the dump socket and starts the reader thread (idle).  NULL with
 * errno on failure. */
struct dumper *dumper_open(void);

/* Stops the thread (waiting for at most one receive timeout) and closes
 * the socket.  NULL allowed. */
void dumper_close(struct dumper *d);

/* A file descriptor that is readable while filled chunks are waiting. */
int dumper_fd(const struct dumper *d);

/* Has the reader send a dump request with sequence number seq and read
 * the dump.  Chunks of an earlier dump still in the ring are dropped.  If
 * the request cannot be sent, the dump ends at once with that error (its
 * one chunk: *end set, *err the errno).  Returns 0, or -1 with ENOTCONN
 * when there is no socket (after a failed dumper_reset()). */
int dumper_start(struct dumper *d, uint32_t seq);

struct mnl_socket;

/* Has the reader send len bytes of requests at buf (which must stay
 * untouched until dumper_sent() says so) on nl; their answers queue on
 * nl.  dumper_fd() becomes readable when it is done.  Returns 0, or -1
 * with EBUSY while an earlier one is still being sent. */
int dumper_send(struct dumper *d, struct mnl_socket *nl, const void *buf,
		size_t len);

/* 1 once the last dumper_send() is done (*err: 0 or the sendto() errno;
 * *cpu: the reader's CPU seconds for it, the kernel's answering
 * included; says so once), else 0. */
int dumper_sent(struct dumper *d, int *err, double *cpu);

/* Abandons the running dump: waits for the reader to leave recv() (one
 * receive timeout at most), drops what the ring holds and replaces the
 * socket, so that a dump the kernel never finishes cannot block the next
 * one (the kernel refuses a second dump on a socket with EBUSY).  Returns
 * 0, or -1 with errno if no new socket could be opened (then the next
 * dumper_start() fails and is retried). */
int dumper_reset(struct dumper *d);

/* The oldest filled chunk: sets *len and returns the buffer, or NULL when
 * none is waiting.  *end is set when this chunk is the dump's last, by the
 * one rule of ctmsg_dump_end() applied by the reader: it holds the
 * dump's NLMSG_DONE (*err 0) or its failure (*err the errno: an error
 * answer, an unreadable chunk, or a receive error). */
const void *dumper_next(struct dumper *d, size_t *len, int *end, int *err);

/* Gives the chunk from dumper_next() back to the reader. */
void dumper_release(struct dumper *d);

#endif
