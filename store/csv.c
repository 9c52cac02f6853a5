/*
 * csv.c - any answer's table as CSV: one conversion for every endpoint,
 * driven by SQLite's JSON functions (json_tree), so it needs to know
 * nothing of the shapes.
 */
#include "store/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ?1 the document: whether it has as_of and coverage.complete, and
 * their values (types and values from one extraction). */
static const char sql_head[] =
	"SELECT json_type(?1, '$.as_of'), json_type(?1, '$.coverage.complete'), "
	"json_type(v, '$[0]'), v ->> 0, json_type(v, '$[1]'), v ->> 1 FROM "
	"(SELECT json_extract(?1, '$.as_of', '$.coverage.complete') AS v)";

/* ?1 the document, ?2 the path of its table: the table itself first,
 * then every node under it in document order (one parse, no sort). */
static const char sql_cells[] =
	"SELECT fullkey, type, atom FROM json_tree(?1, ?2)";

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

/* Splits the fullkey of a node under the table (whose own fullkey is
 * top, of length n) into its row and its column: "[3].worst.ip" is row 3,
 * column "worst.ip" (json_tree's quotes around keys removed), "[3]" alone
 * column "value".  Returns 0, or -1 for a node that is no cell. */
static int csv_split(const char *key, size_t n, int64_t *row, char *col,
		     size_t cap)
{
	const char *p = key + n;
	char *end;
	size_t o = 0;

	if (strlen(key) <= n || *p != '[')
		return -1;
	*row = strtoll(p + 1, &end, 10);
	if (*end != ']')
		return -1;
	p = end + 1;
	if (*p == '.')
		p++;
	if (!*p)
		p = "value";
	for (; *p && o + 1 < cap; p++)
		if (*p != '"')
			col[o++] = *p;
	col[o] = '\0';
	return 0;
}

int store_json_csv(struct store *st, const char *json, const char *table,
		   char **out)
{
	struct csv_buf b = { 0 };
	struct csv_cell *cells = NULL;
	char **cols = NULL, **vals = NULL, *doc[2] = { NULL, NULL };
	size_t ncols = 0, ccap = 0, ncells = 0, cellcap = 0, ndoc = 0;
	size_t toplen = 0;
	sqlite3_stmt *s;
	int rc, err = 0, first = 1;

	*out = NULL;
	if (!(s = store_stmt(st, STMT_CSV_HEAD, sql_head)))
		return -1;
	sqlite3_bind_text(s, 1, json, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
		err = (store_fail(st, rc, "reading a table for CSV"), errno);
	} else {
		static const char *const names[2] = { "as_of",
						      "coverage_complete" };

		for (int i = 0; i < 2 && !err; i++) {
			if (sqlite3_column_type(s, i) == SQLITE_NULL)
				continue; /* the document has no such field */
			if (csv_column(&cols, &ncols, &ccap, names[i]) == -1)
				err = ENOMEM;
			else
				doc[ndoc++] = cell_text(s, 2 + 2 * i, 3 + 2 * i);
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
		const char *key = (const char *)sqlite3_column_text(s, 0);
		const char *type = (const char *)sqlite3_column_text(s, 1);
		char col[256];
		struct csv_cell *c;
		int64_t row;
		ssize_t i;

		if (!key || !type)
			continue;
		if (first) { /* the table itself */
			first = 0;
			if (strcmp(type, "array") != 0) {
				err = EINVAL;
				break;
			}
			toplen = strlen(key);
			continue;
		}
		if (strcmp(type, "object") == 0 || strcmp(type, "array") == 0 ||
		    csv_split(key, toplen, &row, col, sizeof(col)) == -1)
			continue;
		if ((i = csv_column(&cols, &ncols, &ccap, col)) == -1 ||
		    store_grow(&cells, ncells, &cellcap, sizeof(*cells)) == -1) {
			err = ENOMEM;
			break;
		}
		c = &cells[ncells++];
		c->row = row;
		c->col = (size_t)i;
		c->text = cell_text(s, 1, 2);
	}
	if (!err && first) /* no such path */
		err = EINVAL;
	else if (!err && rc != SQLITE_DONE)
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
