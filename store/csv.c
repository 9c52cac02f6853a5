/*
 * csv.c - any answer's table as CSV: one conversion for every endpoint,
 * driven by SQLite's JSON functions (json_each, json_tree), so it needs
 * to know nothing of the shapes.
 */
#include "store/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * ?1 the document, ?2 the path of its table.  The cells: row r, column
 * col (the leaf's path inside the row without "$.", "value" for a row
 * that is no object), the leaf's type and value, and ord, its place in
 * document order.  The document's as_of and coverage.complete come first
 * in every row (ord -2, -1).
 */
#define SQL_CELLS                                                           \
	"WITH rws AS (SELECT key AS r, value AS v, type AS t FROM "         \
	"json_each(?1, ?2)), "                                              \
	"doc AS (SELECT 'as_of' AS col, json_extract(?1, '$.as_of') AS a, " \
	"json_type(?1, '$.as_of') AS t, -2 AS ord UNION ALL SELECT "        \
	"'coverage_complete', json_extract(?1, '$.coverage.complete'), "    \
	"json_type(?1, '$.coverage.complete'), -1), "                       \
	"cells AS (SELECT rws.r, doc.col, doc.t AS type, doc.a AS atom, "   \
	"doc.ord FROM rws, doc WHERE doc.t IS NOT NULL UNION ALL "          \
	"SELECT rws.r, replace(substr(j.fullkey, 3), '\"', ''), j.type, "  \
	"j.atom, j.id FROM "                                                \
	"rws, json_tree(rws.v) j WHERE rws.t IN ('object', 'array') AND "   \
	"j.type NOT IN ('object', 'array') UNION ALL "                      \
	"SELECT rws.r, 'value', rws.t, rws.v, 0 FROM rws WHERE "            \
	"rws.t NOT IN ('object', 'array')) "

static const char sql_columns[] =
	SQL_CELLS "SELECT json_type(?1, ?2), col FROM (SELECT 1) LEFT JOIN "
	"(SELECT col, min(r * 1000000 + ord) AS first FROM cells GROUP BY "
	"col) ORDER BY first";

static const char sql_cells[] =
	SQL_CELLS "SELECT r, col, type, atom FROM cells ORDER BY r, ord";

struct csv_buf {
	char *p;
	size_t len, cap;
	int err;
};

static void csv_add(struct csv_buf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (b->len + n + 1 > cap)
			cap *= 2;
		if (!(p = realloc(b->p, cap))) {
			b->err = ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* One field, quoted when it holds a comma, a quote or a line break. */
static void csv_field(struct csv_buf *b, const char *s)
{
	if (!s)
		return;
	if (!strpbrk(s, ",\"\r\n")) {
		csv_add(b, s, strlen(s));
		return;
	}
	csv_add(b, "\"", 1);
	for (const char *q; (q = strchr(s, '"')); s = q + 1) {
		csv_add(b, s, (size_t)(q - s) + 1);
		csv_add(b, "\"", 1);
	}
	csv_add(b, s, strlen(s));
	csv_add(b, "\"", 1);
}

static void csv_row(struct csv_buf *b, char **vals, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			csv_add(b, ",", 1);
		csv_field(b, vals[i]);
		free(vals[i]);
		vals[i] = NULL;
	}
	csv_add(b, "\r\n", 2);
}

/* The text of a cell: true/false for booleans, nothing for null. */
static char *cell_text(sqlite3_stmt *s, int type_col, int atom_col)
{
	const char *type = (const char *)sqlite3_column_text(s, type_col);
	const char *atom = (const char *)sqlite3_column_text(s, atom_col);

	if (!type || strcmp(type, "null") == 0)
		return NULL;
	if (strcmp(type, "true") == 0)
		return strdup("true");
	if (strcmp(type, "false") == 0)
		return strdup("false");
	return strdup(atom ? atom : "");
}

int store_json_csv(struct store *st, const char *json, const char *table,
		   char **out)
{
	struct csv_buf b = { 0 };
	char **cols = NULL, **vals = NULL;
	size_t ncols = 0, cap = 0;
	sqlite3_stmt *s;
	int64_t row = -1;
	int rc, err = 0;

	*out = NULL;
	if (!(s = store_stmt(st, STMT_CSV_COLUMNS, sql_columns)))
		return -1;
	sqlite3_bind_text(s, 1, json, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, table, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *type = (const char *)sqlite3_column_text(s, 0);
		const char *col = (const char *)sqlite3_column_text(s, 1);

		if (!type || strcmp(type, "array") != 0) {
			err = EINVAL;
			break;
		}
		if (!col)
			continue; /* an empty table: no column */
		if ((ncols == cap &&
		     store_grow(&cols, ncols, &cap, sizeof(*cols)) == -1) ||
		    !(cols[ncols] = strdup(col))) {
			err = ENOMEM;
			break;
		}
		ncols++;
	}
	if (!err && rc != SQLITE_DONE)
		err = (store_fail(st, rc, "reading a table for CSV"), errno);
	sqlite3_reset(s);
	if (err)
		goto out;

	for (size_t i = 0; i < ncols; i++) {
		if (i)
			csv_add(&b, ",", 1);
		csv_field(&b, cols[i]);
	}
	csv_add(&b, "\r\n", 2);
	if (ncols && !(vals = calloc(ncols, sizeof(*vals)))) {
		err = ENOMEM;
		goto out;
	}

	if (!(s = store_stmt(st, STMT_CSV_CELLS, sql_cells))) {
		err = errno;
		goto out;
	}
	sqlite3_bind_text(s, 1, json, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, table, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t r = sqlite3_column_int64(s, 0);
		const char *col = (const char *)sqlite3_column_text(s, 1);
		size_t i;

		if (row >= 0 && r != row)
			csv_row(&b, vals, ncols);
		row = r;
		for (i = 0; col && i < ncols; i++)
			if (strcmp(cols[i], col) == 0)
				break;
		if (!col || i == ncols)
			continue;
		free(vals[i]);
		vals[i] = cell_text(s, 2, 3);
	}
	if (rc != SQLITE_DONE)
		err = (store_fail(st, rc, "reading a table for CSV"), errno);
	else if (row >= 0)
		csv_row(&b, vals, ncols);
	sqlite3_reset(s);
	if (!err && b.err)
		err = b.err;
	if (err == ENOMEM)
		log_warnx("store: no memory for a CSV answer");
out:
	for (size_t i = 0; i < ncols; i++) {
		free(cols[i]);
		if (vals)
			free(vals[i]);
	}
	free(cols);
	free(vals);
	if (err) {
		free(b.p);
		errno = err;
		return -1;
	}
	*out = b.p;
	return 0;
}
