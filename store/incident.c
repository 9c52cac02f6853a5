/*
 * incident.c - incidents (schema/004_history.sql): a gateway's ports or a
 * destination bucket above the warn threshold of its capacity, or the
 * kernel's insert_failed / drop / early_drop rising.  Judged on every
 * history period, inside store_write()'s transaction, from the period's
 * peaks: a burst between two snapshots opens one too.
 *
 * Exhaustion leaves no conntrack event, so a "kernel" incident's detail
 * names the buckets that were at or above the warn threshold in the period
 * the counters rose, or says that none was (then the cause is elsewhere:
 * the table's size, a clash, memory).
 *
 * The open incidents are held in memory (a handful: one per saturated
 * gateway or bucket) and mirrored in the table on every change; a failed
 * write rolls the table back and the in-memory copy with it (store_incident
 * _committed()).
 */
#include "store/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { INC_GATEWAY, INC_BUCKET, INC_KERNEL };

static const char *const inc_kind[] = { "gateway", "bucket", "kernel" };

/* ---- details: the moment, as JSON built by SQLite ---- */

/* ?1 public_ip, ?2 proto (NULL for the kernel), ?3 the moment (ms),
 * ?4 warn ratio, ?5 period span (ms), ?6 zone, ?7 dest ip, ?8 dest port,
 * ?9..?15 the status's sysctls and kernel counters */
static const char sql_detail[] =
	"SELECT json_object("
	" 'at', " SQL_TIME("?3") ","
	" 'saturated_buckets', (SELECT json_group_array(json_object('public_ip',"
	"  public_ip, 'proto', proto, 'zone', zone, 'ip', ip, 'port', port,"
	"  'mappings', mappings, 'peak', peak, 'capacity', capacity,"
	"  'new_per_second', new_per_second)) FROM (SELECT * FROM cur_sat WHERE"
	"  ?1 IS NULL OR (public_ip = ?1 AND proto = ?2) ORDER BY"
	"  CAST(peak AS REAL) / max(capacity, 1) DESC LIMIT 20)),"
	" 'top_hosts', (SELECT json_group_array(json_object('public_ip',"
	"  public_ip, 'proto', proto, 'ip', ip, 'kind', kind, 'mappings',"
	"  mappings, 'peak', mappings_peak, 'ports_in_use', ports_in_use,"
	"  'new_per_second', round(new_mappings * 1000.0 / max(span_ms, 1), 1)))"
	"  FROM (SELECT * FROM acc_host WHERE ?1 IS NULL OR (public_ip = ?1 AND"
	"  proto = ?2) ORDER BY mappings_peak DESC, new_mappings DESC LIMIT 10)),"
	" 'tcp_states', (SELECT json_object('established', state_established,"
	"  'syn_sent', state_syn_sent, 'syn_recv', state_syn_recv, 'fin_wait',"
	"  state_fin_wait, 'close_wait', state_close_wait, 'last_ack',"
	"  state_last_ack, 'time_wait', state_time_wait, 'time_wait_peak',"
	"  time_wait_peak, 'close', state_close) FROM hist_gateway WHERE tier = 0"
	"  AND public_ip = ?1 AND proto = ?2 ORDER BY ts_ms DESC LIMIT 1),"
	" 'sysctl', json_object('ip_local_port_range', json_array(?9, ?10),"
	"  'tcp_tw_reuse', ?11, 'tcp_fin_timeout', ?12,"
	"  'nf_conntrack_tcp_timeout_time_wait', ?13, 'nf_conntrack_max', ?14),"
	" 'conntrack_count', ?15,"
	" 'note', CASE WHEN ?1 IS NULL AND NOT EXISTS (SELECT 1 FROM cur_sat)"
	"  THEN 'no destination bucket"
	" was at or above the warn threshold when the counters rose: the cause"
	" is elsewhere (the table''s size, clashes, memory)' END)";

