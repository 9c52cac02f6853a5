/*
 * status.c - the status row, driven by STORE_STATUS_FIELDS (store.h): the
 * field table, writing the row, reading it back and the SQL that builds
 * /api/v1/status.  Adding a field is one line in store.h plus a schema
 * migration (test_store checks the two agree).
 */
#include "store/internal.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STORE_FIELD_OFFSET_EXPR(name) 0
#define STORE_FIELD_OFFSET(name) offsetof(struct store_status, name)
#define STORE_FIELD_OFF_U64 STORE_FIELD_OFFSET
#define STORE_FIELD_OFF_OPT STORE_FIELD_OFFSET
#define STORE_FIELD_OFF_SIGNED STORE_FIELD_OFFSET
#define STORE_FIELD_OFF_MS STORE_FIELD_OFFSET
#define STORE_FIELD_OFF_US STORE_FIELD_OFFSET
#define STORE_FIELD_OFF_REAL STORE_FIELD_OFFSET
#define STORE_FIELD_OFF_BOOL STORE_FIELD_OFFSET
#define STORE_FIELD_OFF_TEXT STORE_FIELD_OFFSET
#define STORE_FIELD_OFF_STATE STORE_FIELD_OFFSET
#define STORE_FIELD_OFF_FOLLOW STORE_FIELD_OFFSET
#define STORE_FIELD_OFF_EXPR STORE_FIELD_OFFSET_EXPR
#define STORE_FIELD_ROW(name, type, json, metric, help)                      \
	{ #name, STORE_F_##type, STORE_FIELD_OFF_##type(name), json, metric,   \
	  help },

const struct store_field store_status_fields[] = {
	STORE_STATUS_FIELDS(STORE_FIELD_ROW)
};
const size_t store_status_nfields =
	sizeof(store_status_fields) / sizeof(store_status_fields[0]);

static const char *const store_state_names[STORE_STATES] = {
	[STORE_STATE_STARTING] = "starting",
	[STORE_STATE_RUNNING] = "running",
	[STORE_STATE_RESYNCING] = "resyncing",
	[STORE_STATE_STOPPED] = "stopped",
	[STORE_STATE_DB_ERROR] = "db-error",
};

static const char *const store_follow_names[STORE_FOLLOWS] = {
	[STORE_FOLLOW_EVENTS] = "events",
	[STORE_FOLLOW_EVENTS_DUMPS] = "events+dumps",
	[STORE_FOLLOW_DUMPS] = "dumps",
};

const char *store_state_name(enum store_state state)
{
	return (unsigned)state < STORE_STATES ? store_state_names[state]
					      : "unknown";
}

const char *store_follow_name(enum store_follow follow)
{
	return (unsigned)follow < STORE_FOLLOWS ? store_follow_names[follow]
						: "unknown";
}

/* The index of name in names[n], or dflt. */
static uint8_t store_name_index(const char *const *names, unsigned n,
				const char *name, uint8_t dflt)
{
	for (unsigned i = 0; name && i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (uint8_t)i;
	return dflt;
}

#define FIELD_PTR(s, f, T) ((T *)((char *)(s) + (f)->offset))
#define FIELD_CPTR(s, f, T) ((const T *)((const char *)(s) + (f)->offset))

void store_status_init(struct store_status *s)
{
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < store_status_nfields; i++) {
		const struct store_field *f = &store_status_fields[i];

		switch (f->type) {
		case STORE_F_OPT:
		case STORE_F_US:
			*FIELD_PTR(s, f, int64_t) = -1;
			break;
		case STORE_F_SIGNED:
			*FIELD_PTR(s, f, int64_t) = STORE_UNKNOWN;
			break;
		case STORE_F_REAL:
			*FIELD_PTR(s, f, double) = -1;
			break;
		default:
			break;
		}
	}
	snprintf(s->version, sizeof(s->version), "%s", NS_VERSION);
	s->pid = (uint64_t)getpid();
}

