/*
 * csv.c - any answer's table as CSV: one conversion for every endpoint,
 * driven by SQLite's JSON functions (json_each, json_tree), so it needs
 * to know nothing of the shapes.
 */
#include "store/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ?1 the document, ?2 the path of its table: whether that is an array,
 * and the document's as_of and coverage.complete (value and type). */
static const char sql_head[] =
	"SELECT json_type(?1, ?2), json_extract(?1, '$.as_of'), "
	"json_type(?1, '$.as_of'), json_extract(?1, '$.coverage.complete'), "
	"json_type(?1, '$.coverage.complete')";

/* The cells, in document order: row r, column (the leaf's path inside
 * the row without "$." and without the quotes json_tree() puts around
 * keys such as "ports_in_use"; "value" for a row that is no object), the
 * leaf's type and value.  The document is parsed once (json_each), each
 * row once more (json_tree). */
static const char sql_cells[] =
	"SELECT e.key, replace(substr(j.fullkey, 3), '\"', ''), j.type, "
	"j.atom, j.id FROM json_each(?1, ?2) e, json_tree(e.value) j WHERE "
	"e.type IN ('object', 'array') AND j.type NOT IN ('object', 'array') "
	"UNION ALL SELECT e.key, 'value', e.type, e.atom, 0 FROM "
	"json_each(?1, ?2) e WHERE e.type NOT IN ('object', 'array') "
	"ORDER BY 1, 5";

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

/* Writes one row of n fields and empties vals (it owns nothing). */
static void csv_row(struct csv_buf *b, char **vals, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			csv_add(b, ",", 1);
		csv_field(b, vals[i]);
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

/* One cell read back: its row, column and text (NULL: empty). */
struct csv_cell {
	int64_t row;
	size_t col;
	char *text;
};

/* The index of column name in cols (appended if new), or -1 (ENOMEM). */
static ssize_t csv_column(char ***cols, size_t *ncols, size_t *cap,
			  const char *name)
{
	for (size_t i = 0; i < *ncols; i++)
		if (strcmp((*cols)[i], name) == 0)
			return (ssize_t)i;
	if (store_grow(cols, *ncols, cap, sizeof(**cols)) == -1)
		return -1;
	if (!((*cols)[*ncols] = strdup(name)))
		return -1;
	return (ssize_t)(*ncols)++;
}

int store_json_csv(struct store *st, const char *json, const char *table,
		   char **out)
{
	struct csv_buf b = { 0 };
	struct csv_cell *cells = NULL;
	char **cols = NULL, **vals = NULL, *doc[2] = { NULL, NULL };
	size_t ncols = 0, ccap = 0, ncells = 0, cellcap = 0, ndoc = 0;
	sqlite3_stmt *s;
	int rc, err = 0;

	*out = NULL;
	if (!(s = store_stmt(st, STMT_CSV_HEAD, sql_head)))
		return -1;
	sqlite3_bind_text(s, 1, json, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, table, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
		err = (store_fail(st, rc, "reading a table for CSV"), errno);
	} else if (!sqlite3_column_text(s, 0) ||
		   strcmp((const char *)sqlite3_column_text(s, 0), "array")) {
		err = EINVAL;
	} else {
		static const char *const names[2] = { "as_of",
						      "coverage_complete" };

		for (int i = 0; i < 2 && !err; i++) {
			if (sqlite3_column_type(s, 2 + 2 * i) == SQLITE_NULL)
				continue;
			if (csv_column(&cols, &ncols, &ccap, names[i]) == -1)
				err = ENOMEM;
			else
				doc[ndoc++] = cell_text(s, 2 + 2 * i, 1 + 2 * i);
		}
	}
	sqlite3_reset(s);
	if (err)
		goto out;

	if (!(s = store_stmt(st, STMT_CSV_CELLS, sql_cells))) {
		err = errno;
		goto out;
	}
	sqlite3_bind_text(s, 1, json, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, table, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *col = (const char *)sqlite3_column_text(s, 1);
		struct csv_cell *c;
		ssize_t i;

		if (!col)
			continue;
		if ((i = csv_column(&cols, &ncols, &ccap, col)) == -1 ||
		    store_grow(&cells, ncells, &cellcap, sizeof(*cells)) == -1) {
			err = ENOMEM;
			break;
		}
		c = &cells[ncells++];
		c->row = sqlite3_column_int64(s, 0);
		c->col = (size_t)i;
		c->text = cell_text(s, 2, 3);
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
	for (size_t i = 0; i < ncells;) {
		int64_t row = cells[i].row;

		for (size_t d = 0; d < ndoc; d++)
			vals[d] = doc[d];
		for (; i < ncells && cells[i].row == row; i++)
			vals[cells[i].col] = cells[i].text;
		csv_row(&b, vals, ncols);
	}
	if (b.err)
		err = b.err;
out:
	if (err == ENOMEM)
		log_warnx("store: no memory for a CSV answer");
	for (size_t i = 0; i < ncols; i++)
		free(cols[i]);
	for (size_t i = 0; i < ncells; i++)
		free(cells[i].text);
	for (size_t d = 0; d < ndoc; d++)
		free(doc[d]);
	free(cols);
	free(cells);
	free(vals);
	if (err) {
		free(b.p);
		errno = err;
		return -1;
	}
	*out = b.p;
	return 0;
}
