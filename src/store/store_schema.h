/*
 * store_schema.h - private to the SQLite backend: the ordered migration
 * steps. Step i (0-based) brings PRAGMA user_version from i to i + 1.
 */
#ifndef DAKIYA_STORE_SCHEMA_H
#define DAKIYA_STORE_SCHEMA_H

#include <stddef.h>

struct store_migration {
	const char *name;
	const char *sql; /* one or more statements, run with sqlite3_exec */
};

extern const struct store_migration store_migrations[];
extern const size_t store_nmigrations;

#endif