int store_field_value(const struct store_field *f, const struct store_status *s,
		      double *v)
{
	int64_t x;

	switch (f->type) {
	case STORE_F_U64:
		*v = (double)*FIELD_CPTR(s, f, uint64_t);
		return 0;
	case STORE_F_OPT:
		x = *FIELD_CPTR(s, f, int64_t);
		*v = (double)x;
		return x < 0 ? -1 : 0;
	case STORE_F_SIGNED:
		x = *FIELD_CPTR(s, f, int64_t);
		*v = (double)x;
		return x == STORE_UNKNOWN ? -1 : 0;
	case STORE_F_MS:
		x = *FIELD_CPTR(s, f, int64_t);
		*v = (double)x / 1e3;
		return x <= 0 ? -1 : 0;
	case STORE_F_US:
		x = *FIELD_CPTR(s, f, int64_t);
		*v = (double)x / 1e6;
		return x < 0 ? -1 : 0;
	case STORE_F_REAL:
		*v = *FIELD_CPTR(s, f, double);
		return *v < 0 ? -1 : 0;
	case STORE_F_BOOL:
	case STORE_F_STATE:
	case STORE_F_FOLLOW:
		*v = *FIELD_CPTR(s, f, uint8_t);
		return 0;
	case STORE_F_TEXT:
	case STORE_F_EXPR:
		break;
	}
	return -1;
}

/* ---- the resync-duration histogram ---- */

/* The histogram's bucket rows of the field table, in order, and their
 * bounds in microseconds.  Returns how many (STORE_RESYNC_BUCKETS; the
 * unit test checks the table has exactly that many). */
static size_t resync_buckets(const struct store_field *f[STORE_RESYNC_BUCKETS],
			     int64_t bound_us[STORE_RESYNC_BUCKETS])
{
	static const char prefix[] = STORE_RESYNC_FAMILY "_bucket{le=\"";
	size_t n = 0;

	for (size_t k = 0; k < store_status_nfields && n < STORE_RESYNC_BUCKETS;
	     k++) {
		const char *m = store_status_fields[k].metric;

		if (strncmp(m, prefix, sizeof(prefix) - 1) != 0)
			continue;
		f[n] = &store_status_fields[k];
		bound_us[n] = llround(strtod(m + sizeof(prefix) - 1, NULL) *
				      1e6);
		n++;
	}
	return n;
}

void store_resync_hist_observe(struct store_resync_hist *h, int64_t us)
{
	const struct store_field *f[STORE_RESYNC_BUCKETS];
	int64_t bound[STORE_RESYNC_BUCKETS];
	size_t n = resync_buckets(f, bound);

	if (us < 0)
		us = 0;
	for (size_t i = 0; i < n; i++)
		if (us <= bound[i])
			h->le[i]++;
	h->count++;
	h->sum_us += us;
}

void store_resync_hist_status(struct store_status *s,
			      const struct store_resync_hist *h)
{
	const struct store_field *f[STORE_RESYNC_BUCKETS];
	int64_t bound[STORE_RESYNC_BUCKETS];
	size_t n = resync_buckets(f, bound);

	for (size_t i = 0; i < n; i++)
		*FIELD_PTR(s, f[i], uint64_t) = h->le[i];
	s->resync_duration_count = h->count;
	s->resync_duration_sum_us = h->sum_us;
}

/* ---- the SQL, built once from the table ---- */

/* A growing string for the generated SQL.  On ENOMEM it stays NULL. */
struct sqlbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void sql_add(struct sqlbuf *b, const char *s)
{
	size_t n = strlen(s);

	if (b->err)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		if (!(p = realloc(b->p, cap))) {
			b->err = ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n + 1);
	b->len += n;
}

static int stored(const struct store_field *f)
{
	return f->type != STORE_F_EXPR;
}

static char *sql_done(struct sqlbuf *b)
{
	if (b->err) {
		free(b->p);
		errno = ENOMEM;
		log_warn("store: building the status SQL");
		return NULL;
	}
	return b->p;
}

/* "INSERT OR REPLACE INTO status (id, c1, ...) VALUES (1, ?, ...)" */
static char *sql_status_insert(void)
{
	struct sqlbuf b = { 0 };

	sql_add(&b, "INSERT OR REPLACE INTO status (id");
	for (size_t i = 0; i < store_status_nfields; i++) {
		if (!stored(&store_status_fields[i]))
			continue;
		sql_add(&b, ", ");
		sql_add(&b, store_status_fields[i].name);
	}
	sql_add(&b, ") VALUES (1");
	for (size_t i = 0; i < store_status_nfields; i++)
		if (stored(&store_status_fields[i]))
			sql_add(&b, ", ?");
	sql_add(&b, ")");
	return sql_done(&b);
}

