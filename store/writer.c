/*
 * writer.c - the thread that owns the read-write store.  The collector
 * fills a batch and submits it; the thread writes it while the collector
 * carries on.  One batch at most is in flight: while it is, acquire()
 * returns NULL and the collector's ledger keeps accumulating changes for
 * the next interval, so nothing is lost, only delayed.
 *
 * A single batch is enough: the collector may only fill it while the
 * thread is idle, and the thread only reads it while it is in flight.
 */
#include "store/internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct store_writer {
	struct store *st;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t work; /* a batch was submitted, or stop */
	pthread_cond_t idle; /* the batch in flight was written */
	struct store_batch batch;
	struct store_status begin_status;
	int begin;     /* the job in flight is store_begin_run() */
	int in_flight; /* submitted and not yet written */
	int stopping;
	int need_full; /* no write yet, or the last one failed */
	int last_errno; /* of the last write, 0 if it succeeded */
	int thresholds_set; /* new thresholds for the next write */
	double warn, critical;
};

static void *writer_main(void *arg)
{
	struct store_writer *w = arg;
	int rc, err;

	pthread_setname_np(pthread_self(), "ns-writer"); /* for top -H, bench/ */
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->in_flight && !w->stopping)
			pthread_cond_wait(&w->work, &w->mu);
		if (!w->in_flight)
			break; /* stopping, nothing left to write */
		if (w->thresholds_set) { /* the writer owns st: set here */
			w->st->hist_cfg.warn = w->warn;
			w->st->hist_cfg.critical = w->critical;
			w->thresholds_set = 0;
		}
		pthread_mutex_unlock(&w->mu);
		if (w->begin)
			rc = store_begin_run(w->st, &w->begin_status);
		else
			rc = store_write(w->st, &w->batch);
		err = rc < 0 ? errno : 0;
		pthread_mutex_lock(&w->mu);
		w->last_errno = err;
		if (w->begin)
			w->begin = 0; /* need_full stays: nothing written yet */
		else
			w->need_full = rc < 0;
		w->in_flight = 0;
		pthread_cond_broadcast(&w->idle);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

struct store_writer *store_writer_start(struct store *st)
{
	struct store_writer *w;
	int err;

	if (!(w = calloc(1, sizeof(*w)))) {
		log_warn("store: writer");
		return NULL;
	}
	w->st = st;
	w->need_full = 1;
	store_batch_init(&w->batch);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->work, NULL);
	pthread_cond_init(&w->idle, NULL);
	err = pthread_create(&w->thread, NULL, writer_main, w);
	if (err) {
		errno = err;
		log_warn("store: starting the writer thread");
		pthread_cond_destroy(&w->idle);
		pthread_cond_destroy(&w->work);
		pthread_mutex_destroy(&w->mu);
		free(w);
		errno = err;
		return NULL;
	}
	return w;
}

int store_writer_begin(struct store_writer *w,
		       const struct store_status *status)
{
	pthread_mutex_lock(&w->mu);
	if (w->in_flight || w->stopping) {
		pthread_mutex_unlock(&w->mu);
		log_warnx("store: writer: begin while busy");
		errno = EBUSY;
		return -1;
	}
	w->begin_status = *status;
	w->begin = 1;
	w->in_flight = 1;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->mu);
	return store_writer_wait(w);
}

struct store_batch *store_writer_acquire(struct store_writer *w,
					 int *need_full)
{
	struct store_batch *b = NULL;

	pthread_mutex_lock(&w->mu);
	if (!w->in_flight) {
		b = &w->batch;
		store_batch_clear(b);
		*need_full = w->need_full;
	}
	pthread_mutex_unlock(&w->mu);
	return b;
}

void store_writer_submit(struct store_writer *w, struct store_batch *b)
{
	pthread_mutex_lock(&w->mu);
	if (b == &w->batch && !w->in_flight && !w->stopping) {
		w->in_flight = 1;
		pthread_cond_signal(&w->work);
	} else {
		log_warnx("store: writer: submit of a batch not acquired");
	}
	pthread_mutex_unlock(&w->mu);
}

int store_writer_wait(struct store_writer *w)
{
	int err;

	pthread_mutex_lock(&w->mu);
	while (w->in_flight)
		pthread_cond_wait(&w->idle, &w->mu);
	err = w->last_errno;
	pthread_mutex_unlock(&w->mu);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

void store_writer_stop(struct store_writer *w)
{
	if (!w)
		return;
	store_writer_wait(w);
	pthread_mutex_lock(&w->mu);
	w->stopping = 1;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->idle);
	pthread_cond_destroy(&w->work);
	pthread_mutex_destroy(&w->mu);
	store_batch_free(&w->batch);
	free(w);
}

void store_writer_set_thresholds(struct store_writer *w, double warn,
				 double critical)
{
	pthread_mutex_lock(&w->mu);
	w->warn = warn;
	w->critical = critical;
	w->thresholds_set = 1;
	pthread_mutex_unlock(&w->mu);
}