/* The JSON of the moment, malloc'd; NULL with errno (logged). */
static char *detail(struct store *st, const struct store_incident *in,
		    int64_t at, const struct store_status *x)
{
	sqlite3_stmt *s;
	char *out = NULL;
	int rc = sqlite3_prepare_v2(st->db, sql_detail, -1, &s, NULL);

	if (rc != SQLITE_OK) {
		store_fail(st, rc, "incident: its moment");
		return NULL;
	}
	if (in->kind != INC_KERNEL) {
		sqlite3_bind_text(s, 1, in->public_ip, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, in->proto, -1, SQLITE_STATIC);
	}
	sqlite3_bind_int64(s, 3, at);
	sqlite3_bind_double(s, 4, st->hist_cfg.warn);
	store_bind_opt(s, 9, x->sysctl_port_range_lo);
	store_bind_opt(s, 10, x->sysctl_port_range_hi);
	store_bind_opt(s, 11, x->sysctl_tcp_tw_reuse);
	store_bind_opt(s, 12, x->sysctl_tcp_fin_timeout);
	store_bind_opt(s, 13, x->sysctl_tcp_timeout_time_wait);
	store_bind_opt(s, 14, x->conntrack_max);
	store_bind_opt(s, 15, x->conntrack_count);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_text(s, 0))
		out = strdup((const char *)sqlite3_column_text(s, 0));
	else
		store_fail(st, rc == SQLITE_ROW ? SQLITE_NOMEM : rc,
			   "incident: its moment");
	sqlite3_finalize(s);
	if (!out && errno == 0)
		errno = ENOMEM;
	return out;
}

/* ---- the table ---- */

#define SQL_INC_INSERT                                                      \
	"INSERT INTO incident (kind, severity, public_ip, proto, zone, "     \
	"dest_ip, dest_port, capacity, opened_ms, peak_ms, peak_mappings, "  \
	"insert_failed, drop_count, early_drop, opened_detail, peak_detail) " \
	"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13, " \
	"?14, ?14)"

#define SQL_INC_UPDATE                                                      \
	"UPDATE incident SET severity = ?2, closed_ms = ?3, peak_ms = ?4, "  \
	"peak_mappings = ?5, insert_failed = ?6, drop_count = ?7, "         \
	"early_drop = ?8, peak_detail = coalesce(?9, peak_detail) "         \
	"WHERE id = ?1"

static const char *severity(const struct store_incident *in)
{
	return in->critical ? "critical" : "warn";
}

static int inc_insert(struct store *st, struct store_incident *in,
		      const char *json)
{
	sqlite3_stmt *s = store_stmt(st, STMT_INC_INSERT, SQL_INC_INSERT);

	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, inc_kind[in->kind], -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, severity(in), -1, SQLITE_STATIC);
	if (in->kind != INC_KERNEL) {
		sqlite3_bind_text(s, 3, in->public_ip, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, in->proto, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 8, in->capacity);
	}
	if (in->kind == INC_BUCKET) {
		sqlite3_bind_int(s, 5, in->zone);
		sqlite3_bind_text(s, 6, in->dest_ip, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 7, in->dest_port);
	}
	sqlite3_bind_int64(s, 9, in->opened_ms);
	sqlite3_bind_int64(s, 10, in->peak);
	sqlite3_bind_int64(s, 11, in->insert_failed);
	sqlite3_bind_int64(s, 12, in->drop);
	sqlite3_bind_int64(s, 13, in->early_drop);
	sqlite3_bind_text(s, 14, json, -1, SQLITE_STATIC);
	if (store_step_done(st, s, "incident: opening") < 0)
		return -1;
	in->id = sqlite3_last_insert_rowid(st->db);
	return 0;
}

static int inc_update(struct store *st, const struct store_incident *in,
		      int64_t closed, const char *peak_json)
{
	sqlite3_stmt *s = store_stmt(st, STMT_INC_UPDATE, SQL_INC_UPDATE);

	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, in->id);
	sqlite3_bind_text(s, 2, severity(in), -1, SQLITE_STATIC);
	store_bind_ms(s, 3, closed);
	sqlite3_bind_int64(s, 4, in->peak_ms);
	sqlite3_bind_int64(s, 5, in->peak);
	sqlite3_bind_int64(s, 6, in->insert_failed);
	sqlite3_bind_int64(s, 7, in->drop);
	sqlite3_bind_int64(s, 8, in->early_drop);
	if (peak_json)
		sqlite3_bind_text(s, 9, peak_json, -1, SQLITE_STATIC);
	return store_step_done(st, s, "incident: updating");
}

/* ---- judging a period ---- */

static struct store_incident *find(struct store *st, int kind,
				   const char *ip, const char *proto,
				   uint16_t zone, const char *dest,
				   uint16_t port)
{
	for (size_t i = 0; i < st->n_inc; i++) {
		struct store_incident *in = &st->inc[i];

		if (in->kind == kind &&
		    (kind == INC_KERNEL ||
		     (!strcmp(in->public_ip, ip) && !strcmp(in->proto, proto) &&
		      (kind == INC_GATEWAY ||
		       (in->zone == zone && !strcmp(in->dest_ip, dest) &&
			in->dest_port == port)))))
			return in;
	}
	return NULL;
}

