/*
 * dumper.c - the dump reader thread and its ring of chunk buffers.
 */
#include "collector/dumper.h"
#include "common/common.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>

#include "collector/ctmsg.h"

#define DUMPER_SLOTS 32
#define DUMPER_BUFSZ 65536 /* the kernel fills chunks up to 32 KB */

struct dumper {
	struct mnl_socket *nl;
	int efd;
	pthread_t th;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *buf; /* DUMPER_SLOTS * DUMPER_BUFSZ */
	size_t len[DUMPER_SLOTS];
	uint8_t end[DUMPER_SLOTS];
	int err[DUMPER_SLOTS];
	unsigned head, tail; /* filled: [tail, head), free-running */
	int running;	     /* the reader should read */
	int in_recv;	     /* the reader is inside recv() */
	int stop;
	uint32_t seq;	     /* of the running dump */
	pthread_cond_t idle; /* the reader left recv() */
	/* requests the reader sends for the owner (dumper_start(),
	 * dumper_send()): the kernel handles a request inside sendto(), and
	 * waits there for its conntrack lock, which a flush of a big table
	 * holds for seconds */
	char start_req[64];
	size_t start_len;    /* a dump request to send; 0 none */
	struct mnl_socket *send_nl;
	const void *send_buf;
	size_t send_len;     /* requests to send on send_nl; 0 none */
	int send_done, send_err;
	double send_cpu;	    /* seconds the last send took the reader */
	int in_send;		    /* the reader is sending start_req on nl */
	struct mnl_socket *orphan;  /* replaced by a reset while in_send */
};

/* The dump socket: bound, with a bounded receive wait (so that
 * dumper_close() and dumper_reset() are heard) and room for chunks. */
static struct mnl_socket *dumper_socket(void)
{
	struct timeval tv = { 0, 200000 };
	struct mnl_socket *nl;
	int v = 4 << 20;

	nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		log_warn("conntrack: dump socket");
		if (nl)
			mnl_socket_close(nl);
		return NULL;
	}
	if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv,
		       sizeof(tv)) < 0)
		log_warn("conntrack: dump socket timeout");
	if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &v,
		       sizeof(v)) < 0)
		log_warn("conntrack: dump socket buffer");
	return nl;
}