/* "SELECT c1, ... FROM status WHERE id = 1" */
static char *sql_status_select(void)
{
	struct sqlbuf b = { 0 };
	int first = 1;

	sql_add(&b, "SELECT ");
	for (size_t i = 0; i < store_status_nfields; i++) {
		if (!stored(&store_status_fields[i]))
			continue;
		sql_add(&b, first ? "" : ", ");
		sql_add(&b, store_status_fields[i].name);
		first = 0;
	}
	sql_add(&b, " FROM status WHERE id = 1");
	return sql_done(&b);
}

/* SQL_TIME (internal.h) of column x, built at run time. */
static void sql_time(struct sqlbuf *b, const char *x)
{
	sql_add(b, "(CASE WHEN ");
	sql_add(b, x);
	sql_add(b, " > 0 THEN strftime('%Y-%m-%dT%H:%M:%S', (");
	sql_add(b, x);
	sql_add(b, ") / 1000, 'unixepoch') || printf('.%03dZ', (");
	sql_add(b, x);
	sql_add(b, ") % 1000) END)");
}

/* The JSON value of one field, over the columns of the status row. */
static void sql_json_value(struct sqlbuf *b, const struct store_field *f)
{
	switch (f->type) {
	case STORE_F_MS:
		sql_time(b, f->name);
		break;
	case STORE_F_US:
		sql_add(b, "(");
		sql_add(b, f->name);
		sql_add(b, " / 1000.0)");
		break;
	case STORE_F_BOOL:
		sql_add(b, "json(CASE WHEN ");
		sql_add(b, f->name);
		sql_add(b, " THEN 'true' ELSE 'false' END)");
		break;
	default:
		sql_add(b, f->name);
		break;
	}
}

/* The status fields as "'key', value, 'group', json_object(...), ..."
 * for a json_object() call over the status row. */
char *store_sql_status_json(void)
{
	struct sqlbuf b = { 0 };
	char group[64] = "";
	int first = 1;

	for (size_t i = 0; i < store_status_nfields; i++) {
		const struct store_field *f = &store_status_fields[i];
		const char *dot = strchr(f->json, '.');
		size_t glen = dot ? (size_t)(dot - f->json) : 0;
		char g[64];

		if (!*f->json)
			continue;
		snprintf(g, sizeof(g), "%.*s", (int)glen, f->json);
		if (strcmp(g, group) != 0) {
			if (group[0])
				sql_add(&b, ")");
			if (g[0]) {
				sql_add(&b, first ? "'" : ", '");
				sql_add(&b, g);
				sql_add(&b, "', json_object(");
				first = 1;
			}
			snprintf(group, sizeof(group), "%s", g);
		}
		sql_add(&b, first ? "'" : ", '");
		sql_add(&b, dot ? dot + 1 : f->json);
		sql_add(&b, "', ");
		sql_json_value(&b, f);
		first = 0;
	}
	if (group[0])
		sql_add(&b, ")");
	return sql_done(&b);
}

/* ---- writing and reading the row ---- */

static void bind_field(sqlite3_stmt *s, int i, const struct store_field *f,
		       const struct store_status *x)
{
	int64_t v;

	switch (f->type) {
	case STORE_F_U64:
		v = *FIELD_CPTR(x, f, uint64_t) > INT64_MAX
			    ? INT64_MAX
			    : (int64_t)*FIELD_CPTR(x, f, uint64_t);
		sqlite3_bind_int64(s, i, v);
		break;
	case STORE_F_OPT:
	case STORE_F_US:
		v = *FIELD_CPTR(x, f, int64_t);
		if (v < 0)
			sqlite3_bind_null(s, i);
		else
			sqlite3_bind_int64(s, i, v);
		break;
	case STORE_F_SIGNED:
		v = *FIELD_CPTR(x, f, int64_t);
		if (v == STORE_UNKNOWN)
			sqlite3_bind_null(s, i);
		else
			sqlite3_bind_int64(s, i, v);
		break;
	case STORE_F_MS:
		v = *FIELD_CPTR(x, f, int64_t);
		if (v <= 0)
			sqlite3_bind_null(s, i);
		else
			sqlite3_bind_int64(s, i, v);
		break;
	case STORE_F_REAL:
		if (*FIELD_CPTR(x, f, double) < 0)
			sqlite3_bind_null(s, i);
		else
			sqlite3_bind_double(s, i, *FIELD_CPTR(x, f, double));
		break;
	case STORE_F_BOOL:
		sqlite3_bind_int(s, i, *FIELD_CPTR(x, f, uint8_t) ? 1 : 0);
		break;
	case STORE_F_TEXT: {
		const char *t = FIELD_CPTR(x, f, char);
		size_t n = strnlen(t, STORE_TEXT_MAX);

		if (n)
			sqlite3_bind_text(s, i, t, (int)n, SQLITE_TRANSIENT);
		else
			sqlite3_bind_null(s, i);
		break;
	}
	case STORE_F_STATE:
		sqlite3_bind_text(s, i,
				  store_state_name(*FIELD_CPTR(x, f, uint8_t)),
				  -1, SQLITE_STATIC);
		break;
	case STORE_F_FOLLOW:
		sqlite3_bind_text(s, i,
				  store_follow_name(*FIELD_CPTR(x, f, uint8_t)),
				  -1, SQLITE_STATIC);
		break;
	case STORE_F_EXPR:
		break;
	}
}