/* One subject's pressure in a period: opens, raises or closes its
 * incident.  peak/capacity decides; for the kernel, counters that rose. */
static int judge(struct store *st, struct store_incident *key,
		 uint64_t peak, const struct store_history *h,
		 const struct store_status *x, int pressed)
{
	struct store_incident *in = find(st, key->kind, key->public_ip,
					 key->proto, key->zone, key->dest_ip,
					 key->dest_port);
	int critical = key->kind == INC_KERNEL ||
		       (double)peak >= st->hist_cfg.critical * key->capacity;
	char *json = NULL;
	int rc = 0;

	if (!in && !pressed)
		return 0;
	if (!in) {
		if (st->n_inc == STORE_INCIDENTS_OPEN_MAX) {
			if (!st->inc_full_warned++)
				log_warnx("store: %s: %d incidents open at "
					  "once: more are not recorded",
					  st->path, STORE_INCIDENTS_OPEN_MAX);
			return 0;
		}
		in = &st->inc[st->n_inc++];
		*in = *key;
		in->opened_ms = h->start_ms;
		in->peak = peak;
		in->peak_ms = h->end_ms;
		in->last = peak;
		in->critical = critical;
		if (!(json = detail(st, in, h->end_ms, x)) ||
		    inc_insert(st, in, json) < 0)
			rc = -1;
		free(json);
		return rc;
	}
	if (!pressed) { /* over: closed with its peak */
		rc = inc_update(st, in, h->end_ms, NULL);
		*in = st->inc[--st->n_inc];
		return rc;
	}
	in->last = peak;
	in->insert_failed += key->insert_failed;
	in->drop += key->drop;
	in->early_drop += key->early_drop;
	if (critical)
		in->critical = 1;
	if (peak > in->peak) {
		in->peak = peak;
		in->peak_ms = h->end_ms;
		if (!(json = detail(st, in, h->end_ms, x)))
			return -1;
	}
	rc = inc_update(st, in, 0, json);
	free(json);
	return rc;
}

static void addr_key(char *out, size_t n, const struct ns_addr *a)
{
	char buf[NS_ADDR_STRLEN];

	snprintf(out, n, "%s", ns_addr_format(a, buf) ? buf : "?");
}

static void proto_key(char *out, size_t n, uint8_t proto)
{
	const char *name = ns_proto_name(proto);

	if (name)
		snprintf(out, n, "%s", name);
	else
		snprintf(out, n, "%u", proto);
}

#define SQL_SAT "INSERT INTO cur_sat VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"

/* A batch row's key as incidents keep it (text), made once per write
 * rather than once per open incident and row. */
struct inc_rowkey {
	char ip[NS_ADDR_STRLEN], dest_ip[NS_ADDR_STRLEN], proto[16];
};

/* The keys of the batch's buckets (n_dests) then gateways (n_gateways):
 * a malloc'd array, or NULL with ENOMEM (logged) when there are rows. */
static struct inc_rowkey *inc_rowkeys(const struct store_history *h)
{
	size_t n = h->n_dests + h->n_gateways;
	struct inc_rowkey *k = n ? malloc(n * sizeof(*k)) : NULL;

	if (n && !k) {
		log_warn("store: incidents");
		return NULL;
	}
	for (size_t i = 0; i < h->n_dests; i++) {
		addr_key(k[i].ip, sizeof(k[i].ip), &h->dests[i].end.gateway);
		addr_key(k[i].dest_ip, sizeof(k[i].dest_ip),
			 &h->dests[i].end.ip);
		proto_key(k[i].proto, sizeof(k[i].proto), h->dests[i].end.proto);
	}
	for (size_t i = 0; i < h->n_gateways; i++) {
		struct inc_rowkey *g = &k[h->n_dests + i];

		addr_key(g->ip, sizeof(g->ip), &h->gateways[i].end.ip);
		g->dest_ip[0] = '\0';
		proto_key(g->proto, sizeof(g->proto), h->gateways[i].end.proto);
	}
	return k;
}

