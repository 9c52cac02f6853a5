/*
 * cli.h - the natscope command's subcommands.  Each takes the arguments
 * after its name (argv[0] is the subcommand) and returns the process exit
 * status: 0 success, 1 runtime failure, 2 usage error.
 */
#ifndef NATSCOPE_CLI_H
#define NATSCOPE_CLI_H

#include <stdint.h>

/* natscope run: follow conntrack, keep the database, serve the API. */
int cli_run(int argc, char **argv);

/* Parses a byte size with an optional K, M or G suffix (powers of 1024).
 * Returns 0, or -1 with EINVAL (garbage) or ERANGE (too large). */
int cli_parse_size(const char *text, unsigned long long *out);

/* Parses an age: a whole number with s, m, h or d ("90m", "7d") into
 * milliseconds.  Returns 0, or -1 with EINVAL or ERANGE. */
int cli_parse_duration(const char *text, int64_t *ms);

#endif
