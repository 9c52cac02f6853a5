/*
 * migrations.h - the schema migrations compiled into the binary from
 * schema/NNN_name.sql (see schema/embed.cmake).  Internal to store/.
 */
#ifndef NATSCOPE_STORE_MIGRATIONS_H
#define NATSCOPE_STORE_MIGRATIONS_H

#include <stddef.h>

struct schema_migration {
	int version;	  /* NNN: 1, 2, ... without holes */
	const char *name; /* the file name after NNN_ */
	const char *sql;  /* the file's text */
};

extern const struct schema_migration schema_migrations[];
extern const size_t schema_migrations_count;

#endif