static int inc_cmp_share(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * Whether an open bucket incident whose bucket has no row in this batch
 * may still be at or above warn.  The collector lists per gateway only
 * its top buckets by share of capacity (and by new mappings; the history
 * config's top of each), so a bucket missing from the list may be above
 * warn only when at least top buckets of its gateway are listed and the
 * top-th highest share among them is at or above warn: its own share is
 * at most that.  Fewer listed (its gateway gone, or every bucket in use
 * listed) or a lower top-th share: it is below warn, and the incident is
 * over.  Returns 1 (may hold), 0, or -1 with ENOMEM.
 */
static int bucket_may_hold(const struct store *st,
			   const struct store_incident *in,
			   const struct store_history *h,
			   const struct inc_rowkey *keys)
{
	unsigned top = st->hist_cfg.top;
	double *share;
	size_t n = 0;
	int hold;

	if (!top)
		return 1;
	if (!(share = malloc((h->n_dests + 1) * sizeof(*share)))) {
		log_warn("store: incidents");
		return -1;
	}
	for (size_t j = 0; j < h->n_dests; j++)
		if (h->dests[j].end.capacity &&
		    !strcmp(keys[j].ip, in->public_ip) &&
		    !strcmp(keys[j].proto, in->proto))
			share[n++] = (double)h->dests[j].mappings_peak /
				     (double)h->dests[j].end.capacity;
	hold = 0;
	if (n >= top) {
		qsort(share, n, sizeof(*share), inc_cmp_share);
		hold = share[top - 1] >= st->hist_cfg.warn;
	}
	free(share);
	return hold;
}

/* Whether the batch has a row of in's bucket. */
static int bucket_in_batch(const struct store_incident *in,
			   const struct store_history *h,
			   const struct inc_rowkey *keys)
{
	for (size_t j = 0; j < h->n_dests; j++)
		if (h->dests[j].end.port == in->dest_port &&
		    h->dests[j].end.zone == in->zone &&
		    !strcmp(keys[j].ip, in->public_ip) &&
		    !strcmp(keys[j].proto, in->proto) &&
		    !strcmp(keys[j].dest_ip, in->dest_ip))
			return 1;
	return 0;
}

/* The buckets at or above the warn threshold in this period, in TEMP
 * table cur_sat, for the details: those of the batch, and those whose
 * incident is open and that did not change (not in the batch). */
static int saturated(struct store *st, const struct store_history *h,
		     const struct inc_rowkey *keys)
{
	struct store_addr_text gw = { 0 }, other = { 0 };
	sqlite3_stmt *s;

	if (store_exec(st, "DELETE FROM cur_sat", "incident: buckets") < 0)
		return -1;
	for (size_t i = 0; i < h->n_dests; i++) {
		const struct store_hist_dest *d = &h->dests[i];

		if (!d->end.capacity ||
		    d->mappings_peak < st->hist_cfg.warn * d->end.capacity)
			continue;
		s = store_stmt(st, STMT_INC_SAT, SQL_SAT);
		if (!s || store_bind_addr(s, 1, 0, &gw, &d->end.gateway) < 0 ||
		    store_bind_addr(s, 4, 0, &other, &d->end.ip) < 0)
			return -1;
		store_bind_proto(s, 2, d->end.proto);
		sqlite3_bind_int(s, 3, d->end.zone);
		sqlite3_bind_int(s, 5, d->end.port);
		sqlite3_bind_int64(s, 6, d->end.mappings);
		sqlite3_bind_int64(s, 7, d->mappings_peak);
		sqlite3_bind_int64(s, 8, d->end.capacity);
		sqlite3_bind_double(s, 9, d->new_mappings * 1000.0 /
						  (double)(h->end_ms - h->start_ms));
		if (store_step_done(st, s, "incident: buckets") < 0)
			return -1;
	}
	for (size_t i = 0; i < st->n_inc; i++) {
		const struct store_incident *in = &st->inc[i];
		int hold;

		if (in->kind != INC_BUCKET || bucket_in_batch(in, h, keys))
			continue;
		if ((hold = bucket_may_hold(st, in, h, keys)) < 0)
			return -1;
		if (!hold)
			continue; /* below warn: judged over below */
		s = store_stmt(st, STMT_INC_SAT, SQL_SAT);
		if (!s)
			return -1;
		sqlite3_bind_text(s, 1, in->public_ip, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, in->proto, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 3, in->zone);
		sqlite3_bind_text(s, 4, in->dest_ip, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 5, in->dest_port);
		sqlite3_bind_int64(s, 6, in->last);
		sqlite3_bind_int64(s, 7, in->last);
		sqlite3_bind_int64(s, 8, in->capacity);
		sqlite3_bind_double(s, 9, 0);
		if (store_step_done(st, s, "incident: buckets") < 0)
			return -1;
	}
	return 0;
}

int store_incidents_judge(struct store *st, const struct store_batch *b)
{
	const struct store_history *h = &b->hist;
	const struct store_status *x = &b->status;
	const struct store_status *p = &st->hist_prev;
	struct store_incident key;
	int64_t rise;
	size_t i;

	struct inc_rowkey *keys;
	int rc = -1;

	if (h->start_ms <= 0)
		return 0;
	keys = inc_rowkeys(h);
	if ((h->n_dests + h->n_gateways && !keys) || saturated(st, h, keys) < 0)
		goto out;
	for (i = 0; i < h->n_gateways; i++) {
		const struct store_hist_gateway *g = &h->gateways[i];

		memset(&key, 0, sizeof(key));
		key.kind = INC_GATEWAY;
		addr_key(key.public_ip, sizeof(key.public_ip), &g->end.ip);
		proto_key(key.proto, sizeof(key.proto), g->end.proto);
		key.capacity = ns_port_space(g->end.proto);
		if (judge(st, &key, g->ports_peak, h, x,
			  g->ports_peak >=
				  st->hist_cfg.warn * key.capacity) < 0)
			goto out;
	}
	for (i = 0; i < h->n_dests; i++) {
		const struct store_hist_dest *d = &h->dests[i];

		if (!d->end.capacity)
			continue;
		memset(&key, 0, sizeof(key));
		key.kind = INC_BUCKET;
		addr_key(key.public_ip, sizeof(key.public_ip), &d->end.gateway);
		proto_key(key.proto, sizeof(key.proto), d->end.proto);
		key.zone = d->end.zone;
		addr_key(key.dest_ip, sizeof(key.dest_ip), &d->end.ip);
		key.dest_port = d->end.port;
		key.capacity = d->end.capacity;
		if (judge(st, &key, d->mappings_peak, h, x,
			  d->mappings_peak >= st->hist_cfg.warn * d->end.capacity) < 0)
			goto out;
	}
	/* gateways that vanished without a row, buckets missing from their
	 * gateway's list that cannot be at warn any more: over */
	for (i = 0; i < st->n_inc;) {
		struct store_incident *in = &st->inc[i];
		int seen = in->kind == INC_KERNEL;

		for (size_t j = 0; !seen && in->kind == INC_GATEWAY &&
				   j < h->n_gateways; j++) {
			const struct inc_rowkey *g = &keys[h->n_dests + j];

			seen = !strcmp(g->ip, in->public_ip) &&
			       !strcmp(g->proto, in->proto);
		}
		if (in->kind == INC_BUCKET &&
		    ((seen = bucket_in_batch(in, h, keys)) == 0 &&
		     (seen = bucket_may_hold(st, in, h, keys)) < 0))
			goto out;
		if (!seen) {
			if (inc_update(st, in, h->end_ms, NULL) < 0)
				goto out;
			*in = st->inc[--st->n_inc];
			continue;
		}
		i++;
	}
	/* the kernel's counters */
	memset(&key, 0, sizeof(key));
	key.kind = INC_KERNEL;
	if ((rise = store_history_rise(st, x, x->conntrack_insert_failed,
				       p->conntrack_insert_failed)) > 0)
		key.insert_failed = rise;
	if ((rise = store_history_rise(st, x, x->conntrack_drop,
				       p->conntrack_drop)) > 0)
		key.drop = rise;
	if ((rise = store_history_rise(st, x, x->conntrack_early_drop,
				       p->conntrack_early_drop)) > 0)
		key.early_drop = rise;
	rc = judge(st, &key, (uint64_t)(key.insert_failed + key.drop +
					key.early_drop), h, x,
		   key.insert_failed || key.drop || key.early_drop);
out:
	free(keys);
	return rc;
}

void store_incidents_save(struct store *st)
{
	memcpy(st->inc_saved, st->inc, st->n_inc * sizeof(st->inc[0]));
	st->n_inc_saved = st->n_inc;
}

void store_incidents_rollback(struct store *st)
{
	memcpy(st->inc, st->inc_saved, st->n_inc_saved * sizeof(st->inc[0]));
	st->n_inc = st->n_inc_saved;
}

int store_incidents_begin_run(struct store *st, int64_t now)
{
	/* a previous run's open incidents end where it stopped writing */
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(
		st->db, "UPDATE incident SET closed_ms = max(opened_ms, "
			"coalesce((SELECT writes_last_ms FROM status WHERE id = 1), "
			"?1)) WHERE closed_ms IS NULL", -1, &s, NULL);

	if (rc != SQLITE_OK)
		return store_fail(st, rc, "incident: closing the last run's");
	sqlite3_bind_int64(s, 1, now);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return store_fail(st, rc, "incident: closing the last run's");
	st->n_inc = st->n_inc_saved = 0;
	return 0;
}