static double dumper_thread_cpu(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
		return 0;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *dumper_main(void *arg)
{
	struct dumper *d = arg;
	uint64_t one = 1;

	pthread_setname_np(pthread_self(), "ns-dump"); /* for top -H, bench/ */
	pthread_mutex_lock(&d->mu);
	for (;;) {
		unsigned slot;
		ssize_t n;
		int saved, fd;

		while (!d->stop && !d->start_len && !d->send_len &&
		       (!d->running || d->head - d->tail == DUMPER_SLOTS))
			pthread_cond_wait(&d->cv, &d->mu);
		if (d->stop)
			break;
		if (d->send_len) {
			struct mnl_socket *nl = d->send_nl;
			const void *buf = d->send_buf;
			size_t len = d->send_len;

			double cpu = dumper_thread_cpu();

			pthread_mutex_unlock(&d->mu);
			n = mnl_socket_sendto(nl, buf, len);
			saved = errno;
			cpu = dumper_thread_cpu() - cpu;
			pthread_mutex_lock(&d->mu);
			d->send_len = 0;
			d->send_done = 1;
			d->send_err = n < 0 ? saved : 0;
			d->send_cpu = cpu;
			if (write(d->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
				log_warn("dump: eventfd");
			continue;
		}
		if (d->start_len) {
			struct mnl_socket *nl = d->nl;
			size_t len = d->start_len;

			d->start_len = 0;
			d->in_send = 1;
			pthread_mutex_unlock(&d->mu);
			n = nl ? mnl_socket_sendto(nl, d->start_req, len) : -1;
			saved = nl ? errno : ENOTCONN;
			pthread_mutex_lock(&d->mu);
			d->in_send = 0;
			if (nl && d->orphan == nl) {
				/* reset while we sent: not ours any more */
				mnl_socket_close(nl);
				d->orphan = NULL;
				continue;
			}
			if (n < 0 && d->running) {
				/* the dump fails as a chunk would: its end */
				slot = d->head % DUMPER_SLOTS;
				d->len[slot] = 0;
				d->err[slot] = saved;
				d->end[slot] = 1;
				d->head++;
				d->running = 0;
				if (write(d->efd, &one, sizeof(one)) < 0 &&
				    errno != EAGAIN)
					log_warn("dump: eventfd");
			}
			continue;
		}
		slot = d->head % DUMPER_SLOTS;
		fd = mnl_socket_get_fd(d->nl);
		d->in_recv = 1;
		pthread_mutex_unlock(&d->mu);
		n = recv(fd, d->buf + (size_t)slot * DUMPER_BUFSZ, DUMPER_BUFSZ,
			 MSG_TRUNC);
		saved = errno;
		pthread_mutex_lock(&d->mu);
		d->in_recv = 0;
		pthread_cond_broadcast(&d->idle);
		if (!d->running)
			continue; /* reset while we read: not ours any more */
		if (n < 0 && (saved == EAGAIN || saved == EWOULDBLOCK ||
			      saved == EINTR))
			continue; /* receive timeout: look at stop again */
		if (n > DUMPER_BUFSZ) {
			n = -1;
			saved = EMSGSIZE;
		}
		d->len[slot] = n < 0 ? 0 : (size_t)n;
		d->err[slot] = n < 0 ? saved : 0;
		if (n >= 0)
			d->end[slot] = ctmsg_dump_end(
					       d->buf + (size_t)slot * DUMPER_BUFSZ,
					       (size_t)n, d->seq,
					       &d->err[slot]) != CTMSG_DUMP_MORE;
		else
			d->end[slot] = 1;
		d->head++;
		if (d->end[slot])
			d->running = 0;
		if (write(d->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_warn("dump: eventfd");
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

struct dumper *dumper_open(void)
{
	struct dumper *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->efd = -1;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	pthread_cond_init(&d->idle, NULL);
	d->buf = malloc((size_t)DUMPER_SLOTS * DUMPER_BUFSZ);
	if (!d->buf)
		goto err;
	d->nl = dumper_socket();
	if (!d->nl)
		goto err;
	d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->efd < 0) {
		log_warn("eventfd");
		goto err;
	}
	if ((errno = pthread_create(&d->th, NULL, dumper_main, d)) != 0) {
		log_warn("dump thread");
		goto err;
	}
	d->started = 1;
	return d;
err:
	dumper_close(d);
	return NULL;
}

void dumper_close(struct dumper *d)
{
	int saved = errno;

	if (!d)
		return;
	if (d->started) {
		pthread_mutex_lock(&d->mu);
		d->stop = 1;
		pthread_cond_signal(&d->cv);
		pthread_mutex_unlock(&d->mu);
		pthread_join(d->th, NULL);
	}
	if (d->nl)
		mnl_socket_close(d->nl);
	if (d->orphan)
		mnl_socket_close(d->orphan);
	if (d->efd >= 0)
		close(d->efd);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	pthread_cond_destroy(&d->idle);
	free(d->buf);
	free(d);
	errno = saved;
}

int dumper_fd(const struct dumper *d)
{
	return d->efd;
}

int dumper_start(struct dumper *d, uint32_t seq)
{
	int rc = 0;

	pthread_mutex_lock(&d->mu);
	/* the reader is idle here (running is 0): nothing is in recv() */
	d->head = d->tail = 0;
	d->seq = seq;
	if (!d->nl) {
		errno = ENOTCONN;
		rc = -1;
	} else {
		d->start_len = ctmsg_build_dump(d->start_req, seq);
		d->running = 1;
		pthread_cond_signal(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}

int dumper_send(struct dumper *d, struct mnl_socket *nl, const void *buf,
		size_t len)
{
	int rc = 0;

	pthread_mutex_lock(&d->mu);
	if (d->send_len) {
		errno = EBUSY;
		rc = -1;
	} else {
		d->send_nl = nl;
		d->send_buf = buf;
		d->send_len = len;
		d->send_done = 0;
		pthread_cond_signal(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}

int dumper_sent(struct dumper *d, int *err, double *cpu)
{
	int done;

	pthread_mutex_lock(&d->mu);
	done = d->send_done;
	if (done) {
		*err = d->send_err;
		*cpu = d->send_cpu;
		d->send_done = 0;
	}
	pthread_mutex_unlock(&d->mu);
	return done;
}

int dumper_reset(struct dumper *d)
{
	struct mnl_socket *nl;
	uint64_t v;
	int rc = 0;

	pthread_mutex_lock(&d->mu);
	d->running = 0;
	d->start_len = 0;
	while (d->in_recv)
		pthread_cond_wait(&d->idle, &d->mu);
	d->head = d->tail = 0;
	if (d->nl && d->in_send)
		d->orphan = d->nl; /* the reader closes it when sent */
	else if (d->nl)
		mnl_socket_close(d->nl);
	d->nl = nl = dumper_socket();
	if (!nl)
		rc = -1;
	pthread_mutex_unlock(&d->mu);
	if (read(d->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("dump: eventfd");
	return rc;
}

const void *dumper_next(struct dumper *d, size_t *len, int *end, int *err)
{
	const void *p = NULL;
	uint64_t v;

	pthread_mutex_lock(&d->mu);
	if (d->head == d->tail) {
		/* clear the wake-up first, then look again: a chunk pushed in
		 * between is seen now or wakes the owner later */
		pthread_mutex_unlock(&d->mu);
		if (read(d->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			log_warn("dump: eventfd");
		pthread_mutex_lock(&d->mu);
	}
	if (d->head != d->tail) {
		unsigned slot = d->tail % DUMPER_SLOTS;

		p = d->buf + (size_t)slot * DUMPER_BUFSZ;
		*len = d->len[slot];
		*end = d->end[slot];
		*err = d->err[slot];
	}
	pthread_mutex_unlock(&d->mu);
	return p;
}

void dumper_release(struct dumper *d)
{
	pthread_mutex_lock(&d->mu);
	if (d->head != d->tail) {
		d->tail++;
		pthread_cond_signal(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
}