static void column_field(sqlite3_stmt *s, int col, const struct store_field *f,
			 struct store_status *x)
{
	int null = sqlite3_column_type(s, col) == SQLITE_NULL;
	const char *t;

	switch (f->type) {
	case STORE_F_U64:
		*FIELD_PTR(x, f, uint64_t) =
			(uint64_t)sqlite3_column_int64(s, col);
		break;
	case STORE_F_OPT:
	case STORE_F_US:
		*FIELD_PTR(x, f, int64_t) =
			null ? -1 : sqlite3_column_int64(s, col);
		break;
	case STORE_F_SIGNED:
		*FIELD_PTR(x, f, int64_t) =
			null ? STORE_UNKNOWN : sqlite3_column_int64(s, col);
		break;
	case STORE_F_MS:
		*FIELD_PTR(x, f, int64_t) =
			null ? 0 : sqlite3_column_int64(s, col);
		break;
	case STORE_F_REAL:
		*FIELD_PTR(x, f, double) =
			null ? -1 : sqlite3_column_double(s, col);
		break;
	case STORE_F_BOOL:
		*FIELD_PTR(x, f, uint8_t) = sqlite3_column_int(s, col) != 0;
		break;
	case STORE_F_TEXT:
		t = (const char *)sqlite3_column_text(s, col);
		snprintf(FIELD_PTR(x, f, char), STORE_TEXT_MAX, "%s",
			 t ? t : "");
		break;
	case STORE_F_STATE:
		/* an unknown name (a newer writer) reads as stopped */
		*FIELD_PTR(x, f, uint8_t) = store_name_index(
			store_state_names, STORE_STATES,
			(const char *)sqlite3_column_text(s, col),
			STORE_STATE_STOPPED);
		break;
	case STORE_F_FOLLOW:
		*FIELD_PTR(x, f, uint8_t) = store_name_index(
			store_follow_names, STORE_FOLLOWS,
			(const char *)sqlite3_column_text(s, col),
			STORE_FOLLOW_EVENTS);
		break;
	case STORE_F_EXPR:
		break;
	}
}

int store_write_status(struct store *st, const struct store_status *x)
{
	sqlite3_stmt *s;
	char *sql;
	int i = 1;

	if (!st->stmt[STMT_STATUS_UPSERT]) {
		if (!(sql = sql_status_insert()))
			return -1;
		s = store_stmt(st, STMT_STATUS_UPSERT, sql);
		free(sql);
	} else {
		s = store_stmt(st, STMT_STATUS_UPSERT, NULL);
	}
	if (!s)
		return -1;
	for (size_t k = 0; k < store_status_nfields; k++)
		if (stored(&store_status_fields[k]))
			bind_field(s, i++, &store_status_fields[k], x);
	return store_step_done(st, s, "writing the status");
}

int store_read_status(struct store *st, struct store_status *x)
{
	sqlite3_stmt *s;
	char *sql;
	int rc, col = 0;

	store_status_init(x);
	if (!st->stmt[STMT_READ_STATUS]) {
		if (!(sql = sql_status_select()))
			return -1;
		s = store_stmt(st, STMT_READ_STATUS, sql);
		free(sql);
	} else {
		s = store_stmt(st, STMT_READ_STATUS, NULL);
	}
	if (!s)
		return -1;
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		if (rc == SQLITE_DONE)
			errno = ENOENT;
		else
			store_fail(st, rc, "reading the status");
		rc = errno;
		sqlite3_reset(s);
		errno = rc;
		return -1;
	}
	for (size_t k = 0; k < store_status_nfields; k++)
		if (stored(&store_status_fields[k]))
			column_field(s, col++, &store_status_fields[k], x);
	sqlite3_reset(s);
	return 0;
}
